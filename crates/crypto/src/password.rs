//! Passwords: Argon2id hashes in PHC strings (salted, parameters stored with
//! the hash so they can be raised and re-hashed on the next sign-in), a
//! dummy verification that makes an unknown account cost the same as a
//! known one, and the configurable password policy.

use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

use crate::CryptoError;

/// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
const M_KIB: u32 = 19_456;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

fn current_params() -> Result<Params, CryptoError> {
    Params::new(M_KIB, T_COST, P_COST, None).map_err(|e| CryptoError::Kdf(e.to_string()))
}

/// Hashes a password with a fresh 16-byte salt.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    crate::random_bytes(&mut salt)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, current_params()?)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Kdf(e.to_string()))
}

/// The outcome of checking a password against a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub ok: bool,
    /// The hash was made with weaker parameters than today's: store a new
    /// one now that the password is known.
    pub needs_rehash: bool,
}

/// Checks a password against a PHC string, in constant time for the hash
/// comparison (argon2 compares outputs in constant time).
pub fn verify_password(password: &str, phc: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified { ok: false, needs_rehash: false };
    };
    let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
    let current = current_params().ok();
    let stored = Params::try_from(&parsed).ok();
    let same = matches!((current, stored), (Some(c), Some(s))
        if c.m_cost() == s.m_cost() && c.t_cost() == s.t_cost() && c.p_cost() == s.p_cost());
    Verified { ok, needs_rehash: ok && (parsed.algorithm.as_str() != "argon2id" || !same) }
}

/// Spends the time of one verification against a fixed hash, for sign-ins
/// to accounts that do not exist.
pub fn verify_dummy(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("strongroom dummy password").unwrap_or_default());
    let _ = verify_password(password, hash);
}

/// A password rule set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PasswordPolicy {
    /// 12 to 128 characters, not common or easily guessed (zxcvbn score 3 or
    /// more, which refuses its shipped lists of common and breached
    /// passwords), not containing the user's e-mail or name.
    #[default]
    Default,
    /// Seed 004's rule: 8 to 20 characters with a lower-case letter, an
    /// upper-case letter, a digit and a special character; not containing the
    /// user's e-mail or name.
    Classes,
}

/// Which rule a password broke. The message names the rule, never the
/// password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    #[error("the password must be {min} to {max} characters long")]
    Length { min: usize, max: usize },
    #[error("the password is too common or too easy to guess")]
    Common,
    #[error("the password must not contain your e-mail address or name")]
    Personal,
    #[error("the password must contain a lower-case letter, an upper-case letter, a digit and a special character")]
    Classes,
}

impl PasswordPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "default" => Some(Self::Default),
            "classes" => Some(Self::Classes),
            _ => None,
        }
    }

    /// Checks a new password; `personal` holds the user's e-mail and name.
    pub fn check(self, password: &str, personal: &[&str]) -> Result<(), PolicyViolation> {
        let len = password.chars().count();
        let (min, max) = match self {
            Self::Default => (12, 128),
            Self::Classes => (8, 20),
        };
        if !(min..=max).contains(&len) {
            return Err(PolicyViolation::Length { min, max });
        }
        let lower = password.to_lowercase();
        let pieces = personal.iter().flat_map(|p| p.split(|c: char| !c.is_alphanumeric())).map(str::to_lowercase);
        if pieces.filter(|piece| piece.chars().count() >= 3).any(|piece| lower.contains(&piece)) {
            return Err(PolicyViolation::Personal);
        }
        match self {
            Self::Default => {
                let inputs: Vec<&str> = personal.to_vec();
                let score = zxcvbn::zxcvbn(password, &inputs).score();
                if (score as u8) < 3 {
                    return Err(PolicyViolation::Common);
                }
            }
            Self::Classes => {
                let has = |f: fn(char) -> bool| password.chars().any(f);
                let classes = [
                    has(char::is_lowercase),
                    has(char::is_uppercase),
                    has(|c| c.is_ascii_digit()),
                    has(|c| !c.is_alphanumeric()),
                ];
                if classes.contains(&false) {
                    return Err(PolicyViolation::Classes);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash_password("a long enough passphrase").unwrap_or_default();
        let b = hash_password("a long enough passphrase").unwrap_or_default();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert_eq!(verify_password("a long enough passphrase", &a), Verified { ok: true, needs_rehash: false });
        assert!(!verify_password("a long enough passphrasE", &a).ok);
        assert!(!verify_password("x", "not a hash").ok);
    }

    #[test]
    fn weaker_hashes_ask_for_a_rehash() {
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap_or_default())
            .hash_password_with_salt(b"a long enough passphrase", &[7u8; 16])
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert_eq!(verify_password("a long enough passphrase", &weak), Verified { ok: true, needs_rehash: true });
    }

    fn check(policy: PasswordPolicy, pw: &str, expected: Result<(), PolicyViolation>) {
        assert_eq!(policy.check(pw, &["jane.doe@example.com", "Jane Doe"]), expected, "{policy:?} {pw:?}");
    }

    // claim 004.5
    #[test]
    fn default_policy() {
        use PasswordPolicy::Default as D;
        check(D, "short", Err(PolicyViolation::Length { min: 12, max: 128 }));
        check(D, "password1234", Err(PolicyViolation::Common));
        check(D, "qwertyuiop123", Err(PolicyViolation::Common));
        check(D, "janedoe-is-my-name-2024", Err(PolicyViolation::Personal));
        check(D, "correct horse battery staple orbit", Ok(()));
        check(D, &"x".repeat(129), Err(PolicyViolation::Length { min: 12, max: 128 }));
    }

    // claim 004.5
    #[test]
    fn classes_policy_is_seed_004s_rule() {
        use PasswordPolicy::Classes as C;
        check(C, "Ab1!", Err(PolicyViolation::Length { min: 8, max: 20 }));
        check(C, "Abcdefg1!Abcdefg1!Abc", Err(PolicyViolation::Length { min: 8, max: 20 }));
        check(C, "abcdefg1!", Err(PolicyViolation::Classes));
        check(C, "ABCDEFG1!", Err(PolicyViolation::Classes));
        check(C, "Abcdefgh!", Err(PolicyViolation::Classes));
        check(C, "Abcdefg12", Err(PolicyViolation::Classes));
        check(C, "Tr0ub4dor&3", Ok(()));
    }
}
