//! Key providers: where root keys live, behind the core's
//! [`KeyLookup`](crate::protocol::lookup::KeyLookup) port. The in-memory
//! keystore and the one 0600 writer are always built; the keystore's TOML
//! file (`keystore-file`), t-of-n custody (`custody`) and TPM-held keys
//! (`tpm`) are features.

#[cfg(feature = "custody")]
pub mod custody;
pub(crate) mod keystore;
pub mod private_file;
#[cfg(feature = "age-file")]
pub mod sealed;
#[cfg(feature = "tpm")]
pub mod tpm;
