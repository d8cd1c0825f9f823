//! A CA and a server certificate for 127.0.0.1, localhost and the test organisations' hosts,
//! made by rcgen for this test run.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

pub struct Certs {
    /// Where the PEM files are, removed when the certificates are dropped.
    dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Certs {
    pub fn generate() -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringfence test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let names = [
            "localhost",
            "127.0.0.1",
            "lyncweb.contoso.com",
            "*.contoso.com",
            "lync.fabrikam.com",
        ];
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(vec!["ringfence".to_string()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        let dir = super::common::scratch();
        let certs = Certs {
            dir,
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(certs.ca_path(), &certs.ca_pem).unwrap();
        std::fs::write(
            certs.server_cert_path(),
            format!("{}{}", certs.cert_pem, certs.ca_pem),
        )
        .unwrap();
        std::fs::write(certs.server_key_path(), &certs.key_pem).unwrap();
        std::fs::write(certs.client_cert_path(), client_cert.pem()).unwrap();
        std::fs::write(certs.client_key_path(), client_key.serialize_pem()).unwrap();
        certs
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn server_cert_path(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// The client certificate ringfence presents to a pool that wants mutual TLS.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    pub fn client_key_path(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// A pool member's configuration that refuses clients without a certificate from the CA.
    pub fn server_config_requiring_client_certs(&self) -> Arc<rustls::ServerConfig> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(self.server_cert_path())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(self.server_key_path()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        Arc::new(config)
    }

    /// A rustls server configuration with the server certificate (for TLS pool members).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let tls =
            ringfence::config::ServerTls::new(self.server_cert_path(), self.server_key_path());
        ringfence::tls::server_config(&tls, true).unwrap()
    }

    /// A client configuration trusting only the test CA.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let tls = ringfence::config::UpstreamTls {
            ca_file: Some(self.ca_path()),
            server_name: None,
            cert: None,
            key: None,
        };
        ringfence::tls::client_config(Some(&tls)).unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
