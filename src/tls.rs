//! rustls configuration for the client-facing listener and the connections to the pool.
//!
//! Every file is read, and every private key checked against its certificate, here at load
//! ([`CertifiedKey::keys_match`]), so a bad pair stops `run` and `check-config` instead of failing
//! the first handshake. Each error names the configuration key of the file it is about.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, InconsistentKeys, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ServerTls, UpstreamTls};

/// The configuration key a TLS file is named by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsKey {
    ServerCert,
    ServerKey,
    UpstreamCa,
    UpstreamCert,
    UpstreamKey,
}

impl TlsKey {
    pub fn path(self) -> &'static str {
        match self {
            TlsKey::ServerCert => "server.tls.cert",
            TlsKey::ServerKey => "server.tls.key",
            TlsKey::UpstreamCa => "upstream.tls.ca_file",
            TlsKey::UpstreamCert => "upstream.tls.cert",
            TlsKey::UpstreamKey => "upstream.tls.key",
        }
    }
}

impl fmt::Display for TlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// What a PEM file was expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Certificate,
    PrivateKey,
}

impl fmt::Display for Wanted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Wanted::Certificate => "certificate",
            Wanted::PrivateKey => "private key",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {error}", path.display())]
    Read {
        key: TlsKey,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{key}: {} is not valid PEM: {error}", path.display())]
    Pem {
        key: TlsKey,
        path: PathBuf,
        error: String,
    },
    #[error("{key}: {} holds no {wanted} ({})", path.display(), found_text(*wanted, found))]
    Missing {
        key: TlsKey,
        path: PathBuf,
        wanted: Wanted,
        /// The PEM sections the file does hold.
        found: Vec<SectionKind>,
    },
    #[error("{key}: {} cannot be used: {error}", path.display())]
    Unusable {
        key: TlsKey,
        path: PathBuf,
        error: rustls::Error,
    },
    #[error("{key}: does not match the certificate in {certificate}")]
    KeyMismatch { key: TlsKey, certificate: TlsKey },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The configuration key the error is about, when it is about a file.
    pub fn key(&self) -> Option<TlsKey> {
        match self {
            TlsError::Read { key, .. }
            | TlsError::Pem { key, .. }
            | TlsError::Missing { key, .. }
            | TlsError::Unusable { key, .. }
            | TlsError::KeyMismatch { key, .. } => Some(*key),
            TlsError::Rustls(_) => None,
        }
    }
}

fn found_text(wanted: Wanted, found: &[SectionKind]) -> String {
    if found.is_empty() {
        return match wanted {
            Wanted::Certificate => "no PEM section it can read".into(),
            Wanted::PrivateKey => {
                "no PEM section it can read; a key must be unencrypted PKCS#8, PKCS#1 or SEC1"
                    .into()
            }
        };
    }
    let mut labels: Vec<&str> = Vec::new();
    for kind in found {
        let label = label(*kind);
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    format!("found a {}", labels.join(" and a "))
}

/// The PEM label of a section, as the file spells it.
fn label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        // SectionKind is non-exhaustive: a label added later is still reported, unnamed.
        _ => "PEM section of another kind",
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every PEM section of a file.
fn sections(key: TlsKey, path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let err = |e: pem::Error| match e {
        pem::Error::Io(error) => TlsError::Read {
            key,
            path: path.to_owned(),
            error,
        },
        other => TlsError::Pem {
            key,
            path: path.to_owned(),
            error: other.to_string(),
        },
    };
    <(SectionKind, Vec<u8>)>::pem_file_iter(path)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)
}

fn missing(
    key: TlsKey,
    path: &Path,
    wanted: Wanted,
    sections: &[(SectionKind, Vec<u8>)],
) -> TlsError {
    TlsError::Missing {
        key,
        path: path.to_owned(),
        wanted,
        found: sections.iter().map(|(kind, _)| *kind).collect(),
    }
}

fn certificates(key: TlsKey, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let all = sections(key, path)?;
    let certs: Vec<CertificateDer<'static>> = all
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        return Err(missing(key, path, Wanted::Certificate, &all));
    }
    Ok(certs)
}

/// The first private key of a file (PKCS#8, PKCS#1 or SEC1).
fn private_key(key: TlsKey, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let all = sections(key, path)?;
    all.iter()
        .find_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(der.clone().into())),
            SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(der.clone().into())),
            SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(der.clone().into())),
            _ => None,
        })
        .ok_or_else(|| missing(key, path, Wanted::PrivateKey, &all))
}

/// A certificate chain with its private key, refused unless the key is the certificate's.
fn certified_key(
    (cert_key, cert): (TlsKey, &Path),
    (key_key, key): (TlsKey, &Path),
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_key, cert)?;
    let der = private_key(key_key, key)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|error| TlsError::Unusable {
            key: key_key,
            path: key.to_owned(),
            error,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key cannot tell its public half; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            key: key_key,
            certificate: cert_key,
        }),
        Err(error) => Err(TlsError::Unusable {
            key: cert_key,
            path: cert.to_owned(),
            error,
        }),
    }
}

/// The listener's certificate and key (`server.tls`), checked against each other.
pub fn server_key(tls: &ServerTls) -> Result<CertifiedKey, TlsError> {
    certified_key(
        (TlsKey::ServerCert, &tls.cert),
        (TlsKey::ServerKey, &tls.key),
    )
}

/// The listener's certificate and key, swapped in place when a reload or a change of the files
/// brings a new pair: handshakes after the swap present the new one, connections already open
/// keep theirs, and nothing else of the TLS configuration changes.
#[derive(Debug)]
pub struct ServerCertificate {
    current: ArcSwap<CertifiedKey>,
}

impl ServerCertificate {
    fn new(key: CertifiedKey) -> ServerCertificate {
        ServerCertificate {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Presents `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// When the certificate presented now expires (`notAfter`), in seconds since the Unix epoch.
    pub fn not_after(&self) -> Option<i64> {
        not_after(self.current.load().cert.first()?)
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        note_server_name(hello.server_name());
        Some(self.current.load_full())
    }
}

/// Whether the thread is running a handshake step that wants the client's server name, and what
/// the certificate resolver saw.
enum Noting {
    Off,
    Waiting,
    Saw(Option<Arc<str>>),
}

thread_local! {
    static NOTED: Cell<Noting> = const { Cell::new(Noting::Off) };
}

/// Runs `step` (a call into rustls) and returns with it the server name of the last ClientHello
/// the certificate resolver was asked about meanwhile (outer None: it was not asked). rustls'
/// unbuffered server connection does not tell its SNI (0.23); but every ClientHello it answers
/// is resolved first, within the call, on this thread ([`note_server_name`]).
pub fn noting_server_name<R>(step: impl FnOnce() -> R) -> (R, Option<Option<Arc<str>>>) {
    let outer = NOTED.replace(Noting::Waiting);
    let result = step();
    match NOTED.replace(outer) {
        Noting::Saw(name) => (result, Some(name)),
        Noting::Off | Noting::Waiting => (result, None),
    }
}

/// Called by the certificate resolver with a ClientHello's server name.
fn note_server_name(name: Option<&str>) {
    NOTED.with(|noted| match noted.replace(Noting::Off) {
        Noting::Off => {}
        Noting::Waiting | Noting::Saw(_) => noted.set(Noting::Saw(name.map(Arc::from))),
    });
}

/// The listener's TLS: the configuration its acceptor uses, and the certificate inside it.
pub struct ServerTlsSetup {
    pub config: Arc<ServerConfig>,
    pub certificate: Arc<ServerCertificate>,
}

/// The listener's configuration; ALPN offers h2 only when HTTP/2 is enabled.
pub fn server_setup(tls: &ServerTls, http2: bool) -> Result<ServerTlsSetup, TlsError> {
    let certificate = Arc::new(ServerCertificate::new(server_key(tls)?));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
    // A TLS 1.3 session's traffic keys go to ringfence's record layer after the handshake
    // (src/listener/tls/record.rs): it keeps far less per idle connection than rustls' session.
    config.enable_secret_extraction = true;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(ServerTlsSetup {
        config: Arc::new(config),
        certificate,
    })
}

/// [`server_setup`]'s configuration alone (tests and the simulated pool).
pub fn server_config(tls: &ServerTls, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
    server_setup(tls, http2).map(|setup| setup.config)
}

/// A certificate's `notAfter`, in seconds since the Unix epoch; None when it cannot be parsed
/// (rustls accepted it, so that does not happen for a configured certificate).
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The `notAfter` of the first certificate in a PEM file (the upstream client certificate).
pub fn file_not_after(path: &Path) -> Option<i64> {
    let first = CertificateDer::pem_file_iter(path).ok()?.next()?.ok()?;
    not_after(&first)
}

/// The pool's configuration: the configured CA (no public roots: a pool has its own CA),
/// and a client certificate when the pool wants mutual TLS.
pub fn client_config(tls: Option<&UpstreamTls>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = tls.and_then(|t| t.ca_file.as_deref()) {
        for cert in certificates(TlsKey::UpstreamCa, ca)? {
            roots.add(cert).map_err(|error| TlsError::Unusable {
                key: TlsKey::UpstreamCa,
                path: ca.to_owned(),
                error,
            })?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(
        match tls.and_then(|t| t.cert.as_deref().zip(t.key.as_deref())) {
            Some((cert, key)) => {
                let certified =
                    certified_key((TlsKey::UpstreamCert, cert), (TlsKey::UpstreamKey, key))?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            None => builder.with_no_client_auth(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, as PEM files in a fresh directory.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringfence-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused_at_load() {
        let d = dir("mismatch");
        let (cert, _) = pair(&d, "a");
        let (_, key) = pair(&d, "b");
        let e = server_config(&ServerTls::new(cert, key), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server.tls.key: does not match the certificate in server.tls.cert"
        );
        let (ca, _) = pair(&d, "ca");
        let (cert, _) = pair(&d, "c");
        let (_, key) = pair(&d, "d");
        let upstream = UpstreamTls {
            ca_file: Some(ca),
            server_name: None,
            cert: Some(cert),
            key: Some(key),
        };
        let e = client_config(Some(&upstream)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "upstream.tls.key: does not match the certificate in upstream.tls.cert"
        );
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_file_holding_the_wrong_pem_says_what_it_found() {
        let d = dir("swapped");
        let (cert, key) = pair(&d, "a");
        let e = server_config(&ServerTls::new(key.clone(), cert.clone()), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "server.tls.cert: {} holds no certificate (found a PRIVATE KEY)",
                key.display()
            )
        );
        let e = server_config(&ServerTls::new(cert.clone(), cert.clone()), true).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "server.tls.key: {} holds no private key (found a CERTIFICATE)",
                cert.display()
            )
        );
        assert_eq!(e.key(), Some(TlsKey::ServerKey));
        let upstream = UpstreamTls {
            ca_file: Some(key.clone()),
            server_name: None,
            cert: None,
            key: None,
        };
        let e = client_config(Some(&upstream)).unwrap_err();
        assert!(e.to_string().starts_with("upstream.tls.ca_file: "), "{e}");
        assert!(server_config(&ServerTls::new(cert, key), false).is_ok());
        let _ = std::fs::remove_dir_all(d);
    }
}
