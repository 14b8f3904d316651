//! JOSE tokens bound to the TLS 1.3 connection they travel on.
//!
//! Both ends export the connection's keying material ([`Ekm`]), mix it
//! with a shared root key ([`RootKey`]) and derive per-connection subkeys
//! ([`SubKeys`]). Tokens made with them ([`Issuer`]) verify only on that
//! connection ([`ConnectionVerifier`]). The wire contract is
//! docs/PROTOCOL.md.
//!
//! The default build is that core alone, with no IO crate. Features add
//! `keystore-file` (the TOML keystore), `net` (TLS 1.3, HTTP and tower
//! glue: [`layer`], [`server`], [`client`]), `gateway` (a reverse proxy
//! behind the layer), `custody` and `tpm`; docs/ARCHITECTURE.md says
//! which file holds what.
//!
//! This page is the public API: every path a user can name is listed
//! below. The modules under `src/` are private; `unreachable_pub` and
//! `unnameable_types` keep an item from being public by accident, and
//! `missing_docs` keeps every public item documented.

#![forbid(unsafe_code)]

// The rooms, in the order dependencies point: proxy -> serve -> keys ->
// protocol. docs/ARCHITECTURE.md draws them.
mod keys;
mod protocol;
#[cfg(feature = "net")]
mod proxy;
#[cfg(feature = "net")]
mod serve;

// ---- The protocol core: always built, no IO crate.

pub use protocol::claims::Claims;
pub use protocol::client_id::{ClientId, InvalidClientId, CLIENT_ID_MAX};
pub use protocol::error::{ErrorCode, Rejection};
pub use protocol::issuer::{IssueError, Issuer, DEFAULT_TTL_SECS};
pub use protocol::lookup::{ClientKeys, KeyLookup};
pub use protocol::replay::{Replay, ReplayCache};
pub use protocol::schedule::{
    Ekm, EncKey, Fingerprint, KeyFileError, Prk, RootKey, RootKeyError, RootKeyLength, SigKey,
    SoftwareRootKey, SubKeys, EKM_LABEL, EKM_LEN, ROOT_KEY_MAX, ROOT_KEY_MIN,
};
pub use protocol::token::{Form, FormSet, UnknownForm};
pub use protocol::verifier::{ConnectionVerifier, Policy, Verified};

pub use keys::keystore::Keystore;

/// The strict base64url of every token part (no padding, canonical only).
pub use protocol::b64;
/// The offline enrolment bundle (docs/PROTOCOL.md §10.4).
pub use protocol::bundle;
/// The one-line enrolment invite (docs/PROTOCOL.md §10).
pub use protocol::invite;
/// The strict JSON of headers and claims (no duplicate member, bounded
/// depth).
pub use protocol::json;

/// The TLS 1.3 exporter from an exporter_master_secret (RFC 8446 §7.5):
/// the EKM for a party that holds the secret but not the connection (a
/// key log, a TLS-terminating frontend).
pub mod exporter {
    pub use crate::protocol::exporter::{
        channel_binding_ekm, tls13_exporter, BadSecretLength, SuiteHash,
    };
}

/// Tokens taken apart and made without a connection: the layer parser,
/// header analysis, the exact §5 headers, sealing with given subkeys and
/// verification with them. For debuggers, fuzzers and other
/// implementations' tests; a server uses [`ConnectionVerifier`].
pub mod token {
    #[cfg(feature = "test-vectors")]
    pub use crate::protocol::issuer::seal;
    pub use crate::protocol::issuer::REGISTERED;
    #[cfg(feature = "test-vectors")]
    pub use crate::protocol::token::encrypt_jwe;
    pub use crate::protocol::token::{
        analyse_header, headers, sign_jws, sign_jws_encoded, Body, Cty, HeaderMemo, Kind, Layer,
        FORBIDDEN_HEADERS, MAX_CLAIMS_LEN, MAX_HEADER_LEN, MAX_TOKEN_LEN,
    };
    pub use crate::protocol::verifier::{unix_now, verify_with_subkeys};
}

// ---- Key providers.

/// Root keys by client id: the in-memory [`Keystore`] and its pending
/// enrolment invites, its TOML file
/// (feature `keystore-file`), the handle reloads swap, and
/// the reader that gives a config file's errors a line and column.
pub mod keystore {
    #[cfg(feature = "keystore-file")]
    pub use crate::keys::keystore::{
        kind_of, parse_toml, toml_edit, KeystoreError, KeystoreLock, Name, Position, SettingsError,
        TomlSyntaxError, MAX_KEYSTORE_BYTES, MAX_SHOWN_NAME,
    };
    pub use crate::keys::keystore::{
        EnrolRefusal, Invites, KeystoreHandle, PendingInvite, SetInviteError,
    };
}

#[cfg(feature = "custody")]
pub use keys::custody;
pub use keys::private_file;
#[cfg(feature = "age-file")]
pub use keys::sealed;
#[cfg(feature = "tpm")]
pub use keys::tpm;

// ---- The serving glue (feature `net`).

#[cfg(feature = "net")]
pub use serve::{client, echo, enroll, pin, reload, stamp, tls};

/// The binding as a tower layer: put [`Binding`](layer::Binding) in front
/// of any service and every request needs a token bound to its connection.
#[cfg(feature = "net")]
pub mod layer {
    pub use crate::serve::layer::{
        Binding, BindingFuture, BindingLayer, BindingService, ConnectionBinding, Layer,
    };
}

/// The accept loop: TLS 1.3, admission budgets, deadlines and the access
/// log around an [`App`](server::App).
#[cfg(feature = "net")]
pub mod server {
    #[cfg(feature = "proxy-protocol")]
    pub use crate::serve::proxy_protocol::{
        read_proxy_header, Prefixed, ProxyHeaderError, MAX_HEADER,
    };
    pub use crate::serve::server::{serve, App, BoxError, PeerAddr, RequestId, ServerOptions};
    pub use crate::serve::unix_socket::UnixSocketError;
    #[cfg(feature = "frontend")]
    pub use crate::serve::{
        frontend::{EKM_HEADER, EXPORTER_SECRET_HEADER, TLS_CIPHER_HEADER},
        server::{serve_frontend, FrontendListener, FrontendOptions},
    };
}

/// A CIDR block: the gateway's trusted proxies, the balancers that send a
/// PROXY header, the TLS-terminating frontends.
#[cfg(any(feature = "gateway", feature = "proxy-protocol", feature = "frontend"))]
pub use ipnet::IpNet;

/// Metric names, kinds, labels and help text, all in one list; the
/// library records them through the `metrics` facade when a recorder is
/// installed.
#[cfg(feature = "net")]
pub mod metrics {
    pub use crate::serve::metrics::{build_info, describe, Metric, MetricKind, ALL};
}

/// The status listener: `/healthz`, `/readyz` (draining included) and
/// `/metrics`, in every mode.
#[cfg(feature = "net")]
pub mod status {
    pub use crate::serve::status::{serve_status, NotReady, Readiness, RenderMetrics};
}

// ---- The proxies (feature `net`; the gateway also `gateway`).

/// A streaming reverse proxy behind the binding layer, with its upstream
/// pool; [`Gateway::readiness`](gateway::Gateway::readiness) adds its
/// upstream to the status listener's `/readyz`.
#[cfg(feature = "gateway")]
pub mod gateway {
    pub use crate::proxy::gateway::headers::IdentityHeaders;
    pub use crate::proxy::gateway::routes::{BadRoutes, Route};
    pub use crate::proxy::gateway::upstream::{BadUpstream, Upstream};
    pub use crate::proxy::gateway::{Gateway, GatewayConfig, GatewayFuture, GatewayService};
}

/// The body of every response a proxy (the gateway or the sidecar) sends:
/// a buffered answer of its own, or the upstream's body streamed with an
/// idle timeout.
#[cfg(feature = "net")]
pub use proxy::hop::ProxyBody;
#[cfg(feature = "net")]
pub use proxy::sidecar;
