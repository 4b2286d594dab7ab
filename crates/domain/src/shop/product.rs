use chrono::{DateTime, Utc};
use thiserror::Error;

use super::Money;
use crate::ProductId;

/// A product for sale. `stock` never goes below zero (the database enforces it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub stock: i32,
    /// Inactive products stay for the orders that reference them but cannot be ordered.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const NAME_MAX: usize = 200;
pub const DESCRIPTION_MAX: usize = 10_000;
pub const STOCK_MAX: i32 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProductError {
    #[error("Name must not be empty")]
    EmptyName,
    #[error("Name must be at most 200 characters")]
    NameTooLong,
    #[error("Description must be at most 10000 characters")]
    DescriptionTooLong,
    #[error("Stock must be between 0 and 1000000000")]
    StockOutOfRange,
}

/// A product's name: trimmed, 1 to 200 characters.
pub fn product_name(input: &str) -> Result<String, ProductError> {
    let name = input.trim();
    if name.is_empty() {
        return Err(ProductError::EmptyName);
    }
    if name.chars().count() > NAME_MAX {
        return Err(ProductError::NameTooLong);
    }
    Ok(name.to_owned())
}

/// A product's description: trimmed, empty is none, at most 10,000 characters.
pub fn product_description(input: Option<&str>) -> Result<Option<String>, ProductError> {
    match input.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) if d.chars().count() > DESCRIPTION_MAX => Err(ProductError::DescriptionTooLong),
        Some(d) => Ok(Some(d.to_owned())),
    }
}

/// A product's stock: 0 to 1,000,000,000.
pub fn product_stock(input: i64) -> Result<i32, ProductError> {
    i32::try_from(input)
        .ok()
        .filter(|s| (0..=STOCK_MAX).contains(s))
        .ok_or(ProductError::StockOutOfRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(product_name("  Mug ").unwrap(), "Mug");
        assert_eq!(product_name(" "), Err(ProductError::EmptyName));
        assert_eq!(
            product_name(&"x".repeat(201)),
            Err(ProductError::NameTooLong)
        );
    }

    #[test]
    fn stock_is_never_negative() {
        assert_eq!(product_stock(0), Ok(0));
        assert_eq!(product_stock(-1), Err(ProductError::StockOutOfRange));
        assert_eq!(product_stock(i64::MAX), Err(ProductError::StockOutOfRange));
    }

    #[test]
    fn an_empty_description_is_none() {
        assert_eq!(product_description(Some("  ")), Ok(None));
        assert_eq!(
            product_description(Some(" Big ")),
            Ok(Some("Big".to_owned()))
        );
    }
}
