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
    let raw = [0x42u8; 32];
    let pem = tools_key(&tpm, "tools", &raw, None);
    let file = TpmKeyFile::load(&pem).unwrap();
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

/// Runs a tpm2-tools command against `tpm` in `dir`; panics with its
/// stderr.
fn tools_in(tpm: &Swtpm, dir: &std::path::Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
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
}

/// A tpm2-tools command that leaves the TPM's loaded objects alone (the
/// test's own keys stay loaded).
fn tools(tpm: &Swtpm, args: &[&str]) {
    tools_in(tpm, &tpm.state, args);
}

/// A key file made by tpm2-tools alone from the raw key `raw`, under a
/// PCR policy (`tpm2_createpolicy`, `tpm2_import -L`) when `pcrs` is given.
fn tools_key(tpm: &Swtpm, name: &str, raw: &[u8; 32], pcrs: Option<&str>) -> std::path::PathBuf {
    let dir = tpm.state.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("k.raw"), raw).unwrap();
    // swtpm has no resource manager: free transient objects between tools.
    let run = |args: &[&str]| {
        tools_in(tpm, &dir, args);
        tools_in(tpm, &dir, &["tpm2_flushcontext", "-t"]);
    };
    let mut import = vec![
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
    ];
    if let Some(sel) = pcrs {
        run(&[
            "tpm2_createpolicy",
            "-Q",
            "--policy-pcr",
            "-l",
            sel,
            "-L",
            "policy.dat",
        ]);
        import.extend(["-L", "policy.dat"]);
    }
    run(&["tpm2_createprimary", "-Q", "-C", "o", "-c", "prim.ctx"]);
    run(&import);
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
    dir.join("k.pem")
}

fn refused(r: Result<jose_binding::Prk, jose_binding::RootKeyError>) -> String {
    match r {
        Err(jose_binding::RootKeyError::Refused(m)) => m,
        Err(other) => panic!("refused, not {other:?}"),
        Ok(_) => panic!("the TPM should have refused"),
    }
}

/// A PIN-protected key: the right PIN works, none or a wrong one is
/// refused, and past the dictionary-attack threshold the TPM locks out,
/// which the error says, even for the right PIN.
#[test]
fn a_pin_key_needs_its_pin_and_wrong_pins_end_in_lockout() {
    let tpm = Swtpm::start();
    // A small threshold and a long recovery, so the lockout shows.
    tools(
        &tpm,
        &[
            "tpm2_dictionarylockout",
            "-s",
            "-n",
            "3",
            "-t",
            "1000",
            "-l",
            "1000",
        ],
    );
    let soft = SoftwareRootKey::generate();
    let pin = tpm::Pin::new("1234-good\n").unwrap();
    let file = tpm::import_with(&tpm.tcti(), &soft, Some(&pin), None).unwrap();
    let again = TpmKeyFile::from_pem(&file.to_pem().unwrap()).unwrap();
    assert!(
        again.policy.pin,
        "the key file records that a PIN is needed"
    );
    let ekm = ekms()[0].clone();
    let right = TpmRootKey::open_with_pin(
        &tpm.tcti(),
        again.clone(),
        SessionMode::Salted,
        Some(pin.clone()),
    )
    .unwrap();
    assert_eq!(
        right.prk(&ekm).unwrap().expose(),
        soft.prk(&ekm).unwrap().expose()
    );
    // Without the PIN: refused at open, by one probe (one count toward the lockout).
    let e = TpmRootKey::open(&tpm.tcti(), again.clone(), SessionMode::Salted).unwrap_err();
    assert!(e.to_string().contains("needs its PIN"), "{e}");
    let e = TpmRootKey::open_with_pin(
        &tpm.tcti(),
        again.clone(),
        SessionMode::Password,
        Some(pin.clone()),
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs the salted session"), "{e}");
    let wrong = TpmRootKey::open_with_pin(
        &tpm.tcti(),
        again.clone(),
        SessionMode::Salted,
        Some(tpm::Pin::new("0000-bad").unwrap()),
    )
    .unwrap();
    let first = refused(wrong.prk(&ekm));
    assert!(first.contains("wrong TPM PIN"), "{first}");
    assert!(first.contains("1 more before lockout"), "{first}");
    let mut said = Vec::new();
    for _ in 0..4 {
        said.push(refused(wrong.prk(&ekm)));
    }
    let last = said.last().unwrap();
    assert!(last.contains("dictionary-attack lockout"), "{said:?}");
    assert!(last.contains("every 1000 s"), "{last}");
    // Locked out: the right PIN too, with the same explanation.
    let locked = refused(right.prk(&ekm));
    assert!(locked.contains("dictionary-attack lockout"), "{locked}");
    // A key without a PIN is noDA: unaffected by the lockout.
    let plain = tpm::import(&tpm.tcti(), &soft).unwrap();
    let plain = TpmRootKey::open(&tpm.tcti(), plain, SessionMode::Salted).unwrap();
    assert_eq!(
        plain.prk(&ekm).unwrap().expose(),
        soft.prk(&ekm).unwrap().expose()
    );
}

/// A PCR-bound key works while its PCRs hold their values at import; a
/// PCR outside the selection changes nothing; extending a selected one
/// makes the next derivation fail with the policy's error. With a PIN
/// too, both are needed.
#[test]
fn a_pcr_bound_key_fails_once_a_selected_pcr_changes() {
    let tpm = Swtpm::start();
    let soft = SoftwareRootKey::generate();
    let spec: tpm::PcrSpec = "sha256:7,0".parse().unwrap();
    assert_eq!(spec.to_string(), "sha256:0,7");
    let pin = tpm::Pin::new("4321-good").unwrap();
    let bound = tpm::import_with(&tpm.tcti(), &soft, None, Some(&spec)).unwrap();
    let both = tpm::import_with(&tpm.tcti(), &soft, Some(&pin), Some(&spec)).unwrap();
    let bound = TpmKeyFile::from_pem(&bound.to_pem().unwrap()).unwrap();
    let both = TpmKeyFile::from_pem(&both.to_pem().unwrap()).unwrap();
    assert_eq!(bound.policy.to_string(), "PCR sha256:0,7");
    assert_eq!(both.policy.to_string(), "PIN + PCR sha256:0,7");
    let ekm = ekms()[1].clone();
    let want = soft.prk(&ekm).unwrap();
    let open = |file: &TpmKeyFile, pin: Option<tpm::Pin>| {
        TpmRootKey::open_with_pin(&tpm.tcti(), file.clone(), SessionMode::Salted, pin).unwrap()
    };
    // swtpm holds 3 loaded objects (a key, and the primary while another
    // loads): at most two keys are open at a time here.
    let k1 = open(&bound, None);
    let k2 = open(&both, Some(pin.clone()));
    for _ in 0..3 {
        assert_eq!(k1.prk(&ekm).unwrap().expose(), want.expose());
        assert_eq!(k2.prk(&ekm).unwrap().expose(), want.expose());
    }
    drop(k2);
    let wrong_pin = open(&both, Some(tpm::Pin::new("9999-bad").unwrap()));
    assert!(refused(wrong_pin.prk(&ekm)).contains("wrong TPM PIN"));
    drop(wrong_pin);
    let extend = |pcr: &str| {
        tools(
            &tpm,
            &[
                "tpm2_pcrextend",
                &format!("{pcr}:sha256={}", "ab".repeat(32)),
            ],
        )
    };
    extend("8");
    assert_eq!(
        k1.prk(&ekm).unwrap().expose(),
        want.expose(),
        "PCR 8 is not selected"
    );
    extend("7");
    let e = refused(k1.prk(&ekm));
    assert!(
        e.contains("PCR policy failed") && e.contains("sha256:0,7"),
        "{e}"
    );
    drop(k1);
    let e = refused(open(&both, Some(pin)).prk(&ekm));
    assert!(e.contains("PCR policy failed"), "{e}");
    // A fresh process, as after a restart, fails the same way.
    let e = refused(open(&bound, None).prk(&ekm));
    assert!(e.contains("PCR policy failed"), "{e}");
}

/// A key made with tpm2-tools under a PCR policy: tpm2_encodeobject does
/// not record the policy, so the key file says what to do instead.
#[test]
fn a_tpm2_tools_policy_key_without_its_policy_is_explained() {
    let tpm = Swtpm::start();
    let pem = tools_key(&tpm, "tools-policy", &[0x42; 32], Some("sha256:0,7"));
    let e = TpmKeyFile::load(&pem).unwrap_err().to_string();
    assert!(
        e.contains("records no policy") && e.contains("--pcr-policy"),
        "{e}"
    );
}
