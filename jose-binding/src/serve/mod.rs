//! The serving glue (feature `net`): TLS 1.3 and the EKM export, the
//! tower layer, the accept loop with its admission budgets, throttled
//! logging and deadlines, reload of keys and certificates, the bound
//! client and its stamping layer, and the reference echo app.

pub(crate) mod admission;
pub mod client;
pub mod echo;
pub mod enroll;
#[cfg(feature = "frontend")]
pub(crate) mod frontend;
pub(crate) mod layer;
pub(crate) mod metrics;
pub mod pin;
#[cfg(feature = "proxy-protocol")]
pub(crate) mod proxy_protocol;
pub mod reload;
pub(crate) mod server;
pub mod stamp;
pub(crate) mod status;
pub(crate) mod throttle;
pub mod tls;
pub(crate) mod unix_socket;
pub(crate) mod workers;
