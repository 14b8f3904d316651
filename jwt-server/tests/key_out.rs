//! A keys command that fails changes nothing: the new key is written out
//! before the keystore changes, and a key file is never left behind for a
//! keystore that was not saved. A key never goes to a pipe or a redirect
//! unless asked for (`--stdout`): a shell-created file has the umask's mode.

mod support;

use std::path::{Path, PathBuf};

use jose_binding::{RootKey, SoftwareRootKey};
use jose_binding_e2e::{fixtures, TempDir};
use support::{fingerprints, run, text};

/// A throwaway copy of the fixture keystore (client1, client2).
fn keystore(dir: &Path) -> PathBuf {
    let ks = dir.join("keystore.toml");
    std::fs::copy(fixtures().join("keystore.toml"), &ks).unwrap();
    ks
}

#[track_caller]
fn refused(out: &std::process::Output, want: &str) {
    let t = text(out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(want), "{t:?} lacks {want:?}");
}

#[test]
fn an_unwritable_key_out_changes_nothing() {
    let dir = TempDir::new("key-out-bad");
    let ks = keystore(&dir);
    let ks_arg = ks.to_str().unwrap();
    let before = fingerprints(&ks);
    let bad = "/nonexistent/dir/k";
    for args in [
        &["keys", "rotate", "client1", "--keep", "0", "--key-out", bad][..],
        &["keys", "rotate", "client1", "--key-out", bad][..],
        &["keys", "add", "client7", "--key-out", bad][..],
    ] {
        let out = run(&[args, &["--keystore", ks_arg]].concat(), &dir, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert_eq!(fingerprints(&ks), before, "{args:?} changed the keystore");
        refused(&out, "the keystore is unchanged");
    }
}

#[test]
fn a_piped_stdout_is_refused_without_stdout_flag() {
    let dir = TempDir::new("key-out-pipe");
    let ks = keystore(&dir);
    let ks_arg = ks.to_str().unwrap();
    let before = fingerprints(&ks);
    for args in [
        &["keys", "add", "client7", "--keystore", ks_arg][..],
        &["keys", "rotate", "client1", "--keystore", ks_arg][..],
    ] {
        // Command::output pipes stdout, as `> client7.key` or `| tee` would.
        let out = run(args, &dir, &[]);
        assert_eq!(fingerprints(&ks), before, "{args:?} changed the keystore");
        assert!(out.stdout.is_empty(), "{args:?} printed a key");
        refused(&out, "--key-out FILE");
        refused(&out, "--stdout");
    }
}

#[test]
fn stdout_flag_prints_the_key_the_keystore_holds() {
    let dir = TempDir::new("key-out-stdout");
    let ks = keystore(&dir);
    let ks_arg = ks.to_str().unwrap();
    for (args, client) in [
        (
            &["keys", "add", "client7", "--stdout", "--keystore", ks_arg][..],
            "client7",
        ),
        (
            &[
                "keys",
                "rotate",
                "client1",
                "--stdout",
                "--keystore",
                ks_arg,
            ][..],
            "client1",
        ),
    ] {
        let out = run(args, &dir, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let key = SoftwareRootKey::from_b64url(&String::from_utf8(out.stdout).unwrap())
            .expect("stdout is the key file");
        assert_eq!(
            current(&ks, client),
            RootKey::fingerprint(&key).to_string(),
            "{args:?}"
        );
    }
}

#[test]
fn key_out_is_0600_and_matches_the_new_current_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("key-out-file");
    let ks = keystore(&dir);
    let ks_arg = ks.to_str().unwrap();
    let before = fingerprints(&ks);
    let file = dir.join("client1.key");
    std::fs::write(&file, "an old, world-readable key file\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        &[
            "keys",
            "rotate",
            "client1",
            "--keystore",
            ks_arg,
            "--key-out",
            file.to_str().unwrap(),
        ],
        &dir,
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "nothing secret on stdout");
    assert_ne!(fingerprints(&ks), before, "the keystore changed");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = SoftwareRootKey::from_file(&file).unwrap();
    assert_eq!(
        current(&ks, "client1"),
        RootKey::fingerprint(&key).to_string()
    );
    let mut left: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".keystore.toml.lock", "client1.key", "keystore.toml"],
        "no temporary file left beside the key file (the lock file stays)"
    );
}

/// The keystore cannot be written (its directory is a regular file, which
/// fails for root too): the command stops at taking the keystore's lock,
/// before any key exists, and an existing key file at --key-out is left as
/// it was.
#[test]
fn a_keystore_that_cannot_be_saved_leaves_no_key_file() {
    let dir = TempDir::new("key-out-nosave");
    std::fs::write(dir.join("not-a-dir"), "").unwrap();
    let ks = dir.join("not-a-dir/keystore.toml");
    let file = dir.join("client7.key");
    let add = || {
        let args = ["keys", "add", "client7", "--keystore", ks.to_str().unwrap()];
        let key_out = ["--key-out", file.to_str().unwrap()];
        run(&[&args[..], &key_out[..]].concat(), &dir, &[])
    };
    let out = add();
    refused(&out, "nothing was changed");
    let left: Vec<_> = std::fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["not-a-dir"], "no key file, no temporary file");

    std::fs::write(&file, "the client's current key\n").unwrap();
    let out = add();
    refused(&out, "nothing was changed");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "the client's current key\n"
    );
    assert_eq!(std::fs::read_dir(&*dir).unwrap().count(), 2);
}

fn current(ks: &Path, client: &str) -> String {
    let list = fingerprints(ks);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["client_id"] == client)
        .unwrap_or_else(|| panic!("{client} in {list}"));
    row["key_fingerprints"][0].as_str().unwrap().to_owned()
}
