//! The keystore reloads the way fleets ship secrets: a Kubernetes Secret
//! volume (the file is `..data/keystore.toml` through a symlink, and an
//! update renames a new `..data` symlink over the old one) and a tool that
//! renames a new file over the old one (Vault Agent, configuration
//! management). Each is picked up within 2 s; a broken version in between
//! leaves the keys in force; the metrics say which version is in force.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use jose_binding::{ClientId, Keystore, SoftwareRootKey};
use jose_binding_e2e::upstream::free_port;
use jose_binding_e2e::{fixtures, TempDir};
use support::{metric, Server};

fn keystore_with(key: &SoftwareRootKey) -> String {
    let mut ks = Keystore::default();
    ks.set(ClientId::new("client1").unwrap(), vec![key.clone()]);
    ks.to_toml().to_string()
}

/// Waits up to `within` for the keystore version to leave `from`; the
/// new version and how long it took.
async fn new_version(status: u16, from: f64, within: Duration) -> Option<(f64, Duration)> {
    let start = Instant::now();
    while start.elapsed() < within {
        let v = metric(status, "jose_binding_keystore_version").await?;
        if v != from {
            return Some((v, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn serve(dir: &Path, keystore: &Path, status: u16) -> Server {
    let status_listen = format!("127.0.0.1:{status}");
    let (cert, key) = (fixtures().join("server.pem"), fixtures().join("server.key"));
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--status-listen",
        &status_listen,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--keystore",
        keystore.to_str().unwrap(),
    ];
    Server::start(&args, dir, &[]).expect("server starts")
}

/// Sets up a version directory `name` holding `text` as keystore.toml.
fn version_dir(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("keystore.toml"), text).unwrap();
}

/// What the kubelet does: a new `..data` symlink, renamed over the old.
fn swap_data(dir: &Path, to: &str) {
    let tmp = dir.join("..data_tmp");
    symlink(to, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_secret_volume_swap_is_picked_up_and_a_broken_one_is_not() {
    let dir = TempDir::new("secret-volume");
    let (a, b) = (SoftwareRootKey::generate(), SoftwareRootKey::generate());
    version_dir(&dir, "..2026_12_03_01", &keystore_with(&a));
    symlink("..2026_12_03_01", dir.join("..data")).unwrap();
    symlink("..data/keystore.toml", dir.join("keystore.toml")).unwrap();
    let status = free_port();
    let mut server = serve(&dir, &dir.join("keystore.toml"), status);
    let first = metric(status, "jose_binding_keystore_version")
        .await
        .unwrap();

    // A broken version: the failure is counted, the keys stay.
    version_dir(
        &dir,
        "..2026_12_03_02",
        "[clients.client1]\nkeys = [\"not a key\"]\n",
    );
    swap_data(&dir, "..2026_12_03_02");
    assert!(server
        .wait_for("keystore reload failed", Duration::from_secs(5))
        .is_some());
    let failures = r#"jose_binding_keystore_reloads_total{result="failure"}"#;
    assert_eq!(metric(status, failures).await, Some(1.0));
    assert_eq!(
        metric(status, "jose_binding_keystore_version").await,
        Some(first),
        "the keys in force stay"
    );

    // A good one: in force within 2 s.
    version_dir(&dir, "..2026_12_03_03", &keystore_with(&b));
    swap_data(&dir, "..2026_12_03_03");
    let (v, took) = new_version(status, first, Duration::from_secs(3))
        .await
        .expect("the new version is loaded");
    eprintln!("secret volume swap picked up after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let mut want = Keystore::default();
    want.set(ClientId::new("client1").unwrap(), vec![b.clone()]);
    assert_eq!(v, jose_binding::reload::keystore_version(&want) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_over_the_keystore_is_picked_up_and_a_broken_one_is_not() {
    let dir = TempDir::new("rename-over");
    let (a, b) = (SoftwareRootKey::generate(), SoftwareRootKey::generate());
    let path = dir.join("keystore.toml");
    std::fs::write(&path, keystore_with(&a)).unwrap();
    let status = free_port();
    let mut server = serve(&dir, &path, status);
    let first = metric(status, "jose_binding_keystore_version")
        .await
        .unwrap();
    let rename_in = |text: &str| {
        let tmp = dir.join(".keystore.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };

    rename_in("[clients.client1]\nkeys = 7\n");
    assert!(server
        .wait_for("keystore reload failed", Duration::from_secs(5))
        .is_some());
    assert_eq!(
        metric(status, "jose_binding_keystore_version").await,
        Some(first)
    );

    rename_in(&keystore_with(&b));
    let (_, took) = new_version(status, first, Duration::from_secs(3))
        .await
        .expect("the new version is loaded");
    eprintln!("rename-over picked up after {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let ok = r#"jose_binding_keystore_reloads_total{result="success"}"#;
    assert_eq!(metric(status, ok).await, Some(1.0));
}
