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
    /// TPM bus) or password (faster, PRK in clear on the bus).
    #[arg(long, env = "JWT_TPM_SESSION", default_value = "salted")]
    pub tpm_session: String,
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
        TpmRootKey::open(&args.tcti(), file, mode)
            .map(|k| Arc::new(k) as Arc<dyn RootKey>)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
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
    },
    /// Time the per-connection TPM HMAC in both session modes, side by side.
    Bench {
        #[arg(long, env = "JWT_TPM_KEY")]
        tpm_key: PathBuf,
        /// HMACs per mode.
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
    use jose_binding::tpm::{self, SessionMode, TpmKeyFile, TpmRootKey};
    use jose_binding::Ekm;
    match cmd {
        TpmCommand::Import {
            key_file,
            out,
            delete_key_file,
            tpm: args,
        } => {
            let key = SoftwareRootKey::from_file(&key_file)
                .map_err(|e| format!("--key-file {}: {e}", key_file.display()))?;
            let tcti = args.tcti();
            let file = tpm::import(&tcti, &key).map_err(|e| e.to_string())?;
            // Prove the new object works before anything is deleted.
            let loaded = TpmRootKey::open(&tcti, file.clone(), SessionMode::Salted)
                .map_err(|e| e.to_string())?;
            let probe = Ekm::from_bytes([0x5a; 32]);
            let same = loaded.prk(&probe).map_err(|e| e.to_string())?.expose()
                == key.compute_prk(&probe).expose();
            if !same {
                return Err("the TPM key does not reproduce the file key; nothing deleted".into());
            }
            std::fs::write(&out, file.to_pem().map_err(|e| e.to_string())?)
                .map_err(|e| format!("--out {}: {e}", out.display()))?;
            eprintln!(
                "imported into the TPM at {tcti}: key fp={} -> {} (TPM object fp={}, fixedTPM|fixedParent)",
                RootKey::fingerprint(&key),
                out.display(),
                file.fingerprint()
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
            let file = TpmKeyFile::load(&tpm_key).map_err(|e| e.to_string())?;
            let tcti = args.tcti();
            let mut rows = Vec::new();
            for mode in [SessionMode::Password, SessionMode::Salted] {
                let key = TpmRootKey::open(&tcti, file.clone(), mode).map_err(|e| e.to_string())?;
                let mut times = Vec::with_capacity(count);
                for i in 0..count.max(1) {
                    let ekm = Ekm::from_bytes([(i % 251) as u8; 32]);
                    let t = std::time::Instant::now();
                    key.prk(&ekm).map_err(|e| e.to_string())?;
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    if !json && i % 50 == 0 {
                        eprint!("\r{mode:?}: {i}/{count}");
                    }
                }
                times.sort_by(f64::total_cmp);
                let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
                rows.push((mode, q(0.5), q(0.99)));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(m, p50, p99)| serde_json::json!({"session": format!("{m:?}").to_lowercase(), "p50_ms": p50, "p99_ms": p99, "count": count}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v));
            } else {
                eprintln!("\r{tcti}: {count} TPM2_HMAC per mode");
                for (m, p50, p99) in &rows {
                    outln!(
                        "{:<9} p50 {p50:.3} ms   p99 {p99:.3} ms",
                        format!("{m:?}").to_lowercase()
                    );
                }
                if let [(_, pw, _), (_, salted, _)] = rows.as_slice() {
                    outln!("salted / password (p50): {:.1}x", salted / pw);
                }
            }
            Ok(())
        }
    }
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
