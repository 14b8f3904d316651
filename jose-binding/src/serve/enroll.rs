//! `POST /v1/enroll` (docs/PROTOCOL.md §10): a client that holds an invite
//! proves it with a token bound to this connection whose root key is the
//! invite's one-time secret, and gets its real root key back on the same
//! connection, encrypted to the subkey that secret gives the connection.
//! The invite becomes the client in one locked keystore write.
//!
//! Mount the layer outside the binding (the enrolling client is not in the
//! keystore yet); every other request passes through untouched. `GET
//! /v1/enroll` checks an ordinary bound token, so a client proves its new
//! key on any server of the fleet ([`Enrolment::proof_only`] for those
//! that do not enrol).
//!
//! ```no_run
//! use jose_binding::enroll::Enrolment;
//! use jose_binding::echo::EchoApp;
//! use jose_binding::keystore::KeystoreHandle;
//! use jose_binding::layer::{Binding, Layer};
//! use jose_binding::{Keystore, Policy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::path::PathBuf::from("/etc/jose-binding/keystore.toml");
//! let handle = KeystoreHandle::new(Keystore::load(&path)?);
//! let binding = Binding::new(handle.clone(), Policy::default());
//! let enrolment = Enrolment::new(handle, path, binding.policy.clone());
//! let app = enrolment.layer().layer(EchoApp::new(&binding.layer()));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;
use zeroize::Zeroizing;

use crate::keys::keystore::{EnrolRefusal, Keystore, KeystoreHandle, KeystoreLock};
use crate::protocol::error::ErrorCode;
use crate::protocol::schedule::{RootKey, SoftwareRootKey, SubKeys};
use crate::protocol::verifier::{unix_now, Policy};
use crate::serve::layer::{unauthorized, unbound, ConnectionBinding, Outcome};
use crate::serve::server::PeerAddr;
use crate::serve::throttle::LogBudget;

/// The route.
pub const PATH: &str = "/v1/enroll";
/// Attempts a source address may make per second, after a burst of
/// [`BURST`].
pub const PER_SEC: f64 = 2.0;
/// Attempts a source address may make at once.
pub const BURST: f64 = 4.0;
/// Source addresses the rate limit tracks; past it, idle ones are forgotten
/// and, if none is idle, new ones wait.
const SOURCES: usize = 4096;

/// The one answer to an unknown, expired, used or revoked invite: which it
/// was is only in the server's log.
const REFUSED_BODY: &str = r#"{"error":"invite_refused","message":"this invite is not valid: it expired, was used or revoked, or never existed; ask the operator for a new one"}"#;

/// What the enrolment route needs: the keystore it reads invites from and
/// writes the new client to, and the policy whose audience and forms the
/// answer tells the client.
#[derive(Clone)]
pub struct Enrolment {
    shared: Arc<Shared>,
}

struct Shared {
    keystore: KeystoreHandle,
    /// The keystore file enrolments are written to; `None`: this server
    /// does not enrol (`POST` is 404) and answers only the proof.
    path: Option<PathBuf>,
    policy: Arc<Policy>,
    client_url: Option<String>,
    limit: Mutex<PerSource>,
    logs: LogBudget,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Enrolment {
    /// Enrolment against the keystore file at `path`, whose current
    /// snapshot `keystore` serves (a reload watcher keeps it current; an
    /// enrolment replaces it at once).
    pub fn new(keystore: KeystoreHandle, path: PathBuf, policy: Arc<Policy>) -> Self {
        Enrolment::build(keystore, Some(path), policy)
    }

    /// Only `GET /v1/enroll`, the check of an enrolled key, for a server
    /// that does not enrol (a fleet's replicas, while one of them enrols):
    /// a client proves its new key against whichever replica it reaches.
    pub fn proof_only(keystore: KeystoreHandle, policy: Arc<Policy>) -> Self {
        Enrolment::build(keystore, None, policy)
    }

    fn build(keystore: KeystoreHandle, path: Option<PathBuf>, policy: Arc<Policy>) -> Self {
        Enrolment {
            shared: Arc::new(Shared {
                keystore,
                path,
                policy,
                client_url: None,
                limit: Mutex::new(PerSource::default()),
                logs: LogBudget::new(20),
            }),
        }
    }

    /// The URL enrolled clients are to use from now on, when it is not the
    /// one they enrolled at (a fleet's, when this server enrols on a port
    /// of its own); it must be `https://host[:port]`.
    pub fn with_client_url(self, url: &str) -> Result<Self, crate::invite::BadInviteUrl> {
        if !crate::invite::is_origin(url) {
            return Err(crate::invite::BadInviteUrl::NotAnOrigin);
        }
        let s = &self.shared;
        let mut e = Enrolment::build(s.keystore.clone(), s.path.clone(), s.policy.clone());
        if let Some(shared) = Arc::get_mut(&mut e.shared) {
            shared.client_url = Some(url.to_owned());
        }
        Ok(e)
    }

    /// The layer to put outside the application (and its binding layer).
    pub fn layer(&self) -> EnrolmentLayer {
        EnrolmentLayer {
            enrolment: self.clone(),
        }
    }
}

/// Mounts `POST /v1/enroll` in front of a service.
#[derive(Debug, Clone)]
pub struct EnrolmentLayer {
    enrolment: Enrolment,
}

impl<S> Layer<S> for EnrolmentLayer {
    type Service = EnrolmentService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EnrolmentService {
            inner,
            enrolment: self.enrolment.clone(),
        }
    }
}

/// A service with `POST /v1/enroll` in front of it.
#[derive(Debug, Clone)]
pub struct EnrolmentService<S> {
    inner: S,
    enrolment: Enrolment,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for EnrolmentService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = EnrolmentFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.uri().path() != PATH {
            return EnrolmentFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            };
        }
        let enrols = self.enrolment.shared.path.is_some();
        let answer = match *req.method() {
            Method::POST if !enrols => Answer::Now(json(
                StatusCode::NOT_FOUND,
                r#"{"error":"not_found","message":"this server does not enrol clients (it runs without --enroll)"}"#,
                None,
            )),
            Method::POST => self.enrolment.shared.clone().start(&req),
            Method::GET => Answer::Now(self.enrolment.shared.proof(&req)),
            _ => Answer::Now(json(
                StatusCode::METHOD_NOT_ALLOWED,
                r#"{"error":"method_not_allowed"}"#,
                None,
            )),
        };
        EnrolmentFuture {
            kind: Kind::Enrol { answer },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`EnrolmentService`]: the inner service's, or the
    /// enrolment's answer. Its kind is private.
    pub struct EnrolmentFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner { #[pin] future: F },
        Enrol { answer: Answer<B> },
    }
}

enum Answer<B> {
    Now(Response<B>),
    Later(Pin<Box<dyn Future<Output = Response<B>> + Send>>),
    Done,
}

impl<F, B, E> Future for EnrolmentFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Enrol { answer } => match std::mem::replace(answer, Answer::Done) {
                Answer::Now(resp) => Poll::Ready(Ok(resp)),
                Answer::Later(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(resp) => Poll::Ready(Ok(resp)),
                    Poll::Pending => {
                        *answer = Answer::Later(fut);
                        Poll::Pending
                    }
                },
                Answer::Done => Poll::Ready(Ok(json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"error":"polled_after_completion"}"#,
                    None,
                ))),
            },
        }
    }
}

impl Shared {
    /// `GET /v1/enroll`: an ordinary bound token, checked against the
    /// clients as every route behind the binding is; the enrolled client's
    /// first request proves its new key works without reaching the
    /// application.
    fn proof<ReqBody, B: From<Bytes>>(&self, req: &Request<ReqBody>) -> Response<B> {
        let Some(conn) = req.extensions().get::<ConnectionBinding>() else {
            return unbound();
        };
        match conn.check(&self.keystore.snapshot(), req.headers()) {
            Ok(v) => {
                let body = serde_json::json!({"client_id": v.client_id.as_str(), "enrolled": true});
                with_outcome(
                    json(StatusCode::OK, body.to_string(), None),
                    Some(v.client_id),
                    None,
                )
            }
            Err(r) => with_outcome(unauthorized(r), None, Some(r.code)),
        }
    }

    /// Rate limit, then the proof; the keystore write runs later, off the
    /// async threads.
    fn start<ReqBody, B>(self: Arc<Self>, req: &Request<ReqBody>) -> Answer<B>
    where
        B: From<Bytes> + Send + 'static,
    {
        let source = req
            .extensions()
            .get::<PeerAddr>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |p| p.0.ip());
        let allowed = match self.limit.lock() {
            Ok(mut l) => l.allow(source, Instant::now()),
            Err(poisoned) => poisoned.into_inner().allow(source, Instant::now()),
        };
        if !allowed {
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":"too_many_enrolments","message":"too many enrolment attempts from this address; wait a second"}"#,
                None,
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return Answer::Now(resp);
        }
        let Some(conn) = req.extensions().get::<ConnectionBinding>() else {
            return Answer::Now(unbound());
        };
        let now = unix_now().max(0.0) as u64;
        let snapshot = self.keystore.snapshot();
        let (verified, keys) = match conn.check_invite(&snapshot.pending_at(now), req.headers()) {
            Ok(ok) => ok,
            Err(r) if r.code == ErrorCode::UnknownClient => {
                if self.logs.allow() {
                    let reason = invite_kid(req.headers())
                        .map_or("no_kid", |kid| why_not_pending(&snapshot, &kid, now));
                    tracing::warn!(%source, reason, "enrolment refused");
                }
                return Answer::Now(refused(r.code));
            }
            Err(r) => {
                if self.logs.allow() {
                    tracing::warn!(%source, code = r.code.as_str(), "enrolment token refused");
                }
                return Answer::Now(with_outcome(unauthorized(r), None, Some(r.code)));
            }
        };
        let Some(proved) = snapshot
            .invite(verified.client_id.as_str())
            .map(|i| i.secret().clone())
        else {
            return Answer::Now(refused(ErrorCode::UnknownClient));
        };
        Answer::Later(Box::pin(async move {
            let id = verified.client_id.clone();
            let key = SoftwareRootKey::generate();
            let me = self.clone();
            let (written, key) = match tokio::task::spawn_blocking(move || {
                let written = me.record(&id, &proved, key.clone(), now);
                (written, key)
            })
            .await
            {
                Ok(done) => done,
                Err(_) => return unavailable(&verified.client_id),
            };
            match written {
                Ok(()) => {}
                Err(Written::Refused(why)) => {
                    tracing::warn!(client = %verified.client_id, %source, reason = why.code(), "enrolment refused");
                    return refused(ErrorCode::UnknownClient);
                }
                Err(Written::Io(e)) => {
                    tracing::error!(client = %verified.client_id, error = %e, "enrolment not recorded: the keystore could not be written");
                    return unavailable(&verified.client_id);
                }
            }
            tracing::info!(
                client = %verified.client_id,
                %source,
                key_fp = %RootKey::fingerprint(&key),
                "client enrolled"
            );
            let body = self.answer(&verified.client_id, &key, &keys);
            let mut resp = json(StatusCode::OK, body, Some("application/jose"));
            resp.extensions_mut().insert(Outcome {
                client_id: Some(verified.client_id.clone()),
                form: Some(verified.form),
                code: None,
            });
            resp
        }))
    }

    /// The invite becomes the client, under the keystore's lock, read
    /// fresh from the file: another replica or a `keys` command may have
    /// written it since the snapshot.
    fn record(
        &self,
        id: &crate::ClientId,
        proved: &SoftwareRootKey,
        key: SoftwareRootKey,
        now: u64,
    ) -> Result<(), Written> {
        let path = self
            .path
            .as_deref()
            .ok_or_else(|| Written::Io("this server does not enrol".into()))?;
        let lock = KeystoreLock::acquire(path).map_err(|e| Written::Io(e.to_string()))?;
        let mut ks = Keystore::load_or_empty(path).map_err(|e| Written::Io(e.to_string()))?;
        ks.enrol(id, proved, key, now).map_err(Written::Refused)?;
        ks.save_atomic(path)
            .map_err(|e| Written::Io(format!("{}: {e}", path.display())))?;
        drop(lock);
        self.keystore.replace(ks);
        Ok(())
    }

    /// The answer's JWE: §5's inner JWE header, the plaintext a JSON
    /// object with the new root key, the audience and the forms accepted.
    fn answer(&self, id: &crate::ClientId, key: &SoftwareRootKey, keys: &SubKeys) -> Bytes {
        let forms: Vec<&str> = self.policy.forms.iter().map(crate::Form::as_str).collect();
        let encoded = key.to_b64url();
        let head = serde_json::json!({"client_id": id.as_str()}).to_string();
        let mut tail = serde_json::json!({"audience": self.policy.audience, "forms": forms});
        if let Some(url) = &self.client_url {
            tail["server"] = url.as_str().into();
        }
        let tail = tail.to_string();
        // {"client_id":..,"root_key":"..",   "audience":..,"forms":[..],"server":..}
        let mut plain = Zeroizing::new(String::with_capacity(
            head.len() + tail.len() + encoded.len() + 16,
        ));
        plain.push_str(&head[..head.len() - 1]);
        plain.push_str(",\"root_key\":\"");
        plain.push_str(&encoded);
        plain.push_str("\",");
        plain.push_str(&tail[1..]);
        let mut iv = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
        let header = crate::protocol::token::headers::jwe(id.as_str());
        let jwe = crate::protocol::token::encrypt_jwe_encoded(
            &crate::protocol::b64::encode(header.as_bytes()),
            plain.as_bytes(),
            &keys.enc,
            iv,
        );
        Bytes::from(jwe)
    }
}

enum Written {
    Refused(EnrolRefusal),
    Io(String),
}

/// Why `kid` is not a pending invite now, for the log.
fn why_not_pending(ks: &Keystore, kid: &str, now: u64) -> &'static str {
    match (ks.invite(kid), ks.get(kid)) {
        (Some(i), _) if i.expired_at(now) => EnrolRefusal::Expired.code(),
        (_, Some(_)) => EnrolRefusal::ClientExists.code(),
        _ => EnrolRefusal::NoInvite.code(),
    }
}

/// The `kid` of the bearer token's outer header, for the refusal's log
/// line only.
fn invite_kid(headers: &http::HeaderMap) -> Option<String> {
    let token = crate::serve::layer::bearer_token(headers).ok()?;
    crate::protocol::token::Layer::parse(token)
        .ok()?
        .kid()
        .map(str::to_owned)
}

fn refused<B: From<Bytes>>(code: ErrorCode) -> Response<B> {
    with_outcome(
        json(StatusCode::FORBIDDEN, REFUSED_BODY, None),
        None,
        Some(code),
    )
}

fn unavailable<B: From<Bytes>>(id: &crate::ClientId) -> Response<B> {
    let mut resp = json(
        StatusCode::SERVICE_UNAVAILABLE,
        r#"{"error":"enrolment_unavailable","message":"the server could not record the enrolment; the invite is still valid, try again later"}"#,
        None,
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    with_outcome(resp, Some(id.clone()), None)
}

fn with_outcome<B>(
    mut resp: Response<B>,
    client_id: Option<crate::ClientId>,
    code: Option<ErrorCode>,
) -> Response<B> {
    resp.extensions_mut().insert(Outcome {
        client_id,
        form: None,
        code,
    });
    resp
}

fn json<B: From<Bytes>>(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: Option<&'static str>,
) -> Response<B> {
    let mut resp = Response::new(B::from(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type.unwrap_or("application/json")),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

/// A token bucket per source address (an IPv6 source by its /64, which
/// one host can hold whole), in a table of at most [`SOURCES`].
#[derive(Debug, Default)]
struct PerSource {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl PerSource {
    fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let source = match source {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or_else(|| unreachable!())),
            v4 => v4,
        };
        let refill = |(tokens, at): (f64, Instant)| {
            (tokens + now.duration_since(at).as_secs_f64() * PER_SEC).min(BURST)
        };
        if !self.buckets.contains_key(&source) && self.buckets.len() >= SOURCES {
            // Forget the sources whose bucket is full again: they are idle.
            self.buckets.retain(|_, b| refill(*b) < BURST);
            if self.buckets.len() >= SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(source).or_insert((BURST, now));
        let tokens = refill(*bucket);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            true
        } else {
            *bucket = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_gets_a_burst_then_a_few_a_second_and_others_are_apart() {
        let mut l = PerSource::default();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..20).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(l.allow("192.0.2.2".parse().unwrap(), t0), "another source");
        assert!(
            !l.allow("::ffff:192.0.2.1".parse().unwrap(), t0),
            "the same, mapped"
        );
        let later = t0 + Duration::from_secs(1);
        let allowed = (0..20).filter(|_| l.allow(a, later)).count();
        assert_eq!(allowed, PER_SEC as usize);
        // One /64 is one source.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let n = (0..20)
            .filter(|i| l.allow(v6(&format!("2001:db8::{i:x}")), t0))
            .count();
        assert_eq!(n, BURST as usize);
    }

    #[test]
    fn a_full_table_forgets_idle_sources_only() {
        let mut l = PerSource::default();
        let t0 = Instant::now();
        for i in 0..SOURCES as u32 {
            assert!(l.allow(IpAddr::V4(i.into()), t0));
        }
        assert!(
            !l.allow("198.51.100.1".parse().unwrap(), t0),
            "table full, none idle"
        );
        let idle = t0 + Duration::from_secs(2);
        assert!(l.allow("198.51.100.1".parse().unwrap(), idle));
        assert!(l.buckets.len() < 8, "{}", l.buckets.len());
    }
}
