//! The certificate and key are reloaded on SIGHUP, as the keystore is: new
//! connections get the new pair, open ones keep working, and a broken pair
//! keeps the one in force, logged at ERROR without key material.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::tls::{self, CertSummary};
use jose_binding::{ClientId, Form};
use jose_binding_e2e::{fixture_key, fixtures, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::Server;

/// A test CA; `leaf(name)` gives a localhost certificate (PEM) with
/// subject CN=name and its key (PEM).
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "reload test CA");
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    fn leaf(&self, name: &str) -> (String, String) {
        let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Replaces `path` whole (write beside it, rename), as deploy tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The subject of the certificate a new TLS connection to `port` is shown.
async fn subject_seen(port: u16, roots: &rustls::RootCertStore) -> String {
    let config = tls::client_config(roots.clone(), &[tls::ALPN_HTTP11]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let leaf = &conn.get_ref().1.peer_certificates().unwrap()[0];
    CertSummary::of(leaf).unwrap().subject
}

/// The base64 body lines of a PEM key: none may reach the log.
fn key_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reloads_on_sighup_and_a_broken_pair_keeps_the_old_one() {
    let dir = TempDir::new("cert-reload");
    let ca = Ca::new();
    let (cert_a, key_a) = ca.leaf("pair-a");
    let (cert_b, key_b) = ca.leaf("pair-b");
    let (cert_c, _key_c) = ca.leaf("pair-c");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    replace(&cert, &cert_a);
    replace(&key, &key_a);
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.cert.pem()).unwrap();
    let roots = tls::load_roots(&ca_pem).unwrap();

    let keystore = fixtures().join("keystore.toml");
    let mut server = Server::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--keystore",
            keystore.to_str().unwrap(),
        ],
        &dir,
        &[],
    )
    .expect("server starts");
    assert!(server.log.last().unwrap().contains("subject=\"CN=pair-a\""));
    assert_eq!(subject_seen(server.port, &roots).await, "CN=pair-a");

    // A connection made with pair A, kept open throughout.
    let setup = ClientSetup::new(
        roots.clone(),
        HttpVersion::Auto,
        ClientId::new("client1").unwrap(),
        Arc::new(fixture_key("client1")),
    )
    .unwrap();
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    let mut old = BoundConnection::connect(&target, &setup).await.unwrap();
    let send = async |c: &mut BoundConnection| {
        c.send(Form::Signed, &serde_json::json!({}))
            .await
            .unwrap()
            .status
    };
    assert_eq!(send(&mut old).await, 200);

    // Pair B, then SIGHUP: new connections see B, the old one still works.
    replace(&key, &key_b);
    replace(&cert, &cert_b);
    server.hup();
    let line = server
        .wait_for("certificate reloaded", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload in {:?}", server.log));
    assert!(line.contains("CN=pair-b"), "{line}");
    assert_eq!(subject_seen(server.port, &roots).await, "CN=pair-b");
    assert_eq!(send(&mut old).await, 200, "the connection made with A");
    let mut fresh = BoundConnection::connect(&target, &setup).await.unwrap();
    assert_eq!(send(&mut fresh).await, 200);

    // A certificate whose key is not the one beside it: B stays.
    replace(&cert, &cert_c);
    replace(&key, &key_a);
    server.hup();
    let line = server
        .wait_for("certificate reload failed", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload error in {:?}", server.log));
    assert!(
        line.contains("ERROR") && line.contains("does not belong"),
        "{line}"
    );
    assert_eq!(subject_seen(server.port, &roots).await, "CN=pair-b");

    // An unparseable key: B stays.
    replace(&cert, &cert_a);
    replace(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot base64 at all!\n-----END PRIVATE KEY-----\n",
    );
    server.hup();
    let line = server
        .wait_for("certificate reload failed", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no reload error in {:?}", server.log));
    assert!(line.contains("key.pem"), "{line}");
    assert_eq!(subject_seen(server.port, &roots).await, "CN=pair-b");
    assert_eq!(send(&mut old).await, 200);
    assert_eq!(send(&mut fresh).await, 200);

    let log = server.log.join("\n");
    for secret in key_lines(&key_a).iter().chain(&key_lines(&key_b)) {
        assert!(
            !log.contains(secret.as_str()),
            "key material in the log: {log}"
        );
    }
}
