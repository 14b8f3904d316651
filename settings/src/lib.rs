//! One declaration per setting.
//!
//! A binary declares its settings once, as one struct deriving
//! [`clap::Args`] and serde: the field's clap attributes give the flag, the
//! env var, the default and the help; the field's name is clap's id and the
//! `--config` key. [`layer`] then gives each setting its value from the
//! first of these that has one: the flag, the env var (clap records which of
//! the two it read), the `--config` file, the declared default. No setting
//! is named here, so a new field is a new flag, env var and config key at
//! once.
//!
//! A file is read as the keystore is (`jose_binding::keystore`): an error
//! names a line, a column and a setting, never a value, since a value may
//! be a key pasted in the wrong place.
//!
//! [`shipped`] makes the completions and the man page from the same
//! definition.

pub mod shipped;

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, ValueHint};
use jose_binding::keystore::{parse_toml, toml_edit, Name, Position, SettingsError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Why the settings could not be put together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `--config` file could not be read.
    #[error("--config {}: {source}", path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The `--config` file is not TOML, names an unknown setting, or gives
    /// one a value of the wrong type.
    #[error("--config {}, {source}", path.display())]
    File {
        /// The file as given.
        path: PathBuf,
        /// Where, and which setting.
        source: SettingsError,
    },
    /// A value from the command line or the environment cannot be carried
    /// over (a path that is not UTF-8).
    #[error("setting {id:?}: not valid UTF-8")]
    NotText {
        /// The setting's id (its config key).
        id: String,
    },
}

/// A `--config` file, read once.
pub struct ConfigFile {
    path: PathBuf,
    text: Zeroizing<String>,
    /// Relative paths in the file are taken from here, when set.
    base: Option<PathBuf>,
}

impl ConfigFile {
    /// Reads `path`. The text is zeroized when dropped: an operator may
    /// have pasted a key into it by mistake.
    pub fn read(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(ConfigFile::new(path, text))
    }

    fn new(path: &Path, text: String) -> ConfigFile {
        ConfigFile {
            path: path.to_owned(),
            text: Zeroizing::new(text),
            base: None,
        }
    }

    /// Makes relative paths in the file (settings declared with a path
    /// [`ValueHint`]) relative to the file's directory rather than to the
    /// working directory.
    pub fn paths_relative_to_its_dir(mut self) -> ConfigFile {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        self.base = Some(dir);
        self
    }

    fn error(&self, source: SettingsError) -> Error {
        Error::File {
            path: self.path.clone(),
            source,
        }
    }
}

/// One declared setting, as clap holds it.
#[derive(Debug, Clone)]
pub struct Setting {
    /// clap's id: the field name, and the `--config` key.
    pub id: String,
    /// The flag, without `--`.
    pub long: Option<String>,
    /// The env var.
    pub env: Option<String>,
    /// The default values, as `--help` shows them (none for a switch).
    pub defaults: Vec<String>,
}

/// The settings `T` declares, in declaration order.
pub fn declared<T: Args>() -> Vec<Setting> {
    let cmd = T::augment_args(Command::new("settings"));
    cmd.get_arguments()
        .map(|a| Setting {
            id: a.get_id().to_string(),
            long: a.get_long().map(str::to_owned),
            env: a.get_env().map(|e| e.to_string_lossy().into_owned()),
            defaults: match a.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Vec::new(),
                _ => a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect(),
            },
        })
        .collect()
}

/// What a reference table in `doc` (Markdown) fails to say about
/// `settings`: each needs its env var, and a table row whose first cell
/// names its flag (`` `--flag`` ), and which names its env var (`` `ENV` ``), its config key (`` `key` ``,
/// when `config_keys`) and each default value. An empty list means the
/// table is complete; the binaries' tests call this on their docs.
pub fn undocumented(settings: &[Setting], doc: &str, config_keys: bool) -> Vec<String> {
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with('|')).collect();
    let mut missing = Vec::new();
    for s in settings {
        let Some(long) = &s.long else {
            missing.push(format!("{}: no flag", s.id));
            continue;
        };
        let Some(env) = &s.env else {
            missing.push(format!("--{long}: no env var"));
            continue;
        };
        let flag = format!("`--{long}");
        let row = rows.iter().find(|r| {
            let first = r.split(" | ").next().unwrap_or("");
            first
                .match_indices(&flag)
                .any(|(i, _)| matches!(first.as_bytes().get(i + flag.len()), Some(b' ' | b'`')))
        });
        let Some(row) = row else {
            missing.push(format!("--{long}: no table row"));
            continue;
        };
        let mut want = vec![format!("`{env}`")];
        if config_keys {
            want.push(format!("`{}`", s.id));
        }
        want.extend(s.defaults.iter().cloned());
        for w in want {
            if !row.contains(&w) {
                missing.push(format!("--{long}: its row lacks {w}"));
            }
        }
    }
    missing
}

/// Adds `[config: KEY]` to the help of each setting `T` declares in `cmd`,
/// next to the `[default: …]` and `[env: …]` clap shows.
pub fn annotate<T: Args>(mut cmd: Command) -> Command {
    for s in declared::<T>() {
        if !cmd.get_arguments().any(|a| a.get_id() == s.id.as_str()) {
            continue;
        }
        let key = format!("[config: {}]", s.id);
        cmd = cmd.mut_arg(&s.id, |a| {
            let help = match a.get_help() {
                Some(h) => format!("{h} {key}"),
                None => key.clone(),
            };
            let long = a.get_long_help().map(|h| format!("{h} {key}"));
            let a = a.help(help);
            match long {
                Some(l) => a.long_help(l),
                None => a,
            }
        });
    }
    cmd
}

/// `parsed` (flags, env vars and defaults, as clap parsed them into `T`
/// from `matches`) with the `--config` file laid between the env vars and
/// the defaults.
///
/// A file value is used for a setting that neither its flag nor its env var
/// gave, and none of the settings it conflicts with (clap's
/// `conflicts_with`: `--key-file` and `--tpm-key`, say) either: a pair of
/// exclusive settings comes whole from one layer.
pub fn layer<T>(parsed: T, matches: &ArgMatches, file: Option<&ConfigFile>) -> Result<T, Error>
where
    T: Args + Serialize + DeserializeOwned,
{
    layer_adding(parsed, matches, file, &[])
}

/// As [`layer`], except that for the list settings named in `adding` the
/// values of the flag or env var are added after the file's instead of
/// replacing them (a route given on the command line joins the file's
/// route table).
pub fn layer_adding<T>(
    parsed: T,
    matches: &ArgMatches,
    file: Option<&ConfigFile>,
    adding: &[&str],
) -> Result<T, Error>
where
    T: Args + Serialize + DeserializeOwned,
{
    let Some(file) = file else {
        return Ok(parsed);
    };
    let mut merged = match serde_json::to_value(&parsed) {
        Ok(Value::Object(m)) => m,
        _ => return Err(not_text(matches)),
    };
    let cmd = T::augment_args(Command::new("settings"));
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    for (id, value) in file_values::<T>(file, &cmd, &merged)? {
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == id.as_str()) else {
            continue;
        };
        let conflict_given = cmd.get_arguments().any(|other| {
            let excludes = cmd
                .get_arg_conflicts_with(arg)
                .iter()
                .any(|c| c.get_id() == other.get_id())
                || cmd
                    .get_arg_conflicts_with(other)
                    .iter()
                    .any(|c| c.get_id() == arg.get_id());
            excludes && given(other.get_id().as_str())
        });
        if adding.contains(&id.as_str()) {
            if let (Value::Array(mut all), Some(Value::Array(given))) =
                (value.clone(), merged.get(&id).cloned())
            {
                all.extend(given);
                merged.insert(id, Value::Array(all));
                continue;
            }
        }
        if given(&id) || conflict_given {
            continue;
        }
        merged.insert(id, value);
    }
    serde_json::from_value(Value::Object(merged)).map_err(|_| {
        file.error(SettingsError::Other {
            at: Position::at("", 0),
        })
    })
}

/// Each setting the file gives, checked against `T` one at a time (so an
/// error names the setting), with relative paths resolved if asked.
fn file_values<T: DeserializeOwned>(
    file: &ConfigFile,
    cmd: &Command,
    base: &Map<String, Value>,
) -> Result<Vec<(String, Value)>, Error> {
    let text = file.text.as_str();
    let doc = parse_toml(text).map_err(|e| file.error(e.into()))?;
    let values: Map<String, Value> = toml_edit::de::from_str(text).map_err(|_| {
        file.error(SettingsError::Other {
            at: Position::at(text, 0),
        })
    })?;
    let root = doc.as_table();
    let mut out = Vec::new();
    for (name, item) in root.iter() {
        let key_at = root
            .get_key_value(name)
            .and_then(|(k, _)| k.span())
            .map_or(0, |s| s.start);
        let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == name) else {
            return Err(file.error(SettingsError::Unknown {
                at: Position::at(text, key_at),
                name: Name::new(name),
            }));
        };
        let invalid = || {
            let at = item.span().map_or(key_at, |s| s.start);
            file.error(SettingsError::Invalid {
                at: Position::at(text, at),
                name: Name::new(name),
            })
        };
        let mut value = values.get(name).cloned().ok_or_else(invalid)?;
        let mut candidate = base.clone();
        candidate.insert(name.to_owned(), value.clone());
        if serde_json::from_value::<T>(Value::Object(candidate)).is_err() {
            return Err(invalid());
        }
        if let (Some(dir), true) = (&file.base, is_path(arg.get_value_hint())) {
            resolve(&mut value, dir);
        }
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn is_path(hint: ValueHint) -> bool {
    matches!(
        hint,
        ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath | ValueHint::ExecutablePath
    )
}

/// A relative path (or each in a list) joined onto `dir`.
fn resolve(value: &mut Value, dir: &Path) {
    match value {
        Value::String(s) if Path::new(s.as_str()).is_relative() => {
            if let Some(joined) = dir.join(s.as_str()).to_str() {
                *s = joined.to_owned();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve(v, dir)),
        _ => {}
    }
}

/// The first setting whose value does not serialize: only a non-UTF-8
/// path can fail.
fn not_text(matches: &ArgMatches) -> Error {
    let id = matches
        .ids()
        .find(|id| {
            matches
                .get_raw(id.as_str())
                .is_some_and(|v| v.into_iter().any(|s| s.to_str().is_none()))
        })
        .map_or_else(String::new, |id| id.to_string());
    Error::NotText { id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use serde::Deserialize;

    #[derive(Parser, Debug, Serialize, Deserialize)]
    struct Demo {
        /// A number.
        #[arg(long, env = "SETTINGS_TEST_PORT", default_value_t = 1)]
        port: u16,
        /// A path.
        #[arg(long, env = "SETTINGS_TEST_FILE", value_hint = ValueHint::FilePath)]
        file: Option<PathBuf>,
        /// One of a pair.
        #[arg(long, env = "SETTINGS_TEST_A", conflicts_with = "b")]
        a: Option<String>,
        /// The other.
        #[arg(long, env = "SETTINGS_TEST_B")]
        b: Option<String>,
        /// A list.
        #[arg(long = "item", env = "SETTINGS_TEST_ITEMS", value_delimiter = ',')]
        items: Vec<String>,
    }

    /// `args` and `env` parsed, then `toml` laid under them.
    fn run(args: &[&str], env: &[(&str, &str)], toml: Option<&str>) -> Result<Demo, Error> {
        run_adding(args, env, toml, &[])
    }

    /// As [`run`], with the flag's values of `adding` added to the file's.
    fn run_adding(
        args: &[&str],
        env: &[(&str, &str)],
        toml: Option<&str>,
        adding: &[&str],
    ) -> Result<Demo, Error> {
        for (var, value) in env {
            // clap reads env vars when the command is built; these names
            // are this module's own, and each test sets one at most.
            std::env::set_var(var, value);
        }
        let mut cmd = annotate::<Demo>(Demo::command());
        let m = cmd.try_get_matches_from_mut(std::iter::once("demo").chain(args.iter().copied()));
        for (var, _) in env {
            std::env::remove_var(var);
        }
        let m = m.expect("arguments parse");
        let parsed = Demo::from_arg_matches(&m).unwrap();
        let file = toml.map(|t| ConfigFile::new(Path::new("/etc/demo/demo.toml"), t.into()));
        layer_adding(
            parsed,
            &m,
            file.map(ConfigFile::paths_relative_to_its_dir).as_ref(),
            adding,
        )
    }

    #[test]
    fn a_list_setting_can_add_the_flags_values_to_the_files() {
        let toml = Some("items = [\"file\"]");
        let d = run_adding(&["--item", "flag"], &[], toml, &["items"]).unwrap();
        assert_eq!(d.items, ["file", "flag"]);
        let d = run_adding(&[], &[], toml, &["items"]).unwrap();
        assert_eq!(d.items, ["file"]);
        let d = run_adding(&["--item", "flag"], &[], None, &["items"]).unwrap();
        assert_eq!(d.items, ["flag"]);
    }

    #[test]
    fn flag_then_env_then_file_then_default() {
        assert_eq!(run(&[], &[], None).unwrap().port, 1);
        assert_eq!(run(&[], &[], Some("port = 2")).unwrap().port, 2);
        let env = [("SETTINGS_TEST_PORT", "3")];
        assert_eq!(run(&[], &env, Some("port = 2")).unwrap().port, 3);
        assert_eq!(
            run(&["--port", "4"], &env, Some("port = 2")).unwrap().port,
            4
        );
        let d = run(
            &["--item", "x"],
            &[],
            Some("items = [\"y\"]\nfile = \"/f\""),
        )
        .unwrap();
        assert_eq!(d.items, ["x"], "a list from the flag replaces the file's");
        assert_eq!(
            d.file.unwrap(),
            Path::new("/f"),
            "others still come from the file"
        );
    }

    #[test]
    fn a_conflicting_pair_comes_from_one_layer() {
        let d = run(&["--b", "flag"], &[], Some("a = \"file\"")).unwrap();
        assert_eq!((d.a, d.b.as_deref()), (None, Some("flag")));
        let d = run(&[], &[("SETTINGS_TEST_A", "env")], Some("b = \"file\"")).unwrap();
        assert_eq!((d.a.as_deref(), d.b), (Some("env"), None));
        let d = run(&[], &[], Some("a = \"file\"")).unwrap();
        assert_eq!(d.a.as_deref(), Some("file"));
    }

    #[test]
    fn relative_paths_in_the_file_are_relative_to_it() {
        let d = run(&[], &[], Some("file = \"keys/k\"")).unwrap();
        assert_eq!(d.file.unwrap(), Path::new("/etc/demo/keys/k"));
        let d = run(&[], &[], Some("file = \"/abs/k\"")).unwrap();
        assert_eq!(d.file.unwrap(), Path::new("/abs/k"));
        let d = run(&["--file", "rel"], &[], Some("file = \"keys/k\"")).unwrap();
        assert_eq!(
            d.file.unwrap(),
            Path::new("rel"),
            "a flag is relative to the cwd"
        );
    }

    #[test]
    fn file_errors_name_place_and_setting_never_the_value() {
        let secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        for (toml, want) in [
            (
                format!("port = \"{secret}\""),
                "line 1, column 8: setting \"port\"",
            ),
            (
                format!("port = 1\nfile = [\"{secret}\"]"),
                "line 2, column 8: setting \"file\"",
            ),
            (
                format!("port = 70000 # {secret}"),
                "line 1, column 8: setting \"port\"",
            ),
            (
                format!("prot = \"{secret}\""),
                "line 1, column 1: unknown setting \"prot\"",
            ),
            (format!("{secret} = 1"), "unknown setting of 43 characters"),
            ("help = true".into(), "unknown setting \"help\""),
            (format!("port = \"{secret}"), "not valid TOML at line 1"),
        ] {
            let e = run(&[], &[], Some(&toml)).unwrap_err().to_string();
            assert!(e.starts_with("--config /etc/demo/demo.toml, "), "{e}");
            assert!(e.contains(want), "{e:?} lacks {want:?}");
            assert!(!e.contains(&secret[4..20]), "{e}");
        }
    }

    #[test]
    fn help_names_each_config_key() {
        let help = annotate::<Demo>(Demo::command())
            .render_long_help()
            .to_string();
        for key in ["[config: port]", "[config: items]", "[config: a]"] {
            assert!(help.contains(key), "{help}");
        }
    }

    #[test]
    fn undocumented_lists_what_a_table_misses() {
        let all = declared::<Demo>();
        let complete = "| flag | env | config | default |\n\
            | `--port N` | `SETTINGS_TEST_PORT` | `port` | 1 |\n\
            | `--file F` | `SETTINGS_TEST_FILE` | `file` | none |\n\
            | `--a X` | `SETTINGS_TEST_A` | `a` | none |\n\
            | `--b X` | `SETTINGS_TEST_B` | `b` | none |\n\
            | `--item X` | `SETTINGS_TEST_ITEMS` | `items` | none |\n";
        assert_eq!(undocumented(&all, complete, true), Vec::<String>::new());
        let broken = complete
            .replace("| 1 |", "| 2 |")
            .replace("`SETTINGS_TEST_A`", "`A`")
            .replace("`--b X`", "`--bb X`")
            .replace("`items`", "`item`");
        assert_eq!(
            undocumented(&all, &broken, true),
            [
                "--port: its row lacks 1",
                "--a: its row lacks `SETTINGS_TEST_A`",
                "--b: no table row",
                "--item: its row lacks `items`",
            ]
        );
        assert!(undocumented(&all, &broken.replace("`item`", "x"), false)
            .iter()
            .all(|m| !m.contains("items")));
    }
}
