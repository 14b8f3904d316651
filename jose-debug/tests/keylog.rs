//! `--keylog` against a REAL key log: a jwt-server stack on loopback, our own
//! rustls client connections whose `key_log` writes NSS lines to a temporary
//! file (no SSLKEYLOGFILE: it is process-global), a token issued on one of
//! them, and the jose-debug binary asked which connection it belongs to.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jose_binding::{tls, ClientId, Ekm, Form, Issuer, Policy, SubKeys};
use jose_binding_e2e::{fixture_key, fixture_keystore, fixtures, TestServer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

mod support;

/// A `rustls::KeyLog` writing NSS key log lines to a file, and remembering
/// client randoms in the order connections first log them.
#[derive(Debug)]
struct NssFile {
    path: PathBuf,
    randoms: Mutex<Vec<Vec<u8>>>,
}

impl NssFile {
    fn new(path: PathBuf) -> Arc<NssFile> {
        std::fs::write(
            &path,
            "# SSL/TLS secrets log file, written by the jose-debug test\n",
        )
        .unwrap();
        Arc::new(NssFile {
            path,
            randoms: Mutex::new(Vec::new()),
        })
    }

    fn randoms(&self) -> Vec<String> {
        self.randoms
            .lock()
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect()
    }
}

impl rustls::KeyLog for NssFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut randoms = self.randoms.lock().unwrap();
        if !randoms.iter().any(|r| r == client_random) {
            randoms.push(client_random.to_vec());
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .unwrap();
        writeln!(
            f,
            "{label} {} {}",
            hex::encode(client_random),
            hex::encode(secret)
        )
        .unwrap();
    }
}

fn temp_path(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!(
        "jose-debug-{name}-{}-{nanos}.log",
        std::process::id()
    ))
}

/// The project's client configuration (TLS 1.3 only, HTTP/1.1 by ALPN), logging keys.
fn logging_config(log: Arc<NssFile>) -> Arc<ClientConfig> {
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let mut cfg = tls::client_config(roots, &[tls::ALPN_HTTP11]).unwrap();
    cfg.key_log = log;
    Arc::new(cfg)
}

/// The same, restricted to TLS_AES_128_GCM_SHA256 (a SHA-256 exporter secret;
/// the default suite, TLS_AES_256_GCM_SHA384, gives a SHA-384 one).
fn sha256_config(log: Arc<NssFile>) -> Arc<ClientConfig> {
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites =
        vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256];
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
    cfg.key_log = log;
    Arc::new(cfg)
}

async fn open(server: &TestServer, cfg: Arc<ClientConfig>) -> (TlsStream<TcpStream>, Ekm) {
    let tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = TlsConnector::from(cfg).connect(name, tcp).await.unwrap();
    let ekm = tls::export_ekm(stream.get_ref().1).unwrap();
    (stream, ekm)
}

/// One HTTP/1.1 request on the connection; the status code of the answer.
async fn post(stream: &mut TlsStream<TcpStream>, token: &str) -> u16 {
    let req = format!(
        "POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read until the status line is complete; the server may close without close_notify.
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn jose_debug(args: &[&str]) -> (i32, Value) {
    let out = support::run(args, b"");
    (support::code(&out), support::json(&out))
}

fn key_file() -> String {
    format!("@{}", fixtures().join("client1.key").display())
}

fn issue(ekm: &Ekm, form: Form) -> String {
    let id = ClientId::new("client1").unwrap();
    let keys = SubKeys::derive(&fixture_key("client1"), ekm, &id).unwrap();
    Issuer::new(id, "localhost", keys)
        .issue(form, &json!({"role": "ops"}))
        .unwrap()
}

fn run_keylog(log: &Path, token: &str, extra: &[&str]) -> (i32, Value) {
    let log = log.display().to_string();
    let key = key_file();
    let mut args = vec![
        "decode",
        "--json",
        "--keylog",
        &log,
        "--root-key",
        &key,
        "--client-id",
        "client1",
    ];
    args.extend(extra);
    args.push(token);
    jose_debug(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keylog_names_the_connection_a_token_was_made_on() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let path = temp_path("keylog");
    let log = NssFile::new(path.clone());
    let cfg = logging_config(log.clone());
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(open(&server, cfg.clone()).await);
    }
    let randoms = log.randoms();
    assert_eq!(randoms.len(), 3, "one client random per connection");
    let ekms: Vec<String> = conns.iter().map(|(_, e)| hex::encode(e.expose())).collect();

    // A token made on the second connection, accepted there by the real server.
    let token = issue(&conns[1].1, Form::EncryptedThenSigned);
    assert_eq!(post(&mut conns[1].0, &token).await, 200);

    let (code, r) = run_keylog(&path, &token, &[]);
    assert_eq!(code, 0, "{r:#}");
    let kl = &r["keylog"];
    assert_eq!(kl["matched"], randoms[1].as_str(), "{kl:#}");
    let listed = kl["connections"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (i, c) in listed.iter().enumerate() {
        assert_eq!(c["client_random"], randoms[i].as_str());
        // rustls' default suite with aws-lc-rs is TLS_AES_256_GCM_SHA384.
        assert_eq!(c["hash"], "SHA-384");
        assert_eq!(c["opens_token"], i == 1);
        // The EKM computed from the key log is the one rustls exported.
        assert_eq!(c["ekm_fp"], conns[i].1.fingerprint().to_string());
        assert!(c.get("ekm_hex").is_none(), "secrets only on request");
    }
    assert_eq!(listed[1]["root_key_index"], 0);
    assert_eq!(r["verdict"]["outcome"], "accept");
    assert_eq!(r["verdict"]["form"], "encrypted-then-signed");
    assert_eq!(r["keys"]["schedules"][0]["connection"], randoms[1].as_str());
    let out = r.to_string();
    for e in &ekms {
        assert!(
            !out.contains(e.as_str()),
            "EKM printed without --show-secrets"
        );
    }

    // With --show-secrets the EKMs themselves, equal to rustls' exports.
    let (_, r) = run_keylog(&path, &token, &["--show-secrets"]);
    for (i, c) in r["keylog"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(c["ekm_hex"], ekms[i].as_str());
    }

    // A token of another connection that is not in the log: none matches.
    let stranger = issue(&Ekm::from_bytes([0x5a; 32]), Form::Signed);
    let (code, r) = run_keylog(&path, &stranger, &[]);
    assert_eq!(code, 1);
    assert!(r["keylog"].get("matched").is_none());
    assert_eq!(r["verdict"]["code"], "bad_signature");
    assert!(r["keylog"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["opens_token"] == false));

    // The keystore path finds it too, and derive lists every connection.
    let ks = fixtures().join("keystore.toml").display().to_string();
    let p = path.display().to_string();
    let (code, r) = jose_debug(&[
        "decode",
        "--json",
        "--keylog",
        &p,
        "--keystore",
        &ks,
        &token,
    ]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["keylog"]["matched"], randoms[1].as_str());
    assert_eq!(r["keys"]["client_id_from"], "the token's kid");
    let key = key_file();
    let (code, r) = jose_debug(&[
        "derive",
        "--json",
        "--show-secrets",
        "--keylog",
        &p,
        "--root-key",
        &key,
        "--client-id",
        "client1",
    ]);
    assert_eq!(code, 0);
    let scheds = r["schedules"].as_array().unwrap();
    assert_eq!(scheds.len(), 3);
    for (i, s) in scheds.iter().enumerate() {
        assert_eq!(s["connection"], randoms[i].as_str());
        assert_eq!(s["secrets"]["ekm_hex"], ekms[i].as_str());
    }

    drop(conns);
    server.stop().await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keylog_handles_sha256_and_sha384_suites_side_by_side() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let path = temp_path("keylog-mixed");
    let log = NssFile::new(path.clone());
    let conns = vec![
        open(&server, logging_config(log.clone())).await,
        open(&server, sha256_config(log.clone())).await,
        open(&server, sha256_config(log.clone())).await,
    ];
    let randoms = log.randoms();
    assert_eq!(randoms.len(), 3);
    // A form-SE token on the third connection (SHA-256 suite).
    let token = issue(&conns[2].1, Form::SignedThenEncrypted);
    let (code, r) = run_keylog(&path, &token, &["--show-secrets"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["keylog"]["matched"], randoms[2].as_str());
    let listed = r["keylog"]["connections"].as_array().unwrap();
    let hashes: Vec<&str> = listed.iter().map(|c| c["hash"].as_str().unwrap()).collect();
    assert_eq!(hashes, ["SHA-384", "SHA-256", "SHA-256"]);
    for (i, c) in listed.iter().enumerate() {
        assert_eq!(c["ekm_hex"], hex::encode(conns[i].1.expose()).as_str());
    }
    assert_eq!(r["verdict"]["form"], "signed-then-encrypted");
    drop(conns);
    server.stop().await;
    let _ = std::fs::remove_file(&path);
}
