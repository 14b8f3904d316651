//! The strict verifier (PROTOCOL.md §7), one instance per TLS connection.
//!
//! The checks run in the contract's order and the first failure decides the
//! code. Everything before step 9 runs without touching a key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::protocol::claims::Claims;
use crate::protocol::client_id::ClientId;
use crate::protocol::error::{reject, ErrorCode, Rejection};
use crate::protocol::json;
use crate::protocol::lookup::{ClientKeys, KeyLookup};
use crate::protocol::replay::{self, Replay, ReplayCache};
use crate::protocol::schedule::{Ekm, Fingerprint, SubKeys};
use crate::protocol::token::{
    Cty, Form, FormSet, HeaderMemo, Kind, Layer, MAX_CLAIMS_LEN, MAX_TOKEN_LEN,
};

/// What the server accepts. Shared by all connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Policy {
    /// The only accepted `aud` (default `localhost`).
    pub audience: String,
    /// Accepted forms (default all three).
    pub forms: FormSet,
    /// Clock skew allowed on `exp`, `iat`, `nbf`, in seconds (default 30).
    pub skew_secs: u64,
    /// Longest accepted `exp − iat`, in seconds (default 300).
    pub max_ttl_secs: u64,
    /// Replay-cache entries per connection (default 8192).
    pub replay_capacity: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            audience: "localhost".to_owned(),
            forms: FormSet::ALL,
            skew_secs: 30,
            max_ttl_secs: 300,
            replay_capacity: replay::ReplayCache::DEFAULT_CAPACITY,
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The client the token's `kid` and `iss` name, whose key opened it.
    pub client_id: ClientId,
    /// The form the token came in, one the policy accepts.
    pub form: Form,
    /// The whole verified claims set.
    pub claims: Claims,
    /// Which of the client's root keys opened it (0 = current).
    pub key_index: usize,
}

/// Subkeys derived on this connection for one client, per root key, lazily.
#[derive(Debug)]
struct Derived {
    client: Arc<ClientKeys>,
    subkeys: Vec<Option<SubKeys>>,
    /// Time spent deriving, not yet taken by
    /// [`ConnectionVerifier::take_key_schedule_time`].
    spent: Duration,
}

/// Verification state of one TLS connection: its EKM, the client it is
/// pinned to, derived subkeys and the replay cache.
#[derive(Debug)]
pub struct ConnectionVerifier {
    ekm: Ekm,
    policy: Arc<Policy>,
    pinned: Option<ClientId>,
    derived: Option<Derived>,
    replay: ReplayCache,
    headers: HeaderMemo,
}

impl ConnectionVerifier {
    /// A verifier for the connection that exported `ekm`, unpinned, with an
    /// empty replay cache.
    pub fn new(ekm: Ekm, policy: Arc<Policy>) -> Self {
        let replay = ReplayCache::new(policy.replay_capacity);
        ConnectionVerifier {
            ekm,
            policy,
            pinned: None,
            derived: None,
            replay,
            headers: HeaderMemo::default(),
        }
    }

    /// A public name for this connection's EKM, for logs; both ends of a
    /// connection compute the same one.
    pub fn ekm_fingerprint(&self) -> Fingerprint {
        self.ekm.fingerprint()
    }

    /// The client the connection is pinned to, once a token was accepted.
    pub fn pinned(&self) -> Option<&ClientId> {
        self.pinned.as_ref()
    }

    /// Entries in this connection's replay cache.
    pub fn replay_len(&self) -> usize {
        self.replay.len()
    }

    /// Time spent in the key schedule (PRK and HKDF, once per root key
    /// tried on this connection) since the last call, for metrics; `None`
    /// when there was none.
    pub fn take_key_schedule_time(&mut self) -> Option<Duration> {
        let d = self.derived.as_mut()?;
        let spent = std::mem::take(&mut d.spent);
        (!spent.is_zero()).then_some(spent)
    }

    /// The subkeys `root` gives client `id` on this connection: what the
    /// enrolment answer is encrypted with (§10), derived from the invite's
    /// secret whatever the verifier cached since.
    #[cfg(feature = "net")]
    pub(crate) fn derive_subkeys(
        &self,
        root: &dyn crate::protocol::schedule::RootKey,
        id: &ClientId,
    ) -> Result<crate::protocol::schedule::SubKeys, crate::protocol::schedule::RootKeyError> {
        crate::protocol::schedule::SubKeys::derive(root, &self.ekm, id)
    }

    /// Verifies against the system clock.
    pub fn verify<K: KeyLookup + ?Sized>(
        &mut self,
        keys: &K,
        token: &str,
    ) -> Result<Verified, Rejection> {
        self.verify_at(keys, token, unix_now())
    }

    /// Verifies at time `now` (seconds since the epoch).
    pub fn verify_at<K: KeyLookup + ?Sized>(
        &mut self,
        keys: &K,
        token: &str,
        now: f64,
    ) -> Result<Verified, Rejection> {
        let (outer, form) = precheck(token, &self.policy, Some(&mut self.headers))?;
        // Step 8.
        let client = keys
            .client_keys(outer.kid().ok_or(UNKNOWN_KID)?)
            .ok_or(UNKNOWN_KID)?;
        let kid = client.id.as_str();
        if self.pinned.as_ref().is_some_and(|p| p.as_str() != kid) {
            return Err(reject(
                ErrorCode::ClientMismatch,
                "this connection is already bound to another client",
            ));
        }
        // Step 9: try each root key; the one that opens the outer layer is the only one used after.
        let derived = derived_for(&mut self.derived, client);
        let (key_index, content) = (0..derived.subkeys.len())
            .find_map(|i| outer.open(derived.subkeys_at(&self.ekm, i)).map(|c| (i, c)))
            .ok_or_else(|| outer.open_failure())?;
        // Already derived above: a lookup, not a derivation.
        let keys = derived.subkeys_at(&self.ekm, key_index);
        // Steps 10–14 except the replay cache.
        let bytes = open_inner(form, content, keys, kid, Some(&mut self.headers))?;
        let checked = check_claims(&bytes, kid, &self.policy, now)?;
        let horizon = now - self.policy.skew_secs as f64;
        self.replay
            .check_and_insert(&checked.jti, checked.exp, horizon)
            .map_err(|r| match r {
                Replay::Seen => reject(
                    ErrorCode::Replayed,
                    "this jti was already accepted on this connection",
                ),
                Replay::BelowFloor => REPLAY_CACHE_FULL,
            })?;
        let (iat, exp) = (checked.iat, checked.exp);
        let claims = into_claims(bytes, iat, exp)?;
        // Accepted: the first accepted token pins the connection.
        let client_id = client.id.clone();
        if self.pinned.is_none() {
            self.pinned = Some(client_id.clone());
        }
        Ok(Verified {
            client_id,
            form,
            claims,
            key_index,
        })
    }
}

/// The §7 checks for one token against explicitly given subkeys instead of
/// an EKM and a keystore, as if `client_id` were the only known client:
/// every step of [`ConnectionVerifier::verify_at`], through the same code,
/// except those that need a connection's state (pinning, the replay cache).
/// For debugging tools; servers use [`ConnectionVerifier`].
pub fn verify_with_subkeys(
    token: &str,
    client_id: &ClientId,
    keys: &SubKeys,
    policy: &Policy,
    now: f64,
) -> Result<Verified, Rejection> {
    let (outer, form) = precheck(token, policy, None)?;
    // Step 8.
    if outer.kid() != Some(client_id.as_str()) {
        return Err(UNKNOWN_KID);
    }
    // Step 9.
    let content = outer.open(keys).ok_or_else(|| outer.open_failure())?;
    let bytes = open_inner(form, content, keys, client_id.as_str(), None)?;
    let checked = check_claims(&bytes, client_id.as_str(), policy, now)?;
    let (iat, exp) = (checked.iat, checked.exp);
    let claims = into_claims(bytes, iat, exp)?;
    Ok(Verified {
        client_id: client_id.clone(),
        form,
        claims,
        key_index: 0,
    })
}

/// Steps 1–7: everything that runs before a key is touched.
fn precheck<'a>(
    token: &'a str,
    policy: &Policy,
    memo: Option<&mut HeaderMemo>,
) -> Result<(Layer<'a>, Form), Rejection> {
    // Step 1 (no token at all) belongs to the transport; an empty string here is malformed.
    if token.is_empty() {
        return Err(reject(ErrorCode::Malformed, "empty bearer token"));
    }
    // Step 2.
    // §7 counts characters; only a token over the limit in bytes can be
    // over it in characters, so the count runs only then.
    if token.len() > MAX_TOKEN_LEN && token.chars().count() > MAX_TOKEN_LEN {
        return Err(reject(
            ErrorCode::TooLarge,
            "token is longer than 16384 characters",
        ));
    }
    // Steps 3–6.
    let outer = Layer::parse_with(token, memo)?;
    // Step 7.
    let form = form_of(&outer)?;
    if !policy.forms.contains(form) {
        return Err(reject(
            ErrorCode::FormNotAllowed,
            "this server does not accept this token form",
        ));
    }
    Ok((outer, form))
}

/// Step 10: the claims set inside `content`, what the outer layer opened
/// to with `keys`; for the nested forms, its inner layer opened with the
/// same keys.
fn open_inner(
    form: Form,
    content: std::borrow::Cow<'_, [u8]>,
    keys: &SubKeys,
    kid: &str,
    memo: Option<&mut HeaderMemo>,
) -> Result<Vec<u8>, Rejection> {
    let want = match form {
        Form::Signed => return Ok(content.into_owned()),
        Form::EncryptedThenSigned => Kind::Jwe,
        Form::SignedThenEncrypted => Kind::Jws,
    };
    let inner = inner_layer(&content, want, kid, memo)?;
    let claims = inner.open(keys).ok_or_else(|| inner.open_failure())?;
    Ok(claims.into_owned())
}

/// The claims text, once checked: the strict parse proved it UTF-8.
fn into_claims(bytes: Vec<u8>, iat: f64, exp: f64) -> Result<Claims, Rejection> {
    let text = String::from_utf8(bytes)
        .map_err(|_| reject(ErrorCode::Malformed, "claims set is not UTF-8"))?;
    Ok(Claims::new(text.into_boxed_str(), iat, exp))
}

/// The connection's derived subkeys for `client`. One client at a time keeps
/// this bounded; after pinning it changes only when a keystore reload
/// replaces the client's entry.
fn derived_for<'a>(slot: &'a mut Option<Derived>, client: &Arc<ClientKeys>) -> &'a mut Derived {
    if slot
        .as_ref()
        .is_some_and(|d| !Arc::ptr_eq(&d.client, client))
    {
        *slot = None;
    }
    slot.get_or_insert_with(|| Derived {
        client: client.clone(),
        subkeys: vec![None; client.keys.len()],
        spent: Duration::ZERO,
    })
}

impl Derived {
    fn subkeys_at(&mut self, ekm: &Ekm, index: usize) -> &SubKeys {
        let (client, spent) = (&self.client, &mut self.spent);
        self.subkeys[index].get_or_insert_with(|| {
            let start = Instant::now();
            let keys = SubKeys::expand(&client.keys[index].compute_prk(ekm), &client.id);
            *spent += start.elapsed();
            keys
        })
    }
}

/// The refusal of a token because the replay cache is full of entries
/// expiring later than it ([`Rejection::at_replay_bound`]).
pub(crate) const REPLAY_CACHE_FULL: Rejection = reject(
    ErrorCode::Replayed,
    "replay cache full: tokens expiring this early are refused on this connection",
);

const UNKNOWN_KID: Rejection = reject(
    ErrorCode::UnknownClient,
    "kid is absent or not a known client",
);

/// Step 7: the form follows from the outer header alone.
fn form_of(outer: &Layer<'_>) -> Result<Form, Rejection> {
    match (outer.kind(), outer.cty) {
        (Kind::Jws, Cty::Absent) => Ok(Form::Signed),
        (Kind::Jws, Cty::Jwt) => Ok(Form::EncryptedThenSigned),
        (Kind::Jwe, Cty::Jwt) => Ok(Form::SignedThenEncrypted),
        (Kind::Jwe, Cty::Absent) => Err(reject(
            ErrorCode::BadNesting,
            "a JWE must carry cty JWT (a nested signed token)",
        )),
        (_, Cty::Other) => Err(reject(
            ErrorCode::BadNesting,
            "cty is neither absent nor exactly \"JWT\"",
        )),
    }
}

/// Step 10 up to opening: steps 3–6 on the inner token, its kind, its `kid`.
fn inner_layer<'a>(
    bytes: &'a [u8],
    want: Kind,
    kid: &str,
    memo: Option<&mut HeaderMemo>,
) -> Result<Layer<'a>, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        reject(
            ErrorCode::Malformed,
            "nested content is not a compact token",
        )
    })?;
    let inner = Layer::parse_with(text, memo)?;
    if inner.kind() != want || inner.cty != Cty::Absent {
        return Err(reject(
            ErrorCode::BadNesting,
            "inner token is not the other kind, or carries a cty",
        ));
    }
    if inner.kid() != Some(kid) {
        return Err(reject(
            ErrorCode::UnknownClient,
            "inner kid differs from the outer kid",
        ));
    }
    Ok(inner)
}

/// What steps 11–14 read from a claims set that passed them.
struct Checked<'c> {
    iat: f64,
    exp: f64,
    jti: std::borrow::Cow<'c, str>,
}

/// Steps 11–14 except the replay cache.
fn check_claims<'c>(
    bytes: &'c [u8],
    kid: &str,
    policy: &Policy,
    now: f64,
) -> Result<Checked<'c>, Rejection> {
    if bytes.len() > MAX_CLAIMS_LEN {
        return Err(reject(
            ErrorCode::TooLarge,
            "claims set is larger than 8192 bytes",
        ));
    }
    let r = json::parse_claims(bytes).map_err(|e| reject(ErrorCode::Malformed, e.detail()))?;
    let iat = r.iat.as_f64().ok_or(reject(
        ErrorCode::Malformed,
        "iat is absent or not a number",
    ))?;
    let exp = r.exp.as_f64().ok_or(reject(
        ErrorCode::Malformed,
        "exp is absent or not a number",
    ))?;
    let nbf = match r.nbf {
        json::Num::Absent => None,
        json::Num::Num(n) => Some(n),
        json::Num::Other => return Err(reject(ErrorCode::Malformed, "nbf is not a number")),
    };
    // Step 12.
    if r.iss.as_str() != Some(kid) {
        return Err(reject(
            ErrorCode::UnknownClient,
            "iss is absent or differs from kid",
        ));
    }
    if r.aud.as_str() != Some(policy.audience.as_str()) {
        return Err(reject(
            ErrorCode::WrongAudience,
            "aud is absent, not a string, or not this server's audience",
        ));
    }
    // Step 13.
    let skew = policy.skew_secs as f64;
    if exp <= now - skew {
        return Err(reject(ErrorCode::Expired, "token has expired"));
    }
    if iat > now + skew {
        return Err(reject(ErrorCode::NotYetValid, "iat is in the future"));
    }
    if nbf.is_some_and(|nbf| nbf > now + skew) {
        return Err(reject(ErrorCode::NotYetValid, "nbf is in the future"));
    }
    if exp - iat > policy.max_ttl_secs as f64 {
        return Err(reject(
            ErrorCode::TtlTooLong,
            "exp - iat exceeds the server's maximum lifetime",
        ));
    }
    // Step 14 (syntax; the cache is the caller's).
    match r.jti {
        json::Member::Str(jti) if !jti.is_empty() && jti.len() <= 64 => {
            Ok(Checked { iat, exp, jti })
        }
        _ => Err(reject(
            ErrorCode::BadJti,
            "jti is absent, not a string, empty or longer than 64 bytes",
        )),
    }
}

/// Seconds since the Unix epoch, with sub-second precision.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
