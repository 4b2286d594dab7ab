use std::fmt;

use thiserror::Error;

/// The URL name of a post: lower-case ASCII letters and digits in dash-separated words, never
/// shaped like a UUID (so that `/posts/{post}` can take either).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slug(String);

pub const MAX_LEN: usize = 100;
/// Generated slugs stop at a word boundary before this length, leaving room for a suffix.
const GENERATED_LEN: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SlugError {
    #[error("Slug must be 1 to 100 characters of a-z, 0-9 and single dashes between words")]
    Invalid,
    #[error("Slug must not have the form of a UUID")]
    LooksLikeUuid,
}

fn looks_like_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

impl Slug {
    /// Checks a slug given explicitly.
    pub fn parse(input: &str) -> Result<Self, SlugError> {
        let s = input.trim();
        let valid = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.split('-').all(|word| {
                !word.is_empty()
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !valid {
            return Err(SlugError::Invalid);
        }
        if looks_like_uuid(s) {
            return Err(SlugError::LooksLikeUuid);
        }
        Ok(Self(s.to_owned()))
    }

    /// Derives a slug from a title: transliterated to ASCII, lower-cased, every run of other
    /// characters turned into one dash, cut at a word boundary.
    pub fn from_title(title: &str) -> Self {
        let ascii = deunicode::deunicode(title).to_ascii_lowercase();
        let mut words: Vec<&str> = ascii
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut slug = String::new();
        for word in words.drain(..) {
            let extra = if slug.is_empty() {
                word.len()
            } else {
                word.len() + 1
            };
            if slug.len() + extra > GENERATED_LEN {
                if slug.is_empty() {
                    slug.push_str(&word[..GENERATED_LEN]);
                }
                break;
            }
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(word);
        }
        if slug.is_empty() {
            slug.push_str("post");
        }
        if looks_like_uuid(&slug) {
            slug.push_str("-post");
        }
        Self(slug)
    }

    /// `slug-n`, for the n-th post that wanted the same slug.
    pub fn with_suffix(&self, n: u32) -> Self {
        Self(format!("{}-{n}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_title_becomes_lower_case_words_joined_by_dashes() {
        assert_eq!(Slug::from_title("Hello, World!").as_str(), "hello-world");
        assert_eq!(
            Slug::from_title("  Rust 2024 -- what's new?  ").as_str(),
            "rust-2024-what-s-new"
        );
        assert_eq!(
            Slug::from_title("Café au lait, naïve façade").as_str(),
            "cafe-au-lait-naive-facade"
        );
    }

    #[test]
    fn a_title_without_letters_or_digits_gives_post() {
        assert_eq!(Slug::from_title("!!! ???").as_str(), "post");
        assert_eq!(Slug::from_title("").as_str(), "post");
    }

    #[test]
    fn long_titles_are_cut_at_a_word_boundary() {
        let title = "word ".repeat(40);
        let slug = Slug::from_title(&title);
        assert!(slug.as_str().len() <= 80);
        assert!(slug.as_str().ends_with("word"));
        let one_long_word = "x".repeat(200);
        assert_eq!(Slug::from_title(&one_long_word).as_str().len(), 80);
    }

    #[test]
    fn a_slug_never_has_the_form_of_a_uuid() {
        let id = "0195f3a2-7b1c-7d4e-8f90-123456789abc";
        assert_eq!(Slug::from_title(id).as_str(), format!("{id}-post"));
        assert_eq!(Slug::parse(id), Err(SlugError::LooksLikeUuid));
    }

    #[test]
    fn explicit_slugs_must_be_clean() {
        assert!(Slug::parse("my-first-post").is_ok());
        for bad in [
            "",
            "My-Post",
            "a--b",
            "-a",
            "a-",
            "a b",
            "a_b",
            "ü",
            &"a".repeat(101),
        ] {
            assert_eq!(Slug::parse(bad), Err(SlugError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn suffixes_count_from_two() {
        assert_eq!(Slug::from_title("Hi").with_suffix(2).as_str(), "hi-2");
    }

    proptest! {
        #[test]
        fn every_generated_slug_is_a_valid_slug(title in "\\PC{0,300}") {
            let slug = Slug::from_title(&title);
            prop_assert_eq!(Slug::parse(slug.as_str()), Ok(slug.clone()));
        }
    }
}
