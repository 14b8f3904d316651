//! End to end over loopback with real TLS 1.3: forms, protocols, binding,
//! and every §7 code as a client on the wire sees it.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use jose_binding::client::{BoundConnection, HttpVersion, Reply};
use jose_binding::token::seal;
use jose_binding::token::{encrypt_jwe, headers, sign_jws};
use jose_binding::{ClientId, Form, FormSet, Policy};
use jose_binding_e2e::{connect, fixture_keystore, fixtures, setup, TestServer};
use serde_json::{json, Value};

fn now() -> i64 {
    jose_binding::token::unix_now() as i64
}

fn assert_refused(reply: &Reply, code: &str) {
    assert_eq!(reply.status, 401, "{code}: body {:?}", reply.body);
    assert_eq!(
        reply.error_code().map(jose_binding::ErrorCode::as_str),
        Some(code),
        "body {:?}",
        reply.body
    );
    let www = reply.www_authenticate.as_deref().expect("WWW-Authenticate");
    if code == "missing_token" {
        assert!(
            www.starts_with("Bearer") && !www.contains("error="),
            "{www}"
        );
    } else {
        assert_eq!(
            www,
            format!("Bearer error=\"invalid_token\", error_description=\"{code}\"")
        );
    }
    let body = reply.json().expect("JSON body");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// A claims set for the connection, with overrides (null removes a member).
fn claims(conn: &BoundConnection, overrides: Value) -> Vec<u8> {
    let t = now();
    let mut m = json!({
        "iss": conn.issuer().client_id().as_str(),
        "aud": "localhost",
        "iat": t,
        "exp": t + 60,
        "jti": format!("jti-{}", rand_suffix()),
    });
    for (k, v) in overrides.as_object().expect("object") {
        if v.is_null() {
            m.as_object_mut().unwrap().remove(k);
        } else {
            m[k] = v.clone();
        }
    }
    serde_json::to_vec(&m).unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn s_token(conn: &BoundConnection, header: &str, claims: &[u8]) -> String {
    sign_jws(header, claims, &conn.issuer().subkeys().sig)
}

#[tokio::test]
async fn every_form_over_http1_and_http2_many_requests_per_connection() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut conn = connect(&server, &setup("client1", version)).await;
        assert_eq!(conn.is_h2(), version == HttpVersion::Http2);
        for i in 0..30 {
            let form = Form::ALL[i % 3];
            let reply = conn
                .send(form, &json!({"role": "ops", "i": i}))
                .await
                .unwrap();
            assert_eq!(
                reply.status, 200,
                "{version:?} {form} #{i}: {:?}",
                reply.body
            );
            let body = reply.json().unwrap();
            assert_eq!(body["client_id"], "client1");
            assert_eq!(body["form"], form.as_str());
            assert_eq!(body["claims"]["role"], "ops");
            assert_eq!(body["claims"]["i"], i);
            assert_eq!(body["claims"]["iss"], "client1");
            assert_eq!(body["claims"]["jti"].as_str().unwrap().len(), 22);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_token_replayed_on_another_connection_is_refused() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let setup = setup("client1", HttpVersion::Auto);
    let a = connect(&server, &setup).await;
    let mut b = connect(&server, &setup).await;
    assert_ne!(a.fingerprints().0, b.fingerprints().0, "distinct EKMs");
    for (form, code) in [
        (Form::Signed, "bad_signature"),
        (Form::EncryptedThenSigned, "bad_signature"),
        (Form::SignedThenEncrypted, "decrypt_failed"),
    ] {
        let stolen = a.token(form, &json!({})).unwrap();
        assert_refused(&b.send_token(&stolen).await.unwrap(), code);
    }
    // B still works for its own tokens: the binding state lives on after a 401.
    assert_eq!(b.send(Form::Signed, &json!({})).await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test]
async fn replay_on_the_same_connection_is_refused() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let mut a = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    let t = a.token(Form::EncryptedThenSigned, &json!({})).unwrap();
    assert_eq!(a.send_token(&t).await.unwrap().status, 200);
    assert_refused(&a.send_token(&t).await.unwrap(), "replayed");
    server.stop().await;
}

#[tokio::test]
async fn tls12_client_is_refused_at_the_handshake() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let roots = jose_binding::tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(jose_binding::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let result = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await;
    let err = result.expect_err("TLS 1.2 must not complete");
    assert!(
        err.to_string().contains("ProtocolVersion") || err.to_string().contains("protocol version"),
        "{err}"
    );
    // And a TLS 1.3 client right after is fine.
    let mut ok = connect(&server, &setup("client1", HttpVersion::Auto)).await;
    assert_eq!(ok.send(Form::Signed, &json!({})).await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test]
async fn open_routes_and_unknown_routes() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut c = connect(&server, &setup("client1", version)).await;
        let r = c.request(Method::GET, "/healthz", None).await.unwrap();
        assert_eq!(r.status, 200);
        let r = c.request(Method::GET, "/nope", None).await.unwrap();
        assert_eq!(r.status, 404);
        let r = c.request(Method::GET, "/v1/claims", None).await.unwrap();
        assert_eq!(r.status, 405);
        let r = c.request(Method::POST, "/healthz", None).await.unwrap();
        assert_eq!(r.status, 405);
        // The baseline route exists only when the server is given its token.
        let r = c.request(Method::POST, "/v1/baseline", None).await.unwrap();
        assert_eq!(r.status, 404);
        assert_refused(
            &c.request(Method::POST, "/v1/claims", None).await.unwrap(),
            "missing_token",
        );
    }
    server.stop().await;
}

async fn send(c: &mut BoundConnection, values: Vec<&str>) -> Reply {
    let mut b = c.request_builder(Method::POST, "/v1/claims");
    for v in values {
        b = b.header("authorization", v);
    }
    c.send_request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn authorization_header_shapes() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Http1)).await;
    assert_refused(
        &send(&mut c, vec!["Basic dXNlcjpwYXNz"]).await,
        "missing_token",
    );
    assert_refused(&send(&mut c, vec!["Bearer"]).await, "malformed");
    assert_refused(
        &send(&mut c, vec!["Bearer a.b.c", "Bearer a.b.c"]).await,
        "malformed",
    );
    let t = c.token(Form::Signed, &json!({})).unwrap();
    let lower = format!("bearer {t}");
    let r = send(&mut c, vec![lower.as_str()]).await;
    assert_eq!(r.status, 200, "scheme is case-insensitive");
    server.stop().await;
}

#[tokio::test]
async fn every_verification_code_over_the_wire() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Auto)).await;
    let kid = "client1";
    let iv = [7u8; 12];
    let cases: Vec<(&str, String)> = vec![
        ("too_large", "a".repeat(16385)),
        ("malformed", "a.b".into()),
        (
            "malformed",
            format!("{}=", c.token(Form::Signed, &json!({})).unwrap()),
        ),
        (
            "too_large",
            s_token(
                &c,
                &format!(
                    r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}","x":"{}"}}"#,
                    "p".repeat(1100)
                ),
                &claims(&c, json!({})),
            ),
        ),
        (
            "unsupported_header",
            s_token(
                &c,
                &format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}","zip":"DEF"}}"#),
                &claims(&c, json!({})),
            ),
        ),
        (
            "unsupported_header",
            s_token(
                &c,
                &format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}","crit":["exp"]}}"#),
                &claims(&c, json!({})),
            ),
        ),
        (
            "unsupported_alg",
            s_token(
                &c,
                &format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#),
                &claims(&c, json!({})),
            ),
        ),
        (
            "bad_nesting",
            s_token(
                &c,
                &format!(r#"{{"alg":"HS256","typ":"JWT","cty":"jwt","kid":"{kid}"}}"#),
                &claims(&c, json!({})),
            ),
        ),
        (
            "bad_nesting",
            encrypt_jwe(
                &headers::jwe(kid),
                &claims(&c, json!({})),
                &c.issuer().subkeys().enc,
                iv,
            ),
        ),
        (
            "unknown_client",
            s_token(&c, &headers::jws("nobody"), &claims(&c, json!({}))),
        ),
        (
            "unknown_client",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"iss": "client2"})),
            ),
        ),
        ("bad_signature", {
            let mut t = c.token(Form::Signed, &json!({})).unwrap();
            let last = t.pop().unwrap();
            t.push(if last == 'A' { 'Q' } else { 'A' });
            t
        }),
        ("decrypt_failed", {
            let id = ClientId::new(kid).unwrap();
            let mut keys = c.issuer().subkeys().clone();
            keys.enc = jose_binding::EncKey::from_bytes([1; 32]);
            seal(
                Form::SignedThenEncrypted,
                &id,
                &claims(&c, json!({})),
                &keys,
                iv,
            )
        }),
        (
            "malformed",
            s_token(&c, &headers::jws(kid), br#"{"iat":1,"iat":2}"#),
        ),
        (
            "malformed",
            s_token(&c, &headers::jws(kid), &claims(&c, json!({"exp": "soon"}))),
        ),
        (
            "wrong_audience",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"aud": "elsewhere"})),
            ),
        ),
        (
            "expired",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"iat": now() - 200, "exp": now() - 100})),
            ),
        ),
        (
            "not_yet_valid",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"iat": now() + 100, "exp": now() + 160})),
            ),
        ),
        (
            "not_yet_valid",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"nbf": now() + 100})),
            ),
        ),
        (
            "ttl_too_long",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"exp": now() + 301})),
            ),
        ),
        (
            "bad_jti",
            s_token(&c, &headers::jws(kid), &claims(&c, json!({"jti": null}))),
        ),
        (
            "bad_jti",
            s_token(
                &c,
                &headers::jws(kid),
                &claims(&c, json!({"jti": "x".repeat(65)})),
            ),
        ),
    ];
    for (code, token) in &cases {
        let r = c.send_token(token).await.unwrap();
        assert_refused(&r, code);
    }
    // The connection survived every refusal.
    assert_eq!(c.send(Form::Signed, &json!({})).await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test]
async fn form_policy_and_client_pinning_over_the_wire() {
    let mut policy = Policy::default();
    policy.forms = FormSet::NONE.with(Form::Signed);
    let server = TestServer::start(policy, fixture_keystore()).await;
    let mut c = connect(&server, &setup("client1", HttpVersion::Auto)).await;
    let t = c.token(Form::SignedThenEncrypted, &json!({})).unwrap();
    assert_refused(&c.send_token(&t).await.unwrap(), "form_not_allowed");
    assert_eq!(c.send(Form::Signed, &json!({})).await.unwrap().status, 200);

    // A token naming client2 on the connection pinned to client1: pinning
    // (step 8) refuses it before any key is tried.
    let claims2 = serde_json::to_vec(&json!({
        "iss": "client2", "aud": "localhost", "iat": now(), "exp": now() + 60, "jti": "pin-test"
    }))
    .unwrap();
    let t2 = sign_jws(
        &headers::jws("client2"),
        &claims2,
        &c.issuer().subkeys().sig,
    );
    assert_refused(&c.send_token(&t2).await.unwrap(), "client_mismatch");
    server.stop().await;
}

#[tokio::test]
async fn hybrid_post_quantum_key_exchange_is_negotiated() {
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let roots = jose_binding::tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    let cfg = jose_binding::tls::client_config(roots, HttpVersion::Auto.alpn()).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        conn.negotiated_key_exchange_group().map(|g| g.name()),
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    drop(tls);
    server.stop().await;
}
