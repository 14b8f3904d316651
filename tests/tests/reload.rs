//! Keystore hot reload under a running server: rotation keeps the previous
//! key working, removal refuses it, a bad file keeps the keys in force.

use std::time::Duration;

use jose_binding::client::HttpVersion;
use jose_binding::keystore::KeystoreHandle;
use jose_binding::{ClientId, Form, Keystore, Policy, SoftwareRootKey};
use jose_binding_e2e::{connect, setup_with_key, TempDir, TestServer};
use serde_json::json;

/// Polls `f` until it returns true or 5 s pass.
async fn eventually<F: AsyncFnMut() -> bool>(mut f: F) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn status_with(server: &TestServer, key: &SoftwareRootKey) -> u16 {
    let mut c = connect(
        server,
        &setup_with_key("c1", HttpVersion::Auto, key.clone()),
    )
    .await;
    c.send(Form::Signed, &json!({})).await.unwrap().status
}

#[tokio::test]
async fn rotate_then_remove_previous_then_survive_garbage() {
    let dir = TempDir::new("reload");
    let path = dir.join("keystore.toml");
    let id = ClientId::new("c1").unwrap();
    let old = SoftwareRootKey::generate();
    let mut ks = Keystore::default();
    ks.set(id.clone(), vec![old.clone()]);
    ks.save_atomic(&path).unwrap();

    let server = TestServer::start(Policy::default(), Keystore::load(&path).unwrap()).await;
    let watcher = tokio::spawn(jose_binding::reload::watch(
        server.keystore.clone(),
        path.clone(),
        Duration::from_millis(50),
    ));
    assert_eq!(status_with(&server, &old).await, 200);

    // An established connection keeps working across the rotation.
    let mut long_lived = connect(
        &server,
        &setup_with_key("c1", HttpVersion::Http1, old.clone()),
    )
    .await;
    assert_eq!(
        long_lived
            .send(Form::Signed, &json!({}))
            .await
            .unwrap()
            .status,
        200
    );

    // Rotate: new key first, old still accepted.
    let new = SoftwareRootKey::generate();
    ks.set(id.clone(), vec![new.clone(), old.clone()]);
    ks.save_atomic(&path).unwrap();
    assert!(
        eventually(async || status_with(&server, &new).await == 200).await,
        "new key accepted after reload"
    );
    assert_eq!(
        status_with(&server, &old).await,
        200,
        "previous key still accepted"
    );
    assert_eq!(
        long_lived
            .send(Form::EncryptedThenSigned, &json!({}))
            .await
            .unwrap()
            .status,
        200
    );

    // Remove the previous key: old is refused, new works.
    ks.set(id.clone(), vec![new.clone()]);
    ks.save_atomic(&path).unwrap();
    assert!(
        eventually(async || status_with(&server, &old).await == 401).await,
        "old key refused after removal"
    );
    let mut c = connect(
        &server,
        &setup_with_key("c1", HttpVersion::Auto, old.clone()),
    )
    .await;
    let r = c.send(Form::Signed, &json!({})).await.unwrap();
    assert_eq!(
        r.error_code().map(jose_binding::ErrorCode::as_str),
        Some("bad_signature")
    );
    assert_eq!(status_with(&server, &new).await, 200);

    // Garbage, truncation and an unreadable path: the keys in force stay.
    std::fs::write(&path, "this is [not a keystore").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status_with(&server, &new).await, 200);
    // Truncated inside the key string (a cut inside the leading comment would
    // be a valid, empty keystore).
    let good = ks.to_toml();
    std::fs::write(&path, &good[..good.len() - 10]).unwrap();
    assert!(Keystore::parse(&good[..good.len() - 10]).is_err());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status_with(&server, &new).await, 200);
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status_with(&server, &new).await, 200);

    watcher.abort();
    server.stop().await;
}

#[tokio::test]
async fn reload_returns_false_and_keeps_keys_on_a_bad_file() {
    let dir = TempDir::new("reload-fn");
    let path = dir.join("ks.toml");
    let key = SoftwareRootKey::generate();
    let mut ks = Keystore::default();
    ks.set(ClientId::new("c1").unwrap(), vec![key]);
    let handle = jose_binding::keystore::KeystoreHandle::new(ks);
    std::fs::write(&path, "[clients.c1]\nkeys = []\n").unwrap();
    assert!(!jose_binding::reload::reload(&handle, &path));
    assert!(handle.snapshot().get("c1").is_some());
    std::fs::write(&path, "").unwrap();
    assert!(
        jose_binding::reload::reload(&handle, &path),
        "an empty keystore is valid"
    );
    assert!(handle.snapshot().is_empty());
}

/// SIGHUP is caught from the moment `watch` is called, before its task
/// first runs: jwt-server says "ready" in that window, and SIGHUP's default
/// action would end the process. The file keeps its length, inode and
/// mtime, so only the SIGHUP can make the watcher read it.
#[tokio::test]
async fn sighup_is_caught_from_the_call_on() {
    let dir = TempDir::new("reload-hup");
    let path = dir.join("keystore.toml");
    let id = ClientId::new("c1").unwrap();
    let (first, second) = (SoftwareRootKey::generate(), SoftwareRootKey::generate());
    let mut ks = Keystore::default();
    ks.set(id.clone(), vec![first]);
    ks.save_atomic(&path).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let handle = KeystoreHandle::new(Keystore::load(&path).unwrap());
    let watcher =
        jose_binding::reload::watch(handle.clone(), path.clone(), Duration::from_secs(3600));

    ks.set(id.clone(), vec![second.clone()]);
    std::fs::write(&path, ks.to_toml().as_bytes()).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // Still here: the signal was caught. Now let the watcher run.
    let task = tokio::spawn(watcher);
    let current = || handle.snapshot().get("c1").unwrap().keys[0].to_b64url() == second.to_b64url();
    assert!(
        eventually(async || current()).await,
        "the SIGHUP sent before the watcher first ran reloads the keystore"
    );
    task.abort();
}
