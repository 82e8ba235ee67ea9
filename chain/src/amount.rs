//! Amounts in base units: 1 TOY = 100,000,000 base units. Arithmetic is checked so an
//! overflow is an error, never a wrap.

use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use std::str::FromStr;

/// Base units in one TOY.
pub const COIN: u64 = 100_000_000;
/// Decimal places of one TOY.
pub const DECIMALS: usize = 8;

/// A non-negative amount of base units.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    pub const MAX: Amount = Amount(u64::MAX);

    pub const fn from_base_units(units: u64) -> Amount {
        Amount(units)
    }

    /// Whole TOY; `None` on overflow.
    pub const fn from_toy(toy: u64) -> Option<Amount> {
        match toy.checked_mul(COIN) {
            Some(units) => Some(Amount(units)),
            None => None,
        }
    }

    pub const fn base_units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    /// Parses decimal TOY such as `1`, `1.5` or `0.00000001`.
    pub fn parse_toy(s: &str) -> Result<Amount, ParseAmountError> {
        let err = |reason: &'static str| ParseAmountError {
            value: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Err(err("empty"));
        }
        let (whole, frac) = match trimmed.split_once('.') {
            Some((w, f)) => (w, f),
            None => (trimmed, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err("no digits"));
        }
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || !all_digits(frac) {
            return Err(err("expected decimal digits with at most one '.'"));
        }
        if frac.len() > DECIMALS {
            return Err(err("more than 8 decimal places"));
        }
        let whole_units: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("too large"))?
        };
        let mut frac_units: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let place = 10u64.pow((DECIMALS - 1 - i) as u32);
            frac_units += u64::from(b - b'0') * place;
        }
        whole_units
            .checked_mul(COIN)
            .and_then(|u| u.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(|| err("too large"))
    }

    /// Decimal TOY with trailing zeros trimmed (`1.5`, `0.00000001`, `3`).
    pub fn to_toy_string(self) -> String {
        let whole = self.0 / COIN;
        let frac = self.0 % COIN;
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:08}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TOY", self.to_toy_string())
    }
}

impl FromStr for Amount {
    type Err = ParseAmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse_toy(s)
    }
}

/// A string that is not a decimal TOY amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount {value:?}: {reason}")]
pub struct ParseAmountError {
    pub value: String,
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_formats_decimal_toy() {
        let cases = [
            ("1", 100_000_000, "1"),
            ("1.5", 150_000_000, "1.5"),
            ("0.00000001", 1, "0.00000001"),
            (".25", 25_000_000, "0.25"),
            ("1000000", 100_000_000_000_000, "1000000"),
            ("184467440737.09551615", u64::MAX, "184467440737.09551615"),
        ];
        for (text, units, shown) in cases {
            let amount = Amount::parse_toy(text).expect(text);
            assert_eq!(amount.base_units(), units, "{text}");
            assert_eq!(amount.to_toy_string(), shown, "{text}");
        }
    }

    #[test]
    fn refuses_bad_amounts_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("1.123456789", "more than 8 decimal places"),
            ("-1", "expected decimal digits with at most one '.'"),
            ("1.2.3", "expected decimal digits with at most one '.'"),
            ("1e5", "expected decimal digits with at most one '.'"),
            ("184467440737.09551616", "too large"),
            (".", "no digits"),
        ];
        for (text, reason) in cases {
            let err = Amount::parse_toy(text).expect_err(text);
            assert_eq!(err.reason, reason, "{text}");
            assert!(err.to_string().contains(&format!("{text:?}")));
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)), None);
        assert_eq!(Amount::ZERO.checked_sub(Amount(1)), None);
        assert_eq!(Amount::from_toy(u64::MAX), None);
        assert_eq!(Amount(5).checked_add(Amount(7)), Some(Amount(12)));
    }

    proptest! {
        #[test]
        fn toy_string_round_trips(units in any::<u64>()) {
            let amount = Amount(units);
            prop_assert_eq!(Amount::parse_toy(&amount.to_toy_string()), Ok(amount));
        }
    }
}
