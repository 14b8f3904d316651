//! No input makes the decoder, the verdict or the renderers panic: arbitrary
//! bytes and text, every truncation of every vector token, and single-byte
//! mutations of them, all through the same code the binary runs.

use clap::Parser;
use jose_debug::cli::{Cli, Command};
use jose_debug::render::{self, Style};
use jose_debug::{app, inspect};
use proptest::prelude::*;
use serde_json::Value;

const NOW: &str = "1767225600";

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The whole `decode` path with derived keys, text and JSON, for one
/// token; whether the token is valid (`None`: not decoded).
fn decode_everything(token: &str) -> Option<bool> {
    // "-" would read stdin and "@x" a file: not what these tests are about.
    if token == "-" || token.starts_with('@') {
        return None;
    }
    let v = vectors();
    let t = &v["tokens"][0];
    let args = [
        "jose-debug",
        "decode",
        "--root-key",
        t["root_key_b64u"].as_str().unwrap(),
        "--ekm",
        t["ekm_hex"].as_str().unwrap(),
        "--client-id",
        "client1",
        "--now",
        NOW,
        "--",
        token,
    ];
    let Command::Decode(d) = Cli::try_parse_from(args).unwrap().command else {
        unreachable!()
    };
    match app::decode(&d) {
        Ok(r) => {
            let _ = render::decode_text(&r, Style { color: true });
            let _ = render::decode_text(&r, Style { color: false });
            let json = serde_json::to_string(&r).unwrap();
            assert!(serde_json::from_str::<Value>(&json).is_ok());
            assert!(!r.valid || r.verdict.accepted());
            Some(r.valid)
        }
        // Only an empty input (after cleaning) is a usage error here.
        Err(e) => {
            assert!(e.to_string().contains("no token"), "{e}");
            None
        }
    }
}

#[test]
fn every_truncation_of_every_vector_token() {
    let v = vectors();
    for t in v["tokens"].as_array().unwrap() {
        let token = t["token"].as_str().unwrap();
        for cut in 0..token.len() {
            assert_ne!(decode_everything(&token[..cut]), Some(true), "cut {cut}");
        }
        assert_eq!(decode_everything(token), Some(true));
    }
}

#[test]
fn every_single_byte_change_is_refused() {
    let v = vectors();
    for t in v["tokens"].as_array().unwrap() {
        let token = t["token"].as_str().unwrap();
        // Every 7th position, with characters that matter to the parser.
        for i in (0..token.len()).step_by(7) {
            for c in ['.', 'A', '_'] {
                let mut s = token.to_owned();
                s.replace_range(i..i + 1, &c.to_string());
                if s == token {
                    continue;
                }
                assert_eq!(decode_everything(&s), Some(false), "{s}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_are_cleaned_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        match inspect::clean(&bytes) {
            Ok(c) => {
                decode_everything(&c.token);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_text(s in "\\PC{0,300}") {
        decode_everything(&s);
    }

    #[test]
    fn token_shaped_text(parts in proptest::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 1..7)) {
        decode_everything(&parts.join("."));
    }
}
