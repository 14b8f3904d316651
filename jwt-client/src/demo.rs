//! `jwt-client demo`: the point of the product in one command.
//!
//! Starts the reference server in-process on an ephemeral loopback port with
//! the fixtures, then shows each form accepted, a token replayed on a second
//! connection refused (the binding), and an in-connection replay refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Reply, Target};
use jose_binding::echo::EchoApp;
use jose_binding::keystore::KeystoreHandle;
use jose_binding::layer::Binding;
use jose_binding::server::{self, ServerOptions};
use jose_binding::{tls, ClientId, Form, Keystore, Policy, RootKey, SoftwareRootKey};
use serde_json::json;

/// Finds fixtures/ from the current directory or the workspace this binary was built in.
fn fixtures() -> Result<PathBuf, String> {
    let candidates = [
        PathBuf::from("fixtures"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("keystore.toml").exists())
        .ok_or_else(|| "fixtures/ not found: run the demo from the repository root".to_owned())
}

struct Narrator {
    json: bool,
    failures: u32,
}

impl Narrator {
    fn say(&self, text: &str) {
        if !self.json {
            outln!("{text}");
        }
    }

    fn expect(&mut self, step: &str, reply: &Reply, want_status: u16, want_code: Option<&str>) {
        let code = reply.error_code().map(jose_binding::ErrorCode::as_str);
        let ok = reply.status == want_status && code == want_code;
        if !ok {
            self.failures += 1;
        }
        if self.json {
            outln!(
                "{}",
                json!({"step": step, "status": reply.status, "code": code, "expected": want_code.unwrap_or("ok"), "as_expected": ok})
            );
        } else {
            let verdict = if ok { "as expected" } else { "UNEXPECTED" };
            let what = match &code {
                Some(c) => format!("401 {c}"),
                None => format!(
                    "{} {}",
                    reply.status,
                    reply.json().map(|v| v.to_string()).unwrap_or_default()
                ),
            };
            outln!("    -> {what}   [{verdict}]");
        }
    }
}

pub async fn run(json: bool, tpm_key: Option<Arc<dyn RootKey>>) -> Result<ExitCode, String> {
    let dir = fixtures()?;
    let chain = tls::load_certs(&dir.join("server.pem")).map_err(|e| e.to_string())?;
    let key = tls::load_key(&dir.join("server.key")).map_err(|e| e.to_string())?;
    let tls_config = Arc::new(tls::server_config(chain, key).map_err(|e| e.to_string())?);
    let keystore = Keystore::load(&dir.join("keystore.toml")).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let binding = Binding::new(KeystoreHandle::new(keystore), Policy::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        listener,
        tls_config,
        binding.clone(),
        EchoApp::new(&binding.layer()),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let in_tpm = tpm_key.is_some();
    let root: Arc<dyn RootKey> = match tpm_key {
        Some(k) => k,
        None => Arc::new(
            SoftwareRootKey::from_file(&dir.join("client1.key")).map_err(|e| e.to_string())?,
        ),
    };
    let roots = tls::load_roots(&dir.join("ca.pem")).map_err(|e| e.to_string())?;
    let id = ClientId::new("client1").map_err(|e| e.to_string())?;
    let setup =
        ClientSetup::new(roots, HttpVersion::Auto, id, root.clone()).map_err(|e| e.to_string())?;
    let target = Target::parse(&format!("https://localhost:{port}")).map_err(|e| e.to_string())?;
    let claims = json!({"role": "ops"});
    let mut n = Narrator { json, failures: 0 };

    n.say(&format!("jwt-server started in-process on https://localhost:{port} (TLS 1.3, fixtures/keystore.toml)"));
    if in_tpm {
        n.say(&format!(
            "client1 root key: inside the TPM (object fp={}); only per-connection keys exist in memory\n",
            root.fingerprint()
        ));
    } else {
        n.say(&format!(
            "client1 root key fp={} (a fingerprint; the key itself is never printed)\n",
            root.fingerprint()
        ));
    }

    let mut a = BoundConnection::connect(&target, &setup)
        .await
        .map_err(|e| e.to_string())?;
    let (ekm, sig, enc) = a.fingerprints();
    n.say(&format!(
        "Connection A ({}): EKM fp={ekm} -> sig_key fp={sig}, enc_key fp={enc}",
        if a.is_h2() { "HTTP/2" } else { "HTTP/1.1" }
    ));
    for form in Form::ALL {
        n.say(&format!("  POST /v1/claims with a fresh {form} token"));
        let reply = a.send(form, &claims).await.map_err(|e| e.to_string())?;
        n.expect(form.as_str(), &reply, 200, None);
    }

    let stolen = a.token(Form::Signed, &claims).map_err(|e| e.to_string())?;
    n.say("\nA thief copies a valid token made on connection A and presents it on its own connection B:");
    let mut b = BoundConnection::connect(&target, &setup)
        .await
        .map_err(|e| e.to_string())?;
    n.say(&format!(
        "Connection B: EKM fp={} (different connection, different keys)",
        b.fingerprints().0
    ));
    let reply = b.send_token(&stolen).await.map_err(|e| e.to_string())?;
    n.expect(
        "replay_other_connection",
        &reply,
        401,
        Some("bad_signature"),
    );

    n.say("\nThe same token on its own connection A is accepted once...");
    let reply = a.send_token(&stolen).await.map_err(|e| e.to_string())?;
    n.expect("first_use", &reply, 200, None);
    n.say("...and refused when replayed on A:");
    let reply = a.send_token(&stolen).await.map_err(|e| e.to_string())?;
    n.expect("replay_same_connection", &reply, 401, Some("replayed"));

    let _ = stop.send(());
    let _ = server.await;
    if n.failures == 0 {
        n.say("\nAll steps behaved as expected: a token is worthless off its connection.");
        Ok(ExitCode::SUCCESS)
    } else {
        n.say(&format!(
            "\n{} step(s) did not behave as expected",
            n.failures
        ));
        Ok(ExitCode::FAILURE)
    }
}
