//! A real key log and a bound token to try `jose-debug` on.
//!
//! Starts the reference server in process (loopback, the test fixtures),
//! opens three connections as `client1` with the project's own client, sends
//! an encrypted-then-signed token on the second, and prints that token.
//! Client and server write their TLS secrets to `SSLKEYLOGFILE`, as they do
//! whenever it is set:
//!
//! ```sh
//! SSLKEYLOGFILE=/tmp/keys.log cargo run -p jose-debug --example bound_token > /tmp/token
//! cargo run -p jose-debug -- decode --keylog /tmp/keys.log --root-key @fixtures/client1.key < /tmp/token
//! ```

use std::process::ExitCode;

use jose_binding::client::HttpVersion;
use jose_binding::{Form, Policy};
use jose_binding_e2e::{connect, fixture_keystore, setup, TestServer};
use serde_json::json;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::var_os("SSLKEYLOGFILE").is_none() {
        eprintln!("set SSLKEYLOGFILE=/path/to/keys.log: this example exists to fill a key log");
        return ExitCode::from(2);
    }
    let server = TestServer::start(Policy::default(), fixture_keystore()).await;
    let setup = setup("client1", HttpVersion::Auto);
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(connect(&server, &setup).await);
    }
    let Some(second) = conns.get_mut(1) else {
        return ExitCode::FAILURE;
    };
    let token = match second.token(Form::EncryptedThenSigned, &json!({"role": "ops"})) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot issue a token: {e}");
            return ExitCode::FAILURE;
        }
    };
    match second.send_token(&token).await {
        Ok(reply) => eprintln!(
            "sent on connection 2 of 3 (EKM fp={}): HTTP {}",
            second.fingerprints().0,
            reply.status
        ),
        Err(e) => {
            eprintln!("request failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{token}");
    drop(conns);
    server.stop().await;
    ExitCode::SUCCESS
}
