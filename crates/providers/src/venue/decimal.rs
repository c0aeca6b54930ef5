//! Prices and sizes as the venues send them: decimal strings
//! (`"58942.01000000"`), never JSON numbers, so that no precision is lost
//! on the wire. They are read strictly: digits with at most one `.`, no
//! sign, exponent, spaces, `NaN` or `inf`, at most [`MAX_DIGITS`] characters.

/// Longest decimal string taken.
pub const MAX_DIGITS: usize = 40;

/// What was wrong with a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a decimal string of digits with at most one '.', got {0:?}")]
pub struct DecimalError(pub String);

/// The value of a decimal string (rounded to the nearest `f64`).
pub fn parse(text: &str) -> Result<f64, DecimalError> {
    let bad = || DecimalError(text.chars().take(MAX_DIGITS + 8).collect());
    if text.is_empty() || text.len() > MAX_DIGITS {
        return Err(bad());
    }
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(bad());
    }
    text.parse::<f64>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn venue_strings_parse_exactly_as_written() {
        assert_eq!(parse("58942.01000000").unwrap(), 58942.01);
        assert_eq!(parse("0.00035600").unwrap(), 0.000356);
        assert_eq!(parse("370").unwrap(), 370.0);
        assert_eq!(parse("0").unwrap(), 0.0);
        for bad in [
            "", ".", "1.", ".5", "-1", "+1", "1e5", "1E5", "NaN", "inf", " 1", "1 ", "1.2.3",
            "0x10", "1,5", "１",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was taken");
        }
        let long = "1".repeat(MAX_DIGITS + 1);
        assert!(parse(&long)
            .unwrap_err()
            .to_string()
            .contains("decimal string"));
    }

    proptest! {
        #[test]
        fn any_digits_string_parses_as_rust_reads_it(int in "[0-9]{1,18}", frac in proptest::option::of("[0-9]{1,18}")) {
            let text = match &frac {
                Some(f) => format!("{int}.{f}"),
                None => int.clone(),
            };
            let v = parse(&text).unwrap();
            prop_assert_eq!(v, text.parse::<f64>().unwrap());
            prop_assert!(v.is_finite() && v >= 0.0);
        }

        #[test]
        fn a_formatted_f64_reads_back_the_same(v in 0.0f64..1e12) {
            let text = format!("{v:.8}");
            let back = parse(&text).unwrap();
            prop_assert!((back - v).abs() <= 1e-8 * v.max(1.0));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,48}") {
            let _ = parse(&text);
        }
    }
}
