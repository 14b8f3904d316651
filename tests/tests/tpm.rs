//! Root keys in a TPM, against a real swtpm each test starts itself.
//! Compiled with `--features tpm` (scripts/test.sh); never skipped then.
#![cfg(feature = "tpm")]

use std::process::Command;
use std::sync::Arc;

use jose_binding::client::{BoundConnection, ClientSetup, HttpVersion, Target};
use jose_binding::tpm::{self, SessionMode, TpmKeyFile, TpmRootKey};
use jose_binding::{tls, ClientId, Form, Keystore, Policy};
use jose_binding::{Ekm, RootKey, SoftwareRootKey};
use jose_binding_e2e::swtpm::Swtpm;
use jose_binding_e2e::{fixtures, TestServer};
use serde_json::json;

fn ekms() -> Vec<Ekm> {
    (0u8..4)
        .map(|i| Ekm::from_bytes([i.wrapping_mul(37); 32]))
        .collect()
}

#[test]
fn tpm_prk_equals_software_prk_in_both_session_modes() {
    let tpm = Swtpm::start();
    for len in [32usize, 48, 64] {
        let soft = SoftwareRootKey::new(&vec![len as u8 ^ 0x5a; len]).unwrap();
        let file = tpm::import(&tpm.tcti(), &soft).unwrap();
        for mode in [SessionMode::Salted, SessionMode::Password] {
            let key = TpmRootKey::open(&tpm.tcti(), file.clone(), mode).unwrap();
            for ekm in ekms() {
                assert_eq!(
                    key.prk(&ekm).unwrap().expose(),
                    soft.prk(&ekm).unwrap().expose(),
                    "{len}-byte key, {mode:?}"
                );
            }
        }
    }
}

#[test]
fn imported_key_is_bound_to_the_tpm_and_not_in_the_file() {
    let tpm = Swtpm::start();
    let soft = SoftwareRootKey::generate();
    let file = tpm::import(&tpm.tcti(), &soft).unwrap();
    let pem = file.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
    let again = TpmKeyFile::from_pem(&pem).unwrap();
    assert_eq!(again.parent, tpm::OWNER_PARENT);
    // The private part is encrypted to the TPM: the key bytes are not in the file.
    let der: Vec<u8> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
        .into_bytes();
    let raw = base64_decode(&der);
    assert!(
        !raw.windows(32).any(|w| w == soft.expose()),
        "key bytes must not appear in the key file"
    );

    let key = TpmRootKey::open(&tpm.tcti(), again, SessionMode::Salted).unwrap();
    let attrs = key.read_public_attributes().unwrap();
    assert!(attrs.fixed_tpm(), "fixedTPM: cannot leave this TPM");
    assert!(attrs.fixed_parent(), "fixedParent: cannot be duplicated");
    assert!(
        attrs.sign_encrypt() && !attrs.decrypt() && !attrs.restricted(),
        "HMAC use only"
    );
    assert!(!format!("{key:?}").contains(&*soft.to_b64url()));
}

fn base64_decode(text: &[u8]) -> Vec<u8> {
    // Standard alphabet with padding, as in PEM.
    let table = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let vals: Vec<u8> = text.iter().filter_map(|&c| table(c)).collect();
    vals.chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | v as u32) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes[..c.len().saturating_sub(1)].to_vec()
        })
        .collect()
}

#[test]
fn a_key_made_with_tpm2_tools_is_accepted() {
    let tpm = Swtpm::start();
    let dir = tpm.state.join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = [0x42u8; 32];
    std::fs::write(dir.join("k.raw"), raw).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .current_dir(&dir)
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} ({e}): apt-get install tpm2-tools (scripts/test.sh does)",
                    args[0]
                )
            });
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // swtpm has no resource manager: free transient objects between tools.
        let _ = Command::new("tpm2_flushcontext")
            .arg("-t")
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .output();
    };
    run(&["tpm2_createprimary", "-Q", "-C", "o", "-c", "prim.ctx"]);
    run(&[
        "tpm2_import",
        "-Q",
        "-C",
        "prim.ctx",
        "-G",
        "hmac",
        "-i",
        "k.raw",
        "-u",
        "k.pub",
        "-r",
        "k.priv",
    ]);
    run(&[
        "tpm2_encodeobject",
        "-C",
        "prim.ctx",
        "-u",
        "k.pub",
        "-r",
        "k.priv",
        "-o",
        "k.pem",
    ]);
    let file = TpmKeyFile::load(&dir.join("k.pem")).unwrap();
    let key = TpmRootKey::open(&tpm.tcti(), file, SessionMode::Salted).unwrap();
    let soft = SoftwareRootKey::new(&raw).unwrap();
    for ekm in ekms() {
        assert_eq!(
            key.prk(&ekm).unwrap().expose(),
            soft.prk(&ekm).unwrap().expose()
        );
    }
}

fn keystore_for(id: &str, key: &SoftwareRootKey) -> Keystore {
    let mut ks = Keystore::default();
    ks.set(ClientId::new(id).unwrap(), vec![key.clone()]);
    ks
}

fn setup_for(id: &str, key: Arc<dyn RootKey>, version: HttpVersion) -> ClientSetup {
    let roots = tls::load_roots(&fixtures().join("ca.pem")).unwrap();
    ClientSetup::new(roots, version, ClientId::new(id).unwrap(), key).unwrap()
}

/// A swtpm holding a fresh root key of client "tpmclient", a server whose
/// keystore has the same key, and the client's handle on the TPM's copy.
struct TpmClient {
    tpm: Swtpm,
    server: TestServer,
    key: Arc<dyn RootKey>,
    target: Target,
}

async fn tpm_client() -> TpmClient {
    let tpm = Swtpm::start();
    let soft = SoftwareRootKey::generate();
    let file = tpm::import(&tpm.tcti(), &soft).unwrap();
    let server = TestServer::start(Policy::default(), keystore_for("tpmclient", &soft)).await;
    let key: Arc<dyn RootKey> =
        Arc::new(TpmRootKey::open(&tpm.tcti(), file, SessionMode::Salted).unwrap());
    let target = Target::parse(&server.url()).unwrap();
    TpmClient {
        tpm,
        server,
        key,
        target,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_end_to_end_with_the_tpm_key() {
    let TpmClient {
        tpm: _tpm,
        server,
        key,
        target,
    } = tpm_client().await;
    for version in [HttpVersion::Http1, HttpVersion::Http2] {
        let mut conn =
            BoundConnection::connect(&target, &setup_for("tpmclient", key.clone(), version))
                .await
                .unwrap();
        for form in Form::ALL {
            let r = conn.send(form, &json!({"tpm": true})).await.unwrap();
            assert_eq!(r.status, 200, "{form}: {:?}", r.body);
            assert_eq!(r.json().unwrap()["claims"]["tpm"], true);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swtpm_killed_then_restarted_error_then_recovery() {
    let TpmClient {
        mut tpm,
        server,
        key,
        target,
    } = tpm_client().await;
    let setup = setup_for("tpmclient", key, HttpVersion::Auto);

    let mut c = BoundConnection::connect(&target, &setup).await.unwrap();
    assert_eq!(c.send(Form::Signed, &json!({})).await.unwrap().status, 200);

    tpm.kill();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let err = BoundConnection::connect(&target, &setup).await.unwrap_err();
        assert!(err.to_string().contains("TPM"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "an error, not a hang"
        );
    }
    // The established connection keeps its derived keys.
    assert_eq!(c.send(Form::Signed, &json!({})).await.unwrap().status, 200);

    tpm.restart();
    let mut again = BoundConnection::connect(&target, &setup)
        .await
        .expect("recovers without restart");
    assert_eq!(
        again
            .send(Form::SignedThenEncrypted, &json!({}))
            .await
            .unwrap()
            .status,
        200
    );
    server.stop().await;
}

#[test]
fn wrong_tcti_and_wrong_parent_are_clear_errors() {
    let tpm = Swtpm::start();
    let soft = SoftwareRootKey::generate();
    let file = tpm::import(&tpm.tcti(), &soft).unwrap();
    // Nothing listens on port 9 of loopback.
    let err = TpmRootKey::open(
        "swtpm:host=127.0.0.1,port=9",
        file.clone(),
        SessionMode::Salted,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot open the TPM"), "{err}");
    // Another TPM (fresh seeds): the key does not load there.
    let other = Swtpm::start();
    let err = TpmRootKey::open(&other.tcti(), file, SessionMode::Salted).unwrap_err();
    assert!(err.to_string().contains("cannot load the key"), "{err}");
    assert!(TpmKeyFile::from_pem("garbage").is_err());
}

/// The sidecar with its root key in the TPM: curl, knowing nothing of keys,
/// gets through as the TPM's client; each new connection costs one TPM HMAC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_with_a_tpm_held_key() {
    use jose_binding::sidecar::SidecarConfig;
    let TpmClient {
        tpm: _tpm,
        server: _server,
        key,
        target,
    } = tpm_client().await;
    let mut config = SidecarConfig::new(target, setup_for("tpmclient", key, HttpVersion::Http2));
    config.connections = 2;
    let addr = jose_binding_e2e::start_sidecar(config, "127.0.0.1:0").await;
    for _ in 0..4 {
        let url = format!("http://{addr}/v1/claims");
        let out = jose_binding_e2e::curl(vec!["-s".into(), "-X".into(), "POST".into(), url]).await;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["client_id"], "tpmclient", "{v}");
    }
}
