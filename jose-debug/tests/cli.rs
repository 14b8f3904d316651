//! The `jose-debug` binary end to end: the fixture vectors in every form,
//! derived and explicit keys, RFC 7515 A.1, malformed input, `--json`,
//! colour, and secrets that must not leak.

mod support;

use jose_binding_e2e::TempDir;
use serde_json::Value;
use support::{code, json, run, run_with_env, stdout, vectors, A1_KEY, A1_TOKEN};

#[test]
fn every_vector_form_decodes_and_verifies_with_derived_keys() {
    let v = vectors();
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 3);
    for t in tokens {
        let iat = t["iat"].as_i64().unwrap().to_string();
        let o = run(
            &[
                "decode",
                "--json",
                "--root-key",
                t["root_key_b64u"].as_str().unwrap(),
                "--ekm",
                t["ekm_hex"].as_str().unwrap(),
                "--client-id",
                "client1",
                "--now",
                &iat,
                t["token"].as_str().unwrap(),
            ],
            b"",
        );
        let r = json(&o);
        assert_eq!(code(&o), 0, "{r:#}");
        assert_eq!(r["valid"], true);
        assert_eq!(r["verdict"]["outcome"], "accept");
        assert_eq!(r["verdict"]["form"], t["form"]);
        assert_eq!(
            r["verdict"]["computed_by"],
            "jose_binding::ConnectionVerifier::verify_at"
        );
        assert_eq!(r["verdict"]["claims"], t["claims"]);
        assert_eq!(r["token"]["form"], t["form"]);
        // The lenient decoder shows the same claims, and every layer opened.
        let layers = r["token"]["layers"].as_array().unwrap();
        let want_layers = if t["form"] == "signed" { 1 } else { 2 };
        assert_eq!(layers.len(), want_layers);
        for l in layers {
            assert_eq!(l["crypto"]["status"], "verified", "{l:#}");
            assert!(l["server_syntax"].is_null());
        }
        let inner = layers.last().unwrap();
        assert_eq!(inner["content"]["json"], t["claims"]);
        assert_eq!(
            inner["content"]["times"][0]["rfc3339"],
            "2026-01-01T00:00:00Z"
        );
        // The derivation printed is the vector's (fingerprints of its keys).
        let ks = &v["key_schedule"][0];
        let sched = &r["keys"]["schedules"][0];
        let fp = |kind: &str, hex_key: &str| {
            jose_binding::Fingerprint::of(kind, &hex::decode(hex_key).unwrap()).to_string()
        };
        assert_eq!(
            sched["sig_key_fp"],
            fp("sig", ks["sig_key_hex"].as_str().unwrap())
        );
        assert_eq!(
            sched["enc_key_fp"],
            fp("enc", ks["enc_key_hex"].as_str().unwrap())
        );
        assert_eq!(sched["prk_fp"], fp("prk", ks["prk_hex"].as_str().unwrap()));
        assert!(sched.get("secrets").is_none());

        // Text output, same verdict, exit status 0.
        let o = run(
            &[
                "decode",
                "--root-key",
                t["root_key_b64u"].as_str().unwrap(),
                "--ekm",
                t["ekm_hex"].as_str().unwrap(),
                "--now",
                &iat,
                "-",
            ],
            t["token"].as_str().unwrap().as_bytes(),
        );
        let text = stdout(&o);
        assert_eq!(code(&o), 0, "{text}");
        assert!(text.contains("the server would ACCEPT"), "{text}");
        assert!(
            text.contains("2026-01-01T00:01:00Z  expires in 1 min"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colour when piped");
    }
}

#[test]
fn explicit_subkeys_give_the_same_verdict() {
    let v = vectors();
    let ks = &v["key_schedule"][0];
    for t in v["tokens"].as_array().unwrap() {
        let iat = t["iat"].as_i64().unwrap().to_string();
        let o = run(
            &[
                "decode",
                "--json",
                "--sig-key",
                ks["sig_key_hex"].as_str().unwrap(),
                "--enc-key",
                ks["enc_key_hex"].as_str().unwrap(),
                "--now",
                &iat,
                t["token"].as_str().unwrap(),
            ],
            b"",
        );
        let r = json(&o);
        assert_eq!(code(&o), 0, "{r:#}");
        assert_eq!(r["verdict"]["outcome"], "accept");
        assert_eq!(r["verdict"]["client_id"], "client1");
        assert_eq!(
            r["verdict"]["computed_by"],
            "jose_binding::token::verify_with_subkeys"
        );
        // 10 minutes later the same token is expired, for the same reason on both paths.
        let later = (t["iat"].as_i64().unwrap() + 600).to_string();
        let o = run(
            &[
                "decode",
                "--json",
                "--sig-key",
                ks["sig_key_hex"].as_str().unwrap(),
                "--enc-key",
                ks["enc_key_hex"].as_str().unwrap(),
                "--now",
                &later,
                t["token"].as_str().unwrap(),
            ],
            b"",
        );
        let r = json(&o);
        // The signature is right and the token expired: 3, not 1.
        assert_eq!(code(&o), 3);
        assert_eq!(r["checks"]["result"], "rejected");
        assert_eq!(r["checks"]["layers"][0]["crypto"], "verified");
        assert_eq!(r["verdict"]["code"], "expired");
        let times = &r["token"]["layers"].as_array().unwrap().last().unwrap()["content"]["times"];
        assert_eq!(times[1]["relative"], "expired 9 min ago");
    }
}

#[test]
fn wrong_connection_is_bad_signature_or_decrypt_failed() {
    let v = vectors();
    let other_ekm = v["key_schedule"][1]["ekm_hex"].as_str().unwrap();
    for t in v["tokens"].as_array().unwrap() {
        let o = run(
            &[
                "decode",
                "--json",
                "--root-key",
                t["root_key_b64u"].as_str().unwrap(),
                "--ekm",
                other_ekm,
                "--now",
                "2026-01-01T00:00:00Z",
                t["token"].as_str().unwrap(),
            ],
            b"",
        );
        let r = json(&o);
        assert_eq!(code(&o), 1);
        assert_eq!(r["checks"]["result"], "crypto_failed");
        let want = if t["form"] == "signed-then-encrypted" {
            "decrypt_failed"
        } else {
            "bad_signature"
        };
        assert_eq!(r["verdict"]["code"], want);
        assert_eq!(r["token"]["layers"][0]["crypto"]["status"], "failed");
    }
}

#[test]
fn derive_reproduces_the_key_schedule_vectors() {
    let v = vectors();
    for ks in v["key_schedule"].as_array().unwrap() {
        let args = [
            "derive",
            "--client-id",
            ks["client_id"].as_str().unwrap(),
            "--root-key",
            ks["root_key_b64u"].as_str().unwrap(),
            "--ekm",
            ks["ekm_hex"].as_str().unwrap(),
        ];
        let mut with_secrets = args.to_vec();
        with_secrets.extend(["--json", "--show-secrets"]);
        let o = run(&with_secrets, b"");
        assert_eq!(code(&o), 0);
        let r = json(&o);
        let s = &r["schedules"][0]["secrets"];
        assert_eq!(s["ekm_hex"], ks["ekm_hex"]);
        assert_eq!(s["prk_hex"], ks["prk_hex"]);
        assert_eq!(s["sig_key_hex"], ks["sig_key_hex"]);
        assert_eq!(s["enc_key_hex"], ks["enc_key_hex"]);
        // Without --show-secrets: fingerprints only, in text and in JSON.
        for extra in [&[][..], &["--json"][..]] {
            let mut a = args.to_vec();
            a.extend(extra);
            let o = run(&a, b"");
            assert_eq!(code(&o), 0);
            let out = stdout(&o);
            for secret in ["prk_hex", "sig_key_hex", "enc_key_hex"] {
                assert!(!out.contains(ks[secret].as_str().unwrap()), "{out}");
            }
            assert!(!out.contains(ks["root_key_b64u"].as_str().unwrap()));
            assert!(out.contains("fp"));
        }
    }
}

#[test]
fn decode_never_prints_secrets_unless_asked() {
    let v = vectors();
    let t = &v["tokens"][2];
    let ks = &v["key_schedule"][0];
    let args = [
        "decode",
        "--root-key",
        t["root_key_b64u"].as_str().unwrap(),
        "--ekm",
        t["ekm_hex"].as_str().unwrap(),
        "--now",
        "1767225600",
        t["token"].as_str().unwrap(),
    ];
    for json_flag in [false, true] {
        let mut a = args.to_vec();
        if json_flag {
            a.push("--json");
        }
        let out = stdout(&run(&a, b""));
        for secret in ["ekm_hex", "prk_hex", "sig_key_hex", "enc_key_hex"] {
            assert!(
                !out.contains(ks[secret].as_str().unwrap()),
                "{secret}: {out}"
            );
        }
        assert!(!out.contains(ks["root_key_b64u"].as_str().unwrap()));
        a.push("--show-secrets");
        let out = stdout(&run(&a, b""));
        assert!(out.contains(ks["sig_key_hex"].as_str().unwrap()));
        assert!(out.contains(ks["enc_key_hex"].as_str().unwrap()));
    }
}

#[test]
fn rfc7515_a1_verifies_as_generic_jose() {
    let o = run(
        &[
            "decode",
            "--generic",
            "--json",
            "--sig-key",
            A1_KEY,
            "--now",
            "2011-03-22T18:00:00Z",
            A1_TOKEN,
        ],
        b"",
    );
    let r = json(&o);
    assert_eq!(code(&o), 0, "{r:#}");
    assert_eq!(r["checks"]["mode"], "generic");
    assert_eq!(r["checks"]["result"], "valid");
    assert_eq!(r["checks"]["layers"][0]["claims"]["checked"][0], "exp");
    let l = &r["token"]["layers"][0];
    assert_eq!(l["crypto"]["status"], "verified");
    assert_eq!(l["crypto"]["alg"], "HS256");
    assert_eq!(l["header"]["json"]["typ"], "JWT");
    assert_eq!(l["content"]["json"]["iss"], "joe");
    assert_eq!(
        l["content"]["json"]["http://example.com/is_root"],
        Value::Bool(true)
    );
    assert_eq!(l["content"]["times"][0]["rfc3339"], "2011-03-22T18:43:00Z");
    assert_eq!(l["content"]["times"][0]["relative"], "expires in 43 min");
    // The protocol's server refuses it (no kid), and says so without a key.
    assert_eq!(r["verdict"]["code"], "unknown_client");

    // Text, without --generic: the signature verifies, the server verdict
    // decides, and it is not a cryptographic failure (exit 3).
    let o = run(&["decode", "--sig-key", A1_KEY, A1_TOKEN], b"");
    let text = stdout(&o);
    assert_eq!(code(&o), 3);
    assert!(text.contains("exit status 3 (rejected)"), "{text}");
    assert!(text.contains("HS256: verifies with the key"), "{text}");
    assert!(
        text.contains("REJECT this token with `unknown_client`"),
        "{text}"
    );
    assert!(text.contains("expired"), "{text}");

    // Another key, or after exp: not valid.
    let wrong =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAoA";
    let o = run(
        &[
            "decode",
            "--generic",
            "--json",
            "--sig-key",
            wrong,
            "--now",
            "1300819000",
            A1_TOKEN,
        ],
        b"",
    );
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["token"]["layers"][0]["crypto"]["status"], "failed");
    let o = run(&["decode", "--generic", "--sig-key", A1_KEY, A1_TOKEN], b"");
    assert_eq!(code(&o), 3);
    let text = stdout(&o);
    assert!(text.contains("NOT VALID"), "{text}");
    assert!(text.contains("exp: expired"), "{text}");
}

#[test]
fn malformed_input_gets_a_message_never_a_panic() {
    let v = vectors();
    let good = v["tokens"][1]["token"].as_str().unwrap().to_owned();
    // Random bytes (a fixed xorshift stream, so failures reproduce).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = Vec::new();
    for _ in 0..512 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x as u8);
    }
    let o = run(&["decode"], &random);
    assert_eq!(code(&o), 3);
    assert!(stdout(&o).contains("not UTF-8"));
    assert!(stdout(&o).contains("exit status 3 (rejected)"));
    let o = run(&["decode", "--json"], &random);
    assert_eq!(code(&o), 3);
    let r = json(&o);
    assert_eq!(r["verdict"]["code"], "malformed");
    assert!(r["input"]["error"].as_str().unwrap().contains("not UTF-8"));

    // Non-UTF-8 with a token-like start.
    let mut bytes = good.as_bytes()[..40].to_vec();
    bytes.extend([0xC3, 0x28, 0xFF]);
    assert_eq!(code(&run(&["decode", "-"], &bytes)), 3);

    // Truncated tokens at several points, printable text of every kind.
    for cut in [1, 10, 54, 55, 56, 100, 300, good.len() - 1] {
        let t = &good[..cut];
        for json_flag in [false, true] {
            let mut a = vec!["decode", "--now", "1767225600", t];
            if json_flag {
                a.push("--json");
            }
            let o = run(&a, b"");
            // Refused before any key is needed (3), or needing one (4): never valid.
            assert!([3, 4].contains(&code(&o)), "cut {cut}: {}", code(&o));
            if json_flag {
                let r = json(&o);
                assert_eq!(r["valid"], false);
                assert_eq!(r["checks"]["exit_status"], code(&o));
            } else {
                assert!(stdout(&o).contains("verdict"), "cut {cut}");
            }
        }
    }
    for junk in [
        "....",
        "a.b.c",
        "{\"alg\":\"none\"}",
        "e30.e30.e30.e30.e30",
        "\u{1F600}.\u{1F600}.\u{1F600}",
        "eyJhbGciOiJub25lIn0.e30.",
        "Bearer",
    ] {
        let o = run(&["decode", "--json", junk], b"");
        assert_eq!(code(&o), 3, "{junk}");
        assert_eq!(json(&o)["checks"]["result"], "rejected");
    }
    // No token at all is a usage error.
    let o = run(&["decode"], b"  \n");
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no token"));
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let v = vectors();
    let t = v["tokens"][0]["token"].as_str().unwrap();
    let cases: &[&[&str]] = &[
        &["decode", "--sig-key", "!!!", t],
        &["decode", "--sig-key", "@/nonexistent/key", t],
        &["decode", "--now", "yesterday", t],
        &[
            "decode",
            "--root-key",
            "REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk",
            t,
        ],
        &["decode", "--root-key", "QUFB", "--ekm", "00", t],
        &["decode", "--ekm", "00", t],
        &[
            "decode",
            "--keylog",
            "/nonexistent/keylog",
            "--root-key",
            "x",
            t,
        ],
        &["decode", "--forms", "jwt", t],
        &["decode", "--bogus", t],
        &["derive", "--client-id", "client1"],
        &[
            "derive",
            "--client-id",
            "bad id",
            "--root-key",
            "REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk",
            "--ekm",
            "00",
        ],
        &["frobnicate"],
    ];
    for args in cases {
        let o = run(args, b"");
        assert_eq!(
            code(&o),
            2,
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty(), "{args:?}");
    }
    // With --json, a usage error still prints a JSON document.
    let o = run(&["decode", "--json", "--now", "yesterday", t], b"");
    assert_eq!(code(&o), 2);
    assert!(json(&o)["error"].as_str().unwrap().contains("--now"));
    let o = run(&["decode", "--json", "--bogus", t], b"");
    assert_eq!(code(&o), 2);
    assert!(json(&o)["error"].as_str().unwrap().contains("--bogus"));
    // No subcommand: the help, on stderr, and status 2.
    let o = run(&[], b"");
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("decode"));
    // Key text never appears in the message.
    let o = run(&["decode", "--sig-key", "SECRET.not-a-key!", t], b"");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("SECRET"));
}

#[test]
fn help_teaches_with_examples() {
    for sub in [
        &["--help"][..],
        &["decode", "--help"],
        &["derive", "--help"],
    ] {
        let o = run(sub, b"");
        assert_eq!(code(&o), 0);
        let text = stdout(&o);
        assert!(
            text.contains("Example") || text.contains("Exit status"),
            "{text}"
        );
    }
    let text = stdout(&run(&["decode", "--help"], b""));
    for flag in [
        "--keylog",
        "--root-key",
        "--sig-key",
        "--generic",
        "JOSE_DEBUG_ROOT_KEY",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
}

#[test]
fn lenient_decoding_shows_what_the_server_refuses() {
    use jose_binding::token::sign_jws;
    use jose_binding::SigKey;
    let key = [7u8; 32];
    let claims = br#"{"iss":"c1","aud":"localhost","iat":1767225600,"exp":1767225660,"jti":"j1"}"#;
    let key_hex = hex::encode(key);
    // A repeated header member.
    let dup = sign_jws(
        r#"{"alg":"HS256","typ":"JWT","kid":"c1","kid":"c2"}"#,
        claims,
        &SigKey::from_bytes(key),
    );
    let o = run(
        &["decode", "--sig-key", &key_hex, "--now", "1767225600", &dup],
        b"",
    );
    let text = stdout(&o);
    assert_eq!(code(&o), 3);
    assert!(text.contains("a JSON member name is repeated"), "{text}");
    assert!(
        text.contains(r#""kid":"c1","kid":"c2""#),
        "raw header shown: {text}"
    );
    assert!(text.contains("HS256: verifies"), "{text}");
    assert!(
        text.contains("REJECT this token with `malformed`"),
        "{text}"
    );
    assert!(
        text.contains("\"jti\": \"j1\""),
        "claims still shown: {text}"
    );

    // Non-canonical base64url (padding) and a wrong alg.
    let good = sign_jws(
        r#"{"alg":"HS256","typ":"JWT","kid":"c1"}"#,
        claims,
        &SigKey::from_bytes(key),
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    while !parts[1].len().is_multiple_of(4) {
        parts[1].push('=');
    }
    let padded = parts.join(".");
    if padded != good {
        let r = json(&run(&["decode", "--json", &padded], b""));
        assert_eq!(r["verdict"]["code"], "malformed");
        assert_eq!(
            r["token"]["layers"][0]["parts"][1]["problems"][0],
            "has = padding"
        );
        assert_eq!(r["token"]["layers"][0]["content"]["json"]["jti"], "j1");
    }
    let hs512 = sign_jws(
        r#"{"alg":"HS512","typ":"JWT","kid":"c1"}"#,
        claims,
        &SigKey::from_bytes(key),
    );
    let r = json(&run(&["decode", "--json", &hs512], b""));
    assert_eq!(r["verdict"]["code"], "unsupported_alg");
    assert_eq!(r["verdict"]["outcome"], "reject");

    // Pasted with the header name and the scheme, wrapped over lines.
    let pasted = format!("Authorization: Bearer {}\n{}", &good[..30], &good[30..]);
    let r = json(&run(
        &[
            "decode",
            "--json",
            "--sig-key",
            &key_hex,
            "--now",
            "1767225600",
            "-",
        ],
        pasted.as_bytes(),
    ));
    assert_eq!(r["verdict"]["outcome"], "accept");
    assert_eq!(r["input"]["notes"].as_array().unwrap().len(), 3);
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let v = vectors();
    let t = v["tokens"][0]["token"].as_str().unwrap();
    let o = run(&["decode", "--color", "always", t], b"");
    assert!(stdout(&o).contains("\x1b["));
    let o = run(&["decode", t], b"");
    assert!(!stdout(&o).contains('\x1b'));
    let o = run_with_env(&["decode", "--color", "auto", t], b"", &[("NO_COLOR", "1")]);
    assert!(!stdout(&o).contains('\x1b'));
    let o = run(&["decode", "--color", "always", "--json", t], b"");
    assert!(!stdout(&o).contains('\x1b'), "JSON is never coloured");
}

#[test]
fn secrets_paths_come_from_the_environment() {
    let v = vectors();
    let t = &v["tokens"][0];
    let dir = TempDir::new("jose-debug-env");
    let key_file = dir.join("root.key");
    std::fs::write(
        &key_file,
        format!("{}\n", t["root_key_b64u"].as_str().unwrap()),
    )
    .unwrap();
    let at = format!("@{}", key_file.display());
    let o = run_with_env(
        &[
            "decode",
            "--json",
            "--now",
            "1767225600",
            t["token"].as_str().unwrap(),
        ],
        b"",
        &[
            ("JOSE_DEBUG_ROOT_KEY", &at),
            ("JOSE_DEBUG_EKM", t["ekm_hex"].as_str().unwrap()),
        ],
    );
    let r = json(&o);
    assert_eq!(code(&o), 0, "{r:#}");
    assert_eq!(r["keys"]["source"], "derived");
}

#[test]
fn keystore_with_rotation_names_the_key_that_opened_it() {
    let v = vectors();
    let t = &v["tokens"][0];
    let dir = TempDir::new("jose-debug-ks");
    let ks = dir.join("keystore.toml");
    // A new current key first; the vector's key is the previous one, still accepted.
    std::fs::write(
        &ks,
        format!(
            "[clients.client1]\nkeys = [\"{}\", \"{}\"]\n",
            "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8",
            t["root_key_b64u"].as_str().unwrap()
        ),
    )
    .unwrap();
    let ks_arg = ks.display().to_string();
    let o = run(
        &[
            "decode",
            "--json",
            "--keystore",
            &ks_arg,
            "--ekm",
            t["ekm_hex"].as_str().unwrap(),
            "--now",
            "1767225600",
            t["token"].as_str().unwrap(),
        ],
        b"",
    );
    let r = json(&o);
    assert_eq!(code(&o), 0, "{r:#}");
    assert_eq!(r["verdict"]["root_key_index"], 1);
    assert_eq!(r["keys"]["schedules"].as_array().unwrap().len(), 2);
    assert_eq!(r["token"]["layers"][0]["crypto"]["status"], "verified");
    // A keystore without the token's client: the server's answer is unknown_client.
    std::fs::write(
        &ks,
        "[clients.client7]\nkeys = [\"ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8\"]\n",
    )
    .unwrap();
    let o = run(
        &[
            "decode",
            "--json",
            "--keystore",
            &ks_arg,
            "--ekm",
            t["ekm_hex"].as_str().unwrap(),
            "--now",
            "1767225600",
            t["token"].as_str().unwrap(),
        ],
        b"",
    );
    let r = json(&o);
    assert_eq!(code(&o), 3);
    assert_eq!(r["verdict"]["code"], "unknown_client");
    assert!(r["keys"]["notes"][0]
        .as_str()
        .unwrap()
        .contains("no client client1"));
}

#[test]
fn man_page_and_completions() {
    let page = stdout(&run(&["man"], b""));
    assert!(
        page.contains(".TH jose-debug") && page.contains("decode"),
        "{page}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell], b"");
        assert_eq!(code(&o), 0);
        assert!(stdout(&o).contains("derive"), "{shell}");
    }
}
