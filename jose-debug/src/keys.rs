//! Key material from the command line: hex, base64url, or `@FILE`.
//!
//! Errors never quote the key text; they name the option and, for files,
//! the path.

use std::path::Path;

use base64::alphabet;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use base64::Engine;
use zeroize::Zeroizing;

/// Largest key file read; a key file is one short line.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// Base64url that tolerates padding and stray trailing bits (for keys typed
/// by people; tokens go through the strict decoder first).
pub const LENIENT_B64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{option}: cannot read {path}: {source}")]
    Io {
        option: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{option}: {path} is larger than 64 KiB; a key file is one line")]
    TooLarge { option: &'static str, path: String },
    #[error("{option}: not hex, not base64url, and no file of that name (use @FILE for a file)")]
    Encoding { option: &'static str },
    #[error("{option}: {path} holds neither hex nor base64url")]
    FileEncoding { option: &'static str, path: String },
    #[error("{option}: the key is empty")]
    Empty { option: &'static str },
}

/// Decodes key text: `hex:`/`b64:` force an encoding; otherwise an even
/// number of hex digits is hex and anything else base64url (padding and the
/// standard alphabet's `+/` tolerated). A 32-byte key in base64url is 43
/// characters, so it is never mistaken for hex.
pub fn decode_key_text(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let t = text.trim();
    if let Some(h) = t.strip_prefix("hex:") {
        return hex::decode(h.trim()).ok().map(Zeroizing::new);
    }
    let (t, forced_b64) = match t
        .strip_prefix("b64:")
        .or_else(|| t.strip_prefix("base64url:"))
    {
        Some(rest) => (rest.trim(), true),
        None => (t, false),
    };
    if !forced_b64 && t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(t).ok().map(Zeroizing::new);
    }
    let normalized: Zeroizing<String> = Zeroizing::new(
        t.chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect(),
    );
    LENIENT_B64URL
        .decode(normalized.as_bytes())
        .ok()
        .map(Zeroizing::new)
}

/// A key or password file's text, bounded and zeroized; errors name the
/// option and path, never the content.
pub fn read_text_file(option: &'static str, path: &Path) -> Result<Zeroizing<String>, KeyError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
        option,
        path: shown.clone(),
        source,
    })?;
    if meta.len() > MAX_KEY_FILE {
        return Err(KeyError::TooLarge {
            option,
            path: shown,
        });
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Io {
        option,
        path: shown.clone(),
        source,
    })?);
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(_) => Err(KeyError::FileEncoding {
            option,
            path: shown,
        }),
    }
}

/// Reads a key argument: `@FILE`, literal hex/base64url, or (when the text
/// is neither) the name of an existing file.
pub fn read_key(option: &'static str, arg: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let from_file = |path: &Path| -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let text = read_text_file(option, path)?;
        decode_key_text(&text).ok_or_else(|| KeyError::FileEncoding {
            option,
            path: path.display().to_string(),
        })
    };
    let bytes = if let Some(path) = arg.strip_prefix('@') {
        from_file(Path::new(path))?
    } else if let Some(bytes) = decode_key_text(arg) {
        bytes
    } else if Path::new(arg).is_file() {
        from_file(Path::new(arg))?
    } else {
        return Err(KeyError::Encoding { option });
    };
    if bytes.is_empty() {
        return Err(KeyError::Empty { option });
    }
    Ok(bytes)
}

/// A 32-byte secret, or `None` for another length.
pub fn to_32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_encoding() {
        let key = [0xfbu8; 32];
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
        assert_eq!(b64.len(), 43);
        assert_eq!(decode_key_text(&b64).unwrap()[..], key);
        assert_eq!(decode_key_text(&format!("{b64}=")).unwrap()[..], key);
        let std_b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(decode_key_text(&std_b64).unwrap()[..], key);
        assert_eq!(decode_key_text(&hex::encode(key)).unwrap()[..], key);
        assert_eq!(
            decode_key_text(&format!("  hex:{}\n", hex::encode_upper(key))).unwrap()[..],
            key
        );
        // "abcd" is hex by default, base64url when forced.
        assert_eq!(decode_key_text("abcd").unwrap()[..], [0xab, 0xcd]);
        assert_eq!(decode_key_text("b64:abcd").unwrap()[..], [0x69, 0xb7, 0x1d]);
        assert!(decode_key_text("not a key!").is_none());
        assert!(decode_key_text("hex:abc").is_none());
    }

    #[test]
    fn reads_files_and_hides_key_text_in_errors() {
        let dir = std::env::temp_dir().join(format!("jose-debug-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("k.key");
        std::fs::write(&file, "REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk\n").unwrap();
        let at = format!("@{}", file.display());
        assert_eq!(read_key("--root-key", &at).unwrap().len(), 32);
        // A plain path works when the text is not itself a key.
        assert_eq!(
            read_key("--root-key", file.to_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let err = read_key("--sig-key", "SECRET-but-not.valid")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--sig-key:") && !err.contains("SECRET"),
            "{err}"
        );
        let missing = format!("@{}", dir.join("nope").display());
        assert!(read_key("--enc-key", &missing)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        std::fs::write(&file, "%%%").unwrap();
        assert!(read_key("--enc-key", &at)
            .unwrap_err()
            .to_string()
            .contains("neither hex nor base64url"));
        std::fs::write(&file, [0xff, 0xfe]).unwrap();
        assert!(read_key("--enc-key", &at).is_err());
        assert!(matches!(
            read_key("--enc-key", "hex:"),
            Err(KeyError::Empty { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
