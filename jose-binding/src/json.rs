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
                // A scan over a few keys is cheaper than hashing the name.
                out.keys().any(|k| *k == key)
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

/// A header member the verifier reads, as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Member<'a> {
    #[default]
    Absent,
    Str(std::borrow::Cow<'a, str>),
    /// Present but not a string.
    Other,
}

impl Member<'_> {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The protected-header members §7 reads, and whether a forbidden member is
/// present. Parsed under exactly the rules of [`parse_object`] (repeated names
/// at any depth, nesting, UTF-8, surrogates), without building a map: the
/// verifier's hot path reads five members and allocates for none of them in
/// the common case.
#[derive(Debug, Default)]
pub struct HeaderMembers<'a> {
    pub alg: Member<'a>,
    pub enc: Member<'a>,
    pub typ: Member<'a>,
    pub cty: Member<'a>,
    pub kid: Member<'a>,
    /// Some member named in `forbidden` is present.
    pub forbidden: bool,
}

/// Parses a protected header; `forbidden` lists member names to flag.
pub fn parse_header<'a>(
    bytes: &'a [u8],
    forbidden: &[&str],
) -> Result<HeaderMembers<'a>, JsonError> {
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let visitor = HeaderVisitor {
        why: &why,
        forbidden,
    };
    let members = match serde::Deserializer::deserialize_any(&mut de, visitor) {
        Ok(m) => m,
        Err(_) => return Err(why.get().unwrap_or(JsonError::Syntax)),
    };
    if de.end().is_err() {
        return Err(JsonError::Syntax);
    }
    Ok(members)
}

struct HeaderVisitor<'w, 'f> {
    why: &'w Cell<Option<JsonError>>,
    forbidden: &'f [&'f str],
}

impl<'de> Visitor<'de> for HeaderVisitor<'_, '_> {
    type Value = HeaderMembers<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let child = StrictSeed {
            depth: 1,
            why: self.why,
        };
        let mut out = HeaderMembers::default();
        let mut seen: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        while let Some(key) = map.next_key_seed(CowStr)? {
            // Headers are at most 1 KiB, so a linear scan stays small.
            if seen.contains(&key) {
                self.why.set(Some(JsonError::DuplicateMember));
                return Err(serde::de::Error::custom(
                    JsonError::DuplicateMember.detail(),
                ));
            }
            let slot = match &*key {
                "alg" => Some(&mut out.alg),
                "enc" => Some(&mut out.enc),
                "typ" => Some(&mut out.typ),
                "cty" => Some(&mut out.cty),
                "kid" => Some(&mut out.kid),
                _ => None,
            };
            match slot {
                Some(slot) => *slot = map.next_value_seed(MemberSeed(child))?,
                None => {
                    map.next_value_seed(child)?;
                }
            }
            if self.forbidden.contains(&&*key) {
                out.forbidden = true;
            }
            seen.push(key);
        }
        Ok(out)
    }

    // Any other top-level value is valid JSON but not an object.
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Err(self.not_object())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Validate the array (it must still be valid JSON to be "not an object").
        let child = StrictSeed {
            depth: 1,
            why: self.why,
        };
        while seq.next_element_seed(child)?.is_some() {}
        Err(self.not_object())
    }
}

impl HeaderVisitor<'_, '_> {
    fn not_object<E: serde::de::Error>(&self) -> E {
        self.why.set(Some(JsonError::NotObject));
        E::custom(JsonError::NotObject.detail())
    }
}

/// A string, borrowed from the input when it has no escapes.
struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

/// A member value: kept when it is a string, validated strictly otherwise.
struct MemberSeed<'w>(StrictSeed<'w>);

impl<'de> DeserializeSeed<'de> for MemberSeed<'_> {
    type Value = Member<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(MemberVisitor(self.0))
    }
}

struct MemberVisitor<'w>(StrictSeed<'w>);

impl<'de> Visitor<'de> for MemberVisitor<'_> {
    type Value = Member<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(std::borrow::Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(std::borrow::Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(std::borrow::Cow::Owned(v)))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        StrictVisitor {
            depth: self.0.depth,
            why: self.0.why,
        }
        .visit_seq(seq)
        .map(|_| Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        StrictVisitor {
            depth: self.0.depth,
            why: self.0.why,
        }
        .visit_map(map)
        .map(|_| Member::Other)
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

    /// The header parser accepts and refuses exactly what `parse_object` does.
    #[test]
    fn header_parser_agrees_with_parse_object() {
        let cases: &[&[u8]] = &[
            br#"{"alg":"HS256","typ":"JWT","kid":"c"}"#,
            br#"{"alg":"HS256","alg":"none"}"#,
            br#"{"alg":1,"\u0061lg":2}"#,
            br#"{"x":{"y":[{"z":1,"z":2}]}}"#,
            br#"{"kid":{"a":1,"a":2}}"#,
            br#"{"kid":"\ud800"}"#,
            br#"{"typ":"J\u0057T","kid":"caf\u00e9"}"#,
            b"[1,2]",
            b"[1,{\"a\":1,\"a\":2}]",
            b"\"x\"",
            b"1",
            b"null",
            b"{} x",
            b"",
            b"{\"a\":\"\xff\"}",
            br#"{"a":1e400}"#,
        ];
        for c in cases {
            let a = parse_object(c).map(|_| ());
            let b = parse_header(c, &[]).map(|_| ());
            assert_eq!(a, b, "{}", String::from_utf8_lossy(c));
        }
        let deep = format!("{{\"kid\":{}1{}}}", "[".repeat(32), "]".repeat(32));
        assert_eq!(
            parse_header(deep.as_bytes(), &[]).unwrap_err(),
            JsonError::TooDeep
        );
        assert_eq!(
            parse_object(deep.as_bytes()).unwrap_err(),
            JsonError::TooDeep
        );
        let ok = format!("{{\"kid\":{}1{}}}", "[".repeat(31), "]".repeat(31));
        assert!(parse_header(ok.as_bytes(), &[]).is_ok());
    }

    #[test]
    fn header_members_are_read() {
        let h = parse_header(
            br#"{"typ":"J\u0057T","alg":"HS256","kid":7,"zip":"DEF"}"#,
            &["zip"],
        )
        .unwrap();
        assert_eq!(h.typ.as_str(), Some("JWT"));
        assert_eq!(h.alg.as_str(), Some("HS256"));
        assert_eq!(h.kid, Member::Other);
        assert_eq!(h.cty, Member::Absent);
        assert!(h.forbidden);
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
