//! `jwt-client enroll`: an invite line in, a configured client out
//! (docs/PROTOCOL.md §10). Also where that configuration lives, for `send`
//! and `proxy`, which read it when no --config is given.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use clap::ValueHint;
use http::Method;
use jose_binding::bundle::{Bundle, Trust, MAX_BUNDLE};
use jose_binding::client::{BoundConnection, ClientError, ClientSetup, HttpVersion, Target};
use jose_binding::invite::{Invite, Pin};
use jose_binding::private_file::{write_private, Existing};
use jose_binding::sealed;
use jose_binding::token::Layer;
use jose_binding::{b64, Form, RootKey, SoftwareRootKey};
use jose_binding_settings::ConfigFile;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::keys::{KeyArgs, TpmArgs};
use crate::ConnArgs;

/// The configuration's file in its directory.
pub(crate) const CONFIG: &str = "config.toml";
/// The root key's file in it (mode 0600), unless the key is in a TPM.
const KEY: &str = "client.key";
/// The pinned CA certificate, for a server whose invite pins its CA.
const CA: &str = "ca.pem";

/// Where the enrolled configuration is.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ConfigDir {
    /// Directory of the configuration `jwt-client enroll` writes and `send`
    /// and `proxy` read [default: /etc/jwt-client as root, else
    /// $XDG_CONFIG_HOME/jwt-client or ~/.config/jwt-client].
    #[arg(long, env = "JWT_CLIENT_CONFIG_DIR", value_hint = ValueHint::DirPath)]
    config_dir: Option<PathBuf>,
}

impl ConfigDir {
    /// The directory: --config-dir, else the default for this user.
    pub(crate) fn dir(&self) -> Result<PathBuf, String> {
        if let Some(d) = &self.config_dir {
            return Ok(d.clone());
        }
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        default_dir(is_root(), var("XDG_CONFIG_HOME"), var("HOME")).ok_or_else(|| {
            "no configuration directory: set HOME or XDG_CONFIG_HOME, or pass --config-dir DIR"
                .into()
        })
    }

    /// The enrolled configuration as a settings file, if there is one;
    /// its relative paths are relative to its directory.
    pub(crate) fn enrolled(&self) -> Result<Option<ConfigFile>, String> {
        let path = match self.dir() {
            Ok(d) => d.join(CONFIG),
            // No directory to look in: nothing enrolled, unless one was named.
            Err(_) if self.config_dir.is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        if !path.exists() {
            if self.config_dir.is_some() {
                return Err(format!(
                    "{} does not exist: enrol first with `jwt-client enroll <invite> --config-dir {}`",
                    path.display(),
                    path.parent().unwrap_or(Path::new(".")).display()
                ));
            }
            return Ok(None);
        }
        ConfigFile::read(&path)
            .map(ConfigFile::paths_relative_to_its_dir)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// `/etc/jwt-client` for root (a system service's client), else the XDG
/// base directory's `jwt-client`, else `~/.config/jwt-client`; a relative
/// XDG_CONFIG_HOME or HOME is ignored, as the XDG specification says.
fn default_dir(root: bool, xdg: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    if root {
        return Some(PathBuf::from("/etc/jwt-client"));
    }
    match (
        xdg.filter(|p| p.is_absolute()),
        home.filter(|p| p.is_absolute()),
    ) {
        (Some(x), _) => Some(x.join("jwt-client")),
        (None, Some(h)) => Some(h.join(".config/jwt-client")),
        (None, None) => None,
    }
}

/// Whether this process runs as root (the owner of /proc/self).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  jwt-client enroll jb1.AQ...                      # the line from `jwt-server keys invite NAME`
  jwt-client enroll - < client8.invite --config-dir /srv/app/jwt-client   # the line from a file
  jwt-client enroll jb1.AQ... --tpm-key /etc/jwt-client/client8.tpm.pem --tcti device:/dev/tpmrm0
  jwt-client enroll client9.bundle --identity ~/.config/age/key.txt   # offline, sealed with age")]
pub(crate) struct EnrollArgs {
    /// The invite line, `jb1.…`, as `jwt-server keys invite` printed it
    /// (it is checked before any connection: a typo is caught), or a bundle
    /// file from `jwt-server keys add NAME --bundle FILE`, installed
    /// without a connection; `-` reads either from stdin, which keeps the
    /// line out of the process list on a shared machine.
    #[arg(value_name = "INVITE|BUNDLE")]
    invite: String,
    /// The age identity file a sealed bundle is opened with (repeatable).
    #[arg(long = "identity", value_name = "FILE", env = "JWT_AGE_IDENTITY", value_hint = ValueHint::FilePath)]
    identities: Vec<PathBuf>,
    #[command(flatten)]
    dir: ConfigDir,
    /// Replace an existing configuration (and key) in the directory.
    #[arg(long)]
    force: bool,
    /// Put the root key into the TPM (through the salted session) and write
    /// its TPM key file here; the key is never written to disk.
    #[arg(long, value_name = "OUT", value_hint = ValueHint::FilePath)]
    tpm_key: Option<PathBuf>,
    #[command(flatten)]
    tpm: TpmArgs,
    #[command(flatten)]
    tpm_policy: crate::keys::TpmPolicyArgs,
    /// Print what was done as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// What the server answers, decrypted.
#[derive(Deserialize)]
struct Answer {
    client_id: String,
    root_key: Zeroizing<String>,
    audience: String,
    forms: Vec<String>,
    /// The URL to use from now on, when not the one enrolled at.
    #[serde(default)]
    server: Option<String>,
}

pub(crate) async fn run(a: EnrollArgs) -> Result<ExitCode, String> {
    let source = Source::read(&a)?;
    let id = match &source {
        Source::Invite(i) => i.client_id.clone(),
        Source::Bundle(b) => b.client_id.clone(),
    };
    let dir = a.dir.dir()?;
    let config = dir.join(CONFIG);
    if config.exists() && !a.force {
        return Err(format!(
            "{} exists: this machine is enrolled already; pass --force to replace it, or --config-dir DIR for another (nothing was sent)",
            config.display()
        ));
    }
    prepare_dir(&dir)?;
    #[cfg(not(feature = "tpm"))]
    if a.tpm_key.is_some() {
        return Err("this jwt-client was built without TPM support; rebuild with `--features tpm` (needs libtss2-dev), or enrol without --tpm-key (nothing was sent)".into());
    }
    // The PIN is asked (and the PCR selection checked) before the server
    // hands out a key that a mistyped PIN would lose.
    #[cfg(feature = "tpm")]
    let tpm_inputs = match &a.tpm_key {
        Some(_) => Some(crate::keys::policy_inputs(&a.tpm, &a.tpm_policy)?),
        None if a.tpm_policy.pin || a.tpm_policy.pcr_policy.is_some() => {
            return Err("--pin and --pcr-policy are for a key in the TPM: add --tpm-key FILE (nothing was sent)".into())
        }
        None => None,
    };
    #[cfg(not(feature = "tpm"))]
    let tpm_inputs: Option<()> = None;
    let (received, online) = match source {
        Source::Invite(invite) => (receive(&a, &invite).await?, true),
        Source::Bundle(b) => (*b, false),
    };
    let fp = RootKey::fingerprint(&received.root_key);

    // The key and the configuration.
    let key_setting = match &a.tpm_key {
        Some(out) => import_to_tpm(&received.root_key, out, &a.tpm, tpm_inputs)?,
        None => {
            write_private(&dir.join(KEY), received.root_key.to_key_file().as_bytes(), Existing::Replace)
                .map_err(|e| {
                    format!(
                        "{id}'s key (fp={fp}) could not be written to {} ({e}): ask the operator to `keys rotate {id}`",
                        dir.join(KEY).display()
                    )
                })?;
            KeySetting::File
        }
    };
    let trust = match &received.trust {
        Trust::CaCertificate(der) => {
            std::fs::write(dir.join(CA), pem(der))
                .map_err(|e| format!("cannot write {}: {e}", dir.join(CA).display()))?;
            Pinned::Ca
        }
        Trust::ServerKey(d) => Pinned::KeyPin(format!("sha256:{}", b64::encode(d))),
    };
    let text = config_text(&received, &trust, &key_setting, &a.tpm);
    write_private(&config, text.as_bytes(), Existing::Replace)
        .map_err(|e| format!("cannot write {}: {e}", config.display()))?;

    // One ordinary bound request with the new key, as `send` makes it; a
    // bundle is installed where the server may not be reachable yet.
    let proof = match online {
        true => {
            Some(check_new_key(&conn_args(&dir, &received, &trust, &key_setting, &a.tpm)).await)
        }
        false => None,
    };
    let stored = match &key_setting {
        KeySetting::File => format!("{} (mode 0600)", dir.join(KEY).display()),
        KeySetting::Tpm(p) => format!("the TPM ({}, key never on disk)", p.display()),
    };
    if a.json {
        let mut stdout = std::io::stdout();
        let _ = writeln!(
            stdout,
            "{}",
            json!({
                "client_id": id.as_str(),
                "server": received.server,
                "key_fingerprint": fp.to_string(),
                "key": match &key_setting { KeySetting::File => "file", KeySetting::Tpm(_) => "tpm" },
                "config": config.display().to_string(),
                "form": received.form.as_str(),
                "audience": received.audience,
                "proof": match &proof { None => "not_checked", Some(Ok(_)) => "accepted", Some(Err(_)) => "refused" },
            })
        );
    } else {
        let what = if online {
            "enrolled as"
        } else {
            "installed the bundle for"
        };
        eprintln!("{what} {id}: root key fp={fp} stored in {stored}");
        eprintln!(
            "configuration: {} (server {}, {}, client id, form {})",
            config.display(),
            received.server,
            match &trust {
                Pinned::Ca => "pinned CA certificate",
                Pinned::KeyPin(_) => "pinned server key",
            },
            received.form.as_str()
        );
    }
    match proof {
        Some(Ok(ekm)) => {
            if !a.json {
                eprintln!("checked: a bound request with the new key was accepted (ekm fp={ekm})");
                eprintln!("next: `jwt-client send` or `jwt-client proxy` (no flags needed)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Err(e)) => Err(format!(
            "enrolled and configured, but a request with the new key failed: {e}"
        )),
        None => {
            if !a.json {
                eprintln!("not checked against the server (a bundle needs no connection); delete the bundle file now: it holds the key");
                eprintln!("next: `jwt-client send` or `jwt-client proxy` once the server is reachable (no flags needed)");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `enroll` was given: an invite line, or a bundle file (opened).
enum Source {
    Invite(Invite),
    Bundle(Box<Bundle>),
}

impl Source {
    fn read(a: &EnrollArgs) -> Result<Source, String> {
        let arg = a.invite.trim();
        let path = Path::new(arg);
        // Stdin keeps the line out of the process list, where other users
        // see arguments. Bounded: a bundle is a few KiB.
        let bound = 4 * MAX_BUNDLE as u64 + 1;
        let (text, origin) = if arg == "-" {
            let bytes = crate::keys::read_at_most(std::io::stdin(), bound)
                .map_err(|e| format!("stdin: {e}"))?;
            (bytes, "stdin".to_owned())
        } else if arg.starts_with(jose_binding::invite::PREFIX) || !path.is_file() {
            return Source::invite(arg);
        } else {
            let bytes = std::fs::File::open(path)
                .and_then(|f| crate::keys::read_at_most(f, bound))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            (bytes, path.display().to_string())
        };
        if text.len() > 4 * MAX_BUNDLE {
            return Err(format!("{origin}: not a bundle (too large)"));
        }
        let text = std::str::from_utf8(&text)
            .map_err(|_| format!("{origin}: neither an invite line nor a bundle (not text)"))?;
        if text.trim().starts_with(jose_binding::invite::PREFIX) {
            return Source::invite(text.trim());
        }
        let body: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let plain = if sealed::is_armored(&body) {
            if a.identities.is_empty() {
                return Err(format!("{origin} is sealed with age: give the age identity it is sealed to with --identity FILE"));
            }
            let ids = sealed::read_identities(&a.identities).map_err(|e| e.to_string())?;
            let plain =
                sealed::open(&body, &ids, MAX_BUNDLE).map_err(|e| format!("{origin}: {e}"))?;
            Zeroizing::new(
                String::from_utf8(plain.to_vec())
                    .map_err(|_| format!("{origin}: the sealed bundle is not text"))?,
            )
        } else {
            Zeroizing::new(text.to_owned())
        };
        let bundle = Bundle::parse(&plain).map_err(|e| format!("{origin}: {e}"))?;
        Ok(Source::Bundle(Box::new(bundle)))
    }

    /// An invite line, checked; one long past its expiry is refused here.
    fn invite(line: &str) -> Result<Source, String> {
        let invite = Invite::parse(line).map_err(|e| match e {
            // Not echoed: what was pasted may be a key.
            jose_binding::invite::InviteError::Prefix => {
                "that is neither an invite line (jb1.…) nor a bundle file; pass the line `jwt-server keys invite` printed, a bundle file, or - to read either from stdin (nothing was sent)".to_owned()
            }
            e => format!("{e} (nothing was sent)"),
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Past its expiry by more than a clock's drift: the server would refuse it.
        if now > invite.expires.saturating_add(300) {
            return Err(format!(
                "the invite for {} expired at {}; ask the operator for a new one (nothing was sent)",
                invite.client_id,
                rfc3339(invite.expires)
            ));
        }
        Ok(Source::Invite(invite))
    }
}

/// Steps 1 and 2 of §10: the server by its pin, the proof, the answer.
async fn receive(a: &EnrollArgs, invite: &Invite) -> Result<Bundle, String> {
    let id = invite.client_id.clone();
    let target = Target::parse(&invite.url).map_err(|e| e.to_string())?;
    let secret = SoftwareRootKey::new(&invite.secret[..]).map_err(|e| e.to_string())?;
    let (setup, matched) =
        ClientSetup::pinned(invite.pin, HttpVersion::Http1, id.clone(), Arc::new(secret))
            .map_err(|e| e.to_string())?;
    let mut conn = match BoundConnection::connect(&target, &setup).await {
        Ok(c) => c,
        Err(ClientError::Handshake { source, .. }) => {
            return Err(format!(
                "the server at {} is not the one the invite names ({source}); nothing was sent",
                invite.url
            ))
        }
        Err(e) => return Err(format!("cannot reach {}: {e}", invite.url)),
    };
    let anchor = matched
        .certificate()
        .ok_or("the TLS handshake matched no certificate")?;
    if !a.json {
        eprintln!(
            "connected to {} (TLS 1.3): it matches the invite's pin ({}); ekm fp={}",
            invite.url,
            invite.pin,
            conn.fingerprints().0
        );
    }
    // A token bound to this connection, keyed by the invite's secret.
    let (status, body) = prove(&mut conn).await?;
    let answer = match status {
        200 => open_answer(&conn, &body)?,
        403 => return Err(format!("the server refused the invite: {}", message(&body))),
        404 | 405 => return Err(format!("{} does not serve enrolment: the operator must start jwt-server with --enroll", invite.url)),
        429 => return Err("the server refuses more enrolment attempts from this address for now; wait a few seconds and run the command again".into()),
        401 => return Err(format!("the server refused the invite's proof ({}); ask the operator for a new invite", message(&body))),
        s => return Err(format!("the server answered {s}: {}", message(&body))),
    };
    if answer.client_id != id.as_str() {
        return Err(format!(
            "the server enrolled {:?}, not {id}: refusing its answer",
            answer.client_id
        ));
    }
    let root_key = SoftwareRootKey::from_b64url(&answer.root_key)
        .map_err(|e| format!("the server's answer holds no valid key ({e})"))?;
    let form = Form::ALL
        .into_iter()
        .find(|f| answer.forms.iter().any(|a| a == f.as_str()))
        .unwrap_or(Form::Signed);
    let server = match answer.server {
        Some(url) if jose_binding::invite::is_origin(&url) => url,
        Some(_) => {
            return Err("the server's answer names a URL that is not https://HOST[:PORT]".into())
        }
        None => invite.url.clone(),
    };
    Ok(Bundle {
        server,
        client_id: id,
        audience: answer.audience,
        form,
        trust: match invite.pin {
            Pin::CaCertificate(_) => Trust::CaCertificate(anchor.to_vec()),
            Pin::ServerKey(d) => Trust::ServerKey(d),
        },
        root_key,
    })
}

/// The settings `send` would read from the configuration just written.
fn conn_args(
    dir: &Path,
    b: &Bundle,
    trust: &Pinned,
    key: &KeySetting,
    tpm: &TpmArgs,
) -> (ConnArgs, String) {
    let args = ConnArgs {
        server: b.server.clone(),
        ca: dir.join(CA),
        server_key_pin: match trust {
            Pinned::KeyPin(p) => Some(p.clone()),
            Pinned::Ca => None,
        },
        client_id: Some(b.client_id.to_string()),
        key: match key {
            KeySetting::File => KeyArgs {
                key_file: Some(dir.join(KEY)),
                tpm_key: None,
                tpm: tpm.clone(),
            },
            KeySetting::Tpm(p) => KeyArgs {
                key_file: None,
                tpm_key: Some(p.clone()),
                tpm: tpm.clone(),
            },
        },
    };
    (args, b.audience.clone())
}

/// `POST /v1/enroll` with a fresh token in each form until one is accepted
/// as a form (a server may accept only some).
async fn prove(conn: &mut BoundConnection) -> Result<(u16, Vec<u8>), String> {
    let mut last = (0, Vec::new());
    for form in Form::ALL {
        let token = conn.token(form, &json!({})).map_err(|e| e.to_string())?;
        let reply = conn
            .request(Method::POST, "/v1/enroll", Some(&token))
            .await
            .map_err(|e| format!("the enrolment request failed: {e}"))?;
        let form_refused = reply.status == 401
            && reply
                .error_code()
                .is_some_and(|c| c == jose_binding::ErrorCode::FormNotAllowed);
        last = (reply.status, reply.body.to_vec());
        if !form_refused {
            break;
        }
    }
    Ok(last)
}

/// The answer's JWE, opened with this connection's encryption subkey.
fn open_answer(conn: &BoundConnection, body: &[u8]) -> Result<Answer, String> {
    let bad = || {
        "the server's answer does not open with this connection's key: not a server of this protocol".to_owned()
    };
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let layer = Layer::parse(text.trim()).map_err(|_| bad())?;
    let plain = Zeroizing::new(
        layer
            .decrypt(&conn.issuer().subkeys().enc)
            .ok_or_else(bad)?,
    );
    serde_json::from_slice(&plain).map_err(|_| bad())
}

async fn check_new_key((args, audience): &(ConnArgs, String)) -> Result<String, String> {
    let (target, mut setup) = args.setup(crate::Http::Auto).await?;
    setup.audience = Some(audience.clone());
    let mut conn = BoundConnection::connect(&target, &setup)
        .await
        .map_err(|e| e.to_string())?;
    // A replica other than the enrolling one reads the new client from the
    // shared keystore within 2 s: until then it does not know it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let token = conn
            .token(Form::Signed, &json!({}))
            .map_err(|e| e.to_string())?;
        let reply = conn
            .request(Method::GET, "/v1/enroll", Some(&token))
            .await
            .map_err(|e| e.to_string())?;
        let unknown = reply.error_code() == Some(jose_binding::ErrorCode::UnknownClient);
        match reply.status {
            200 => return Ok(conn.fingerprints().0.to_string()),
            401 if unknown && std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            s => return Err(format!("{s} {}", message(&reply.body))),
        }
    }
}

enum KeySetting {
    File,
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    Tpm(PathBuf),
}

/// How the configuration recognises the server.
enum Pinned {
    Ca,
    KeyPin(String),
}

/// The configuration `send` and `proxy` read: each line a setting's key.
fn config_text(b: &Bundle, trust: &Pinned, key: &KeySetting, tpm: &TpmArgs) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut out = format!(
        "# Written by `jwt-client enroll`; `send` and `proxy` read it. A flag or\n\
         # environment variable overrides a line. Relative paths are relative to\n\
         # this directory.\nserver = {}\nclient_id = {}\naudience = {}\nform = {}\n",
        q(&b.server),
        q(b.client_id.as_str()),
        q(&b.audience),
        q(b.form.as_str())
    );
    match trust {
        Pinned::Ca => out.push_str(&format!("ca = {}\n", q(CA))),
        Pinned::KeyPin(p) => out.push_str(&format!("server_key_pin = {}\n", q(p))),
    }
    match key {
        KeySetting::File => out.push_str(&format!("key_file = {}\n", q(KEY))),
        KeySetting::Tpm(p) => {
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            out.push_str(&format!("tpm_key = {}\n", q(&p.to_string_lossy())));
            if let Some(t) = &tpm.tcti {
                out.push_str(&format!("tcti = {}\n", q(t)));
            }
            if let Some(f) = &tpm.tpm_pin_file {
                let f = std::path::absolute(f).unwrap_or_else(|_| f.clone());
                out.push_str(&format!("tpm_pin_file = {}\n", q(&f.to_string_lossy())));
            }
        }
    }
    out
}

/// Creates the directory (mode 0700) and checks a file can be written in
/// it, before the server hands out a key that would otherwise be lost.
fn prepare_dir(dir: &Path) -> Result<(), String> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| format!("cannot create {}: {e} (nothing was sent)", dir.display()))?;
    let probe = dir.join(format!(".enroll-probe-{}", std::process::id()));
    write_private(&probe, b"", Existing::Replace)
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| format!("cannot write in {}: {e} (nothing was sent)", dir.display()))
}

#[cfg(feature = "tpm")]
fn import_to_tpm(
    key: &SoftwareRootKey,
    out: &Path,
    args: &TpmArgs,
    inputs: Option<(
        Option<jose_binding::tpm::Pin>,
        Option<jose_binding::tpm::PcrSpec>,
    )>,
) -> Result<KeySetting, String> {
    let fail = |e: String| {
        format!("the server enrolled this client, but the TPM import failed ({e}); the key was not written anywhere: ask the operator to `keys remove` the client and invite it again")
    };
    let file = crate::keys::import_key(key, args, inputs.unwrap_or_default()).map_err(fail)?;
    let pem = file.to_pem().map_err(|e| fail(e.to_string()))?;
    std::fs::write(out, pem).map_err(|e| fail(format!("{}: {e}", out.display())))?;
    Ok(KeySetting::Tpm(out.to_owned()))
}

#[cfg(not(feature = "tpm"))]
fn import_to_tpm(
    _: &SoftwareRootKey,
    _: &Path,
    _: &TpmArgs,
    _: Option<()>,
) -> Result<KeySetting, String> {
    Err("this jwt-client was built without TPM support".into())
}

/// `sha256:<base64url of 32 bytes>`, as `--server-key-pin` takes it.
pub(crate) fn parse_key_pin(pin: &str) -> Result<[u8; 32], String> {
    pin.strip_prefix("sha256:")
        .and_then(b64::decode)
        .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
        .ok_or_else(|| "--server-key-pin must be sha256:<base64url of 32 bytes>".to_owned())
}

/// The `message` of a JSON error body, else the body as text: at most 200
/// characters, control characters (a terminal's escape sequences) dropped.
fn message(body: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = match v.as_ref().and_then(|v| v.get("message").or(v.get("error"))) {
        Some(serde_json::Value::String(m)) => m.clone(),
        _ => String::from_utf8_lossy(&body[..body.len().min(800)]).into_owned(),
    };
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn pem(cert: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's message reaches the terminal without its escape
    /// sequences, and bounded.
    #[test]
    fn server_messages_are_printed_without_control_characters() {
        let body = br#"{"error":"x","message":"bad \u001b[31mred\u001b[0m\nline"}"#;
        assert_eq!(message(body), "bad [31mred[0mline");
        let long = vec![b'a'; 5000];
        assert_eq!(message(&long).len(), 200);
        assert_eq!(message(b"\x07plain\x1b"), "plain");
    }

    #[test]
    fn the_default_directory_follows_xdg_and_root() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(default_dir(true, p("/x"), p("/h")), p("/etc/jwt-client"));
        assert_eq!(default_dir(false, p("/x"), p("/h")), p("/x/jwt-client"));
        assert_eq!(
            default_dir(false, None, p("/h")),
            p("/h/.config/jwt-client")
        );
        assert_eq!(
            default_dir(false, p("rel"), p("/h")),
            p("/h/.config/jwt-client")
        );
        assert_eq!(default_dir(false, None, p("rel")), None);
    }
}
