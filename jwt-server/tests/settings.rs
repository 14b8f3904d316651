//! Where jwt-server takes its certificate, key and keystore from: flags,
//! the environment, the --config file (its relative paths relative to the
//! file), and the published fixtures only with --dev; the keys commands
//! the same way as serving.

mod support;

use std::path::Path;
use std::time::Duration;

use jose_binding::Keystore;
use jose_binding_e2e::{fixtures, TempDir};
use support::{command, repo, run, run_bounded, signed_request, text, Server};

/// A config file in `dir/conf/` naming `keystore = "ks/keystore.toml"`,
/// relative to itself; its path.
fn config_with_relative_keystore(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("ks")).unwrap();
    let config = conf.join("server.toml");
    std::fs::write(&config, "keystore = \"ks/keystore.toml\"\n").unwrap();
    config
}

#[test]
fn keys_commands_use_the_keystore_of_the_config_file() {
    let dir = TempDir::new("keys-config");
    let config = config_with_relative_keystore(&dir);
    let configured = dir.join("conf/ks/keystore.toml");
    let work = dir.join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let config_arg = config.to_str().unwrap();

    for (client, args, env) in [
        ("c7", vec!["--config", config_arg], vec![]),
        ("c8", vec![], vec![("JWT_SERVER_CONFIG", config_arg)]),
    ] {
        let key_out = work.join(format!("{client}.key"));
        let mut a = vec![
            "keys",
            "add",
            client,
            "--key-out",
            key_out.to_str().unwrap(),
        ];
        a.extend(&args);
        let out = run(&a, &work, &env);
        assert!(out.status.success(), "{}", text(&out));
        let ks = Keystore::load(&configured).expect("the configured keystore");
        assert!(
            ks.get(client).is_some(),
            "{client} in {}",
            configured.display()
        );
        assert!(!work.join("fixtures").exists(), "nothing under ./fixtures");

        let mut a = vec!["keys", "list", "--json"];
        a.extend(&args);
        let out = run(&a, &work, &env);
        assert!(text(&out).contains(client), "{}", text(&out));
    }
    let out = run(
        &["keys", "remove", "c7", "--config", config_arg],
        &work,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(Keystore::load(&configured).unwrap().get("c7").is_none());
}

#[test]
fn keys_commands_need_a_keystore_without_dev() {
    // From the repository root, where fixtures/keystore.toml is at hand.
    for args in [
        &["keys", "list"][..],
        &["keys", "add", "c7", "--stdout"][..],
        &["keys", "remove", "client1"][..],
    ] {
        let out = run_bounded(command(args, &repo(), &[]), Duration::from_secs(20));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains("no keystore") && t.contains("--keystore FILE"),
            "{t}"
        );
    }
    let out = run(&["keys", "list", "--dev"], &repo(), &[]);
    assert!(text(&out).contains("client1"), "{}", text(&out));
}

#[test]
fn no_certificate_and_key_without_dev_is_refused() {
    let ks = fixtures().join("keystore.toml");
    let ks = ks.to_str().unwrap();
    for args in [
        &["--listen", "127.0.0.1:0", "--keystore", ks][..],
        &["--listen", "127.0.0.1:0"][..],
    ] {
        // From the repository root: an old build served the fixtures here.
        let out = run_bounded(command(args, &repo(), &[]), Duration::from_secs(20));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        for want in [
            "no TLS certificate and key",
            "--cert FILE --key FILE",
            "openssl req",
            "--dev",
        ] {
            assert!(t.contains(want), "{t:?} lacks {want:?}");
        }
    }
}

#[tokio::test]
async fn dev_serves_the_fixtures_and_says_so() {
    let mut server =
        Server::start(&["--dev", "--listen", "127.0.0.1:0"], &repo(), &[]).expect("--dev starts");
    let log = server.log.join("\n");
    assert!(
        log.contains("WARN") && log.contains("test certificate, whose private key is published"),
        "{log}"
    );
    let ready = server.log.last().unwrap().clone();
    for want in [
        "cert=fixtures/server.pem",
        "subject=\"CN=localhost\"",
        "not_after=\"2124-01-01T00:00:00Z\"",
    ] {
        assert!(ready.contains(want), "{ready:?} lacks {want:?}");
    }
    assert_eq!(signed_request(server.port).await, 200);
    assert!(server
        .wait_for("status=200", Duration::from_secs(5))
        .is_some());

    // JWT_DEV=1 is the same.
    let env = Server::start(&["--listen", "127.0.0.1:0"], &repo(), &[("JWT_DEV", "1")]);
    assert!(env
        .expect("JWT_DEV starts")
        .log
        .join("\n")
        .contains("published"));
}

#[tokio::test]
async fn serve_resolves_config_paths_against_the_config_file() {
    let dir = TempDir::new("serve-config-paths");
    let conf = dir.join("etc");
    std::fs::create_dir_all(&conf).unwrap();
    for f in ["server.pem", "server.key", "keystore.toml"] {
        std::fs::copy(fixtures().join(f), conf.join(f)).unwrap();
    }
    std::fs::write(
        conf.join("server.toml"),
        "listen = \"127.0.0.1:0\"\ncert = \"server.pem\"\nkey = \"server.key\"\nkeystore = \"keystore.toml\"\n",
    )
    .unwrap();
    let work = dir.join("elsewhere");
    std::fs::create_dir_all(&work).unwrap();
    let server = Server::start(
        &["--config", conf.join("server.toml").to_str().unwrap()],
        &work,
        &[],
    )
    .expect("serves with the config's relative paths");
    let ready = server.log.last().unwrap();
    assert!(ready.contains("etc/server.pem"), "{ready}");
    assert_eq!(signed_request(server.port).await, 200);
}

/// A --config error says where and which setting, and quotes no value.
#[test]
fn config_errors_name_the_setting_not_the_value() {
    let dir = TempDir::new("config-errors");
    let config = dir.join("server.toml");
    let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    for (body, want) in [
        (
            format!("skew_secs = \"{secret}\"\n"),
            "line 1, column 13: setting \"skew_secs\"",
        ),
        (
            format!("listen = \"127.0.0.1:1\"\ncert = [\"{secret}\"]\n"),
            "line 2, column 8: setting \"cert\"",
        ),
        (
            format!("sekret = \"{secret}\"\n"),
            "line 1, column 1: unknown setting \"sekret\"",
        ),
        (
            format!("{secret} = 1\n"),
            "unknown setting of 43 characters",
        ),
        (
            format!("cert = \"{secret}\nkey = 1\n"),
            "not valid TOML at line 1",
        ),
    ] {
        std::fs::write(&config, &body).unwrap();
        let out = run(&["--config", config.to_str().unwrap()], &dir, &[]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains(want), "{t:?} lacks {want:?}");
        assert!(!t.contains(&secret[4..20]), "{t}");
    }
}

/// Boolean env vars read as people write them (`1`, `yes`, `true`), and
/// anything else is an error rather than a silent `true`.
#[test]
fn boolean_env_vars_take_1_and_refuse_garbage() {
    let dir = TempDir::new("bool-env");
    let gateway = ["--upstream", "http://127.0.0.1:1", "--public-path", "x"];
    for (var, value, want) in [
        ("JWT_FORWARD_TOKEN", "1", "a prefix starts with /"),
        ("JWT_FORWARD_TOKEN", "yes", "a prefix starts with /"),
        ("JWT_FORWARD_TOKEN", "maybe", "invalid value 'maybe'"),
        ("JWT_DEV", "1", "a prefix starts with /"),
        ("JWT_DEV", "maybe", "invalid value 'maybe'"),
    ] {
        let out = run(&gateway, &dir, &[(var, value)]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {t}");
        assert!(t.contains(want), "{var}={value}: {t}");
    }
}
