//! gRPC through the binding, with tonic on both ends: an app's plaintext
//! gRPC channel → the sidecar (h2c) → the gateway (bound TLS) → a gRPC
//! server on an `h2c://` or `https://` upstream. All four call kinds,
//! trailers (status, message), deadlines, the identity as metadata, and
//! what a gRPC client sees when the binding refuses it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jose_binding::client::{HttpVersion, Target};
use jose_binding::gateway::{GatewayConfig, Route};
use jose_binding::sidecar::SidecarConfig;
use jose_binding::tls;
use jose_binding_e2e::grpc::pb::echo_client::EchoClient;
use jose_binding_e2e::grpc::pb::Message;
use jose_binding_e2e::grpc::GrpcServer;
use jose_binding_e2e::{fixture_key, fixtures, setup_with_key, start_sidecar, TestServer};
use tonic::transport::Channel;
use tonic::Code;

fn message(text: &str) -> Message {
    Message {
        text: text.to_owned(),
        ..Message::default()
    }
}

/// A gRPC client of the sidecar in front of a gateway to `upstream`, as
/// `client` with `key`.
async fn through_the_binding(
    upstream: &str,
    upstream_tls: bool,
    client: &str,
    key: jose_binding::SoftwareRootKey,
) -> (EchoClient<Channel>, TestServer) {
    let mut config = GatewayConfig::new(upstream.parse().unwrap());
    if upstream_tls {
        let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
        config.upstream_tls = Some(Arc::new(
            tls::client_config(roots, &[tls::ALPN_H2, tls::ALPN_HTTP11]).unwrap(),
        ));
    }
    let gateway = TestServer::gateway(config).await;
    let sidecar = sidecar_to(&gateway, client, key, |_| {}).await;
    (channel_to(&sidecar).await, gateway)
}

/// A sidecar in front of `gateway` as `client` with `key`; its address.
async fn sidecar_to(
    gateway: &TestServer,
    client: &str,
    key: jose_binding::SoftwareRootKey,
    edit: impl FnOnce(&mut SidecarConfig),
) -> String {
    let target = Target::parse(&gateway.url()).unwrap();
    let mut config = SidecarConfig::new(target, setup_with_key(client, HttpVersion::Http2, key));
    edit(&mut config);
    start_sidecar(config, "127.0.0.1:0").await
}

/// A plaintext gRPC channel to `sidecar`, as an app opens it.
async fn channel_to(sidecar: &str) -> EchoClient<Channel> {
    let channel = Channel::from_shared(format!("http://{sidecar}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
}

/// The four kinds of call, a status with its message, a deadline, and the
/// identity at the server, through one chain.
async fn every_kind_of_call(client: &mut EchoClient<Channel>) {
    // Unary: the reply, and the verified client in the server's metadata.
    let r = client.say(message("hello")).await.unwrap().into_inner();
    assert_eq!(r.text, "hello");
    assert_eq!(
        (r.client_id.as_str(), r.form.as_str()),
        ("client1", "signed")
    );

    // Server streaming: 100 replies in order.
    let mut stream = client
        .count(Message {
            count: 100,
            ..message("n")
        })
        .await
        .unwrap()
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        seqs.push(r.seq);
    }
    assert_eq!(seqs, (0..100).collect::<Vec<_>>());

    // Client streaming: 100 messages, one reply when the stream ends.
    let out = tokio_stream::iter((0..100).map(|i| message(&format!("{i},"))));
    let r = client.collect(out).await.unwrap().into_inner();
    assert_eq!(r.seq, 100);
    assert!(r.text.starts_with("0,1,2,") && r.text.ends_with("98,99,"));

    // Bidirectional: 1,000 messages each way, none lost or reordered.
    let out = tokio_stream::iter((0..1000).map(|i| message(&i.to_string())));
    let mut replies = client.chat(out).await.unwrap().into_inner();
    let mut n = 0u32;
    while let Some(r) = replies.message().await.unwrap() {
        assert_eq!((r.seq, r.text.as_str()), (n, n.to_string().as_str()));
        n += 1;
    }
    assert_eq!(n, 1000);

    // A status and message the server set pass in the trailers.
    let e = client
        .say(Message {
            fail_with: Code::NotFound as i32,
            ..message("no such order")
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::NotFound, "no such order"));

    // The caller's deadline reaches the server (grpc-timeout passes both
    // hops), and a call past it ends at the deadline, not when the server
    // answers. tonic reports its own expiry as CANCELLED ("Timeout
    // expired"); other stacks say DEADLINE_EXCEEDED.
    let mut timed = tonic::Request::new(message("in time"));
    timed.set_timeout(Duration::from_secs(5));
    let r = client.say(timed).await.unwrap().into_inner();
    assert!(
        r.deadline.ends_with(['u', 'm', 'S']) && r.deadline.len() > 1,
        "{r:?}"
    );
    let mut slow = tonic::Request::new(Message {
        delay_ms: 3000,
        ..message("late")
    });
    slow.set_timeout(Duration::from_millis(300));
    let start = Instant::now();
    let e = client.say(slow).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The connection still carries calls after the abandoned one.
    assert_eq!(
        client
            .say(message("after"))
            .await
            .unwrap()
            .into_inner()
            .text,
        "after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_sidecar_and_gateway_to_an_h2c_upstream() {
    let server = GrpcServer::h2c().await;
    let upstream = format!("h2c://127.0.0.1:{}", server.port);
    let (mut client, _gateway) =
        through_the_binding(&upstream, false, "client1", fixture_key("client1")).await;
    every_kind_of_call(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_sidecar_and_gateway_to_an_https_upstream() {
    let server = GrpcServer::tls().await;
    let upstream = format!("https://localhost:{}", server.port);
    let (mut client, _gateway) =
        through_the_binding(&upstream, true, "client1", fixture_key("client1")).await;
    every_kind_of_call(&mut client).await;
}

/// A token the gateway refuses is HTTP 401, which a gRPC client reads as
/// UNAUTHENTICATED, and a route it may not call 403, PERMISSION_DENIED
/// (gRPC's HTTP-to-status mapping); the server never sees the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_unauthenticated_to_a_grpc_client() {
    let server = GrpcServer::h2c().await;
    let upstream = format!("h2c://127.0.0.1:{}", server.port);
    // client1's id with client2's key: the signature does not verify.
    let (mut client, _gateway) =
        through_the_binding(&upstream, false, "client1", fixture_key("client2")).await;
    let e = client.say(message("hello")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unauthenticated, "bad_signature"),
        "{e:?}"
    );
    let e = client
        .chat(tokio_stream::iter([message("x")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // A route the verified client may not call is 403, PERMISSION_DENIED
    // to gRPC.
    let mut only_client2 = Route::new("/jose_binding.echo.v1.Echo/", upstream.parse().unwrap());
    only_client2.clients = Some(vec!["client2".into()]);
    let gateway = TestServer::gateway(GatewayConfig::with_routes(vec![only_client2])).await;
    let mut clients = Vec::new();
    for who in ["client1", "client2"] {
        let sidecar = sidecar_to(&gateway, who, fixture_key(who), |_| {}).await;
        clients.push(channel_to(&sidecar).await);
    }
    let e = clients[0].say(message("hello")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::PermissionDenied, "forbidden"),
        "{e:?}"
    );
    let r = clients[1].say(message("hello")).await.unwrap().into_inner();
    assert_eq!(r.client_id, "client2");
}

/// A second gRPC stack, from another code base and stricter about what a
/// proxy forwards: Python's grpcio (gRPC's C core, Debian's
/// python3-grpcio), through the sidecar and the gateway to tonic's server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_from_pythons_grpcio_through_sidecar_and_gateway() {
    let server = GrpcServer::h2c().await;
    let upstream = format!("h2c://127.0.0.1:{}", server.port);
    let mut config = GatewayConfig::new(upstream.parse().unwrap());
    config.idle_timeout = Duration::from_secs(30);
    let gateway = TestServer::gateway(config).await;
    let sidecar = sidecar_to(&gateway, "client1", fixture_key("client1"), |_| {}).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/grpc_echo_client.py");
    // Debian's interpreter, where Debian's python3-grpcio is.
    let mut python = std::process::Command::new("/usr/bin/python3");
    python.arg(&script).arg(&sidecar);
    let out = jose_binding_e2e::output(python).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(seen["say"]["text"], "hello");
    assert_eq!(
        seen["say"]["client_id"], "client1",
        "identity metadata: {seen}"
    );
    assert_ne!(
        seen["deadline"], "",
        "grpc-timeout reached the server: {seen}"
    );
    assert_eq!(
        seen["count"],
        serde_json::json!((0..50).collect::<Vec<_>>())
    );
    assert_eq!(seen["collect"]["seq"], 50);
    assert_eq!(seen["chat_in_order"], true, "{seen}");
    assert_eq!(
        seen["status"],
        serde_json::json!(["NOT_FOUND", "no such order"])
    );
    assert_eq!(seen["late"], "DEADLINE_EXCEEDED");

    // client1's id with client2's key: what a grpcio user sees.
    let wrong_key = sidecar_to(&gateway, "client1", fixture_key("client2"), |_| {}).await;
    let mut python = std::process::Command::new("/usr/bin/python3");
    python.arg(&script).arg(&wrong_key).arg("refused");
    let out = jose_binding_e2e::output(python).await;
    let seen: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(
        seen["refused"],
        serde_json::json!(["UNAUTHENTICATED", "bad_signature"])
    );
}

/// A long-lived stream is traffic for every idle clock on the way: a chat
/// that sends a message every 300 ms lives through three times the 1 s
/// idle timeout of the sidecar, the gateway's connection and its upstream
/// body; a stream that falls silent past it is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_outlives_the_idle_timeouts_while_it_talks() {
    let server = GrpcServer::h2c().await;
    let idle = Duration::from_secs(1);
    let mut config =
        GatewayConfig::new(format!("h2c://127.0.0.1:{}", server.port).parse().unwrap());
    config.idle_timeout = idle;
    let mut opts = jose_binding::server::ServerOptions::default();
    opts.idle_timeout = idle;
    let gateway = TestServer::gateway_with(config, opts).await;
    let sidecar = sidecar_to(&gateway, "client1", fixture_key("client1"), |c| {
        c.idle_timeout = idle;
    })
    .await;
    let mut client = channel_to(&sidecar).await;

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let start = Instant::now();
    for i in 0..10 {
        tx.send(message(&i.to_string())).await.unwrap();
        let r = replies.message().await.unwrap().expect("a reply");
        assert_eq!(r.text, i.to_string());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(start.elapsed() > idle * 3, "{:?}", start.elapsed());
    drop(tx);
    assert!(
        replies.message().await.unwrap().is_none(),
        "the stream ends cleanly"
    );

    // Silent past the idle timeout: the stream is cut, not held open.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(message("then silence")).await.unwrap();
    assert!(replies.message().await.unwrap().is_some());
    let cut = tokio::time::timeout(Duration::from_secs(5), replies.message()).await;
    assert!(matches!(cut, Ok(Err(_))), "{cut:?}");
}

/// At the gateway's shutdown a stream in flight may finish within the
/// grace period; one still open after it is cut, and the client hears so
/// (an error status, not a stream that hangs), while new calls go nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_still_open_at_shutdown_is_cut_after_the_grace() {
    let server = GrpcServer::h2c().await;
    let config = GatewayConfig::new(format!("h2c://127.0.0.1:{}", server.port).parse().unwrap());
    let mut opts = jose_binding::server::ServerOptions::default();
    opts.shutdown_grace = Duration::from_secs(1);
    let mut gateway = TestServer::gateway_with(config, opts).await;
    let sidecar = sidecar_to(&gateway, "client1", fixture_key("client1"), |_| {}).await;
    let mut client = channel_to(&sidecar).await;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(message("before")).await.unwrap();
    assert!(replies.message().await.unwrap().is_some());

    let stopped = Instant::now();
    let serving = gateway.signal_stop().expect("the serving task");
    // The stream still carries messages during the grace period...
    tx.send(message("during")).await.unwrap();
    let r = replies
        .message()
        .await
        .unwrap()
        .expect("a reply in the grace period");
    assert_eq!(r.text, "during");
    // ...and is cut once it is over: an error, within the grace and a bit.
    let end = tokio::time::timeout(Duration::from_secs(5), replies.message()).await;
    assert!(matches!(end, Ok(Err(_))), "{end:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopped.elapsed()
    );
    serving.await.unwrap();
}
