use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An amount of money in integer cents. Arithmetic is exact and checked: nothing here ever
/// goes through a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MoneyError {
    #[error("must be a decimal amount with at most two decimal places, like \"19.99\"")]
    Format,
    #[error("must not be negative")]
    Negative,
    #[error("is too large")]
    Overflow,
}

/// The largest amount accepted from input: 100 billion (in cents it still fits easily).
const MAX_INPUT_CENTS: i64 = 100_000_000_000 * 100;

impl Money {
    pub const ZERO: Self = Self(0);

    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    pub fn checked_mul(self, quantity: i64) -> Option<Self> {
        self.0.checked_mul(quantity).map(Self)
    }

    /// `percent` % of this amount, rounded half-up to the cent (half away from zero).
    pub fn percent_half_up(self, percent: u32) -> Option<Self> {
        let scaled = i128::from(self.0) * i128::from(percent);
        let rounded = if scaled >= 0 {
            (scaled + 50) / 100
        } else {
            (scaled - 50) / 100
        };
        i64::try_from(rounded).ok().map(Self)
    }

    /// Parses a non-negative decimal amount such as `"19.99"`, `"5"` or `"0.5"`.
    pub fn parse(input: &str) -> Result<Self, MoneyError> {
        let s = input.trim();
        if s.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 2 {
            return Err(MoneyError::Format);
        }
        if s.contains('.') && frac.is_empty() {
            return Err(MoneyError::Format);
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let frac_cents: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| MoneyError::Format)? * 10,
            _ => frac.parse().map_err(|_| MoneyError::Format)?,
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac_cents))
            .ok_or(MoneyError::Overflow)?;
        if cents > MAX_INPUT_CENTS {
            return Err(MoneyError::Overflow);
        }
        Ok(Self(cents))
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Two decimal places, always: `19.99`, `5.00`, `-0.50`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_parse_to_exact_cents() {
        assert_eq!(Money::parse("19.99").unwrap().cents(), 1999);
        assert_eq!(Money::parse("5").unwrap().cents(), 500);
        assert_eq!(Money::parse("0.5").unwrap().cents(), 50);
        assert_eq!(Money::parse("0.05").unwrap().cents(), 5);
        assert_eq!(Money::parse(" 10.00 ").unwrap().cents(), 1000);
    }

    #[test]
    fn malformed_amounts_are_refused() {
        for bad in [
            "", ".5", "5.", "1.234", "1,00", "abc", "1e3", "0x10", "+5", "5.0.0", "NaN",
        ] {
            assert_eq!(Money::parse(bad), Err(MoneyError::Format), "{bad:?}");
        }
        assert_eq!(Money::parse("-1.00"), Err(MoneyError::Negative));
        assert_eq!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(Money::parse("100000000001"), Err(MoneyError::Overflow));
    }

    #[test]
    fn amounts_print_with_two_decimals() {
        assert_eq!(Money::from_cents(1999).to_string(), "19.99");
        assert_eq!(Money::from_cents(500).to_string(), "5.00");
        assert_eq!(Money::from_cents(7).to_string(), "0.07");
        assert_eq!(Money::from_cents(-50).to_string(), "-0.50");
    }

    #[test]
    fn percentages_round_half_up_to_the_cent() {
        // 10 % of 0.05 is 0.005 → 0.01; 10 % of 0.04 is 0.004 → 0.00.
        assert_eq!(
            Money::from_cents(5).percent_half_up(10),
            Some(Money::from_cents(1))
        );
        assert_eq!(
            Money::from_cents(4).percent_half_up(10),
            Some(Money::from_cents(0))
        );
        assert_eq!(
            Money::from_cents(10000).percent_half_up(20),
            Some(Money::from_cents(2000))
        );
        assert_eq!(
            Money::from_cents(1234).percent_half_up(15),
            Some(Money::from_cents(185))
        );
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_amount(cents in 0i64..=MAX_INPUT_CENTS) {
            let money = Money::from_cents(cents);
            prop_assert_eq!(Money::parse(&money.to_string()), Ok(money));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,30}") {
            let _ = Money::parse(&s);
        }
    }
}
