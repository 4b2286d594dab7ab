use std::fmt;

use thiserror::Error;

/// An email address, trimmed and lower-cased, so that equality is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EmailError {
    #[error("Email is required")]
    Empty,
    #[error("Invalid email format")]
    Invalid,
}

/// The longest address, in bytes (addresses are ASCII).
pub const MAX_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;

impl Email {
    /// Parses a user-supplied address: surrounding whitespace is dropped and the address is
    /// lower-cased; the shape is checked as mail servers expect it (one `@`, a non-empty local
    /// part of at most 64 characters, a domain of dot-separated labels with a dot in it).
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        let email = trimmed.to_lowercase();
        if email.len() > MAX_LEN {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = email.split_once('@').ok_or(EmailError::Invalid)?;
        if local.is_empty() || local.len() > MAX_LOCAL_LEN || !local.chars().all(is_local_char) {
            return Err(EmailError::Invalid);
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Invalid);
        }
        if !domain.contains('.') || !domain.split('.').all(is_domain_label) {
            return Err(EmailError::Invalid);
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~.".contains(c)
        || !c.is_ascii() && c.is_alphanumeric()
}

fn is_domain_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii() && c.is_alphanumeric())
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice.smith@example.com");
    }

    #[test]
    fn two_spellings_of_one_address_are_equal() {
        assert_eq!(
            Email::parse("BOB@x.io").unwrap(),
            Email::parse("bob@X.IO").unwrap()
        );
    }

    #[test]
    fn an_empty_email_is_reported_as_missing() {
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b..com",
            "a@-b.com",
            ".a@b.com",
            "a..b@c.com",
            "a\n@b.com",
            "a@b.com<script>",
        ] {
            assert_eq!(
                Email::parse(bad),
                Err(EmailError::Invalid),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn common_addresses_are_accepted() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x_y-z@ex-ample.com",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} was rejected");
        }
    }

    #[test]
    fn an_address_longer_than_254_characters_is_rejected() {
        let long = format!("a@{}.com", "b".repeat(60).repeat(5));
        assert_eq!(Email::parse(&long), Err(EmailError::Invalid));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_emails_are_normalized(s in ".{0,300}") {
            if let Ok(email) = Email::parse(&s) {
                prop_assert_eq!(email.as_str(), s.trim().to_lowercase());
                prop_assert!(email.as_str().contains('@'));
            }
        }
    }
}
