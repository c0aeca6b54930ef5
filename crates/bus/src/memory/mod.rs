//! [`MemoryBus`]: a bounded in-process bus for the all-in-one pipeline.
//!
//! Each topic is one partition: an append-only log with offsets, trimmed from
//! the front. Durable consumer groups hold messages until they commit them;
//! a publisher waits while the slowest durable group has `capacity`
//! messages uncommitted, so a slow sink slows ingest instead of growing
//! memory. Non-durable consumers (live tails) never hold anything and are
//! told how many messages they missed when they fall behind. What no durable
//! group holds is kept up to `capacity` messages and [`RETAINED_BYTES`].
//!
//! Nothing survives the process: [`Bus::close_topic`] lets consumers drain a
//! topic before exit.
//!
//! A group has at most one active consumer. When it is dropped, the next
//! consumer of the group starts at the group's committed offset, so
//! uncommitted messages are delivered again (at least once).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::{
    Bus, BusError, Committer, Consumer, ConsumerOptions, Delivery, Message, Offset, Polled,
    StartFrom,
};

/// Settings of a `memory://` bus: the `[memory_bus]` section.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryBusConfig {
    /// Unacknowledged messages a topic holds before publishers (ingest)
    /// wait; larger than `persist.batch_size`.
    pub capacity: usize,
}

impl Default for MemoryBusConfig {
    fn default() -> Self {
        MemoryBusConfig { capacity: 100_000 }
    }
}

/// The in-process bus. Cloning shares it.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: usize,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
}

struct Topic {
    name: Arc<str>,
    capacity: usize,
    state: Mutex<TopicState>,
    /// Bumped whenever messages are appended or the topic closes.
    appended: watch::Sender<u64>,
    /// Bumped whenever a durable group commits or leaves.
    committed: watch::Sender<u64>,
}

/// Bytes of committed (or never held) messages a topic keeps for late
/// readers; beyond it the oldest go. A topic no durable group reads (the
/// dead-letter topic) is bounded by it, whatever the size of its messages.
pub const RETAINED_BYTES: usize = 64 * 1024 * 1024;

fn size_of(m: &Message) -> usize {
    m.key.len()
        + m.payload.len()
        + m.headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
}

#[derive(Default)]
struct TopicState {
    log: VecDeque<Arc<Message>>,
    /// Bytes of the messages in `log`.
    bytes: usize,
    /// Offset of `log[0]`.
    base: i64,
    groups: HashMap<String, Group>,
    closed: bool,
}

struct Group {
    /// Next offset to deliver to a new consumer of the group.
    committed: i64,
    durable: bool,
    active: bool,
}

impl TopicState {
    fn end(&self) -> i64 {
        self.base + self.log.len() as i64
    }

    /// Messages some durable group has not committed yet.
    fn held(&self) -> usize {
        let end = self.end();
        self.groups
            .values()
            .filter(|g| g.durable)
            .map(|g| (end - g.committed).max(0) as usize)
            .max()
            .unwrap_or(0)
    }

    /// Drops front messages beyond `capacity` that every durable group committed.
    fn trim(&mut self, capacity: usize) {
        let floor = self
            .groups
            .values()
            .filter(|g| g.durable)
            .map(|g| g.committed)
            .min()
            .unwrap_or(i64::MAX);
        while (self.log.len() > capacity || self.bytes > RETAINED_BYTES) && self.base < floor {
            if let Some(m) = self.log.pop_front() {
                self.bytes -= size_of(&m);
            }
            self.base += 1;
        }
    }

    fn append(&mut self, messages: impl Iterator<Item = Message>) {
        for m in messages {
            self.bytes += size_of(&m);
            self.log.push_back(Arc::new(m));
        }
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl MemoryBus {
    /// A bus whose topics hold at most `capacity` unacknowledged messages.
    pub fn new(capacity: usize) -> Self {
        MemoryBus {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                topics: Mutex::default(),
            }),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.inner.topics.lock();
        if let Some(t) = topics.get(name) {
            return t.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let t = Arc::new(Topic {
            name: name.clone(),
            capacity: self.inner.capacity,
            state: Mutex::new(TopicState::default()),
            appended: watch::channel(0).0,
            committed: watch::channel(0).0,
        });
        topics.insert(name, t.clone());
        t
    }

    /// Messages held for `topic` by its slowest durable group (for tests and metrics).
    pub fn backlog(&self, topic: &str) -> usize {
        self.topic(topic).state.lock().held()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, topic: &str, batch: Vec<Message>) -> Result<(), BusError> {
        let topic = self.topic(topic);
        let mut pending = batch.into_iter().peekable();
        let mut commits = topic.committed.subscribe();
        while pending.peek().is_some() {
            {
                let mut st = topic.state.lock();
                if st.closed {
                    return Err(BusError::Closed);
                }
                let room = topic.capacity.saturating_sub(st.held());
                if room > 0 {
                    st.append(pending.by_ref().take(room));
                    st.trim(topic.capacity);
                    let end = st.end() as u64;
                    drop(st);
                    topic.appended.send_replace(end);
                    continue;
                }
            }
            // Full: wait for a durable group to commit (or leave).
            if commits.changed().await.is_err() {
                return Err(BusError::Closed);
            }
        }
        Ok(())
    }

    async fn consumer(
        &self,
        topic: &str,
        options: ConsumerOptions,
    ) -> Result<Box<dyn Consumer>, BusError> {
        let topic = self.topic(topic);
        let position = {
            let mut st = topic.state.lock();
            let (base, end) = (st.base, st.end());
            let start = match options.start {
                StartFrom::Earliest => base,
                StartFrom::Latest => end,
            };
            let group = st.groups.entry(options.group.clone()).or_insert(Group {
                committed: start,
                durable: options.durable,
                active: false,
            });
            if group.active {
                return Err(BusError::GroupBusy {
                    topic: topic.name.to_string(),
                    group: options.group,
                });
            }
            group.active = true;
            group.durable = options.durable;
            group.committed.max(base)
        };
        Ok(Box::new(MemoryConsumer {
            appended: topic.appended.subscribe(),
            committer: Arc::new(MemoryCommitter {
                topic: topic.clone(),
                group: options.group.clone(),
            }),
            topic,
            group: options.group,
            position,
        }))
    }

    async fn close_topic(&self, topic: &str) {
        let t = self.topic(topic);
        t.state.lock().closed = true;
        t.appended.send_modify(|v| *v += 1);
        t.committed.send_modify(|v| *v += 1);
    }

    fn is_durable(&self) -> bool {
        false
    }
}

struct MemoryConsumer {
    topic: Arc<Topic>,
    group: String,
    committer: Arc<MemoryCommitter>,
    /// Next offset this consumer will receive.
    position: i64,
    appended: watch::Receiver<u64>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn recv(&mut self, max: usize) -> Result<Polled, BusError> {
        loop {
            {
                let st = self.topic.state.lock();
                if self.position < st.base {
                    let missed = (st.base - self.position) as u64;
                    self.position = st.base;
                    return Ok(Polled::Lagged(missed));
                }
                let end = st.end();
                if self.position < end {
                    let from = (self.position - st.base) as usize;
                    let n = ((end - self.position) as usize).min(max.max(1));
                    let out: Vec<Delivery> = st
                        .log
                        .range(from..from + n)
                        .enumerate()
                        .map(|(i, m)| Delivery {
                            topic: self.topic.name.clone(),
                            partition: 0,
                            offset: self.position + i as i64,
                            message: m.clone(),
                        })
                        .collect();
                    self.position += n as i64;
                    return Ok(Polled::Messages(out));
                }
                if st.closed {
                    return Ok(Polled::Closed);
                }
                // Mark what we have seen before unlocking, so no append is missed.
                self.appended.borrow_and_update();
            }
            if self.appended.changed().await.is_err() {
                return Ok(Polled::Closed);
            }
        }
    }

    fn committer(&self) -> Arc<dyn Committer> {
        self.committer.clone()
    }
}

struct MemoryCommitter {
    topic: Arc<Topic>,
    group: String,
}

#[async_trait]
impl Committer for MemoryCommitter {
    async fn commit(&self, offsets: &[Offset]) -> Result<(), BusError> {
        let mut st = self.topic.state.lock();
        let next = offsets
            .iter()
            .filter(|o| *o.topic == *self.topic.name)
            .map(|o| o.offset + 1)
            .max();
        if let (Some(next), Some(g)) = (next, st.groups.get_mut(&self.group)) {
            if next > g.committed {
                g.committed = next;
                let capacity = self.topic.capacity;
                st.trim(capacity);
                drop(st);
                self.topic.committed.send_modify(|v| *v += 1);
            }
        }
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        if let Some(g) = self.topic.state.lock().groups.get_mut(&self.group) {
            g.active = false;
            if !g.durable {
                g.committed = i64::MAX;
            }
        }
        self.topic.committed.send_modify(|v| *v += 1);
    }
}

#[cfg(test)]
mod tests;
