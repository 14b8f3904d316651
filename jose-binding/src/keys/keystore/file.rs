//! The keystore's TOML file format (feature `keystore-file`).

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use toml_edit::{ImDocument, Item, TableLike, Value};
use zeroize::Zeroizing;

use super::{ClientKeys, Keystore, PendingInvite};
use crate::keys::private_file::{write_private, Existing};
use crate::protocol::client_id::ClientId;
use crate::protocol::schedule::{KeyFileError, SoftwareRootKey};

/// Longest keystore file read (a keystore is a few KiB).
pub const MAX_KEYSTORE_BYTES: u64 = 4 << 20;

/// What can be wrong with a keystore. Every message says where (line and
/// column, and the field) and never holds text from the file but field
/// names and client ids: the parser's own messages quote values (`invalid
/// type: string "<the key>"`), so none of them is passed on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The file could not be read: absent, unreadable, or not UTF-8.
    #[error("cannot read keystore {path}: {source}")]
    Io {
        /// The path as given.
        path: String,
        /// The error from the file system.
        source: std::io::Error,
    },
    /// The file is over [`MAX_KEYSTORE_BYTES`]; it is not read.
    #[error("keystore is larger than 4 MiB")]
    TooLarge,
    /// The text is not valid TOML.
    #[error("keystore is {0}")]
    Syntax(TomlSyntaxError),
    /// `clients`, a client's table, `keys` or one key has the wrong TOML type.
    #[error("keystore, {at}: `{field}` must be {expected}, not {found}")]
    WrongType {
        /// Where the item is.
        at: Position,
        /// Its dotted path (`clients.<id>.keys[2]`).
        field: String,
        /// The type it must have, in words.
        expected: &'static str,
        /// The type it has ([`kind_of`]), never its value.
        found: &'static str,
    },
    /// A field other than `clients` and `invites` at the top, other than
    /// `keys` in a client's table, or other than `secret`, `expires` and
    /// `url` in an invite's.
    #[error("keystore, {at}: unknown field {name} in {table} (the fields there are {allowed})")]
    UnknownField {
        /// Where the field's name is.
        at: Position,
        /// The field's name, shown only when short.
        name: Name,
        /// The table it is in, in words.
        table: String,
        /// The fields that table takes.
        allowed: &'static str,
    },
    /// An invite's table lacks `secret`, `expires` or `url`.
    #[error("keystore, {at}: invite {client} has no `{field}`")]
    MissingField {
        /// Where the invite's table is.
        at: Position,
        /// The client id.
        client: String,
        /// The field missing.
        field: &'static str,
    },
    /// An invite's `secret` is not unpadded base64url of 32 bytes, its
    /// `expires` not a non-negative integer, or its `url` not
    /// `https://host[:port]`.
    #[error("keystore, {at}: invite {client}: `{field}` {problem}")]
    BadInvite {
        /// Where the value is.
        at: Position,
        /// The client id.
        client: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it, without its text.
        problem: &'static str,
    },
    /// A client and a pending invite of the same id: the invite would
    /// enrol a client that exists.
    #[error("keystore, {at}: {client} is both a client and a pending invite; remove one")]
    InviteForClient {
        /// Where the invite's table is.
        at: Position,
        /// The client id.
        client: String,
    },
    /// A `[clients.<id>]` name is not a valid client id (§1).
    #[error("keystore, {at}: client id {id} is not 1-64 characters of [A-Za-z0-9._-]")]
    BadClientId {
        /// Where the client's table is.
        at: Position,
        /// The name, shown only when short.
        id: Name,
    },
    /// A client's table has no `keys`, or an empty array: a client that
    /// could never be accepted.
    #[error(
        "keystore, {at}: client {client} has no keys (`keys = [\"<base64url root key>\", ...]`)"
    )]
    NoKeys {
        /// Where the client's table or its `keys` is.
        at: Position,
        /// The client id.
        client: String,
    },
    /// A key string is not unpadded base64url of 32 to 64 bytes.
    #[error("keystore, {at}: client {client}, key #{index}: {problem}")]
    BadKey {
        /// Where the key string is.
        at: Position,
        /// The client id.
        client: String,
        /// The key's place in `keys`, from 0.
        index: usize,
        /// What is wrong with it, without its text.
        problem: KeyFileError,
    },
    /// One client lists the same key twice.
    #[error("keystore, {at}: client {client} lists the same key twice (#{first} and #{second})")]
    DuplicateKey {
        /// Where the second copy is.
        at: Position,
        /// The client id.
        client: String,
        /// Index of the first copy in `keys`, from 0.
        first: usize,
        /// Index of the second copy.
        second: usize,
    },
}

/// A place in a text: 1-based line and column (in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Byte column in the line, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text`.
    pub fn at(text: &str, offset: usize) -> Position {
        let before = &text.as_bytes()[..offset.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        Position { line, column }
    }

    /// The start of the first known span, else the start of the text.
    fn first(text: &str, spans: &[Option<Range<usize>>]) -> Position {
        let offset = spans.iter().flatten().next().map_or(0, |s| s.start);
        Position::at(text, offset)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A name from the file (an unknown field, an invalid client id), shown
/// only when it is too short to be a root key: a key is 43 or more
/// base64url characters, and one pasted in the wrong place becomes a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(Option<String>, usize);

/// Longest name from the file that an error shows.
pub const MAX_SHOWN_NAME: usize = 32;

impl Name {
    /// Keeps `name` for display only when it is at most [`MAX_SHOWN_NAME`]
    /// characters; otherwise only its length.
    pub fn new(name: &str) -> Name {
        let n = name.chars().count();
        Name((n <= MAX_SHOWN_NAME).then(|| name.to_owned()), n)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => write!(f, "{name:?}"),
            None => write!(
                f,
                "of {} characters (not shown: a name that long may be a key)",
                self.1
            ),
        }
    }
}

/// What is wrong in a settings file (`--config`), said by position and
/// setting name only: serde's own messages quote the value
/// (`invalid type: string "...", expected ...`), and a value may be a key
/// pasted in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The text is not valid TOML.
    #[error(transparent)]
    Syntax(#[from] TomlSyntaxError),
    /// A top-level key that names no setting.
    #[error("{at}: unknown setting {name} (see --help for the names)")]
    Unknown {
        /// Where the error is.
        at: Position,
        /// The setting's name, shown only when short.
        name: Name,
    },
    /// A top-level setting's value: the wrong type, or a value the setting
    /// refuses.
    #[error("{at}: setting {name}: wrong type or invalid value (see --help)")]
    Invalid {
        /// Where the error is.
        at: Position,
        /// The setting's name, shown only when short.
        name: Name,
    },
    /// The settings as a whole were refused, at no one setting.
    #[error("{at}: invalid settings (see --help)")]
    Other {
        /// Where the error is (the start of the text when unknown).
        at: Position,
    },
}

/// A TOML syntax error: where, and what in fixed words. The parser's
/// message is not used, since it can quote the text (a duplicate key's
/// name, which may be a key pasted in the wrong place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not valid TOML at {at}: {problem}")]
pub struct TomlSyntaxError {
    /// Where the parser stopped.
    pub at: Position,
    /// What is wrong, in fixed words.
    pub problem: &'static str,
}

/// Parses `text` as TOML, keeping positions; a syntax error is described
/// by [`TomlSyntaxError`] alone.
pub fn parse_toml(text: &str) -> Result<ImDocument<&str>, TomlSyntaxError> {
    ImDocument::parse(text).map_err(|e| TomlSyntaxError {
        at: Position::at(text, e.span().map_or(0, |s| s.start)),
        problem: syntax_problem(e.message()),
    })
}

/// The parser's message mapped onto fixed words; nothing of it is copied.
fn syntax_problem(message: &str) -> &'static str {
    const LABELS: &[(&str, &str)] = &[
        ("invalid array", "invalid array"),
        ("invalid basic string", "invalid string"),
        ("invalid binary integer", "invalid number"),
        ("invalid date-time", "invalid date-time"),
        (
            "invalid escape sequence",
            "invalid escape sequence in a string",
        ),
        ("invalid floating-point number", "invalid number"),
        ("invalid hexadecimal integer", "invalid number"),
        ("invalid inline table", "invalid inline table"),
        ("invalid integer", "invalid number"),
        ("invalid key", "invalid key"),
        ("invalid literal string", "invalid string"),
        ("invalid multiline basic string", "invalid string"),
        ("invalid multiline literal string", "invalid string"),
        ("invalid octal integer", "invalid number"),
        ("invalid string", "invalid string"),
        ("invalid table header", "invalid table header"),
        ("invalid time offset", "invalid date-time"),
        ("invalid time", "invalid date-time"),
        (
            "invalid unicode 4-digit hex code",
            "invalid escape sequence in a string",
        ),
        (
            "invalid unicode 8-digit hex code",
            "invalid escape sequence in a string",
        ),
    ];
    if message.contains("duplicate key") {
        return "a key or table defined twice";
    }
    if message.contains("attempted to extend non-table type") {
        return "a dotted key extends a value that is not a table";
    }
    if message.contains("recursion limit exceeded") {
        return "nested too deeply";
    }
    if message.contains("value is out of range") {
        return "a value out of range";
    }
    let first = message.lines().next().unwrap_or("");
    LABELS
        .iter()
        .find(|(label, _)| first == *label)
        .map_or("invalid TOML", |(_, words)| words)
}

/// "a string", "an array", ...: the kind of an item, never its value.
pub fn kind_of(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => kind_of_value(v),
    }
}

fn kind_of_value(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// The span of a key in a table, if the parser kept one.
fn key_span(table: &dyn TableLike, name: &str) -> Option<Range<usize>> {
    table.get_key_value(name).and_then(|(k, _)| k.span())
}

impl Keystore {
    /// Parses the keystore file format (module doc). Errors carry no key
    /// material ([`KeystoreError`]).
    pub fn parse(text: &str) -> Result<Keystore, KeystoreError> {
        let doc = parse_toml(text).map_err(KeystoreError::Syntax)?;
        let root = doc.as_table();
        only_fields(
            text,
            root,
            &["clients", "invites"],
            "the top level",
            "`clients`, `invites`",
        )?;
        let mut ks = Keystore::default();
        for (id, entry, entry_at) in
            entries(text, root, "clients", "a table of clients ([clients.<id>])")?
        {
            let keys = client_keys(text, &id, entry, entry_at)?;
            ks.clients
                .insert(id.clone(), Arc::new(ClientKeys { id, keys }));
        }
        for (id, entry, entry_at) in
            entries(text, root, "invites", "a table of invites ([invites.<id>])")?
        {
            if ks.clients.contains_key(&id) {
                return Err(KeystoreError::InviteForClient {
                    at: entry_at,
                    client: id.to_string(),
                });
            }
            let invite = invite(text, &id, entry, entry_at)?;
            ks.invites.insert(id, invite);
        }
        Ok(ks)
    }
    /// [`load`](Self::load), or an empty keystore if there is no file yet
    /// (the first `keys add`, an enrolment into a new keystore).
    pub fn load_or_empty(path: &Path) -> Result<Keystore, KeystoreError> {
        match Keystore::load(path) {
            Err(KeystoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Keystore::default())
            }
            other => other,
        }
    }

    /// Reads and parses the keystore file at `path` (at most
    /// [`MAX_KEYSTORE_BYTES`]); the text read is wiped afterwards.
    pub fn load(path: &Path) -> Result<Keystore, KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_KEYSTORE_BYTES {
            return Err(KeystoreError::TooLarge);
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        Keystore::parse(&text)
    }

    /// The file form, for `jwt-server keys`; holds key material.
    ///
    /// The string is sized before the first key goes in: a `String` that
    /// grows frees its old buffer with the keys so far still in it, where
    /// `Zeroizing` (which wipes only the final buffer) cannot reach.
    pub fn to_toml(&self) -> Zeroizing<String> {
        const HEADER: &str =
            "# jose-binding keystore: [clients.<id>] keys = [current, previous...]\n";
        let clients: Vec<(String, Vec<Zeroizing<String>>)> = self
            .clients
            .values()
            .map(|c| {
                let head = format!("\n[clients.\"{}\"]\nkeys = [", c.id);
                (head, c.keys.iter().map(|k| k.to_b64url()).collect())
            })
            .collect();
        let len = HEADER.len()
            + clients
                .iter()
                .map(|(head, keys)| {
                    let quoted: usize = keys.iter().map(|k| k.len() + 2).sum();
                    head.len() + quoted + 2 * keys.len().saturating_sub(1) + "]\n".len()
                })
                .sum::<usize>();
        let invites: Vec<(String, Zeroizing<String>, String)> = self
            .invites
            .values()
            .map(|i| {
                let head = format!("\n[invites.\"{}\"]\nsecret = \"", i.client.id);
                let tail = format!(
                    "\"\nexpires = {}\nurl = \"{}\"\n",
                    i.expires,
                    // An invite's URL has no backslash (`is_origin`).
                    i.url.replace('"', "\\\"")
                );
                (head, i.secret().to_b64url(), tail)
            })
            .collect();
        let len = len
            + invites
                .iter()
                .map(|(head, secret, tail)| head.len() + secret.len() + tail.len())
                .sum::<usize>();
        let mut out = Zeroizing::new(String::with_capacity(len));
        out.push_str(HEADER);
        for (head, keys) in &clients {
            out.push_str(head);
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push('"');
                out.push_str(k);
                out.push('"');
            }
            out.push_str("]\n");
        }
        for (head, secret, tail) in &invites {
            out.push_str(head);
            out.push_str(secret);
            out.push_str(tail);
        }
        out
    }
}

/// An exclusive lock on a keystore file, held by whoever reads it
/// ([`Keystore::load_or_empty`]) to write it back (a `jwt-server keys` command, an enrolling server), so two
/// writers never lose each other's change. Readers need no lock: a write is
/// a rename ([`Keystore::save_atomic`]). Released on drop.
#[derive(Debug)]
pub struct KeystoreLock {
    _file: std::fs::File,
}

impl KeystoreLock {
    /// Waits for the lock on `path`: an advisory lock on `.NAME.lock`
    /// beside it (created mode 0600), since the keystore file itself is
    /// replaced on every write.
    pub fn acquire(path: &Path) -> std::io::Result<KeystoreLock> {
        let (dir, name) = dir_and_name(path)?;
        let lock = dir.join(format!(".{}.lock", name.to_string_lossy()));
        let mut open = std::fs::OpenOptions::new();
        open.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let file = open.open(&lock)?;
        // Root (a `keys` command) makes it the keystore's owner's, so the
        // server that owns the keystore can take the lock too.
        same_owner_as(path, &lock);
        file.lock()?;
        Ok(KeystoreLock { _file: file })
    }
}

/// Gives `file` the owner of `like` (the keystore, else its directory),
/// when they differ and this process may: a keystore that root edits for a
/// server's user stays readable by that user. Otherwise it does nothing.
fn same_owner_as(like: &Path, file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(like).or_else(|_| {
            std::fs::metadata(dir_and_name(like).map(|(d, _)| d).unwrap_or(Path::new(".")))
        });
        if let (Ok(want), Ok(have)) = (owner, std::fs::metadata(file)) {
            if (want.uid(), want.gid()) != (have.uid(), have.gid()) {
                let _ = std::os::unix::fs::chown(file, Some(want.uid()), Some(want.gid()));
            }
        }
    }
}

/// The directory of `path` (`.` for a bare name) and its file name.
fn dir_and_name(path: &Path) -> std::io::Result<(&Path, &std::ffi::OsStr)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "keystore path has no file name",
        )
    })?;
    Ok((dir, name))
}

impl Keystore {
    /// Writes the keystore atomically: a 0600 temporary file in the same
    /// directory, fsync, rename over `path`. A reader never sees a half file.
    /// The new file keeps the old one's owner (or takes its directory's)
    /// where this process may give it, so root's edit of a server's
    /// keystore leaves it the server's.
    pub fn save_atomic(&self, path: &Path) -> std::io::Result<()> {
        let (dir, name) = dir_and_name(path)?;
        let tmp = dir.join(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let result = (|| {
            write_private(&tmp, self.to_toml().as_bytes(), Existing::Refuse)?;
            same_owner_as(path, &tmp);
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Refuses any field of `table` not in `fields`.
fn only_fields(
    text: &str,
    table: &dyn TableLike,
    fields: &[&str],
    what: &str,
    allowed: &'static str,
) -> Result<(), KeystoreError> {
    match table.iter().find(|(name, _)| !fields.contains(name)) {
        Some((name, _)) => Err(KeystoreError::UnknownField {
            at: Position::first(text, &[key_span(table, name)]),
            name: Name::new(name),
            table: what.into(),
            allowed,
        }),
        None => Ok(()),
    }
}

/// The `[<field>.<id>]` entries of the top-level table `field`, each with
/// its id checked and where it is.
fn entries<'d>(
    text: &str,
    root: &'d dyn TableLike,
    field: &str,
    expected: &'static str,
) -> Result<Vec<(ClientId, &'d Item, Position)>, KeystoreError> {
    let Some(item) = root.get(field) else {
        return Ok(Vec::new());
    };
    let table = item
        .as_table_like()
        .ok_or_else(|| KeystoreError::WrongType {
            at: Position::first(text, &[item.span(), key_span(root, field)]),
            field: field.into(),
            expected,
            found: kind_of(item),
        })?;
    table
        .iter()
        .map(|(name, entry)| {
            let at = Position::first(text, &[key_span(table, name), entry.span()]);
            let id = ClientId::new(name).map_err(|_| KeystoreError::BadClientId {
                at,
                id: Name::new(name),
            })?;
            Ok((id, entry, at))
        })
        .collect()
}

/// One `[invites.<id>]` table: `secret`, `expires`, `url`.
fn invite(
    text: &str,
    id: &ClientId,
    entry: &Item,
    entry_at: Position,
) -> Result<PendingInvite, KeystoreError> {
    let table = entry
        .as_table_like()
        .ok_or_else(|| KeystoreError::WrongType {
            at: entry_at,
            field: format!("invites.{id}"),
            expected: "a table with `secret`, `expires` and `url`",
            found: kind_of(entry),
        })?;
    only_fields(
        text,
        table,
        &["secret", "expires", "url"],
        &format!("[invites.{id}]"),
        "`secret`, `expires`, `url`",
    )?;
    let field = |name: &'static str| {
        let item = table.get(name).ok_or_else(|| KeystoreError::MissingField {
            at: entry_at,
            client: id.to_string(),
            field: name,
        })?;
        let at = Position::first(text, &[item.span(), key_span(table, name)]);
        let bad = move |problem| KeystoreError::BadInvite {
            at,
            client: id.to_string(),
            field: name,
            problem,
        };
        Ok::<_, KeystoreError>((item, bad))
    };
    let (item, bad) = field("secret")?;
    let secret = item
        .as_str()
        .and_then(|s| SoftwareRootKey::from_b64url(s).ok())
        .filter(|k| k.expose().len() == crate::protocol::invite::SECRET_LEN)
        .ok_or_else(|| bad("must be the base64url of 32 bytes"))?;
    let (item, bad) = field("expires")?;
    let expires = item
        .as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| bad("must be a time in Unix seconds (an integer)"))?;
    let (item, bad) = field("url")?;
    let url = item
        .as_str()
        .filter(|u| crate::protocol::invite::is_origin(u))
        .ok_or_else(|| bad("must be a string https://HOST[:PORT]"))?;
    Ok(PendingInvite::new(id.clone(), secret, expires, url))
}

/// One client's `[clients.<id>]` table: `keys`, an array of key strings.
fn client_keys(
    text: &str,
    id: &ClientId,
    entry: &Item,
    entry_at: Position,
) -> Result<Vec<SoftwareRootKey>, KeystoreError> {
    let table = entry
        .as_table_like()
        .ok_or_else(|| KeystoreError::WrongType {
            at: entry_at,
            field: format!("clients.{id}"),
            expected: "a table with `keys = [...]`",
            found: kind_of(entry),
        })?;
    only_fields(text, table, &["keys"], &format!("[clients.{id}]"), "`keys`")?;
    let Some(item) = table.get("keys") else {
        return Err(KeystoreError::NoKeys {
            at: entry_at,
            client: id.to_string(),
        });
    };
    let at = Position::first(text, &[item.span(), key_span(table, "keys")]);
    let array = item.as_array().ok_or_else(|| KeystoreError::WrongType {
        at,
        field: format!("clients.{id}.keys"),
        expected: "an array of base64url key strings",
        found: kind_of(item),
    })?;
    if array.is_empty() {
        return Err(KeystoreError::NoKeys {
            at,
            client: id.to_string(),
        });
    }
    let mut keys: Vec<SoftwareRootKey> = Vec::with_capacity(array.len());
    for (index, value) in array.iter().enumerate() {
        let at = Position::first(text, &[value.span(), item.span()]);
        let Some(encoded) = value.as_str() else {
            return Err(KeystoreError::WrongType {
                at,
                field: format!("clients.{id}.keys[{index}]"),
                expected: "a base64url key string",
                found: kind_of_value(value),
            });
        };
        let key =
            SoftwareRootKey::from_b64url(encoded).map_err(|problem| KeystoreError::BadKey {
                at,
                client: id.to_string(),
                index,
                problem,
            })?;
        if let Some(first) = keys.iter().position(|k| k.expose() == key.expose()) {
            return Err(KeystoreError::DuplicateKey {
                at,
                client: id.to_string(),
                first,
                second: index,
            });
        }
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::keystore::{EnrolRefusal, SetInviteError};

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8";

    #[test]
    fn parses_and_round_trips() {
        let ks = Keystore::parse(&format!(
            "[clients.client1]\nkeys = [\"{K1}\", \"{K2}\"]\n[clients.\"b.2\"]\nkeys=[\"{K2}\"]\n"
        ))
        .unwrap();
        assert_eq!(ks.len(), 2);
        assert_eq!(ks.get("client1").unwrap().keys.len(), 2);
        let again = Keystore::parse(&ks.to_toml()).unwrap();
        assert_eq!(
            again.get("b.2").unwrap().keys[0].expose(),
            ks.get("b.2").unwrap().keys[0].expose()
        );
    }

    /// The buffer is the size of the text: it never grew, so no freed
    /// buffer held keys.
    #[test]
    fn to_toml_is_sized_before_the_keys_go_in() {
        for clients in [0usize, 1, 3, 40] {
            let mut ks = Keystore::default();
            for c in 0..clients {
                let keys = (0..=c % 3).map(|_| SoftwareRootKey::generate()).collect();
                ks.set(ClientId::new(&format!("client-{c}")).unwrap(), keys);
            }
            let text = ks.to_toml();
            assert_eq!(text.capacity(), text.len(), "{clients} clients");
            assert_eq!(Keystore::parse(&text).unwrap().len(), clients);
        }
    }

    /// Invites round-trip beside clients; enrolling one turns it into a
    /// client in one step, and every refusal leaves the keystore as it was.
    #[test]
    fn invites_round_trip_and_enrol_once() {
        let text = format!(
            "[clients.c1]\nkeys = [\"{K1}\"]\n[invites.c2]\nsecret = \"{K2}\"\nexpires = 2000\nurl = \"https://api.example:8443\"\n"
        );
        let ks = Keystore::parse(&text).unwrap();
        let again = Keystore::parse(&ks.to_toml()).unwrap();
        let invite = again.invite("c2").unwrap();
        assert_eq!(
            (invite.expires, invite.url.as_str()),
            (2000, "https://api.example:8443")
        );
        assert_eq!(invite.secret().to_b64url().as_str(), K2);
        assert_eq!(ks.to_toml().capacity(), ks.to_toml().len());
        // The secret is no root key of the keystore's lookup.
        use crate::protocol::lookup::KeyLookup;
        assert!(again.client_keys("c2").is_none());
        assert!(again.pending_at(1999).client_keys("c2").is_some());
        assert!(
            again.pending_at(2000).client_keys("c2").is_none(),
            "expired"
        );

        let id = ClientId::new("c2").unwrap();
        let secret = invite.secret().clone();
        let mut ks = again;
        let wrong = SoftwareRootKey::from_b64url(K1).unwrap();
        let key = SoftwareRootKey::generate;
        assert_eq!(
            ks.enrol(&id, &wrong, key(), 10),
            Err(EnrolRefusal::Replaced)
        );
        assert_eq!(
            ks.enrol(&id, &secret, key(), 2000),
            Err(EnrolRefusal::Expired)
        );
        assert!(ks.invite("c2").is_some() && ks.get("c2").is_none());
        ks.enrol(&id, &secret, key(), 1999).unwrap();
        assert!(ks.invite("c2").is_none() && ks.get("c2").is_some());
        assert_eq!(
            ks.enrol(&id, &secret, key(), 1999),
            Err(EnrolRefusal::ClientExists)
        );
        let c1 = ClientId::new("c1").unwrap();
        assert_eq!(
            ks.enrol(&ClientId::new("c3").unwrap(), &secret, key(), 1),
            Err(EnrolRefusal::NoInvite)
        );
        assert_eq!(
            ks.set_invite(c1, secret.clone(), 1, "https://a"),
            Err(SetInviteError::ClientExists)
        );
        assert_eq!(
            ks.set_invite(ClientId::new("c4").unwrap(), secret, 1, "https://a/x"),
            Err(SetInviteError::Url)
        );
    }

    #[test]
    fn a_broken_invite_is_refused_without_quoting_its_secret() {
        let url = "url = \"https://a\"";
        let cases = [
            (format!("[invites.c2]\nsecret = \"{K2}\"\nexpires = 1\n"), "has no `url`"),
            (format!("[invites.c2]\nsecret = \"{K2}x\"\nexpires = 1\n{url}\n"), "`secret` must be"),
            (format!("[invites.c2]\nsecret = \"{K2}{K2}\"\nexpires = 1\n{url}\n"), "32 bytes"),
            (format!("[invites.c2]\nsecret = \"{K2}\"\nexpires = -1\n{url}\n"), "`expires`"),
            (format!("[invites.c2]\nsecret = \"{K2}\"\nexpires = 1\nurl = \"http://a\"\n"), "`url`"),
            (format!("[invites.c2]\nsecret = \"{K2}\"\nexpires = 1\n{url}\nkeys = [\"{K2}\"]\n"), "\"keys\" in [invites.c2]"),
            (format!("[clients.c2]\nkeys = [\"{K1}\"]\n[invites.c2]\nsecret = \"{K2}\"\nexpires = 1\n{url}\n"), "both a client and a pending invite"),
            (format!("invites = \"{K2}\"\n"), "`invites`"),
        ];
        for (text, want) in cases {
            let err = Keystore::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
            assert!(!err.contains(&K2[4..20]), "{err:?} quotes the secret");
        }
    }

    #[test]
    fn save_atomic_writes_0600_and_reloads() {
        let dir = std::env::temp_dir().join(format!("ks-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keystore.toml");
        let mut ks = Keystore::default();
        ks.set(
            ClientId::new("c1").unwrap(),
            vec![SoftwareRootKey::generate()],
        );
        ks.save_atomic(&path).unwrap();
        ks.save_atomic(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = Keystore::load(&path).unwrap();
        assert_eq!(
            back.get("c1").unwrap().keys[0].expose(),
            ks.get("c1").unwrap().keys[0].expose()
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Root's save of a keystore another user owns (the server's) leaves it
    /// that user's, the lock file too: the server can still read and lock
    /// it. Only where the tests run as root (CI).
    #[test]
    #[cfg(unix)]
    fn root_keeps_the_keystore_its_owners() {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
            return;
        }
        let dir = std::env::temp_dir().join(format!("ks-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keystore.toml");
        Keystore::default().save_atomic(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let lock = KeystoreLock::acquire(&path).unwrap();
        let mut ks = Keystore::load_or_empty(&path).unwrap();
        ks.set(
            ClientId::new("c1").unwrap(),
            vec![SoftwareRootKey::generate()],
        );
        ks.save_atomic(&path).unwrap();
        drop(lock);
        for f in ["keystore.toml", ".keystore.toml.lock"] {
            assert_eq!(std::fs::metadata(dir.join(f)).unwrap().uid(), 65534, "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A key in the wrong place: the error says where, in which field, and
    /// holds no part of the key (the toml/serde message would quote it).
    #[test]
    fn a_misplaced_key_is_never_quoted() {
        let plus = K1.replace('A', "+");
        let cases = [
            (
                format!("[clients.c1]\nkeys = \"{K1}\"\n"),
                "line 2, column 8",
                "clients.c1.keys",
            ),
            (
                format!("[clients.c1]\nkeys = {{ k = \"{K1}\" }}\n"),
                "line 2, column 8",
                "clients.c1.keys",
            ),
            (
                "[clients.c1]\nkeys = 123456789\n".to_owned(),
                "line 2, column 8",
                "clients.c1.keys",
            ),
            (
                format!("[clients.c1]\nkeys = [[\"{K1}\"]]\n"),
                "line 2, column 9",
                "clients.c1.keys[0]",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K1}\"]\n[clients.c1]\nkeys = [\"{K2}\"]\n"),
                "line 3",
                "defined twice",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K1}\"]\nextra = \"{K2}\"\n"),
                "line 3, column 1",
                "\"extra\" in [clients.c1]",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K2}\"]\n{K1} = 1\n"),
                "line 3, column 1",
                "of 43 characters (not shown",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K2}\"]\n{K1} = 1\n{K1} = 2\n"),
                "line 4",
                "defined twice",
            ),
            (
                format!("[clients]\nc1 = \"{K1}\"\n"),
                "line 2, column 1",
                "clients.c1",
            ),
            (
                format!("clients = \"{K1}\"\n"),
                "line 1, column 11",
                "`clients`",
            ),
            (
                format!("[clients.\"{plus}\"]\nkeys = [\"{K2}\"]\n"),
                "line 1, column 10",
                "not shown",
            ),
            (format!("{K1} = 1\n"), "line 1, column 1", "the top level"),
        ];
        for (text, at, what) in cases {
            let err = Keystore::parse(&text).unwrap_err().to_string();
            for secret in [K1, &K1[8..24], &plus, &plus[8..24]] {
                assert!(
                    !err.contains(secret),
                    "{err:?} quotes key material ({text:?})"
                );
            }
            assert!(err.contains(at), "{err:?} should say {at:?} ({text:?})");
            assert!(
                err.contains(what),
                "{err:?} should name {what:?} ({text:?})"
            );
        }
    }

    #[test]
    fn errors_name_the_client_and_never_the_key() {
        let secretish = "SECRETSECRETSECRETSECRETSECRETSECRETSECRE";
        let cases = [
            (
                format!("[clients.c1]\nkeys = [\"{secretish}x\"]"),
                "client c1, key #0",
            ),
            (
                "[clients.c1]\nkeys = []".to_owned(),
                "client c1 has no keys",
            ),
            (
                format!("[clients.\"bad id\"]\nkeys = [\"{K1}\"]"),
                "\"bad id\"",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{K1}\", \"{K1}\"]"),
                "same key twice",
            ),
            (
                "[clients.c1]\nkeys = [\"QUFB\"]".to_owned(),
                "32 to 64 bytes",
            ),
            (
                format!("[clients.c1]\nkeys = [\"{secretish}\" oops"),
                "line 2",
            ),
            (format!("[clients.c1]\nkeyz = [\"{K1}\"]"), "line 2"),
        ];
        for (text, want) in cases {
            let err = Keystore::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
            assert!(!err.contains("SECRET") && !err.contains(K1), "{err}");
        }
    }
}
