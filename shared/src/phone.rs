//! Phone numbers to one canonical E.164 form, so that every way a person's number reaches us
//! (typed by an operator, WhatsApp's wa_id, a contact card) yields the same subject key.
//!
//! The `rlibphonenumber` crate (Google's libphonenumber, ported) does the parsing and validation. On top of it, rules it does not know:
//! - Bare digits are read as international first: that is how WhatsApp sends `wa_id`
//!   (`5491123456789`, `34600111222`); only if that is not a valid number are they read as a
//!   national number of the default region.
//! - Argentina: a mobile is `+54 9 <area> <number>` in E.164, but people write it without the 9
//!   (`+54 11 2345-6789`) and the library then reads a fixed line. Argentine mobile and fixed
//!   numbers share one subscriber numbering space, so for matching the 9 is always added.
//! - Mexico: WhatsApp still reports mobiles with the legacy `1` (`521 81 ...`), retired in 2019;
//!   the canonical form drops it.

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};

/// Where a number without a country code is assumed to be from: Socio Virtual's home market.
pub const DEFAULT_REGION: Region = Region::AR;

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("phone number has no digits")]
    Empty,
    #[error("phone number contains characters other than digits, spaces, dots, dashes, parentheses and a leading +")]
    BadCharacters,
    #[error("phone number is not a valid number")]
    Invalid,
}

/// A phone number in canonical E.164 (`+5491123456789`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn normalize(input: &str) -> Result<E164, PhoneError> {
    let trimmed = input.trim();
    let international = trimmed.starts_with('+');
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    if !body.chars().all(|c| c.is_ascii_digit() || " .-()/\u{a0}".contains(c)) {
        return Err(PhoneError::BadCharacters);
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }

    let parsed = if international {
        parse_international(&digits)
    } else if let Some(rest) = digits.strip_prefix("00") {
        parse_international(rest)
    } else if digits.starts_with('0') {
        parse_national(&digits)
    } else {
        // wa_id style first, then national digits of the default region.
        parse_international(&digits).or_else(|_| parse_national(&digits))
    }?;
    canonical(parsed)
}

/// Loads the phone library's metadata now (it loads lazily, on the first number): a function
/// calls this at init, which Lambda runs with a CPU boost, so its first invocation costs what
/// later ones do.
pub fn prepare() {
    let _ = normalize("+54 9 11 2345-6789");
}

fn parse_international(digits: &str) -> Result<PhoneNumber, PhoneError> {
    let digits = strip_mexican_mobile_prefix(digits);
    let n = PhoneNumber::parse(format!("+{digits}"), None).map_err(|_| PhoneError::Invalid)?;
    if is_valid_or_argentine_without_nine(&n) {
        Ok(n)
    } else {
        Err(PhoneError::Invalid)
    }
}

fn parse_national(digits: &str) -> Result<PhoneNumber, PhoneError> {
    PhoneNumber::parse(digits, Some(DEFAULT_REGION)).map_err(|_| PhoneError::Invalid)
}

/// `52 1 XX XXXX XXXX` (13 digits) is the pre-2019 Mexican mobile form WhatsApp still reports.
fn strip_mexican_mobile_prefix(digits: &str) -> std::borrow::Cow<'_, str> {
    match digits.strip_prefix("521") {
        Some(rest) if rest.len() == 10 => format!("52{rest}").into(),
        _ => digits.into(),
    }
}

/// The library validates `+54 11 2345 6789` as a fixed line, and `canonical` turns it into the
/// mobile form; anything else must be valid as parsed.
fn is_valid_or_argentine_without_nine(n: &PhoneNumber) -> bool {
    n.is_valid() || argentine_mobile(n).is_some()
}

fn argentine_mobile(n: &PhoneNumber) -> Option<PhoneNumber> {
    if n.country_code != 54 {
        return None;
    }
    let national = n.national_number.to_string();
    let national = if national.starts_with('9') {
        national
    } else {
        format!("9{national}")
    };
    PhoneNumber::parse(format!("+54{national}"), None)
        .ok()
        .filter(PhoneNumber::is_valid)
}

fn canonical(n: PhoneNumber) -> Result<E164, PhoneError> {
    let n = if n.country_code == 54 {
        argentine_mobile(&n).ok_or(PhoneError::Invalid)?
    } else if n.is_valid() {
        n
    } else {
        return Err(PhoneError::Invalid);
    };
    Ok(E164(n.format_as(PhoneNumberFormat::E164).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argentine_forms_meet() {
        for form in [
            "+54 9 11 2345-6789",
            "011 15 2345-6789",
            "5491123456789",
            "+54 11 2345-6789",
            "+54 (11) 2345 6789",
            "0054 9 11 2345 6789",
        ] {
            assert_eq!(
                normalize(form).map(|e| e.0),
                Ok("+5491123456789".to_owned()),
                "form {form:?}"
            );
        }
    }

    #[test]
    fn mexican_legacy_mobile_prefix_is_dropped() {
        for form in [
            "+52 81 1234 5678",
            "5218112345678",
            "+52 1 81 1234 5678",
            "528112345678",
        ] {
            assert_eq!(
                normalize(form).map(|e| e.0),
                Ok("+528112345678".to_owned()),
                "form {form:?}"
            );
        }
    }

    #[test]
    fn spanish_bare_digits_are_international() {
        assert_eq!(normalize("34600111222"), normalize("+34 600 111 222"));
        assert_eq!(normalize("+34 600 111 222").map(|e| e.0), Ok("+34600111222".to_owned()));
    }

    #[test]
    fn invalid_numbers_are_typed_errors() {
        assert_eq!(normalize(""), Err(PhoneError::Empty));
        assert_eq!(normalize("+"), Err(PhoneError::Empty));
        assert_eq!(normalize("call me"), Err(PhoneError::BadCharacters));
        assert_eq!(normalize("12"), Err(PhoneError::Invalid));
        assert_eq!(normalize("+54 9 11 123"), Err(PhoneError::Invalid));
        assert_eq!(normalize("+999 1234567"), Err(PhoneError::Invalid));
    }
}
