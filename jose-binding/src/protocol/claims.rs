//! A verified claims set, as handlers receive it.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The whole verified claims set: exactly the JSON text the client signed,
/// an object valid under the strict rules of [`crate::protocol::json`], whose
/// registered claims passed §7.
///
/// The verifier checks the text without building a map, so a request pays
/// for one only where a handler asks: as text ([`Claims::as_json`], which the
/// reference echo route writes out as it is), as a map ([`Claims::to_map`]),
/// or as the handler's own type ([`Claims::deserialize`]).
#[derive(Clone, PartialEq)]
pub struct Claims {
    json: Box<str>,
    iat: f64,
    exp: f64,
}

impl Claims {
    pub(crate) fn new(json: Box<str>, iat: f64, exp: f64) -> Self {
        Claims { json, iat, exp }
    }

    /// The claims set as the client serialized it.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The claims set as a map, members in the client's order.
    pub fn to_map(&self) -> Map<String, Value> {
        // Strictly valid JSON with unique names: this parse cannot fail.
        serde_json::from_str(&self.json).unwrap_or_default()
    }

    /// The claims set as the application's own type.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    /// `iat`, seconds since the epoch.
    pub fn issued_at(&self) -> f64 {
        self.iat
    }

    /// `exp`, seconds since the epoch.
    pub fn expires_at(&self) -> f64 {
        self.exp
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Claims").field(&self.as_json()).finish()
    }
}

impl PartialEq<Map<String, Value>> for Claims {
    fn eq(&self, other: &Map<String, Value>) -> bool {
        self.to_map() == *other
    }
}
