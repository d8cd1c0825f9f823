//! rustls configuration for the client-facing listener and the connections to the pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ServerTls, UpstreamTls};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM certificates from {path}: {message}")]
    Certificates { path: PathBuf, message: String },
    #[error("cannot read a PEM private key from {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Certificates {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate found".into()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The listener's configuration; ALPN offers h2 only when HTTP/2 is enabled.
pub fn server_config(tls: &ServerTls, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates(&tls.cert)?, private_key(&tls.key)?)?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// The pool's configuration: the configured CA (no public roots: a pool has its own CA),
/// and a client certificate when the pool wants mutual TLS.
pub fn client_config(tls: Option<&UpstreamTls>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = tls.and_then(|t| t.ca_file.as_deref()) {
        for cert in certificates(ca)? {
            roots.add(cert)?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(
        match tls.and_then(|t| t.cert.as_deref().zip(t.key.as_deref())) {
            Some((cert, key)) => {
                builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
            }
            None => builder.with_no_client_auth(),
        },
    )
}
