//! The gateway in front of real upstreams: nginx from Debian's package and
//! a hyper service that shows what reached it. Identity headers cannot be
//! spoofed, stolen tokens never reach the upstream, bodies stream, upgrades
//! tunnel, and upstream failures answer 502/504 without harming the
//! connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use jose_binding::client::{BoundConnection, HttpVersion, Reply};
use jose_binding::gateway::{Gateway, GatewayConfig};
use jose_binding::keystore::KeystoreHandle;
use jose_binding::status::serve_status;
use jose_binding::IpNet;
use jose_binding::{b64, Form};
use jose_binding_e2e::upstream::{free_port, plain_get, HyperUpstream, Nginx, WsEcho};
use jose_binding_e2e::{bound_tls, connect, fixture_keystore, setup, TestServer};
use serde_json::{json, Value};
use tower_service::Service;

fn config(url: &str) -> GatewayConfig {
    GatewayConfig::new(url.parse().expect("upstream"))
}

/// nginx answering `/echo` with the identity headers it received, serving
/// `/public/…` and everything else itself, and proxying `/sse` and
/// `/upload` to `hyper` unbuffered.
fn nginx(hyper: &HyperUpstream) -> Nginx {
    let echo = "client=$http_x_jose_binding_client_id|form=$http_x_jose_binding_form|\
                claims=$http_x_jose_binding_claims|auth=$http_authorization|\
                xff=$http_x_forwarded_for|proto=$http_x_forwarded_proto";
    Nginx::start(
        "gateway",
        // So that nginx reads `x_jose_binding_client_id` as the header it
        // spoofs, as CGI-style upstreams do.
        "underscores_in_headers on;",
        &format!(
            "location = /echo {{ return 200 \"{echo}\"; }}\n\
             location /public/ {{ return 200 \"public client=$http_x_jose_binding_client_id\"; }}\n\
             location /sse {{ proxy_buffering off; proxy_pass {up}; }}\n\
             location /upload {{ client_max_body_size 0; proxy_request_buffering off; \
             proxy_http_version 1.1; proxy_pass {up}; }}\n\
             location / {{ return 200 \"ok\"; }}",
            up = hyper.url()
        ),
    )
}

/// A request on `c`, with a fresh token unless `token` is false, and the
/// extra headers given.
async fn request(
    c: &mut BoundConnection,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    token: bool,
) -> Reply {
    let mut b = c.request_builder(method, path);
    if token {
        let t = c.token(Form::Signed, &json!({"role": "ops"})).unwrap();
        b = b.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    c.send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

fn text(r: &Reply) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

/// Every spelling by which a client could pass itself off as another.
fn spoofs(version: HttpVersion) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("X-Jose-Binding-Client-Id", "admin"),
        ("x_jose_binding_client_id", "admin"),
        ("X-JOSE-binding_Client-ID", "admin"),
        ("x-jose-binding-client-id", "root"),
        ("x-jose-binding-form", "encrypted-then-signed"),
        ("x_jose_binding_claims", "eyJyb2xlIjoiYWRtaW4ifQ"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x_forwarded_for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6"),
    ];
    if version == HttpVersion::Http1 {
        // HTTP/2 has no Connection header.
        v.push((
            "connection",
            "x-jose-binding-client-id, x-jose-binding-claims",
        ));
    }
    v
}

#[tokio::test]
async fn nginx_sees_the_verified_client_and_never_a_spoof() {
    let hyper = HyperUpstream::start().await;
    let nginx = nginx(&hyper);
    let server = TestServer::gateway(config(&nginx.url())).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c = connect(&server, &setup("client1", version)).await;
        let r = request(&mut c, Method::GET, "/echo", &spoofs(version), true).await;
        assert_eq!(r.status, 200, "{version:?}: {}", text(&r));
        let fields: std::collections::HashMap<_, _> = text(&r)
            .split('|')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(fields["client"], "client1", "{version:?}: {}", text(&r));
        assert_eq!(fields["form"], "signed");
        assert_eq!(fields["auth"], "", "the token reached the upstream");
        assert_eq!(fields["xff"], "127.0.0.1");
        assert_eq!(fields["proto"], "https");
        let claims: Value =
            serde_json::from_slice(&b64::decode(fields["claims"]).unwrap()).unwrap();
        assert_eq!(claims["role"], "ops");
        assert_eq!(claims["iss"], "client1");

        // No token: the §7 answer, and nginx never hears of it.
        let before = nginx.access_lines();
        let r = request(&mut c, Method::GET, "/echo", &spoofs(version), false).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.error_code(), Some(jose_binding::ErrorCode::MissingToken));
        assert_eq!(nginx.access_lines(), before);
    }
}

#[tokio::test]
async fn the_upstream_sees_exactly_one_identity_and_our_forwarded_headers() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c = connect(&server, &setup("client1", version)).await;
        let r = request(&mut c, Method::GET, "/headers?q=1", &spoofs(version), true).await;
        assert_eq!(r.status, 200, "{version:?}");
        let v = r.json().unwrap();
        assert_eq!(v["path"], "/headers?q=1");
        let headers: Vec<(String, String)> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect();
        let folded = |n: &str| n.to_ascii_lowercase().replace('_', "-");
        let ours: Vec<_> = headers
            .iter()
            .filter(|(n, _)| folded(n).starts_with("x-jose-binding-"))
            .collect();
        assert_eq!(ours.len(), 3, "{version:?}: {ours:?}");
        let get = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| folded(n) == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get("x-jose-binding-client-id"), ["client1"]);
        assert_eq!(get("x-jose-binding-form"), ["signed"]);
        assert_eq!(get("x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(get("x-forwarded-proto"), ["https"]);
        let authority = format!("localhost:{}", server.port);
        assert_eq!(get("host"), [authority.as_str()]);
        assert_eq!(get("x-forwarded-host"), [authority.as_str()]);
        assert_eq!(
            get("forwarded"),
            [format!("for=127.0.0.1;proto=https;host=\"{authority}\"").as_str()]
        );
        // The gateway's own `te: trailers`, not the client's.
        assert_eq!(get("te"), ["trailers"]);
        for gone in ["authorization", "connection", "keep-alive"] {
            assert!(
                get(gone).is_empty(),
                "{version:?}: {gone} reached the upstream"
            );
        }
    }
}

#[tokio::test]
async fn a_trusted_proxy_s_forwarded_headers_are_appended_to() {
    let hyper = HyperUpstream::start().await;
    let mut cfg = config(&hyper.url());
    cfg.trusted_proxies = vec!["127.0.0.0/8".parse::<IpNet>().unwrap()];
    let server = TestServer::gateway(cfg).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let sent = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-host", "api.example"),
        ("x_forwarded_for", "6.6.6.6"),
    ];
    let v = request(&mut c, Method::GET, "/headers", &sent, true)
        .await
        .json()
        .unwrap();
    let h: Vec<(String, String)> = serde_json::from_value(v["headers"].clone()).unwrap();
    let get = |name: &str| -> Vec<&str> {
        h.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(get("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(get("x-forwarded-host"), ["api.example"]);
    assert!(get("x_forwarded_for").is_empty());
}

#[tokio::test]
async fn a_stolen_token_is_refused_and_never_reaches_the_upstream() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    let a = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let mut b = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    for form in Form::ALL {
        let stolen = a.token(form, &json!({})).unwrap();
        let req = b
            .request_builder(Method::GET, "/headers")
            .header(AUTHORIZATION, format!("Bearer {stolen}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = b.send_request(req).await.unwrap();
        assert_eq!(r.status, 401, "{form:?}");
        assert!(r.error_code().is_some(), "{form:?}: {:?}", r.body);
    }
    assert_eq!(
        hyper.requests(),
        0,
        "a refused request reached the upstream"
    );
    let r = request(&mut b, Method::GET, "/headers", &[], true).await;
    assert_eq!(r.status, 200);
    assert_eq!(hyper.requests(), 1);
}

#[tokio::test]
async fn public_paths_pass_without_a_token_and_without_an_identity() {
    let hyper = HyperUpstream::start().await;
    let nginx = nginx(&hyper);
    let mut cfg = config(&nginx.url());
    cfg.public_paths = vec!["/public".into()];
    let server = TestServer::gateway(cfg).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let spoof = [("x-jose-binding-client-id", "admin")];
    let r = request(&mut c, Method::GET, "/public/status", &spoof, false).await;
    assert_eq!((r.status, text(&r)), (200, "public client="));
    for needs_token in [
        "/publicity",
        "/public/../echo",
        "/public/%2e%2e/echo",
        "/echo",
    ] {
        let r = request(&mut c, Method::GET, needs_token, &spoof, false).await;
        assert_eq!(r.status, 401, "{needs_token}");
    }
}

/// A request with a fresh token through a bound connection as a tower
/// service, its response body left to stream.
async fn stream(
    conn: BoundConnection,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl hyper::body::Body<Data = Bytes, Error: Into<jose_binding::server::BoxError>>
        + Send
        + 'static,
) -> http::Response<hyper::body::Incoming> {
    let (mut sender, issuer) = conn.into_service();
    let token = issuer.issue(Form::Signed, &json!({})).unwrap();
    let mut b = sender
        .request_builder(method, path)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let req = b.body(body).unwrap();
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut sender, cx))
        .await
        .unwrap();
    sender.call(req).await.unwrap()
}

#[tokio::test]
async fn server_sent_events_arrive_as_the_upstream_sends_them() {
    let hyper = HyperUpstream::start().await;
    let nginx = nginx(&hyper);
    let server = TestServer::gateway(config(&nginx.url())).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let c = connect(&server, &setup("client1", version)).await;
        let start = Instant::now();
        let resp = stream(c, Method::GET, "/sse", &[], Full::new(Bytes::new())).await;
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let first_at = start.elapsed();
        assert_eq!(&first[..], b"data: one\n\n");
        let rest = body.collect().await.unwrap().to_bytes();
        let end_at = start.elapsed();
        assert_eq!(&rest[..], b"data: two\n\n");
        // The upstream waits 2 s between the events.
        assert!(
            first_at < Duration::from_millis(1500) && end_at >= Duration::from_millis(1900),
            "{version:?}: first event after {first_at:?}, end after {end_at:?}"
        );
    }
}

#[tokio::test]
async fn trailers_pass() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let c = connect(&server, &setup("client1", version)).await;
        let headers: &[(&str, &str)] = match version {
            HttpVersion::Http1 => &[("te", "trailers")],
            _ => &[],
        };
        let resp = stream(
            c,
            Method::GET,
            "/trailers",
            headers,
            Full::new(Bytes::new()),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let collected = resp.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        assert_eq!(&collected.to_bytes()[..], b"hello");
        assert_eq!(
            trailers.as_ref().and_then(|t| t.get("x-checksum")),
            Some(&"5d41402a".parse().unwrap()),
            "{version:?}"
        );
    }
}

#[tokio::test]
async fn a_websocket_echo_round_trips_after_its_upgrade_request_verifies() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let echo = WsEcho::start().await;
    let accepted = echo.accepted.clone();
    let ws_url = echo.url();
    let server = TestServer::gateway(config(&ws_url)).await;

    for with_token in [false, true] {
        let (tls, issuer) = bound_tls(server.port).await;
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://localhost:{}/chat", server.port),
            )
            .unwrap();
        if with_token {
            let token = issuer.issue(Form::Signed, &json!({})).unwrap();
            req.headers_mut()
                .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        }
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((mut ws, resp)) => {
                assert!(with_token, "upgraded without a token");
                assert_eq!(resp.status(), 101);
                for msg in ["hello", "bound"] {
                    ws.send(Message::text(msg)).await.unwrap();
                    let back = ws.next().await.unwrap().unwrap();
                    assert_eq!(back.into_text().unwrap().as_str(), msg);
                }
                ws.close(None).await.unwrap();
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert!(!with_token, "refused with a token: {}", resp.status());
                assert_eq!(resp.status(), 401);
                assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
            }
            Err(e) => panic!("with_token={with_token}: {e}"),
        }
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn upstream_failures_answer_502_or_504_and_the_connection_lives_on() {
    // Nothing listens: 502, twice on one connection, then the server still serves.
    let down = TestServer::gateway(config(&format!("http://127.0.0.1:{}", free_port()))).await;
    let mut c = connect(&down, &setup("client1", HttpVersion::Http1)).await;
    for _ in 0..2 {
        let r = request(&mut c, Method::GET, "/", &[], true).await;
        assert_eq!((r.status, text(&r)), (502, r#"{"error":"bad_gateway"}"#));
    }
    // CONNECT is never forwarded, token or not.
    let r = request(&mut c, Method::CONNECT, "localhost:22", &[], true).await;
    assert_eq!(r.status, 405);

    // Slow: 504 after the response timeout, then the same connection is
    // answered at once on another route.
    let hyper = HyperUpstream::start().await;
    let mut cfg = config(&hyper.url());
    cfg.response_timeout = Duration::from_secs(1);
    let slow = TestServer::gateway(cfg).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c = connect(&slow, &setup("client1", version)).await;
        let start = Instant::now();
        let r = request(&mut c, Method::GET, "/slow", &[], true).await;
        assert_eq!(
            (r.status, text(&r)),
            (504, r#"{"error":"gateway_timeout"}"#)
        );
        assert!(start.elapsed() < Duration::from_millis(2500));
        // With a body of known length, the timeout starts once it is sent.
        let token = c.token(Form::Signed, &json!({})).unwrap();
        let req = c
            .request_builder(Method::POST, "/slow")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::from_static(b"a body of known length")))
            .unwrap();
        let start = Instant::now();
        let r = c.send_request(req).await.unwrap();
        assert_eq!(r.status, 504, "{version:?}: {}", text(&r));
        assert!(start.elapsed() < Duration::from_millis(2500));
        let r = request(&mut c, Method::GET, "/headers", &[], true).await;
        assert_eq!(r.status, 200, "{version:?}");
    }

    // Reset: an upstream that reads the request and drops the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reset_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.set_zero_linger();
            drop(tcp);
        }
    });
    let reset = TestServer::gateway(config(&reset_url)).await;
    let mut c = connect(&reset, &setup("client1", HttpVersion::Http2)).await;
    for _ in 0..2 {
        let r = request(&mut c, Method::GET, "/", &[], true).await;
        assert_eq!((r.status, text(&r)), (502, r#"{"error":"bad_gateway"}"#));
    }
}

#[tokio::test]
async fn readyz_follows_the_upstream() {
    let port = free_port();
    let gateway = Gateway::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let readiness = Arc::new(gateway.readiness(KeystoreHandle::new(fixture_keystore())));
    let status = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = status.local_addr().unwrap().port();
    tokio::spawn(serve_status(
        status,
        readiness.clone(),
        None,
        std::future::pending(),
    ));
    assert!(plain_get(status_port, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    let down = plain_get(status_port, "/readyz").await;
    assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    assert!(down.ends_with(r#"{"status":"not_ready","reason":"upstream_unreachable"}"#));
    let upstream = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    // The last probe is kept for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let up = plain_get(status_port, "/readyz").await;
    assert!(up.starts_with("HTTP/1.1 200"), "{up}");
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(plain_get(status_port, "/readyz")
        .await
        .starts_with("HTTP/1.1 503"));
    readiness.drain();
    let draining = plain_get(status_port, "/readyz").await;
    assert!(draining.ends_with(r#"{"status":"not_ready","reason":"draining"}"#));
    assert!(plain_get(status_port, "/metrics")
        .await
        .starts_with("HTTP/1.1 404"));
}

/// With routes, every upstream must accept a connection for `/readyz`,
/// and set_routes changes which.
#[tokio::test]
async fn readyz_checks_every_routed_upstream() {
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_url = format!("http://{}", up.local_addr().unwrap());
    let down_url = format!("http://127.0.0.1:{}", free_port());
    let mut cfg = config(&up_url);
    cfg.routes = vec![jose_binding::gateway::Route::new(
        "/b/",
        down_url.parse().unwrap(),
    )];
    let gateway = Gateway::new(cfg).unwrap();
    let readiness = Arc::new(gateway.readiness(KeystoreHandle::new(fixture_keystore())));
    let status = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let status_port = status.local_addr().unwrap().port();
    tokio::spawn(serve_status(
        status,
        readiness,
        None,
        std::future::pending(),
    ));
    let down = plain_get(status_port, "/readyz").await;
    assert!(
        down.starts_with("HTTP/1.1 503"),
        "the /b/ upstream is down: {down}"
    );
    gateway
        .set_routes(vec![jose_binding::gateway::Route::new(
            "/b/",
            up_url.parse().unwrap(),
        )])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let ready = plain_get(status_port, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    drop(up);
}

#[tokio::test]
async fn a_body_silent_past_the_idle_timeout_is_cut() {
    let hyper = HyperUpstream::start().await;
    let mut cfg = config(&hyper.url());
    // /sse is silent for 2 s between its events.
    cfg.idle_timeout = Duration::from_secs(1);
    let server = TestServer::gateway(cfg).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let c = connect(&server, &setup("client1", version)).await;
        let start = Instant::now();
        let resp = stream(c, Method::GET, "/sse", &[], Full::new(Bytes::new())).await;
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"data: one\n\n");
        let rest = body.collect().await;
        assert!(rest.is_err(), "{version:?}: the silent body was not cut");
        let at = start.elapsed();
        assert!(
            at >= Duration::from_millis(900) && at < Duration::from_millis(1900),
            "{version:?}: cut after {at:?}"
        );
    }
}

/// Serves `ok over <what>` with hyper on every connection `accept` yields.
async fn serve_ok<S>(stream: S, what: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |_req| async move {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(format!(
            "ok over {what}"
        )))))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

#[tokio::test]
async fn https_and_unix_socket_upstreams() {
    use jose_binding::tls;
    let fixtures = jose_binding_e2e::fixtures();

    // https://, TLS 1.3, verified against the CA the gateway is given.
    let chain = tls::load_certs(&fixtures.join("server.pem")).unwrap();
    let key = tls::load_key(&fixtures.join("server.key")).unwrap();
    let mut server_tls = tls::server_config(chain, key).unwrap();
    server_tls.alpn_protocols = vec![tls::ALPN_HTTP11.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(s) = acceptor.accept(tcp).await {
                    serve_ok(s, "tls").await;
                }
            });
        }
    });
    let roots = tls::load_roots(&fixtures.join("ca.pem")).unwrap();
    let mut cfg = config(&format!("https://localhost:{port}"));
    cfg.upstream_tls = Some(Arc::new(
        tls::client_config(roots, &[tls::ALPN_HTTP11]).unwrap(),
    ));
    let server = TestServer::gateway(cfg).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http2)).await;
    let r = request(&mut c, Method::GET, "/", &[], true).await;
    assert_eq!((r.status, text(&r)), (200, "ok over tls"));

    // The same upstream, but the gateway trusts no CA that signed it: 502.
    let mut cfg = config(&format!("https://localhost:{port}"));
    cfg.upstream_tls = Some(Arc::new(
        tls::client_config(rustls::RootCertStore::empty(), &[tls::ALPN_HTTP11]).unwrap(),
    ));
    let untrusting = TestServer::gateway(cfg).await;
    let mut c = connect(&untrusting, &setup("client1", HttpVersion::Http1)).await;
    let r = request(&mut c, Method::GET, "/", &[], true).await;
    assert_eq!(r.status, 502);

    // unix:/path
    let dir = jose_binding_e2e::TempDir::new("gateway-unix");
    let path = dir.join("app.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_ok(s, "unix"));
        }
    });
    let server = TestServer::gateway(config(&format!("unix:{}", path.display()))).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let r = request(&mut c, Method::GET, "/", &[], true).await;
    assert_eq!((r.status, text(&r)), (200, "ok over unix"));
}

#[tokio::test]
async fn an_upstream_that_never_accepts_is_a_504_after_the_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs,
    // so a connection attempt hangs as it would to a host that is down.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let mut cfg = config(&format!("http://{addr}"));
    cfg.connect_timeout = Duration::from_secs(1);
    let server = TestServer::gateway(cfg).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let start = Instant::now();
    let r = request(&mut c, Method::GET, "/", &[], true).await;
    assert_eq!(
        (r.status, text(&r)),
        (504, r#"{"error":"gateway_timeout"}"#)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}
