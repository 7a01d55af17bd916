//! The saved-logins file: the resume token the client holds for each
//! server, so that connecting again needs no password. It lives beside
//! the known-servers file (in the platform's configuration directory, or
//! `$CHATAPP_CONFIG_DIR`), readable by its owner only, and holds one
//! server a line: the address, as the known-servers file keys it, then
//! the token, then the first client id the next run may give a message
//! (ids must keep rising for as long as the device's token lives; see
//! `client_id` in docs/PROTOCOL.md). Anyone who can read it can log in as its owner until the
//! token is used or revoked: deleting it forgets every saved login.

use super::trust::{addr_key, create_private_dir, write_private};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The file's name, beside the known-servers file.
pub const FILE_NAME: &str = "saved_logins";

const HEADER: &str = "# chatapp saved logins: a resume token for each server, used instead of \
your password when you connect.\n\
# Keep this file private. Delete a line (or the file) to forget a login.\n";

#[derive(Debug)]
pub struct TokenError {
    path: PathBuf,
    what: &'static str,
    source: io::Error,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} the saved-logins file {}: {}",
            self.what,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for TokenError {}

/// One server's saved login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub token: String,
    /// No message of this device has used this client id or any above it.
    pub next_id: u64,
}

/// The saved logins, as read from their file.
#[derive(Debug, Clone)]
pub struct SavedLogins {
    path: PathBuf,
    entries: Vec<(String, Saved)>,
}

impl SavedLogins {
    /// The file beside the known-servers file `known`.
    pub fn beside(known: &Path) -> PathBuf {
        known.with_file_name(FILE_NAME)
    }

    /// Reads the file; a missing file holds no logins.
    pub fn load(path: &Path) -> Result<SavedLogins, TokenError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(TokenError {
                    path: path.to_path_buf(),
                    what: "read",
                    source,
                });
            }
        };
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let addr = addr_key(words.next()?);
                let token = words.next()?.to_string();
                // A line written before client ids were kept: none used.
                let next_id = words.next().and_then(|n| n.parse().ok()).unwrap_or(1);
                Some((addr, Saved { token, next_id }))
            })
            .collect();
        Ok(SavedLogins {
            path: path.to_path_buf(),
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The login saved for a server.
    pub fn get(&self, addr: &str) -> Option<Saved> {
        let addr = addr_key(addr);
        self.entries
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, t)| t.clone())
    }

    /// Saves the login for a server, replacing any other.
    pub fn set(&mut self, addr: &str, saved: Saved) -> Result<(), TokenError> {
        let addr = addr_key(addr);
        self.entries.retain(|(a, _)| *a != addr);
        self.entries.push((addr, saved));
        self.save()
    }

    /// Forgets the token for a server (the file is rewritten only if it
    /// held one).
    pub fn forget(&mut self, addr: &str) -> Result<(), TokenError> {
        let addr = addr_key(addr);
        let before = self.entries.len();
        self.entries.retain(|(a, _)| *a != addr);
        if self.entries.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// Writes the whole file to a temporary one (owner-only) and renames
    /// it into place, so that a crash leaves the old file or the new one,
    /// never half of either.
    fn save(&self) -> Result<(), TokenError> {
        let err = |what, source| TokenError {
            path: self.path.clone(),
            what,
            source,
        };
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir).map_err(|e| err("create the folder of", e))?;
        }
        let mut text = HEADER.to_string();
        for (addr, Saved { token, next_id }) in &self.entries {
            text.push_str(&format!("{addr} {token} {next_id}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        write_private(&tmp, &text).map_err(|e| err("write", e))?;
        fs::rename(&tmp, &self.path).map_err(|e| err("replace", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_saved_replaced_and_forgotten_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = SavedLogins::beside(&dir.path().join("sub").join("known_servers"));
        let mut saved = SavedLogins::load(&path).unwrap();
        assert_eq!(saved.get("127.0.0.1:7878"), None);
        saved.set("127.0.0.1:7878", login("aa", 1)).unwrap();
        saved.set("Chat.Example.org:7878", login("bb", 7)).unwrap();
        saved.set("127.0.0.1:7878", login("cc", 2001)).unwrap();
        let again = SavedLogins::load(&path).unwrap();
        assert_eq!(again.get("127.0.0.1:7878"), Some(login("cc", 2001)));
        assert_eq!(again.get("chat.example.org:7878"), Some(login("bb", 7)));
        let mut again = again;
        again.forget("127.0.0.1:7878").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# chatapp saved logins"), "{text}");
        assert!(text.ends_with("chat.example.org:7878 bb 7\n"), "{text}");
        assert!(!path.with_extension("tmp").exists(), "renamed into place");
    }

    fn login(token: &str, next_id: u64) -> Saved {
        Saved {
            token: token.to_string(),
            next_id,
        }
    }

    #[test]
    fn a_line_without_a_client_id_starts_the_ids_at_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "# old\n127.0.0.1:7878 aa\n").unwrap();
        let saved = SavedLogins::load(&path).unwrap();
        assert_eq!(saved.get("127.0.0.1:7878"), Some(login("aa", 1)));
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let mut saved = SavedLogins::load(&path).unwrap();
        saved.set("a:1", login("aa", 1)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
