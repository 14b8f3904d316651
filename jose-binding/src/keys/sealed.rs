//! Secrets sealed with age to an X25519 recipient (feature `age-file`):
//! custody's shares, and the offline enrolment bundle
//! ([`crate::bundle`]). Armored text in, armored text out; identity files
//! as `age-keygen` writes them. No message holds a secret or a line of an
//! identity file, only line numbers.

use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

/// The first line of an armored age file.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// Its last line.
pub const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// Longest identity file read.
pub const MAX_IDENTITY_FILE: u64 = 64 * 1024;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealedError {
    /// Not an age X25519 public key (`age1…`); the value is not shown, as
    /// it may be a secret key pasted in the wrong place.
    #[error("not an age X25519 recipient (age1...)")]
    BadRecipient,
    /// An identity file with a line that is not an X25519 identity, or
    /// none at all.
    #[error("{origin}: {problem}")]
    BadIdentityFile {
        /// The file.
        origin: String,
        /// What is wrong, by line number only.
        problem: String,
    },
    /// An identity file that cannot be read, or is over
    /// [`MAX_IDENTITY_FILE`].
    #[error("{origin}: {problem}")]
    Io {
        /// The file.
        origin: String,
        /// What the file system said.
        problem: String,
    },
    /// None of the identities opens the file.
    #[error("none of the given age identities is a recipient of it")]
    NoMatchingIdentity,
    /// The file is damaged or tampered with: armor, header or ciphertext,
    /// or plaintext over the bound given.
    #[error("{0}")]
    Corrupted(String),
    /// age refused to encrypt.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
}

/// Whether `text` is an armored age file.
pub fn is_armored(text: &str) -> bool {
    text.trim_start().starts_with(ARMOR_BEGIN)
}

/// An `age1…` public key.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, SealedError> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|_| SealedError::BadRecipient)
}

/// `plaintext` encrypted to `recipient`, ASCII-armored.
pub fn seal(recipient: &age::x25519::Recipient, plaintext: &[u8]) -> Result<String, SealedError> {
    let fail = |e: &dyn std::fmt::Display| SealedError::Encrypt(e.to_string());
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
            .map_err(|e| fail(&e))?;
    let mut armored = Vec::with_capacity(plaintext.len() * 2 + 512);
    let armor =
        ArmoredWriter::wrap_output(&mut armored, Format::AsciiArmor).map_err(|e| fail(&e))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| fail(&e))?;
    writer.write_all(plaintext).map_err(|e| fail(&e))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| fail(&e))?;
    String::from_utf8(armored)
        .map(|s| s.trim().to_owned())
        .map_err(|e| fail(&e))
}

/// Opens an armored age file with whichever of `identities` it is sealed
/// to; at most `max` bytes of plaintext are accepted.
pub fn open(
    armored: &str,
    identities: &[age::x25519::Identity],
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, SealedError> {
    let decryptor = age::Decryptor::new(ArmoredReader::new(armored.trim().as_bytes()))
        .map_err(|e| SealedError::Corrupted(age_problem(&e)))?;
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SealedError::NoMatchingIdentity,
            other => SealedError::Corrupted(age_problem(&other)),
        })?;
    let mut plain = Zeroizing::new(Vec::with_capacity(max.min(64 * 1024) + 1));
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|_| {
            SealedError::Corrupted("the ciphertext fails to authenticate (damaged)".into())
        })?;
    if plain.len() > max {
        return Err(SealedError::Corrupted(
            "the encrypted payload is too large".into(),
        ));
    }
    Ok(plain)
}

/// What age's error means, in fixed words.
pub(crate) fn age_problem(e: &age::DecryptError) -> String {
    use age::DecryptError as E;
    match e {
        E::Io(io) => format!("the armored ciphertext does not decode ({io})"),
        E::InvalidHeader | E::UnknownFormat => "the age header is damaged".into(),
        E::InvalidMac => "the age header fails to authenticate (header damaged)".into(),
        E::DecryptionFailed | E::KeyDecryptionFailed => {
            "decryption fails (ciphertext damaged)".into()
        }
        other => {
            let text = other.to_string();
            text.lines()
                .next()
                .unwrap_or("age refused the file")
                .to_owned()
        }
    }
}

/// Parses an age identity file as `age-keygen` writes it: `AGE-SECRET-KEY-1...`
/// lines, `#` comments and empty lines. Errors give line numbers, never text.
pub fn parse_identities(
    text: &str,
    origin: &str,
) -> Result<Vec<age::x25519::Identity>, SealedError> {
    let bad = |problem: String| SealedError::BadIdentityFile {
        origin: origin.to_owned(),
        problem,
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(bad(format!(
                "line {}: plugin identities are not supported, only age X25519 keys",
                n + 1
            )));
        }
        if !line.starts_with("AGE-SECRET-KEY-1") {
            return Err(bad(format!(
                "line {} is not an age identity (AGE-SECRET-KEY-1...)",
                n + 1
            )));
        }
        let id = age::x25519::Identity::from_str(line)
            .map_err(|_| bad(format!("line {} is not a valid age X25519 identity", n + 1)))?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(bad("holds no age identity (AGE-SECRET-KEY-1...)".into()));
    }
    Ok(out)
}

/// Reads age identity files, all identities of each (see [`parse_identities`]).
pub fn read_identities(
    paths: &[impl AsRef<Path>],
) -> Result<Vec<age::x25519::Identity>, SealedError> {
    let mut identities = Vec::new();
    for path in paths {
        let origin = path.as_ref().display().to_string();
        let io = |problem: String| SealedError::Io {
            origin: origin.clone(),
            problem,
        };
        let file = std::fs::File::open(path.as_ref()).map_err(|e| io(e.to_string()))?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_IDENTITY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io(e.to_string()))?;
        if bytes.len() as u64 > MAX_IDENTITY_FILE {
            return Err(io("larger than 64 KiB: not an identity file".into()));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| io("not UTF-8 text".into()))?;
        identities.extend(parse_identities(text, &origin)?);
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn sealed_opens_with_its_identity_only_and_not_when_damaged() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let armored = seal(&id.to_public(), b"the secret").unwrap();
        assert!(is_armored(&armored) && !armored.contains("the secret"));
        let plain = open(&armored, std::slice::from_ref(&id), 64).unwrap();
        assert_eq!(&plain[..], b"the secret");
        assert!(matches!(
            open(&armored, &[other], 64),
            Err(SealedError::NoMatchingIdentity)
        ));
        assert!(matches!(
            open(&armored, std::slice::from_ref(&id), 4),
            Err(SealedError::Corrupted(_))
        ));
        // Flip one character of the base64 body.
        let mut bytes = armored.into_bytes();
        let at = ARMOR_BEGIN.len() + 40;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(bytes).unwrap();
        assert!(open(&damaged, &[id], 64).is_err());
    }

    #[test]
    fn identity_files() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let text = format!(
            "# created: 2026-01-01T00:00:00Z\n# public key: {}\n{}\n\n{}\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let ids = parse_identities(&text, "ids.txt").unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1].to_public().to_string(), b.to_public().to_string());
        let secretish = "AGE-SECRET-KEY-1SECRETSECRETSECRET";
        for (bad, want) in [
            ("# nothing\n".to_owned(), "holds no age identity"),
            (format!("{secretish}\n"), "line 1 is not a valid"),
            ("age1abc\n".to_owned(), "line 1 is not an age identity"),
            ("AGE-PLUGIN-YUBIKEY-1XYZ\n".to_owned(), "plugin identities"),
        ] {
            let err = parse_identities(&bad, "ids.txt").err().unwrap().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("SECRETSECRET"), "{err}");
        }
    }

    #[test]
    fn a_recipient_is_an_age1_key_and_a_secret_key_is_not_one() {
        let id = age::x25519::Identity::generate();
        assert!(parse_recipient(id.to_string().expose_secret()).is_err());
        assert!(parse_recipient(&id.to_public().to_string()).is_ok());
    }
}
