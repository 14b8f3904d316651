//! What the gateway does to headers on their way to the upstream: after
//! hop-by-hop headers went ([`crate::proxy::hop`]), headers the gateway owns out
//! whatever their spelling, then the verified identity and the `Forwarded`
//! family in.
//!
//! Order matters. Names listed in `Connection` are removed before the
//! identity headers are added, so a client cannot name
//! `x-jose-binding-client-id` in `Connection` to have the gateway delete
//! the header it set itself.

use std::net::IpAddr;

use http::header::{HeaderName, AUTHORIZATION, FORWARDED, TRAILER};
use http::{HeaderMap, HeaderValue};

/// The names of the identity headers the gateway sets.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IdentityHeaders {
    /// The verified client id (default `x-jose-binding-client-id`).
    pub client_id: HeaderName,
    /// The token's form (default `x-jose-binding-form`).
    pub form: HeaderName,
    /// The verified claims JSON, base64url (default `x-jose-binding-claims`).
    pub claims: HeaderName,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders {
            client_id: HeaderName::from_static("x-jose-binding-client-id"),
            form: HeaderName::from_static("x-jose-binding-form"),
            claims: HeaderName::from_static("x-jose-binding-claims"),
        }
    }
}

impl IdentityHeaders {
    fn names(&self) -> [&HeaderName; 3] {
        [&self.client_id, &self.form, &self.claims]
    }

    /// True if `name` would be read as one of ours by an upstream that
    /// folds case and reads `_` as `-` (CGI, WSGI, Rack, PHP, nginx's
    /// `$http_` variables).
    fn spoofs(&self, name: &HeaderName) -> bool {
        self.names().iter().any(|ours| same_cgi_name(name, ours))
    }
}

/// Header names compared as CGI-style upstreams compare them: ASCII case
/// folded, `_` equal to `-`. (`http` already lower-cases names.)
fn same_cgi_name(a: &HeaderName, b: &HeaderName) -> bool {
    let (a, b) = (a.as_str().as_bytes(), b.as_str().as_bytes());
    a.len() == b.len() && cgi_starts_with(a, b)
}

/// `name` begins with `prefix` (lower case, `-` only) read CGI-style.
fn cgi_starts_with(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix).all(|(&x, &y)| fold(x) == y)
}

fn fold(b: u8) -> u8 {
    match b {
        b'_' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// Headers that say who the client is, as proxies and CDNs set them:
/// believed only from a trusted proxy, like `Forwarded`.
const CLIENT_ADDRESS: &[&[u8]] = &[
    b"forwarded",
    b"x-real-ip",
    b"true-client-ip",
    b"x-client-ip",
    b"client-ip",
    b"cf-connecting-ip",
    b"fastly-client-ip",
    b"x-cluster-client-ip",
    b"x-originating-ip",
];

/// Headers with which frameworks let a request rename its own path or
/// method after the gateway matched them (a public prefix, the access
/// log): removed from everyone, trusted proxies too.
const REWRITES: &[&[u8]] = &[
    b"x-original-url",
    b"x-rewrite-url",
    b"x-original-uri",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// `name` is one of `words` read CGI-style.
fn is_one_of(name: &HeaderName, words: &[&[u8]]) -> bool {
    let n = name.as_str().as_bytes();
    words
        .iter()
        .any(|w| n.len() == w.len() && cgi_starts_with(n, w))
}

/// True for the `Forwarded` family and the client-address headers in any
/// CGI spelling: `forwarded`, `x-forwarded-*`, `x-real-ip`,
/// `true-client-ip`, `cf-connecting-ip` and the like.
fn is_forwarding(name: &HeaderName) -> bool {
    is_one_of(name, CLIENT_ADDRESS) || cgi_starts_with(name.as_str().as_bytes(), b"x-forwarded-")
}

/// True for the path and method override headers in any CGI spelling.
fn is_rewrite(name: &HeaderName) -> bool {
    is_one_of(name, REWRITES)
}

/// The identity of a verified request, as the upstream will read it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub client_id: HeaderValue,
    pub form: HeaderValue,
    /// base64url (no padding) of the claims JSON exactly as signed.
    pub claims: HeaderValue,
}

impl Identity {
    pub(crate) fn of(v: &crate::Verified) -> Option<Identity> {
        Some(Identity {
            client_id: HeaderValue::from_str(v.client_id.as_str()).ok()?,
            form: HeaderValue::from_static(v.form.as_str()),
            claims: HeaderValue::try_from(crate::protocol::b64::encode(
                v.claims.as_json().as_bytes(),
            ))
            .ok()?,
        })
    }
}

/// How the request reached the gateway, for the `Forwarded` family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hop<'a> {
    pub peer: IpAddr,
    /// The peer is a proxy whose `Forwarded` headers are believed.
    pub trusted: bool,
    /// The host the client asked for (`Host` or the HTTP/2 authority).
    pub host: Option<&'a HeaderValue>,
}

/// What the gateway owns in a request to the upstream: removes every
/// spelling of the identity headers (and, from an untrusted peer, of the
/// `Forwarded` family), then sets them from the verified identity and the
/// hop. `Authorization` goes unless `keep_token`.
pub(crate) fn own_request_headers(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    identity: Option<&Identity>,
    hop: Hop<'_>,
    keep_token: bool,
    request_id: Option<&HeaderValue>,
) {
    let mut previous_for: Vec<HeaderValue> = Vec::new();
    let mut previous_forwarded: Vec<HeaderValue> = Vec::new();
    if hop.trusted {
        previous_for.extend(headers.get_all("x-forwarded-for").iter().cloned());
        previous_forwarded.extend(headers.get_all(FORWARDED).iter().cloned());
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| {
            names.spoofs(n)
                || (is_forwarding(n) && !hop.trusted)
                || is_lookalike(n)
                || is_rewrite(n)
                || is_one_of(n, &[b"x-request-id"])
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if !keep_token {
        headers.remove(AUTHORIZATION);
    }
    if let Some(id) = identity {
        headers.insert(names.client_id.clone(), id.client_id.clone());
        headers.insert(names.form.clone(), id.form.clone());
        headers.insert(names.claims.clone(), id.claims.clone());
    }
    if let Some(id) = request_id {
        headers.insert("x-request-id", id.clone());
    }
    set_forwarded(headers, hop, &previous_for, &previous_forwarded);
}

/// True if `name` may reach the upstream as a request trailer: what may be
/// a trailer at all ([`crate::proxy::hop::trailer_allowed`]), and none of the
/// headers the gateway owns or believes only from a trusted proxy, in any
/// spelling. Trailers come after the gateway vouched for the head, so even
/// a trusted proxy's `X-Forwarded-For` has no place there.
pub(crate) fn request_trailer_allowed(names: &IdentityHeaders, name: &HeaderName) -> bool {
    crate::proxy::hop::trailer_allowed(name)
        && !names.spoofs(name)
        && !is_forwarding(name)
        && !is_rewrite(name)
}

/// Keeps in the request's `Trailer` header only the names that will pass
/// as trailers, so the upstream is not told to expect what it will not get.
pub(crate) fn own_trailer_announcement(headers: &mut HeaderMap, names: &IdentityHeaders) {
    if !headers.contains_key(TRAILER) {
        return;
    }
    let kept: Vec<&str> = crate::proxy::hop::list_items(headers, TRAILER)
        .filter(|n| {
            HeaderName::from_bytes(n.as_bytes()).is_ok_and(|n| request_trailer_allowed(names, &n))
        })
        .collect();
    let value = kept.join(", ");
    headers.remove(TRAILER);
    if let Ok(v) = HeaderValue::try_from(value) {
        if !v.is_empty() {
            headers.insert(TRAILER, v);
        }
    }
}

/// From a trusted proxy, `x_forwarded_for` and friends spelled with `_`
/// are still not the headers it set: only the canonical spelling is kept.
fn is_lookalike(name: &HeaderName) -> bool {
    name.as_str().contains('_') && is_forwarding(name)
}

fn set_forwarded(
    headers: &mut HeaderMap,
    hop: Hop<'_>,
    previous_for: &[HeaderValue],
    previous_forwarded: &[HeaderValue],
) {
    let peer = hop.peer.to_string();
    let xff = join(previous_for, &peer);
    if let Ok(v) = HeaderValue::try_from(xff) {
        headers.insert("x-forwarded-for", v);
    }
    let keep_theirs = |h: &HeaderMap, n: &str| hop.trusted && h.contains_key(n);
    if !keep_theirs(headers, "x-forwarded-proto") {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    }
    if let Some(host) = hop.host {
        if !keep_theirs(headers, "x-forwarded-host") {
            headers.insert("x-forwarded-host", host.clone());
        }
    }
    let node = match hop.peer {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("\"[{a}]\""),
    };
    let mut element = format!("for={node};proto=https");
    if let Some(host) = hop.host.and_then(|h| h.to_str().ok()) {
        element.push_str(";host=");
        quote_into(host, &mut element);
    }
    if let Ok(v) = HeaderValue::try_from(join(previous_forwarded, &element)) {
        headers.insert(FORWARDED, v);
    }
}

/// `a, b, …, last`: earlier values kept in order, ours appended.
fn join(previous: &[HeaderValue], last: &str) -> String {
    let mut out = String::new();
    for v in previous.iter().filter_map(|v| v.to_str().ok()) {
        out.push_str(v);
        out.push_str(", ");
    }
    out.push_str(last);
    out
}

/// An RFC 7230 quoted-string.
fn quote_into(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::hop::header_map as map;

    fn identity() -> Identity {
        Identity {
            client_id: HeaderValue::from_static("client1"),
            form: HeaderValue::from_static("S"),
            claims: HeaderValue::from_static("e30"),
        }
    }

    fn hop(trusted: bool) -> Hop<'static> {
        Hop {
            peer: "192.0.2.7".parse().unwrap(),
            trusted,
            host: None,
        }
    }

    /// The upstream gets the server's request id, never a client's in any
    /// spelling (the server already kept a trusted proxy's as its id).
    #[test]
    fn the_request_id_is_the_servers() {
        let mut h = map(&[("X-Request-Id", "forged"), ("x_request_id", "forged")]);
        let ours = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(false),
            false,
            Some(&ours),
        );
        let ids: Vec<_> = h.get_all("x-request-id").iter().collect();
        assert_eq!(ids, [&ours]);
        assert!(h.get("x_request_id").is_none());
    }

    #[test]
    fn every_spelling_of_an_identity_header_is_replaced() {
        let mut h = map(&[
            ("X-Jose-Binding-Client-Id", "admin"),
            ("x_jose_binding_client_id", "admin"),
            ("X_Jose-Binding_Client-ID", "admin"),
            ("x-jose-binding-client-id", "root"),
            ("x-jose-binding-form", "SE"),
            ("x_jose_binding_claims", "eyJhZG1pbiI6dHJ1ZX0"),
            ("x-jose-binding-client-idx", "kept"),
        ]);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            Some(&identity()),
            hop(false),
            false,
            None,
        );
        let ids: Vec<_> = h.get_all("x-jose-binding-client-id").iter().collect();
        assert_eq!(ids, ["client1"]);
        assert_eq!(h["x-jose-binding-form"], "S");
        assert_eq!(h["x-jose-binding-claims"], "e30");
        for n in h.keys() {
            let folded: String = n.as_str().replace('_', "-");
            assert!(
                !folded.starts_with("x-jose-binding-") || !n.as_str().contains('_'),
                "{n} survived"
            );
        }
        assert_eq!(h["x-jose-binding-client-idx"], "kept");
    }

    #[test]
    fn a_public_request_carries_no_identity() {
        let mut h = map(&[("x-jose-binding-client-id", "admin")]);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(false),
            false,
            None,
        );
        assert!(!h.contains_key("x-jose-binding-client-id"));
    }

    /// Hop-by-hop removal comes first (hop.rs tests it), so naming an
    /// identity header in `Connection` cannot delete the one set after.
    #[test]
    fn connection_cannot_remove_what_the_gateway_sets() {
        let mut h = map(&[
            ("connection", "x-jose-binding-client-id, x-custom"),
            ("x-custom", "1"),
        ]);
        crate::proxy::hop::strip_hop_by_hop(&mut h, false);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            Some(&identity()),
            hop(false),
            false,
            None,
        );
        assert_eq!(h["x-jose-binding-client-id"], "client1");
        assert!(!h.contains_key("x-custom") && !h.contains_key("connection"));
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x_forwarded_for", "10.0.0.2"),
            ("X-Forwarded-Proto", "http"),
            ("forwarded", "for=10.0.0.3"),
            ("x-real-ip", "10.0.0.4"),
        ]);
        let host = HeaderValue::from_static("api.example:8443");
        let hop = Hop {
            host: Some(&host),
            ..hop(false)
        };
        own_request_headers(&mut h, &IdentityHeaders::default(), None, hop, false, None);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert!(!h.contains_key("x_forwarded_for"));
        assert!(!h.contains_key("x-real-ip"));
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example:8443");
        assert_eq!(
            h["forwarded"],
            "for=192.0.2.7;proto=https;host=\"api.example:8443\""
        );
    }

    #[test]
    fn forwarded_headers_from_a_trusted_proxy_are_appended() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
            ("forwarded", "for=203.0.113.9;host=public.example"),
            ("x_forwarded_for", "10.6.6.6"),
        ]);
        let mut v6 = hop(true);
        v6.peer = "2001:db8::1".parse().unwrap();
        own_request_headers(&mut h, &IdentityHeaders::default(), None, v6, false, None);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 2001:db8::1");
        assert_eq!(h["x-forwarded-host"], "public.example");
        assert!(!h.contains_key("x_forwarded_for"));
        assert_eq!(
            h["forwarded"],
            "for=203.0.113.9;host=public.example, for=\"[2001:db8::1]\";proto=https"
        );
    }

    #[test]
    fn authorization_goes_unless_kept() {
        let mut h = map(&[("authorization", "Bearer a.b.c")]);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(false),
            true,
            None,
        );
        assert!(h.contains_key("authorization"));
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(false),
            false,
            None,
        );
        assert!(!h.contains_key("authorization"));
    }

    #[test]
    fn client_address_headers_count_as_forwarding_and_rewrites_always_go() {
        let pairs = [
            ("true-client-ip", "6.6.6.6"),
            ("X-Client-IP", "6.6.6.6"),
            ("cf_connecting_ip", "6.6.6.6"),
            ("client-ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("X_Rewrite_URL", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-client-ipx", "kept"),
        ];
        let mut h = map(&pairs);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(false),
            false,
            None,
        );
        let mut kept: Vec<_> = h
            .keys()
            .map(|n| n.as_str())
            .filter(|n| !n.starts_with("x-forwarded-") && *n != "forwarded")
            .collect();
        kept.sort();
        assert_eq!(kept, ["x-client-ipx"]);
        // A trusted proxy's canonical client address stays; rewrites never.
        let mut h = map(&pairs);
        own_request_headers(
            &mut h,
            &IdentityHeaders::default(),
            None,
            hop(true),
            false,
            None,
        );
        assert_eq!(h["true-client-ip"], "6.6.6.6");
        assert_eq!(h["client-ip"], "6.6.6.6");
        assert!(!h.contains_key("cf_connecting_ip"));
        assert!(!h.contains_key("x-original-url") && !h.contains_key("x-http-method-override"));
    }

    #[test]
    fn request_trailers_and_their_announcement_lose_what_the_gateway_owns() {
        let names = IdentityHeaders::default();
        let mut h = map(&[(
            "trailer",
            "X-Jose-Binding-Client-Id, x-checksum, X-Forwarded-For, x_jose_binding_claims",
        )]);
        own_trailer_announcement(&mut h, &names);
        assert_eq!(h["trailer"], "x-checksum");
        let mut h = map(&[("trailer", "x-forwarded-for, authorization")]);
        own_trailer_announcement(&mut h, &names);
        assert!(!h.contains_key("trailer"));
        for (name, allowed) in [
            ("x-checksum", true),
            ("grpc-status", true),
            ("x-jose-binding-client-id", false),
            ("X_JOSE_BINDING_FORM", false),
            ("x-forwarded-for", false),
            ("true-client-ip", false),
            ("x-original-url", false),
            ("authorization", false),
            ("content-length", false),
        ] {
            let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(request_trailer_allowed(&names, &n), allowed, "{name}");
        }
    }

    #[test]
    fn a_host_with_quotes_stays_one_quoted_string() {
        let host = HeaderValue::from_static("a\"b\\c");
        let mut h = HeaderMap::new();
        let hop = Hop {
            host: Some(&host),
            ..hop(false)
        };
        own_request_headers(&mut h, &IdentityHeaders::default(), None, hop, false, None);
        assert_eq!(
            h["forwarded"],
            r#"for=192.0.2.7;proto=https;host="a\"b\\c""#
        );
    }
}
