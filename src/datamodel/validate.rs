//! Checking values against parameter definitions before they are sent to a
//! device, with errors an operator can act on, and the `xsi:type` names used
//! in SetParameterValues.
//!
//! Values of hidden (secured) parameters are never repeated in errors.

use super::pattern;
use super::{Access, BaseType, Bounds, Facets, NumRange, ParamDef};

/// A value that does not fit a parameter's type or facets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {} {problem}; it takes {expected}", shown_value(.value))]
pub struct ValueError {
    /// The parameter's path pattern.
    pub path: String,
    /// The rejected value; `None` for hidden parameters (passwords).
    pub value: Option<String>,
    /// What the parameter accepts, in words.
    pub expected: String,
    /// What is wrong with the value.
    pub problem: Problem,
}

fn shown_value(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("the value {v:?}"),
        None => "the value".to_string(),
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not a whole number (or not a number at all).
    #[error("is not a whole number")]
    NotAnInteger,
    /// Not a decimal number.
    #[error("is not a decimal number")]
    NotADecimal,
    /// A number outside the allowed range.
    #[error("is out of range")]
    OutOfRange,
    /// Not `true`, `false`, `1` or `0`.
    #[error("is not a boolean")]
    NotABoolean,
    /// Not an XML Schema dateTime.
    #[error("is not a valid date and time")]
    NotADateTime,
    /// Not valid base64.
    #[error("is not valid base64")]
    NotBase64,
    /// Not an even number of hexadecimal digits.
    #[error("is not valid hexadecimal (two digits per byte)")]
    NotHex,
    /// Length outside the allowed sizes.
    #[error("is {len} {unit} long")]
    Length {
        /// The actual length.
        len: u64,
        /// `characters` or `bytes`.
        unit: &'static str,
    },
    /// Not one of the enumerated values.
    #[error("is not one of the allowed values")]
    NotInEnumeration,
    /// Matches none of the patterns.
    #[error("does not have the required format")]
    PatternMismatch,
    /// A list with too few or too many items.
    #[error("has {count} list items")]
    ItemCount {
        /// Number of items.
        count: u64,
    },
    /// A list whose text is too long or too short.
    #[error("is {len} characters long as a whole")]
    ListLength {
        /// Length of the whole list string.
        len: u64,
    },
    /// One item of a list is wrong.
    #[error("has a bad item {index}, which {problem}")]
    Item {
        /// 1-based position in the list.
        index: usize,
        /// What is wrong with the item.
        problem: Box<Problem>,
    },
}

/// Why a SetParameterValues entry would be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The parameter is read-only.
    #[error("{path} is read-only: devices do not accept values for it")]
    ReadOnly {
        /// The parameter's path pattern.
        path: String,
    },
    /// The value is one the device reports but the ACS may not set.
    #[error("{path}: {value:?} is a state the device reports, not a value to set; settable values are {settable}")]
    ReadOnlyValue {
        /// The parameter's path pattern.
        path: String,
        /// The rejected value.
        value: String,
        /// The values that may be set, comma-separated.
        settable: String,
    },
    /// The value does not fit the parameter's type or facets.
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

/// The `xsi:type` for a SetParameterValues value (lists are strings).
pub fn xsd_type(def: &ParamDef) -> &'static str {
    if def.is_list() {
        return "xsd:string";
    }
    match def.base_type() {
        BaseType::String => "xsd:string",
        BaseType::UnsignedInt => "xsd:unsignedInt",
        BaseType::Int => "xsd:int",
        BaseType::UnsignedLong => "xsd:unsignedLong",
        BaseType::Long => "xsd:long",
        BaseType::Boolean => "xsd:boolean",
        BaseType::DateTime => "xsd:dateTime",
        BaseType::Base64 => "xsd:base64",
        BaseType::HexBinary => "xsd:hexBinary",
        BaseType::Decimal => "xsd:decimal",
    }
}

/// Checks that `value` fits the parameter's type and facets. Access is not
/// checked (see [`validate_set`]). Enumerations also accept vendor values
/// starting with `X_`.
pub fn validate_value(def: &ParamDef, value: &str) -> Result<(), ValueError> {
    let facets = def.facets();
    check(def, &facets, value).map_err(|problem| ValueError {
        path: def.path(),
        value: (!def.is_hidden()).then(|| value.to_string()),
        expected: describe_with(def, &facets),
        problem,
    })
}

/// [`validate_value`] plus the checks for setting the value: the parameter
/// must be writable, and enumerated values that only a device may report
/// (`Complete` of a diagnostics state, say) are refused.
pub fn validate_set(def: &ParamDef, value: &str) -> Result<(), SetError> {
    if def.access() == Access::ReadOnly {
        return Err(SetError::ReadOnly { path: def.path() });
    }
    validate_value(def, value)?;
    let facets = def.facets();
    if facets.read_only_values.is_empty() {
        return Ok(());
    }
    let mut values = if def.is_list() {
        split_list(value)
    } else {
        vec![value]
    };
    if let Some(bad) = values
        .drain(..)
        .find(|v| facets.read_only_values.contains(v))
    {
        let settable: Vec<&str> = facets
            .enumeration
            .iter()
            .copied()
            .filter(|v| !facets.read_only_values.contains(v))
            .collect();
        return Err(SetError::ReadOnlyValue {
            path: def.path(),
            value: bad.to_string(),
            settable: settable.join(", "),
        });
    }
    Ok(())
}

/// What the parameter accepts, in words: "an unsignedInt (whole number)
/// from 1 to 65535", "text of at most 256 characters", ...
pub fn describe(def: &ParamDef) -> String {
    describe_with(def, &def.facets())
}

fn split_list(value: &str) -> Vec<&str> {
    if value.trim().is_empty() {
        Vec::new()
    } else {
        value.split(',').map(str::trim).collect()
    }
}

fn check(def: &ParamDef, facets: &Facets, value: &str) -> Result<(), Problem> {
    if !def.is_list() {
        return check_scalar(def.base_type(), facets, value);
    }
    let len = value.chars().count() as u64;
    if !facets.list_sizes.is_empty() && !facets.list_sizes.iter().any(|b| b.contains(len)) {
        return Err(Problem::ListLength { len });
    }
    let items = split_list(value);
    let count = items.len() as u64;
    if facets.items.is_some_and(|b| !b.contains(count)) {
        return Err(Problem::ItemCount { count });
    }
    for (i, item) in items.iter().enumerate() {
        check_scalar(def.base_type(), facets, item).map_err(|problem| Problem::Item {
            index: i + 1,
            problem: Box::new(problem),
        })?;
    }
    Ok(())
}

fn check_scalar(base: BaseType, facets: &Facets, value: &str) -> Result<(), Problem> {
    match base {
        BaseType::String => {
            check_length(value.chars().count() as u64, &facets.sizes, "characters")?;
            if !facets.enumeration.is_empty()
                && !facets.enumeration.contains(&value)
                && !is_vendor_value(value)
            {
                return Err(Problem::NotInEnumeration);
            }
            check_patterns(value, &facets.patterns)
        }
        BaseType::UnsignedInt | BaseType::Int | BaseType::UnsignedLong | BaseType::Long => {
            let n = parse_integer(value)?;
            let (lo, hi) = base.integer_limits().unwrap_or((i128::MIN, i128::MAX));
            if n < lo || n > hi {
                return Err(Problem::OutOfRange);
            }
            if facets.ranges.is_empty() || facets.ranges.iter().any(|r| int_in_range(n, r)) {
                Ok(())
            } else {
                Err(Problem::OutOfRange)
            }
        }
        BaseType::Decimal => {
            let x = parse_decimal(value).ok_or(Problem::NotADecimal)?;
            let fits = |r: &NumRange| r.min.is_none_or(|m| x >= m) && r.max.is_none_or(|m| x <= m);
            if facets.ranges.is_empty() || facets.ranges.iter().any(fits) {
                Ok(())
            } else {
                Err(Problem::OutOfRange)
            }
        }
        BaseType::Boolean => match value {
            "true" | "false" | "1" | "0" => Ok(()),
            _ => Err(Problem::NotABoolean),
        },
        BaseType::DateTime => {
            if is_date_time(value) {
                Ok(())
            } else {
                Err(Problem::NotADateTime)
            }
        }
        BaseType::Base64 => {
            let len = base64_len(value).ok_or(Problem::NotBase64)?;
            check_length(len, &facets.sizes, "bytes")
        }
        BaseType::HexBinary => {
            let digits = value.trim();
            if digits.len() % 2 != 0 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Problem::NotHex);
            }
            check_length(digits.len() as u64 / 2, &facets.sizes, "bytes")
        }
    }
}

/// TR-106 reserves the `X_` prefix for vendor-specific enumeration values.
fn is_vendor_value(value: &str) -> bool {
    value.starts_with("X_") && value.len() > 2
}

fn check_length(len: u64, sizes: &[Bounds], unit: &'static str) -> Result<(), Problem> {
    if sizes.is_empty() || sizes.iter().any(|b| b.contains(len)) {
        Ok(())
    } else {
        Err(Problem::Length { len, unit })
    }
}

fn check_patterns(value: &str, patterns: &[&str]) -> Result<(), Problem> {
    if patterns.is_empty() {
        return Ok(());
    }
    let matched = patterns
        .iter()
        .any(|p| pattern::compile(p).is_none_or(|compiled| compiled.is_match(value)));
    if matched {
        Ok(())
    } else {
        Err(Problem::PatternMismatch)
    }
}

fn int_in_range(n: i128, r: &NumRange) -> bool {
    if r.int_min.is_some_and(|m| n < m) || r.int_max.is_some_and(|m| n > m) {
        return false;
    }
    match r.step {
        Some(step) => (n - r.int_min.unwrap_or(0)).rem_euclid(step) == 0,
        None => true,
    }
}

/// XML Schema integer lexical form: optional sign, at least one digit.
/// Numbers too long for any integer type are out of range.
fn parse_integer(value: &str) -> Result<i128, Problem> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::NotAnInteger);
    }
    if digits.trim_start_matches('0').len() > 38 {
        return Err(Problem::OutOfRange);
    }
    value
        .strip_prefix('+')
        .unwrap_or(value)
        .parse()
        .map_err(|_| Problem::OutOfRange)
}

fn parse_decimal(value: &str) -> Option<f64> {
    let body = value.strip_prefix(['+', '-']).unwrap_or(value);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    value.strip_prefix('+').unwrap_or(value).parse().ok()
}

/// Decoded length of base64 text (whitespace allowed), or `None` if invalid.
fn base64_len(value: &str) -> Option<u64> {
    let chars: Vec<u8> = value.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if chars.len() % 4 != 0 {
        return None;
    }
    let padding = chars.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let body = &chars[..chars.len() - padding];
    if !body
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    {
        return None;
    }
    Some((chars.len() / 4 * 3 - padding) as u64)
}

/// XML Schema dateTime: `[-]YYYY-MM-DDThh:mm:ss[.fff][Z|(+|-)hh:mm]`, with
/// TR-069's "unknown time" (`0001-01-01T00:00:00Z`) included.
fn is_date_time(value: &str) -> bool {
    let value = value.strip_prefix('-').unwrap_or(value);
    let Some((date, time)) = value.split_once('T') else {
        return false;
    };
    let mut parts = date.splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let number = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let year_ok = year.len() >= 4 && year.bytes().all(|b| b.is_ascii_digit());
    let (Some(month), Some(day)) = (number(month, 2), number(day, 2)) else {
        return false;
    };
    let year_num: u64 = year.parse().unwrap_or(0);
    let leap = year_num % 4 == 0 && (year_num % 100 != 0 || year_num % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if !year_ok || day == 0 || day > days_in_month {
        return false;
    }
    // Split off the time zone.
    let (clock, zone) = if let Some(c) = time.strip_suffix('Z') {
        (c, None)
    } else if time.len() > 6 && matches!(time.as_bytes()[time.len() - 6], b'+' | b'-') {
        (&time[..time.len() - 6], Some(&time[time.len() - 5..]))
    } else {
        (time, None)
    };
    if let Some(zone) = zone {
        let Some((h, m)) = zone.split_once(':') else {
            return false;
        };
        match (number(h, 2), number(m, 2)) {
            (Some(h), Some(m)) if h <= 14 && m <= 59 => {}
            _ => return false,
        }
    }
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    if clock.contains('.') && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let mut hms = hms.splitn(3, ':');
    match (
        hms.next().and_then(|h| number(h, 2)),
        hms.next().and_then(|m| number(m, 2)),
        hms.next().and_then(|s| number(s, 2)),
    ) {
        (Some(h), Some(m), Some(s)) => {
            (h <= 23 && m <= 59 && s <= 60) || (h == 24 && m == 0 && s == 0)
        }
        _ => false,
    }
}

fn describe_with(def: &ParamDef, facets: &Facets) -> String {
    let item = describe_scalar(def.base_type(), facets);
    if !def.is_list() {
        return item;
    }
    let mut text = String::from("a comma-separated list");
    if let Some(items) = facets.items {
        text.push_str(&format!(" of {} items", bounds_phrase(&items)));
    }
    if !facets.list_sizes.is_empty() {
        text.push_str(&format!(
            " ({} characters in all)",
            sizes_phrase(&facets.list_sizes)
        ));
    }
    text.push_str(", each ");
    text.push_str(&item);
    text
}

fn describe_scalar(base: BaseType, facets: &Facets) -> String {
    match base {
        BaseType::String => {
            let mut parts = Vec::new();
            if !facets.enumeration.is_empty() {
                const SHOWN: usize = 24;
                let mut list = facets
                    .enumeration
                    .iter()
                    .take(SHOWN)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if facets.enumeration.len() > SHOWN {
                    list.push_str(&format!(" and {} more", facets.enumeration.len() - SHOWN));
                }
                parts.push(format!(
                    "one of {list} (or a vendor value starting with X_)"
                ));
            } else {
                parts.push("text".to_string());
            }
            if !facets.sizes.is_empty() {
                parts.push(format!("of {} characters", sizes_phrase(&facets.sizes)));
            }
            if !facets.patterns.is_empty() {
                let shown: Vec<String> = facets
                    .patterns
                    .iter()
                    .map(|p| {
                        if p.is_empty() {
                            "(empty)".to_string()
                        } else {
                            format!("`{p}`")
                        }
                    })
                    .collect();
                parts.push(format!("matching {}", shown.join(" or ")));
            }
            parts.join(" ")
        }
        BaseType::UnsignedInt | BaseType::Int | BaseType::UnsignedLong | BaseType::Long => {
            let name = base.name();
            let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            let ranges = if facets.ranges.is_empty() {
                let (lo, hi) = base.integer_limits().unwrap_or((0, 0));
                format!("from {lo} to {hi}")
            } else {
                ranges_phrase(&facets.ranges)
            };
            format!("{article} {name} (whole number) {ranges}")
        }
        BaseType::Decimal => {
            if facets.ranges.is_empty() {
                "a decimal number".to_string()
            } else {
                format!("a decimal number {}", ranges_phrase(&facets.ranges))
            }
        }
        BaseType::Boolean => "a boolean: true, false, 1 or 0".to_string(),
        BaseType::DateTime => {
            "a date and time such as 2024-01-31T12:00:00Z (0001-01-01T00:00:00Z for unknown)"
                .to_string()
        }
        BaseType::Base64 | BaseType::HexBinary => {
            let kind = if base == BaseType::Base64 {
                "base64-encoded data"
            } else {
                "hexadecimal data"
            };
            if facets.sizes.is_empty() {
                kind.to_string()
            } else {
                format!("{kind} of {} bytes", sizes_phrase(&facets.sizes))
            }
        }
    }
}

fn bounds_phrase(b: &Bounds) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) if lo == hi => format!("exactly {lo}"),
        (Some(0) | None, Some(hi)) => format!("at most {hi}"),
        (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, None) => "any number of".to_string(),
    }
}

fn sizes_phrase(sizes: &[Bounds]) -> String {
    let phrases: Vec<String> = sizes.iter().map(bounds_phrase).collect();
    phrases.join(" or ")
}

fn ranges_phrase(ranges: &[NumRange]) -> String {
    let phrases: Vec<String> = ranges
        .iter()
        .map(|r| {
            let fmt = |i: Option<i128>, f: Option<f64>| {
                i.map(|i| i.to_string()).or(f.map(|f| f.to_string()))
            };
            let (lo, hi) = (fmt(r.int_min, r.min), fmt(r.int_max, r.max));
            let mut text = match (lo, hi) {
                (Some(lo), Some(hi)) if lo == hi => lo,
                (Some(lo), Some(hi)) => format!("from {lo} to {hi}"),
                (Some(lo), None) => format!("of at least {lo}"),
                (None, Some(hi)) => format!("of at most {hi}"),
                (None, None) => "of any size".to_string(),
            };
            if let Some(step) = r.step {
                text.push_str(&format!(" in steps of {step}"));
            }
            text
        })
        .collect();
    phrases.join(" or ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::datamodel::{Registry, RootModel};

    fn registry() -> &'static Registry {
        Registry::builtin().unwrap()
    }

    fn def(path: &str) -> &'static ParamDef {
        let root = if path.starts_with("InternetGatewayDevice.") {
            RootModel::InternetGatewayDevice1
        } else {
            RootModel::Device2
        };
        registry()
            .lookup(root, path)
            .unwrap_or_else(|| panic!("{path} is not in the model"))
    }

    #[test]
    fn integers_check_type_and_range() {
        let interval = def("Device.ManagementServer.PeriodicInformInterval");
        assert!(validate_value(interval, "3600").is_ok());
        assert!(validate_value(interval, "+3600").is_ok());
        let err = validate_value(interval, "0").unwrap_err();
        assert_eq!(err.problem, Problem::OutOfRange);
        assert_eq!(err.path, "Device.ManagementServer.PeriodicInformInterval");
        assert!(
            err.expected.contains("from 1 to 4294967295") || err.expected.contains("at least 1"),
            "{err}"
        );
        assert_eq!(
            validate_value(interval, "4294967296").unwrap_err().problem,
            Problem::OutOfRange
        );
        assert_eq!(
            validate_value(interval, "-1").unwrap_err().problem,
            Problem::OutOfRange
        );
        assert_eq!(
            validate_value(interval, &"9".repeat(60))
                .unwrap_err()
                .problem,
            Problem::OutOfRange
        );
        assert!(validate_value(interval, &format!("{}42", "0".repeat(60))).is_ok());
        for bad in ["abc", "", "1.5", "1e3", " 5"] {
            assert_eq!(
                validate_value(interval, bad).unwrap_err().problem,
                Problem::NotAnInteger,
                "{bad:?}"
            );
        }
        let msg = validate_value(interval, "abc").unwrap_err().to_string();
        assert!(msg.starts_with("Device.ManagementServer.PeriodicInformInterval: the value \"abc\" is not a whole number; it takes an unsignedInt"), "{msg}");

        let multiplier = def("Device.ManagementServer.CWMPRetryIntervalMultiplier");
        assert!(validate_value(multiplier, "2000").is_ok());
        assert_eq!(
            validate_value(multiplier, "999").unwrap_err().problem,
            Problem::OutOfRange
        );

        let keep_alive = def("InternetGatewayDevice.ManagementServer.STUNMaximumKeepAlivePeriod");
        assert!(validate_value(keep_alive, "-1").is_ok());
        assert_eq!(
            validate_value(keep_alive, "-2").unwrap_err().problem,
            Problem::OutOfRange
        );
    }

    #[test]
    fn booleans_strings_and_enumerations() {
        let enable = def("Device.ManagementServer.EnableCWMP");
        for ok in ["true", "false", "1", "0"] {
            assert!(validate_value(enable, ok).is_ok(), "{ok}");
        }
        for bad in ["TRUE", "yes", "", "2"] {
            assert_eq!(
                validate_value(enable, bad).unwrap_err().problem,
                Problem::NotABoolean
            );
        }

        let url = def("InternetGatewayDevice.ManagementServer.URL");
        assert!(validate_value(url, &"a".repeat(256)).is_ok());
        let err = validate_value(url, &"a".repeat(257)).unwrap_err();
        assert_eq!(
            err.problem,
            Problem::Length {
                len: 257,
                unit: "characters"
            }
        );
        assert!(
            err.to_string()
                .contains("is 257 characters long; it takes text of at most 256 characters"),
            "{err}"
        );
        // Length counts characters, not bytes.
        assert!(validate_value(url, &"é".repeat(256)).is_ok());

        let mode = def("Device.ManagementServer.InstanceMode");
        assert!(validate_value(mode, "InstanceAlias").is_ok());
        assert!(
            validate_value(mode, "X_ACME_Hybrid").is_ok(),
            "vendor values are allowed"
        );
        let err = validate_value(mode, "instancealias").unwrap_err();
        assert_eq!(err.problem, Problem::NotInEnumeration);
        assert!(
            err.expected.contains("InstanceNumber, InstanceAlias"),
            "{err}"
        );
        assert_eq!(
            validate_value(mode, "X_").unwrap_err().problem,
            Problem::NotInEnumeration
        );
    }

    #[test]
    fn patterns_dates_and_binary() {
        let mac = def("Device.Ethernet.Interface.1.MACAddress");
        assert!(validate_value(mac, "00:11:22:aa:BB:cc").is_ok());
        assert!(
            validate_value(mac, "").is_ok(),
            "the MAC address pattern allows empty"
        );
        assert_eq!(
            validate_value(mac, "00-11-22-aa-bb-cc")
                .unwrap_err()
                .problem,
            Problem::PatternMismatch
        );

        let time = def("Device.ManagementServer.PeriodicInformTime");
        for ok in [
            "2024-02-29T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "2024-01-31T12:00:00.123+01:00",
            "2024-01-31T12:00:00",
        ] {
            assert!(validate_value(time, ok).is_ok(), "{ok}");
        }
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2019-03-05T11:54::14",
            "yesterday",
            "",
        ] {
            assert_eq!(
                validate_value(time, bad).unwrap_err().problem,
                Problem::NotADateTime,
                "{bad}"
            );
        }

        let hex = registry()
            .root_model(RootModel::Device2)
            .objects()
            .iter()
            .flat_map(|o| registry().root_model(RootModel::Device2).params_of(o))
            .find(|p| {
                p.base_type() == BaseType::HexBinary
                    && !p.is_list()
                    && p.facets().max_length().is_some()
            })
            .unwrap();
        let max = hex.facets().max_length().unwrap() as usize;
        assert!(validate_value(hex, &"ab".repeat(max)).is_ok());
        assert_eq!(
            validate_value(hex, "abc").unwrap_err().problem,
            Problem::NotHex
        );
        assert_eq!(
            validate_value(hex, "zz").unwrap_err().problem,
            Problem::NotHex
        );
        assert!(matches!(
            validate_value(hex, &"ab".repeat(max + 1))
                .unwrap_err()
                .problem,
            Problem::Length { unit: "bytes", .. }
        ));
    }

    #[test]
    fn lists_check_each_item_and_the_count() {
        let jids = def("InternetGatewayDevice.ManagementServer.ConnReqAllowedJabberIDs");
        assert!(jids.is_list());
        assert_eq!(xsd_type(jids), "xsd:string");
        assert!(validate_value(jids, "").is_ok());
        assert!(validate_value(jids, "a@example.com, b@example.com/res").is_ok());
        let many = vec!["a@b"; 33].join(",");
        assert_eq!(
            validate_value(jids, &many).unwrap_err().problem,
            Problem::ItemCount { count: 33 }
        );
        let long_item = format!("ok@x,{}", "j".repeat(257));
        assert_eq!(
            validate_value(jids, &long_item).unwrap_err().problem,
            Problem::Item {
                index: 2,
                problem: Box::new(Problem::Length {
                    len: 257,
                    unit: "characters"
                })
            }
        );
        let err = validate_value(jids, &many).unwrap_err();
        assert!(
            err.expected
                .starts_with("a comma-separated list of at most 32 items, each text"),
            "{err}"
        );
    }

    #[test]
    fn setting_checks_access_and_report_only_values() {
        let key = def("Device.ManagementServer.ParameterKey");
        let err = validate_set(key, "x").unwrap_err();
        assert_eq!(
            err,
            SetError::ReadOnly {
                path: "Device.ManagementServer.ParameterKey".into()
            }
        );
        assert!(err.to_string().contains("read-only"));

        let state = def("Device.IP.Diagnostics.IPPing.DiagnosticsState");
        assert!(validate_set(state, "Requested").is_ok());
        assert!(
            validate_value(state, "Complete").is_ok(),
            "devices report Complete"
        );
        let err = validate_set(state, "Complete").unwrap_err();
        assert!(matches!(err, SetError::ReadOnlyValue { .. }), "{err}");
        assert!(err.to_string().contains("settable values are"), "{err}");
        assert!(err.to_string().contains("Requested"), "{err}");
        assert!(matches!(
            validate_set(state, "Bogus").unwrap_err(),
            SetError::Invalid(_)
        ));
    }

    #[test]
    fn hidden_values_stay_out_of_errors() {
        let password = def("Device.ManagementServer.Password");
        let secret = "s".repeat(300);
        let err = validate_set(password, &secret).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("sss"), "{text}");
        assert!(text.contains("the value is 300 characters long"), "{text}");
    }

    #[test]
    fn xsd_types_follow_the_base_type() {
        let cases = [
            ("Device.DeviceInfo.UpTime", "xsd:unsignedInt"),
            ("Device.ManagementServer.EnableCWMP", "xsd:boolean"),
            ("Device.DeviceInfo.FirstUseDate", "xsd:dateTime"),
            (
                "Device.Ethernet.Interface.1.Stats.BytesSent",
                "xsd:unsignedLong",
            ),
            (
                "Device.ManagementServer.STUNMaximumKeepAlivePeriod",
                "xsd:int",
            ),
            ("Device.DeviceInfo.SerialNumber", "xsd:string"),
        ];
        for (path, expected) in cases {
            assert_eq!(xsd_type(def(path)), expected, "{path}");
        }
    }
}
