//! Pagination and sorting requests as the use cases receive them.

use crate::{AppError, AppResult};

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
/// Far beyond any real list; it keeps `(page - 1) * limit` a sane SQL offset.
pub const MAX_PAGE: u64 = 10_000_000;

/// A validated offset page request (`page` from 1, `limit` 1..=100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl PageRequest {
    pub fn new(page: Option<u64>, limit: Option<u64>) -> AppResult<Self> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        let mut errors = Vec::new();
        if !(1..=MAX_PAGE).contains(&page) {
            errors.push(inkcart_domain::FieldError::new(
                "page",
                "page must be between 1 and 10000000",
            ));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push(inkcart_domain::FieldError::new(
                "limit",
                "limit must be between 1 and 100",
            ));
        }
        if errors.is_empty() {
            Ok(Self { page, limit })
        } else {
            Err(AppError::Validation(errors))
        }
    }

    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.limit)
    }
}

/// One page of an offset-paginated list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u64,
    pub limit: u64,
    pub total: u64,
}

impl<T> Page<T> {
    pub fn total_pages(&self) -> u64 {
        self.total.div_ceil(self.limit.max(1))
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            limit: self.limit,
            total: self.total,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Asc,
    Desc,
}

/// A sort request `field` / `-field`, parsed against the fields a list allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sort<F> {
    pub field: F,
    pub direction: Direction,
}

impl<F: Copy> Sort<F> {
    /// Parses `?sort=`: `name` ascending, `-name` descending; `allowed` maps API field names to
    /// the list's sort keys. Anything else (an unknown field, an empty value) is a validation
    /// error naming the allowed ones: exactly what the document's pattern says.
    pub fn parse(input: Option<&str>, allowed: &[(&str, F)], default: Self) -> AppResult<Self> {
        let Some(raw) = input else {
            return Ok(default);
        };
        let (direction, name) = match raw.strip_prefix('-') {
            Some(rest) => (Direction::Desc, rest),
            None => (Direction::Asc, raw),
        };
        allowed
            .iter()
            .find(|(api_name, _)| *api_name == name)
            .map(|(_, field)| Self {
                field: *field,
                direction,
            })
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
                AppError::field(
                    "sort",
                    format!(
                        "Unknown sort field `{name}`: expected one of {}",
                        names.join(", ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Field {
        Name,
        Created,
    }
    const ALLOWED: &[(&str, Field)] = &[("name", Field::Name), ("createdAt", Field::Created)];
    const DEFAULT: Sort<Field> = Sort {
        field: Field::Created,
        direction: Direction::Desc,
    };

    #[test]
    fn a_minus_sign_sorts_descending() {
        let sort = Sort::parse(Some("-name"), ALLOWED, DEFAULT).unwrap();
        assert_eq!(
            sort,
            Sort {
                field: Field::Name,
                direction: Direction::Desc
            }
        );
        let sort = Sort::parse(Some("name"), ALLOWED, DEFAULT).unwrap();
        assert_eq!(sort.direction, Direction::Asc);
    }

    #[test]
    fn no_sort_gives_the_default_and_an_empty_or_padded_one_is_refused() {
        assert_eq!(Sort::parse(None, ALLOWED, DEFAULT).unwrap(), DEFAULT);
        for bad in ["", " name", "+name", "--name"] {
            assert!(Sort::parse(Some(bad), ALLOWED, DEFAULT).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_unknown_sort_field_is_a_validation_error() {
        let err = Sort::parse(Some("-password"), ALLOWED, DEFAULT).unwrap_err();
        assert!(matches!(err, AppError::Validation(ref e) if e[0].field == "sort"));
    }

    #[test]
    fn page_and_limit_are_bounded() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(MAX_PAGE + 1), None).is_err());
        assert!(PageRequest::new(Some(u64::MAX), Some(100)).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
        assert!(PageRequest::new(None, Some(101)).is_err());
        let page = PageRequest::new(Some(3), Some(10)).unwrap();
        assert_eq!(page.offset(), 20);
        assert_eq!(
            PageRequest::new(None, None).unwrap(),
            PageRequest::default()
        );
    }

    #[test]
    fn total_pages_rounds_up() {
        let page = Page::<()> {
            items: vec![],
            page: 1,
            limit: 20,
            total: 41,
        };
        assert_eq!(page.total_pages(), 3);
        let empty = Page::<()> {
            items: vec![],
            page: 1,
            limit: 20,
            total: 0,
        };
        assert_eq!(empty.total_pages(), 0);
    }
}
