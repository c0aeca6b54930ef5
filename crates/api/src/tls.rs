//! HTTPS: the `[http.tls]` certificate and key, reloadable while serving.
//!
//! The certificate chain and private key are PEM files. They are read at
//! start-up (a file that is missing or holds no certificate or key stops the
//! start with an error naming it) and again on `SIGHUP`: new connections
//! get the new certificate, open ones (live streams) keep theirs. A reload
//! that fails keeps the certificate in use and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

/// `[http.tls]`: serve HTTPS with this certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate chain, the server's own first.
    pub cert: PathBuf,
    /// PEM file of its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificate in use, swapped whole on reload.
#[derive(Debug)]
pub struct Certificates {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificates {
    /// Reads the files; the error names the one that is wrong and why.
    pub fn load(files: &TlsConfig) -> Result<Arc<Certificates>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read(files, &provider)?;
        Ok(Arc::new(Certificates {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again; on error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = read(&self.files, &self.provider)?;
        *self.current.write() = Arc::new(key);
        Ok(())
    }

    /// The certificate's files.
    pub fn files(&self) -> &TlsConfig {
        &self.files
    }

    /// The acceptor of TLS connections (HTTP/1.1 over TLS 1.2 and 1.3).
    pub fn acceptor(self: &Arc<Self>) -> tokio_rustls::TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn read(files: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let shown = |p: &Path| p.display().to_string();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| format!("http.tls.cert {}: {e}", shown(&files.cert)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("http.tls.cert {}: {e}", shown(&files.cert)))?;
    if certs.is_empty() {
        return Err(format!(
            "http.tls.cert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            shown(&files.cert)
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "http.tls.key {}: no PEM private key could be read ({e})",
            shown(&files.key)
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("http.tls.key {}: {e}", shown(&files.key)))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "http.tls.key {} is not the key of the certificate in {} ({e})",
            shown(&files.key),
            shown(&files.cert)
        )
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn bad_files_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "a.pem", &a.cert.pem());
        let key = write(dir.path(), "a.key", &a.signing_key.serialize_pem());
        let other_key = write(dir.path(), "b.key", &b.signing_key.serialize_pem());
        let empty = write(dir.path(), "empty.pem", "nothing here\n");
        let ok = TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
        };
        let loaded = Certificates::load(&ok).unwrap();
        let cases = [
            (dir.path().join("missing.pem"), key.clone(), "http.tls.cert"),
            (empty.clone(), key.clone(), "no PEM certificate"),
            (cert.clone(), empty, "http.tls.key"),
            (cert.clone(), other_key, "is not the key of the certificate"),
        ];
        for (cert, key, want) in cases {
            let e = Certificates::load(&TlsConfig { cert, key }).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        // A failed reload keeps the certificate in use.
        std::fs::write(&cert, "broken").unwrap();
        let before = loaded.current.read().clone();
        assert!(loaded.reload().is_err());
        assert!(Arc::ptr_eq(&before, &loaded.current.read()));
        std::fs::write(&cert, b.cert.pem()).unwrap();
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        loaded.reload().unwrap();
        assert_eq!(
            loaded.current.read().end_entity_cert().unwrap().as_ref(),
            b.cert.der().as_ref()
        );
    }
}
