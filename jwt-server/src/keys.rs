//! `jwt-server keys add|rotate|remove|list`: the keystore's clients.

use std::path::Path;

use jose_binding::private_file::{write_private, Existing};
use jose_binding::{ClientId, Keystore, RootKey, SoftwareRootKey};

use crate::cli::KeysCommand;

pub(crate) fn load_or_empty(path: &Path) -> Result<Keystore, String> {
    if path.exists() {
        Keystore::load(path).map_err(|e| e.to_string())
    } else {
        Ok(Keystore::default())
    }
}

pub(crate) fn keys(cmd: KeysCommand) -> Result<(), String> {
    match cmd {
        KeysCommand::Add(t) => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            if ks.get(id.as_str()).is_some() {
                return Err(format!(
                    "client {id} already exists; use `keys rotate {id}`"
                ));
            }
            let key = SoftwareRootKey::generate();
            ks.set(id.clone(), vec![key.clone()]);
            save(&ks, &t.keystore)?;
            hand_out(&id, &key, t.key_out.as_deref(), "added")
        }
        KeysCommand::Rotate { target: t, keep } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", t.keystore.display()))?;
            let key = SoftwareRootKey::generate();
            let mut keys = vec![key.clone()];
            keys.extend(old.keys.iter().take(keep).cloned());
            ks.set(id.clone(), keys);
            save(&ks, &t.keystore)?;
            hand_out(&id, &key, t.key_out.as_deref(), "rotated")
        }
        KeysCommand::Remove {
            target: t,
            previous,
        } => {
            let id = ClientId::new(&t.client_id).map_err(|e| e.to_string())?;
            let mut ks = load_or_empty(&t.keystore)?;
            let old = ks
                .get(id.as_str())
                .ok_or_else(|| format!("no client {id} in {}", t.keystore.display()))?;
            if previous {
                let current = old.keys[0].clone();
                ks.set(id.clone(), vec![current]);
                eprintln!("client {id}: previous keys removed; only the current key is accepted");
            } else {
                ks.remove(id.as_str());
                eprintln!("client {id} removed");
            }
            save(&ks, &t.keystore)
        }
        KeysCommand::Split(a) => crate::custody::split(a),
        KeysCommand::Combine(a) => crate::custody::combine(a),
        KeysCommand::ShareDecrypt(a) => crate::custody::share_decrypt(a),
        KeysCommand::List { keystore, json } => {
            let ks = Keystore::load(&keystore).map_err(|e| e.to_string())?;
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

pub(crate) fn save(ks: &Keystore, path: &Path) -> Result<(), String> {
    ks.save_atomic(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Gives the new key to the operator exactly once: to a 0600 file, or stdout.
fn hand_out(
    id: &ClientId,
    key: &SoftwareRootKey,
    out: Option<&Path>,
    verb: &str,
) -> Result<(), String> {
    let line = key.to_key_file();
    let fp = RootKey::fingerprint(key);
    match out {
        Some(p) => {
            write_private(p, line.as_bytes(), Existing::Replace)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            eprintln!(
                "client {id} {verb}: new key fp={fp} written to {}",
                p.display()
            );
        }
        None => {
            eprintln!("client {id} {verb}: new key fp={fp}; its key file follows on stdout (shown once, store it now)");
            let mut out = std::io::stdout();
            if std::io::Write::write_all(&mut out, line.as_bytes()).is_err() {
                return Err(
                    "cannot write the key to stdout; the keystore has it, rotate again".into(),
                );
            }
        }
    }
    Ok(())
}
