use std::fmt;

use thiserror::Error;

/// A plain-text password that meets the password policy. It never prints itself.
#[derive(Clone)]
pub struct Password(String);

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    #[error("Password must be at least 8 characters")]
    TooShort,
    #[error("Password must be at most 128 characters")]
    TooLong,
    #[error("Password must contain an upper-case letter")]
    NoUpper,
    #[error("Password must contain a lower-case letter")]
    NoLower,
    #[error("Password must contain a digit")]
    NoDigit,
}

impl Password {
    /// Checks the policy: 8 to 128 characters, with at least one upper-case letter, one
    /// lower-case letter and one digit. The first rule broken is reported.
    pub fn parse(input: &str) -> Result<Self, PasswordError> {
        let len = input.chars().count();
        if len < MIN_LEN {
            return Err(PasswordError::TooShort);
        }
        if len > MAX_LEN {
            return Err(PasswordError::TooLong);
        }
        if !input.chars().any(char::is_uppercase) {
            return Err(PasswordError::NoUpper);
        }
        if !input.chars().any(char::is_lowercase) {
            return Err(PasswordError::NoLower);
        }
        if !input.chars().any(|c| c.is_ascii_digit()) {
            return Err(PasswordError::NoDigit);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_password_with_upper_lower_and_digit_is_accepted() {
        assert!(Password::parse("Secret123").is_ok());
    }

    #[test]
    fn each_rule_of_the_policy_is_reported() {
        assert_eq!(
            Password::parse("Abc1").unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            Password::parse("secret123").unwrap_err(),
            PasswordError::NoUpper
        );
        assert_eq!(
            Password::parse("SECRET123").unwrap_err(),
            PasswordError::NoLower
        );
        assert_eq!(
            Password::parse("SecretAbc").unwrap_err(),
            PasswordError::NoDigit
        );
        let long = format!("Aa1{}", "x".repeat(126));
        assert_eq!(Password::parse(&long).unwrap_err(), PasswordError::TooLong);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 8 characters, 16 bytes.
        assert!(Password::parse("Ééééé1aA").is_ok());
        let exactly_128 = format!("Aa1{}", "é".repeat(125));
        assert!(Password::parse(&exactly_128).is_ok());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::parse("Secret123").unwrap();
        assert!(!format!("{password:?}").contains("Secret123"));
    }

    proptest! {
        #[test]
        fn accepted_passwords_always_meet_every_rule(s in "\\PC{0,140}") {
            if let Ok(p) = Password::parse(&s) {
                let n = p.expose().chars().count();
                prop_assert!((MIN_LEN..=MAX_LEN).contains(&n));
                prop_assert!(p.expose().chars().any(char::is_uppercase));
                prop_assert!(p.expose().chars().any(char::is_lowercase));
                prop_assert!(p.expose().chars().any(|c| c.is_ascii_digit()));
            }
        }
    }
}
