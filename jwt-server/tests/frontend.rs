//! jwt-server behind HAProxy terminating TLS (`--frontend haproxy`):
//! HAProxy hands each request its client connection's exporter secret and
//! cipher, and every token is still bound to the client's own TLS
//! connection, over an HTTP/1.1 backend and an h2c one, with HAProxy
//! reusing few backend connections for many clients.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::Form;
use jose_binding_e2e::fixtures;
use jose_binding_e2e::haproxy::Haproxy;
use jose_binding_e2e::upstream::{free_port, HyperUpstream};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn serve(extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let keystore = fixtures().join("keystore.toml");
    let mut args = vec![
        "--frontend",
        "haproxy",
        "--listen",
        &listen,
        "--keystore",
        keystore.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args, &fixtures(), &[]).expect("server starts");
    (server, port)
}

async fn connect(front: u16, version: HttpVersion) -> BoundConnection {
    let target = Target::parse(&format!("https://localhost:{front}")).unwrap();
    let setup = jose_binding_e2e::setup("client1", version);
    BoundConnection::connect(&target, &setup).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_bound_to_the_clients_connection_through_haproxy() {
    for h2c in [false, true] {
        let (mut server, backend) = serve(&[]);
        let name = if h2c { "frontend-h2c" } else { "frontend-h1" };
        let (_lb, front) = Haproxy::terminating(name, backend, h2c);
        for version in [HttpVersion::Http1, HttpVersion::Http2] {
            let mut c = connect(front, version).await;
            for form in Form::ALL {
                let r = c.send(form, &serde_json::json!({"x": 1})).await.unwrap();
                assert_eq!(
                    r.status,
                    200,
                    "h2c={h2c} {version:?} {form:?}: {:?}",
                    r.json()
                );
            }
            // A token from this connection: replayed here, refused elsewhere.
            let token = c.token(Form::Signed, &serde_json::json!({})).unwrap();
            let r = c
                .request(http::Method::POST, "/v1/claims", Some(&token))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            let r = c
                .request(http::Method::POST, "/v1/claims", Some(&token))
                .await
                .unwrap();
            assert_eq!(r.error_code().map(|c| c.as_str()), Some("replayed"));
            let mut other = connect(front, version).await;
            let r = other
                .request(http::Method::POST, "/v1/claims", Some(&token))
                .await
                .unwrap();
            assert_eq!(r.error_code().map(|c| c.as_str()), Some("bad_signature"));
        }

        // Many client connections over HAProxy's two backend connections:
        // each client's tokens verify on its own connection only.
        let mut clients = Vec::new();
        for _ in 0..12 {
            clients.push(connect(front, HttpVersion::Auto).await);
        }
        let mut tokens = Vec::new();
        for c in clients.iter_mut() {
            let t = c.token(Form::Signed, &serde_json::json!({})).unwrap();
            tokens.push(t);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let r = c
                .request(http::Method::POST, "/v1/claims", Some(&tokens[i]))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "client {i} on its own connection");
            let foreign = &tokens[(i + 1) % tokens.len()];
            let r = c
                .request(http::Method::POST, "/v1/claims", Some(foreign))
                .await
                .unwrap();
            assert_eq!(
                r.error_code().map(|c| c.as_str()),
                Some("bad_signature"),
                "client {i} with another client's token"
            );
        }
        let log = server.read_log().join("\n");
        assert!(
            log.contains("peer=127.0.0.1:0"),
            "the client from X-Forwarded-For"
        );
        assert!(
            !log.contains("exporter-secret"),
            "no binding header is ever logged"
        );
    }
}

/// Behind HAProxy on one host, a Unix socket: made with its mode from the
/// start, reached by HAProxy, and refused for a TLS server or a mode that
/// lets others in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_backend_with_its_mode() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let dir = jose_binding_e2e::TempDir::new("frontend-unix");
    let sock = dir.join("frontend.sock");
    let listen = format!("unix:{}", sock.display());
    let keystore = fixtures().join("keystore.toml");
    let keystore = keystore.to_str().unwrap();
    for h2c in [false, true] {
        // A stale socket of an earlier run is replaced.
        let server = Server::start(
            &[
                "--frontend",
                "haproxy",
                "--listen",
                &listen,
                "--keystore",
                keystore,
            ],
            &fixtures(),
            &[],
        )
        .expect("server starts on the Unix socket");
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let (_lb, front) = Haproxy::terminating_to("frontend-unix", sock.to_str().unwrap(), h2c);
        let mut c = connect(front, HttpVersion::Auto).await;
        for form in Form::ALL {
            let r = c.send(form, &serde_json::json!({})).await.unwrap();
            assert_eq!(r.status, 200, "h2c={h2c} {form:?}: {:?}", r.json());
        }
        let token = c.token(Form::Signed, &serde_json::json!({})).unwrap();
        let mut other = connect(front, HttpVersion::Auto).await;
        let r = other
            .request(http::Method::POST, "/v1/claims", Some(&token))
            .await
            .unwrap();
        assert_eq!(r.error_code().map(|c| c.as_str()), Some("bad_signature"));
        drop(server);
    }

    // A mode for others, and a Unix socket for a server that terminates
    // TLS, are refused before anything listens.
    for (args, says) in [
        (
            vec!["--frontend", "haproxy", "--frontend-socket-mode", "666"],
            "others could connect",
        ),
        (vec!["--dev"], "a Unix socket is for --frontend haproxy"),
    ] {
        let other = dir.join("refused.sock");
        let listen = format!("unix:{}", other.display());
        let args = [&args[..], &["--listen", &listen, "--keystore", keystore]].concat();
        let out = support::run(&args, &fixtures(), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!other.exists(), "{args:?}: nothing was bound");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_frontend_may_connect_and_a_request_without_the_hand_off_is_not_bound() {
    let (_server, backend) = serve(&[]);
    // From an address outside --frontend-from: closed at accept.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((IpAddr::from([127, 0, 0, 2]), 0).into())
        .unwrap();
    let mut tcp = socket
        .connect(([127, 0, 0, 1], backend).into())
        .await
        .unwrap();
    let _ = tcp
        .write_all(b"POST /v1/claims HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

    // From the frontend's address but without the binding headers, or with
    // a bad one: 500 not_bound (a deployment error), never a verdict.
    for extra in [
        "",
        "x-jose-binding-ekm: 00\r\n",
        "x-jose-binding-exporter-secret: 00\r\nx-jose-binding-tls-cipher: TLS_AES_128_GCM_SHA256\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", backend))
            .await
            .unwrap();
        let req = format!(
            "POST /v1/claims HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\n{extra}Connection: close\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        let _ = tcp.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 500"), "{extra:?}: {out}");
        assert!(out.ends_with(r#"{"error":"not_bound"}"#), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_gateway_the_upstream_never_sees_a_binding_header() {
    let upstream = HyperUpstream::start().await;
    let url = upstream.url();
    let (_server, backend) = serve(&["--upstream", &url]);
    let (_lb, front) = Haproxy::terminating("frontend-gw", backend, false);
    let mut c = connect(front, HttpVersion::Http1).await;
    let token = c.token(Form::Signed, &serde_json::json!({})).unwrap();
    let r = c
        .request(http::Method::GET, "/headers", Some(&token))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
    assert!(body.contains("x-jose-binding-client-id"), "{body}");
    for name in ["exporter-secret", "tls-cipher", "x-jose-binding-ekm"] {
        assert!(!body.contains(name), "{name} reached the upstream: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_works_through_haproxy_unchanged() {
    let (_server, backend) = serve(&[]);
    let (_lb, front) = Haproxy::terminating("frontend-sidecar", backend, true);
    let target = Target::parse(&format!("https://localhost:{front}")).unwrap();
    let setup = jose_binding_e2e::setup("client1", HttpVersion::Auto);
    let config = jose_binding::sidecar::SidecarConfig::new(target, setup);
    let sidecar = jose_binding_e2e::start_sidecar(config, "127.0.0.1:0").await;
    for _ in 0..5 {
        let (status, body) =
            jose_binding_e2e::curl_status(&["-X", "POST"], &format!("http://{sidecar}/v1/claims"))
                .await;
        assert_eq!(status, 200, "{body}");
    }
}
