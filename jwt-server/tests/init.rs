//! `jwt-server init` as an operator runs it on a fresh machine: a CA, a
//! certificate, an empty keystore and a config; nothing overwritten; then
//! the server from that config enrols a client with the installed
//! `jwt-client` (invite -> enroll -> send), whose pin is init's.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jose_binding_e2e::TempDir;
use support::{run, text, Server};

/// jwt-client, built beside jwt-server by the workspace's test run.
fn client_bin() -> std::path::PathBuf {
    let bin = Path::new(support::BIN).with_file_name("jwt-client");
    assert!(
        bin.exists(),
        "{} is missing: run the workspace's tests",
        bin.display()
    );
    bin
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_makes_a_first_run_and_never_overwrites() {
    let tmp = TempDir::new("init");
    let (var, config) = (
        tmp.join("var/lib/jwt-server"),
        tmp.join("etc/jwt-server/server.toml"),
    );
    let (var_s, config_s) = (var.to_str().unwrap(), config.to_str().unwrap());
    let args = [
        "--config",
        config_s,
        "init",
        "--san",
        "localhost",
        "--dir",
        var_s,
    ];
    let out = run(&args, &tmp, &[]);
    assert!(out.status.success(), "{}", text(&out));
    for (f, m) in [
        ("ca.pem", 0o644),
        ("server.pem", 0o644),
        ("ca.key", 0o600),
        ("server.key", 0o600),
        ("keystore.toml", 0o600),
    ] {
        assert_eq!(mode(&var.join(f)), m, "{f}");
    }
    assert_eq!(mode(&var), 0o700);
    assert_eq!(mode(&config), 0o600);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let pin = said
        .split("full sha256 ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert_eq!(pin.len(), 64, "{said}");
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(
        config_text.contains("audience = \"localhost\"") && !config_text.contains("fixtures"),
        "{config_text}"
    );

    // Again: nothing is overwritten, the same CA is reported.
    let ca = std::fs::read(var.join("ca.pem")).unwrap();
    let out = run(&args, &tmp, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("nothing to do") && text(&out).contains(&pin),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read(var.join("ca.pem")).unwrap(), ca);
    // A partial set is refused, and nothing is touched.
    let partial = tmp.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("server.key"), "mine").unwrap();
    let out = run(
        &[
            "init",
            "--san",
            "localhost",
            "--dir",
            partial.to_str().unwrap(),
            "--config",
            tmp.join("p.toml").to_str().unwrap(),
        ],
        &tmp,
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("nothing was overwritten"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(partial.join("server.key")).unwrap(),
        "mine"
    );
    assert!(!partial.join("ca.pem").exists());

    // The server from init's config; a client enrols against the pin init printed.
    let mut server = Server::start(
        &[
            "--config",
            config_s,
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:0",
        ],
        &tmp,
        &[],
    )
    .unwrap_or_else(|log| panic!("server: {log}"));
    let url = format!("https://localhost:{}", server.port);
    let out = run(
        &[
            "--config",
            config_s,
            "keys",
            "invite",
            "client7",
            "--advertise",
            &url,
            "--stdout",
        ],
        &tmp,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = String::from_utf8(out.stdout).unwrap();
    let invite = jose_binding::invite::Invite::parse(&line).unwrap();
    let digest: String = invite
        .pin
        .digest()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(digest, pin, "the invite pins init's CA");
    server
        .wait_for("keystore reloaded", Duration::from_secs(10))
        .expect("reload");
    let cfg = tmp.join("client");
    let enroll = Command::new(client_bin())
        .args(["enroll", line.trim(), "--config-dir", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(enroll.status.success(), "{}", text(&enroll));
    let send = Command::new(client_bin())
        .args(["send", "--config-dir", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(send.status.success(), "{}", text(&send));
    assert!(
        text(&send).contains("\"client_id\":\"client7\""),
        "{}",
        text(&send)
    );
}

/// As root, init gives what it makes to the server's user.
#[test]
fn as_root_init_gives_its_files_to_the_servers_user() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("not root: ownership is tested where the tests run as root (CI)");
        return;
    }
    let tmp = TempDir::new("init-owner");
    let var = tmp.join("var");
    let out = run(
        &[
            "init",
            "--san",
            "api.test",
            "--dir",
            var.to_str().unwrap(),
            "--user",
            "nobody",
            "--config",
            tmp.join("s.toml").to_str().unwrap(),
        ],
        &tmp,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    for f in ["", "server.key", "keystore.toml", "ca.pem"] {
        let uid = std::fs::metadata(var.join(f)).unwrap().uid();
        assert_eq!(uid, 65534, "{f} belongs to nobody");
    }
    let out = run(
        &[
            "init",
            "--dir",
            var.to_str().unwrap(),
            "--user",
            "no-such-user-here",
        ],
        &tmp,
        &[],
    );
    assert!(
        text(&out).contains("no user \"no-such-user-here\""),
        "{}",
        text(&out)
    );
}
