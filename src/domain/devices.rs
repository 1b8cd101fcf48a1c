//! Finding devices: the query language of the device list, and the searchable parameter
//! values kept for it.
//!
//! A query combines conditions with `AND`, `OR`, `NOT` and parentheses:
//!
//! ```text
//! DeviceInfo.SoftwareVersion = "1.2" AND tag = "lab"
//! product_class = EG8145V5 AND NOT tag = retired
//! serial LIKE "4857*" OR last_inform < 1767225600000
//! ```
//!
//! A condition is `field op value`, with `op` one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `LIKE`
//! (`*` is the wildcard). Values are bare words or quoted with `"` or `'`. Fields:
//! identity columns (`id`, `oui`, `product_class`, `serial`, `manufacturer`, `model`,
//! `software_version`, `hardware_version`, `root_model`, `cwmp_version`, `ip`), times in
//! milliseconds (`last_inform`, `last_boot`, `last_bootstrap`, `created_at`), `tag`, or a
//! parameter name. Parameter names may be given relative to the root: `DeviceInfo.X`
//! matches `InternetGatewayDevice.DeviceInfo.X` and `Device.DeviceInfo.X`. Only parameters
//! the device reports in its Informs and `DeviceInfo.*` are searchable; they compare as text.
//! A bare word alone matches a device id or serial number. `gateway = ID` finds the devices
//! behind a gateway (TR-111: listed in its ManageableDevice table or naming it in their
//! GatewayInfo); it is for device searches only, not preset filters.

use sha2::{Digest, Sha256};

use crate::domain::params::ParamTree;
use crate::error::{Error, Result};
/// The orders of the device list (the store's keyset order).
pub use crate::store::search::Sort;
use crate::store::search::{Column, Field, Filter, Op};

/// Most conditions one query may have.
const MAX_CONDITIONS: usize = 32;
/// Parentheses and NOTs nested around a condition, at most.
const MAX_NESTING: usize = 32;
/// Longest value kept searchable (longer ones are left out of the index).
const MAX_SEARCH_VALUE: usize = 256;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Op(Op),
    LParen,
    RParen,
}

/// Tokens and the character position each starts at; an error carries its position.
fn tokenize(q: &str) -> std::result::Result<(Vec<Tok>, Vec<usize>), (Error, usize)> {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !c.is_whitespace() {
            starts.push(i);
        }
        let tok_start = i;
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '"' | '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err((
                                Error::invalid(
                                    "q",
                                    format!("unterminated quoted value (missing {c})"),
                                ),
                                tok_start,
                            ))
                        }
                        Some('\\') if chars.get(i + 1).is_some() => {
                            s.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(x) if *x == c => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            s.push(*x);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Quoted(s));
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2;
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    out.push(Tok::Op(Op::Le));
                    i += 2;
                }
                Some('>') => {
                    out.push(Tok::Op(Op::Ne));
                    i += 2;
                }
                _ => {
                    out.push(Tok::Op(Op::Lt));
                    i += 1;
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(Op::Ge));
                    i += 2;
                } else {
                    out.push(Tok::Op(Op::Gt));
                    i += 1;
                }
            }
            '~' => {
                out.push(Tok::Op(Op::Like));
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() {
                    let x = chars[i];
                    if x.is_whitespace() || "()=!<>\"'~".contains(x) {
                        break;
                    }
                    i += 1;
                }
                if i == start {
                    return Err((
                        Error::invalid("q", format!("unexpected character `{c}`")),
                        tok_start,
                    ));
                }
                let w: String = chars[start..i].iter().collect();
                if w.eq_ignore_ascii_case("like") {
                    out.push(Tok::Op(Op::Like));
                } else {
                    out.push(Tok::Word(w));
                }
            }
        }
    }
    Ok((out, starts))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    conds: usize,
    /// Open parentheses and NOTs around the current position.
    depth: usize,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Filter> {
        let mut v = vec![self.and()?];
        while is_kw(self.peek(), "or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Filter::Or(v)
        })
    }

    fn and(&mut self) -> Result<Filter> {
        let mut v = vec![self.not()?];
        loop {
            if is_kw(self.peek(), "and") {
                self.pos += 1;
                v.push(self.not()?);
            } else {
                break;
            }
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Filter::And(v)
        })
    }

    /// One level deeper (a parenthesis or a NOT): the parser and everything that walks the
    /// filter recurse per level, so a query nested without end must be refused, not followed
    /// until the stack runs out.
    fn descend(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(Error::invalid(
                "q",
                format!("at most {MAX_NESTING} nested parentheses and NOTs per query"),
            ));
        }
        Ok(())
    }

    fn not(&mut self) -> Result<Filter> {
        if is_kw(self.peek(), "not") {
            self.pos += 1;
            self.descend()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter> {
        match self.next() {
            Some(Tok::LParen) => {
                self.descend()?;
                let f = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Tok::RParen) => Ok(f),
                    _ => Err(Error::invalid("q", "missing `)`")),
                }
            }
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => {
                self.conds += 1;
                if self.conds > MAX_CONDITIONS {
                    return Err(Error::invalid(
                        "q",
                        format!("at most {MAX_CONDITIONS} conditions per query"),
                    ));
                }
                let op = match self.peek() {
                    Some(Tok::Op(op)) => *op,
                    _ => {
                        // A bare word: a device id or serial number.
                        return Ok(Filter::Or(vec![
                            Filter::Cond {
                                field: Field::Column(Column::Text("id")),
                                op: Op::Eq,
                                value: w.clone(),
                            },
                            Filter::Cond {
                                field: Field::Column(Column::Text("serial_number")),
                                op: Op::Eq,
                                value: w,
                            },
                        ]));
                    }
                };
                self.pos += 1;
                let value = match self.next() {
                    Some(Tok::Word(v)) | Some(Tok::Quoted(v)) => v,
                    _ => {
                        return Err(Error::invalid(
                            "q",
                            format!("`{w}` and its operator must be followed by a value"),
                        ))
                    }
                };
                Ok(Filter::Cond {
                    field: field(&w)?,
                    op,
                    value,
                })
            }
            Some(Tok::RParen) => Err(Error::invalid("q", "unexpected `)`")),
            Some(Tok::Op(_)) => Err(Error::invalid(
                "q",
                "an operator must follow a field name, e.g. tag = lab",
            )),
            None => Err(Error::invalid("q", "the query ends too early")),
        }
    }
}

fn field(name: &str) -> Result<Field> {
    let col = |c| Ok(Field::Column(Column::Text(c)));
    let num = |c| Ok(Field::Column(Column::Number(c)));
    match name.to_ascii_lowercase().as_str() {
        "id" | "device_id" => col("id"),
        "oui" => col("oui"),
        "product_class" | "productclass" => col("product_class"),
        "serial" | "serial_number" | "serialnumber" => col("serial_number"),
        "manufacturer" => col("manufacturer"),
        "model" | "model_name" => col("model_name"),
        "software_version" => col("software_version"),
        "hardware_version" => col("hardware_version"),
        "root_model" => col("root_model"),
        "cwmp_version" => col("cwmp_version"),
        "ip" | "source_ip" => col("last_source_ip"),
        "last_inform" => num("last_inform"),
        "last_boot" => num("last_boot"),
        "last_bootstrap" => num("last_bootstrap"),
        "created_at" => num("created_at"),
        "tag" | "tags" => Ok(Field::Tag),
        "gateway" | "behind_gateway" => Ok(Field::Gateway),
        _ if name.contains('.') && !name.ends_with('.') => {
            Ok(Field::Param(relative_name(name).to_string()))
        }
        _ => Err(Error::invalid(
            "q",
            format!(
                "unknown field `{name}`: use id, oui, product_class, serial, manufacturer, model, \
                 software_version, hardware_version, ip, last_inform, tag, gateway, or a parameter name \
                 such as DeviceInfo.SoftwareVersion"
            ),
        )),
    }
}

/// A parameter name without its root object (`Device.DeviceInfo.X` → `DeviceInfo.X`).
pub fn relative_name(name: &str) -> &str {
    name.strip_prefix("InternetGatewayDevice.")
        .or_else(|| name.strip_prefix("Device."))
        .unwrap_or(name)
}

/// A filter matching exactly the devices with these ids (a selection in the console).
pub fn any_of_ids(ids: &[String]) -> Filter {
    Filter::Or(
        ids.iter()
            .map(|id| Filter::Cond {
                field: Field::Column(Column::Text("id")),
                op: Op::Eq,
                value: id.clone(),
            })
            .collect(),
    )
}

/// Parse a device query; an empty query matches every device.
pub fn parse_query(q: &str) -> Result<Filter> {
    parse_query_at(q).map_err(|(e, pos)| match e {
        Error::Invalid { field, message } => Error::Invalid {
            field,
            message: format!("{message} (at character {})", pos + 1),
        },
        other => other,
    })
}

/// Parse a device query; a syntax error comes with the character position (0-based) where
/// the parser stopped, for showing it under the query.
pub fn parse_query_at(q: &str) -> std::result::Result<Filter, (Error, usize)> {
    if q.trim().is_empty() {
        return Ok(Filter::All);
    }
    let (toks, starts) = tokenize(q)?;
    let end = q.chars().count();
    let mut p = Parser {
        toks,
        pos: 0,
        conds: 0,
        depth: 0,
    };
    // The position of the token the parser stopped at (or the end of the query).
    let at = |pos: usize| starts.get(pos).copied().unwrap_or(end);
    let f = match p.or() {
        Ok(f) => f,
        Err(e) => return Err((e, at(p.pos.saturating_sub(1)))),
    };
    if p.pos < p.toks.len() {
        return Err((
            Error::invalid(
                "q",
                "unexpected text after a complete condition; join conditions with AND or OR",
            ),
            at(p.pos),
        ));
    }
    Ok(f)
}

/// What a query can look at when it is evaluated in memory, against one device (presets
/// do this in the device's session).
pub struct DeviceFacts<'a> {
    /// Device columns by column name (`serial_number`, `model_name`, `last_source_ip`,
    /// `last_inform`, ...): the names [`Column`]s carry.
    pub columns: &'a std::collections::BTreeMap<String, String>,
    pub tags: &'a [String],
    /// Known parameters, full names (`Device.DeviceInfo.X`).
    pub tree: &'a ParamTree,
}

impl DeviceFacts<'_> {
    fn param(&self, relative: &str) -> Option<&str> {
        ["Device.", "InternetGatewayDevice."]
            .iter()
            .find_map(|root| self.tree.get(&format!("{root}{relative}")))
            .and_then(|e| e.value.as_deref())
    }
}

/// Whether a device matches a query, evaluated in memory with the semantics of the SQL
/// search: text compares as text (byte order), `*` is the wildcard of `LIKE`, number
/// columns compare as numbers and an unknown number matches nothing, `tag != x` and
/// `Param != x` hold when the device has no such tag or value. Unlike the search, every
/// known parameter can be named, not only the ones devices report in their Informs.
pub fn matches(f: &Filter, d: &DeviceFacts<'_>) -> bool {
    match f {
        Filter::All => true,
        Filter::And(v) => v.iter().all(|x| matches(x, d)),
        Filter::Or(v) => v.is_empty() || v.iter().any(|x| matches(x, d)),
        Filter::Not(x) => !matches(x, d),
        Filter::Cond { field, op, value } => match field {
            Field::Column(Column::Text(col)) => {
                let actual = d.columns.get(*col).map(String::as_str).unwrap_or("");
                compare_text(actual, *op, value)
            }
            Field::Column(Column::Number(col)) => {
                let Some(actual) = d.columns.get(*col).and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let want = value.trim().parse::<i64>().unwrap_or(i64::MIN);
                let op = if *op == Op::Like { Op::Eq } else { *op };
                ordered(actual.cmp(&want), op)
            }
            Field::Tag => {
                if *op == Op::Ne {
                    !d.tags.iter().any(|t| t == value)
                } else {
                    d.tags.iter().any(|t| compare_text(t, *op, value))
                }
            }
            Field::Param(name) => match d.param(name) {
                _ if *op == Op::Ne => d.param(name) != Some(value.as_str()),
                Some(actual) => compare_text(actual, *op, value),
                None => false,
            },
            // Device facts carry no association; preset filters refuse the condition
            // (`uses_gateway`), so only device searches (in SQL) meet it.
            Field::Gateway => false,
        },
    }
}

/// Whether a query has a `gateway` condition (device searches only).
pub fn uses_gateway(f: &Filter) -> bool {
    match f {
        Filter::All => false,
        Filter::Cond { field, .. } => *field == Field::Gateway,
        Filter::And(v) | Filter::Or(v) => v.iter().any(uses_gateway),
        Filter::Not(x) => uses_gateway(x),
    }
}

fn ordered(o: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq | Op::Like => o == Equal,
        Op::Ne => o != Equal,
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
    }
}

fn compare_text(actual: &str, op: Op, value: &str) -> bool {
    if op == Op::Like {
        like(actual, value)
    } else {
        ordered(actual.cmp(value), op)
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn like(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.len() >= part.len() && rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether a query looks at tags (so callers load them only when needed).
pub fn uses_tags(f: &Filter) -> bool {
    match f {
        Filter::All => false,
        Filter::Cond { field, .. } => *field == Field::Tag,
        Filter::And(v) | Filter::Or(v) => v.iter().any(uses_tags),
        Filter::Not(x) => uses_tags(x),
    }
}

/// A query whose SQL search selects at least every device [`matches`] accepts (it may
/// select more). Conditions the SQL decides exactly as [`matches`] does are kept: equality
/// on identity columns and tags, and `LIKE` where it can only select more. Others become
/// "every device" where they count for a match and "no device" under a `NOT`.
/// `Filter::All` means the query cannot narrow anything.
pub fn sql_superset(f: &Filter) -> Filter {
    approx(f, true)
}

fn approx(f: &Filter, over: bool) -> Filter {
    let unknown = || {
        if over {
            Filter::All
        } else {
            Filter::Not(Box::new(Filter::All))
        }
    };
    match f {
        Filter::All => Filter::All,
        Filter::And(v) => simplify_and(v.iter().map(|x| approx(x, over)).collect()),
        Filter::Or(v) => {
            let parts: Vec<Filter> = v.iter().map(|x| approx(x, over)).collect();
            if parts.contains(&Filter::All) {
                Filter::All
            } else {
                Filter::Or(parts)
            }
        }
        Filter::Not(x) => match approx(x, !over) {
            Filter::Not(inner) => *inner,
            other => Filter::Not(Box::new(other)),
        },
        Filter::Cond { field, op, value } => {
            let exact = match (field, op) {
                (Field::Column(Column::Text(_)) | Field::Tag, Op::Eq | Op::Ne) => true,
                // SQL LIKE also treats `_` and `%` as wildcards and may ignore case: it
                // selects at least what `*` does, unless `\` escapes something.
                (Field::Column(Column::Text(_)) | Field::Tag, Op::Like) => {
                    over && !value.contains('\\')
                }
                _ => false,
            };
            if exact {
                f.clone()
            } else {
                unknown()
            }
        }
    }
}

fn simplify_and(parts: Vec<Filter>) -> Filter {
    let parts: Vec<Filter> = parts.into_iter().filter(|p| *p != Filter::All).collect();
    match parts.len() {
        0 => Filter::All,
        _ => Filter::And(parts),
    }
}

/// The searchable values of a session: every Inform parameter plus learnt `DeviceInfo.*`
/// values, by relative name, sorted. Written when [`inform_signature`] differs from the
/// stored one or when `DeviceInfo.*` was learnt.
pub fn searchable_values(
    root: &str,
    inform: &[(String, String)],
    learnt: &ParamTree,
) -> Vec<(String, String)> {
    let mut map = std::collections::BTreeMap::new();
    let device_info = format!("{root}.DeviceInfo.");
    for (name, e) in learnt.with_prefix(&device_info) {
        if let Some(v) = &e.value {
            map.insert(relative_name(name), v.as_str());
        }
    }
    for (name, v) in inform {
        map.insert(relative_name(name), v.as_str());
    }
    map.into_iter()
        .filter(|(n, v)| n.len() <= 256 && v.len() <= MAX_SEARCH_VALUE)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The signature of an Inform's values (by relative name, sorted; a name sent twice counts
/// with its last value), which every session compares with the stored one: nothing is
/// copied for it.
pub fn inform_signature(inform: &[(String, String)]) -> i64 {
    let mut informed: Vec<(&str, &str)> = inform
        .iter()
        .map(|(n, v)| (relative_name(n), v.as_str()))
        .collect();
    // Stable: of equal names, the one sent last ends its run and is the one kept.
    informed.sort_by(|a, b| a.0.cmp(b.0));
    let kept = informed
        .iter()
        .enumerate()
        .filter(|(i, (n, _))| informed.get(i + 1).is_none_or(|next| next.0 != *n))
        .map(|(_, pair)| *pair);
    signature(kept)
}

/// The signature of (name, value) pairs, in the order given.
fn signature<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> i64 {
    let mut h = Sha256::new();
    for (n, v) in pairs {
        h.update(n.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([1]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    let sig = i64::from_be_bytes(b);
    // 0 is the column default ("nothing written yet").
    if sig == 0 {
        1
    } else {
        sig
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let f = parse_query(r#"DeviceInfo.SoftwareVersion = "1.2" AND tag = "lab""#).unwrap();
        assert_eq!(
            f,
            Filter::And(vec![
                Filter::Cond {
                    field: Field::Param("DeviceInfo.SoftwareVersion".into()),
                    op: Op::Eq,
                    value: "1.2".into()
                },
                Filter::Cond {
                    field: Field::Tag,
                    op: Op::Eq,
                    value: "lab".into()
                },
            ])
        );
        let f = parse_query("InternetGatewayDevice.DeviceInfo.ModelName != X").unwrap();
        assert!(
            matches!(f, Filter::Cond { field: Field::Param(ref n), op: Op::Ne, .. } if n == "DeviceInfo.ModelName")
        );
        let f = parse_query("(serial LIKE '48*' OR oui = 00259E) and not tag=retired").unwrap();
        assert!(matches!(f, Filter::And(ref v) if v.len() == 2));
        assert!(matches!(parse_query("ABC123").unwrap(), Filter::Or(_)));
        assert_eq!(parse_query("  ").unwrap(), Filter::All);
    }

    #[test]
    fn deep_nesting_is_refused_not_followed_until_the_stack_runs_out() {
        // Found by fuzzing: every level recursed, so a long run of `(` or `NOT` overflowed
        // the stack and took the whole process down.
        for q in [
            "(".repeat(100_000),
            format!("{}serial = 1{}", "(".repeat(50_000), ")".repeat(50_000)),
            "NOT ".repeat(100_000) + "serial = 1",
            "(NOT ".repeat(40) + "serial = 1" + &")".repeat(40),
        ] {
            let e = parse_query(&q).unwrap_err().to_string();
            assert!(e.contains("nested"), "{e}");
        }
        let ok = format!(
            "{}serial = 1{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(parse_query(&ok).is_ok());
        let ok = "NOT ".repeat(MAX_NESTING) + "serial = 1";
        assert!(parse_query(&ok).is_ok());
    }

    #[test]
    fn gateway_conditions_parse_to_the_gateway_field() {
        let f = parse_query(r#"gateway = "202BC1-BM632w-GW1" AND NOT gateway LIKE "00*""#).unwrap();
        let gw = |op: Op, value: &str| Filter::Cond {
            field: Field::Gateway,
            op,
            value: value.into(),
        };
        assert_eq!(
            f,
            Filter::And(vec![
                gw(Op::Eq, "202BC1-BM632w-GW1"),
                Filter::Not(Box::new(gw(Op::Like, "00*"))),
            ])
        );
        assert_eq!(
            parse_query("behind_gateway != GW1").unwrap(),
            gw(Op::Ne, "GW1")
        );
        assert!(uses_gateway(&f));
    }

    #[test]
    fn rejects_bad_queries_with_a_reason() {
        for (q, needle) in [
            ("colour = red", "unknown field"),
            ("tag =", "followed by a value"),
            ("(tag = a", "missing `)`"),
            ("tag = a tag = b", "AND or OR"),
            ("tag = \"x", "unterminated"),
        ] {
            let e = parse_query(q).unwrap_err().to_string();
            assert!(e.contains(needle), "{q}: {e}");
        }
    }

    #[test]
    fn searchable_values_are_relative_and_signed() {
        let inform = vec![(
            "Device.DeviceInfo.SoftwareVersion".to_string(),
            "1.2".to_string(),
        )];
        let mut learnt = ParamTree::new();
        learnt.set_value("Device.DeviceInfo.ModelName", "M", "xsd:string", 1);
        learnt.set_value("Device.WiFi.SSID.1.SSID", "x", "xsd:string", 1);
        let v = searchable_values("Device", &inform, &learnt);
        assert_eq!(
            v,
            vec![
                ("DeviceInfo.ModelName".to_string(), "M".to_string()),
                ("DeviceInfo.SoftwareVersion".to_string(), "1.2".to_string())
            ]
        );
        assert_eq!(
            searchable_values("Device", &inform, &ParamTree::new()).len(),
            1
        );
        // The signature covers the Inform's values only.
        let other = vec![(
            "Device.DeviceInfo.SoftwareVersion".to_string(),
            "1.3".to_string(),
        )];
        assert_ne!(inform_signature(&inform), inform_signature(&other));
        assert_ne!(inform_signature(&inform), 0);
    }

    #[test]
    fn the_inform_signature_is_the_one_stored_before() {
        // The signature as it was computed through a sorted map: stored signatures stay
        // valid, so no device rewrites its searchable values after an upgrade.
        fn through_a_map(inform: &[(String, String)]) -> i64 {
            let mut informed = std::collections::BTreeMap::new();
            for (name, v) in inform {
                informed.insert(relative_name(name), v.as_str());
            }
            signature(informed)
        }
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        let cases = [
            vec![],
            vec![pair("Device.DeviceInfo.SoftwareVersion", "1.2")],
            vec![
                pair("InternetGatewayDevice.ManagementServer.ParameterKey", "k"),
                pair("InternetGatewayDevice.DeviceInfo.HardwareVersion", "h"),
                pair("InternetGatewayDevice.DeviceSummary", "IGD:1.1"),
            ],
            // A name sent twice (and under both roots): the last value counts.
            vec![
                pair("Device.DeviceInfo.SoftwareVersion", "1"),
                pair("Device.DeviceInfo.HardwareVersion", "h"),
                pair("Device.DeviceInfo.SoftwareVersion", "2"),
                pair("InternetGatewayDevice.DeviceInfo.SoftwareVersion", "3"),
                pair("Device.DeviceInfo.HardwareVersion", "h2"),
            ],
        ];
        for inform in &cases {
            assert_eq!(
                inform_signature(inform),
                through_a_map(inform),
                "{inform:?}"
            );
        }
        assert_ne!(
            inform_signature(&cases[3]),
            inform_signature(&cases[3][..3])
        );
        // A signature as databases hold it (SHA-256 of `name\0value\x01`…, first 8 bytes).
        assert_eq!(inform_signature(&cases[2]), -6246212820059846256);
    }

    #[test]
    fn like_wildcards() {
        assert!(like("V5R020C00", "V5*"));
        assert!(like("V5R020C00", "*C00"));
        assert!(like("V5R020C00", "V5*20*0"));
        assert!(!like("V5R020C00", "V6*"));
        assert!(!like("ab", "ab*b"));
    }

    #[test]
    fn sql_superset_keeps_exact_conditions_only() {
        let sup = |q: &str| sql_superset(&parse_query(q).unwrap());
        // Exact in SQL: kept as is.
        for q in [
            "product_class = ATA2 AND tag = voip",
            "NOT tag = retired",
            "serial LIKE \"48*\"",
            "ABC123",
        ] {
            assert_eq!(sup(q), parse_query(q).unwrap(), "{q}");
        }
        // Parameters and ordering cannot narrow: they count as every device...
        assert_eq!(sup("DeviceInfo.UpTime > 5"), Filter::All);
        assert_eq!(sup("oui = x OR DeviceInfo.X = 1"), Filter::All);
        assert_eq!(sup(""), Filter::All);
        // ...and are dropped from a conjunction, which still narrows.
        assert_eq!(
            sup("oui = x AND DeviceInfo.X = 1"),
            Filter::And(vec![parse_query("oui = x").unwrap()])
        );
        // Under NOT they count as no device, so the NOT selects every device.
        assert_eq!(sup("NOT DeviceInfo.X = 1"), Filter::All);
        assert_eq!(
            sup("NOT (tag = a AND oui LIKE \"x*\")"),
            Filter::Not(Box::new(Filter::And(vec![
                parse_query("tag = a").unwrap(),
                Filter::Not(Box::new(Filter::All))
            ])))
        );
    }
}
