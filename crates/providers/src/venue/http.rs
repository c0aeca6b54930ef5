//! The HTTP client of the venues' REST histories: one `GET` per
//! connection (requests are paced far apart), HTTP/1.1 over TCP or TLS
//! (rustls with ring and the webpki roots, so no process-wide TLS
//! default is needed), a deadline on the whole exchange and a bound on the
//! body.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// An answer: status, `Retry-After` (seconds) and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// A client for `http://` and `https://` URLs.
#[derive(Clone)]
pub(crate) struct HttpClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// Trusting the webpki roots (the public CAs).
    pub fn new(timeout: Duration, max_body: usize) -> Result<Self, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self::with_tls(config, timeout, max_body))
    }

    /// With this TLS configuration (its roots).
    pub fn with_tls(mut config: rustls::ClientConfig, timeout: Duration, max_body: usize) -> Self {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        HttpClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            max_body,
        }
    }

    /// `GET url`, within the client's deadline.
    #[cfg(test)]
    pub async fn get(&self, url: &str) -> Result<Answer, String> {
        self.get_with(url, &[]).await
    }

    /// `GET url` with more request `headers` (a key kept out of the URL,
    /// so out of every error message), within the client's deadline.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        match tokio::time::timeout(self.timeout, self.exchange(url, headers)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn exchange(&self, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url}: expected http:// or https://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        let mut request = Request::get(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("streamforge/", env!("CARGO_PKG_VERSION")),
            )
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let response = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: {e}"))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            send(TokioIo::new(tls), request).await?
        } else {
            send(TokioIo::new(tcp), request).await?
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("reading the answer: {e}"))?;
            if let Some(data) = frame.data_ref() {
                if body.len() + data.len() > self.max_body {
                    return Err(format!("the answer is over {} bytes", self.max_body));
                }
                body.extend_from_slice(data);
            }
        }
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// One request on a fresh HTTP/1.1 connection over `io`.
async fn send<T>(
    io: T,
    request: Request<http_body_util::Empty<hyper::body::Bytes>>,
) -> Result<hyper::Response<Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // Driven until the answer has been read (or the request is dropped).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers one request with `answer`.
    async fn answering(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        });
        format!("http://{addr}/api?x=1")
    }

    #[tokio::test]
    async fn https_verifies_the_server_against_the_roots() {
        use streamforge_testkit::tls::TestCa;
        let ca = TestCa::new("history CA");
        let issued = ca.issue(&["localhost"]);
        let certs = vec![rustls::pki_types::CertificateDer::from(issued.der.clone())];
        let key = {
            use rustls::pki_types::pem::PemObject;
            rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap()
        };
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let url = format!("https://localhost:{port}/api/v3/historicalTrades?symbol=X");
        let trusting = HttpClient::with_tls(
            Arc::unwrap_or_clone(ca.client_config()),
            Duration::from_secs(5),
            1024,
        );
        let a = trusting.get(&url).await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"[]"[..]));
        // The public roots do not know this CA.
        let public = HttpClient::new(Duration::from_secs(5), 1024).unwrap();
        let e = public.get(&url).await.unwrap_err();
        assert!(e.contains("TLS with localhost"), "{e}");
    }

    #[tokio::test]
    async fn chunked_and_sized_answers_read_and_limits_hold() {
        let client = HttpClient::new(Duration::from_secs(5), 64).unwrap();
        let url = answering(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
        )
        .await;
        let a = client.get(&url).await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"[1,2]"[..]));
        let url = answering(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        let a = client.get(&url).await.unwrap();
        assert_eq!(
            (a.status, a.retry_after),
            (429, Some(Duration::from_secs(7)))
        );
        let big: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
                "x".repeat(100)
            )
            .into_boxed_str(),
        );
        let e = client.get(&answering(big).await).await.unwrap_err();
        assert!(e.contains("over 64 bytes"), "{e}");
        assert!(client
            .get("ftp://x/")
            .await
            .unwrap_err()
            .contains("http://"));
        let e = client.get("http://127.0.0.1:1/").await.unwrap_err();
        assert!(e.contains("connecting to 127.0.0.1:1"), "{e}");
    }
}
