//! Unix sockets bound with their final mode from the first instant: the
//! sidecar's (0600, whoever connects acts as the client) and a frontend
//! listener's (0660 by default, the frontend's group may connect).

use std::path::{Path, PathBuf};

/// Why a Unix socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnixSocketError {
    /// The path exists and is not a socket; it is left alone.
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// Binding the socket (or making its staging directory) failed.
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        /// The socket's path.
        path: PathBuf,
        /// The error from the socket.
        source: std::io::Error,
    },
    /// The socket could not be given its mode.
    #[error("chmod {mode:o} {}: {source}", path.display())]
    Mode {
        /// The socket's path.
        path: PathBuf,
        /// The mode asked for.
        mode: u32,
        /// The error from the file system.
        source: std::io::Error,
    },
}

impl UnixSocketError {
    /// A stable code, for scripts and logs.
    pub const fn code(&self) -> &'static str {
        match self {
            UnixSocketError::NotASocket(_) => "listen_path_not_a_socket",
            UnixSocketError::Bind { .. } => "listen_failed",
            UnixSocketError::Mode { .. } => "listen_socket_mode",
        }
    }
}

/// Binds a Unix socket at `path` that no one outside `mode` can ever
/// connect to.
///
/// `bind` creates the socket with the umask's mode (often 0755), and a
/// chmod after it leaves a window in which anyone may connect (and be
/// accepted later). So the socket is bound inside a fresh 0700 directory
/// beside `path`, given `mode` there, and renamed onto `path` (atomically
/// replacing a stale socket of an earlier run); the directory is then
/// removed. Anything at `path` that is not a socket is left alone.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<tokio::net::UnixListener, UnixSocketError> {
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(UnixSocketError::NotASocket(path.to_owned()));
        }
    }
    let bind_error = |source| UnixSocketError::Bind {
        path: path.to_owned(),
        source,
    };
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        bind_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the socket path has no file name",
        ))
    })?;
    let mut staging_name = std::ffi::OsString::from(".");
    staging_name.push(name);
    staging_name.push(format!(".{}.bind", std::process::id()));
    let staging = parent.join(staging_name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(bind_error)?;
    let inner = staging.join("s");
    let bound = (|| {
        let listener = tokio::net::UnixListener::bind(&inner).map_err(bind_error)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(mode)).map_err(
            |source| UnixSocketError::Mode {
                path: path.to_owned(),
                mode,
                source,
            },
        )?;
        std::fs::rename(&inner, path).map_err(bind_error)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&staging);
    bound
}
