//! Why the server could not start or stopped: one error type for
//! `chatapp serve` and [`super::start`], each variant saying what went
//! wrong and what the operator can do. Its `Display` is this layer's part
//! only; the cause, where there is one, is its `source()`, so that `main`
//! prints the whole chain once as `chatapp: <this>: <cause>`.

use crate::store::StoreError;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// The platform has no data directory for this user.
    NoDataDir,
    /// `--listen` names a port above 65535.
    PortOutOfRange { listen: String, port: String },
    /// `--listen` is not an address and port.
    BadListen { listen: String },
    /// The listening socket could not be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// A file or directory in the data directory could not be used: `what`
    /// says which and what was being done to it.
    File {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Another server holds the data directory's lock.
    Locked { dir: PathBuf, lock: PathBuf },
    /// The key file is not a key.
    DamagedKey { path: PathBuf, len: usize },
    /// The database could not be opened.
    Database {
        database: String,
        source: StoreError,
    },
    /// The database failed at start-up.
    Store(StoreError),
    /// `--bus` without a PostgreSQL `--database` to share.
    BusWithoutDatabase,
    /// `--bus` names no Redis this server can use.
    Bus(super::bus::BusError),
    /// The event loop or a thread of the server could not be set up, or
    /// the loop failed; `what` says which.
    Io {
        what: &'static str,
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }

    pub(crate) fn file(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::File { what, path, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDataDir => {
                f.write_str("cannot find a home directory for the data: pass --data-dir DIR")
            }
            Error::PortOutOfRange { listen, port } => write!(
                f,
                "cannot listen on {listen}: port {port} is out of range (0 to 65535)"
            ),
            Error::BadListen { listen } => write!(
                f,
                "cannot listen on {listen}: give an address like 127.0.0.1:7878 or [::1]:7878"
            ),
            // The system's reason comes before the advice, so it is part
            // of this message and not repeated as a cause.
            Error::Bind { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => {
                        ": another program (another chatapp serve?) uses that port; choose another with --listen"
                    }
                    io::ErrorKind::PermissionDenied => {
                        ": ports below 1024 need privileges; choose a higher port with --listen"
                    }
                    io::ErrorKind::AddrNotAvailable => {
                        ": this machine has no such address; try 127.0.0.1 or 0.0.0.0"
                    }
                    _ => "",
                };
                write!(f, "cannot listen on {addr}: {source}{hint}")
            }
            Error::File { what, path, .. } => write!(f, "cannot {what} {}", path.display()),
            Error::Locked { dir, lock } => write!(
                f,
                "another chatapp server is already using the data directory {} (it holds {}): stop it, or give this one another --data-dir",
                dir.display(),
                lock.display()
            ),
            Error::DamagedKey { path, len } => write!(
                f,
                "the server key {} is damaged ({len} bytes, expected 64): restore it from a backup, or delete it to make a new key (clients will then refuse this server until their users accept the new key)",
                path.display()
            ),
            Error::Database { database, .. } => {
                write!(f, "cannot open the database {database}")
            }
            // The store's own message says what failed.
            Error::Store(e) => e.fmt(f),
            Error::BusWithoutDatabase => f.write_str(
                "--bus needs --database postgres://...: servers share a PostgreSQL database \
                 (an SQLite file belongs to one server); give every server the same --database \
                 and --bus",
            ),
            Error::Bus(e) => e.fmt(f),
            Error::Io { what, .. } => f.write_str(what),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::File { source, .. } | Error::Io { source, .. } => Some(source),
            Error::Database { source, .. } => Some(source),
            // Shown through this error's own Display: its cause is next.
            Error::Store(e) => e.source(),
            Error::Bus(e) => e.source(),
            _ => None,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Store(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::log::chain;

    fn sqlite_failure() -> StoreError {
        StoreError::Failed {
            context: "cannot read the schema version".into(),
            constraint: false,
            source: Box::new(io::Error::other("disk I/O error")),
        }
    }

    /// The store's error used to put its cause in its own message and
    /// return it as its source too, so the cause was printed twice.
    #[test]
    fn a_database_error_names_its_cause_once() {
        let e = Error::Database {
            database: "data/chatapp.db".to_string(),
            source: sqlite_failure(),
        };
        assert_eq!(
            chain(&e),
            "cannot open the database data/chatapp.db: cannot read the schema version: disk I/O error"
        );
        assert_eq!(
            chain(&Error::Store(sqlite_failure())),
            "cannot read the schema version: disk I/O error"
        );
    }

    #[test]
    fn a_file_error_says_which_file_and_why() {
        let e = Error::file(
            "create the server key",
            std::path::Path::new("d/server.key"),
        )(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            chain(&e),
            "cannot create the server key d/server.key: permission denied"
        );
    }
}
