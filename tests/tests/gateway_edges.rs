//! The gateway's rules at the edges of a request: trailers pass the same
//! removal rules as headers, in both directions and through the sidecar;
//! a broken request body is the client's fault (400), not the upstream's;
//! the host a request names in its target wins over `Host`; headers that
//! claim a client address or rename the request never reach the upstream
//! from an untrusted peer.

use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use jose_binding::client::{BoundConnection, BoundSender, HttpVersion, Target};
use jose_binding::gateway::GatewayConfig;
use jose_binding::sidecar::SidecarConfig;
use jose_binding::{Form, Issuer};
use jose_binding_e2e::upstream::{HyperUpstream, RawUpstream};
use jose_binding_e2e::{
    bound_tls, connect, read_head, setup, start_sidecar, status_of, TestServer,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_service::Service;

fn config(url: &str) -> GatewayConfig {
    let mut cfg = GatewayConfig::new(url.parse().expect("upstream"));
    cfg.public_paths = vec!["/public".into()];
    cfg
}

/// What the forged trailers say; none of it may reach the upstream.
const FORGED: [(&str, &str); 5] = [
    ("X-Jose-Binding-Client-Id", "admin"),
    ("x_jose_binding_claims", "eyJyb2xlIjoiYWRtaW4ifQ"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("True-Client-IP", "7.7.7.7"),
    ("X-Original-URL", "/forged-admin-url"),
];

/// A chunked HTTP/1.1 request to `path` with `hello` and trailers: the
/// forged ones and `X-Checksum`, all declared in `Trailer`.
fn chunked_with_trailers(path: &str, auth: &str) -> String {
    let mut trailers = String::new();
    for (n, v) in FORGED {
        trailers.push_str(&format!("{n}: {v}\r\n"));
    }
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Transfer-Encoding: chunked\r\n\
         Trailer: {}\r\n\r\n5\r\nhello\r\n0\r\n{trailers}X-Checksum: 5d41\r\n\r\n",
        announced()
    )
}

/// The `Trailer` header that announces the forged trailers and the checksum.
fn announced() -> String {
    let names: Vec<&str> = FORGED.iter().map(|(n, _)| *n).collect();
    format!("{}, X-Checksum", names.join(", "))
}

/// The checksum trailer arrived; nothing forged did (the values are
/// unique, so any field carrying one is found, whatever its name).
fn assert_only_the_checksum_trailer(upstream: &RawUpstream, how: &str) {
    let got = upstream.received();
    assert!(
        got.to_ascii_lowercase().contains("x-checksum: 5d41"),
        "{how}: the checksum trailer is missing: {got}"
    );
    for (name, value) in FORGED {
        assert!(
            !got.contains(value),
            "{how}: {name} reached the upstream: {got}"
        );
    }
    // The announcement names only what is sent.
    let lower = got.to_ascii_lowercase();
    let trailer_line = lower.lines().find(|l| l.starts_with("trailer:"));
    assert_eq!(trailer_line, Some("trailer: x-checksum"), "{how}: {got}");
}

#[tokio::test]
async fn request_trailers_lose_every_forged_identity_over_http1() {
    let upstream = RawUpstream::start().await;
    let server = TestServer::gateway(config(&upstream.url())).await;
    for token in [true, false] {
        let (mut tls, issuer) = bound_tls(server.port).await;
        let (path, auth) = if token {
            let t = issuer.issue(Form::Signed, &json!({})).unwrap();
            ("/upload", format!("Authorization: Bearer {t}\r\n"))
        } else {
            ("/public/upload", String::new())
        };
        tls.write_all(chunked_with_trailers(path, &auth).as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut tls).await.expect("an answer");
        assert_eq!(status_of(&head), 200, "{head}");
        assert_only_the_checksum_trailer(&upstream, path);
    }
}

/// A POST to `path` on `sender` whose body is `hello` and then `trailers`.
async fn post_with_trailers(
    sender: &mut BoundSender,
    issuer: &Issuer,
    path: &str,
    trailers: HeaderMap,
) -> u16 {
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(trailers)),
    ];
    let token = issuer.issue(Form::Signed, &json!({})).unwrap();
    let req = sender
        .request_builder(Method::POST, path)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header("trailer", announced())
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(sender, cx))
        .await
        .unwrap();
    let resp = sender.call(req).await.unwrap();
    resp.status().as_u16()
}

#[tokio::test]
async fn request_trailers_lose_every_forged_identity_over_http2() {
    let upstream = RawUpstream::start().await;
    let server = TestServer::gateway(config(&upstream.url())).await;
    let c = connect(&server, &setup("client1", HttpVersion::Http2)).await;
    let (mut sender, issuer) = c.into_service();
    let mut trailers = HeaderMap::new();
    for (n, v) in FORGED.iter().chain(&[("x-checksum", "5d41")]) {
        trailers.insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let status = post_with_trailers(&mut sender, &issuer, "/upload", trailers).await;
    assert_eq!(status, 200);
    assert_only_the_checksum_trailer(&upstream, "HTTP/2");
}

#[tokio::test]
async fn request_trailers_lose_every_forged_identity_through_the_sidecar() {
    let upstream = RawUpstream::start().await;
    let server = TestServer::gateway(config(&upstream.url())).await;
    let target = Target::parse(&server.url()).unwrap();
    let sidecar = SidecarConfig::new(target, setup("client1", HttpVersion::Http1));
    let addr = start_sidecar(sidecar, "127.0.0.1:0").await;
    let mut app = tokio::net::TcpStream::connect(&addr).await.unwrap();
    app.write_all(chunked_with_trailers("/upload", "").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut app).await.expect("an answer");
    assert_eq!(status_of(&head), 200, "{head}");
    assert_only_the_checksum_trailer(&upstream, "sidecar");
}

#[tokio::test]
async fn response_trailers_lose_what_only_a_header_section_may_carry() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    let c = connect(&server, &setup("client1", HttpVersion::Http2)).await;
    let (mut sender, issuer) = c.into_service();
    let token = issuer.issue(Form::Signed, &json!({})).unwrap();
    let req = sender
        .request_builder(Method::GET, "/bad-trailers")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut sender, cx))
        .await
        .unwrap();
    let resp = sender.call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    let mut names: Vec<_> = trailers.keys().map(|n| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["x-checksum"]);
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    for body in ["zz\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n"] {
        let (mut tls, issuer) = bound_tls(server.port).await;
        let t = issuer.issue(Form::Signed, &json!({})).unwrap();
        let req = format!(
            "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{body}"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tls))
            .await
            .expect("an answer in time")
            .expect("an answer");
        assert_eq!(status_of(&head), 400, "{body:?}: {head}");
        let mut rest = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), tls.read_to_string(&mut rest)).await;
        assert!(rest.contains(r#"{"error":"bad_request"}"#), "{rest}");
    }
}

#[tokio::test]
async fn a_request_body_that_falls_silent_is_a_408() {
    let hyper = HyperUpstream::start().await;
    let mut cfg = config(&hyper.url());
    cfg.idle_timeout = Duration::from_secs(1);
    let server = TestServer::gateway(cfg).await;
    let (mut tls, issuer) = bound_tls(server.port).await;
    let t = issuer.issue(Form::Signed, &json!({})).unwrap();
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\
         Content-Length: 100\r\n\r\nhello"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tls))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(status_of(&head), 408, "{head}");
}

/// The request headers the hyper upstream saw for a reply from `/headers`.
fn seen_headers(body: &[u8]) -> Vec<(String, String)> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect()
}

#[tokio::test]
async fn the_host_a_target_names_wins_over_the_host_header() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    let authority = format!("localhost:{}", server.port);

    // HTTP/1.1 absolute form: Host is ignored (RFC 9112 §3.2.2).
    let (mut tls, issuer) = bound_tls(server.port).await;
    let t = issuer.issue(Form::Signed, &json!({})).unwrap();
    let req = format!(
        "GET https://{authority}/headers HTTP/1.1\r\nHost: evil.example\r\n\
         Authorization: Bearer {t}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 200, "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '\r' || c == '\n');
    let json_end = body.rfind('}').unwrap() + 1;
    let headers = seen_headers(&body.as_bytes()[..json_end]);
    let host: Vec<_> = headers.iter().filter(|(n, _)| n == "host").collect();
    assert_eq!(host, [&("host".to_owned(), authority.clone())]);
    assert!(!answer.contains("evil.example"), "{answer}");

    // HTTP/2: a Host that differs from :authority is malformed (RFC 9113 §8.3.1).
    let mut c = connect(&server, &setup("client1", HttpVersion::Http2)).await;
    let t = c.token(Form::Signed, &json!({})).unwrap();
    let req = c
        .request_builder(Method::GET, "/headers")
        .header(AUTHORIZATION, format!("Bearer {t}"))
        .header("host", "evil.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let before = hyper.requests();
    let r = c.send_request(req).await.unwrap();
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        hyper.requests(),
        before,
        "a misdirected request was forwarded"
    );
}

#[tokio::test]
async fn client_address_and_rewrite_headers_never_reach_the_upstream() {
    let hyper = HyperUpstream::start().await;
    let server = TestServer::gateway(config(&hyper.url())).await;
    let forged = [
        ("True-Client-IP", "6.6.6.6"),
        ("X-Client-IP", "6.6.6.6"),
        ("CF-Connecting-IP", "6.6.6.6"),
        ("Client-IP", "6.6.6.6"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
    ];
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c: BoundConnection = connect(&server, &setup("client1", version)).await;
        for token in [true, false] {
            let path = if token { "/headers" } else { "/public/headers" };
            let mut b = c.request_builder(Method::GET, path);
            if token {
                let t = c.token(Form::Signed, &json!({})).unwrap();
                b = b.header(AUTHORIZATION, format!("Bearer {t}"));
            }
            for (n, v) in forged {
                b = b.header(n, v);
            }
            let r = c
                .send_request(b.body(Full::new(Bytes::new())).unwrap())
                .await;
            let r = r.unwrap();
            // The hyper upstream answers /headers only; the public path
            // reaches its default route, which is enough to see nothing
            // broke, and the protected one shows what arrived.
            assert_eq!(r.status, 200, "{version:?} {path}");
            if token {
                let seen = seen_headers(&r.body);
                for (n, _) in forged {
                    let lower = n.to_ascii_lowercase();
                    assert!(
                        !seen.iter().any(|(s, _)| *s == lower),
                        "{version:?}: {n} reached the upstream"
                    );
                }
            }
        }
    }
}

/// The server stops while a request is in flight: the request finishes,
/// and its HTTP/1.1 response says `Connection: close`, so the client knows
/// to reconnect elsewhere.
#[tokio::test]
async fn a_response_in_flight_at_shutdown_finishes_with_connection_close() {
    let hyper = HyperUpstream::start().await;
    let mut server = TestServer::gateway(config(&hyper.url())).await;
    let (mut tls, issuer) = bound_tls(server.port).await;
    let t = issuer.issue(Form::Signed, &json!({})).unwrap();
    let req = format!("GET /slow HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {t}\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = server.signal_stop().expect("the server task");
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut tls))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(status_of(&head), 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(rest.ends_with(b"late") || String::from_utf8_lossy(&rest).contains("late"));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops once the response is out")
        .unwrap();
}
