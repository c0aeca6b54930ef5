//! What travels on the bus.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

/// Message headers, in order; names may repeat. Cloning is cheap: messages
/// of one frame share their headers until one of them is changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(Arc<Vec<(Cow<'static, str>, Bytes)>>);

impl Headers {
    pub fn with_capacity(n: usize) -> Self {
        Headers(Arc::new(Vec::with_capacity(n)))
    }

    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) {
        Arc::make_mut(&mut self.0).push((name.into(), value.into()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// The first value of `name`, when it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }
}

/// One message: a key (the symbol, for per-symbol order), a payload and headers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub key: Bytes,
    pub payload: Bytes,
    pub headers: Headers,
}

/// A position in a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offset {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A received message and where it came from.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub message: Arc<Message>,
}

impl Delivery {
    pub fn position(&self) -> Offset {
        Offset {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// The highest offset per (topic, partition) in `deliveries`: what to commit
/// once all of them are processed.
pub fn last_offsets<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) -> Vec<Offset> {
    let mut out: Vec<Offset> = Vec::new();
    for d in deliveries {
        match out
            .iter_mut()
            .find(|o| o.partition == d.partition && o.topic == d.topic)
        {
            Some(o) => o.offset = o.offset.max(d.offset),
            None => out.push(d.position()),
        }
    }
    out
}

/// Header names StreamForge's producers and consumers agree on (the wire
/// contract beside the payload, in `docs/architecture.md`).
pub mod headers {
    pub const CONTENT_TYPE: &str = "content-type";
    pub const SCHEMA_VERSION: &str = "schema-version";
    pub const SRC_ID: &str = "src_id";
    /// W3C trace context of the provider frame the message came from.
    pub const TRACEPARENT: &str = "traceparent";
    /// Dead-letter headers.
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_ERROR: &str = "dlq-error";
    pub const DLQ_STAGE: &str = "dlq-stage";
    pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
    pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
    pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
    /// On a dead letter whose payload was cut to fit the bus.
    pub const DLQ_TRUNCATED: &str = "dlq-truncated";
    pub const DLQ_ORIGINAL_SIZE: &str = "dlq-original-size";
    pub const DLQ_ORIGINAL_XXH3: &str = "dlq-original-xxh3";
}
