//! A small gRPC service (tests/proto/echo.proto) to put behind the
//! gateway, and a plain gRPC client to call it through the sidecar: the
//! gRPC version of the README's gateway example.
//!
//! ```sh
//! cargo run -p jose-binding-e2e --example grpc_echo -- serve 127.0.0.1:50051
//! cargo run -p jwt-server -- --dev --upstream h2c://127.0.0.1:50051
//! cargo run -p jwt-client -- proxy --client-id client1 --key-file fixtures/client1.key
//! cargo run -p jose-binding-e2e --example grpc_echo -- call http://127.0.0.1:8080
//! ```
//!
//! The client knows nothing of binding: its plaintext channel goes to the
//! sidecar, which sends each call over a bound TLS connection with a fresh
//! token; the gateway verifies it and the service sees the client in
//! `x-jose-binding-client-id` metadata.
//!
//! `bench` times unary calls (scripts/bench-grpc.sh runs it): over a
//! plaintext channel to `http://HOST:PORT` (the service itself, or the
//! sidecar), or, with `https://`, as a Rust client that binds its own
//! connections (jose-binding's stamping layer under tonic), straight to
//! the gateway.

use jose_binding_e2e::grpc::pb::echo_client::EchoClient;
use jose_binding_e2e::grpc::pb::Message;

const USAGE: &str = "usage: grpc_echo serve HOST:PORT | grpc_echo call http://HOST:PORT | \
grpc_echo bench URL CALLS CONCURRENCY (https:// URL: as client1 with fixtures/client1.key)";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("gRPC echo service on h2c://{}", listener.local_addr()?);
            jose_binding_e2e::grpc::serve(listener, None).await;
            Ok(())
        }
        ["call", url] => call(url).await,
        ["bench", url, calls, concurrency] => {
            bench(url, calls.parse()?, concurrency.parse()?).await
        }
        _ => Err(USAGE.into()),
    }
}

/// One call of each kind, printed as the service answered it.
async fn call(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut client = EchoClient::connect(url.to_owned()).await?;
    let msg = |text: &str| Message {
        text: text.to_owned(),
        ..Message::default()
    };
    let r = client.say(msg("hello")).await?.into_inner();
    println!(
        "Say     -> {:?} (the service saw client_id={:?} form={:?})",
        r.text, r.client_id, r.form
    );
    let mut replies = client
        .count(Message {
            count: 3,
            ..msg("tick")
        })
        .await?
        .into_inner();
    while let Some(r) = replies.message().await? {
        println!("Count   -> {:?} #{}", r.text, r.seq);
    }
    let r = client
        .collect(tokio_stream::iter(["a", "b", "c"].map(msg)))
        .await?
        .into_inner();
    println!("Collect -> {:?} from {} messages", r.text, r.seq);
    let mut replies = client
        .chat(tokio_stream::iter(["ping", "pong"].map(msg)))
        .await?
        .into_inner();
    while let Some(r) = replies.message().await? {
        println!("Chat    -> {:?} #{}", r.text, r.seq);
    }
    Ok(())
}

/// `calls` unary calls over `concurrency` connections, as one JSON line:
/// calls per second and the latency percentiles, in microseconds.
async fn bench(
    url: &str,
    calls: usize,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let per_task = calls / concurrency.max(1);
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            if url.starts_with("https://") {
                let client = bound_client(&url).await?;
                timed(client, per_task).await
            } else {
                let client = EchoClient::connect(url).await?;
                timed(client, per_task).await
            }
        }));
    }
    let mut latencies = Vec::with_capacity(calls);
    for t in tasks {
        latencies.extend(
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "url": url,
            "calls": latencies.len(),
            "concurrency": concurrency,
            "secs": secs,
            "calls_per_sec": latencies.len() as f64 / secs,
            "p50_us": at(0.50),
            "p99_us": at(0.99),
        })
    );
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `n` unary calls one after another; each one's latency in microseconds.
async fn timed<T>(mut client: EchoClient<T>, n: usize) -> Result<Vec<u64>, BoxError>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<BoxError> + Send,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = std::time::Instant::now();
        client
            .say(Message {
                text: "bench".into(),
                ..Message::default()
            })
            .await?;
        out.push(t.elapsed().as_micros() as u64);
    }
    Ok(out)
}

/// A tonic client on a connection bound by jose-binding: every call gets a
/// fresh token of that connection (client1, the fixtures' key).
async fn bound_client(
    url: &str,
) -> Result<
    EchoClient<jose_binding::stamp::StampService<jose_binding::client::BoundSender>>,
    BoxError,
> {
    use jose_binding::client::{BoundConnection, HttpVersion, Target};
    use tower_layer::Layer;
    let target = Target::parse(url)?;
    let setup = jose_binding_e2e::setup("client1", HttpVersion::Http2);
    let (sender, issuer) = BoundConnection::connect(&target, &setup)
        .await?
        .into_service();
    let stamped =
        jose_binding::stamp::StampLayer::new(issuer, jose_binding::Form::Signed).layer(sender);
    Ok(EchoClient::with_origin(stamped, url.parse()?))
}
