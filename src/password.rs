//! The password standard, shared by the server (which enforces it) and the
//! client (which checks a new password before sending it): 12 to 256
//! characters, not containing the user name, not one of the common
//! passwords compiled into the binary. No scrypt here: hashing is the
//! store's business ([`crate::store::password`]), and the client must not
//! depend on the store.
//!
//! Every function here works on the NFKC form of the password, so a password
//! typed on a keyboard that produces, say, fullwidth or composed characters
//! still matches the one chosen elsewhere.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

/// Fewest characters (Unicode scalar values of the NFKC form) a password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters a password may have. Longer ones are refused, never
/// truncated, so that what the user typed is exactly what is checked.
pub const MAX_CHARS: usize = 256;

/// Shown to a user before they choose a password.
pub const STANDARD: &str = "Passwords need 12 to 256 characters. Any characters are fine and no mix is required, but a commonly used password, or one that contains your user name, is refused.";

/// Django's list of 19,640 common passwords (BSD licence), one a line.
const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

/// Why a password was refused. The `Display` text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordError(String);

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PasswordError {}

/// The NFKC form of a password: what is checked, hashed and verified.
pub fn normalize(password: &str) -> String {
    password.nfkc().collect()
}

/// Checks a new password for user `name` against the standard in [`STANDARD`].
pub fn check(name: &str, password: &str) -> Result<(), PasswordError> {
    let password = normalize(password);
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError(format!(
            "that password is too short: it has {chars} characters and needs at least {MIN_CHARS}"
        )));
    }
    if chars > MAX_CHARS {
        return Err(PasswordError(format!(
            "that password is too long: it has {chars} characters and may have at most {MAX_CHARS}"
        )));
    }
    let folded = password.to_lowercase();
    let name = normalize(name).to_lowercase();
    // An empty name is contained in everything; names are never empty, but
    // refusing every password would be a confusing way to find that out.
    if !name.is_empty() && folded.contains(&name) {
        return Err(PasswordError(
            "that password contains your user name: choose another".to_owned(),
        ));
    }
    if common_passwords().contains(folded.as_str()) {
        return Err(PasswordError(
            "that password is on the list of commonly used passwords: choose another".to_owned(),
        ));
    }
    Ok(())
}

/// How many distinct entries (after NFKC and lowercasing) the common list has.
pub fn common_password_count() -> usize {
    common_passwords().len()
}

fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| normalize(line).to_lowercase())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "correct horse battery staple";

    #[test]
    fn length_bounds_count_characters() {
        let err = check("bob", &"x".repeat(9)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "that password is too short: it has 9 characters and needs at least 12"
        );
        assert!(check("bob", &"q7".repeat(5)).is_err());
        assert!(check("bob", &"q7w".repeat(4)).is_ok());
        assert!(check("bob", &"q".repeat(11)).is_err());
        assert!(check("bob", &"zq".repeat(128)).is_ok());
        let long = check("bob", &format!("{}z", "zq".repeat(128))).unwrap_err();
        assert!(long.to_string().contains("too long"), "{long}");

        // 11 characters but 22 bytes: still too short.
        let eleven = "é".repeat(11);
        assert_eq!(eleven.len(), 22);
        assert!(check("bob", &eleven).is_err());
        // 256 characters but 512 bytes: still allowed.
        assert!(check("bob", &"é".repeat(256)).is_ok());
        assert!(check("bob", &"é".repeat(257)).is_err());
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        assert!(common_password_count() >= 10_000);
        let entry = COMMON_PASSWORDS
            .lines()
            .find(|l| l.len() >= MIN_CHARS && l.chars().any(|c| c.is_ascii_lowercase()))
            .unwrap();
        for candidate in [entry.to_owned(), entry.to_uppercase()] {
            let err = check("somebody", &candidate).unwrap_err();
            assert_eq!(
                err.to_string(),
                "that password is on the list of commonly used passwords: choose another"
            );
        }
        assert!(check("somebody", "q1w2e3r4t5y6").is_err());
        assert!(check("somebody", GOOD).is_ok());
    }

    #[test]
    fn user_name_is_refused_in_any_case() {
        let err = check("Osagie", "my name is OSAGIE and I chat").unwrap_err();
        assert_eq!(
            err.to_string(),
            "that password contains your user name: choose another"
        );
        assert!(check("osagie", "xxOsAgIexxxxxxx").is_err());
        assert!(check("osagie", GOOD).is_ok());
    }

    #[test]
    fn normalize_is_nfkc() {
        assert_eq!(normalize("ｐａｓｓ１２"), "pass12");
        assert_eq!(normalize("e\u{301}"), "\u{e9}");
    }
}
