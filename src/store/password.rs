//! Password hashing with scrypt, stored as PHC strings. The standard a new
//! password must meet is [`crate::password`], shared with the client;
//! `normalize` comes from there so that what is checked is what is hashed.

use crate::password::normalize;

use scrypt::password_hash::phc::PasswordHash;
use scrypt::password_hash::{CustomizedPasswordHasher, PasswordVerifier};
use scrypt::{Params, Scrypt};

/// Scrypt needs `128 * r * 2^log_n` bytes; a stored hash asking for more
/// than this is refused rather than allowed to exhaust the server's memory.
const MAX_MEMORY_BYTES: u128 = 1 << 30;
/// Highest `p` accepted, for the same reason (time rather than memory).
const MAX_P: u32 = 16;

/// Scrypt cost parameters: memory and time grow with `2^log_n * r`, and
/// time also with `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    pub log_n: u8,
    pub r: u32,
    pub p: u32,
}

impl Default for HashCost {
    /// The scrypt crate's recommendation: 128 MiB a hash, and a fraction
    /// of a second of one core (see docs/BENCHMARKS.md).
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
