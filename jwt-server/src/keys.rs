//! `jwt-server keys add|rotate|remove|list`: the keystore's clients.
//!
//! A new key is written out (a 0600 file, or stdout) before the keystore
//! changes, and the keystore is saved before the key file takes its name:
//! a command that fails leaves the keystore and any existing key file as
//! they were, so no client is ever left with a key nobody has.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use jose_binding::keystore::KeystoreLock;
use jose_binding::private_file::{write_private, Existing};
use jose_binding::{ClientId, Keystore, RootKey, SoftwareRootKey};

use crate::cli::{Global, KeyOut, KeysCommand, ServeSettings};
use crate::config::keystore_path;

pub(crate) fn load_or_empty(path: &Path) -> Result<Keystore, String> {
    Keystore::load_or_empty(path).map_err(|e| e.to_string())
}

/// The keystore a keys command works on: its own --keystore (or
/// JWT_KEYSTORE), else the server's settings (`config::keystore_path`).
pub(crate) fn keystore_for(
    flag: Option<PathBuf>,
    g: &Global,
    s: &ServeSettings,
) -> Result<PathBuf, String> {
    keystore_path(flag.as_deref(), g, s).map(|(p, _)| p)
}

pub(crate) fn keys(cmd: KeysCommand, g: &Global, s: &ServeSettings) -> Result<(), String> {
    match cmd {
        KeysCommand::Add {
            target: t,
            out,
            bundle,
        } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let path = keystore_for(t.keystore, g, s)?;
            let _lock = lock(&path)?;
            let mut ks = load_or_empty(&path)?;
            if ks.get(id.as_str()).is_some() {
                return Err(format!(
                    "client {id} already exists; use `keys rotate {id}`"
                ));
            }
            if ks.invite(id.as_str()).is_some() {
                return Err(format!(
                    "an invite for {id} is pending; `keys revoke-invite {id}` first, or let the client enrol"
                ));
            }
            let key = SoftwareRootKey::generate();
            let (out, content) = match &bundle.bundle {
                Some(file) => (
                    Destination::of_file(file)?,
                    crate::invite::bundle_text(&id, &key, &bundle, g, s)?,
                ),
                None => (Destination::of(&out)?, key.to_key_file()),
            };
            ks.set(id.clone(), vec![key.clone()]);
            hand_out_then_save(&id, &key, content, out, &ks, &path, "added")
        }
        KeysCommand::Rotate {
            target: t,
            out,
            keep,
        } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let path = keystore_for(t.keystore, g, s)?;
            let _lock = lock(&path)?;
            let mut ks = load_or_empty(&path)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", path.display()))?;
            let out = Destination::of(&out)?;
            let key = SoftwareRootKey::generate();
            let mut keys = vec![key.clone()];
            keys.extend(old.keys.iter().take(keep).cloned());
            ks.set(id.clone(), keys);
            let content = key.to_key_file();
            hand_out_then_save(&id, &key, content, out, &ks, &path, "rotated")
        }
        KeysCommand::Remove {
            target: t,
            previous,
        } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let path = keystore_for(t.keystore, g, s)?;
            let _lock = lock(&path)?;
            let mut ks = load_or_empty(&path)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", path.display()))?;
            let said = if previous {
                let current = old.keys[0].clone();
                ks.set(id.clone(), vec![current]);
                format!("client {id}: previous keys removed; only the current key is accepted")
            } else {
                ks.remove(id.as_str());
                format!("client {id} removed")
            };
            save(&ks, &path)?;
            eprintln!("{said}");
            Ok(())
        }
        KeysCommand::Invite(a) => crate::invite::invite(a, g, s),
        KeysCommand::Invites { keystore, json } => crate::invite::list(keystore, json, g, s),
        KeysCommand::RevokeInvite { target } => crate::invite::revoke(target, g, s),
        KeysCommand::Split(a) => crate::custody::split(a, g, s),
        KeysCommand::Combine(a) => crate::custody::combine(a, g, s),
        KeysCommand::ShareDecrypt(a) => crate::custody::share_decrypt(a),
        KeysCommand::List { keystore, json } => {
            let path = keystore_for(keystore, g, s)?;
            let ks = Keystore::load(&path).map_err(|e| e.to_string())?;
            let rows: Vec<_> = ks
                .clients()
                .map(|c| {
                    let fps: Vec<String> = c
                        .keys
                        .iter()
                        .map(|k| RootKey::fingerprint(k).to_string())
                        .collect();
                    (c.id.to_string(), fps)
                })
                .collect();
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, fps)| serde_json::json!({"client_id": id, "key_fingerprints": fps}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v));
            } else {
                for (id, fps) in rows {
                    outln!(
                        "{id}\tcurrent {}\tprevious [{}]",
                        fps[0],
                        fps[1..].join(", ")
                    );
                }
            }
            Ok(())
        }
    }
}

/// The keystore's write lock, held from reading it to saving it: an
/// enrolling server or another command never loses this one's change.
pub(crate) fn lock(path: &Path) -> Result<KeystoreLock, String> {
    KeystoreLock::acquire(path).map_err(|e| {
        format!(
            "cannot lock {} for writing: {e}; nothing was changed",
            path.display()
        )
    })
}

pub(crate) fn save(ks: &Keystore, path: &Path) -> Result<(), String> {
    ks.save_atomic(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Where a new key goes.
enum Destination<'a> {
    File(&'a Path),
    Stdout,
}

impl<'a> Destination<'a> {
    /// `--key-out FILE`, `--stdout`, or stdout when it is a terminal. A
    /// pipe or a shell redirect is refused: `> client7.key` creates the
    /// file with the umask's mode, readable by others.
    fn of(out: &'a KeyOut) -> Result<Destination<'a>, String> {
        match &out.key_out {
            Some(p) => Destination::of_file(p),
            None if out.stdout || std::io::stdout().is_terminal() => Ok(Destination::Stdout),
            None => Err(
                "stdout is not a terminal, and a shell redirect would create the key file \
                 with your umask's mode (often 0644): use --key-out FILE (written mode 0600), or \
                 --stdout to print the key anyway; nothing was changed"
                    .into(),
            ),
        }
    }
}

impl<'a> Destination<'a> {
    /// A file to write: not a directory.
    fn of_file(p: &'a Path) -> Result<Destination<'a>, String> {
        if p.is_dir() {
            return Err(format!(
                "{} is a directory; name the file (nothing was changed)",
                p.display()
            ));
        }
        Ok(Destination::File(p))
    }
}

/// Writes the new key out (`content`: its key file, or a bundle that holds
/// it), then saves the keystore that holds it.
///
/// With --key-out the key goes to a 0600 temporary file beside FILE first
/// (so an unwritable place fails before the keystore changes), the
/// keystore is saved, and only then does the temporary file take FILE's
/// name: if saving fails, the temporary file is removed and FILE (perhaps
/// the client's current key) is left as it was.
fn hand_out_then_save(
    id: &ClientId,
    key: &SoftwareRootKey,
    line: zeroize::Zeroizing<String>,
    out: Destination<'_>,
    ks: &Keystore,
    path: &Path,
    verb: &str,
) -> Result<(), String> {
    let fp = RootKey::fingerprint(key);
    match out {
        Destination::File(p) => {
            let tmp = temporary_beside(p)?;
            write_private(&tmp, line.as_bytes(), Existing::Refuse).map_err(|e| {
                format!(
                    "cannot write the new key beside {}: {e}; the keystore is unchanged",
                    p.display()
                )
            })?;
            if let Err(e) = save(ks, path) {
                return Err(match std::fs::remove_file(&tmp) {
                    Ok(()) => format!("{e}; the keystore is unchanged and no key file was written"),
                    Err(r) => format!(
                        "{e}; the keystore is unchanged, but {} (a key no keystore has) could not be removed ({r}): delete it",
                        tmp.display()
                    ),
                });
            }
            std::fs::rename(&tmp, p).map_err(|e| {
                format!(
                    "client {id} {verb} in {} (new key fp={fp}), but the key file could not be renamed to {} ({e}): it is {}, mode 0600; move it there",
                    path.display(),
                    p.display(),
                    tmp.display()
                )
            })?;
            eprintln!(
                "client {id} {verb}: new key fp={fp} written to {} (mode 0600)",
                p.display()
            );
        }
        Destination::Stdout => {
            eprintln!("client {id} {verb}: new key fp={fp}; its key file follows on stdout (shown once, store it now)");
            let mut stdout = std::io::stdout();
            stdout
                .write_all(line.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| {
                    format!("cannot write the key to stdout: {e}; the keystore is unchanged")
                })?;
            save(ks, path).map_err(|e| {
                format!("{e}; the keystore is unchanged: the key printed above is in no keystore, discard it")
            })?;
        }
    }
    Ok(())
}

/// `.NAME.new-PID` in FILE's directory: renaming it over FILE is atomic.
fn temporary_beside(p: &Path) -> Result<PathBuf, String> {
    let name = p
        .file_name()
        .ok_or_else(|| format!("--key-out {}: not a file name", p.display()))?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(dir.join(format!(
        ".{}.new-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}
