//! `jwt-server keys split | combine | share-decrypt` as operators run them:
//! t-of-n custody of a client's root key, checked over the wire.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;
use jose_binding::client::HttpVersion;
use jose_binding::{Form, Keystore, Policy, SoftwareRootKey};
use jose_binding_e2e::{connect, setup_with_key, TempDir, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_jwt-server");
const CLIENT: &str = "client7";
const NAMES: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

fn run(args: &[&str], keystore: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("JWT_KEYSTORE", keystore)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// Asserts exit 2 with `want` in the error, and that the output holds no key.
#[track_caller]
fn refused(o: &Output, want: &str, key: &SoftwareRootKey) {
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(err.contains(want), "{err:?} should contain {want:?}");
    let b64 = key.to_b64url();
    assert!(!err.contains(&*b64) && !stdout(o).contains(&*b64));
}

/// One operator setup: a keystore with client7, and five holders with
/// age identity files (as age-keygen writes them).
struct Ceremony {
    dir: TempDir,
    keystore: PathBuf,
    key: SoftwareRootKey,
    identity_files: Vec<PathBuf>,
    holder_args: Vec<String>,
}

impl Ceremony {
    fn new(name: &str) -> Ceremony {
        let dir = TempDir::new(&format!("custody-{name}"));
        let keystore = dir.join("keystore.toml");
        let key_file = dir.join("client7.key");
        ok(&run(
            &[
                "keys",
                "add",
                CLIENT,
                "--key-out",
                key_file.to_str().unwrap(),
            ],
            &keystore,
        ));
        let key = SoftwareRootKey::from_file(&key_file).unwrap();
        let mut identity_files = Vec::new();
        let mut holder_args = Vec::new();
        for name in NAMES {
            let id = age::x25519::Identity::generate();
            let path = dir.join(format!("{name}.age"));
            std::fs::write(
                &path,
                format!(
                    "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n",
                    id.to_public(),
                    id.to_string().expose_secret()
                ),
            )
            .unwrap();
            identity_files.push(path);
            holder_args.push(format!("{name}={}", id.to_public()));
        }
        Ceremony {
            dir,
            keystore,
            key,
            identity_files,
            holder_args,
        }
    }

    /// `keys split client7 --threshold 3` to all five holders into `out`.
    fn split(&self, out: &str, extra: &[&str]) -> Output {
        let out_dir = self.dir.join(out);
        let mut args: Vec<String> = vec![
            "keys".into(),
            "split".into(),
            CLIENT.into(),
            "--threshold".into(),
            "3".into(),
            "--out-dir".into(),
            out_dir.to_str().unwrap().into(),
        ];
        for h in &self.holder_args {
            args.push("--holder".into());
            args.push(h.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &self.keystore)
    }

    fn share(&self, out: &str, holder: usize) -> PathBuf {
        self.dir
            .join(out)
            .join(format!("{CLIENT}-{}.share", NAMES[holder]))
    }

    /// `keys combine client7 FILES --identity (all five) [extra]`.
    fn combine(&self, files: &[PathBuf], extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["keys".into(), "combine".into(), CLIENT.into()];
        args.extend(files.iter().map(|f| f.to_str().unwrap().to_owned()));
        for id in &self.identity_files {
            args.push("--identity".into());
            args.push(id.to_str().unwrap().into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &self.keystore)
    }

    fn key_out(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn subsets_of_5(t: usize) -> Vec<Vec<usize>> {
    (0u32..32)
        .filter(|m| m.count_ones() as usize == t)
        .map(|m| (0..5).filter(|i| m & (1 << i) != 0).collect())
        .collect()
}

async fn accepted(server: &TestServer, key: SoftwareRootKey) -> u16 {
    let setup = setup_with_key(CLIENT, HttpVersion::Auto, key);
    let mut conn = connect(server, &setup).await;
    let reply = conn
        .send(
            Form::EncryptedThenSigned,
            &serde_json::json!({"role": "ops"}),
        )
        .await
        .unwrap();
    reply.status
}

#[tokio::test]
async fn every_3_of_5_subset_rebuilds_a_key_the_server_accepts() {
    let c = Ceremony::new("subsets");
    let out = c.split("shares", &[]);
    ok(&out);
    let text = stdout(&out);
    let fp = jose_binding::RootKey::fingerprint(&c.key).to_string();
    assert!(text.contains(&format!("fp={fp}")), "{text}");
    assert!(text.contains("any 3 of which rebuild it"), "{text}");
    assert!(text.contains("group "), "{text}");
    assert!(
        !text.contains(&*c.key.to_b64url()),
        "the key is never printed"
    );
    for (i, name) in NAMES.iter().enumerate() {
        let share = c.share("shares", i);
        let body = std::fs::read_to_string(&share).unwrap();
        assert!(body.starts_with("jose-binding custody share v1\n"));
        assert!(body.contains(&format!("index: {}\n", i + 1)), "{body}");
        assert!(body.contains(&format!("holder: {name}\n")));
        assert!(body.contains("-----BEGIN AGE ENCRYPTED FILE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&share).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
    // Without --remove the client stays.
    assert!(Keystore::load(&c.keystore).unwrap().get(CLIENT).is_some());

    // A server that knows the original key.
    let server = TestServer::start(Policy::default(), Keystore::load(&c.keystore).unwrap()).await;
    let subsets = subsets_of_5(3);
    assert_eq!(subsets.len(), 10);
    for (n, subset) in subsets.iter().enumerate() {
        let files: Vec<PathBuf> = subset.iter().map(|&i| c.share("shares", i)).collect();
        let key_out = c.key_out(&format!("rebuilt-{n}.key"));
        let out = c.combine(&files, &["--key-out", key_out.to_str().unwrap()]);
        ok(&out);
        let text = stdout(&out);
        assert!(text.contains("commitment verified"), "{text}");
        assert!(!text.contains(&*c.key.to_b64url()));
        let rebuilt = SoftwareRootKey::from_file(&key_out).unwrap();
        assert_eq!(rebuilt.expose(), c.key.expose(), "subset {subset:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_out).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // Over the wire: tokens made with the rebuilt key are accepted.
        assert_eq!(accepted(&server, rebuilt).await, 200, "subset {subset:?}");
    }
    // A key that is not the original is refused by the same server (the
    // check above is not vacuous).
    assert_eq!(accepted(&server, SoftwareRootKey::generate()).await, 401);
    server.stop().await;
}

#[test]
fn too_few_mixed_and_duplicate_shares_refuse() {
    let c = Ceremony::new("refuse");
    ok(&c.split("a", &[]));
    ok(&c.split("b", &[]));
    let key_out = c.key_out("never.key");
    let ko = key_out.to_str().unwrap();

    // t - 1 shares (every pair).
    for pair in subsets_of_5(2) {
        let files: Vec<PathBuf> = pair.iter().map(|&i| c.share("a", i)).collect();
        refused(
            &c.combine(&files, &["--key-out", ko]),
            "2 share(s) given, but this split needs 3 of its 5",
            &c.key,
        );
    }
    // Two splits of the same key do not mix.
    refused(
        &c.combine(
            &[c.share("a", 0), c.share("a", 1), c.share("b", 2)],
            &["--key-out", ko],
        ),
        "come from different splits",
        &c.key,
    );
    // The same share twice, also under another name.
    refused(
        &c.combine(
            &[c.share("a", 0), c.share("a", 1), c.share("a", 1)],
            &["--key-out", ko],
        ),
        "are both share #2",
        &c.key,
    );
    let copy = c.dir.join("copy.share");
    std::fs::copy(c.share("a", 0), &copy).unwrap();
    refused(
        &c.combine(
            &[c.share("a", 0), c.share("a", 1), copy],
            &["--key-out", ko],
        ),
        "are both share #1",
        &c.key,
    );
    // Shares of another client's key.
    let other = run(
        &["keys", "combine", "client8"]
            .into_iter()
            .map(str::to_owned)
            .chain((0..3).map(|i| c.share("a", i).to_str().unwrap().to_owned()))
            .chain(
                c.identity_files
                    .iter()
                    .flat_map(|f| ["--identity".to_owned(), f.to_str().unwrap().to_owned()]),
            )
            .chain(["--key-out".to_owned(), ko.to_owned()])
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        &c.keystore,
    );
    refused(
        &other,
        "is a share of client client7's key, not of client8's",
        &c.key,
    );
    assert!(!key_out.exists(), "nothing is written on refusal");
}

/// Flips one bit of `text` at byte `pos`.
fn flip(text: &str, pos: usize, bit: u8) -> String {
    let mut b = text.as_bytes().to_vec();
    b[pos] ^= 1 << bit;
    String::from_utf8(b).unwrap()
}

#[test]
fn flipped_bits_altered_headers_and_wrong_identities_refuse() {
    let c = Ceremony::new("flip");
    ok(&c.split("s", &[]));
    let key_out = c.key_out("never.key");
    let ko = key_out.to_str().unwrap();
    let good: Vec<PathBuf> = (0..3).map(|i| c.share("s", i)).collect();
    let text = std::fs::read_to_string(&good[1]).unwrap();

    // A flipped bit in the armored ciphertext, at several places.
    let body = text.find("-----BEGIN AGE").unwrap() + 40;
    let end = text.find("-----END AGE").unwrap() - 2;
    for pos in [body, body + 100, (body + end) / 2, end - 10] {
        if text.as_bytes()[pos] == b'\n' {
            continue;
        }
        let bad = c.dir.join(format!("flip-{pos}.share"));
        std::fs::write(&bad, flip(&text, pos, 1)).unwrap();
        refused(
            &c.combine(&[good[0].clone(), bad, good[2].clone()], &["--key-out", ko]),
            "corrupted",
            &c.key,
        );
    }

    // An altered visible header: the encrypted payload disagrees.
    let bad = c.dir.join("header.share");
    std::fs::write(&bad, text.replace("index: 2\n", "index: 4\n")).unwrap();
    refused(
        &c.combine(&[good[0].clone(), bad, good[2].clone()], &["--key-out", ko]),
        "the visible header says index \"4\" but the encrypted share says \"2\"",
        &c.key,
    );

    // A flipped bit in the share value after decryption (holders decrypt
    // on their own machines with `keys share-decrypt`).
    let mut plain = Vec::new();
    for (i, name) in NAMES.iter().enumerate().take(3) {
        let out_path = c.dir.join(format!("{name}.plain"));
        let out = run(
            &[
                "keys",
                "share-decrypt",
                good[i].to_str().unwrap(),
                "--identity",
                c.identity_files[i].to_str().unwrap(),
                "--out",
                out_path.to_str().unwrap(),
            ],
            &c.keystore,
        );
        ok(&out);
        assert!(stdout(&out).is_empty(), "the share goes to the file only");
        assert!(stderr(&out).contains("no longer encrypted"));
        plain.push(out_path);
    }
    // Decrypted shares combine (no identity needed).
    let out = run(
        &["keys", "combine", CLIENT]
            .into_iter()
            .chain(plain.iter().map(|p| p.to_str().unwrap()))
            .chain(["--key-out", ko])
            .collect::<Vec<_>>(),
        &c.keystore,
    );
    ok(&out);
    assert_eq!(
        SoftwareRootKey::from_file(&key_out).unwrap().expose(),
        c.key.expose()
    );
    std::fs::remove_file(&key_out).unwrap();

    let ptext = std::fs::read_to_string(&plain[1]).unwrap();
    let value_line = ptext
        .lines()
        .find(|l| l.starts_with("value: "))
        .unwrap()
        .to_owned();
    let mut value = jose_binding::b64::decode(&value_line["value: ".len()..]).unwrap();
    for (byte, bit) in [(0usize, 0u8), (13, 4), (31, 7)] {
        value[byte] ^= 1 << bit;
        let bad = c.dir.join("bob-flipped.plain");
        std::fs::write(
            &bad,
            ptext.replace(
                &value_line,
                &format!("value: {}", jose_binding::b64::encode(&value)),
            ),
        )
        .unwrap();
        value[byte] ^= 1 << bit;
        let out = run(
            &[
                "keys",
                "combine",
                CLIENT,
                plain[0].to_str().unwrap(),
                bad.to_str().unwrap(),
                plain[2].to_str().unwrap(),
                "--key-out",
                ko,
            ],
            &c.keystore,
        );
        refused(
            &out,
            "the rebuilt key does not match the commitment stored with the shares",
            &c.key,
        );
    }

    // Wrong identity: carol's share with only alice's and bob's identities.
    let out = run(
        &[
            "keys",
            "combine",
            CLIENT,
            good[0].to_str().unwrap(),
            good[1].to_str().unwrap(),
            good[2].to_str().unwrap(),
            "--identity",
            c.identity_files[0].to_str().unwrap(),
            "--identity",
            c.identity_files[1].to_str().unwrap(),
            "--key-out",
            ko,
        ],
        &c.keystore,
    );
    refused(&out, "wrong identity", &c.key);
    assert!(stderr(&out).contains("(holder carol)"), "{}", stderr(&out));
    // No identity at all for an encrypted share.
    let out = run(
        &[
            "keys",
            "combine",
            CLIENT,
            good[0].to_str().unwrap(),
            "--key-out",
            ko,
        ],
        &c.keystore,
    );
    refused(
        &out,
        "give that holder's age identity with --identity",
        &c.key,
    );
    // share-decrypt with someone else's identity, and never over a file.
    let out = run(
        &[
            "keys",
            "share-decrypt",
            good[0].to_str().unwrap(),
            "--identity",
            c.identity_files[1].to_str().unwrap(),
            "--out",
            c.dir.join("x.plain").to_str().unwrap(),
        ],
        &c.keystore,
    );
    refused(&out, "wrong identity", &c.key);
    let out = run(
        &[
            "keys",
            "share-decrypt",
            good[0].to_str().unwrap(),
            "--identity",
            c.identity_files[0].to_str().unwrap(),
            "--out",
            plain[1].to_str().unwrap(),
        ],
        &c.keystore,
    );
    refused(&out, "exists", &c.key);
    // Printed only when asked: --out -.
    let out = run(
        &[
            "keys",
            "share-decrypt",
            good[0].to_str().unwrap(),
            "--identity",
            c.identity_files[0].to_str().unwrap(),
            "--out",
            "-",
        ],
        &c.keystore,
    );
    ok(&out);
    assert!(stdout(&out).starts_with("jose-binding custody share v1 decrypted\n"));
    assert_eq!(
        stdout(&out),
        std::fs::read_to_string(&plain[0]).unwrap(),
        "the same decrypted share as the file"
    );
    assert!(!key_out.exists(), "nothing is written on refusal");
}

#[tokio::test]
async fn split_remove_then_combine_brings_the_client_back() {
    let c = Ceremony::new("remove");
    let out = c.split("s", &["--remove"]);
    ok(&out);
    assert!(stdout(&out).contains("client7 removed from"));
    let ks = Keystore::load(&c.keystore).unwrap();
    assert!(ks.get(CLIENT).is_none(), "--remove removed the client");
    let server = TestServer::start(Policy::default(), ks).await;
    assert_eq!(
        accepted(&server, c.key.clone()).await,
        401,
        "unknown client now"
    );
    server.stop().await;

    // Combine back into the keystore (the default destination).
    let files: Vec<PathBuf> = [4, 0, 2].iter().map(|&i| c.share("s", i)).collect();
    let out = c.combine(&files, &[]);
    ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("rebuilt from shares #1 alice, #3 carol, #5 erin"),
        "{text}"
    );
    assert!(text.contains("as its current key"), "{text}");
    let ks = Keystore::load(&c.keystore).unwrap();
    assert_eq!(ks.get(CLIENT).unwrap().keys[0].expose(), c.key.expose());
    let server = TestServer::start(Policy::default(), ks).await;
    assert_eq!(accepted(&server, c.key.clone()).await, 200, "works again");
    server.stop().await;

    // The client exists now: refuse unless --replace.
    let before = std::fs::read(&c.keystore).unwrap();
    refused(&c.combine(&files, &[]), "pass --replace", &c.key);
    assert_eq!(std::fs::read(&c.keystore).unwrap(), before);
    ok(&run(
        &[
            "keys",
            "rotate",
            CLIENT,
            "--key-out",
            c.key_out("new.key").to_str().unwrap(),
        ],
        &c.keystore,
    ));
    ok(&c.combine(&files, &["--replace"]));
    let keys = &Keystore::load(&c.keystore)
        .unwrap()
        .get(CLIENT)
        .unwrap()
        .keys
        .clone();
    assert_eq!(keys.len(), 1, "--replace leaves the rebuilt key alone");
    assert_eq!(keys[0].expose(), c.key.expose());
}

#[test]
fn split_refuses_bad_requests_and_never_overwrites() {
    let c = Ceremony::new("badsplit");
    let before = std::fs::read(&c.keystore).unwrap();
    let h = &c.holder_args;
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--threshold".into(),
                "1".into(),
                "--holder".into(),
                h[0].clone(),
                "--holder".into(),
                h[1].clone(),
            ],
            "--threshold must be at least 2",
        ),
        (
            vec![
                "--threshold".into(),
                "3".into(),
                "--holder".into(),
                h[0].clone(),
                "--holder".into(),
                h[1].clone(),
            ],
            "--threshold 3 is more than the 2 holder(s)",
        ),
        (
            vec![
                "--threshold".into(),
                "2".into(),
                "--holder".into(),
                h[0].clone(),
                "--holder".into(),
                h[1].replace("bob=", "alice="),
            ],
            "holder alice is named twice",
        ),
        (
            vec![
                "--threshold".into(),
                "2".into(),
                "--holder".into(),
                "alice=age1nope".into(),
                "--holder".into(),
                h[1].clone(),
            ],
            "not an age X25519 public key",
        ),
        (
            vec![
                "--threshold".into(),
                "2".into(),
                "--holder".into(),
                "a b=x".into(),
                "--holder".into(),
                h[1].clone(),
            ],
            "expected NAME=age1",
        ),
    ];
    for (args, want) in cases {
        let mut full: Vec<String> = vec!["keys".into(), "split".into(), CLIENT.into()];
        full.extend(args);
        full.push("--out-dir".into());
        full.push(c.dir.join("out").to_str().unwrap().into());
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = run(&full, &c.keystore);
        refused(&out, want, &c.key);
    }
    // A secret key pasted instead of a public one is refused, never echoed.
    let secret = age::x25519::Identity::generate().to_string();
    for bad in [
        secret.expose_secret().to_owned(),
        format!("alice={}", secret.expose_secret()),
    ] {
        let out = run(
            &[
                "keys",
                "split",
                CLIENT,
                "--threshold",
                "2",
                "--holder",
                &bad,
                "--holder",
                &h[1],
            ],
            &c.keystore,
        );
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains("--holder"), "{err}");
        assert!(!err.contains(&secret.expose_secret()[16..]), "{err}");
    }
    // 256 holders (GF(256) has 255 points).
    let recipient = h[0].split_once('=').unwrap().1.to_owned();
    let mut full: Vec<String> = vec![
        "keys".into(),
        "split".into(),
        CLIENT.into(),
        "--threshold".into(),
        "2".into(),
    ];
    for i in 0..256 {
        full.push("--holder".into());
        full.push(format!("h{i}={recipient}"));
    }
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    refused(&run(&full, &c.keystore), "at most 255 holders", &c.key);
    // Unknown client.
    let out = run(
        &[
            "keys",
            "split",
            "nobody",
            "--threshold",
            "2",
            "--holder",
            &h[0],
            "--holder",
            &h[1],
        ],
        &c.keystore,
    );
    refused(&out, "no client nobody", &c.key);
    assert!(!c.dir.join("out").exists(), "nothing written");

    // An existing share file is never overwritten, and --remove does not run.
    ok(&c.split("s", &[]));
    let first = std::fs::read(c.share("s", 0)).unwrap();
    refused(&c.split("s", &["--remove"]), "already exists", &c.key);
    assert_eq!(std::fs::read(c.share("s", 0)).unwrap(), first);
    assert_eq!(
        std::fs::read(&c.keystore).unwrap(),
        before,
        "keystore untouched"
    );
}
