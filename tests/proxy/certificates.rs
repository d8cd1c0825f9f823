//! The listener's certificate without a restart (issue #11): a reload reads the certificate and
//! key again, a change of the files is noticed and loaded, and a pair that cannot be used keeps
//! the one in use and counts as a failed reload. Its expiry and the configuration's hash are
//! exported.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ringfence::server::Server;
use ringfence::sim;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::support::{self, eventually, metrics::sample, ConfigFile, Toml, HOST};

/// A self-signed certificate for the test host that expires at the start of `year`.
struct Pair {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn pair(year: i32) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["lyncweb.contoso.com".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn write(dir: &Path, cert_pem: &str, key_pem: &str) {
    // As an ACME client does: a new file renamed over the old one.
    for (name, text) in [("tls.crt", cert_pem), ("tls.key", key_pem)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// Accepts any certificate: the test asks which one the server presents, not whether to trust it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate a new TLS connection to `server` is shown.
async fn presented(server: &Server) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addrs()[0])
        .await
        .unwrap();
    let name = ServerName::try_from(HOST).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

struct Running {
    server: Server,
    file: ConfigFile,
    _member: sim::FrontEnd,
}

impl Running {
    async fn start(watch: &str, first: &Pair) -> Running {
        let member = sim::FrontEnd::start("fe1").await.unwrap();
        let text = Toml::new(&[member.url()])
            .server(&format!(
                "tls = {{ cert = \"tls.crt\", key = \"tls.key\", watch_interval = \"{watch}\" }}"
            ))
            .build();
        let file = ConfigFile::new(&text);
        write(file.dir(), &first.cert_pem, &first.key_pem);
        let server = file.serve().await;
        Running {
            server,
            file,
            _member: member,
        }
    }

    fn dir(&self) -> &Path {
        self.file.dir()
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&support::scrape(&self.server).await, name, labels)
    }
}

const EXPIRY: &str = "ringfence_tls_certificate_expiry_timestamp_seconds";
const RELOADS: &str = "ringfence_config_reloads_total";

#[tokio::test]
async fn a_reload_presents_the_new_certificate_and_a_bad_pair_keeps_the_old_one() {
    let (first, second) = (pair(2031), pair(2032));
    let r = Running::start("1h", &first).await;
    assert_eq!(presented(&r.server).await, first.der);
    // 2031-01-01T00:00:00Z
    assert_eq!(
        r.metric(EXPIRY, &[("certificate", "server")]).await,
        Some(1_924_992_000.0)
    );

    write(r.dir(), &second.cert_pem, &second.key_pem);
    r.server
        .shared()
        .reload()
        .await
        .expect("the new pair loads");
    assert_eq!(presented(&r.server).await, second.der);
    // 2032-01-01T00:00:00Z
    assert_eq!(
        r.metric(EXPIRY, &[("certificate", "server")]).await,
        Some(1_956_528_000.0)
    );

    // A key that is not the certificate's: the reload fails and nothing changes.
    write(r.dir(), &first.cert_pem, &second.key_pem);
    let e = r.server.shared().reload().await.unwrap_err();
    assert!(e.to_string().contains("server.tls.key"), "{e}");
    assert_eq!(presented(&r.server).await, second.der);
    assert_eq!(r.metric(RELOADS, &[("result", "failure")]).await, Some(1.0));
    assert_eq!(r.metric(RELOADS, &[("result", "success")]).await, Some(1.0));
}

#[tokio::test]
async fn changed_files_are_loaded_without_a_reload_and_a_bad_pair_is_a_failed_one() {
    let (first, second) = (pair(2031), pair(2032));
    let r = Running::start("100ms", &first).await;
    // The handshake above ran the watcher's first look at the files: this test's runtime has
    // one thread, and the watcher was queued when the server started, before the handshake's
    // tasks. So the files written next are a change it sees.
    assert_eq!(presented(&r.server).await, first.der);
    write(r.dir(), &second.cert_pem, &second.key_pem);
    eventually("the changed files to be loaded", async || {
        presented(&r.server).await == second.der
    })
    .await;
    assert_eq!(r.metric(RELOADS, &[("result", "success")]).await, Some(1.0));

    // The certificate alone replaced, its key never: counted as a failed reload, the pair in
    // use stays.
    std::fs::write(r.dir().join("tls.crt"), &first.cert_pem).unwrap();
    eventually(
        "the bad pair to be counted as a failed reload",
        async || r.metric(RELOADS, &[("result", "failure")]).await == Some(1.0),
    )
    .await;
    assert_eq!(presented(&r.server).await, second.der);

    // Both files deleted, then a good pair written back (fresh-eyes round 4, F4): loaded. The
    // deletion is seen first (a failed reload: the pair cannot be read).
    let third = pair(2033);
    std::fs::remove_file(r.dir().join("tls.crt")).unwrap();
    std::fs::remove_file(r.dir().join("tls.key")).unwrap();
    eventually(
        "the deletion to be counted as a failed reload",
        async || r.metric(RELOADS, &[("result", "failure")]).await == Some(2.0),
    )
    .await;
    write(r.dir(), &third.cert_pem, &third.key_pem);
    eventually(
        "a pair written back after a deletion to be loaded",
        async || presented(&r.server).await == third.der,
    )
    .await;
}

#[tokio::test]
async fn the_configuration_hash_is_exported_and_follows_a_reload() {
    let r = Running::start("1h", &pair(2031)).await;
    let text = std::fs::read_to_string(&r.file.path).unwrap();
    let scrape = support::scrape(&r.server).await;
    let before: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("ringfence_config_info{"))
        .collect();
    assert_eq!(before.len(), 1, "{scrape}");
    let label = before[0].split('"').nth(1).unwrap().to_owned();
    assert_eq!(label.len(), 12, "{label}");
    r.file
        .write(&format!("{text}\n# a comment changes the hash\n"));
    r.server.shared().reload().await.unwrap();
    let scrape = support::scrape(&r.server).await;
    let after: Vec<&str> = scrape
        .lines()
        .filter(|l| l.starts_with("ringfence_config_info{"))
        .collect();
    assert_eq!(
        after.len(),
        1,
        "only the running configuration's hash: {scrape}"
    );
    assert!(!after[0].contains(&label), "{}", after[0]);
}
