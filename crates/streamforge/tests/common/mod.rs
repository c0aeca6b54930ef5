//! Helpers shared by the pipeline test binaries.

use std::time::Duration;

use streamforge_bus::{Consumer, Message, Polled};

/// Messages from `dlq` until `n` arrived within `within`, then until none
/// came for `quiet` (so an extra, unwanted one is seen too).
pub async fn dead_letters(
    dlq: &mut dyn Consumer,
    n: usize,
    within: Duration,
    quiet: Duration,
) -> Vec<Message> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let wait = if out.len() >= n {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, dlq.recv(100)).await {
            Ok(Ok(Polled::Messages(m))) => out.extend(m.into_iter().map(|d| (*d.message).clone())),
            Ok(other) => panic!("dead-letter topic: {other:?}"),
            Err(_) if out.len() >= n => return out,
            Err(_) => panic!(
                "{} of {n} dead letters arrived within {within:?}",
                out.len()
            ),
        }
    }
}
