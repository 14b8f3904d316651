//! What may become a tunnel through the gateway, and the rules a tunnel
//! keeps once hyper has handed its connection over: only a WebSocket is
//! joined (an h2c upgrade would carry HTTP/2 requests with any identity
//! their sender likes), a public tunnel exists only where enabled, and
//! every tunnel holds its budget slot, can be evicted, meets the
//! authentication deadline unless its request carried an accepted token,
//! and closes when silent.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::AUTHORIZATION;
use http::Request;
use jose_binding::gateway::GatewayConfig;
use jose_binding::server::ServerOptions;
use jose_binding::Form;
use jose_binding_e2e::upstream::{H2cUpstream, WsEcho};
use jose_binding_e2e::{bound_tls, read_head, status_of, TestServer, TlsStream};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

fn config(url: &str) -> GatewayConfig {
    GatewayConfig::new(url.parse().expect("upstream"))
}

type Ws = WebSocketStream<TlsStream>;

/// A WebSocket to `path` through the gateway on its own connection, with a
/// bound token on the upgrade request if `token`; else the refusal's status.
async fn websocket(port: u16, path: &str, token: bool) -> Result<Ws, u16> {
    let (tls, issuer) = bound_tls(port).await;
    let url = format!("ws://localhost:{port}{path}");
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    if token {
        let t = issuer.issue(Form::Signed, &json!({})).unwrap();
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket to {path}: {e}"),
    }
}

/// True if a message sent on `ws` comes back within a second.
async fn echoes(ws: &mut Ws) -> bool {
    if ws.send(Message::text("ping")).await.is_err() {
        return false;
    }
    let back = tokio::time::timeout(Duration::from_secs(1), ws.next()).await;
    matches!(back, Ok(Some(Ok(m))) if m.is_text())
}

/// An HTTP/1.1 request head asking to upgrade to `upgrade`, with a token
/// bound to `tls`'s connection if `issuer` is given.
async fn ask_upgrade(
    tls: &mut TlsStream,
    path: &str,
    upgrade: &str,
    token: Option<&jose_binding::Issuer>,
) -> String {
    let auth = token
        .map(|i| {
            let t = i.issue(Form::Signed, &json!({})).unwrap();
            format!("Authorization: Bearer {t}\r\n")
        })
        .unwrap_or_default();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{auth}\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    read_head(tls).await.expect("an answer")
}

#[tokio::test]
async fn an_h2c_upgrade_is_never_tunnelled_so_no_forged_identity_reaches_the_upstream() {
    let upstream = H2cUpstream::start().await;
    let mut cfg = config(&upstream.url());
    cfg.public_paths = vec!["/health".into()];
    let server = TestServer::gateway(cfg).await;
    for (path, upgrade, token) in [
        ("/health", "h2c", false),
        ("/orders", "h2c", true),
        ("/orders", "websocket, h2c", true),
        ("/health", "WebSocket/13, h2c", false),
    ] {
        let (mut tls, issuer) = bound_tls(server.port).await;
        let before = upstream.seen().len();
        let head = ask_upgrade(&mut tls, path, upgrade, token.then_some(&issuer)).await;
        if status_of(&head) == 101 {
            // What the attacker does next: HTTP/2 inside the tunnel, as
            // whoever it likes.
            let (mut h2, conn) = h2::client::handshake(tls).await.unwrap();
            tokio::spawn(conn);
            let forged = Request::get("http://localhost/admin")
                .header("x-jose-binding-client-id", "admin")
                .header("x-jose-binding-claims", "eyJyb2xlIjoiYWRtaW4ifQ")
                .header("x-forwarded-for", "6.6.6.6")
                .body(())
                .unwrap();
            if let Ok((resp, _)) = h2.send_request(forged, true) {
                let _ = tokio::time::timeout(Duration::from_secs(2), resp).await;
            }
        }
        let seen = upstream.seen()[before..].to_vec();
        assert!(
            seen.iter().all(|r| r.version == http::Version::HTTP_11),
            "{path} {upgrade}: a tunnel carried {seen:?}"
        );
        assert_eq!(status_of(&head), 200, "{path} {upgrade}: {head}");
        let [request] = &seen[..] else {
            panic!("{path} {upgrade}: the upstream saw {seen:?}")
        };
        assert_eq!(request.path, path);
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(
                request.header(gone).is_empty(),
                "{gone} reached the upstream"
            );
        }
        let expected: &[&str] = if token { &["client1"] } else { &[] };
        assert_eq!(request.header("x-jose-binding-client-id"), expected);
    }
}

#[tokio::test]
async fn a_101_that_is_not_the_websocket_asked_for_is_a_502_and_nothing_is_joined() {
    // This upstream switches to h2c whatever was asked.
    let upstream = H2cUpstream::start().await;
    let server = TestServer::gateway(config(&upstream.url())).await;
    let (mut tls, issuer) = bound_tls(server.port).await;
    let head = ask_upgrade(&mut tls, "/chat", "websocket", Some(&issuer)).await;
    assert_eq!(status_of(&head), 502, "{head}");
    assert!(head.contains(r#"content-type: application/json"#), "{head}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].header("upgrade"), ["websocket"]);
    assert!(seen[0].header("http2-settings").is_empty());
}

#[tokio::test]
async fn a_websocket_is_public_only_where_public_websockets_are_enabled() {
    let echo = WsEcho::start().await;
    let mut cfg = config(&echo.url());
    cfg.public_paths = vec!["/open".into()];
    cfg.public_websocket_paths = vec!["/live".into()];
    let server = TestServer::gateway(cfg).await;
    // A public path for plain requests is not one for tunnels.
    assert_eq!(
        websocket(server.port, "/open/ws", false).await.err(),
        Some(401)
    );
    assert_eq!(
        websocket(server.port, "/live/../x", false).await.err(),
        Some(401)
    );
    let mut ws = websocket(server.port, "/live/feed", false).await.unwrap();
    assert!(echoes(&mut ws).await);
    let mut ws = websocket(server.port, "/open/ws", true).await.unwrap();
    assert!(echoes(&mut ws).await);
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_tunnel_without_a_token_is_cut_at_the_authentication_deadline_and_a_bound_one_is_not() {
    let echo = WsEcho::start().await;
    let mut cfg = config(&echo.url());
    cfg.public_websocket_paths = vec!["/live".into()];
    let mut opts = ServerOptions::default();
    opts.auth_timeout = Duration::from_secs(1);
    let server = TestServer::gateway_with(cfg, opts).await;
    let mut public = websocket(server.port, "/live", false).await.unwrap();
    let mut bound = websocket(server.port, "/chat", true).await.unwrap();
    assert!(echoes(&mut public).await && echoes(&mut bound).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !echoes(&mut public).await,
        "a public tunnel outlived the deadline"
    );
    assert!(echoes(&mut bound).await, "a bound tunnel was cut");
}

#[tokio::test]
async fn tunnels_hold_their_slot_and_are_evicted_like_any_connection_without_a_token() {
    let echo = WsEcho::start().await;
    let mut cfg = config(&echo.url());
    cfg.public_websocket_paths = vec!["/live".into()];
    let mut opts = ServerOptions::default();
    opts.max_connections = 3;
    opts.eviction_min_age = Duration::from_millis(100);
    let server = TestServer::gateway_with(cfg, opts).await;
    let mut tunnels = Vec::new();
    for _ in 0..8 {
        let mut ws = websocket(server.port, "/live", false).await.unwrap();
        assert!(echoes(&mut ws).await);
        tunnels.push(ws);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let mut open = Vec::new();
    for (i, ws) in tunnels.iter_mut().enumerate() {
        if echoes(ws).await {
            open.push(i);
        }
    }
    assert_eq!(open, [5, 6, 7], "tunnels open past the budget of 3");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(echo.open.load(Ordering::SeqCst), 3, "upstream tunnels");

    // A tunnel whose request carried a token is never evicted.
    let mut bound = websocket(server.port, "/chat", true).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut ws = websocket(server.port, "/live", false).await.unwrap();
        assert!(echoes(&mut ws).await);
    }
    assert!(
        echoes(&mut bound).await,
        "an authenticated tunnel was evicted"
    );
}

#[tokio::test]
async fn a_silent_tunnel_closes_after_the_idle_timeout() {
    let echo = WsEcho::start().await;
    let mut opts = ServerOptions::default();
    opts.idle_timeout = Duration::from_secs(1);
    let server = TestServer::gateway_with(config(&echo.url()), opts).await;
    let mut silent = websocket(server.port, "/chat", true).await.unwrap();
    let mut chatty = websocket(server.port, "/chat", true).await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(echoes(&mut chatty).await, "a busy tunnel was closed");
    }
    assert!(
        !echoes(&mut silent).await,
        "a silent tunnel outlived the idle timeout"
    );
}
