//! The library's TLS 1.3 exporter (`jose_binding::exporter`, used by
//! jose-debug on key logs and by a TLS-terminating frontend's hand-off)
//! against a second, independent implementation: rustls itself. For each
//! TLS 1.3 suite, a real handshake on loopback; the server's key log gives
//! the exporter secret, and the EKM computed from it and the suite's name
//! equals what both ends export.

use std::sync::{Arc, Mutex};

use jose_binding::exporter::{channel_binding_ekm, SuiteHash};
use jose_binding::tls;
use jose_binding_e2e::fixtures;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;

/// Keeps the `EXPORTER_SECRET` the server logs.
#[derive(Debug, Default)]
struct ExporterSecret(Mutex<Option<Vec<u8>>>);

impl rustls::KeyLog for ExporterSecret {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "EXPORTER_SECRET" {
            *self.0.lock().unwrap() = Some(secret.to_vec());
        }
    }
    fn will_log(&self, label: &str) -> bool {
        label == "EXPORTER_SECRET"
    }
}

#[tokio::test]
async fn the_ekm_from_an_exporter_secret_is_what_rustls_exports_for_every_suite() {
    let chain = tls::load_certs(&fixtures().join("server.pem")).unwrap();
    let key = tls::load_key(&fixtures().join("server.key")).unwrap();
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let base = tls::provider();
    let suites: Vec<_> = base
        .cipher_suites
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    assert!(suites.len() >= 3, "AES-128-GCM, AES-256-GCM, ChaCha20");
    for suite in suites {
        let provider = Arc::new(CryptoProvider {
            cipher_suites: vec![suite],
            ..(*base).clone()
        });
        let secret = Arc::new(ExporterSecret::default());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .unwrap();
        server.key_log = secret.clone();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let accepted = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls_stream = acceptor.accept(tcp).await.unwrap();
            tls::export_ekm(tls_stream.get_ref().1).unwrap()
        });
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        let client_ekm = tls::export_ekm(stream.get_ref().1).unwrap();
        let server_ekm = accepted.await.unwrap();
        assert_eq!(client_ekm.expose(), server_ekm.expose());

        // The suite as HAProxy's ssl_fc_cipher and OpenSSL name it.
        let rustls_name = format!("{:?}", suite.suite());
        let iana = rustls_name.replacen("TLS13_", "TLS_", 1);
        let hash = SuiteHash::for_cipher(&iana).unwrap_or_else(|| panic!("{iana}"));
        let exporter_secret = secret
            .0
            .lock()
            .unwrap()
            .clone()
            .expect("EXPORTER_SECRET logged");
        assert_eq!(exporter_secret.len(), hash.output_len(), "{iana}");
        let computed = channel_binding_ekm(hash, &exporter_secret).unwrap();
        assert_eq!(computed.expose(), client_ekm.expose(), "{iana}");
    }
}
