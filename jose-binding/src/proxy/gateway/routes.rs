//! Routes: which upstream a path goes to, and who may call it.
//!
//! A route is a path prefix matched at a segment boundary, as a public
//! path is; the longest matching prefix wins. Unless the only route is the
//! one for `/`, a path an upstream could read as another (a dot segment,
//! `//`, `\`, `;`, an encoded separator) goes nowhere: `/open/../admin/`
//! must not reach the `/admin/` upstream past the `/admin/` rules, nor
//! `/api/../x` an upstream's `/x` that no route covers.

use serde_json::{Map, Value};

use crate::proxy::gateway::upstream::Upstream;
use crate::Verified;

/// A path prefix, the upstream it goes to, and the rules a verified
/// client must meet there.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Route {
    /// Where the route starts: `/admin/` covers `/admin/…`; `/admin`
    /// covers `/admin` and `/admin/…`.
    pub prefix: String,
    /// Where its requests go.
    pub upstream: Upstream,
    /// Client ids allowed (a trailing `*` matches a prefix of the id);
    /// `None`: every verified client.
    pub clients: Option<Vec<String>>,
    /// Claims a token must carry, each with exactly this JSON value.
    pub require_claims: Map<String, Value>,
    /// Forwarded without a token (a WebSocket upgrade there still needs
    /// one, as on a public path).
    pub public: bool,
}

impl Route {
    /// A route for `prefix` to `upstream`, open to every verified client.
    pub fn new(prefix: impl Into<String>, upstream: Upstream) -> Self {
        Route {
            prefix: prefix.into(),
            upstream,
            clients: None,
            require_claims: Map::new(),
            public: false,
        }
    }

    /// Whether `path` is under this route's prefix.
    fn covers(&self, path: &str) -> bool {
        covers(&self.prefix, path)
    }

    /// Whether the route has rules beyond a verified token.
    pub(crate) fn has_rules(&self) -> bool {
        self.clients.is_some() || !self.require_claims.is_empty()
    }

    /// Whether `verified` may call this route.
    pub(crate) fn allows(&self, verified: &Verified) -> Result<(), Denied> {
        if let Some(clients) = &self.clients {
            let id = verified.client_id.as_str();
            if !clients.iter().any(|p| client_matches(p, id)) {
                return Err(Denied::Client);
            }
        }
        if self.require_claims.is_empty() {
            return Ok(());
        }
        let claims = verified.claims.to_map();
        if self
            .require_claims
            .iter()
            .any(|(name, want)| claims.get(name) != Some(want))
        {
            return Err(Denied::Claim);
        }
        Ok(())
    }
}

/// Why a verified client may not call a route, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Its id is not in the route's `clients`.
    Client,
    /// A required claim is missing or has another value.
    Claim,
}

impl Denied {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Denied::Client => "client_not_allowed",
            Denied::Claim => "claim_not_matched",
        }
    }
}

/// `pattern` is an id, or a prefix of ids ending in `*`.
fn client_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => pattern == id,
    }
}

/// A prefix ending in `/` covers what follows it and the path without
/// that `/` (`/admin/` covers `/admin`, which many upstreams serve as
/// `/admin/`); one that does not covers itself and what follows a `/`.
/// Letters match in any case, since an upstream may not tell `/ADMIN/`
/// from `/admin/`.
pub(crate) fn covers(prefix: &str, path: &str) -> bool {
    let (p, s) = (prefix.as_bytes(), path.as_bytes());
    if s.len() < p.len() {
        return prefix.ends_with('/')
            && s.len() + 1 == p.len()
            && p[..s.len()].eq_ignore_ascii_case(s);
    }
    if !s[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    let rest = &s[p.len()..];
    prefix.ends_with('/') || rest.is_empty() || rest[0] == b'/'
}

/// Whether `path` reads the same to every upstream, as far as routing
/// goes: plain ([`super::is_plain`]), and no percent-encoded unreserved
/// character or `%` itself (`/%61dmin/` is `/admin/` to a server that
/// decodes it, `/%2561dmin/` to one that decodes twice). Other escapes
/// (`%20`) pass.
fn reads_the_same(path: &str) -> bool {
    if !super::is_plain(path) {
        return false;
    }
    let b = path.as_bytes();
    let hex = |i: usize| b.get(i).and_then(|c| (*c as char).to_digit(16));
    for (i, _) in b.iter().enumerate().filter(|(_, c)| **c == b'%') {
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return false;
        };
        let decoded = (hi * 16 + lo) as u8;
        if decoded.is_ascii_alphanumeric() || b"-._~%".contains(&decoded) {
            return false;
        }
    }
    true
}

/// Where a path goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The index of the route that covers it.
    Route(usize),
    /// No route covers it.
    NoRoute,
    /// It is not plain, and some route is not for `/`.
    NotPlain,
}

/// Routes, longest prefix first.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    routes: Vec<Route>,
}

impl Table {
    /// The table of `routes`; a prefix that does not start with `/`, or
    /// two routes for one prefix, are refused.
    pub(crate) fn new(mut routes: Vec<Route>) -> Result<Table, BadRoutes> {
        if let Some(r) = routes.iter().find(|r| !r.prefix.starts_with('/')) {
            return Err(BadRoutes::Prefix(r.prefix.clone()));
        }
        // A public request has no token, so rules on it could never be
        // checked: refused rather than silently not applied.
        if let Some(r) = routes.iter().find(|r| r.public && r.has_rules()) {
            return Err(BadRoutes::PublicWithRules(r.prefix.clone()));
        }
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(a.prefix.cmp(&b.prefix))
        });
        if let Some(w) = routes.windows(2).find(|w| w[0].prefix == w[1].prefix) {
            return Err(BadRoutes::Twice(w[0].prefix.clone()));
        }
        Ok(Table { routes })
    }

    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for `path`.
    pub(crate) fn lookup(&self, path: &str) -> Lookup {
        // Only a lone route for `/` covers every reading of every path.
        let by_path = self.routes.iter().any(|r| r.prefix != "/");
        if by_path && !reads_the_same(path) {
            return Lookup::NotPlain;
        }
        match self.routes.iter().position(|r| r.covers(path)) {
            Some(i) => Lookup::Route(i),
            None => Lookup::NoRoute,
        }
    }
}

/// Why a route table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRoutes {
    /// A prefix that does not start with `/`.
    #[error("route prefix {0:?}: a prefix starts with /")]
    Prefix(String),
    /// Two routes for one prefix.
    #[error("two routes for the prefix {0:?}")]
    Twice(String),
    /// A public route that names clients or claims, which a request
    /// without a token cannot meet or fail.
    #[error("route {0:?}: a public route takes no token, so it cannot require clients or claims")]
    PublicWithRules(String),
    /// A public path that overlaps a route with rules: requests there
    /// would need no token, so the route's rules could not be checked.
    #[error(
        "public path {public:?} overlaps route {route:?}, which names clients or claims: \
         a request there would need no token, so the route's rules could not be checked"
    )]
    PublicPathOverRules {
        /// The public path prefix.
        public: String,
        /// The route's prefix.
        route: String,
    },
    /// An `https://` upstream without the roots to verify it.
    #[error("route {0:?}: an https:// upstream needs the CA its certificate chains to")]
    NoUpstreamRoots(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::claims::Claims;

    fn up(port: u16) -> Upstream {
        format!("http://127.0.0.1:{port}").parse().unwrap()
    }

    fn verified(client: &str, claims: &str) -> Verified {
        Verified {
            client_id: crate::ClientId::new(client).unwrap(),
            form: crate::Form::Signed,
            claims: Claims::new(claims.into(), 0.0, 0.0),
            key_index: 0,
        }
    }

    #[test]
    fn the_longest_prefix_wins_at_a_segment_boundary() {
        let t = Table::new(vec![
            Route::new("/", up(1)),
            Route::new("/orders/", up(2)),
            Route::new("/orders/archive", up(3)),
        ])
        .unwrap();
        let at = |p| match t.lookup(p) {
            Lookup::Route(i) => t.routes()[i].prefix.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(at("/orders/7"), "/orders/");
        assert_eq!(at("/orders/archive"), "/orders/archive");
        assert_eq!(at("/orders/archive/2020"), "/orders/archive");
        assert_eq!(at("/orders/archived"), "/orders/");
        assert_eq!(at("/ordersx"), "/");
        // Any case, and the prefix without its slash, are the route's.
        assert_eq!(at("/ORDERS/7"), "/orders/");
        assert_eq!(at("/orders"), "/orders/");
        assert_eq!(at("/Orders/Archive/x"), "/orders/archive");
        for sneaky in [
            "/x/../orders/7",
            "/orders/%2e%2e/admin",
            "//orders/",
            "/a;b",
            "/a\\b",
            "/%6frders/7",
            "/%4Frders/7",
            "/x/%2561",
            "/x/%7e",
            "/x/%",
            "/x/%g1",
        ] {
            assert_eq!(at(sneaky), "NotPlain", "{sneaky}");
        }
        assert_eq!(
            at("/files/my%20doc"),
            "/",
            "an escape no upstream reads as a letter"
        );
        let no_root = Table::new(vec![Route::new("/api/", up(1))]).unwrap();
        assert_eq!(no_root.lookup("/other"), Lookup::NoRoute);
        // `/api/../x` would reach the upstream's `/x`, which no route covers.
        assert_eq!(no_root.lookup("/api/../x"), Lookup::NotPlain);
        // A lone route for `/` has nothing to confuse a path with.
        let root = Table::new(vec![Route::new("/", up(1))]).unwrap();
        assert_eq!(root.lookup("/a/../b"), Lookup::Route(0));
    }

    #[test]
    fn a_bad_table_is_refused() {
        assert_eq!(
            Table::new(vec![Route::new("api/", up(1))]).unwrap_err(),
            BadRoutes::Prefix("api/".into())
        );
        assert_eq!(
            Table::new(vec![Route::new("/a/", up(1)), Route::new("/a/", up(2))]).unwrap_err(),
            BadRoutes::Twice("/a/".into())
        );
        let mut open = Route::new("/open/", up(1));
        open.public = true;
        open.clients = Some(vec!["ops".into()]);
        assert_eq!(
            Table::new(vec![open]).unwrap_err(),
            BadRoutes::PublicWithRules("/open/".into())
        );
    }

    #[test]
    fn a_public_path_over_a_route_with_rules_and_https_without_roots_are_refused() {
        use crate::proxy::gateway::GatewayConfig;
        let mut admin = Route::new("/admin/", up(1));
        admin.clients = Some(vec!["ops".into()]);
        for public in ["/admin/health", "/", "/ADMIN", "/admin"] {
            let mut cfg = GatewayConfig::with_routes(vec![admin.clone()]);
            cfg.public_paths = vec![public.into()];
            assert!(
                matches!(cfg.table(), Err(BadRoutes::PublicPathOverRules { .. })),
                "{public}"
            );
        }
        let mut cfg = GatewayConfig::with_routes(vec![admin.clone()]);
        cfg.public_websocket_paths = vec!["/admin/feed".into()];
        assert!(cfg.table().is_err());
        let mut cfg = GatewayConfig::with_routes(vec![admin.clone()]);
        cfg.public_paths = vec!["/health".into()];
        assert!(cfg.table().is_ok(), "no overlap");
        let https = Route::new("/s/", "https://api.internal".parse().unwrap());
        let cfg = GatewayConfig::with_routes(vec![https]);
        assert_eq!(
            cfg.table().unwrap_err(),
            BadRoutes::NoUpstreamRoots("/s/".into())
        );
    }

    #[test]
    fn who_may_call_a_route() {
        let mut r = Route::new("/admin/", up(1));
        r.clients = Some(vec!["ops".into(), "ci-*".into()]);
        r.require_claims.insert("role".into(), Value::from("admin"));
        assert_eq!(r.allows(&verified("ops", r#"{"role":"admin"}"#)), Ok(()));
        assert_eq!(r.allows(&verified("ci-7", r#"{"role":"admin"}"#)), Ok(()));
        assert_eq!(
            r.allows(&verified("opsx", r#"{"role":"admin"}"#)),
            Err(Denied::Client)
        );
        assert_eq!(
            r.allows(&verified("ops", r#"{"role":"reader"}"#)),
            Err(Denied::Claim)
        );
        assert_eq!(r.allows(&verified("ops", r#"{}"#)), Err(Denied::Claim));
        // An exact value: "admin" is not ["admin"].
        assert_eq!(
            r.allows(&verified("ops", r#"{"role":["admin"]}"#)),
            Err(Denied::Claim)
        );
        assert_eq!(
            Route::new("/", up(1)).allows(&verified("any", "{}")),
            Ok(())
        );
    }
}
