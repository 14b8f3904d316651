//! The keystore parser on arbitrary text: an error or a keystore, never a
//! panic; and a parsed keystore survives its own serialization.
#![no_main]

use jose_binding::Keystore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ks) = Keystore::parse(text) {
        let again = Keystore::parse(&ks.to_toml()).expect("a keystore reparses");
        assert_eq!(again.len(), ks.len());
    }
});
