//! The subcommands: gather inputs, derive keys, decode, judge, and build
//! the [`crate::report`] that is printed (or serialized with `--json`).

use std::io::Read;
use std::path::Path;

use jose_binding::{ClientId, Ekm, FormSet, Keystore, Policy, SoftwareRootKey, SubKeys};
use zeroize::Zeroizing;

use crate::checks::{self, ClaimRules};
use crate::cli::{DecodeArgs, DeriveArgs, JoseKeyArgs, KeyArgs, PolicyArgs};
use crate::inspect::{self, Cleaned, DecodeKeys, Decoded, InputError};
use crate::keylog::{self, KeyLog};
use crate::keyring::KeyRing;
use crate::keys::{read_key, to_32, KeyError};
use crate::report::{
    Checks, ConnectionReport, DecodeReport, DeriveReport, InputReport, JoseKeyReport, KeylogReport,
    KeysReport, Mode, PolicyReport, Schedule, ScheduleSecrets,
};
use crate::time::{parse_time, rfc3339};
use crate::verdict::{self, Verdict, VerdictKeys};

/// Largest token input read (a token over 16384 characters is refused anyway).
pub const MAX_INPUT: u64 = 1 << 20;
/// Largest key log read.
pub const MAX_KEYLOG: u64 = 64 << 20;

/// A usage error: exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Msg(String),
}

fn usage(msg: impl Into<String>) -> UsageError {
    UsageError::Msg(msg.into())
}

// ---------------------------------------------------------------------------
// Key schedule
// ---------------------------------------------------------------------------

fn run_schedule(
    client_id: &ClientId,
    index: usize,
    root: &SoftwareRootKey,
    ekm: &Ekm,
    connection: Option<String>,
    show: bool,
) -> (Schedule, SubKeys) {
    let prk = root.compute_prk(ekm);
    let keys = SubKeys::expand(&prk, client_id);
    let schedule = Schedule {
        client_id: client_id.as_str().to_owned(),
        root_key_index: index,
        root_key_fp: jose_binding::RootKey::fingerprint(root).to_string(),
        root_key_bytes: root.expose().len(),
        connection,
        ekm_fp: ekm.fingerprint().to_string(),
        prk_fp: prk.fingerprint().to_string(),
        sig_key_fp: keys.sig.fingerprint().to_string(),
        enc_key_fp: keys.enc.fingerprint().to_string(),
        secrets: show.then(|| ScheduleSecrets {
            ekm_hex: hex::encode(ekm.expose()),
            prk_hex: hex::encode(prk.expose()),
            sig_key_hex: hex::encode(keys.sig.expose()),
            enc_key_hex: hex::encode(keys.enc.expose()),
        }),
    };
    (schedule, keys)
}

// ---------------------------------------------------------------------------
// Key log
// ---------------------------------------------------------------------------

fn read_keylog(path: &Path) -> Result<KeyLog, UsageError> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| usage(format!("--keylog: cannot read {shown}: {e}")))?;
    if meta.len() > MAX_KEYLOG {
        return Err(usage(format!("--keylog: {shown} is larger than 64 MiB")));
    }
    let bytes = Zeroizing::new(
        std::fs::read(path).map_err(|e| usage(format!("--keylog: cannot read {shown}: {e}")))?,
    );
    // A key log is ASCII; anything else on a line makes that line unusable.
    let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
    Ok(keylog::parse(&text))
}

fn keylog_report(path: &Path, log: &KeyLog, show: bool) -> KeylogReport {
    KeylogReport {
        file: path.display().to_string(),
        connections: log
            .connections
            .iter()
            .enumerate()
            .map(|(i, c)| ConnectionReport {
                index: i + 1,
                line: c.line,
                client_random: c.client_random_hex(),
                hash: c.hash.name(),
                ekm_fp: c.ekm.fingerprint().to_string(),
                ekm_hex: show.then(|| hex::encode(c.ekm.expose())),
                opens_token: None,
                root_key_index: None,
            })
            .collect(),
        other_lines: log.other_lines,
        tls12_lines: log.tls12_lines,
        skipped: log.skipped.clone(),
        matched: None,
    }
}

// ---------------------------------------------------------------------------
// Inputs shared by decode and derive
// ---------------------------------------------------------------------------

/// Where root keys come from.
struct Roots {
    /// The keystore the verdict uses (the one given, or one built from --root-key).
    keystore: Keystore,
    client_id: ClientId,
    client_id_from: &'static str,
    /// The client's keys, current first (empty when the keystore lacks the client).
    keys: Vec<SoftwareRootKey>,
    from: String,
}

enum EkmSource {
    Given(Ekm),
    Keylog(std::path::PathBuf, KeyLog),
}

fn read_ekm(text: &str) -> Result<Ekm, UsageError> {
    let bytes = read_key("--ekm", text)?;
    let arr = to_32(&bytes).ok_or_else(|| {
        usage(format!(
            "--ekm: the EKM is 32 bytes (64 hex digits), got {} bytes",
            bytes.len()
        ))
    })?;
    Ok(Ekm::from_bytes(arr))
}

fn ekm_source(args: &KeyArgs) -> Result<Option<EkmSource>, UsageError> {
    match (&args.ekm, &args.keylog) {
        (Some(_), Some(_)) => Err(usage(
            "give --ekm or --keylog, not both (either may come from JOSE_DEBUG_EKM / JOSE_DEBUG_KEYLOG)",
        )),
        (Some(e), None) => Ok(Some(EkmSource::Given(read_ekm(e)?))),
        (None, Some(p)) => Ok(Some(EkmSource::Keylog(p.clone(), read_keylog(p)?))),
        (None, None) => Ok(None),
    }
}

fn parse_client_id(text: &str) -> Result<ClientId, UsageError> {
    ClientId::new(text).map_err(|_| {
        usage(format!(
            "--client-id {text:?}: must be 1-64 characters of [A-Za-z0-9._-]"
        ))
    })
}

/// Root keys from --root-key or --keystore, for `client` (else the kid).
fn roots(args: &KeyArgs, kid: Option<&str>) -> Result<Option<Roots>, UsageError> {
    if args.root_key.is_none() && args.keystore.is_none() {
        return Ok(None);
    }
    if args.root_key.is_some() && args.keystore.is_some() {
        return Err(usage(
            "give --root-key or --keystore, not both (either may come from JOSE_DEBUG_ROOT_KEY / JOSE_DEBUG_KEYSTORE)",
        ));
    }
    let (client_id, client_id_from) = match (&args.client_id, kid) {
        (Some(id), _) => (parse_client_id(id)?, "--client-id"),
        (None, Some(kid)) => match ClientId::new(kid) {
            Ok(id) => (id, "the token's kid"),
            Err(_) => {
                return Err(usage(
                    "the token's kid is not a valid client id: give --client-id to derive keys",
                ))
            }
        },
        (None, None) => {
            return Err(usage(
                "give --client-id (the token has no kid to take it from)",
            ))
        }
    };
    if let Some(text) = &args.root_key {
        let bytes = read_key("--root-key", text)?;
        let key = SoftwareRootKey::new(&bytes).map_err(|e| usage(format!("--root-key: {e}")))?;
        let mut keystore = Keystore::default();
        keystore.set(client_id.clone(), vec![key.clone()]);
        return Ok(Some(Roots {
            keystore,
            client_id,
            client_id_from,
            keys: vec![key],
            from: "--root-key".to_owned(),
        }));
    }
    let path = args.keystore.as_deref().unwrap_or(Path::new(""));
    let keystore = Keystore::load(path).map_err(|e| usage(format!("--keystore: {e}")))?;
    let keys = keystore
        .get(client_id.as_str())
        .map(|c| c.keys.clone())
        .unwrap_or_default();
    Ok(Some(Roots {
        keystore,
        client_id,
        client_id_from,
        keys,
        from: format!("--keystore {}", path.display()),
    }))
}

/// The audience the protocol's server expects when --audience is not given.
const DEFAULT_AUDIENCE: &str = "localhost";

fn policy(args: &PolicyArgs) -> Policy {
    let mut p = Policy::default();
    p.audience = args
        .audience
        .clone()
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
    p.forms = match &args.forms {
        Some(list) => list.iter().copied().collect(),
        None => FormSet::ALL,
    };
    p.skew_secs = args.skew_secs;
    p.max_ttl_secs = args.max_ttl_secs;
    p
}

fn now(args: &PolicyArgs) -> Result<(f64, bool), UsageError> {
    match &args.now {
        Some(t) => parse_time(t).map(|n| (n, true)).ok_or_else(|| {
            usage(format!(
                "--now {t:?}: expected seconds since the epoch or RFC 3339 (2026-01-01T00:00:00Z)"
            ))
        }),
        None => Ok((jose_binding::token::unix_now(), false)),
    }
}

// ---------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------

/// `jose-debug decode`: the report and whether the token is valid.
pub fn decode(args: &DecodeArgs) -> Result<DecodeReport, UsageError> {
    let policy = policy(&args.policy);
    let (now, now_given) = now(&args.policy)?;
    let policy_report = policy_report(&policy, now, now_given);
    let raw = read_input(args.token.as_deref())?;
    check_key_flags(&args.keys)?;
    let cleaned = match inspect::clean(&raw) {
        Ok(cleaned) => cleaned,
        Err(InputError::Empty) => return Err(usage("no token given (the input is empty)")),
        Err(e @ InputError::NotUtf8(_)) => {
            return Ok(not_text_report(
                raw.len(),
                &e,
                policy_report,
                is_generic(args),
            ))
        }
    };
    let token = cleaned.token.as_str();
    let mut keys = choose_keys(args, token, now)?;
    add_jose_keys(&args.jose, &mut keys)?;
    let verdict = protocol_verdict(token, &keys, &policy, now);
    let decoded = inspect::decode(token, &keys.decode, now);
    let checks = if is_generic(args) {
        let rules = ClaimRules {
            now,
            skew_secs: policy.skew_secs as f64,
            audience: args.policy.audience.as_deref(),
            strict: args.strict,
        };
        checks::generic(&decoded, &rules)
    } else {
        checks::protocol(&decoded, &verdict, args.strict)
    };
    Ok(assemble(
        cleaned,
        keys,
        decoded,
        verdict,
        policy_report,
        checks,
    ))
}

/// Plain JOSE's rules: asked for, or implied by keys this protocol never
/// uses (a token checked with `--key` is no bound token).
fn is_generic(args: &DecodeArgs) -> bool {
    args.generic || !args.jose.key.is_empty() || args.jose.password_file.is_some()
}

/// `--key`, `--password-file` and `--payload`, beside whatever else opens the layers.
fn add_jose_keys(args: &JoseKeyArgs, keys: &mut ChosenKeys) -> Result<(), UsageError> {
    keys.decode.ring = KeyRing::read(&args.key).map_err(|e| usage(e.to_string()))?;
    for k in &keys.decode.ring.keys {
        keys.report.jose_keys.push(JoseKeyReport {
            source: k.source.clone(),
            kid: k.kid.clone(),
            kind: k.kind.describe(),
            fp: k.fp.clone(),
        });
    }
    if let Some(path) = &args.password_file {
        let text = crate::keys::read_text_file("--password-file", path)
            .map_err(|e| usage(e.to_string()))?;
        // A password file's one line, without its line break.
        let trimmed = text.strip_suffix('\n').unwrap_or(&text);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Err(usage(format!("--password-file {}: empty", path.display())));
        }
        // No fingerprint or length: either would help guess the password.
        keys.report
            .notes
            .push(format!("PBES2 password from {}", path.display()));
        keys.decode.password = Some(Zeroizing::new(trimmed.as_bytes().to_vec()));
    }
    if let Some(path) = &args.payload {
        let buf = read_at_most_input(path)
            .map_err(|e| usage(format!("--payload: cannot read {}: {e}", path.display())))?;
        if buf.len() as u64 > MAX_INPUT {
            return Err(usage("--payload: larger than 1 MiB"));
        }
        keys.decode.detached_payload = Some(buf);
    }
    Ok(())
}

fn policy_report(policy: &Policy, now: f64, now_given: bool) -> PolicyReport {
    PolicyReport {
        audience: policy.audience.clone(),
        forms: policy.forms.iter().map(|f| f.as_str()).collect(),
        skew_secs: policy.skew_secs,
        max_ttl_secs: policy.max_ttl_secs,
        now,
        now_rfc3339: rfc3339(now),
        now_given,
    }
}

/// A file's first [`MAX_INPUT`] + 1 bytes: one more than a caller accepts,
/// so that it can tell a file that is too large.
fn read_at_most_input(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn read_input(arg: Option<&str>) -> Result<Vec<u8>, UsageError> {
    let mut buf = Vec::new();
    match arg {
        None | Some("-") => {
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut buf)
                .map_err(|e| usage(format!("cannot read standard input: {e}")))?;
        }
        Some(a) if a.starts_with('@') => {
            let path = Path::new(&a[1..]);
            buf = read_at_most_input(path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        }
        Some(a) => buf.extend_from_slice(a.as_bytes()),
    }
    if buf.len() as u64 > MAX_INPUT {
        return Err(usage("the input is larger than 1 MiB; that is no token"));
    }
    Ok(buf)
}

/// Whether --sig-key or --enc-key is given: such keys are used as they are.
fn gives_subkeys(keys: &KeyArgs) -> bool {
    keys.sig_key.is_some() || keys.enc_key.is_some()
}

/// Refuses key flags that cannot work together, before the token is looked at.
fn check_key_flags(keys: &KeyArgs) -> Result<(), UsageError> {
    let explicit = gives_subkeys(keys);
    let rooted = keys.root_key.is_some() || keys.keystore.is_some();
    if explicit && rooted {
        return Err(usage(
            "give --sig-key/--enc-key or --root-key/--keystore, not both \
             (they may come from JOSE_DEBUG_* variables)",
        ));
    }
    if keys.ekm.is_some() && !rooted {
        return Err(usage("--ekm needs --root-key or --keystore"));
    }
    if rooted && keys.ekm.is_none() && keys.keylog.is_none() {
        return Err(usage(
            "--root-key/--keystore need the connection: --ekm HEX or --keylog FILE",
        ));
    }
    Ok(())
}

/// Input that is not text is no token: nothing to decode, and the server's
/// HTTP layer refuses it before any JOSE check.
fn not_text_report(
    len: usize,
    error: &InputError,
    policy: PolicyReport,
    generic: bool,
) -> DecodeReport {
    DecodeReport {
        input: InputReport {
            chars: len,
            notes: Vec::new(),
            error: Some(error.to_string()),
        },
        keys: KeysReport::none(),
        keylog: None,
        token: None,
        verdict: Verdict::not_text(),
        policy,
        checks: checks::not_text(if generic {
            Mode::Generic
        } else {
            Mode::Protocol
        }),
        valid: false,
    }
}

/// The keys a decode runs with, and how they were found.
struct ChosenKeys {
    report: KeysReport,
    keylog: Option<KeylogReport>,
    /// What the layers are opened with.
    decode: DecodeKeys,
    verdict_on: VerdictOn,
    /// Said with the verdict when it could not be computed on the token's own connection.
    verdict_note: Option<String>,
}

/// What the server's verdict is computed with.
enum VerdictOn {
    /// The sub keys given on the command line (the decode keys).
    GivenSubkeys { client_id: Option<ClientId> },
    /// No key: the verdict says which one is missing.
    Client { client_id: Option<ClientId> },
    /// The server's own situation: a connection's EKM and the root keys.
    Connection { ekm: Ekm, keystore: Keystore },
}

/// Sub keys given (--sig-key/--enc-key), derived (--root-key/--keystore and
/// the connection), or none.
fn choose_keys(args: &DecodeArgs, token: &str, now: f64) -> Result<ChosenKeys, UsageError> {
    // A first look without keys gives the kid, to pick the client.
    let first_look = inspect::decode(token, &DecodeKeys::default(), now);
    let kid = first_look.outer_kid();
    if gives_subkeys(&args.keys) {
        return given_keys(args, kid);
    }
    match roots(&args.keys, kid)? {
        Some(roots) => derived_keys(args, roots, kid, token),
        None => no_keys(args),
    }
}

/// --sig-key/--enc-key, used as they are: without root keys a key log can
/// only be listed.
fn given_keys(args: &DecodeArgs, kid: Option<&str>) -> Result<ChosenKeys, UsageError> {
    let show = args.output.show_secrets;
    let sig = args
        .keys
        .sig_key
        .as_deref()
        .map(|k| read_key("--sig-key", k))
        .transpose()?;
    let enc = args
        .keys
        .enc_key
        .as_deref()
        .map(|k| read_key("--enc-key", k))
        .transpose()?;
    let client_id = args
        .keys
        .client_id
        .as_deref()
        .map(parse_client_id)
        .transpose()?;
    let decode = DecodeKeys {
        sig,
        enc,
        ..DecodeKeys::default()
    };
    let mut report = KeysReport {
        source: "explicit",
        client_id: client_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .or_else(|| kid.map(str::to_owned)),
        client_id_from: match (&client_id, kid) {
            (Some(_), _) => Some("--client-id"),
            (None, Some(_)) => Some("the token's kid"),
            (None, None) => None,
        },
        sig_key_fp: decode.sig_fp().map(|f| f.to_string()),
        enc_key_fp: decode.enc_fp().map(|f| f.to_string()),
        sig_key_hex: decode.sig.as_ref().filter(|_| show).map(hex::encode),
        enc_key_hex: decode.enc.as_ref().filter(|_| show).map(hex::encode),
        ..KeysReport::none()
    };
    let keylog = listed_keylog(&args.keys, show)?;
    if keylog.is_some() {
        report.notes.push(
            "--keylog lists the connections; finding the token's connection needs --root-key or --keystore"
                .to_owned(),
        );
    }
    Ok(ChosenKeys {
        report,
        keylog,
        decode,
        verdict_on: VerdictOn::GivenSubkeys { client_id },
        verdict_note: None,
    })
}

/// No keys: the layers show what they can, and the verdict says which key
/// is missing.
fn no_keys(args: &DecodeArgs) -> Result<ChosenKeys, UsageError> {
    let mut report = KeysReport::none();
    let keylog = listed_keylog(&args.keys, args.output.show_secrets)?;
    if keylog.is_some() {
        report.notes.push(
            "finding the token's connection in --keylog needs --root-key or --keystore".to_owned(),
        );
    }
    let client_id = args
        .keys
        .client_id
        .as_deref()
        .map(parse_client_id)
        .transpose()?;
    Ok(ChosenKeys {
        report,
        keylog,
        decode: DecodeKeys::default(),
        verdict_on: VerdictOn::Client { client_id },
        verdict_note: None,
    })
}

/// --keylog without root keys: its connections can be listed, but which
/// one the token was made on cannot be found.
fn listed_keylog(keys: &KeyArgs, show: bool) -> Result<Option<KeylogReport>, UsageError> {
    match &keys.keylog {
        Some(path) => Ok(Some(keylog_report(path, &read_keylog(path)?, show))),
        None => Ok(None),
    }
}

/// Sub keys derived as the server does, on every candidate connection and
/// root key, keeping the pair that opens the token.
fn derived_keys(
    args: &DecodeArgs,
    roots: Roots,
    kid: Option<&str>,
    token: &str,
) -> Result<ChosenKeys, UsageError> {
    let show = args.output.show_secrets;
    let mut report = derived_keys_report(&roots, kid);
    let (candidates, mut keylog) = candidates(&args.keys, show)?;
    let from_keylog = keylog.is_some();
    let opening = open_outer_layer(token, &roots, &candidates);
    if let Some(r) = keylog.as_mut() {
        mark_token_connection(r, &opening, &candidates);
    }
    report.schedules = shown_schedules(&roots, &candidates, &opening, from_keylog, show);
    let found_at = opening.connection();
    let mut decode = DecodeKeys::default();
    if let Some(k) = opening.decode_keys(from_keylog) {
        report.sig_key_fp = Some(k.sig.fingerprint().to_string());
        report.enc_key_fp = Some(k.enc.fingerprint().to_string());
        decode = DecodeKeys {
            sig: Some(Zeroizing::new(k.sig.expose().to_vec())),
            enc: Some(Zeroizing::new(k.enc.expose().to_vec())),
            ..DecodeKeys::default()
        };
    }
    let (verdict_on, verdict_note) = connection_verdict(roots, candidates, found_at, from_keylog);
    Ok(ChosenKeys {
        report,
        keylog,
        decode,
        verdict_on,
        verdict_note,
    })
}

/// The keys section before any connection is tried: where the root keys
/// come from, and whether they can be for this token.
fn derived_keys_report(roots: &Roots, kid: Option<&str>) -> KeysReport {
    let mut report = KeysReport {
        source: "derived",
        root_keys_from: Some(roots.from.clone()),
        client_id: Some(roots.client_id.as_str().to_owned()),
        client_id_from: Some(roots.client_id_from),
        ..KeysReport::none()
    };
    if roots.keys.is_empty() {
        report.notes.push(format!(
            "the keystore has no client {}: nothing to derive",
            roots.client_id
        ));
    }
    if let Some(kid) = kid.filter(|k| *k != roots.client_id.as_str()) {
        report.notes.push(format!(
            "the token's kid is {kid:?}, not {}",
            roots.client_id
        ));
    }
    report
}

/// A connection the token may have been made on.
struct Candidate {
    ekm: Ekm,
    /// Its client_random (hex), when it comes from a key log.
    client_random: Option<String>,
}

/// The connections to try: the --ekm given, or every one in --keylog (whose
/// report comes along).
fn candidates(
    keys: &KeyArgs,
    show: bool,
) -> Result<(Vec<Candidate>, Option<KeylogReport>), UsageError> {
    match ekm_source(keys)? {
        Some(EkmSource::Given(ekm)) => Ok((
            vec![Candidate {
                ekm,
                client_random: None,
            }],
            None,
        )),
        Some(EkmSource::Keylog(path, log)) => {
            if log.connections.is_empty() {
                return Err(usage(format!(
                    "--keylog: {} has no TLS 1.3 EXPORTER_SECRET line{}",
                    path.display(),
                    if log.tls12_lines > 0 {
                        " (only TLS 1.2 entries: this protocol is TLS 1.3 only)"
                    } else {
                        ""
                    }
                )));
            }
            let candidates = log
                .connections
                .iter()
                .map(|c| Candidate {
                    ekm: c.ekm.clone(),
                    client_random: Some(c.client_random_hex()),
                })
                .collect();
            Ok((candidates, Some(keylog_report(&path, &log, show))))
        }
        None => Ok((Vec::new(), None)),
    }
}

/// Which (connection, root key) pairs open the token's outer layer.
struct Opening {
    /// Per candidate connection, the root key that opens the token on it.
    opened_by: Vec<Option<usize>>,
    /// The first pair that opens it: connection, root key, sub keys.
    found: Option<(usize, usize, SubKeys)>,
    /// The sub keys of the first pair tried that does not.
    first_failed: Option<SubKeys>,
}

impl Opening {
    /// The candidate connection the token was made on.
    fn connection(&self) -> Option<usize> {
        self.found.as_ref().map(|(ci, _, _)| *ci)
    }

    /// The sub keys to open the layers with: those that open the token, or
    /// with one EKM, the current key's, to show how the layers fail.
    fn decode_keys(self, from_keylog: bool) -> Option<SubKeys> {
        match self.found {
            Some((_, _, keys)) => Some(keys),
            None if !from_keylog => self.first_failed,
            None => None,
        }
    }
}

/// Every root key on every connection: a rotated key, or another connection
/// of the key log, may be the one the token was made with.
fn open_outer_layer(token: &str, roots: &Roots, candidates: &[Candidate]) -> Opening {
    let outer = inspect::OuterLayer::read(token);
    let mut opening = Opening {
        opened_by: Vec::with_capacity(candidates.len()),
        found: None,
        first_failed: None,
    };
    for (ci, candidate) in candidates.iter().enumerate() {
        let mut opened_by = None;
        for (ki, root) in roots.keys.iter().enumerate() {
            let prk = root.compute_prk(&candidate.ekm);
            let keys = SubKeys::expand(&prk, &roots.client_id);
            if outer.opens(keys.sig.expose(), keys.enc.expose()) {
                opened_by = Some(ki);
                if opening.found.is_none() {
                    opening.found = Some((ci, ki, keys));
                }
                break;
            }
            if opening.first_failed.is_none() {
                opening.first_failed = Some(keys);
            }
        }
        opening.opened_by.push(opened_by);
    }
    opening
}

/// Marks in the key log report which connections open the token, and the
/// one it was made on.
fn mark_token_connection(report: &mut KeylogReport, opening: &Opening, candidates: &[Candidate]) {
    for (c, opened_by) in report.connections.iter_mut().zip(&opening.opened_by) {
        c.opens_token = Some(opened_by.is_some());
        c.root_key_index = *opened_by;
    }
    report.matched = opening
        .connection()
        .and_then(|ci| candidates.get(ci))
        .and_then(|c| c.client_random.clone());
}

/// The schedules to print: for --ekm every root key; for --keylog the
/// matching one.
fn shown_schedules(
    roots: &Roots,
    candidates: &[Candidate],
    opening: &Opening,
    from_keylog: bool,
    show: bool,
) -> Vec<Schedule> {
    let schedule = |ci: usize, ki: usize| -> Option<Schedule> {
        let candidate = candidates.get(ci)?;
        let root = roots.keys.get(ki)?;
        let connection = candidate.client_random.clone();
        Some(run_schedule(&roots.client_id, ki, root, &candidate.ekm, connection, show).0)
    };
    match (from_keylog, &opening.found) {
        (false, _) => (0..roots.keys.len())
            .filter_map(|ki| schedule(0, ki))
            .collect(),
        (true, Some((ci, ki, _))) => schedule(*ci, *ki).into_iter().collect(),
        (true, None) => Vec::new(),
    }
}

/// The verdict on the token's connection, or (none matching) on the first;
/// with no connection at all, on the client alone.
fn connection_verdict(
    roots: Roots,
    candidates: Vec<Candidate>,
    found_at: Option<usize>,
    from_keylog: bool,
) -> (VerdictOn, Option<String>) {
    let tried = candidates.len();
    let note = (from_keylog && found_at.is_none()).then(|| {
        format!(
            "the token opens on none of the {tried} logged connection(s); this is the answer on the first of them"
        )
    });
    let on = match candidates.into_iter().nth(found_at.unwrap_or(0)) {
        Some(c) => VerdictOn::Connection {
            ekm: c.ekm,
            keystore: roots.keystore,
        },
        None => VerdictOn::Client {
            client_id: Some(roots.client_id),
        },
    };
    (on, note)
}

/// What the server would answer, computed with the keys chosen.
fn protocol_verdict(token: &str, keys: &ChosenKeys, policy: &Policy, now: f64) -> Verdict {
    let on = match &keys.verdict_on {
        VerdictOn::GivenSubkeys { client_id } => VerdictKeys::Subkeys {
            client_id: client_id.as_ref(),
            sig: keys.decode.sig.as_deref().map(|v| &v[..]),
            enc: keys.decode.enc.as_deref().map(|v| &v[..]),
        },
        VerdictOn::Client { client_id } => VerdictKeys::Subkeys {
            client_id: client_id.as_ref(),
            sig: None,
            enc: None,
        },
        VerdictOn::Connection { ekm, keystore } => VerdictKeys::Connection { ekm, keystore },
    };
    let mut verdict = verdict::verdict(token, on, policy, now);
    verdict.notes.extend(keys.verdict_note.clone());
    verdict
}

/// The report; `valid` is what the exit status says.
fn assemble(
    cleaned: Cleaned,
    keys: ChosenKeys,
    decoded: Decoded,
    verdict: Verdict,
    policy: PolicyReport,
    checks: Checks,
) -> DecodeReport {
    DecodeReport {
        input: InputReport {
            chars: cleaned.token.chars().count(),
            notes: cleaned.notes,
            error: None,
        },
        keys: keys.report,
        keylog: keys.keylog,
        token: Some(decoded),
        verdict,
        policy,
        valid: checks.result == crate::report::Status::Valid,
        checks,
    }
}

// ---------------------------------------------------------------------------
// derive
// ---------------------------------------------------------------------------

/// `jose-debug derive`.
pub fn derive(args: &DeriveArgs) -> Result<DeriveReport, UsageError> {
    if args.keys.sig_key.is_some() || args.keys.enc_key.is_some() {
        return Err(usage(
            "derive takes --root-key/--keystore, --ekm/--keylog and --client-id, not --sig-key/--enc-key \
             (they may come from JOSE_DEBUG_SIG_KEY / JOSE_DEBUG_ENC_KEY)",
        ));
    }
    if args.keys.client_id.is_none() {
        return Err(usage("derive needs --client-id"));
    }
    let roots = roots(&args.keys, None)?
        .ok_or_else(|| usage("derive needs --root-key KEY or --keystore FILE"))?;
    if roots.keys.is_empty() {
        return Err(usage(format!(
            "{}: no client {} there",
            roots.from, roots.client_id
        )));
    }
    let show = args.output.show_secrets;
    let source =
        ekm_source(&args.keys)?.ok_or_else(|| usage("derive needs --ekm HEX or --keylog FILE"))?;
    let mut schedules = Vec::new();
    let mut keylog_out = None;
    match source {
        EkmSource::Given(ekm) => {
            for (ki, root) in roots.keys.iter().enumerate() {
                schedules.push(run_schedule(&roots.client_id, ki, root, &ekm, None, show).0);
            }
        }
        EkmSource::Keylog(path, log) => {
            if log.connections.is_empty() {
                return Err(usage(format!(
                    "--keylog: {} has no TLS 1.3 EXPORTER_SECRET line",
                    path.display()
                )));
            }
            for c in &log.connections {
                for (ki, root) in roots.keys.iter().enumerate() {
                    schedules.push(
                        run_schedule(
                            &roots.client_id,
                            ki,
                            root,
                            &c.ekm,
                            Some(c.client_random_hex()),
                            show,
                        )
                        .0,
                    );
                }
            }
            keylog_out = Some(keylog_report(&path, &log, show));
        }
    }
    Ok(DeriveReport {
        client_id: roots.client_id.as_str().to_owned(),
        root_keys_from: roots.from,
        schedules,
        keylog: keylog_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_binding::Form;

    const NOW: f64 = 1_767_225_600.0;

    #[test]
    fn policy_follows_the_flags() {
        let args = PolicyArgs {
            audience: Some("api.example".to_owned()),
            forms: Some(vec![Form::Signed, Form::SignedThenEncrypted]),
            skew_secs: 5,
            max_ttl_secs: 60,
            now: Some("2026-01-01T00:00:00Z".to_owned()),
        };
        let p = policy(&args);
        assert_eq!(p.audience, "api.example");
        assert!(p.forms.contains(Form::Signed) && !p.forms.contains(Form::EncryptedThenSigned));
        assert_eq!((p.skew_secs, p.max_ttl_secs), (5, 60));
        assert_eq!(now(&args).unwrap(), (NOW, true));
        let bad = PolicyArgs {
            now: Some("later".to_owned()),
            ..args
        };
        assert!(now(&bad).is_err());
    }

    #[test]
    fn keylog_report_hides_ekms_unless_asked() {
        let line = format!("EXPORTER_SECRET {} {}\n", "ab".repeat(32), "01".repeat(48));
        let log = keylog::parse(&line);
        let hidden = keylog_report(Path::new("k.log"), &log, false);
        assert!(hidden.connections[0].ekm_hex.is_none());
        assert_eq!(hidden.connections[0].hash, "SHA-384");
        let shown = keylog_report(Path::new("k.log"), &log, true);
        assert_eq!(
            shown.connections[0].ekm_hex.as_deref(),
            Some(hex::encode(log.connections[0].ekm.expose()).as_str())
        );
    }

    #[test]
    fn schedule_prints_fingerprints_and_secrets_only_on_request() {
        let id = ClientId::new("client1").unwrap();
        let root = SoftwareRootKey::new(&[1u8; 32]).unwrap();
        let ekm = Ekm::from_bytes([2u8; 32]);
        let (s, keys) = run_schedule(&id, 0, &root, &ekm, None, false);
        assert!(s.secrets.is_none());
        assert_eq!(s.sig_key_fp, keys.sig.fingerprint().to_string());
        assert_eq!(s.ekm_fp, ekm.fingerprint().to_string());
        let (s, keys) = run_schedule(&id, 0, &root, &ekm, Some("cr".to_owned()), true);
        let sec = s.secrets.unwrap();
        assert_eq!(sec.enc_key_hex, hex::encode(keys.enc.expose()));
        assert_eq!(s.connection.as_deref(), Some("cr"));
    }
}
