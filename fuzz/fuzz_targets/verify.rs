//! The verifier on arbitrary input, with a real key: every step of §7 must
//! return a code, never panic. Seeds: the token vectors and mutations.
#![no_main]

use std::sync::{Arc, OnceLock};

use jose_binding::{Ekm, SoftwareRootKey};
use jose_binding::{ClientId, ConnectionVerifier, Keystore, Policy};
use libfuzzer_sys::fuzz_target;

fn keystore() -> &'static Keystore {
    static KS: OnceLock<Keystore> = OnceLock::new();
    KS.get_or_init(|| {
        // The root key and EKM of the first token vector, so seeds verify.
        let key = SoftwareRootKey::from_b64url("REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk")
            .expect("key");
        let mut ks = Keystore::default();
        ks.set(ClientId::new("client1").expect("id"), vec![key]);
        ks
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let ekm = Ekm::from_bytes(hex_ekm());
    let mut conn = ConnectionVerifier::new(ekm, Arc::new(Policy::default()));
    // At the vectors' issue time, so valid seeds go all the way to step 14.
    let first = conn.verify_at(keystore(), token, 1_767_225_600.0);
    // A second try exercises the replay path.
    let second = conn.verify_at(keystore(), token, 1_767_225_600.0);
    if first.is_ok() {
        assert!(second.is_err(), "a token verified twice on one connection");
    }
});

fn hex_ekm() -> [u8; 32] {
    let h = "d5efe7d2d7de310d9144daceaef444b30217c22a89372afb316692531caa8563";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}
