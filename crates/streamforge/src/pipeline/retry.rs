//! [`Backoff`]: the one retry pause of the stages: doubling from a first
//! pause up to a ceiling, cut short by shutdown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Pauses between attempts of something that will work again (a bus or a
/// store coming back).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first` and doubles up to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first.min(max),
            max,
        }
    }

    /// The pause the next [`Backoff::wait`] takes.
    pub fn next(&self) -> Duration {
        self.next
    }

    /// Sleeps the next pause, or until `shutdown` fires; then doubles it.
    pub async fn wait(&mut self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(self.next) => {}
            _ = shutdown.cancelled() => {}
        }
        self.next = (self.next * 2).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pauses_double_up_to_the_ceiling_and_shutdown_cuts_them_short() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(3));
        let token = CancellationToken::new();
        let mut pauses = Vec::new();
        for _ in 0..4 {
            pauses.push(b.next());
            b.wait(&token).await;
        }
        assert_eq!(pauses, [1, 2, 3, 3].map(Duration::from_millis).to_vec());

        let mut long = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        token.cancel();
        tokio::time::timeout(Duration::from_secs(60), long.wait(&token))
            .await
            .expect("a cancelled token ends the pause");
    }
}
