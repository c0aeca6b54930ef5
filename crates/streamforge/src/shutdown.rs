//! Turns SIGINT/SIGTERM into the pipeline's cancellation.
//!
//! The first signal cancels the root token: the pipeline drains and the
//! process exits 0. A second signal exits at once with status 130.

use tokio_util::sync::CancellationToken;

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the pipeline");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Cancels `token` on the first signal; exits the process on the second.
pub fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested: draining (signal again to exit now)");
        token.cancel();
        signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
}
