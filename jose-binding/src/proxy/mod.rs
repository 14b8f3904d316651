//! The proxies, on top of the serving glue: what both share ([`hop`]:
//! hop-by-hop headers, trailers, tunnels), the gateway in front of any
//! HTTP service (feature `gateway`), and the client sidecar for apps in
//! any language.

#[cfg(feature = "gateway")]
pub(crate) mod gateway;
pub(crate) mod hop;
mod retry;
pub mod sidecar;
