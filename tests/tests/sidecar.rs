//! The client sidecar with clients no one here wrote (curl, Python's
//! urllib) in front of the echo server and of the gateway with nginx
//! behind it.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jose_binding::client::{HttpVersion, Target};
use jose_binding::echo::EchoApp;
use jose_binding::gateway::GatewayConfig;
use jose_binding::server::ServerOptions;
use jose_binding::sidecar::{Listener, SidecarConfig};
use jose_binding::{Form, Policy};
use jose_binding_e2e::upstream::{free_port, Nginx};
use jose_binding_e2e::{curl_status, fixture_keystore, setup, start_sidecar, TempDir, TestServer};
use serde_json::Value;

/// A sidecar in this process for `server`, listening on `listen`; its address.
async fn sidecar(
    server_port: u16,
    version: HttpVersion,
    form: Form,
    listen: &str,
    edit: impl FnOnce(&mut SidecarConfig),
) -> String {
    let target = Target::parse(&format!("https://localhost:{server_port}")).unwrap();
    let mut config = SidecarConfig::new(target, setup("client1", version));
    config.form = form;
    edit(&mut config);
    start_sidecar(config, listen).await
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_python_through_the_sidecar_in_every_form() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        for form in Form::ALL {
            let addr = sidecar(server.port, version, form, "127.0.0.1:0", |c| {
                c.claims = serde_json::from_str(r#"{"team":"a"}"#).unwrap();
            })
            .await;
            let url = format!("http://{addr}/v1/claims");
            let (status, body) = curl_status(&["-X", "POST"], &url).await;
            assert_eq!(status, 200, "{version:?} {form:?}: {body}");
            let v = json(&body);
            assert_eq!(v["client_id"], "client1");
            assert_eq!(v["form"], form.as_str());
            assert_eq!(v["claims"]["team"], "a");

            // Python's standard library, with claims for this request only.
            let script = format!(
                "import json, urllib.request\n\
                 r = urllib.request.Request('{url}', data=b'', method='POST', \
                 headers={{'x-jose-binding-claims': '{{\"scope\": \"read\"}}'}})\n\
                 print(urllib.request.urlopen(r).read().decode())"
            );
            let mut python = Command::new("python3");
            python.args(["-c", &script]);
            let out = jose_binding_e2e::output(python).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v = json(String::from_utf8_lossy(&out.stdout).trim());
            assert_eq!(v["claims"]["scope"], "read", "{version:?} {form:?}");
            assert_eq!(v["claims"]["team"], "a");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_sidecar_refuses_and_what_passes_unchanged() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let addr = sidecar(
        server.port,
        HttpVersion::Auto,
        Form::Signed,
        "127.0.0.1:0",
        |c| {
            c.allow_hosts = vec!["api.internal".into()];
        },
    )
    .await;
    let url = format!("http://{addr}/v1/claims");
    let cases: [(&[&str], u16, &str); 3] = [
        (
            &["-X", "POST", "-H", "Authorization: Bearer app-secret"],
            400,
            "authorization_not_allowed",
        ),
        (
            &["-X", "POST", "-H", "x-jose-binding-claims: {\"exp\": 1}"],
            400,
            "bad_claims",
        ),
        (
            &["-X", "POST", "-H", "x-jose-binding-claims: [1]"],
            400,
            "bad_claims",
        ),
    ];
    for (args, want, code) in cases {
        let (status, body) = curl_status(args, &url).await;
        assert_eq!(
            (status, json(&body)["error"].as_str()),
            (want, Some(code)),
            "{args:?}"
        );
    }
    // The server's own answers pass unchanged: 404, and the §7 405.
    let (status, _) = curl_status(&[], &format!("http://{addr}/nowhere")).await;
    assert_eq!(status, 404);

    // Forward-proxy mode: an allowed host goes to the configured server,
    // any other is refused and sent nowhere; https:// cannot work.
    let proxy = format!("http://{addr}");
    let (status, body) = curl_status(
        &["-X", "POST", "-x", &proxy],
        "http://api.internal/v1/claims",
    )
    .await;
    assert_eq!(
        (status, json(&body)["client_id"].as_str()),
        (200, Some("client1"))
    );
    let (status, body) = curl_status(&["-x", &proxy], "http://example.com/").await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (403, Some("host_not_allowed"))
    );
    let (status, _) = curl_status(&["-x", &proxy], "https://api.internal/").await;
    assert_ne!(status, 200, "https through the proxy must not work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_sidecar_and_the_gateway_to_nginx() {
    let nginx = Nginx::start(
        "sidecar",
        "",
        "location / { return 200 \"client=$http_x_jose_binding_client_id auth=$http_authorization\"; }",
    );
    let gateway = TestServer::gateway(GatewayConfig::new(nginx.url().parse().unwrap())).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let addr = sidecar(
            gateway.port,
            version,
            Form::EncryptedThenSigned,
            "127.0.0.1:0",
            |_| {},
        )
        .await;
        let (status, body) = curl_status(&[], &format!("http://{addr}/orders")).await;
        assert_eq!(
            (status, body.as_str()),
            (200, "client=client1 auth="),
            "{version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_a_502_and_a_restarted_server_is_used_again() {
    let port = free_port();
    let addr = sidecar(port, HttpVersion::Auto, Form::Signed, "127.0.0.1:0", |_| {}).await;
    let url = format!("http://{addr}/v1/claims");
    let (status, body) = curl_status(&["-X", "POST"], &url).await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (502, Some("server_unreachable"))
    );

    let server = TestServer::start_on(
        port,
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        EchoApp::new,
    )
    .await;
    let (status, _) = curl_status(&["-X", "POST"], &url).await;
    assert_eq!(status, 200);
    // The server goes away and comes back: the connections in the pool are
    // dead, and the next requests dial fresh ones.
    server.stop().await;
    let (status, _) = curl_status(&["-X", "POST"], &url).await;
    assert_eq!(status, 502);
    let _server = TestServer::start_on(
        port,
        Policy::default(),
        fixture_keystore(),
        ServerOptions::default(),
        EchoApp::new,
    )
    .await;
    for _ in 0..8 {
        let (status, body) = curl_status(&["-X", "POST"], &url).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn the_listener_is_loopback_or_a_private_socket() {
    let err = Listener::bind("0.0.0.0:0", false).await.err().unwrap();
    assert_eq!(err.code(), "listen_not_loopback");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
    assert!(Listener::bind("0.0.0.0:0", true).await.is_ok());

    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let dir = TempDir::new("sidecar-unix");
    let path = dir.join("jwt-client.sock");
    let listen = format!("unix:{}", path.display());
    sidecar(
        server.port,
        HttpVersion::Auto,
        Form::Signed,
        &listen,
        |_| {},
    )
    .await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        ["jwt-client.sock"],
        "the 0700 staging directory is gone"
    );
    let sock = path.to_str().unwrap().to_owned();
    let (status, body) = curl_status(
        &["-X", "POST", "--unix-socket", &sock],
        "http://localhost/v1/claims",
    )
    .await;
    assert_eq!(
        (status, json(&body)["client_id"].as_str()),
        (200, Some("client1"))
    );

    // A stale socket of an earlier run is replaced; a file is not.
    let again = Listener::bind(&listen, false)
        .await
        .expect("replaces the socket");
    drop(again);
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let err = Listener::bind(&format!("unix:{}", file.display()), false)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "listen_path_not_a_socket");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_websockets_pass_through_sidecar_and_gateway() {
    use futures_util::{SinkExt, StreamExt};
    use http_body_util::BodyExt;
    use jose_binding_e2e::upstream::HyperUpstream;
    use tokio_tungstenite::tungstenite::Message;

    // Server-sent events: the first arrives before the upstream ends.
    let hyper = HyperUpstream::start().await;
    let gateway = TestServer::gateway(GatewayConfig::new(hyper.url().parse().unwrap())).await;
    let addr = sidecar(
        gateway.port,
        HttpVersion::Http2,
        Form::Signed,
        "127.0.0.1:0",
        |_| {},
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let start = std::time::Instant::now();
    let req = http::Request::get("/sse")
        .header("host", &addr)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: one\n\n");
    assert!(start.elapsed() < Duration::from_millis(1500));
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: two\n\n");
    assert!(start.elapsed() >= Duration::from_millis(1900));

    // A WebSocket from a plain-HTTP client, tunnelled by both proxies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_up = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() {
                            let _ = ws.send(m).await;
                        }
                    }
                }
            });
        }
    });
    let gateway = TestServer::gateway(GatewayConfig::new(ws_up.parse().unwrap())).await;
    let addr = sidecar(
        gateway.port,
        HttpVersion::Http1,
        Form::Signed,
        "127.0.0.1:0",
        |_| {},
    )
    .await;
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/chat"), tcp)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("through both")).await.unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "through both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_s_401_reaches_the_app_unchanged() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let target = Target::parse(&format!("https://localhost:{}", server.port)).unwrap();
    // A client the server's keystore does not know.
    let ghost = jose_binding_e2e::setup_with_key(
        "ghost",
        HttpVersion::Auto,
        jose_binding::SoftwareRootKey::generate(),
    );
    let addr = start_sidecar(SidecarConfig::new(target, ghost), "127.0.0.1:0").await;
    let dir = TempDir::new("sidecar-401");
    let head = dir.join("head.txt");
    let (status, body) = curl_status(
        &["-X", "POST", "-D", head.to_str().unwrap()],
        &format!("http://{addr}/v1/claims"),
    )
    .await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (401, Some("unknown_client"))
    );
    let head = std::fs::read_to_string(head).unwrap().to_ascii_lowercase();
    assert!(
        head.contains("www-authenticate: bearer error=\"invalid_token\", error_description=\"unknown_client\""),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_app_is_in_reverse_mode() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let addr = sidecar(
        server.port,
        HttpVersion::Auto,
        Form::Signed,
        "127.0.0.1:0",
        |_| {},
    )
    .await;
    let (status, body) = curl_status(
        &["-X", "POST", "--http2-prior-knowledge"],
        &format!("http://{addr}/v1/claims"),
    )
    .await;
    assert_eq!(
        (status, json(&body)["client_id"].as_str()),
        (200, Some("client1"))
    );
}

/// A request an HTTP/2 server says it never processed goes again on
/// another connection, even a POST (RFC 9113 §8.7), when none of its body
/// was sent; one the server may have acted on, or whose body was sent,
/// is the app's 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_draining_http2_server_did_not_process_is_sent_again() {
    use jose_binding_e2e::h2_double::{self, FirstAnswer};
    let cases: [(FirstAnswer, &[&str], u16, usize); 4] = [
        (FirstAnswer::GoAway, &["-X", "POST"], 200, 2),
        (FirstAnswer::RefusedStream, &["-X", "POST"], 200, 2),
        (FirstAnswer::RefusedStream, &["--data", "sent once"], 502, 1),
        (FirstAnswer::Cancel, &["-X", "POST"], 502, 1),
    ];
    // With one connection too: the retry must not meet the one going away.
    for (connections, (first, args, status, requests)) in [4, 1]
        .into_iter()
        .flat_map(|n| cases.iter().map(move |c| (n, *c)))
    {
        let (port, seen) = h2_double::start(first, true).await;
        let addr = sidecar(port, HttpVersion::Http2, Form::Signed, "127.0.0.1:0", |c| {
            c.connections = connections;
        })
        .await;
        let args = [args, &["--max-time", "10"]].concat();
        let (got, body) = curl_status(&args, &format!("http://{addr}/v1/claims")).await;
        assert_eq!(got, status, "{connections} {first:?} {args:?}: {body}");
        if status == 502 {
            let v = json(&body);
            assert_eq!(v["error"], "server_unreachable", "{body}");
            let cause = v["message"].as_str().unwrap();
            assert!(
                cause.starts_with("http2 error: "),
                "the cause is named: {cause}"
            );
        }
        assert_eq!(seen.load(Ordering::SeqCst), requests, "{first:?} {args:?}");
    }
}
