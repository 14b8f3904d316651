//! The per-token primitives from the two crypto libraries in the build,
//! side by side in one run: RustCrypto (hmac, aes-gcm) and aws-lc-rs (which
//! rustls already uses). `cargo bench -p jose-binding --bench primitives`.
//!
//! Inputs are the sizes of a form-S signing input (about 400 bytes) and of a
//! form-ES claims set (about 250 bytes). "keyed per token" builds the key
//! state for every token, as a verifier without per-connection state must;
//! "per connection" builds it once and reuses it.

// `criterion_group!` defines a `pub fn` that cannot take a doc comment,
// and a bench is no API: the package's `missing_docs` lint is off here.
#![allow(missing_docs)]

use std::hint::black_box;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_lc_rs::aead::{self, LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hmac as lc_hmac;
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn benches(c: &mut Criterion) {
    let key = [7u8; 32];
    let input = vec![b'a'; 400];
    let tag: [u8; 32] = {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        m.update(&input);
        m.finalize().into_bytes().into()
    };
    let lc_key = lc_hmac::Key::new(lc_hmac::HMAC_SHA256, &key);
    assert!(lc_hmac::verify(&lc_key, &input, &tag).is_ok());

    let mut g = c.benchmark_group("hmac_sha256_verify");
    g.bench_function("rustcrypto/keyed_per_token", |b| {
        b.iter(|| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(black_box(&key)).unwrap();
            m.update(black_box(&input));
            m.verify_slice(black_box(&tag)).is_ok()
        })
    });
    g.bench_function("aws_lc_rs/keyed_per_token", |b| {
        b.iter(|| {
            let k = lc_hmac::Key::new(lc_hmac::HMAC_SHA256, black_box(&key));
            lc_hmac::verify(&k, black_box(&input), black_box(&tag)).is_ok()
        })
    });
    g.bench_function("aws_lc_rs/per_connection", |b| {
        b.iter(|| lc_hmac::verify(&lc_key, black_box(&input), black_box(&tag)).is_ok())
    });
    g.finish();

    let plaintext = vec![b'c'; 250];
    let aad = vec![b'h'; 80];
    let iv = [3u8; 12];
    let (ct, gcm_tag) = {
        let mut buf = plaintext.clone();
        let t = Aes256Gcm::new(&key.into())
            .encrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut buf)
            .unwrap();
        (buf, t)
    };
    let lc_aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
    let mut g = c.benchmark_group("aes256gcm_decrypt");
    g.bench_function("rustcrypto/keyed_per_token", |b| {
        b.iter(|| {
            let mut buf = ct.clone();
            Aes256Gcm::new(black_box(&key).into())
                .decrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut buf, &gcm_tag)
                .is_ok()
        })
    });
    let lc_open = |k: &LessSafeKey| {
        let mut buf = ct.clone();
        buf.extend_from_slice(&gcm_tag);
        let nonce = aead::Nonce::assume_unique_for_key(iv);
        k.open_in_place(nonce, aead::Aad::from(&aad), &mut buf)
            .is_ok()
    };
    assert!(lc_open(&lc_aead));
    g.bench_function("aws_lc_rs/keyed_per_token", |b| {
        b.iter(|| {
            let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&key)).unwrap());
            lc_open(&k)
        })
    });
    g.bench_function("aws_lc_rs/per_connection", |b| {
        b.iter(|| lc_open(black_box(&lc_aead)))
    });
    g.finish();
}

criterion_group!(primitives, benches);
criterion_main!(primitives);
