//! Compact JWS/JWE layers: parsing with the §7 syntax checks (steps 3–7),
//! and sealing/opening with the raw primitives.
//!
//! The verifier does not hand tokens to a general JOSE library: it needs
//! constant-time MAC comparison, a header allow-list and duplicate-member
//! refusal that josekit 0.10 does not give, and the vectors need a fixed IV.
//! josekit stays in the tests as an independent cross-check.
//!
//! Split along its seams: the forms and the policy's set of them
//! (`forms.rs`), the layer parser (`layer.rs`), header analysis and its
//! per-connection memo (`header.rs`), and sealing (`seal.rs`); the exact
//! §5 headers are [`headers`].

mod forms;
mod header;
mod layer;
mod seal;

pub use forms::{Form, FormSet, UnknownForm};
pub(crate) use header::NON_CANONICAL;
pub use header::{analyse_header, HeaderMemo};
pub use layer::{Body, Cty, Kind, Layer};
#[cfg(any(test, feature = "test-vectors"))]
pub use seal::encrypt_jwe;
pub(crate) use seal::encrypt_jwe_encoded;
pub use seal::{sign_jws, sign_jws_encoded};

/// Longest accepted token, in characters (step 2).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Largest accepted decoded protected header (step 4).
pub const MAX_HEADER_LEN: usize = 1024;
/// Largest accepted decoded claims set (step 11).
pub const MAX_CLAIMS_LEN: usize = 8 * 1024;

/// Header members that are refused outright (step 5): each either changes how
/// the token must be processed (`crit`, `zip`, `b64`) or names a key source
/// other than the connection (`jku`, `jwk`, `x5*`).
pub const FORBIDDEN_HEADERS: [&str; 9] = [
    "crit", "zip", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "b64",
];

/// The exact headers of §5, members in the order the table shows them.
pub mod headers {
    /// Form S, and the inner JWS of form SE.
    pub fn jws(kid: &str) -> String {
        format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#)
    }
    /// The outer JWS of form ES.
    pub fn jws_nested(kid: &str) -> String {
        format!(r#"{{"alg":"HS256","typ":"JWT","cty":"JWT","kid":"{kid}"}}"#)
    }
    /// The inner JWE of form ES.
    pub fn jwe(kid: &str) -> String {
        format!(r#"{{"alg":"dir","enc":"A256GCM","typ":"JWT","kid":"{kid}"}}"#)
    }
    /// The outer JWE of form SE.
    pub fn jwe_nested(kid: &str) -> String {
        format!(r#"{{"alg":"dir","enc":"A256GCM","typ":"JWT","cty":"JWT","kid":"{kid}"}}"#)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::schedule::{EncKey, SigKey};

    #[test]
    fn form_names() {
        for f in Form::ALL {
            assert_eq!(f.as_str().parse::<Form>(), Ok(f));
        }
        assert_eq!("ES".parse::<Form>(), Ok(Form::EncryptedThenSigned));
        assert!("jwt".parse::<Form>().is_err());
        let set: FormSet = [Form::Signed].into_iter().collect();
        assert!(set.contains(Form::Signed) && !set.contains(Form::SignedThenEncrypted));
    }

    #[test]
    fn jws_round_trip_and_tamper() {
        let key = SigKey::from_bytes([9; 32]);
        let t = sign_jws(&headers::jws("c"), b"{}", &key);
        let layer = Layer::parse(&t).unwrap();
        assert!(layer.verify_mac(&key));
        assert!(!layer.verify_mac(&SigKey::from_bytes([8; 32])));
    }

    #[test]
    fn jwe_round_trip_and_tamper() {
        let key = EncKey::from_bytes([9; 32]);
        let t = encrypt_jwe(&headers::jwe("c"), b"hello", &key, [1; 12]);
        let layer = Layer::parse(&t).unwrap();
        assert_eq!(layer.decrypt(&key).as_deref(), Some(&b"hello"[..]));
        assert!(layer.decrypt(&EncKey::from_bytes([8; 32])).is_none());
    }
}
