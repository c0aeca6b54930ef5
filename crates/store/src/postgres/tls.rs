//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert`.
//!
//! The store URL's `sslmode` means what it means to `psql`:
//! - `disable`: no TLS;
//! - `prefer` (the default): TLS when the server offers it, else plain;
//!   the certificate is not checked;
//! - `require`: TLS or no connection; the certificate is not checked
//!   unless `sslrootcert` is given (then as `verify-ca`);
//! - `verify-ca`: TLS, the certificate must be signed by the CA in
//!   `sslrootcert` (default `~/.postgresql/root.crt`);
//! - `verify-full`: as `verify-ca`, and the certificate must name the host
//!   connected to.
//!
//! `sslrootcert` is read here; the URL handed to the driver keeps `sslmode`
//! as `disable`, `prefer` or `require` (all it knows).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::StoreError;

/// What `sslmode` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What the driver is told.
    fn driver(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        }
    }
}

/// The TLS settings of a store URL, and the URL the driver parses.
#[derive(Debug)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    pub driver_url: String,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (URL or `key=value`
/// form).
pub fn settings(url: &str) -> Result<TlsSettings, StoreError> {
    let bad = |reason: String| StoreError::Url {
        url: crate::redact_url(url),
        reason,
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => {
                mode = Some(SslMode::parse(value).ok_or_else(|| {
                    bad(format!(
                        "sslmode={value} is not one of disable, prefer, require, verify-ca, verify-full"
                    ))
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(percent_decoded(value)));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let mut kept = Vec::new();
    let driver_url = if url.contains("://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, v)? {
                kept.push(pair.to_string());
            }
        }
        let mode = mode.unwrap_or(SslMode::Prefer);
        kept.push(format!("sslmode={}", mode.driver()));
        format!("{base}?{}", kept.join("&"))
    } else {
        for pair in url.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, v.trim_matches('\''))? {
                kept.push(pair.to_string());
            }
        }
        let mode = mode.unwrap_or(SslMode::Prefer);
        kept.push(format!("sslmode={}", mode.driver()));
        kept.join(" ")
    };
    let mode = mode.unwrap_or(SslMode::Prefer);
    Ok(TlsSettings {
        // libpq: `require` with a root certificate verifies as verify-ca.
        mode: if mode == SslMode::Require && root_cert.is_some() {
            SslMode::VerifyCa
        } else {
            mode
        },
        root_cert,
        driver_url,
    })
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector for `settings`: rustls, verifying as the mode says.
pub fn connector(
    settings: &TlsSettings,
    url: &str,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |reason: String| StoreError::Url {
        url: crate::redact_url(url),
        reason,
    };
    let chain = match settings.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => None,
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let path = match &settings.root_cert {
                Some(p) => p.clone(),
                None => default_root().ok_or_else(|| {
                    bad("sslmode=verify-ca/verify-full needs sslrootcert=<CA file> (or ~/.postgresql/root.crt)".into())
                })?,
            };
            let roots = roots(&path).map_err(bad)?;
            Some(
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .build()
                .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?,
            )
        }
    };
    let verifier = Arc::new(Verifier {
        chain,
        check_name: settings.mode == SslMode::VerifyFull,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn default_root() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql/root.crt");
    path.exists().then_some(path)
}

fn roots(path: &Path) -> Result<Arc<rustls::RootCertStore>, String> {
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown}: no PEM certificate in it"));
    }
    Ok(Arc::new(roots))
}

/// What the mode checks of the server's certificate: nothing (`prefer`,
/// `require` without a root, as libpq), the chain (`verify-ca`), or the
/// chain and the host name (`verify-full`). The handshake's signatures are
/// checked in every mode.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let s = settings("postgres://app:pw@db/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&application_name=sf").unwrap();
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(Path::new("/etc/ca.crt")));
        assert_eq!(
            s.driver_url,
            "postgres://app:pw@db/x?application_name=sf&sslmode=require"
        );
        let s = settings("postgres://db/x").unwrap();
        assert_eq!(s.mode, SslMode::Prefer);
        assert_eq!(s.driver_url, "postgres://db/x?sslmode=prefer");
        let s = settings("postgres://db/x?sslmode=require&sslrootcert=ca.crt").unwrap();
        assert_eq!(
            s.mode,
            SslMode::VerifyCa,
            "libpq: require with a root verifies"
        );
        let s = settings("host=db user=app sslmode=verify-ca sslrootcert='/ca.crt'").unwrap();
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.driver_url, "host=db user=app sslmode=require");
        let e = settings("postgres://u:secret@db/x?sslmode=always")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sslmode=always") && !e.contains("secret"), "{e}");
    }

    #[test]
    fn verifying_needs_a_readable_root_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let url = format!(
            "postgres://db/x?sslmode=verify-full&sslrootcert={}",
            missing.display()
        );
        let e = connector(&settings(&url).unwrap(), &url)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing.crt"), "{e}");
        std::fs::write(&missing, "no certificate").unwrap();
        let e = connector(&settings(&url).unwrap(), &url)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
