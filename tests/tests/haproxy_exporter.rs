//! What issue 23's frontend mode stands on, checked against the real
//! HAProxy of Debian's package: terminating TLS 1.3, it hands each request
//! its connection's exporter secret and cipher (`ssl_fc_exporter_secret`,
//! `ssl_fc_cipher`, with `tune.ssl.keylog on`), and the EKM computed from
//! them (`jose_binding::exporter`) is the one the client exports on its own
//! connection; a client's forged header is overwritten, and each client
//! connection has its own.

use std::sync::Arc;

use jose_binding::exporter::{channel_binding_ekm, SuiteHash};
use jose_binding::tls;
use jose_binding_e2e::haproxy::Haproxy;
use jose_binding_e2e::upstream::HyperUpstream;
use jose_binding_e2e::{fixtures, read_head};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len().is_multiple_of(2).then_some(())?;
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A TLS 1.3 connection to HAProxy; what it exports, and the headers the
/// backend saw for one request (which also sends a forged secret).
async fn one_request(front: u16) -> ([u8; 32], Vec<(String, String)>) {
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let cfg = tls::client_config(roots, &[tls::ALPN_HTTP11]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", front))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let ekm = *tls::export_ekm(stream.get_ref().1).unwrap().expose();
    let forged = "00".repeat(32);
    let req = format!(
        "GET /headers HTTP/1.1\r\nHost: localhost\r\nx-jose-binding-exporter-secret: {forged}\r\n\
         x-jose-binding-ekm: {forged}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await.expect("a response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = Vec::new();
    let _ = stream.read_to_end(&mut body).await;
    let body = String::from_utf8_lossy(&body);
    // The body may be chunked: the JSON object is between the outer braces.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let headers = v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_owned(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (ekm, headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_hands_on_the_secret_the_clients_ekm_follows_from() {
    let backend = HyperUpstream::start().await;
    let (_lb, front) = Haproxy::terminating("exporter", backend.addr.port(), false);

    let mut seen = Vec::new();
    for _ in 0..3 {
        let (client_ekm, headers) = one_request(front).await;
        let values = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let secrets = values("x-jose-binding-exporter-secret");
        assert_eq!(
            secrets.len(),
            1,
            "set-header replaces the forged one: {headers:?}"
        );
        assert!(values("x-jose-binding-ekm").is_empty(), "{headers:?}");
        let cipher = values("x-jose-binding-tls-cipher");
        assert_eq!(cipher.len(), 1, "{headers:?}");
        let hash = SuiteHash::for_cipher(cipher[0]).unwrap_or_else(|| panic!("{cipher:?}"));
        let secret = unhex(secrets[0]).expect("hex");
        let ekm = channel_binding_ekm(hash, &secret).expect("a secret of the suite's length");
        assert_eq!(
            ekm.expose(),
            &client_ekm,
            "the EKM from HAProxy's secret is the client's own"
        );
        seen.push(client_ekm);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "each client connection has its own EKM");
}
