//! jwt-server's application, as a library so that the demo and the tests
//! serve the same app the binary does.

#![forbid(unsafe_code)]

pub mod app;
