//! The three token forms of §5 and the server's set of accepted ones.

/// The three token forms of §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// `signed` (S): one HS256 JWS over the claims.
    Signed,
    /// `encrypted-then-signed` (ES): an HS256 JWS over a dir/A256GCM JWE of
    /// the claims.
    EncryptedThenSigned,
    /// `signed-then-encrypted` (SE): a dir/A256GCM JWE over a form-S token.
    SignedThenEncrypted,
}

impl Form {
    /// The three forms, in the §5 table's order.
    pub const ALL: [Form; 3] = [
        Form::Signed,
        Form::EncryptedThenSigned,
        Form::SignedThenEncrypted,
    ];

    /// The wire name, as in the echo route and configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Form::Signed => "signed",
            Form::EncryptedThenSigned => "encrypted-then-signed",
            Form::SignedThenEncrypted => "signed-then-encrypted",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Form::Signed => 1,
            Form::EncryptedThenSigned => 2,
            Form::SignedThenEncrypted => 4,
        }
    }
}

impl std::fmt::Display for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unknown form name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown form {0:?}: expected signed, encrypted-then-signed or signed-then-encrypted")]
pub struct UnknownForm(pub String);

impl std::str::FromStr for Form {
    type Err = UnknownForm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Form::ALL
            .into_iter()
            .find(|f| f.as_str() == s || short_name(*f) == s)
            .ok_or_else(|| UnknownForm(s.to_owned()))
    }
}

/// By the wire name, as in a settings file (`form = "signed"`).
impl serde::Serialize for Form {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The wire name or its short alias. The error does not quote the input:
/// a settings file's value may be a key pasted in the wrong place.
impl<'de> serde::Deserialize<'de> for Form {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse()
            .map_err(|_| serde::de::Error::custom("unknown form"))
    }
}

/// Short aliases accepted on command lines: S, ES, SE.
const fn short_name(f: Form) -> &'static str {
    match f {
        Form::Signed => "S",
        Form::EncryptedThenSigned => "ES",
        Form::SignedThenEncrypted => "SE",
    }
}

/// A set of forms (the server's policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormSet(u8);

impl FormSet {
    /// All three forms (the default policy).
    pub const ALL: FormSet = FormSet(7);
    /// No form: a policy with it refuses every token as `form_not_allowed`.
    pub const NONE: FormSet = FormSet(0);

    /// This set with `f` added.
    pub fn with(self, f: Form) -> FormSet {
        FormSet(self.0 | f.bit())
    }
    /// Whether `f` is in the set.
    pub fn contains(self, f: Form) -> bool {
        self.0 & f.bit() != 0
    }
    /// The forms in the set, in [`Form::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Form> {
        Form::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl FromIterator<Form> for FormSet {
    fn from_iter<I: IntoIterator<Item = Form>>(iter: I) -> Self {
        iter.into_iter().fold(FormSet::NONE, FormSet::with)
    }
}
