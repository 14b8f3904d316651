//! Micro-benchmarks, side by side in one run (docs/BENCHMARKS.md):
//! `cargo bench -p jose-binding --bench verify`, then `cargo xtask bench-report`.
//!
//! All groups use the same ~250-byte claims set.

// `criterion_group!` defines a `pub fn` that cannot take a doc comment,
// and a bench is no API: the package's `missing_docs` lint is off here.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hmac::{Hmac, Mac};
use jose_binding::token::seal;
use jose_binding::Issuer;
use jose_binding::{ClientId, ConnectionVerifier, Form, Keystore, Policy};
use jose_binding::{Ekm, SoftwareRootKey, SubKeys};
use serde_json::{json, Value};
use sha2::Sha256;

const T0: i64 = 1_767_225_600;

fn app_claims() -> Value {
    // With the registered claims this makes a claims set of about 250 bytes.
    json!({
        "role": "ops",
        "scope": "config:read config:write metrics:read",
        "tenant": "eu-west-1/prod",
        "session": "7f3c2a9e-51b4-4d0e-9a8b-2c6f1e0d4b7a",
        "device": "linux",
    })
}

struct Fixture {
    id: ClientId,
    root: SoftwareRootKey,
    ekm: Ekm,
    keys: SubKeys,
    keystore: Keystore,
    issuer: Issuer,
}

fn fixture() -> Fixture {
    let id = ClientId::new("client1").unwrap();
    let root = SoftwareRootKey::new(&[7u8; 32]).unwrap();
    let ekm = Ekm::from_bytes([9u8; 32]);
    let keys = SubKeys::derive(&root, &ekm, &id).unwrap();
    let mut keystore = Keystore::default();
    keystore.set(id.clone(), vec![root.clone()]);
    let issuer = Issuer::new(id.clone(), "localhost", keys.clone());
    Fixture {
        id,
        root,
        ekm,
        keys,
        keystore,
        issuer,
    }
}

/// Token number `i` of a steady 1000 requests/s stream, and the time it is verified at.
fn token_at(f: &Fixture, form: Form, i: u64) -> (String, f64) {
    let iat = T0 + (i / 1000) as i64;
    let claims = f
        .issuer
        .claims(&app_claims(), iat, &format!("jti-{i:016}"))
        .unwrap();
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(&i.to_be_bytes());
    (seal(form, &f.id, &claims, &f.keys, iv), iat as f64)
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let claims_len = f
        .issuer
        .claims(&app_claims(), T0, "xxxxxxxxxxxxxxxxxxxxxx")
        .unwrap()
        .len();
    eprintln!("claims set: {claims_len} bytes");

    c.bench_function("key_schedule/software", |b| {
        b.iter(|| SubKeys::derive(black_box(&f.root), black_box(&f.ekm), &f.id).unwrap())
    });

    for form in Form::ALL {
        let name = match form {
            Form::Signed => "S",
            Form::EncryptedThenSigned => "ES",
            Form::SignedThenEncrypted => "SE",
        };
        c.bench_function(&format!("issue/{name}"), |b| {
            b.iter(|| f.issuer.issue(form, black_box(&app_claims())).unwrap())
        });
        // The server's whole per-request path: parse, checks, MAC/AEAD,
        // claims, replay cache (steady state, evicting), pinning.
        let mut conn = ConnectionVerifier::new(f.ekm.clone(), Arc::new(Policy::default()));
        let mut i = 0u64;
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    token_at(&f, form, i)
                },
                |(token, now)| conn.verify_at(&f.keystore, &token, now).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }

    // The floor: the raw primitives a form-S verification cannot avoid.
    let (s_token, _) = token_at(&f, Form::Signed, 1);
    let parts: Vec<&str> = s_token.split('.').collect();
    let signing_input = &s_token[..parts[0].len() + 1 + parts[1].len()];
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    c.bench_function("floor/base64url_decode", |b| {
        b.iter(|| {
            for p in &parts {
                black_box(URL_SAFE_NO_PAD.decode(black_box(p)).unwrap());
            }
        })
    });
    c.bench_function("floor/hmac_sha256_verify", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(f.keys.sig.expose()).unwrap();
            m.update(black_box(signing_input).as_bytes());
            m.verify_slice(black_box(&sig)).unwrap()
        })
    });
    c.bench_function("floor/json_parse_claims", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&payload)).unwrap())
    });

    // What a user would otherwise reach for: josekit's high-level API.
    let hs = josekit::jws::HS256
        .verifier_from_bytes(f.keys.sig.expose())
        .unwrap();
    c.bench_function("josekit/decode_with_verifier_S", |b| {
        b.iter(|| josekit::jwt::decode_with_verifier(black_box(&s_token), &hs).unwrap())
    });
    let (es_token, _) = token_at(&f, Form::EncryptedThenSigned, 2);
    let inner_jwe = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(es_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let dec = josekit::jwe::Dir
        .decrypter_from_bytes(f.keys.enc.expose())
        .unwrap();
    c.bench_function("josekit/jwe_decrypt", |b| {
        b.iter(|| josekit::jwe::deserialize_compact(black_box(&inner_jwe), &dec).unwrap())
    });

    // The alternative binding: a DPoP-style proof (RFC 9449), ES256 sign on the
    // client and verify on the server, per request.
    let kp = josekit::jws::ES256.generate_key_pair().unwrap();
    let signer = josekit::jws::ES256
        .signer_from_der(kp.to_der_private_key())
        .unwrap();
    let verifier = josekit::jws::ES256
        .verifier_from_der(kp.to_der_public_key())
        .unwrap();
    let mut i = 0u64;
    c.bench_function("dpop/es256_sign_and_verify", |b| {
        b.iter(|| {
            i += 1;
            let mut h = josekit::jws::JwsHeader::new();
            h.set_token_type("dpop+jwt");
            let mut p = josekit::jwt::JwtPayload::new();
            p.set_jwt_id(format!("{i}"));
            p.set_claim("htm", Some(json!("POST"))).unwrap();
            p.set_claim("htu", Some(json!("https://localhost:8443/v1/claims")))
                .unwrap();
            p.set_claim("iat", Some(json!(T0))).unwrap();
            let proof = josekit::jwt::encode_with_signer(&p, &h, &signer).unwrap();
            josekit::jwt::decode_with_verifier(&proof, &verifier).unwrap()
        })
    });
}

criterion_group! {
    name = micro;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = benches
}
criterion_main!(micro);
