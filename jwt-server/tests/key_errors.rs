//! A root key in the wrong place of a keystore never reaches an error:
//! not `keys list`, not the server at start, not its hot-reload log line.
//! Each still says where (line, column) and, where it is a field, which.

mod support;

use std::time::Duration;

use jose_binding::SoftwareRootKey;
use jose_binding_e2e::{fixtures, TempDir};
use support::{run, text, Server};

/// Malformed keystores holding `key`, each with what its error must say.
fn variants(key: &str, good: &str) -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        (
            "a string instead of a list",
            format!("[clients.c1]\nkeys = \"{key}\"\n"),
            vec!["line 2, column 8", "clients.c1.keys"],
        ),
        (
            "a table",
            format!("[clients.c1]\nkeys = {{ current = \"{key}\" }}\n"),
            vec!["line 2, column 8", "clients.c1.keys"],
        ),
        (
            "a number",
            "[clients.c1]\nkeys = 4242424242\n".to_owned(),
            vec!["line 2, column 8", "clients.c1.keys"],
        ),
        (
            "a nested array",
            format!("[clients.c1]\nkeys = [[\"{key}\"]]\n"),
            vec!["line 2, column 9", "clients.c1.keys[0]"],
        ),
        (
            "a duplicate table header",
            format!("[clients.c1]\nkeys = [\"{key}\"]\n[clients.c1]\nkeys = [\"{good}\"]\n"),
            vec!["line 3", "defined twice"],
        ),
        (
            "an unknown field next to a key",
            format!("[clients.c1]\nkeys = [\"{good}\"]\nkey = \"{key}\"\n"),
            vec!["line 3, column 1", "\"key\"", "[clients.c1]"],
        ),
        (
            "the key as a field name",
            format!("[clients.c1]\nkeys = [\"{good}\"]\n{key} = true\n"),
            vec!["line 3, column 1", "[clients.c1]"],
        ),
        (
            "the key as a client",
            format!("[clients]\nc1 = \"{key}\"\n"),
            vec!["line 2, column 1", "clients.c1"],
        ),
    ]
}

#[track_caller]
fn holds_no_key(what: &str, output: &str, key: &str) {
    for secret in [key, &key[..16], &key[12..28], &key[key.len() - 16..]] {
        assert!(
            !output.contains(secret),
            "{what}: output holds key material: {output}"
        );
    }
}

#[test]
fn no_error_quotes_a_misplaced_key() {
    let dir = TempDir::new("key-errors");
    let key = SoftwareRootKey::generate().to_b64url().to_string();
    let good = SoftwareRootKey::generate().to_b64url().to_string();
    let ks = dir.join("keystore.toml");
    let ks_arg = ks.to_str().unwrap();
    let cert = fixtures().join("server.pem");
    let tls_key = fixtures().join("server.key");
    let serve_args = [
        "--listen",
        "127.0.0.1:0",
        "--keystore",
        ks_arg,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        tls_key.to_str().unwrap(),
    ];

    // keys list, and the server at start, on each malformed keystore.
    for (what, body, wants) in variants(&key, &good) {
        std::fs::write(&ks, &body).unwrap();
        let listed = run(&["keys", "list", "--keystore", ks_arg], &dir, &[]);
        let out = text(&listed);
        assert_eq!(listed.status.code(), Some(2), "{what}: {out}");
        holds_no_key(what, &out, &key);
        for want in &wants {
            assert!(
                out.contains(want),
                "keys list, {what}: {out:?} lacks {want:?}"
            );
        }
        let started = Server::start(&serve_args, &dir, &[]);
        let log = match started {
            Ok(_) => panic!("{what}: the server started"),
            Err(log) => log,
        };
        holds_no_key(what, &log, &key);
        for want in &wants {
            assert!(log.contains(want), "serve, {what}: {log:?} lacks {want:?}");
        }
    }

    // The hot reload's ERROR line, on a server started with a good keystore.
    std::fs::write(&ks, format!("[clients.c1]\nkeys = [\"{good}\"]\n")).unwrap();
    let mut server = Server::start(&serve_args, &dir, &[]).expect("server starts");
    for (what, body, wants) in variants(&key, &good) {
        std::fs::write(&ks, &body).unwrap();
        server.hup();
        // The file poll may report the previous variant's error once more
        // before SIGHUP reports this one: wait for the line of this one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = server
                .wait_for("keystore reload failed", left)
                .unwrap_or_else(|| {
                    panic!(
                        "reload, {what}: no error line with {wants:?} in {:?}",
                        server.log
                    )
                });
            if wants.iter().all(|w| line.contains(w)) {
                break;
            }
        }
    }
    holds_no_key("the server's log", &server.log.join("\n"), &key);
}
