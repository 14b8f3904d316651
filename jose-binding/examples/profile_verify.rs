//! Runs verification in a loop for a profiler (docs/BENCHMARKS.md):
//! `valgrind --tool=callgrind target/release/examples/profile_verify 20000 [S|ES|SE]`.

use std::sync::Arc;

use jose_binding::token::seal;

use jose_binding::Issuer;
use jose_binding::{ClientId, ConnectionVerifier, Form, Keystore, Policy};
use jose_binding::{Ekm, SoftwareRootKey, SubKeys};
use serde_json::json;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let form: Form = std::env::args()
        .nth(2)
        .map(|f| f.parse().expect("form: S, ES or SE"))
        .unwrap_or(Form::Signed);
    let id = ClientId::new("client1").expect("id");
    let root = SoftwareRootKey::new(&[7u8; 32]).expect("key");
    let ekm = Ekm::from_bytes([9u8; 32]);
    let keys = SubKeys::derive(&root, &ekm, &id).expect("derive");
    let mut ks = Keystore::default();
    ks.set(id.clone(), vec![root]);
    let issuer = Issuer::new(id.clone(), "localhost", keys.clone());
    let app = json!({"role": "ops", "scope": "config:read config:write metrics:read",
        "tenant": "eu-west-1/prod", "session": "7f3c2a9e-51b4-4d0e-9a8b-2c6f1e0d4b7a", "device": "linux"});
    let tokens: Vec<(String, f64)> = (0..n)
        .map(|i| {
            let iat = 1_767_225_600 + (i / 1000) as i64;
            let claims = issuer
                .claims(&app, iat, &format!("jti-{i:016}"))
                .expect("claims");
            let mut iv = [0u8; 12];
            iv[..8].copy_from_slice(&i.to_be_bytes());
            (seal(form, &id, &claims, &keys, iv), iat as f64)
        })
        .collect();
    let mut conn = ConnectionVerifier::new(ekm, Arc::new(Policy::default()));
    let mut ok = 0;
    for (t, now) in &tokens {
        ok += conn.verify_at(&ks, t, *now).is_ok() as u64;
    }
    println!("{ok}/{n} verified");
}
