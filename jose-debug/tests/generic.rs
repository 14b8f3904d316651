//! `decode --generic` on tokens no one here made, run as a user runs it:
//! the published examples of RFC 7515 A.1, RFC 7520 §4.4 and §5.6 verify or
//! decrypt, and with any one byte flipped exit 1; josekit's tokens for
//! every HMAC alg and every `dir` content encryption, nested too; and the
//! exit statuses that tell a wrong key (1) from a refused claim (3) and
//! from a check that could not be made (4).

mod support;

use josekit::jwe::{self, Dir, JweHeader};
use josekit::jws::{self, JwsHeader, HS256, HS384, HS512};
use serde_json::Value;
use support::{code, decode_json, flip, json, run, stdout, A1_KEY, A1_TOKEN};

/// RFC 7520 §4.4: HS256 over a text payload.
const R4_4_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsImtpZCI6IjAxOGMwYWU1LTRkOWItNDcxYi1iZmQ2LWVlZjMxNGJjNzAzNyJ9.SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4.s0h6KThzkfBBBkLspW1h84VsJZFTsPPqMDA7g1Md7p0";
const R4_4_KEY: &str = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";
const R4_4_PAYLOAD: &str = "It\u{2019}s a dangerous business, Frodo, going out your door. You step onto the road, and if you don't keep your feet, there\u{2019}s no knowing where you might be swept off to.";

/// RFC 7520 §5.6: dir/A128GCM over a text plaintext.
const R5_6_TOKEN: &str = "eyJhbGciOiJkaXIiLCJraWQiOiI3N2M3ZTJiOC02ZTEzLTQ1Y2YtODY3Mi02MTdiNWI0NTI0M2EiLCJlbmMiOiJBMTI4R0NNIn0..refa467QzzKx6QAB.JW_i_f52hww_ELQPGaYyeAB6HYGcR559l9TYnSovc23XJoBcW29rHP8yZOZG7YhLpT1bjFuvZPjQS-m0IFtVcXkZXdH_lr_FrdYt9HRUYkshtrMmIUAyGmUnd9zMDB2n0cRDIHAzFVeJUDxkUwVAE7_YGRPdcqMyiBoCO-FBdE-Nceb4h3-FtBP-c_BIwCPTjb9o0SbdcdREEMJMyZBH8ySWMVi1gPD9yxi-aQpGbSv_F9N4IZAxscj5g-NJsUPbjk29-s7LJAGb15wEBtXphVCgyy53CoIKLHHeJHXex45Uz9aKZSRSInZI-wjsY0yu3cT4_aQ3i1o-tiE-F8Ios61EKgyIQ4CWao8PFMj8TTnp.vbb32Xvllea2OtmHAdccRQ";
const R5_6_KEY: &str = "XctOhJAkA-pD9Lh7ZgW_2A";
const R5_6_PLAINTEXT: &str = "You can trust us to stick with you through thick and thin\u{2013}to the bitter end. And you can trust us to keep any secret of yours\u{2013}closer than you keep it yourself. But you cannot trust us to let you face trouble alone, and go off without a word. We are your friends, Frodo.";

/// Before A.1's exp (2011-03-22T18:43:00Z).
const A1_NOW: &str = "2011-03-22T18:00:00Z";

fn generic(key_flag: &str, key: &str, token: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--generic", key_flag, key];
    args.extend_from_slice(extra);
    decode_json(&args, token)
}

/// One byte flipped anywhere the signature or tag covers exits 1 with the
/// layer's crypto failed: the first, middle and last byte of every part
/// after the header (an empty one aside), and in the header the first byte
/// of the `kid` or `typ` value (a flip that keeps it JSON with the same
/// alg and enc). A flip that breaks the header's JSON exits 3: the alg
/// cannot be read, so no key was tried, and the format is what fails.
fn every_flip_is_refused(key_flag: &str, key: &str, token: &str, extra: &[&str]) {
    let header = jose_binding::b64::decode(token.split('.').next().unwrap()).unwrap();
    let text = String::from_utf8(header).unwrap();
    let member = ["\"kid\":", "\"typ\":"]
        .iter()
        .find_map(|m| text.find(m).map(|at| at + m.len()))
        .expect("a kid or typ to flip");
    let value = member + text[member..].find('"').unwrap() + 1;
    let mut flips = vec![(0, value)];
    for (part, piece) in token.split('.').enumerate().skip(1) {
        let len = jose_binding::b64::decode(piece).unwrap().len();
        if len > 0 {
            flips.extend([(part, 0), (part, len / 2), (part, len - 1)]);
        }
    }
    for (part, byte) in flips {
        let (c, r) = generic(key_flag, key, &flip(token, part, byte), extra);
        assert_eq!(c, 1, "part {part} byte {byte}: {r:#}");
        assert_eq!(r["checks"]["result"], "crypto_failed");
        assert_eq!(r["checks"]["layers"][0]["crypto"], "failed");
    }
    let (c, r) = generic(key_flag, key, &flip(token, 0, 0), extra);
    assert_eq!(c, 3, "{r:#}");
    assert_eq!(
        r["checks"]["layers"][0]["format"][0],
        "the protected header is not a JSON object"
    );
}

#[test]
fn rfc7515_a1() {
    let (c, r) = generic("--sig-key", A1_KEY, A1_TOKEN, &["--now", A1_NOW]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["token"]["layers"][0]["content"]["json"]["iss"], "joe");
    assert_eq!(r["checks"]["layers"][0]["claims"]["checked"][0], "exp");
    every_flip_is_refused("--sig-key", A1_KEY, A1_TOKEN, &["--now", A1_NOW]);
    // The right signature, after exp: 3.
    let (c, r) = generic("--sig-key", A1_KEY, A1_TOKEN, &[]);
    assert_eq!(c, 3, "{r:#}");
    let reason = r["checks"]["reasons"][0].as_str().unwrap();
    assert!(reason.contains("exp: expired"), "{reason}");
    // An audience asked for and absent: 3.
    let (c, _) = generic(
        "--sig-key",
        A1_KEY,
        A1_TOKEN,
        &["--now", A1_NOW, "--audience", "api"],
    );
    assert_eq!(c, 3);
    // No key: the signature is not checked, so not shown valid: 4.
    let o = run(&["decode", "--generic", "--now", A1_NOW, A1_TOKEN], b"");
    assert_eq!(code(&o), 4);
    assert!(stdout(&o).contains("exit status 4 (incomplete)"));
}

#[test]
fn rfc7520_4_4_text_payload() {
    let (c, r) = generic("--sig-key", R4_4_KEY, R4_4_TOKEN, &[]);
    assert_eq!(c, 0, "{r:#}");
    let layer = &r["token"]["layers"][0];
    assert_eq!(layer["content"]["type"], "text");
    assert_eq!(layer["content"]["text"], R4_4_PAYLOAD);
    assert_eq!(
        layer["header"]["json"]["kid"],
        "018c0ae5-4d9b-471b-bfd6-eef314bc7037"
    );
    assert!(r["checks"]["layers"][0].get("claims").is_none());
    every_flip_is_refused("--sig-key", R4_4_KEY, R4_4_TOKEN, &[]);
    // The text output says it in words.
    let o = run(
        &["decode", "--generic", "--sig-key", R4_4_KEY, R4_4_TOKEN],
        b"",
    );
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "{text}");
    assert!(text.contains("VALID: exit status 0"), "{text}");
    assert!(
        text.contains("text: It\u{2019}s a dangerous business"),
        "{text}"
    );
}

#[test]
fn rfc7520_5_6_dir_a128gcm() {
    let (c, r) = generic("--enc-key", R5_6_KEY, R5_6_TOKEN, &[]);
    assert_eq!(c, 0, "{r:#}");
    let layer = &r["token"]["layers"][0];
    assert_eq!(layer["crypto"]["alg"], "dir/A128GCM");
    assert_eq!(layer["content"]["text"], R5_6_PLAINTEXT);
    every_flip_is_refused("--enc-key", R5_6_KEY, R5_6_TOKEN, &[]);
    // A 32-byte key for A128GCM: the length is the reason.
    let (c, r) = generic("--enc-key", &"ab".repeat(32), R5_6_TOKEN, &[]);
    assert_eq!(c, 1);
    let why = r["token"]["layers"][0]["crypto"]["why"].as_str().unwrap();
    assert!(why.contains("A128GCM needs 16"), "{why}");
    // Without --generic the protocol's server refuses it (no typ): 3, as before.
    let o = run(&["decode", "--enc-key", R5_6_KEY, R5_6_TOKEN], b"");
    assert_eq!(code(&o), 3);
    assert!(stdout(&o).contains("REJECT this token with `unsupported_header`"));
}

/// Deterministic key bytes of `len`.
fn key(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u8)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn claims(exp: i64) -> Vec<u8> {
    format!(r#"{{"iss":"josekit","aud":"api","exp":{exp}}}"#).into_bytes()
}

const NOW: i64 = 1_767_225_600;

#[test]
fn josekit_signatures_with_every_hmac() {
    for name in ["HS256", "HS384", "HS512"] {
        let k = key(64, 1);
        let signer = match name {
            "HS256" => HS256.signer_from_bytes(&k),
            "HS384" => HS384.signer_from_bytes(&k),
            _ => HS512.signer_from_bytes(&k),
        }
        .unwrap();
        let mut h = JwsHeader::new();
        h.set_token_type("JWT");
        let token = jws::serialize_compact(&claims(NOW + 60), &h, &signer).unwrap();
        let hex = hex::encode(&k);
        let now = NOW.to_string();
        let (c, r) = generic(
            "--sig-key",
            &hex,
            &token,
            &["--now", &now, "--audience", "api"],
        );
        assert_eq!(c, 0, "{name}: {r:#}");
        assert_eq!(r["token"]["layers"][0]["crypto"]["alg"], name);
        let checked = &r["checks"]["layers"][0]["claims"]["checked"];
        assert_eq!(checked, &serde_json::json!(["exp", "aud"]));
        every_flip_is_refused("--sig-key", &hex, &token, &["--now", &now]);
        let (c, _) = generic(
            "--sig-key",
            &hex,
            &token,
            &["--now", &now, "--audience", "web"],
        );
        assert_eq!(c, 3, "{name}: wrong audience");
    }
}

#[test]
fn a_binary_payload_is_shown_as_size_and_hex() {
    let k = key(32, 6);
    let payload = [0xff_u8, 0x00, 0x9c, 0x01, 0x80];
    let token = jws::serialize_compact(
        &payload,
        &JwsHeader::new(),
        &HS256.signer_from_bytes(&k).unwrap(),
    )
    .unwrap();
    let (c, r) = generic("--sig-key", &hex::encode(&k), &token, &[]);
    assert_eq!(c, 0, "{r:#}");
    let content = &r["token"]["layers"][0]["content"];
    assert_eq!(content["type"], "binary");
    assert_eq!(content["bytes"], 5);
    assert_eq!(content["hex_prefix"], "ff009c0180");
}

#[test]
fn josekit_dir_jwes_with_every_content_encryption() {
    let now = NOW.to_string();
    for (enc, len) in [
        ("A128GCM", 16),
        ("A192GCM", 24),
        ("A256GCM", 32),
        ("A128CBC-HS256", 32),
        ("A192CBC-HS384", 48),
        ("A256CBC-HS512", 64),
    ] {
        let k = key(len, 2);
        let mut h = JweHeader::new();
        h.set_token_type("JWT");
        h.set_content_encryption(enc);
        let encrypter = Dir.encrypter_from_bytes(&k).unwrap();
        let token = jwe::serialize_compact(&claims(NOW + 60), &h, &encrypter).unwrap();
        let hex = hex::encode(&k);
        let (c, r) = generic("--enc-key", &hex, &token, &["--now", &now]);
        assert_eq!(c, 0, "{enc}: {r:#}");
        let layer = &r["token"]["layers"][0];
        assert_eq!(layer["crypto"]["alg"], format!("dir/{enc}"));
        assert_eq!(layer["content"]["json"]["iss"], "josekit");
        every_flip_is_refused("--enc-key", &hex, &token, &["--now", &now]);
        // Decrypted and expired: 3.
        let later = (NOW + 3600).to_string();
        let (c, _) = generic("--enc-key", &hex, &token, &["--now", &later]);
        assert_eq!(c, 3, "{enc}");
    }
}

#[test]
fn nested_tokens_open_layer_by_layer() {
    let (sig, enc) = (key(48, 3), key(48, 4));
    let mut inner_h = JweHeader::new();
    inner_h.set_content_encryption("A192CBC-HS384");
    let inner = jwe::serialize_compact(
        &claims(NOW + 60),
        &inner_h,
        &Dir.encrypter_from_bytes(&enc).unwrap(),
    )
    .unwrap();
    let mut outer_h = JwsHeader::new();
    outer_h.set_content_type("JWT");
    let token = jws::serialize_compact(
        inner.as_bytes(),
        &outer_h,
        &HS384.signer_from_bytes(&sig).unwrap(),
    )
    .unwrap();
    let (sig_hex, enc_hex) = (hex::encode(&sig), hex::encode(&enc));
    let now = NOW.to_string();
    let run_with = |args: &[&str]| {
        let mut a = vec!["decode", "--generic", "--json", "--now", &now];
        a.extend_from_slice(args);
        a.push(&token);
        let o = run(&a, b"");
        (code(&o), json(&o))
    };
    let (c, r) = run_with(&["--sig-key", &sig_hex, "--enc-key", &enc_hex]);
    assert_eq!(c, 0, "{r:#}");
    assert_eq!(r["token"]["structure"], "JWS > JWE > claims");
    let layers = r["checks"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert!(layers.iter().all(|l| l["result"] == "valid"));
    assert_eq!(layers[1]["claims"]["checked"][0], "exp");
    // The outer signature checked, the inner JWE without its key: 4, per layer.
    let (c, r) = run_with(&["--sig-key", &sig_hex]);
    assert_eq!(c, 4);
    assert_eq!(r["checks"]["layers"][0]["result"], "valid");
    assert_eq!(r["checks"]["layers"][1]["result"], "incomplete");
    // The inner key wrong: 1, and the layer that failed says so.
    let (c, r) = run_with(&["--sig-key", &sig_hex, "--enc-key", &hex::encode(key(48, 5))]);
    assert_eq!(c, 1);
    assert_eq!(r["checks"]["layers"][0]["result"], "valid");
    assert_eq!(r["checks"]["layers"][1]["result"], "crypto_failed");
}
