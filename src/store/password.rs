//! The password standard (length, common passwords, the user's own name)
//! and password hashing with scrypt, stored as PHC strings.
//!
//! Every function here works on the NFKC form of the password, so a password
//! typed on a keyboard that produces, say, fullwidth or composed characters
//! still matches the one chosen elsewhere.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use scrypt::password_hash::phc::PasswordHash;
use scrypt::password_hash::{CustomizedPasswordHasher, PasswordVerifier};
use scrypt::{Params, Scrypt};
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

/// Scrypt needs `128 * r * 2^log_n` bytes; a stored hash asking for more
/// than this is refused rather than allowed to exhaust the server's memory.
const MAX_MEMORY_BYTES: u128 = 1 << 30;
/// Highest `p` accepted, for the same reason (time rather than memory).
const MAX_P: u32 = 16;

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

/// Scrypt cost parameters: memory and time grow with `2^log_n * r`, and
/// time also with `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl Default for HashCost {
    /// The scrypt crate's recommendation: 128 MiB and roughly 0.3 s a hash.
    fn default() -> Self {
        HashCost {
            log_n: Params::RECOMMENDED_LOG_N,
            r: Params::RECOMMENDED_R,
            p: Params::RECOMMENDED_P,
        }
    }
}

impl HashCost {
    /// Cheap enough for tests; never for real accounts.
    pub const TEST: HashCost = HashCost {
        log_n: 4,
        r: 8,
        p: 1,
    };

    /// The scrypt parameters, if scrypt accepts them and they stay within
    /// the memory and time bounds this server is willing to spend.
    fn params(self) -> Option<Params> {
        let memory = 128u128 * u128::from(self.r) * 1u128.checked_shl(self.log_n.into())?;
        if memory > MAX_MEMORY_BYTES || self.p > MAX_P {
            return None;
        }
        Params::new(self.log_n, self.r, self.p).ok()
    }
}

/// Hashes the NFKC form of `password` with a fresh random salt, giving a PHC
/// string such as `$scrypt$ln=17,r=8,p=1$<salt>$<hash>`.
///
/// A `cost` that scrypt refuses, or that exceeds the bounds [`verify`] accepts,
/// is replaced by [`HashCost::default`], so the result is never weaker than
/// intended and always verifiable.
pub fn hash(password: &str, cost: HashCost) -> String {
    let params = cost.params().unwrap_or(Params::RECOMMENDED);
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let password = normalize(password);
    match Scrypt::new().hash_password_with_params(password.as_bytes(), &salt, params) {
        Ok(phc) => phc.to_string(),
        // Valid parameters, a 16-byte salt and the default output length
        // cannot fail; should that ever change, fail closed: a string that
        // is not a PHC hash never verifies, so the account is locked rather
        // than open, and the server keeps running.
        Err(e) => format!("!unusable hash: {e}"),
    }
}

/// Whether `password` (in NFKC form) matches the PHC string `phc`. False for
/// a malformed hash, another algorithm, or a cost beyond the server's bounds.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let cost = HashCost {
        log_n: params.log_n(),
        r: params.r(),
        p: params.p(),
    };
    if cost.params().is_none() {
        return false;
    }
    let password = normalize(password);
    Scrypt::new()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// The hash of a random password nobody knows. Verifying a login for an
/// unknown user against it takes as long as for a real user, so response
/// times do not reveal which names exist.
pub fn dummy_hash(cost: HashCost) -> String {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    hash(&password, cost)
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

    #[test]
    fn hash_and_verify() {
        let phc = hash(GOOD, HashCost::TEST);
        assert!(phc.starts_with("$scrypt$ln=4,r=8,p=1$"), "{phc}");
        assert!(verify(GOOD, &phc));
        assert!(!verify("correct horse battery stapler", &phc));
        assert!(!verify("", &phc));
        // Fresh salt every time.
        assert_ne!(phc, hash(GOOD, HashCost::TEST));
    }

    #[test]
    fn fullwidth_form_verifies_against_ascii_hash() {
        let phc = hash("Tr0ub4dor&3xyz", HashCost::TEST);
        assert!(verify("Ｔｒ０ｕｂ４ｄｏｒ＆３ｘｙｚ", &phc));
    }

    #[test]
    fn malformed_and_oversized_hashes_do_not_verify() {
        for bad in [
            "",
            "not a hash",
            "$scrypt$",
            "$scrypt$ln=4,r=8,p=1$",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "!unusable hash: whatever",
        ] {
            assert!(!verify(GOOD, bad), "{bad:?}");
        }
        // A well-formed hash demanding 2^40 * 1 KiB of memory is refused
        // without being attempted.
        let phc = hash(GOOD, HashCost::TEST).replacen("ln=4", "ln=40", 1);
        assert!(!verify(GOOD, &phc));
    }

    #[test]
    fn unusable_costs_are_detected() {
        assert!(
            HashCost {
                log_n: 4,
                r: 0,
                p: 1
            }
            .params()
            .is_none()
        );
        assert!(
            HashCost {
                log_n: 63,
                r: 8,
                p: 1
            }
            .params()
            .is_none()
        );
        assert!(HashCost::TEST.params().is_some());
        assert!(HashCost::default().params().is_some());
    }

    #[test]
    fn default_cost_and_dummy_hash() {
        // The one real-cost hash in the suite (about 0.3 s).
        let phc = dummy_hash(HashCost::default());
        assert!(phc.starts_with("$scrypt$ln=17,r=8,p=1$"), "{phc}");
        assert!(!verify(GOOD, &phc));
    }
}
