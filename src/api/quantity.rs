//! Kubernetes resource quantities ("500m", "1.5Gi", "2e3"): parsing, exact comparison, and
//! the canonical spelling the API server stores and returns.
//!
//! The rules follow apimachinery's `resource.Quantity`: the same grammar and error messages,
//! values rounded up (away from zero) to nano precision on parse, and the canonical form
//! chosen from the suffix family the value was written in (`1024Mi` reads back as `1Gi`,
//! `0.5` as `500m`, `1e3` stays `1e3`). Values are held as an exact count of nano-units in an
//! `i128`, which covers everything up to about 10^29; larger inputs are rejected as
//! non-numeric rather than silently losing precision.

use std::cmp::Ordering;
use std::fmt;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const NANOS_PER_MILLI: i128 = 1_000_000;

/// The suffix family a quantity was written in; it decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityFormat {
    /// Powers of 1000 (`m`, `k`, `M`, ...) or no suffix.
    DecimalSi,
    /// Powers of 1024 (`Ki`, `Mi`, ...).
    BinarySi,
    /// Scientific notation (`1e3`).
    DecimalExponent,
}

/// A parsed quantity. Equality and ordering compare the numeric value only, so `1Gi` equals
/// `1024Mi` and `1` equals `1000m`, as `Quantity.Cmp` does upstream.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

/// Why a string is not a quantity; the messages are apimachinery's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// Parses a quantity string such as `"100m"`, `"1.5Gi"` or `"-2e3"`.
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    let parts = split_quantity(s)?;
    let (base, exponent, format) = interpret_suffix(parts.suffix)?;

    // Digits of num and denom together form an integer that is `denom.len()` decimal places
    // too large; fold that into the power of ten applied below.
    let digits = format!("{}{}", parts.num, parts.denom);
    let mut magnitude: i128 = digits.parse().map_err(|_| QuantityError::Numeric)?;
    let mut pow10: i64 = 9 - parts.denom.len() as i64;
    if base == 10 {
        pow10 += i64::from(exponent);
    } else {
        magnitude = 2i128
            .checked_pow(exponent as u32)
            .and_then(|m| magnitude.checked_mul(m))
            .ok_or(QuantityError::Numeric)?;
    }
    let nanos = scale_by_pow10_round_up(magnitude, pow10).ok_or(QuantityError::Numeric)?;
    let nanos = if parts.negative { -nanos } else { nanos };

    // A binary value below one unit cannot be written with a binary suffix.
    let format = if format == QuantityFormat::BinarySi && nanos.abs() < NANOS_PER_UNIT {
        QuantityFormat::DecimalSi
    } else {
        format
    };
    Ok(Quantity { nanos, format })
}

struct QuantityParts<'a> {
    negative: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

/// Splits `[+-]digits[.digits]suffix` the way apimachinery's `parseQuantityString` does,
/// including its leniencies (`"1."` and `".5"` are numbers, a lone sign is zero).
fn split_quantity(s: &str) -> Result<QuantityParts<'_>, QuantityError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    match bytes.first() {
        Some(b'-') => {
            negative = true;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    while pos < bytes.len() && bytes[pos] == b'0' {
        pos += 1;
    }
    let num_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == num_start {
        "0"
    } else {
        &s[num_start..pos]
    };
    let mut denom = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[denom_start..pos];
    }
    let suffix_start = pos;
    while pos < bytes.len() && b"eEinumkKMGTP".contains(&bytes[pos]) {
        pos += 1;
    }
    if pos < bytes.len() && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos != bytes.len() {
        return Err(QuantityError::FormatWrong);
    }
    Ok(QuantityParts {
        negative,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

/// Maps a suffix to (base, exponent, format).
fn interpret_suffix(suffix: &str) -> Result<(u32, i32, QuantityFormat), QuantityError> {
    let decimal = match suffix {
        "" => Some(0),
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(exp) = decimal {
        return Ok((10, exp, QuantityFormat::DecimalSi));
    }
    let binary = match suffix {
        "Ki" => Some(10),
        "Mi" => Some(20),
        "Gi" => Some(30),
        "Ti" => Some(40),
        "Pi" => Some(50),
        "Ei" => Some(60),
        _ => None,
    };
    if let Some(exp) = binary {
        return Ok((2, exp, QuantityFormat::BinarySi));
    }
    if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) {
        let exp: i32 = suffix[1..].parse().map_err(|_| QuantityError::Suffix)?;
        return Ok((10, exp, QuantityFormat::DecimalExponent));
    }
    Err(QuantityError::Suffix)
}

/// `value * 10^pow10`, rounding a lost fraction away from zero; `None` on overflow.
fn scale_by_pow10_round_up(value: i128, pow10: i64) -> Option<i128> {
    if pow10 >= 0 {
        let factor = 10i128.checked_pow(u32::try_from(pow10).ok()?)?;
        return value.checked_mul(factor);
    }
    let Some(divisor) = u32::try_from(-pow10)
        .ok()
        .and_then(|p| 10i128.checked_pow(p))
    else {
        // Dividing by more than 10^38 leaves only the rounding.
        return Some(value.signum());
    };
    Some(div_away_from_zero(value, divisor))
}

fn div_away_from_zero(value: i128, divisor: i128) -> i128 {
    let quotient = value / divisor;
    if value % divisor == 0 {
        quotient
    } else {
        quotient + value.signum()
    }
}

impl Quantity {
    /// The value in thousandths of a unit, rounded away from zero (`MilliValue()` upstream);
    /// for CPU this is millicores.
    pub fn to_millis(&self) -> i128 {
        div_away_from_zero(self.nanos, NANOS_PER_MILLI)
    }

    /// The value in whole units, rounded away from zero (`Value()` upstream); for memory and
    /// storage this is bytes.
    pub fn to_bytes(&self) -> i128 {
        div_away_from_zero(self.nanos, NANOS_PER_UNIT)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// `count` whole units (bytes, processes) in `format` (`resource.NewQuantity` upstream).
    pub fn from_units(count: i128, format: QuantityFormat) -> Quantity {
        Quantity {
            nanos: count * NANOS_PER_UNIT,
            format,
        }
    }

    /// `count` billionths of a unit (nanocores for CPU) in `format` (`resource.NewScaledQuantity(count,
    /// resource.Nano)` upstream).
    pub fn from_nano_units(count: i128, format: QuantityFormat) -> Quantity {
        Quantity {
            nanos: count,
            format,
        }
    }

    /// Zero in the given format, the start of a sum.
    pub fn zero(format: QuantityFormat) -> Quantity {
        Quantity { nanos: 0, format }
    }

    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The sum, in this quantity's format (as `Quantity.Add` keeps the receiver's).
    pub fn plus(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos + other.nanos,
            format: self.format,
        }
    }

    /// The difference, in this quantity's format.
    pub fn minus(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos - other.nanos,
            format: self.format,
        }
    }

    /// `self / other` as a float, for limit-to-request ratios.
    pub fn ratio_to(&self, other: &Quantity) -> f64 {
        self.nanos as f64 / other.nanos as f64
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Rounds away from zero to a whole number of milli-units, as the API server does to
    /// every resource list it decodes (`RoundUp(-3)` in `SetDefaults_ResourceList`).
    pub fn round_up_to_millis(&self) -> Quantity {
        Quantity {
            nanos: self.to_millis() * NANOS_PER_MILLI,
            format: self.format,
        }
    }

    fn fmt_decimal(&self, f: &mut fmt::Formatter<'_>, exponent_form: bool) -> fmt::Result {
        // Strip factors of ten, then settle on an exponent that is a multiple of three so
        // the mantissa stays an integer (AsCanonicalBytes upstream).
        let mut mantissa = self.nanos;
        let mut exp: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        match exp.rem_euclid(3) {
            1 => {
                mantissa *= 10;
                exp -= 1;
            }
            2 => {
                mantissa *= 100;
                exp -= 2;
            }
            _ => {}
        }
        let suffix = match (exponent_form, exp) {
            (_, 0) => String::new(),
            (true, _) => format!("e{exp}"),
            (false, -9) => "n".into(),
            (false, -6) => "u".into(),
            (false, -3) => "m".into(),
            (false, 3) => "k".into(),
            (false, 6) => "M".into(),
            (false, 9) => "G".into(),
            (false, 12) => "T".into(),
            (false, 15) => "P".into(),
            (false, 18) => "E".into(),
            (false, _) => format!("e{exp}"),
        };
        write!(f, "{mantissa}{suffix}")
    }
}

impl fmt::Display for Quantity {
    /// The canonical form (`Quantity.String()` upstream).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        match self.format {
            QuantityFormat::DecimalExponent => self.fmt_decimal(f, true),
            QuantityFormat::DecimalSi => self.fmt_decimal(f, false),
            QuantityFormat::BinarySi => {
                // Small or fractional binary values print in decimal so nothing is rounded.
                if self.nanos.abs() < 1024 * NANOS_PER_UNIT || self.nanos % NANOS_PER_UNIT != 0 {
                    return self.fmt_decimal(f, false);
                }
                let mut value = self.nanos / NANOS_PER_UNIT;
                let mut power = 0;
                while power < 6 && value % 1024 == 0 {
                    value /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                write!(f, "{value}{suffix}")
            }
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_quantity(s)
    }
}

impl TryFrom<&serde_json::Value> for Quantity {
    type Error = QuantityError;

    /// Quantities arrive as JSON strings, but the API server also accepts bare numbers
    /// (`cpu: 2` in YAML) and surrounding whitespace, as `Quantity.UnmarshalJSON` does.
    fn try_from(value: &serde_json::Value) -> Result<Self, Self::Error> {
        match value {
            serde_json::Value::String(s) => parse_quantity(s.trim()),
            serde_json::Value::Number(n) => parse_quantity(&n.to_string()),
            _ => Err(QuantityError::FormatWrong),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        parse_quantity(s).unwrap().to_string()
    }

    #[test]
    fn parses_suffixes_to_exact_values() {
        assert_eq!(parse_quantity("100m").unwrap().to_millis(), 100);
        assert_eq!(parse_quantity("1").unwrap().to_millis(), 1000);
        assert_eq!(parse_quantity("1Ki").unwrap().to_bytes(), 1024);
        assert_eq!(parse_quantity("1.5Gi").unwrap().to_bytes(), 1_610_612_736);
        assert_eq!(parse_quantity("2e3").unwrap().to_bytes(), 2000);
        assert_eq!(
            parse_quantity("1E").unwrap().to_bytes(),
            1_000_000_000_000_000_000
        );
        assert_eq!(parse_quantity("5n").unwrap().to_millis(), 1);
        assert_eq!(parse_quantity("-1.5").unwrap().to_millis(), -1500);
        assert_eq!(parse_quantity(".5").unwrap().to_millis(), 500);
        assert_eq!(parse_quantity("1.").unwrap().to_bytes(), 1);
    }

    #[test]
    fn compares_by_value_across_formats() {
        let q = |s| parse_quantity(s).unwrap();
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1"), q("1000m"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
    }

    #[test]
    fn rounds_below_nano_up() {
        assert_eq!(canon("0.0000000001"), "1n");
        assert_eq!(canon("-0.0000000001"), "-1n");
    }

    #[test]
    fn canonical_strings_match_upstream() {
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("1500m"), "1500m");
        assert_eq!(canon("2000"), "2k");
        assert_eq!(canon("1500"), "1500");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1536Mi"), "1536Mi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("512Ki"), "512Ki");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("100e-3"), "100e-3");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("0Gi"), "0");
        assert_eq!(canon("-100m"), "-100m");
    }

    #[test]
    fn milli_round_up_matches_resource_list_defaulting() {
        let q = parse_quantity("0.0001").unwrap().round_up_to_millis();
        assert_eq!(q.to_string(), "1m");
        let q = parse_quantity("1.0001Gi").unwrap().round_up_to_millis();
        assert_eq!(q.to_bytes(), 1_073_849_199);
    }

    #[test]
    fn rejects_malformed_input_with_upstream_messages() {
        assert_eq!(parse_quantity(""), Err(QuantityError::FormatWrong));
        assert_eq!(parse_quantity("abc"), Err(QuantityError::FormatWrong));
        assert_eq!(parse_quantity("1 Gi"), Err(QuantityError::FormatWrong));
        assert_eq!(parse_quantity("1Gb"), Err(QuantityError::FormatWrong));
        assert_eq!(parse_quantity("1K"), Err(QuantityError::Suffix));
        assert_eq!(parse_quantity("1ee"), Err(QuantityError::Suffix));
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
        assert_eq!(
            parse_quantity("1e99").unwrap_err().to_string(),
            "unable to parse numeric part of quantity"
        );
    }

    #[test]
    fn reads_json_strings_and_numbers() {
        let q = Quantity::try_from(&serde_json::json!(2)).unwrap();
        assert_eq!(q.to_string(), "2");
        let q = Quantity::try_from(&serde_json::json!(0.5)).unwrap();
        assert_eq!(q.to_string(), "500m");
        let q = Quantity::try_from(&serde_json::json!(" 1Gi ")).unwrap();
        assert_eq!(q.to_string(), "1Gi");
        assert!(Quantity::try_from(&serde_json::json!(true)).is_err());
        let q: Quantity = "250m".parse().unwrap();
        assert_eq!(q.to_millis(), 250);
    }
}
