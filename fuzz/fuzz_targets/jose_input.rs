//! jose-debug's readers of what people paste: any token text (compact or
//! JSON serialization, opened with a fixed symmetric key so the HMAC and
//! key-wrap paths run) and any key file text (PEM, JWK, JWK set). Never a
//! panic.
#![no_main]

use jose_debug::inspect::{self, DecodeKeys};
use jose_debug::keyring::{parse_key_text, KeyRing};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ring = KeyRing {
        keys: parse_key_text(r#"{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA","kid":"k"}"#, "f")
            .unwrap_or_default(),
    };
    let keys = DecodeKeys {
        sig: Some(Zeroizing::new(vec![7; 32])),
        enc: Some(Zeroizing::new(vec![7; 32])),
        ring,
        ..DecodeKeys::default()
    };
    let _ = inspect::decode(&text, &keys, 1_767_225_600.0);
    let _ = parse_key_text(&text, "fuzz");
});
