//! Strict JSON for headers and claims (PROTOCOL.md §7 step 11).
//!
//! serde_json alone keeps the last of two members with the same name; a
//! verifier that resolves `{"alg":"HS256","alg":"none"}` one way while another
//! component resolves it the other way is a classic bypass. This parser refuses
//! repeated names at any depth and caps nesting, and otherwise builds an
//! ordinary `serde_json::Value` (member order preserved).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Deepest accepted nesting; the top-level object is depth 1.
pub const MAX_DEPTH: usize = 32;

/// Why a document was refused; all are `malformed` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON (includes invalid UTF-8 and lone surrogate escapes).
    Syntax,
    /// Valid JSON, but not an object at the top.
    NotObject,
    /// A member name appears twice in one object.
    DuplicateMember,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl JsonError {
    pub const fn detail(self) -> &'static str {
        match self {
            JsonError::Syntax => "not valid JSON (syntax, UTF-8 or surrogate escape)",
            JsonError::NotObject => "JSON value is not an object",
            JsonError::DuplicateMember => "a JSON member name is repeated",
            JsonError::TooDeep => "JSON nesting is deeper than 32",
        }
    }
}

/// Parses `bytes` as one JSON object under the strict rules.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match (StrictSeed {
        depth: 0,
        why: &why,
    })
    .deserialize(&mut de)
    {
        Ok(v) => v,
        Err(_) => return Err(why.get().unwrap_or(JsonError::Syntax)),
    };
    if de.end().is_err() {
        return Err(JsonError::Syntax);
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

/// Carries the depth down and our own reason for refusing back up, so the
/// refusal path needs no error-message formatting.
#[derive(Clone, Copy)]
struct StrictSeed<'a> {
    depth: usize,
    why: &'a Cell<Option<JsonError>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor {
            depth: self.depth,
            why: self.why,
        })
    }
}

struct StrictVisitor<'a> {
    depth: usize,
    why: &'a Cell<Option<JsonError>>,
}

impl<'a> StrictVisitor<'a> {
    fn refuse<E: serde::de::Error>(&self, why: JsonError) -> E {
        self.why.set(Some(why));
        E::custom(why.detail())
    }

    fn child<E: serde::de::Error>(&self) -> Result<StrictSeed<'a>, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(self.refuse(JsonError::TooDeep));
        }
        Ok(StrictSeed {
            depth,
            why: self.why,
        })
    }
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let seed = self.child()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(seed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let seed = self.child()?;
        let mut out = Map::new();
        let mut names: Option<HashSet<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            // Small objects (every header) check with a linear scan; large ones
            // switch to a set so a member flood stays linear.
            let dup = if out.len() < 16 {
                out.contains_key(&key)
            } else {
                let set = names.get_or_insert_with(|| out.keys().cloned().collect());
                !set.insert(key.clone())
            };
            if dup {
                return Err(self.refuse(JsonError::DuplicateMember));
            }
            let value = map.next_value_seed(seed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects_in_order() {
        let m = parse_object(br#"{"b":1,"a":[1,{"c":null}],"d":1.5}"#).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["b", "a", "d"]);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"alg":"HS256","alg":"none"}"#),
            Err(JsonError::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"x":{"y":[{"z":1,"z":2}]}}"#),
            Err(JsonError::DuplicateMember)
        );
        // Escaped spelling of the same name is the same name.
        assert_eq!(
            parse_object(br#"{"alg":1,"\u0061lg":2}"#),
            Err(JsonError::DuplicateMember)
        );
    }

    #[test]
    fn refuses_duplicates_in_large_objects() {
        let mut s = String::from("{");
        for i in 0..40 {
            s.push_str(&format!("\"k{i}\":{i},"));
        }
        s.push_str("\"k3\":0}");
        assert_eq!(parse_object(s.as_bytes()), Err(JsonError::DuplicateMember));
    }

    #[test]
    fn depth_limit_is_32() {
        let ok = format!(
            "{}1{}",
            "{\"a\":".repeat(31) + "[",
            "]".to_owned() + &"}".repeat(31)
        );
        assert!(parse_object(ok.as_bytes()).is_ok(), "depth 32 is accepted");
        let deep = format!(
            "{}1{}",
            "{\"a\":".repeat(32) + "[",
            "]".to_owned() + &"}".repeat(32)
        );
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn refuses_bad_text() {
        assert_eq!(parse_object(b"[1]"), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"\"x\""), Err(JsonError::NotObject));
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":"\ud800"}"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":"\udc00x"}"#), Err(JsonError::Syntax));
        assert_eq!(parse_object(b"{} x"), Err(JsonError::Syntax));
        assert_eq!(parse_object(b""), Err(JsonError::Syntax));
        assert_eq!(parse_object(br#"{"a":1e400}"#), Err(JsonError::Syntax));
        assert!(
            parse_object(br#"{"a":"\ud83d\ude00"}"#).is_ok(),
            "valid pair"
        );
    }
}
