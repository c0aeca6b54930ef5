//! The task tree: every background task of a process is spawned by name
//! under one tracker and stopped by one cancellation token, so shutdown can
//! wait for all of them and a task that fails says which one it was.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A tracker and the token that stops what it tracks.
///
/// Clones share both: a task spawned through any clone is waited for by
/// [`Tasks::wait`] on every other.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// A tree stopped by `token`.
    pub fn new(token: CancellationToken) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            token,
        }
    }

    /// The token that stops every task of the tree.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a helper that runs until it returns or the token is cancelled,
    /// whichever comes first; its name is in the logs when it ends.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = task => {}
            }
            tracing::debug!(task = name, "background task ended");
        });
    }

    /// Spawns a task that watches the token itself and finishes its work
    /// (a round of housekeeping, a flush) before it returns.
    pub fn spawn_draining<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(task = name, "background task ended");
        });
    }

    /// How many tasks are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels the token and waits for every task spawned so far, and for
    /// any spawned while waiting.
    pub async fn stop(&self) {
        self.token.cancel();
        self.wait().await;
    }

    /// Waits for every task, without cancelling.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_cancels_helpers_and_waits_for_draining_tasks() {
        let tasks = Tasks::new(CancellationToken::new());
        let finished = Arc::new(AtomicUsize::new(0));
        tasks.spawn("forever", std::future::pending());
        let (token, done) = (tasks.token().clone(), finished.clone());
        tasks.spawn_draining("drains", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(tasks.len(), 2);
        tokio::time::timeout(Duration::from_secs(5), tasks.stop())
            .await
            .expect("every task stopped");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the draining task finished its work"
        );
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn clones_share_one_tree() {
        let tasks = Tasks::new(CancellationToken::new());
        let other = tasks.clone();
        other.spawn("forever", std::future::pending());
        assert_eq!(tasks.len(), 1);
        tasks.stop().await;
        assert!(other.token().is_cancelled());
        assert!(other.is_empty());
    }
}
