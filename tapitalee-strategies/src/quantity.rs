//! [`Quantity`]: an instance count given as a number or a percentage of the desired count.

use std::fmt;
use std::str::FromStr;

use tapitalee_core::{Error, Result};

/// A number of instances, absolute or relative to the process's desired count.
///
/// Parses from `"2"` (a count) or `"25%"` (a percentage, 0 to 100):
///
/// ```
/// use tapitalee_strategies::Quantity;
///
/// let surge: Quantity = "25%".parse()?;
/// assert_eq!(surge, Quantity::Percent(25));
/// assert_eq!(surge.round_up(10), 3);
/// assert_eq!(surge.round_down(10), 2);
/// assert_eq!("2".parse::<Quantity>()?, Quantity::Count(2));
/// assert!("150%".parse::<Quantity>().is_err());
/// # Ok::<(), tapitalee_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantity {
    /// This many instances.
    Count(u32),
    /// This percentage (0 to 100) of the desired count.
    Percent(u8),
}

impl Quantity {
    /// A percentage, or [`Error::InvalidInput`] above 100.
    pub fn percent(percent: u8) -> Result<Self> {
        if percent > 100 {
            return Err(Error::invalid(
                "percentage",
                format!("{percent}%"),
                "must be from 0% to 100%; use a count (e.g. \"3\") for more",
            ));
        }
        Ok(Quantity::Percent(percent))
    }

    /// The number of instances out of `desired`, rounding a percentage up.
    pub fn round_up(self, desired: u32) -> u32 {
        match self {
            Quantity::Count(n) => n,
            Quantity::Percent(p) => {
                u32::try_from((u64::from(desired) * u64::from(p)).div_ceil(100)).unwrap_or(u32::MAX)
            }
        }
    }

    /// The number of instances out of `desired`, rounding a percentage down.
    pub fn round_down(self, desired: u32) -> u32 {
        match self {
            Quantity::Count(n) => n,
            Quantity::Percent(p) => {
                u32::try_from(u64::from(desired) * u64::from(p) / 100).unwrap_or(u32::MAX)
            }
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Count(n) => write!(f, "{n}"),
            Quantity::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Quantity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let bad = |why: &str| {
            Error::invalid(
                "instance quantity",
                s,
                format!("{why}; write a count like \"2\" or a percentage like \"25%\""),
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| bad("the percentage is not a whole number from 0 to 100"))?;
            Quantity::percent(p)
        } else {
            t.parse()
                .map(Quantity::Count)
                .map_err(|_| bad("not a whole number"))
        }
    }
}

impl From<u32> for Quantity {
    fn from(n: u32) -> Self {
        Quantity::Count(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!(" 3 ".parse::<Quantity>().unwrap(), Quantity::Count(3));
        assert_eq!("0%".parse::<Quantity>().unwrap(), Quantity::Percent(0));
        assert_eq!("100%".parse::<Quantity>().unwrap(), Quantity::Percent(100));
        let e = "101%".parse::<Quantity>().unwrap_err();
        assert!(e.to_string().contains("101%"), "{e}");
        let e = "lots".parse::<Quantity>().unwrap_err();
        assert!(e.to_string().contains("\"lots\""), "{e}");
        assert!(e.to_string().contains("25%"), "{e}");
        assert!("-1".parse::<Quantity>().is_err());
    }

    #[test]
    fn rounds() {
        assert_eq!(Quantity::Percent(25).round_up(5), 2);
        assert_eq!(Quantity::Percent(25).round_down(5), 1);
        assert_eq!(Quantity::Percent(25).round_down(3), 0);
        assert_eq!(Quantity::Count(7).round_down(3), 7);
        assert_eq!(Quantity::Percent(100).round_up(u32::MAX), u32::MAX);
        assert_eq!(Quantity::Percent(0).round_up(9), 0);
        assert_eq!(Quantity::Count(2).to_string(), "2");
        assert_eq!(Quantity::Percent(2).to_string(), "2%");
    }
}
