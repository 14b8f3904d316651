//! The one way secrets reach a file: mode 0600 from the first byte, synced
//! to disk. Key files, keystores, custody shares and fixtures all use it.

use std::io::Write;
use std::path::Path;

/// Whether [`write_private`] may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Create the file, or overwrite it after tightening it to 0600.
    Replace,
    /// Fail with `AlreadyExists` and leave the file untouched.
    Refuse,
}

/// Writes `bytes` to `path` with mode 0600 and syncs it. A replaced file is
/// tightened to 0600 before it is truncated and written, since the mode
/// given at open applies only to a file it creates; with
/// [`Existing::Refuse`] an existing file is an error (`AlreadyExists`).
pub fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    match existing {
        Existing::Replace => opts.create(true),
        Existing::Refuse => opts.create_new(true),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.set_len(0)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn writes_0600_tightens_a_replaced_file_and_refuses_when_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("private-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("secret");
        std::fs::write(&p, "old, longer contents").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"new", Existing::Replace).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let err = write_private(&p, b"x", Existing::Refuse).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let fresh = dir.join("fresh");
        write_private(&fresh, b"k", Existing::Refuse).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
