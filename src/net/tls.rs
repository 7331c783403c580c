//! TLS: certificates from PEM files, chosen by SNI, swappable at run time.
//!
//! A listener's [`CertResolver`] holds its certificates in an `ArcSwap`, so a
//! reload replaces them for new handshakes while established connections keep
//! the session they negotiated. The certificate whose names cover the client's
//! SNI wins; a client without SNI (or with an unknown name) gets the first.
//! ALPN offers `h2` and `http/1.1`.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{CertFiles, TlsSpec};

/// A certificate or key that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The development certificate could not be generated.
    #[error("generating the development certificate: {0}")]
    Generate(String),
}

/// A certificate with the DNS names of its leaf, read once when it is loaded,
/// so choosing by SNI does not parse certificates during handshakes.
#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// Lower-case names; `*.example.com` is kept as its suffix `.example.com`.
    names: Vec<Box<str>>,
}

impl Entry {
    fn new(key: Arc<CertifiedKey>) -> Self {
        let names = key
            .cert
            .first()
            .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
            .map(|ee| {
                ee.valid_dns_names()
                    .map(|n| n.strip_prefix('*').unwrap_or(n).to_ascii_lowercase().into())
                    .collect()
            })
            .unwrap_or_default();
        Entry { key, names }
    }

    /// True when the certificate names `sni`. This only *chooses* a
    /// certificate; the client still verifies the one it is sent.
    fn serves(&self, sni: &str) -> bool {
        self.names.iter().any(|name| match name.strip_prefix('.') {
            // A wildcard covers exactly one more label.
            Some(_) => sni
                .strip_suffix(&**name)
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => sni.eq_ignore_ascii_case(name),
        })
    }
}

/// Picks a certificate by SNI from a swappable list.
#[derive(Debug)]
pub struct CertResolver {
    certs: ArcSwap<Vec<Entry>>,
}

impl CertResolver {
    /// A resolver serving `certs` (at least one).
    pub fn new(certs: Vec<Arc<CertifiedKey>>) -> Self {
        CertResolver {
            certs: ArcSwap::from_pointee(certs.into_iter().map(Entry::new).collect()),
        }
    }

    /// Replaces the certificates for every later handshake.
    pub fn replace(&self, certs: Vec<Arc<CertifiedKey>>) {
        self.certs
            .store(Arc::new(certs.into_iter().map(Entry::new).collect()));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.load();
        let sni = hello.server_name().map(str::to_ascii_lowercase);
        sni.and_then(|sni| certs.iter().find(|c| c.serves(&sni)))
            .or_else(|| certs.first())
            .map(|c| c.key.clone())
    }
}

/// A rustls configuration using `resolver`, offering `h2` and `http/1.1`.
pub fn server_config(resolver: Arc<CertResolver>) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ServerConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS));
    let mut config = builder.with_no_client_auth().with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Loads every certificate of `spec`, first generating the development
/// certificate when asked to and its files are missing.
pub fn load(spec: &TlsSpec) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    if spec.dev_certificate {
        if let Some(first) = spec.certificates.first() {
            if !first.cert.exists() || !first.key.exists() {
                generate_dev_certificate(first)?;
            }
        }
    }
    spec.certificates.iter().map(load_pair).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Loads one PEM certificate chain and its key.
pub fn load_pair(files: &CertFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: files.cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: files.cert.display().to_string(),
            reason: "no certificate found".to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let signing = any_supported_type(&key).map_err(|e| TlsError::Pem {
        path: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing);
    if let Err(e) = certified.keys_match() {
        if !matches!(
            e,
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)
        ) {
            return Err(TlsError::Pem {
                path: files.key.display().to_string(),
                reason: format!("does not match {}: {e}", files.cert.display()),
            });
        }
    }
    Ok(Arc::new(certified))
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
pub fn generate_dev_certificate(files: &CertFiles) -> Result<(), TlsError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    for (path, contents) in [
        (&files.cert, generated.cert.pem()),
        (&files.key, generated.key_pair.serialize_pem()),
    ] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| TlsError::Io {
                path: path.display().to_string(),
                source,
            })?;
    }
    tracing::info!(cert = %files.cert.display(), "generated a self-signed development certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str]) -> Entry {
        let generated = rcgen::generate_simple_self_signed(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der()).unwrap();
        let signing = any_supported_type(&key).unwrap();
        Entry::new(Arc::new(CertifiedKey::new(
            vec![generated.cert.der().clone()],
            signing,
        )))
    }

    #[test]
    fn names_are_read_once_and_wildcards_cover_one_label() {
        let e = entry(&["a.example.com", "*.b.example.com"]);
        assert!(e.serves("a.example.com"));
        assert!(e.serves("x.b.example.com"));
        assert!(!e.serves("b.example.com"));
        assert!(!e.serves("y.x.b.example.com"));
        assert!(!e.serves("c.example.com"));
    }
}
