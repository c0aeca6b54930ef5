//! The HTTP server: accepts connections and bounds what one client can hold.
//!
//! - **Connections**: at most [`HttpConfig::max_connections`] at once; one
//!   more is answered `503` with a JSON error and closed.
//! - **Headers**: a request's headers must arrive within
//!   [`HttpConfig::header_timeout`] (slow-header clients are closed),
//!   and be at most [`HttpConfig::max_header_bytes`] (`431` beyond). The
//!   same timer closes a keep-alive connection that sends no next request.
//! - **Idle**: a connection that neither sends nor takes a byte for
//!   [`HttpConfig::idle_timeout`] is closed (a stalled request body).
//! - **Writes**: a response (SSE stream, WebSocket) whose client does not
//!   read for [`HttpConfig::write_timeout`] is closed.
//!
//! - **TLS**: with `[http.tls]` every connection is HTTPS; the handshake
//!   must finish within the header timeout. `SIGHUP` reloads the
//!   certificate (see [`crate::tls`]).
//!
//! Per-request timeouts of REST routes and the cap on live streams are in
//! the router ([`crate::routes`]). At shutdown the listener stops, every
//! connection finishes its request in flight and closes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use streamforge_model::settings::{at_least_one, duration_text, longer_than_zero, Invalid};
use streamforge_telemetry::events::Refusal;
use streamforge_telemetry::Event;
use streamforge_telemetry::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The HTTP server: the `[http]` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP API, metrics and health endpoints (`--http-addr`).
    pub addr: SocketAddr,
    /// Serve `GET /debug/pprof/profile?seconds=N` (1-60, default 10): a CPU
    /// flame graph (SVG).
    pub pprof: bool,
    /// Connections open at once; one more is answered 503 (JSON) and closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this (slow-header clients are
    /// closed); also the longest a keep-alive connection waits for its next
    /// request.
    #[serde(with = "duration_text")]
    pub header_timeout: Duration,
    /// Largest request line and headers; 431 beyond.
    pub max_header_bytes: usize,
    /// A connection that moves no byte either way this long is closed
    /// (longer than `api.request_timeout`).
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
    /// A client that takes no byte of its response (an SSE or WebSocket
    /// stream) this long is closed.
    #[serde(with = "duration_text")]
    pub write_timeout: Duration,
    /// Serve HTTPS with this certificate and key (`[http.tls]`); `SIGHUP`
    /// reloads them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pprof: false,
            max_connections: 1_024,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            idle_timeout: Duration::from_secs(120),
            write_timeout: Duration::from_secs(15),
            tls: None,
        }
    }
}

impl HttpConfig {
    /// Checks every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), Invalid> {
        at_least_one(&[
            ("max_connections", self.max_connections),
            ("max_header_bytes", self.max_header_bytes),
        ])?;
        longer_than_zero(&[
            ("header_timeout", self.header_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ])
    }
}

/// The router with each request carrying the client's address
/// (`ConnectInfo`), for per-address limits and logs.
fn with_peer(
    router: Router,
    peer: SocketAddr,
) -> impl tower::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    use tower::ServiceExt;
    router.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    })
}

/// The timers of one connection (what [`Guarded`] and the handshake need).
#[derive(Clone, Copy)]
struct Timers {
    header_timeout: Duration,
    max_header_bytes: usize,
    idle_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
}

/// Reloads the certificate on every `SIGHUP` until `shutdown`.
fn reload_on_hangup(certs: Arc<crate::tls::Certificates>, shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP cannot be watched; the TLS certificate will not reload");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangups.recv() => if got.is_none() { return },
            }
            match certs.reload() {
                Ok(()) => tracing::info!(
                    cert = %certs.files().cert.display(),
                    "SIGHUP: the TLS certificate was reloaded; new connections use it"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the TLS certificate could not be reloaded; the one in use stays"
                ),
            }
        }
    });
}

/// Serves `router` on `listener` until `shutdown` fires, then drains.
/// With `tls` every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: HttpConfig,
    tls: Option<Arc<crate::tls::Certificates>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let options = Timers {
        header_timeout: options.header_timeout,
        max_header_bytes: options.max_header_bytes,
        idle_timeout: options.idle_timeout,
        write_timeout: options.write_timeout,
        max_connections: options.max_connections,
    };
    let acceptor = tls.map(|certs| {
        reload_on_hangup(certs.clone(), shutdown.clone());
        certs.acceptor()
    });
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::events::LimitReached {
                limit: Refusal::MaxConnections,
            }
            .emit(&metrics);
            connections.spawn(refuse(stream, options));
            continue;
        };
        let (router, stop) = (router.clone(), shutdown.clone());
        let open = OpenConnection::new(&metrics);
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _slot = (slot, open);
            let io = Guarded::new(stream, options);
            let Some(acceptor) = acceptor else {
                return http_connection(io, router, peer, options, stop).await;
            };
            let handshake = tokio::select! {
                _ = stop.cancelled() => return,
                h = tokio::time::timeout(options.header_timeout, acceptor.accept(io)) => h,
            };
            match handshake {
                Ok(Ok(tls)) => http_connection(tls, router, peer, options, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not done within http.header_timeout")
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// HTTP/1.1 on one connection (plain or TLS) until it ends or shutdown.
async fn http_connection<I>(
    io: I,
    router: Router,
    peer: SocketAddr,
    options: Timers,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_header_size(options.max_header_bytes);
    let conn = http
        .serve_connection(
            TokioIo::new(io),
            TowerToHyperService::new(with_peer(router, peer)),
        )
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// Counts a connection in `streamforge_api_connections` while it is open.
struct OpenConnection(Metrics);

impl OpenConnection {
    fn new(metrics: &Metrics) -> Self {
        metrics.api_connection(1);
        OpenConnection(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.api_connection(-1);
    }
}

/// The answer to a connection over the limit: a `503` with a JSON error.
async fn refuse(mut stream: TcpStream, options: Timers) {
    let body = format!(
        r#"{{"error":"server busy","detail":"{} connections are open, the most this server takes (http.max_connections); retry later"}}"#,
        options.max_connections
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Take what the client sent (its request) before closing: closing
        // with unread data would reset the connection, and the client might
        // never see the answer.
        let mut sink = [0u8; 4096];
        let mut taken = 0;
        while taken < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => taken += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = tokio::time::timeout(options.write_timeout.min(Duration::from_secs(2)), answer).await;
}

/// A connection's socket with the idle and write timers.
struct Guarded {
    io: TcpStream,
    idle_timeout: Duration,
    write_timeout: Duration,
    last_active: Instant,
    idle: Pin<Box<Sleep>>,
    /// Running while a write waits for the client.
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    fn new(io: TcpStream, options: Timers) -> Self {
        let now = Instant::now();
        Guarded {
            io,
            idle_timeout: options.idle_timeout,
            write_timeout: options.write_timeout,
            last_active: now,
            idle: Box::pin(tokio::time::sleep_until(now + options.idle_timeout)),
            write_stalled: None,
        }
    }

    /// `Err` once nothing moved for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.idle.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let due = self.last_active + self.idle_timeout;
            if due <= Instant::now() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no byte sent or taken for {:?} (http.idle_timeout)",
                        self.idle_timeout
                    ),
                ));
            }
            self.idle.as_mut().reset(due);
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.last_active = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.poll_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl Guarded {
    fn poll_written<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.write_stalled = None;
                self.last_active = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let stalled = self
                    .write_stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(stalled.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client took nothing for {timeout:?} (http.write_timeout)"),
                )))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.poll_written(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.poll_written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.poll_written(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
