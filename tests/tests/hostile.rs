//! Hostile input over the wire: a corpus of tokens and requests, each with
//! the exact outcome expected. The JOSE attack history is the list: alg
//! confusion, zip bombs, `crit` bypass, header-size and split DoS, JWS/JWE
//! substitution, parser differentials. Zero 5xx, zero panics, and the server
//! keeps serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jose_binding::b64;
use jose_binding::client::{BoundConnection, HttpVersion, Target};
use jose_binding::gateway::GatewayConfig;
use jose_binding::server::ServerOptions;
use jose_binding::token::{encrypt_jwe, headers, sign_jws};
use jose_binding::Policy;
use jose_binding_e2e::haproxy::Haproxy;
use jose_binding_e2e::upstream::HyperUpstream;
use jose_binding_e2e::{connect, fixture_keystore, fixtures, setup, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KID: &str = "client1";

fn now() -> i64 {
    jose_binding::token::unix_now() as i64
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("hostile-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Claims for client1 with overrides; `null` removes a member.
fn claims(edit: Value) -> Vec<u8> {
    let t = now();
    let mut m = json!({"iss": KID, "aud": "localhost", "iat": t, "exp": t + 60, "jti": unique()});
    for (k, v) in edit.as_object().expect("object") {
        if v.is_null() {
            m.as_object_mut().expect("object").remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    serde_json::to_vec(&m).expect("json")
}

struct Kit<'a> {
    c: &'a BoundConnection,
}

impl Kit<'_> {
    fn jws(&self, header: &str, payload: &[u8]) -> String {
        sign_jws(header, payload, &self.c.issuer().subkeys().sig)
    }
    fn jwe(&self, header: &str, plaintext: &[u8]) -> String {
        encrypt_jwe(header, plaintext, &self.c.issuer().subkeys().enc, [3; 12])
    }
    /// A form-S token with a header made of the given JSON text.
    fn s_with_header(&self, header: &str) -> String {
        self.jws(header, &claims(json!({})))
    }
    fn s_claims(&self, claims: &[u8]) -> String {
        self.jws(&headers::jws(KID), claims)
    }
    /// ES with a given inner JWE header.
    fn es_inner(&self, inner_header: &str) -> String {
        let inner = self.jwe(inner_header, &claims(json!({})));
        self.jws(&headers::jws_nested(KID), inner.as_bytes())
    }
    /// SE with a given inner JWS header.
    fn se_inner(&self, inner_header: &str) -> String {
        let inner = self.jws(inner_header, &claims(json!({})));
        self.jwe(&headers::jwe_nested(KID), inner.as_bytes())
    }
}

/// Header JSON with extra members appended to form S's header.
fn hdr(extra: &str) -> String {
    format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{KID}"{extra}}}"#)
}

fn raw(header: &[u8], payload: &[u8], sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64::encode(header),
        b64::encode(payload),
        b64::encode(sig)
    )
}

/// The corpus: (what, token, expected code or "ok").
fn corpus(k: &Kit<'_>) -> Vec<(&'static str, String, &'static str)> {
    let good =
        k.c.token(jose_binding::Form::Signed, &json!({}))
            .expect("token");
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    vec![
        // Alg confusion (jsonwebtoken #41, Authlib CVE-2024-37568).
        ("alg none, no signature", format!("{}.{}.", b64::encode(br#"{"alg":"none","typ":"JWT","kid":"client1"}"#), parts[1]), "unsupported_alg"),
        ("alg none, signed anyway", k.s_with_header(r#"{"alg":"none","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg NONE", k.s_with_header(r#"{"alg":"NONE","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg HS512", k.s_with_header(r#"{"alg":"HS512","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg RS256 (key confusion)", k.s_with_header(r#"{"alg":"RS256","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg hs256 lower case", k.s_with_header(r#"{"alg":"hs256","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg absent", k.s_with_header(r#"{"typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("alg as array", k.s_with_header(r#"{"alg":["HS256"],"typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("inner JWE alg A256KW", k.es_inner(r#"{"alg":"A256KW","enc":"A256GCM","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("inner JWE enc A128GCM", k.es_inner(r#"{"alg":"dir","enc":"A128GCM","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        ("inner JWS alg none", k.se_inner(r#"{"alg":"none","typ":"JWT","kid":"client1"}"#), "unsupported_alg"),
        // Zip bombs (go-jose CVE-2024-28180, jwcrypto CVE-2024-28102).
        ("zip DEF outer", k.s_with_header(&hdr(r#","zip":"DEF""#)), "unsupported_header"),
        ("zip DEF inner JWE", k.es_inner(r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"client1","zip":"DEF"}"#), "unsupported_header"),
        ("zip null", k.s_with_header(&hdr(r#","zip":null"#)), "unsupported_header"),
        // crit bypass (PyJWT CVE-2026-32597, Authlib CVE-2025-59420).
        ("crit [exp]", k.s_with_header(&hdr(r#","crit":["exp"],"exp":1"#)), "unsupported_header"),
        ("crit empty list", k.s_with_header(&hdr(r#","crit":[]"#)), "unsupported_header"),
        ("crit in inner JWE", k.es_inner(r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"client1","crit":["x"],"x":1}"#), "unsupported_header"),
        ("crit in inner JWS", k.se_inner(r#"{"alg":"HS256","typ":"JWT","kid":"client1","crit":["b64"],"b64":false}"#), "unsupported_header"),
        ("b64 false", k.s_with_header(&hdr(r#","b64":false"#)), "unsupported_header"),
        ("jwk embedded key", k.s_with_header(&hdr(r#","jwk":{"kty":"oct","k":"AAAA"}"#)), "unsupported_header"),
        ("jku remote key", k.s_with_header(&hdr(r#","jku":"https://evil.example/jwks"#).replace("jwks", "jwks\"")), "unsupported_header"),
        ("x5u", k.s_with_header(&hdr(r#","x5u":"https://evil.example/c.pem""#)), "unsupported_header"),
        ("x5c", k.s_with_header(&hdr(r#","x5c":["MIIB"]"#)), "unsupported_header"),
        ("x5t#S256", k.s_with_header(&hdr(r#","x5t#S256":"abc""#)), "unsupported_header"),
        ("typ absent", k.s_with_header(&format!(r#"{{"alg":"HS256","kid":"{KID}"}}"#)), "unsupported_header"),
        ("typ jwt lower case", k.s_with_header(&format!(r#"{{"alg":"HS256","typ":"jwt","kid":"{KID}"}}"#)), "unsupported_header"),
        ("typ dpop+jwt", k.s_with_header(&format!(r#"{{"alg":"HS256","typ":"dpop+jwt","kid":"{KID}"}}"#)), "unsupported_header"),
        // Header size and split DoS (go-jose CVE-2025-27144).
        ("10000 dots", ".".repeat(10_000), "malformed"),
        ("16385 characters", format!("{}.{}.{}", "a".repeat(16_000), "b".repeat(200), "c".repeat(183)), "too_large"),
        ("header of 1025 bytes", k.s_with_header(&hdr(&format!(r#","p":"{}""#, "x".repeat(1025 - hdr("").len() - 7)))), "too_large"),
        ("deeply nested header", k.s_with_header(&hdr(&format!(r#","n":{}1{}"#, "[".repeat(40), "]".repeat(40)))), "malformed"),
        ("claims of 8193 bytes", k.s_claims(&claims(json!({"pad": "x".repeat(8200)}))), "too_large"),
        ("deeply nested claims", k.s_claims(format!(r#"{{"iss":"client1","n":{}1{}}}"#, "[".repeat(40), "]".repeat(40)).as_bytes()), "malformed"),
        // JWS/JWE substitution (jwcrypto CVE-2022-3102) and nesting.
        ("JWE without cty", k.jwe(&headers::jwe(KID), &claims(json!({}))), "bad_nesting"),
        ("JWS cty jwt", k.s_with_header(&format!(r#"{{"alg":"HS256","typ":"JWT","cty":"jwt","kid":"{KID}"}}"#)), "bad_nesting"),
        ("JWS cty application/jwt", k.s_with_header(&format!(r#"{{"alg":"HS256","typ":"JWT","cty":"application/jwt","kid":"{KID}"}}"#)), "bad_nesting"),
        ("ES whose inner is a JWS", k.jws(&headers::jws_nested(KID), k.jws(&headers::jws(KID), &claims(json!({}))).as_bytes()), "bad_nesting"),
        ("SE whose inner is a JWE", k.jwe(&headers::jwe_nested(KID), k.jwe(&headers::jwe(KID), &claims(json!({}))).as_bytes()), "bad_nesting"),
        ("inner layer with cty", k.es_inner(r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"client1"}"#), "bad_nesting"),
        ("ES carrying claims, not a token", k.jws(&headers::jws_nested(KID), &claims(json!({}))), "malformed"),
        ("SE carrying claims, not a token", k.jwe(&headers::jwe_nested(KID), &claims(json!({}))), "malformed"),
        ("inner kid of another client", k.es_inner(r#"{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"client2"}"#), "unknown_client"),
        // Parser differentials: duplicates, non-UTF-8, non-JSON.
        ("duplicate alg (HS256 then none)", k.s_with_header(r#"{"alg":"HS256","alg":"none","typ":"JWT","kid":"client1"}"#), "malformed"),
        ("duplicate kid", k.s_with_header(r#"{"alg":"HS256","typ":"JWT","kid":"client1","kid":"client2"}"#), "malformed"),
        ("duplicate via escape", k.s_with_header(r#"{"alg":"HS256","typ":"JWT","kid":"client1","\u006bid":"client1"}"#), "malformed"),
        ("duplicate claim exp", k.s_claims(br#"{"iss":"client1","aud":"localhost","iat":1,"exp":9999999999,"exp":1,"jti":"d"}"#), "malformed"),
        ("non-UTF-8 header", raw(b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\xff\"}", b"{}", &[0; 32]), "malformed"),
        ("header not JSON", raw(b"alg=HS256", b"{}", &[0; 32]), "malformed"),
        ("header is an array", raw(b"[\"HS256\"]", b"{}", &[0; 32]), "malformed"),
        ("header lone surrogate", k.s_with_header(&hdr(r#","x":"\ud800""#)), "malformed"),
        ("claims not JSON", k.s_claims(b"iss=client1"), "malformed"),
        ("claims invalid UTF-8", k.s_claims(b"{\"iss\":\"client1\",\"x\":\"\xc3\x28\"}"), "malformed"),
        // Numbers and registered claims.
        ("exp as string", k.s_claims(&claims(json!({"exp": "9999999999"}))), "malformed"),
        ("iat as string", k.s_claims(&claims(json!({"iat": "1"}))), "malformed"),
        ("nbf as bool", k.s_claims(&claims(json!({"nbf": true}))), "malformed"),
        ("iat absent", k.s_claims(&claims(json!({"iat": null}))), "malformed"),
        ("exp float, valid", k.s_claims(&claims(json!({"iat": now() as f64 + 0.25, "exp": now() as f64 + 59.5}))), "ok"),
        ("exp 1e400", k.s_claims(format!(r#"{{"iss":"client1","aud":"localhost","iat":{},"exp":1e400,"jti":"big"}}"#, now()).as_bytes()), "malformed"),
        ("exp far future (ttl)", k.s_claims(&claims(json!({"exp": 32503680000i64}))), "ttl_too_long"),
        ("expired", k.s_claims(&claims(json!({"iat": now() - 400, "exp": now() - 300}))), "expired"),
        ("iat in the future", k.s_claims(&claims(json!({"iat": now() + 3600, "exp": now() + 3660}))), "not_yet_valid"),
        ("aud as array", k.s_claims(&claims(json!({"aud": ["localhost"]}))), "wrong_audience"),
        ("aud other", k.s_claims(&claims(json!({"aud": "api.example"}))), "wrong_audience"),
        ("iss other", k.s_claims(&claims(json!({"iss": "client2"}))), "unknown_client"),
        ("huge jti (65 bytes)", k.s_claims(&claims(json!({"jti": "j".repeat(65)}))), "bad_jti"),
        ("huge jti (8 KB)", k.s_claims(&claims(json!({"jti": "j".repeat(8000)}))), "bad_jti"),
        ("jti as number", k.s_claims(&claims(json!({"jti": 7}))), "bad_jti"),
        ("empty jti", k.s_claims(&claims(json!({"jti": ""}))), "bad_jti"),
        // Shapes of the compact serialization.
        ("empty parts", "..".to_owned(), "malformed"),
        ("JWE with empty parts", "....".to_owned(), "malformed"),
        ("header only", parts[0].clone(), "malformed"),
        ("two parts", format!("{}.{}", parts[0], parts[1]), "malformed"),
        ("four parts (trailing garbage)", format!("{good}.x"), "malformed"),
        ("six parts", format!("{good}.x.y.z"), "malformed"),
        ("padding in signature", format!("{good}="), "malformed"),
        ("padding in payload", format!("{}.{}=.{}", parts[0], parts[1], parts[2]), "malformed"),
        ("standard base64 alphabet", format!("{}.{}.{}", parts[0], parts[1], parts[2].replace('-', "+").replace('_', "/") + "+"), "malformed"),
        ("space inside", format!("{} .{}.{}", parts[0], parts[1], parts[2]), "malformed"),
        ("empty payload", format!("{}..{}", parts[0], parts[2]), "malformed"),
        ("signature truncated to 30 bytes", format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]), "bad_signature"),
        // 42 characters carry 4 bits too many; ending in 'B' sets one of them.
        ("signature truncated mid-byte", format!("{}.{}.{}B", parts[0], parts[1], &parts[2][..41]), "malformed"),
        ("signature of another token", format!("{}.{}.{}", parts[0], b64::encode(&claims(json!({}))), parts[2]), "bad_signature"),
        ("JWE non-empty encrypted key", {
            let t = k.jwe(&headers::jwe_nested(KID), k.jws(&headers::jws(KID), &claims(json!({}))).as_bytes());
            let p: Vec<&str> = t.split('.').collect();
            format!("{}.AAAA.{}.{}.{}", p[0], p[2], p[3], p[4])
        }, "malformed"),
        ("JWE IV of 16 bytes", {
            let t = k.jwe(&headers::jwe_nested(KID), k.jws(&headers::jws(KID), &claims(json!({}))).as_bytes());
            let p: Vec<&str> = t.split('.').collect();
            format!("{}..{}.{}.{}", p[0], b64::encode(&[0; 16]), p[3], p[4])
        }, "decrypt_failed"),
        ("JWE tag flipped", {
            let t = k.jwe(&headers::jwe_nested(KID), k.jws(&headers::jws(KID), &claims(json!({}))).as_bytes());
            let p: Vec<&str> = t.split('.').collect();
            format!("{}..{}.{}.{}", p[0], p[2], p[3], b64::encode(&[0; 16]))
        }, "decrypt_failed"),
        ("unknown kid", k.s_with_header(r#"{"alg":"HS256","typ":"JWT","kid":"mallory"}"#), "unknown_client"),
        ("kid absent", k.s_with_header(r#"{"alg":"HS256","typ":"JWT"}"#), "unknown_client"),
        ("kid as number", k.s_with_header(r#"{"alg":"HS256","typ":"JWT","kid":1}"#), "unknown_client"),
        ("kid with path traversal", k.s_with_header(r#"{"alg":"HS256","typ":"JWT","kid":"../../etc/passwd"}"#), "unknown_client"),
        ("a valid token", good.clone(), "ok"),
        ("the same token again", good, "replayed"),
    ]
}

/// The corpus against the echo app, or against the gateway in front of a
/// hyper upstream: the answers are the same, and only the accepted
/// requests reach the upstream.
async fn run_corpus(version: HttpVersion, through_gateway: bool) -> usize {
    run_corpus_at(version, through_gateway, false).await
}

/// As [`run_corpus`]; with `behind_haproxy` the echo app is served by
/// `serve_frontend` behind HAProxy terminating TLS, and the answers are
/// still the same.
async fn run_corpus_at(version: HttpVersion, through_gateway: bool, behind_haproxy: bool) -> usize {
    let upstream = HyperUpstream::start().await;
    let server = if through_gateway {
        TestServer::gateway(GatewayConfig::new(upstream.url().parse().unwrap())).await
    } else if behind_haproxy {
        TestServer::frontend(Policy::default(), fixture_keystore()).await
    } else {
        TestServer::start(Policy::default(), fixture_keystore()).await
    };
    let haproxy = behind_haproxy.then(|| Haproxy::terminating("hostile", server.port, false));
    let mut c = match &haproxy {
        Some((_, front)) => {
            let target = Target::parse(&format!("https://localhost:{front}")).unwrap();
            BoundConnection::connect(&target, &setup("client1", version))
                .await
                .unwrap()
        }
        None => connect(&server, &setup("client1", version)).await,
    };
    let cases = corpus(&Kit { c: &c });
    let mut seen = std::collections::HashSet::new();
    for (what, token, want) in &cases {
        assert!(seen.insert(*what), "duplicate case name {what}");
        let r = c
            .send_token(token)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(r.status < 500, "{what}: {}", r.status);
        if *want == "ok" {
            assert_eq!(r.status, 200, "{what}: {:?}", r.body);
        } else {
            assert_eq!(r.status, 401, "{what}: {:?}", r.body);
            assert_eq!(
                r.error_code().map(jose_binding::ErrorCode::as_str),
                Some(*want),
                "{what}"
            );
            let www = r.www_authenticate.unwrap_or_default();
            assert_eq!(
                www,
                format!("Bearer error=\"invalid_token\", error_description=\"{want}\""),
                "{what}"
            );
        }
    }
    // The connection and the server survived all of it.
    assert_eq!(
        c.send(jose_binding::Form::Signed, &json!({}))
            .await
            .unwrap()
            .status,
        200
    );
    if through_gateway {
        let accepted = cases.iter().filter(|(_, _, want)| *want == "ok").count();
        assert_eq!(upstream.requests(), accepted + 1);
    }
    server.stop().await;
    cases.len()
}

#[tokio::test]
async fn hostile_tokens_over_http1() {
    let n = run_corpus(HttpVersion::Http1, false).await;
    assert!(n >= 80, "corpus has {n} cases");
}

#[tokio::test]
async fn hostile_tokens_over_http2() {
    run_corpus(HttpVersion::Http2, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_behind_a_tls_terminating_haproxy_over_http1() {
    run_corpus_at(HttpVersion::Http1, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_behind_a_tls_terminating_haproxy_over_http2() {
    run_corpus_at(HttpVersion::Http2, false, true).await;
}

#[tokio::test]
async fn hostile_tokens_through_the_gateway_over_http1() {
    run_corpus(HttpVersion::Http1, true).await;
}

#[tokio::test]
async fn hostile_tokens_through_the_gateway_over_http2() {
    run_corpus(HttpVersion::Http2, true).await;
}

/// A raw TLS connection (HTTP/1.1 by ALPN) for requests no client would send.
async fn raw_tls(port: u16) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let roots = jose_binding::tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let cfg = jose_binding::tls::client_config(roots, &[b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// Reads until the peer closes or `limit` passes; returns what arrived.
async fn read_all(
    s: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .filter_map(|l| l.get(..3)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn http_level_abuse() {
    let mut opts = ServerOptions::default();
    opts.header_read_timeout = Duration::from_secs(1);
    opts.handshake_timeout = Duration::from_secs(1);
    opts.idle_timeout = Duration::from_secs(2);
    let server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        opts,
        jose_binding::echo::EchoApp::new,
    )
    .await;
    let port = server.port;

    // A 1 MiB header: refused with 431 (or the connection closed), no 5xx.
    // hyper's head limit is soft: a head that arrives whole in one read may
    // pass a little over it, so this is far over.
    let mut s = raw_tls(port).await;
    let req = format!(
        "POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let _ = s.write_all(req.as_bytes()).await;
    let st = statuses(&read_all(&mut s, Duration::from_secs(3)).await);
    assert!(st.is_empty() || st == vec![431], "huge header: {st:?}");

    // 500 headers: refused (hyper's limit is 100), no 5xx.
    let mut s = raw_tls(port).await;
    let mut req = String::from("POST /v1/claims HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..500 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let st = statuses(&read_all(&mut s, Duration::from_secs(3)).await);
    assert!(st.is_empty() || st == vec![431], "many headers: {st:?}");

    // Slowloris: half a request head, then silence: closed after the header timeout.
    let mut s = raw_tls(port).await;
    s.write_all(b"POST /v1/claims HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let started = Instant::now();
    let text = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle head not closed in time"
    );
    assert!(statuses(&text).iter().all(|&c| c < 500), "{text}");

    // A TCP connection that never starts TLS: dropped after the handshake timeout.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = Instant::now();
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut b)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "handshake-less connection closed"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // An announced 100 MB body that never comes: answered (401) without reading it.
    let mut s = raw_tls(port).await;
    s.write_all(
        b"POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\npartial",
    )
    .await
    .unwrap();
    let st = statuses(&read_all(&mut s, Duration::from_secs(3)).await);
    assert_eq!(st.first(), Some(&401), "oversize body: {st:?}");

    // An idle keep-alive connection is closed promptly (by the header or the
    // idle timeout, whichever comes first).
    let mut s = raw_tls(port).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let st = statuses(&read_all(&mut s, Duration::from_secs(8)).await);
    assert_eq!(st, vec![200]);
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(5),
        "idle connection closed promptly, after {held:?}"
    );

    // Pipelined requests: hyper answers the first only (it does not support
    // HTTP/1.1 pipelining); the connection is then closed as idle, no 5xx.
    let mut s = raw_tls(port).await;
    let pipelined = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n\
                     POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n\
                     GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    s.write_all(pipelined.as_bytes()).await.unwrap();
    let started = Instant::now();
    let st = statuses(&read_all(&mut s, Duration::from_secs(8)).await);
    assert_eq!(st.first(), Some(&200), "pipelined: {st:?}");
    assert!(st.iter().all(|&c| c < 500), "{st:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pipelined connection closed"
    );

    // Garbage instead of HTTP: no 5xx.
    let mut s = raw_tls(port).await;
    s.write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let st = statuses(&read_all(&mut s, Duration::from_secs(3)).await);
    assert!(st.iter().all(|&c| c < 500), "{st:?}");

    // A client that disconnects mid-request.
    let mut s = raw_tls(port).await;
    s.write_all(b"POST /v1/claims HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer abc")
        .await
        .unwrap();
    drop(s);

    // After all of it, the server serves.
    let mut c = connect(&server, &setup("client1", HttpVersion::Auto)).await;
    assert_eq!(
        c.send(jose_binding::Form::Signed, &json!({}))
            .await
            .unwrap()
            .status,
        200
    );
    server.stop().await;
}

/// The idle timeout alone closes a keep-alive connection that goes quiet,
/// even when the header-read timeout is long.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let mut opts = ServerOptions::default();
    opts.header_read_timeout = Duration::from_secs(30);
    opts.idle_timeout = Duration::from_secs(1);
    let server = TestServer::start_with(
        Policy::default(),
        fixture_keystore(),
        opts,
        jose_binding::echo::EchoApp::new,
    )
    .await;
    // Quiet right after the handshake.
    let mut s = raw_tls(server.port).await;
    let started = Instant::now();
    let text = read_all(&mut s, Duration::from_secs(10)).await;
    let held = started.elapsed();
    assert!(text.is_empty(), "{text}");
    assert!(
        held >= Duration::from_millis(800) && held < Duration::from_secs(4),
        "closed after {held:?}"
    );
    // Quiet after a request.
    let mut s = raw_tls(server.port).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let st = statuses(&read_all(&mut s, Duration::from_secs(10)).await);
    let held = started.elapsed();
    assert_eq!(st, vec![200]);
    assert!(
        held >= Duration::from_millis(800) && held < Duration::from_secs(4),
        "closed after {held:?}"
    );
    // Busy connections are not cut: requests every 300 ms for 3 s keep it open.
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    for _ in 0..10 {
        assert_eq!(
            c.send(jose_binding::Form::Signed, &json!({}))
                .await
                .unwrap()
                .status,
            200
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    server.stop().await;
}
