//! Where the client's root key lives: a file, or a TPM (feature `tpm`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueHint;
use jose_binding::{RootKey, SoftwareRootKey};
use serde::{Deserialize, Serialize};

/// Root-key flags shared by `send`, `bench` and `proxy`.
#[derive(clap::Args, Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyArgs {
    /// Root key file: one line of base64url.
    #[arg(long, env = "JWT_KEY_FILE", conflicts_with = "tpm_key", value_hint = ValueHint::FilePath)]
    pub key_file: Option<PathBuf>,
    /// Root key held in a TPM: a TSS2 PRIVATE KEY file from `jwt-client tpm import`
    /// (or tpm2_import + tpm2_encodeobject).
    #[arg(long, env = "JWT_TPM_KEY", value_hint = ValueHint::FilePath)]
    pub tpm_key: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub tpm: TpmArgs,
}

/// How to reach the TPM.
#[derive(clap::Args, Debug, Clone, Default, Serialize, Deserialize)]
pub struct TpmArgs {
    /// TPM access, tpm2-tools syntax: device:/dev/tpmrm0, swtpm:host=127.0.0.1,port=2321, tabrmd
    /// [then env TPM2TOOLS_TCTI; default: device:/dev/tpmrm0].
    #[arg(long, env = "JWT_TPM_TCTI")]
    pub tcti: Option<String>,
    /// TPM session for the per-connection HMAC: salted (PRK encrypted on the
    /// TPM bus) or password (faster, PRK in clear on the bus; refused for a
    /// key with a PIN or a PCR policy).
    #[arg(long, env = "JWT_TPM_SESSION", default_value = "salted")]
    pub tpm_session: String,
    /// File holding the TPM key's PIN, one line (keep it readable only by
    /// the service's user) [default: asked at the terminal when the key
    /// has a PIN].
    #[arg(long, env = "JWT_TPM_PIN_FILE", value_hint = ValueHint::FilePath)]
    pub tpm_pin_file: Option<PathBuf>,
}

/// What a TPM key demands besides the TPM: `tpm import` and `enroll
/// --tpm-key` take these.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TpmPolicyArgs {
    /// Protect the key with a PIN, asked at the terminal (twice) or read
    /// from --tpm-pin-file: every connection's HMAC needs it, and wrong ones
    /// count toward the TPM's dictionary-attack lockout.
    #[arg(long)]
    pub pin: bool,
    /// Bind the key to the values these PCRs hold now, e.g.
    /// sha256:0,2,4,7: it works only while they still do (this boot chain).
    #[arg(long, value_name = "BANK:PCRS")]
    pub pcr_policy: Option<String>,
}

#[cfg(feature = "tpm")]
impl TpmArgs {
    pub fn tcti(&self) -> String {
        self.tcti
            .clone()
            .or_else(|| std::env::var("TPM2TOOLS_TCTI").ok())
            .unwrap_or_else(|| jose_binding::tpm::DEFAULT_TCTI.to_owned())
    }
}

/// At most `max` bytes of `r`, in a buffer wiped on drop: a secret's file
/// (a bundle, a PIN) or stdin, never read without a bound.
pub(crate) fn read_at_most(
    r: impl std::io::Read,
    max: u64,
) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    std::io::Read::read_to_end(&mut std::io::Read::take(r, max), &mut bytes)?;
    Ok(bytes)
}

#[cfg(not(feature = "tpm"))]
const NO_TPM: &str = "this jwt-client was built without TPM support; rebuild with `--features tpm` (needs libtss2-dev)";

impl KeyArgs {
    /// Opens the root key; a TPM key is loaded now so a wrong TCTI, blob or
    /// parent is reported before any connection.
    pub async fn open(&self) -> Result<Arc<dyn RootKey>, String> {
        match (&self.key_file, &self.tpm_key) {
            (Some(path), None) => SoftwareRootKey::from_file(path)
                .map(|k| Arc::new(k) as Arc<dyn RootKey>)
                .map_err(|e| format!("--key-file {}: {e}", path.display())),
            (None, Some(path)) => open_tpm(path.clone(), self.tpm.clone()).await,
            (None, None) => Err("give the root key: --key-file FILE or --tpm-key FILE".into()),
            (Some(_), Some(_)) => Err("--key-file and --tpm-key exclude each other".into()),
        }
    }
}

#[cfg(feature = "tpm")]
async fn open_tpm(path: PathBuf, args: TpmArgs) -> Result<Arc<dyn RootKey>, String> {
    use jose_binding::tpm::{SessionMode, TpmKeyFile, TpmRootKey};
    tokio::task::spawn_blocking(move || {
        let mode: SessionMode = args.tpm_session.parse().map_err(|e| format!("{e}"))?;
        let file = TpmKeyFile::load(&path).map_err(|e| e.to_string())?;
        let pin = pin_for_use(file.policy.pin, &args)?;
        TpmRootKey::open_with_pin(&args.tcti(), file, mode, pin)
            .map(|k| Arc::new(k) as Arc<dyn RootKey>)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The PIN to use a key with: from --tpm-pin-file, else, for a key whose
/// file does not say its auth is empty, asked at a terminal (an empty
/// answer: none); without a terminal, none (a key that needs one is then
/// refused when it opens).
#[cfg(feature = "tpm")]
fn pin_for_use(may_need: bool, args: &TpmArgs) -> Result<Option<jose_binding::tpm::Pin>, String> {
    use std::io::IsTerminal;
    if args.tpm_pin_file.is_some() {
        return read_pin(args.tpm_pin_file.as_deref(), false).map(Some);
    }
    if !may_need || !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let text = rpassword::prompt_password("TPM PIN (empty if the key has none): ")
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("cannot ask for the TPM PIN ({e}): give it with --tpm-pin-file FILE (or JWT_TPM_PIN_FILE)"))?;
    if text.is_empty() {
        return Ok(None);
    }
    jose_binding::tpm::Pin::new(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The PIN: from `file` (one line), else asked at the terminal (`confirm`:
/// twice, for a new one). Never from a flag's value, which others can read
/// in the process list.
#[cfg(feature = "tpm")]
pub fn read_pin(
    file: Option<&std::path::Path>,
    confirm: bool,
) -> Result<jose_binding::tpm::Pin, String> {
    use jose_binding::tpm::Pin;
    if let Some(path) = file {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the TPM PIN file is readable by group or others; chmod 600 it");
                }
            }
        }
        // One short line: read at most 4 KiB of it.
        let bad = |e: &dyn std::fmt::Display| format!("--tpm-pin-file {}: {e}", path.display());
        let bytes = std::fs::File::open(path)
            .and_then(|f| read_at_most(f, 4096))
            .map_err(|e| bad(&e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| bad(&"not UTF-8 text"))?;
        return Pin::new(text).map_err(|e| bad(&e));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt).map(zeroize::Zeroizing::new).map_err(|e| {
            format!("cannot ask for the TPM PIN ({e}): give it with --tpm-pin-file FILE (or JWT_TPM_PIN_FILE)")
        })
    };
    let pin = ask("TPM PIN: ")?;
    if confirm && *ask("TPM PIN again: ")? != *pin {
        return Err("the two PINs differ; nothing was imported".into());
    }
    Pin::new(&pin).map_err(|e| e.to_string())
}

/// The PIN and PCR selection `policy` asks for, read and checked before
/// anything else happens (for `enroll`, before the server hands out a key
/// a mistyped PIN would lose).
#[cfg(feature = "tpm")]
pub fn policy_inputs(
    args: &TpmArgs,
    policy: &TpmPolicyArgs,
) -> Result<
    (
        Option<jose_binding::tpm::Pin>,
        Option<jose_binding::tpm::PcrSpec>,
    ),
    String,
> {
    use jose_binding::tpm::{PcrSpec, TpmError};
    let pcrs: Option<PcrSpec> = policy
        .pcr_policy
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: TpmError| e.to_string())?;
    let pin = match policy.pin {
        true => Some(read_pin(args.tpm_pin_file.as_deref(), true)?),
        false => None,
    };
    Ok((pin, pcrs))
}

/// `tpm import`'s and `enroll --tpm-key`'s step: the key into the TPM under
/// the policy asked for, checked against the file key before it is used.
#[cfg(feature = "tpm")]
pub fn import_key(
    key: &SoftwareRootKey,
    args: &TpmArgs,
    (pin, pcrs): (
        Option<jose_binding::tpm::Pin>,
        Option<jose_binding::tpm::PcrSpec>,
    ),
) -> Result<jose_binding::tpm::TpmKeyFile, String> {
    use jose_binding::tpm::{self, SessionMode, TpmRootKey};
    use jose_binding::Ekm;
    let tcti = args.tcti();
    let file =
        tpm::import_with(&tcti, key, pin.as_ref(), pcrs.as_ref()).map_err(|e| e.to_string())?;
    // Prove the new object works, under its policy, before anything relies on it.
    let loaded = TpmRootKey::open_with_pin(&tcti, file.clone(), SessionMode::Salted, pin)
        .map_err(|e| e.to_string())?;
    let probe = Ekm::from_bytes([0x5a; 32]);
    let same =
        loaded.prk(&probe).map_err(|e| e.to_string())?.expose() == key.compute_prk(&probe).expose();
    if !same {
        return Err("the TPM key does not reproduce the file key".into());
    }
    Ok(file)
}

#[cfg(not(feature = "tpm"))]
async fn open_tpm(_path: PathBuf, _args: TpmArgs) -> Result<Arc<dyn RootKey>, String> {
    Err(NO_TPM.into())
}

/// `jwt-client tpm …`
#[derive(clap::Subcommand, Debug)]
pub enum TpmCommand {
    /// Put an existing root key into the TPM. The key is sent inside a salted,
    /// encrypted session (never in the clear on the bus); the TPM object is
    /// fixedTPM|fixedParent, so it cannot be read back or copied to another TPM.
    Import {
        /// The root key file to import.
        #[arg(long, env = "JWT_KEY_FILE")]
        key_file: PathBuf,
        /// Where to write the TPM key (TSS2 PRIVATE KEY PEM; useless without this TPM).
        #[arg(long)]
        out: PathBuf,
        /// Overwrite and delete the plaintext key file once the import succeeded.
        #[arg(long)]
        delete_key_file: bool,
        #[command(flatten)]
        tpm: TpmArgs,
        #[command(flatten)]
        policy: TpmPolicyArgs,
    },
    /// Time the per-connection TPM work side by side, in interleaved blocks:
    /// TPM2_HMAC in a password and in a salted session, and with a PIN and a
    /// PIN + PCR policy (a policy session per connection). Without
    /// --tpm-key it imports throwaway keys of each kind; with it, it times
    /// that key in the sessions it allows.
    Bench {
        #[arg(long, env = "JWT_TPM_KEY")]
        tpm_key: Option<PathBuf>,
        /// HMACs per row.
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        tpm: TpmArgs,
    },
}

#[cfg(not(feature = "tpm"))]
pub fn tpm_command(_cmd: TpmCommand) -> Result<(), String> {
    Err(NO_TPM.into())
}

#[cfg(feature = "tpm")]
pub fn tpm_command(cmd: TpmCommand) -> Result<(), String> {
    use jose_binding::tpm::TpmRootKey;
    use jose_binding::Ekm;
    match cmd {
        TpmCommand::Import {
            key_file,
            out,
            delete_key_file,
            tpm: args,
            policy,
        } => {
            let key = SoftwareRootKey::from_file(&key_file)
                .map_err(|e| format!("--key-file {}: {e}", key_file.display()))?;
            let inputs = policy_inputs(&args, &policy)?;
            let file =
                import_key(&key, &args, inputs).map_err(|e| format!("{e}; nothing deleted"))?;
            std::fs::write(&out, file.to_pem().map_err(|e| e.to_string())?)
                .map_err(|e| format!("--out {}: {e}", out.display()))?;
            eprintln!(
                "imported into the TPM at {}: key fp={} -> {} (TPM object fp={}, fixedTPM|fixedParent, policy: {})",
                args.tcti(),
                RootKey::fingerprint(&key),
                out.display(),
                file.fingerprint(),
                file.policy
            );
            if delete_key_file {
                shred(&key_file)
                    .map_err(|e| format!("cannot delete {}: {e}", key_file.display()))?;
                eprintln!("deleted {}", key_file.display());
            }
            Ok(())
        }
        TpmCommand::Bench {
            tpm_key,
            count,
            json,
            tpm: args,
        } => {
            let tcti = args.tcti();
            let rows = bench_rows(tpm_key.as_deref(), &args)?;
            let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(count); rows.len()];
            // Blocks of 25 per row in turn: a TPM without a resource manager
            // (swtpm) holds 3 loaded objects, so each row's key is loaded for
            // its block only; the load is not timed.
            const BLOCK: usize = 25;
            let mut done = 0;
            while done < count.max(1) {
                let n = BLOCK.min(count.max(1) - done);
                for (row, (_, file, mode, pin)) in rows.iter().enumerate() {
                    let key = TpmRootKey::open_with_pin(&tcti, file.clone(), *mode, pin.clone())
                        .map_err(|e| e.to_string())?;
                    for i in 0..n {
                        let ekm = Ekm::from_bytes([((done + i) % 251) as u8; 32]);
                        let t = std::time::Instant::now();
                        key.prk(&ekm).map_err(|e| e.to_string())?;
                        times[row].push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                done += n;
                if !json {
                    eprint!("\r{tcti}: {done}/{count} per row");
                }
            }
            let q = |t: &mut Vec<f64>, p: f64| {
                t.sort_by(f64::total_cmp);
                t[((t.len() - 1) as f64 * p) as usize]
            };
            let stats: Vec<(&str, f64, f64)> = rows
                .iter()
                .zip(times.iter_mut())
                .map(|((name, ..), t)| (*name, q(t, 0.5), q(t, 0.99)))
                .collect();
            if json {
                let v: Vec<_> = stats
                    .iter()
                    .map(|(name, p50, p99)| serde_json::json!({"session": name, "p50_ms": p50, "p99_ms": p99, "count": count}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v));
            } else {
                eprintln!("\r{tcti}: {count} per row, interleaved in blocks of {BLOCK}");
                let base = stats.first().map_or(1.0, |s| s.1);
                for (name, p50, p99) in &stats {
                    outln!(
                        "{name:<16} p50 {p50:.3} ms   p99 {p99:.3} ms   p50 / first row {:.1}x",
                        p50 / base
                    );
                }
            }
            Ok(())
        }
    }
}

/// One row of `tpm bench`: its name, the key, the session, the PIN.
#[cfg(feature = "tpm")]
type BenchRow = (
    &'static str,
    jose_binding::tpm::TpmKeyFile,
    jose_binding::tpm::SessionMode,
    Option<jose_binding::tpm::Pin>,
);

/// The rows: a given key in the sessions it allows, or throwaway keys of
/// every kind, imported now (they exist only as files in memory).
#[cfg(feature = "tpm")]
fn bench_rows(key: Option<&std::path::Path>, args: &TpmArgs) -> Result<Vec<BenchRow>, String> {
    use jose_binding::tpm::{self, Pin, SessionMode, TpmKeyFile};
    if let Some(path) = key {
        let file = TpmKeyFile::load(path).map_err(|e| e.to_string())?;
        let pin = pin_for_use(file.policy.pin, args)?;
        if pin.is_some() || file.policy.pcrs.is_some() {
            return Ok(vec![("policy", file, SessionMode::Salted, pin)]);
        }
        return Ok(vec![
            ("password", file.clone(), SessionMode::Password, None),
            ("salted", file, SessionMode::Salted, None),
        ]);
    }
    let tcti = args.tcti();
    let key = SoftwareRootKey::generate();
    let pin = Pin::new("bench-pin-0000").map_err(|e| e.to_string())?;
    let pcrs: tpm::PcrSpec = "sha256:0,7"
        .parse()
        .map_err(|e: tpm::TpmError| e.to_string())?;
    let plain = tpm::import(&tcti, &key).map_err(|e| e.to_string())?;
    let with_pin = tpm::import_with(&tcti, &key, Some(&pin), None).map_err(|e| e.to_string())?;
    let with_policy =
        tpm::import_with(&tcti, &key, Some(&pin), Some(&pcrs)).map_err(|e| e.to_string())?;
    Ok(vec![
        ("password", plain.clone(), SessionMode::Password, None),
        ("salted", plain, SessionMode::Salted, None),
        (
            "salted+PIN",
            with_pin,
            SessionMode::Salted,
            Some(pin.clone()),
        ),
        (
            "PCR+PIN policy",
            with_policy,
            SessionMode::Salted,
            Some(pin),
        ),
    ])
}

/// Overwrites a key file before unlinking it (best effort on journaling or
/// copy-on-write file systems, where old blocks may survive).
#[cfg(feature = "tpm")]
fn shred(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let len = std::fs::metadata(path)?.len() as usize;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    std::fs::remove_file(path)
}
