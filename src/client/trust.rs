//! The known-servers file: which key each server had the first time we met
//! it, as SSH's `known_hosts` does for hosts. A server whose key changed is
//! refused before anything, a password above all, is sent to it.
//!
//! The file lives in the platform's configuration directory (or in
//! `$CHATAPP_CONFIG_DIR`), is readable by its owner only, and holds one
//! server a line: the address as the user gave it, then the fingerprint of
//! its key. Lines starting with `#` are comments; a person may edit it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Overrides the configuration directory (tests, portable installs).
pub const CONFIG_DIR_ENV: &str = "CHATAPP_CONFIG_DIR";
/// The file's name inside the configuration directory.
pub const FILE_NAME: &str = "known_servers";

const HEADER: &str = "# chatapp known servers: the key each server had when you first trusted it.\n\
# One server a line: ADDRESS FINGERPRINT. Remove a line to forget a server.\n";

/// What the file says about a server and the key it just showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The same key as before.
    Known,
    /// Never met.
    Unknown,
    /// The key differs from the remembered one.
    Changed { remembered: String },
}

#[derive(Debug)]
pub struct TrustError {
    path: PathBuf,
    what: &'static str,
    source: io::Error,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} the known-servers file {}: {}",
            self.what,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for TrustError {}

/// The file's path: `$CHATAPP_CONFIG_DIR/known_servers`, else the
/// platform's config directory for chatapp.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join(FILE_NAME));
    }
    directories::ProjectDirs::from("", "", "chatapp").map(|d| d.config_dir().join(FILE_NAME))
}

/// The known servers, as read from their file.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    entries: Vec<(String, String)>,
}

impl KnownServers {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<KnownServers, TrustError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(TrustError {
                    path: path.to_path_buf(),
                    what: "read",
                    source,
                });
            }
        };
        Ok(KnownServers {
            path: path.to_path_buf(),
            entries: parse(&text),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn check(&self, addr: &str, fingerprint: &str) -> Verdict {
        let addr = addr_key(addr);
        match self.entries.iter().find(|(a, _)| *a == addr) {
            None => Verdict::Unknown,
            Some((_, fp)) if fp == fingerprint => Verdict::Known,
            Some((_, fp)) => Verdict::Changed {
                remembered: fp.clone(),
            },
        }
    }

    /// Remembers a server's key and writes the file (owner-only), replacing
    /// it whole so that a crash never leaves half a line.
    pub fn remember(&mut self, addr: &str, fingerprint: &str) -> Result<(), TrustError> {
        let addr = addr_key(addr);
        self.entries.retain(|(a, _)| *a != addr);
        self.entries.push((addr, fingerprint.to_string()));
        let err = |what, source| TrustError {
            path: self.path.clone(),
            what,
            source,
        };
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|e| err("create the folder of", e))?;
        }
        let tmp = self.path.with_extension("tmp");
        write_private(&tmp, &format(&self.entries)).map_err(|e| err("write", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| err("replace", e))?;
        Ok(())
    }
}

/// How an address is compared: without surrounding space, host lowercased.
pub fn addr_key(addr: &str) -> String {
    addr.trim().to_ascii_lowercase()
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((addr_key(words.next()?), words.next()?.to_string()))
        })
        .collect()
}

fn format(entries: &[(String, String)]) -> String {
    let mut out = HEADER.to_string();
    for (addr, fp) in entries {
        out.push_str(&format!("{addr} {fp}\n"));
    }
    out
}

pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

pub(super) fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    // The mode above applies only to a new file: tighten an old one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_server_is_unknown_then_known_after_remembering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(FILE_NAME);
        let mut known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("127.0.0.1:7878", "SHA256:a"), Verdict::Unknown);
        known.remember("127.0.0.1:7878", "SHA256:a").unwrap();
        let again = KnownServers::load(&path).unwrap();
        assert_eq!(again.check("127.0.0.1:7878", "SHA256:a"), Verdict::Known);
        assert_eq!(again.check("127.0.0.1:7879", "SHA256:a"), Verdict::Unknown);
    }

    #[test]
    fn a_changed_key_is_reported_with_the_remembered_one() {
        let known = KnownServers {
            path: PathBuf::from("x"),
            entries: parse("# comment\n\nChat.Example.org:7878 SHA256:old\n"),
        };
        assert_eq!(
            known.check("chat.example.org:7878", "SHA256:new"),
            Verdict::Changed {
                remembered: "SHA256:old".into()
            }
        );
    }

    #[test]
    fn remembering_again_replaces_the_line_and_keeps_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut known = KnownServers::load(&path).unwrap();
        known.remember("a:1", "SHA256:x").unwrap();
        known.remember("b:2", "SHA256:y").unwrap();
        known.remember("a:1", "SHA256:z").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# chatapp known servers"), "{text}");
        assert!(text.ends_with("b:2 SHA256:y\na:1 SHA256:z\n"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut known = KnownServers::load(&path).unwrap();
        known.remember("a:1", "SHA256:x").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
