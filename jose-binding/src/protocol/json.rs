//! Strict JSON for headers and claims (PROTOCOL.md §7 step 11).
//!
//! serde_json alone keeps the last of two members with the same name; a
//! verifier that resolves `{"alg":"HS256","alg":"none"}` one way while another
//! component resolves it the other way is a classic bypass. This parser refuses
//! repeated names at any depth and caps nesting, and otherwise builds an
//! ordinary `serde_json::Value` (member order preserved).

use std::borrow::Cow;
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
    /// The fixed sentence a `malformed` refusal carries for this reason.
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
    let value = strict(bytes, |de, why| {
        StrictSeed(Validate { depth: 0, why }).deserialize(de)
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotObject),
    }
}

/// Runs one strict read over the whole of `bytes`. The `Cell` carries our
/// own reason for refusing back up, so the refusal path needs no
/// error-message formatting; any other failure is a syntax error.
fn strict<'de, T>(
    bytes: &'de [u8],
    read: impl FnOnce(
        &mut serde_json::Deserializer<serde_json::de::SliceRead<'de>>,
        &Cell<Option<JsonError>>,
    ) -> Result<T, serde_json::Error>,
) -> Result<T, JsonError> {
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = read(&mut de, &why).map_err(|_| why.get().unwrap_or(JsonError::Syntax))?;
    de.end().map_err(|_| JsonError::Syntax)?;
    Ok(value)
}

/// Builds a `Value` under the rules [`Validate`] checks.
#[derive(Clone, Copy)]
struct StrictSeed<'a>(Validate<'a>);

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
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
        finite(v).map(Value::from)
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
        let seed = StrictSeed(self.0.child()?);
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(seed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let seed = StrictSeed(self.0.child()?);
        let mut out = Map::new();
        self.0.members(map, |name, map| {
            out.insert(name.to_owned(), map.next_value_seed(seed)?);
            Ok(())
        })?;
        Ok(Value::Object(out))
    }
}

/// A string member the verifier reads, as found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Member<'a> {
    /// Not in the object.
    #[default]
    Absent,
    /// A string, borrowed from the input when it had no escapes.
    Str(Cow<'a, str>),
    /// Present but not a string.
    Other,
}

impl Member<'_> {
    /// The string, when the member is present and a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A numeric member (a NumericDate) the verifier reads, as found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Num {
    /// Not in the object.
    #[default]
    Absent,
    /// A number, as `f64` (integers included).
    Num(f64),
    /// Present but not a number.
    Other,
}

impl Num {
    /// The number, when the member is present and a number.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Num::Num(n) => Some(n),
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
    /// `alg`: `HS256` for a JWS, `dir` for a JWE.
    pub alg: Member<'a>,
    /// `enc`: `A256GCM` for a JWE.
    pub enc: Member<'a>,
    /// `typ`: must be exactly `JWT`.
    pub typ: Member<'a>,
    /// `cty`: `JWT` on the outer layer of a nested form.
    pub cty: Member<'a>,
    /// `kid`: the client id.
    pub kid: Member<'a>,
    /// Some member named in `forbidden` is present.
    pub forbidden: bool,
}

/// Parses a protected header; `forbidden` lists member names to flag.
pub fn parse_header<'a>(
    bytes: &'a [u8],
    forbidden: &[&str],
) -> Result<HeaderMembers<'a>, JsonError> {
    let slots = HeaderSlots {
        out: HeaderMembers::default(),
        forbidden,
    };
    read_object(bytes, slots).map(|s| s.out)
}

/// The registered claims §7 reads (steps 11–14), from a claims set parsed
/// under exactly the rules of [`parse_object`] but without building a map:
/// the verified claims reach the application as the JSON text itself.
#[derive(Debug, Default)]
pub struct ClaimMembers<'a> {
    /// `iss`: must be the `kid`.
    pub iss: Member<'a>,
    /// `aud`: must be the server's audience.
    pub aud: Member<'a>,
    /// `jti`: the replay cache's key.
    pub jti: Member<'a>,
    /// `iat`: issued-at, seconds since the epoch.
    pub iat: Num,
    /// `exp`: expiry, seconds since the epoch.
    pub exp: Num,
    /// `nbf`: not-before, seconds since the epoch; optional.
    pub nbf: Num,
}

/// Checks `bytes` is one JSON object under the strict rules and reads its
/// registered claims.
pub fn parse_claims(bytes: &[u8]) -> Result<ClaimMembers<'_>, JsonError> {
    read_object(bytes, ClaimMembers::default())
}

/// Where a top-level member's value goes.
enum Slot<'s, 'de> {
    Str(&'s mut Member<'de>),
    Num(&'s mut Num),
}

/// The top-level members one kind of document keeps; the others are
/// validated and dropped.
trait Slots<'de> {
    fn slot(&mut self, name: &str) -> Option<Slot<'_, 'de>>;
    /// Called for every member name, kept or not.
    fn saw(&mut self, _name: &str) {}
}

struct HeaderSlots<'de, 'f> {
    out: HeaderMembers<'de>,
    forbidden: &'f [&'f str],
}

impl<'de> Slots<'de> for HeaderSlots<'de, '_> {
    fn slot(&mut self, name: &str) -> Option<Slot<'_, 'de>> {
        let o = &mut self.out;
        Some(Slot::Str(match name {
            "alg" => &mut o.alg,
            "enc" => &mut o.enc,
            "typ" => &mut o.typ,
            "cty" => &mut o.cty,
            "kid" => &mut o.kid,
            _ => return None,
        }))
    }
    fn saw(&mut self, name: &str) {
        if self.forbidden.contains(&name) {
            self.out.forbidden = true;
        }
    }
}

impl<'de> Slots<'de> for ClaimMembers<'de> {
    fn slot(&mut self, name: &str) -> Option<Slot<'_, 'de>> {
        Some(match name {
            "iss" => Slot::Str(&mut self.iss),
            "aud" => Slot::Str(&mut self.aud),
            "jti" => Slot::Str(&mut self.jti),
            "iat" => Slot::Num(&mut self.iat),
            "exp" => Slot::Num(&mut self.exp),
            "nbf" => Slot::Num(&mut self.nbf),
            _ => return None,
        })
    }
}

fn read_object<'de, S: Slots<'de>>(bytes: &'de [u8], slots: S) -> Result<S, JsonError> {
    strict(bytes, |de, why| {
        serde::Deserializer::deserialize_any(de, TopVisitor { why, slots })
    })
}

struct TopVisitor<'w, S> {
    why: &'w Cell<Option<JsonError>>,
    slots: S,
}

impl<'de, S: Slots<'de>> Visitor<'de> for TopVisitor<'_, S> {
    type Value = S;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<S, A::Error> {
        let child = Validate {
            depth: 1,
            why: self.why,
        };
        let slots = &mut self.slots;
        child.members(map, |name, map| {
            match slots.slot(name) {
                Some(Slot::Str(m)) => *m = map.next_value_seed(StrSeed(child))?,
                Some(Slot::Num(n)) => *n = map.next_value_seed(NumSeed(child))?,
                None => map.next_value_seed(child)?,
            }
            slots.saw(name);
            Ok(())
        })?;
        Ok(self.slots)
    }

    // Any other top-level value is valid JSON but not an object.
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<S, E> {
        Err(self.not_object())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S, A::Error> {
        // The array must still be valid JSON to be "not an object".
        Validate {
            depth: 0,
            why: self.why,
        }
        .visit_seq(seq)?;
        Err(self.not_object())
    }
}

impl<S> TopVisitor<'_, S> {
    fn not_object<E: serde::de::Error>(&self) -> E {
        self.why.set(Some(JsonError::NotObject));
        E::custom(JsonError::NotObject.detail())
    }
}

/// Checks a value under the strict rules without building it.
#[derive(Clone, Copy)]
struct Validate<'w> {
    depth: usize,
    why: &'w Cell<Option<JsonError>>,
}

impl<'w> Validate<'w> {
    fn refuse<E: serde::de::Error>(&self, why: JsonError) -> E {
        self.why.set(Some(why));
        E::custom(why.detail())
    }

    fn child<E: serde::de::Error>(&self) -> Result<Validate<'w>, E> {
        if self.depth + 1 > MAX_DEPTH {
            return Err(self.refuse(JsonError::TooDeep));
        }
        Ok(Validate {
            depth: self.depth + 1,
            why: self.why,
        })
    }

    /// Walks an object's members, refusing a repeated name before its value
    /// is read; `value` must consume each member's value.
    fn members<'de, A: MapAccess<'de>>(
        &self,
        mut map: A,
        mut value: impl FnMut(&str, &mut A) -> Result<(), A::Error>,
    ) -> Result<(), A::Error> {
        let mut names: Vec<Cow<'de, str>> = Vec::new();
        let mut set: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(name) = map.next_key_seed(CowStr)? {
            // Small objects (every header) check with a linear scan; large
            // ones switch to a set so a member flood stays linear.
            if set.is_none() && names.len() >= 16 {
                set = Some(std::mem::take(&mut names).into_iter().collect());
            }
            let dup = match &set {
                Some(s) => s.contains(&name),
                None => names.contains(&name),
            };
            if dup {
                return Err(self.refuse(JsonError::DuplicateMember));
            }
            value(&name, &mut map)?;
            match &mut set {
                Some(s) => {
                    s.insert(name);
                }
                None => names.push(name),
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Validate<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Validate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        finite(v).map(drop)
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.child()?;
        while seq.next_element_seed(child)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let child = self.child()?;
        self.members(map, |_, map| map.next_value_seed(child))
    }
}

fn finite<E: serde::de::Error>(v: f64) -> Result<f64, E> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(E::custom("non-finite number"))
    }
}

/// A string, borrowed from the input when it has no escapes.
struct CowStr;

impl<'de> DeserializeSeed<'de> for CowStr {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A kept member's value: read when it has the slot's type, validated
/// strictly and marked `Other` when not.
struct StrSeed<'w>(Validate<'w>);
struct NumSeed<'w>(Validate<'w>);

impl<'de> DeserializeSeed<'de> for StrSeed<'_> {
    type Value = Member<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> DeserializeSeed<'de> for NumSeed<'_> {
    type Value = Num;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Visitor methods for the values a slot does not keep: validated by
/// [`Validate`], then marked `Other`.
macro_rules! other_values {
    ($($name:ident($($arg:ty)?)),*) => {$(
        fn $name<E: serde::de::Error>(self $(, v: $arg)?) -> Result<Self::Value, E> {
            self.0.$name($(v as $arg)?)?;
            Ok(Self::Value::Other)
        }
    )*};
}

impl<'de> Visitor<'de> for StrSeed<'_> {
    type Value = Member<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(v)))
    }
    other_values!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_unit()
    );
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(|()| Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(|()| Member::Other)
    }
}

impl<'de> Visitor<'de> for NumSeed<'_> {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
        Ok(Num::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
        Ok(Num::Num(v as f64))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Num, E> {
        finite(v).map(Num::Num)
    }
    other_values!(visit_bool(bool), visit_str(&str), visit_unit());
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Num, A::Error> {
        self.0.visit_seq(seq).map(|()| Num::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Num, A::Error> {
        self.0.visit_map(map).map(|()| Num::Other)
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

    /// The claims parser accepts and refuses exactly what `parse_object`
    /// does, with the same reason, and reads the registered claims as found.
    #[test]
    fn claims_parser_agrees_with_parse_object() {
        let mut cases: Vec<Vec<u8>> = [
            &br#"{"iss":"c","aud":"a","iat":1,"exp":2.5,"jti":"j","x":[1,{"y":null}]}"#[..],
            br#"{"jti":"a","jti":"b"}"#,
            br#"{"x":{"jti":1,"\u006ati":2}}"#,
            br#"{"iat":{"a":1,"a":2}}"#,
            br#"{"iat":[1,{"a":[{"b":1,"b":2}]}]}"#,
            br#"{"jti":"\ud800"}"#,
            br#"{"jti":"\udc00x"}"#,
            br#"{"exp":1e400}"#,
            br#"{"exp":"1"}"#,
            br#"{"a":true,"b":false,"c":-1,"d":18446744073709551615}"#,
            b"[1,2]",
            b"[1,{\"a\":1,\"a\":2}]",
            b"\"x\"",
            b"1",
            b"null",
            b"{} x",
            b"",
            b"{\"a\":\"\xff\"}",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        let mut big = String::from("{");
        for i in 0..40 {
            big.push_str(&format!("\"k{i}\":{{\"n\":{i}}},"));
        }
        cases.push(format!("{big}\"k0\":0}}").into_bytes());
        cases.push(format!("{big}\"k40\":0}}").into_bytes());
        for depth in [31, 32] {
            let nest = format!("{{\"iat\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
            cases.push(nest.into_bytes());
        }
        for c in &cases {
            let a = parse_object(c).map(|_| ());
            let b = parse_claims(c).map(|_| ());
            assert_eq!(a, b, "{}", String::from_utf8_lossy(c));
        }
        let r = parse_claims(br#"{"iss":"c\u0031","aud":7,"iat":1,"exp":2.5,"nbf":"0","jti":"j"}"#)
            .unwrap();
        assert_eq!(r.iss.as_str(), Some("c1"));
        assert_eq!(r.aud, Member::Other);
        assert_eq!(r.jti.as_str(), Some("j"));
        assert_eq!(
            (r.iat, r.exp, r.nbf),
            (Num::Num(1.0), Num::Num(2.5), Num::Other)
        );
        let r = parse_claims(b"{}").unwrap();
        assert_eq!((r.iat, r.iss), (Num::Absent, Member::Absent));
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
