//! The subcommands: gather inputs, derive keys, decode, judge, and build
//! the report that [`crate::render`] prints (or `--json` serializes).

use std::io::Read;
use std::path::Path;

use jose_binding::{ClientId, Ekm, FormSet, Keystore, Policy, SoftwareRootKey, SubKeys};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::{DecodeArgs, DeriveArgs, KeyArgs, PolicyArgs};
use crate::inspect::{self, DecodeKeys, Decoded};
use crate::keylog::{self, KeyLog};
use crate::keys::{read_key, to_32, KeyError};
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

/// One run of §3, as printed: fingerprints always, values on request.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    pub client_id: String,
    /// Position of the root key in the client's list (0 = current).
    pub root_key_index: usize,
    pub root_key_fp: String,
    pub root_key_bytes: usize,
    /// The connection (client_random, hex) when the EKM came from a key log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub ekm_fp: String,
    pub prk_fp: String,
    pub sig_key_fp: String,
    pub enc_key_fp: String,
    /// Only with --show-secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<ScheduleSecrets>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScheduleSecrets {
    pub ekm_hex: String,
    pub prk_hex: String,
    pub sig_key_hex: String,
    pub enc_key_hex: String,
}

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

#[derive(Debug, Clone, Serialize)]
pub struct KeylogReport {
    pub file: String,
    /// TLS 1.3 connections with an exporter secret, in file order.
    pub connections: Vec<ConnectionReport>,
    pub other_lines: usize,
    pub tls12_lines: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<keylog::Skipped>,
    /// The connection the token was made on (client_random), if found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// 1-based position among the connections.
    pub index: usize,
    pub line: usize,
    pub client_random: String,
    pub hash: &'static str,
    pub ekm_fp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekm_hex: Option<String>,
    /// Whether this connection's keys open the token (decode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_token: Option<bool>,
    /// Which root key opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_index: Option<usize>,
}

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

fn policy(args: &PolicyArgs) -> Policy {
    Policy {
        audience: args.audience.clone(),
        forms: match &args.forms {
            Some(list) => list.iter().copied().collect(),
            None => FormSet::ALL,
        },
        skew_secs: args.skew_secs,
        max_ttl_secs: args.max_ttl_secs,
        ..Policy::default()
    }
}

fn now(args: &PolicyArgs) -> Result<(f64, bool), UsageError> {
    match &args.now {
        Some(t) => parse_time(t).map(|n| (n, true)).ok_or_else(|| {
            usage(format!(
                "--now {t:?}: expected seconds since the epoch or RFC 3339 (2026-01-01T00:00:00Z)"
            ))
        }),
        None => Ok((jose_binding::verifier::unix_now(), false)),
    }
}

// ---------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub chars: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Set when the input is not a token at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeysReport {
    /// `none`, `explicit` (--sig-key/--enc-key) or `derived` (root key + EKM).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_keys_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id_from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig_key_fp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enc_key_fp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sig_key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enc_key_hex: Option<String>,
    /// The derivations used (one per root key for --ekm; the matching
    /// connection's for --keylog).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub audience: String,
    pub forms: Vec<&'static str>,
    pub skew_secs: u64,
    pub max_ttl_secs: u64,
    pub now: f64,
    pub now_rfc3339: Option<String>,
    /// Whether --now was given.
    pub now_given: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenericReport {
    pub valid: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecodeReport {
    pub input: InputReport,
    pub keys: KeysReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keylog: Option<KeylogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Decoded>,
    pub verdict: Verdict,
    pub policy: PolicyReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericReport>,
    /// What the exit status says: 0 when true.
    pub valid: bool,
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
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        }
        Some(a) => buf.extend_from_slice(a.as_bytes()),
    }
    if buf.len() as u64 > MAX_INPUT {
        return Err(usage("the input is larger than 1 MiB; that is no token"));
    }
    Ok(buf)
}

/// `jose-debug decode`: the report and whether the token is valid.
pub fn decode(args: &DecodeArgs) -> Result<DecodeReport, UsageError> {
    let show = args.output.show_secrets;
    let policy = policy(&args.policy);
    let (now, now_given) = now(&args.policy)?;
    let policy_report = PolicyReport {
        audience: policy.audience.clone(),
        forms: policy.forms.iter().map(|f| f.as_str()).collect(),
        skew_secs: policy.skew_secs,
        max_ttl_secs: policy.max_ttl_secs,
        now,
        now_rfc3339: rfc3339(now),
        now_given,
    };
    let raw = read_input(args.token.as_deref())?;
    let explicit = args.keys.sig_key.is_some() || args.keys.enc_key.is_some();
    let rooted = args.keys.root_key.is_some() || args.keys.keystore.is_some();
    if explicit && rooted {
        return Err(usage(
            "give --sig-key/--enc-key or --root-key/--keystore, not both \
             (they may come from JOSE_DEBUG_* variables)",
        ));
    }
    if args.keys.ekm.is_some() && !rooted {
        return Err(usage("--ekm needs --root-key or --keystore"));
    }
    if rooted && args.keys.ekm.is_none() && args.keys.keylog.is_none() {
        return Err(usage(
            "--root-key/--keystore need the connection: --ekm HEX or --keylog FILE",
        ));
    }
    let cleaned = match inspect::clean(&raw) {
        Ok(c) => c,
        Err(inspect::InputError::Empty) => {
            return Err(usage("no token given (the input is empty)"))
        }
        Err(e @ inspect::InputError::NotUtf8(_)) => {
            // Not a token at all: nothing to decode, and the server's HTTP layer refuses it.
            return Ok(DecodeReport {
                input: InputReport {
                    chars: raw.len(),
                    notes: Vec::new(),
                    error: Some(e.to_string()),
                },
                keys: KeysReport::none(),
                keylog: None,
                token: None,
                verdict: Verdict::not_text(),
                policy: policy_report,
                generic: args.generic.then(|| GenericReport {
                    valid: false,
                    reasons: vec!["the input is not text".to_owned()],
                }),
                valid: false,
            });
        }
    };
    let token = cleaned.token.as_str();
    // A first look without keys gives the kid, to pick the client.
    let first_look = inspect::decode(token, &DecodeKeys::default(), now);
    let kid = first_look.outer_kid().map(str::to_owned);

    let mut keys_report = KeysReport::none();
    let mut keylog_out = None;
    let mut decode_keys = DecodeKeys::default();
    let verdict;
    if explicit {
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
        decode_keys = DecodeKeys { sig, enc };
        keys_report = KeysReport {
            source: "explicit",
            client_id: client_id
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .or_else(|| kid.clone()),
            client_id_from: match (&client_id, &kid) {
                (Some(_), _) => Some("--client-id"),
                (None, Some(_)) => Some("the token's kid"),
                (None, None) => None,
            },
            sig_key_fp: decode_keys.sig_fp().map(|f| f.to_string()),
            enc_key_fp: decode_keys.enc_fp().map(|f| f.to_string()),
            sig_key_hex: decode_keys.sig.as_ref().filter(|_| show).map(hex::encode),
            enc_key_hex: decode_keys.enc.as_ref().filter(|_| show).map(hex::encode),
            ..KeysReport::none()
        };
        if let Some(kl) = &args.keys.keylog {
            let log = read_keylog(kl)?;
            let mut r = keylog_report(kl, &log, show);
            keys_report.notes.push(
                "--keylog lists the connections; finding the token's connection needs --root-key or --keystore"
                    .to_owned(),
            );
            r.matched = None;
            keylog_out = Some(r);
        }
        verdict = verdict::verdict(
            token,
            VerdictKeys::Subkeys {
                client_id: client_id.as_ref(),
                sig: decode_keys.sig.as_deref().map(|v| &v[..]),
                enc: decode_keys.enc.as_deref().map(|v| &v[..]),
            },
            &policy,
            now,
        );
    } else if let Some(roots) = roots(&args.keys, kid.as_deref())? {
        keys_report = KeysReport {
            source: "derived",
            root_keys_from: Some(roots.from.clone()),
            client_id: Some(roots.client_id.as_str().to_owned()),
            client_id_from: Some(roots.client_id_from),
            ..KeysReport::none()
        };
        if roots.keys.is_empty() {
            keys_report.notes.push(format!(
                "the keystore has no client {}: nothing to derive",
                roots.client_id
            ));
        }
        if kid
            .as_deref()
            .is_some_and(|k| k != roots.client_id.as_str())
        {
            keys_report.notes.push(format!(
                "the token's kid is {:?}, not {}",
                kid.as_deref().unwrap_or_default(),
                roots.client_id
            ));
        }
        // The candidate connections: (EKM, client_random if from a key log).
        let (candidates, mut report): (Vec<(Ekm, Option<String>)>, Option<KeylogReport>) =
            match ekm_source(&args.keys)? {
                Some(EkmSource::Given(ekm)) => (vec![(ekm, None)], None),
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
                    let r = keylog_report(&path, &log, show);
                    let c = log
                        .connections
                        .iter()
                        .map(|c| (c.ekm.clone(), Some(c.client_random_hex())))
                        .collect();
                    (c, Some(r))
                }
                None => (Vec::new(), None),
            };
        // Which (connection, root key) opens the outer layer.
        let outer = inspect::OuterLayer::read(token);
        let mut found: Option<(usize, usize, SubKeys)> = None;
        let mut first: Option<(usize, SubKeys)> = None;
        for (ci, (ekm, _)) in candidates.iter().enumerate() {
            let mut opened_by = None;
            for (ki, root) in roots.keys.iter().enumerate() {
                let prk = root.compute_prk(ekm);
                let keys = SubKeys::expand(&prk, &roots.client_id);
                if outer.opens(keys.sig.expose(), keys.enc.expose()) {
                    opened_by = Some(ki);
                    if found.is_none() {
                        found = Some((ci, ki, keys));
                    }
                    break;
                }
                if first.is_none() {
                    first = Some((ki, keys));
                }
            }
            if let Some(r) = report.as_mut() {
                if let Some(c) = r.connections.get_mut(ci) {
                    c.opens_token = Some(opened_by.is_some());
                    c.root_key_index = opened_by;
                }
            }
        }
        // The schedules to print: for --ekm every root key; for --keylog the matching one.
        let show_schedule = |ci: usize, ki: usize| -> Option<Schedule> {
            let (ekm, conn) = candidates.get(ci)?;
            let root = roots.keys.get(ki)?;
            Some(run_schedule(&roots.client_id, ki, root, ekm, conn.clone(), show).0)
        };
        match (&report, &found) {
            (None, _) => {
                keys_report.schedules = (0..roots.keys.len())
                    .filter_map(|ki| show_schedule(0, ki))
                    .collect();
            }
            (Some(_), Some((ci, ki, _))) => {
                keys_report.schedules = show_schedule(*ci, *ki).into_iter().collect();
            }
            (Some(_), None) => {}
        }
        let use_keys = match &found {
            Some((_, _, k)) => Some(k.clone()),
            // With one EKM, show the layers as they fail with the current key.
            None if report.is_none() => first.map(|(_, k)| k),
            None => None,
        };
        if let Some(k) = &use_keys {
            keys_report.sig_key_fp = Some(k.sig.fingerprint().to_string());
            keys_report.enc_key_fp = Some(k.enc.fingerprint().to_string());
            decode_keys = DecodeKeys {
                sig: Some(Zeroizing::new(k.sig.expose().to_vec())),
                enc: Some(Zeroizing::new(k.enc.expose().to_vec())),
            };
        }
        if let Some(r) = report.as_mut() {
            r.matched = found
                .as_ref()
                .and_then(|(ci, _, _)| candidates.get(*ci))
                .and_then(|(_, cr)| cr.clone());
        }
        // The verdict on the token's connection, or (none matching) on the first.
        let ekm_for_verdict = found.as_ref().map(|(ci, _, _)| *ci).unwrap_or(0);
        let mut v = match candidates.get(ekm_for_verdict) {
            Some((ekm, _)) => verdict::verdict(
                token,
                VerdictKeys::Connection {
                    ekm,
                    keystore: &roots.keystore,
                },
                &policy,
                now,
            ),
            None => verdict::verdict(
                token,
                VerdictKeys::Subkeys {
                    client_id: Some(&roots.client_id),
                    sig: None,
                    enc: None,
                },
                &policy,
                now,
            ),
        };
        if report.is_some() && found.is_none() {
            v.notes.push(format!(
                "the token opens on none of the {} logged connection(s); this is the answer on the first of them",
                candidates.len()
            ));
        }
        verdict = v;
        keylog_out = report;
    } else {
        if let Some(kl) = &args.keys.keylog {
            let log = read_keylog(kl)?;
            keylog_out = Some(keylog_report(kl, &log, show));
            keys_report.notes.push(
                "finding the token's connection in --keylog needs --root-key or --keystore"
                    .to_owned(),
            );
        }
        let client_id = args
            .keys
            .client_id
            .as_deref()
            .map(parse_client_id)
            .transpose()?;
        verdict = verdict::verdict(
            token,
            VerdictKeys::Subkeys {
                client_id: client_id.as_ref(),
                sig: None,
                enc: None,
            },
            &policy,
            now,
        );
    }

    let decoded = inspect::decode(token, &decode_keys, now);
    let generic = args.generic.then(|| generic_check(&decoded, &policy, now));
    let valid = match &generic {
        Some(g) => g.valid,
        None => verdict.accepted(),
    };
    Ok(DecodeReport {
        input: InputReport {
            chars: token.chars().count(),
            notes: cleaned.notes,
            error: None,
        },
        keys: keys_report,
        keylog: keylog_out,
        token: Some(decoded),
        verdict,
        policy: policy_report,
        generic,
        valid,
    })
}

impl KeysReport {
    fn none() -> KeysReport {
        KeysReport {
            source: "none",
            root_keys_from: None,
            client_id: None,
            client_id_from: None,
            sig_key_fp: None,
            enc_key_fp: None,
            sig_key_hex: None,
            enc_key_hex: None,
            schedules: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Plain-JOSE validity: every layer verified or decrypted, exp/nbf hold.
fn generic_check(d: &Decoded, policy: &Policy, now: f64) -> GenericReport {
    let mut reasons = Vec::new();
    for l in &d.layers {
        if !l.crypto.is_verified() {
            reasons.push(format!(
                "layer {} ({}) is not verified: {}",
                l.depth,
                l.kind,
                crate::render::crypto_text(&l.crypto, l.kind)
            ));
        }
    }
    let skew = policy.skew_secs as f64;
    match d.claims() {
        None => reasons.push("no JSON claims set to check".to_owned()),
        Some(c) => {
            for t in &c.times {
                if t.claim == "exp" && t.value <= now - skew {
                    reasons.push(format!("exp: {}", t.relative));
                }
                if t.claim == "nbf" && t.value > now + skew {
                    reasons.push(format!("nbf: {}", t.relative));
                }
            }
            reasons.extend(c.notes.iter().cloned());
        }
    }
    GenericReport {
        valid: reasons.is_empty(),
        reasons,
    }
}

// ---------------------------------------------------------------------------
// derive
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct DeriveReport {
    pub client_id: String,
    pub root_keys_from: String,
    pub schedules: Vec<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keylog: Option<KeylogReport>,
}

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
    use jose_binding::schedule::SigKey;
    use jose_binding::token::{headers, sign_jws};
    use jose_binding::Form;

    const NOW: f64 = 1_767_225_600.0;

    fn token(exp: i64) -> String {
        let claims = format!(r#"{{"iss":"c","iat":1767225600,"exp":{exp}}}"#);
        sign_jws(
            &headers::jws("c"),
            claims.as_bytes(),
            &SigKey::from_bytes([3; 32]),
        )
    }

    fn keys(k: [u8; 32]) -> DecodeKeys {
        DecodeKeys {
            sig: Some(Zeroizing::new(k.to_vec())),
            enc: None,
        }
    }

    #[test]
    fn generic_validity_needs_keys_signatures_and_time() {
        let p = Policy::default();
        let ok = inspect::decode(&token(1_767_225_660), &keys([3; 32]), NOW);
        assert!(generic_check(&ok, &p, NOW).valid);
        let wrong_key = inspect::decode(&token(1_767_225_660), &keys([4; 32]), NOW);
        let g = generic_check(&wrong_key, &p, NOW);
        assert!(!g.valid && g.reasons[0].contains("FAILS"), "{g:?}");
        let no_key = inspect::decode(&token(1_767_225_660), &DecodeKeys::default(), NOW);
        assert!(!generic_check(&no_key, &p, NOW).valid);
        // exp within the skew is still valid; beyond it is not.
        let expired = inspect::decode(&token(1_767_225_580), &keys([3; 32]), NOW);
        assert!(generic_check(&expired, &p, NOW).valid);
        let expired = inspect::decode(&token(1_767_225_500), &keys([3; 32]), NOW);
        let g = generic_check(&expired, &p, NOW);
        assert!(
            !g.valid && g.reasons[0].starts_with("exp: expired"),
            "{g:?}"
        );
    }

    #[test]
    fn policy_follows_the_flags() {
        let args = PolicyArgs {
            audience: "api.example".to_owned(),
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
