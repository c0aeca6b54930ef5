//! `GET /api/v1/stream`: live ticks as Server-Sent Events.
//!
//! Each tick is an event `tick` whose data is the tick's JSON. A client that
//! falls too far behind receives an event `lagged` saying how many batches
//! it missed, then continues with current data. Streams end at shutdown.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use streamforge_model::{Symbol, Tick};
use streamforge_telemetry::Metrics;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::params::{Params, RawQuery};
use crate::{ApiError, AppState};

/// Counts the client while its stream lives.
struct ClientGuard(Metrics);

impl ClientGuard {
    fn new(metrics: Metrics) -> Self {
        metrics.stream_client(1);
        ClientGuard(metrics)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.stream_client(-1);
    }
}

struct Client {
    rx: broadcast::Receiver<Arc<[Tick]>>,
    /// Symbols asked for; `None` for all.
    filter: Option<HashSet<Symbol>>,
    /// Events of the current batch not yet sent (at most one batch).
    pending: VecDeque<Event>,
    guard: ClientGuard,
}

fn wanted(filter: &Option<HashSet<Symbol>>, tick: &Tick) -> bool {
    filter.as_ref().is_none_or(|f| f.contains(tick.symbol()))
}

/// `GET /api/v1/stream?symbols=AAPL,MSFT` (all symbols when omitted).
pub async fn sse(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let params = Params::new(raw, &["symbols"])?;
    let filter = params
        .symbols("symbols")?
        .map(|v| v.into_iter().collect::<HashSet<_>>());
    let mut client = Client {
        rx: state.live.subscribe(),
        filter,
        pending: VecDeque::new(),
        guard: ClientGuard::new(state.metrics.clone()),
    };
    client
        .pending
        .push_back(Event::default().comment("connected"));
    let events = futures::stream::unfold(client, |mut c| async move {
        loop {
            if let Some(event) = c.pending.pop_front() {
                return Some((Ok(event), c));
            }
            match c.rx.recv().await {
                Ok(batch) => {
                    for tick in batch.iter().filter(|t| wanted(&c.filter, t)) {
                        if let Ok(event) = Event::default().event("tick").json_data(tick) {
                            c.pending.push_back(event);
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    c.guard.0.stream_lagged(missed);
                    c.pending.push_back(
                        Event::default()
                            .event("lagged")
                            .data(format!(r#"{{"missed_batches":{missed}}}"#)),
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let events = events.take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
