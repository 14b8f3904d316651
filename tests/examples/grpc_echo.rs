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

use jose_binding_e2e::grpc::pb::echo_client::EchoClient;
use jose_binding_e2e::grpc::pb::Message;

const USAGE: &str = "usage: grpc_echo serve HOST:PORT | grpc_echo call http://HOST:PORT";

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
