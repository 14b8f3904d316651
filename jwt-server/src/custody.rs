//! `jwt-server keys split|combine|share-decrypt`: t-of-n custody of a
//! client's root key.

use std::path::{Path, PathBuf};

use jose_binding::custody::{self, Holder, ShareFile};
use jose_binding::private_file::{write_private, Existing};
use jose_binding::{ClientId, Keystore, RootKey};

use crate::cli::{CombineArgs, Global, ServeSettings, ShareDecryptArgs, SplitArgs};
use crate::keys::{keystore_for, load_or_empty, save};
use crate::serve::missing_hint;

/// `keys split`: shares to files first, then (with --remove) the keystore.
pub(crate) fn split(a: SplitArgs, g: &Global, s: &ServeSettings) -> Result<(), String> {
    let id = ClientId::new(&a.client_id).map_err(|e| e.to_string())?;
    let keystore = keystore_for(a.keystore.clone(), g, s)?;
    if !keystore.exists() {
        return Err(missing_hint("keystore", &keystore));
    }
    let _lock = crate::keys::lock(&keystore)?;
    let mut ks = Keystore::load(&keystore).map_err(|e| e.to_string())?;
    let entry = ks
        .get(id.as_str())
        .ok_or_else(|| format!("no client {id} in {}", keystore.display()))?
        .clone();
    // Parsed here, not by clap, whose errors would echo a mistaken value
    // (a secret key pasted instead of a public one).
    let holders = a
        .holders
        .iter()
        .map(|h| h.parse::<Holder>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let split =
        custody::split(&id, &entry.keys[0], a.threshold, &holders).map_err(|e| e.to_string())?;
    let paths: Vec<PathBuf> = holders
        .iter()
        .map(|h| a.out_dir.join(format!("{id}-{}.share", h.name())))
        .collect();
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(format!(
            "{} already exists; move it away or choose another --out-dir (nothing written)",
            p.display()
        ));
    }
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| format!("--out-dir {}: {e}", a.out_dir.display()))?;
    let mut written: Vec<&Path> = Vec::with_capacity(paths.len());
    for (share, path) in split.shares.iter().zip(&paths) {
        if let Err(e) = write_private(path, share.to_text().as_bytes(), Existing::Refuse) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(format!(
                "cannot write {}: {e}; the share files written so far were removed",
                path.display()
            ));
        }
        written.push(path);
    }
    let n = split.shares.len();
    outln!(
        "{id}: current key fp={} split into {n} shares, any {} of which rebuild it",
        split.key_fingerprint,
        split.threshold
    );
    outln!("group {}", split.group);
    let width = paths
        .iter()
        .map(|p| p.display().to_string().len())
        .max()
        .unwrap_or(0);
    let iw = n.to_string().len();
    for (share, path) in split.shares.iter().zip(&paths) {
        outln!(
            "  #{:<iw$}  {:<width$}  encrypted to {} ({})",
            share.meta.index,
            path.display().to_string(),
            share.meta.recipient,
            share.meta.holder
        );
    }
    let previous = entry.keys.len() - 1;
    if previous > 0 {
        eprintln!(
            "note: {id} also has {previous} previous key(s), still accepted; they are not in the shares{}",
            if a.remove { " and --remove drops them" } else { "" }
        );
    }
    if a.remove {
        ks.remove(id.as_str());
        save(&ks, &keystore)?;
        outln!(
            "{id} removed from {}; rebuild it with `jwt-server keys combine {id} SHARE_FILE...`",
            keystore.display()
        );
    }
    Ok(())
}

/// Where `keys combine` puts the rebuilt key.
enum Destination<'a> {
    KeyFile(&'a Path),
    Keystore(PathBuf),
}

/// `keys combine`: read, decrypt, check and rebuild; write only a checked key.
pub(crate) fn combine(a: CombineArgs, g: &Global, s: &ServeSettings) -> Result<(), String> {
    let id = ClientId::new(&a.client_id).map_err(|e| e.to_string())?;
    // Refuse before anything is decrypted if the result could not be stored.
    let destination = match &a.key_out {
        Some(p) => Destination::KeyFile(p),
        None => {
            let keystore = keystore_for(a.keystore.clone(), g, s)?;
            let ks = load_or_empty(&keystore)?;
            if let Some(old) = ks.get(id.as_str()) {
                if !a.replace {
                    return Err(format!(
                        "client {id} is already in {} (current key fp={}); pass --replace to replace its keys with the rebuilt one, or --key-out FILE",
                        keystore.display(),
                        RootKey::fingerprint(&old.keys[0])
                    ));
                }
            }
            Destination::Keystore(keystore)
        }
    };
    let files = a
        .shares
        .iter()
        .map(|p| ShareFile::read(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let identities = custody::read_identities(&a.identities).map_err(|e| e.to_string())?;
    let plain = files
        .iter()
        .map(|f| f.open(&identities))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let rebuilt = custody::combine(&id, &plain).map_err(|e| e.to_string())?;
    drop(plain);
    let fp = RootKey::fingerprint(&rebuilt.key);
    let used: Vec<String> = rebuilt
        .used
        .iter()
        .map(|(i, holder)| format!("#{i} {holder}"))
        .collect();
    let summary = format!(
        "{id}: key fp={fp} rebuilt from shares {} of group {} ({} of {} needed); commitment verified",
        used.join(", "),
        rebuilt.group,
        rebuilt.threshold,
        rebuilt.shares
    );
    match destination {
        Destination::KeyFile(p) => {
            write_private(p, rebuilt.key.to_key_file().as_bytes(), Existing::Replace)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            outln!("{summary}");
            outln!(
                "{id}: key written to {} (mode 0600); e.g. jwt-client tpm import --key-file {} --out {id}.tpm.pem --delete-key-file",
                p.display(),
                p.display()
            );
        }
        Destination::Keystore(keystore) => {
            // Read again under the lock: the keystore may have changed
            // while the shares were decrypted.
            let _lock = crate::keys::lock(&keystore)?;
            let mut ks = load_or_empty(&keystore)?;
            if ks.get(id.as_str()).is_some() && !a.replace {
                return Err(format!("client {id} was added to {} meanwhile; pass --replace to replace its keys (the keystore is unchanged)", keystore.display()));
            }
            if ks.invite(id.as_str()).is_some() {
                return Err(format!("an invite for {id} is pending; `keys revoke-invite {id}` first (the keystore is unchanged)"));
            }
            ks.set(id.clone(), vec![rebuilt.key.clone()]);
            save(&ks, &keystore)?;
            outln!("{summary}");
            outln!(
                "{id}: put into {} as its current key; a running server picks it up within 2 s",
                keystore.display()
            );
        }
    }
    Ok(())
}

/// `keys share-decrypt`: a holder's own share, in the clear, to a new file.
pub(crate) fn share_decrypt(a: ShareDecryptArgs) -> Result<(), String> {
    let file = ShareFile::read(&a.share).map_err(|e| e.to_string())?;
    if matches!(file, ShareFile::Plain(_)) {
        return Err(format!("{} is already decrypted", a.share.display()));
    }
    let identities = custody::read_identities(&a.identities).map_err(|e| e.to_string())?;
    let plain = file.open(&identities).map_err(|e| e.to_string())?;
    let text = plain.to_text();
    let m = &plain.meta;
    if a.out.as_os_str() == "-" {
        let mut out = std::io::stdout();
        std::io::Write::write_all(&mut out, text.as_bytes())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    } else {
        write_private(&a.out, text.as_bytes(), Existing::Refuse)
            .map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    }
    eprintln!(
        "share #{} of {}'s key (holder {}, group {}) decrypted{}: it is no longer encrypted; hand it to the operator who combines over a trusted channel, and delete it afterwards",
        m.index,
        m.client,
        m.holder,
        m.group,
        if a.out.as_os_str() == "-" {
            " to stdout".to_owned()
        } else {
            format!(" to {} (mode 0600)", a.out.display())
        }
    );
    Ok(())
}
