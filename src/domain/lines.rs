//! VoIP line operations for the API and the CLI: assign an account to line N of a device,
//! show lines (never their passwords), delete them, and import many from CSV with a report
//! per bad row.
//!
//! A line is pushed in the device's next session (any session: the change marks the device
//! as having new work); to push at once, send the device a connection request.

use serde::{Deserialize, Serialize};

use crate::domain::voip::{Account, ACCOUNT_FIELDS, MAX_LINE};
use crate::error::{Error, Result};
use crate::store::lines::{LineRow, NewLine};
use crate::store::Store;

/// The API body of `PUT /devices/{id}/lines/{n}`: the account fields and `password`, in
/// one flat object; unknown fields are refused.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct LineInput {
    #[serde(flatten)]
    pub account: Account,
    /// Write-only. Absent on an update: the stored password is kept.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

impl TryFrom<serde_json::Value> for LineInput {
    type Error = String;

    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        let serde_json::Value::Object(mut map) = v else {
            return Err("expected a JSON object with the account fields".into());
        };
        let password = match map.remove("password") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(p)) => Some(p),
            Some(_) => return Err("password must be a string".into()),
        };
        let account =
            Account::deserialize(serde_json::Value::Object(map.clone())).map_err(|e| {
                // Name the field: serde says what type it wanted, not where.
                map.iter()
                    .find_map(|(k, v)| {
                        let mut one = serde_json::Map::new();
                        one.insert(k.clone(), v.clone());
                        Account::deserialize(serde_json::Value::Object(one))
                            .err()
                            .map(|e| format!("{k}: {e}"))
                    })
                    .unwrap_or_else(|| e.to_string())
            })?;
        Ok(LineInput { account, password })
    }
}

impl std::fmt::Debug for LineInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineInput")
            .field("account", &self.account)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A line as the API shows it: no password, only whether one is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineView {
    pub device_id: String,
    pub line: i32,
    pub account: Account,
    pub password_set: bool,
    /// `pending` (not on the device yet), `applied`, `registered`, `registering`, `error`,
    /// `disabled`, `unknown` or `fault` (the device refused it; see `fault`).
    pub status: String,
    /// What the device reported (`Up`, `Registering`, `Error_Registration`, ...).
    pub device_status: Option<String>,
    pub status_at: Option<i64>,
    /// Where the account lives on the device (layout, objects, unmapped fields).
    pub mapping: Option<serde_json::Value>,
    pub fault: Option<String>,
    pub revision: i64,
    pub applied_revision: i64,
    pub updated_at: i64,
}

impl LineView {
    pub fn from_row(r: &LineRow) -> LineView {
        LineView {
            device_id: r.device_id.clone(),
            line: r.line,
            account: serde_json::from_str(&r.account).unwrap_or_default(),
            password_set: r.password.as_deref().is_some_and(|p| !p.is_empty()),
            status: r.status.clone(),
            device_status: r.device_status.clone(),
            status_at: r.status_at,
            mapping: r
                .mapping
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok()),
            fault: r.fault.clone(),
            revision: r.revision,
            applied_revision: r.applied_revision,
            updated_at: r.updated_at,
        }
    }
}

fn check_line(line: i32) -> Result<()> {
    if !(1..=MAX_LINE).contains(&line) {
        return Err(Error::invalid(
            "line",
            format!("{line} is out of range; lines are numbered 1 to {MAX_LINE}"),
        ));
    }
    Ok(())
}

/// Assign (or replace) the account of line `line` of a device.
pub async fn assign(
    store: &Store,
    device_id: &str,
    line: i32,
    input: LineInput,
    now: i64,
) -> Result<LineView> {
    check_line(line)?;
    input.account.validate(input.password.as_deref())?;
    let new = NewLine {
        device_id: device_id.to_string(),
        line,
        account: serde_json::to_string(&input.account)?,
        password: input.password,
    };
    let id = device_id.to_string();
    let rows = store
        .run(move |st| {
            if st.get_device(&id)?.is_none() {
                return Err(Error::not_found(format!("device {id}")));
            }
            st.upsert_lines(&[new], now)
        })
        .await?;
    rows.first()
        .map(LineView::from_row)
        .ok_or_else(|| Error::internal("line was not stored"))
}

pub async fn list(store: &Store, device_id: &str) -> Result<Vec<LineView>> {
    let id = device_id.to_string();
    let rows = store
        .run(move |st| {
            if st.get_device(&id)?.is_none() {
                return Err(Error::not_found(format!("device {id}")));
            }
            st.device_lines(&id)
        })
        .await?;
    Ok(rows.iter().map(LineView::from_row).collect())
}

pub async fn get(store: &Store, device_id: &str, line: i32) -> Result<LineView> {
    check_line(line)?;
    let id = device_id.to_string();
    store
        .run(move |st| st.get_line(&id, line))
        .await?
        .map(|r| LineView::from_row(&r))
        .ok_or_else(|| Error::not_found(format!("line {line} of device {device_id}")))
}

pub async fn delete(store: &Store, device_id: &str, line: i32) -> Result<()> {
    check_line(line)?;
    let id = device_id.to_string();
    if store.run(move |st| st.delete_line(&id, line)).await? {
        Ok(())
    } else {
        Err(Error::not_found(format!(
            "line {line} of device {device_id}"
        )))
    }
}

/// One rejected CSV row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    /// 1-based line of the CSV file (the header is line 1).
    pub row: usize,
    pub device_id: Option<String>,
    pub line: Option<i32>,
    pub field: String,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    /// Rows stored (each whole; rows with any error are not stored at all).
    pub imported: usize,
    pub rejected: usize,
    pub errors: Vec<RowError>,
}

/// Columns of the import file: `device_id`, `line`, `password`, then any account field.
pub fn csv_columns() -> Vec<&'static str> {
    let mut c = vec!["device_id", "line", "password"];
    c.extend(ACCOUNT_FIELDS);
    c
}

/// Import accounts from CSV text. The header names the columns (`device_id` and `line`
/// required; `password` and the account fields optional, in any order). Each row is checked
/// completely; rows with an error are reported and skipped, the others are stored together
/// in one transaction. With `dry_run` nothing is stored.
pub async fn import_csv(
    store: &Store,
    text: &str,
    dry_run: bool,
    now: i64,
) -> Result<ImportReport> {
    let rows = parse_csv(text).map_err(|e| Error::invalid("csv", e))?;
    let mut it = rows.into_iter();
    let Some((_, header)) = it.next() else {
        return Err(Error::invalid(
            "csv",
            "the file is empty; the first line must be a header",
        ));
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let known = csv_columns();
    for h in &header {
        if !known.contains(&h.as_str()) {
            return Err(Error::invalid(
                "csv",
                format!(
                    "unknown column {h:?} in the header; columns: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    for req in ["device_id", "line"] {
        if !header.iter().any(|h| h == req) {
            return Err(Error::invalid(
                "csv",
                format!("the header has no {req} column"),
            ));
        }
    }
    let mut errors = Vec::new();
    let mut good: Vec<(usize, NewLine)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (row_no, cells) in it {
        if cells.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let mut err = |field: &str, message: String, dev: Option<String>, line: Option<i32>| {
            errors.push(RowError {
                row: row_no,
                device_id: dev,
                line,
                field: field.to_string(),
                message,
            })
        };
        if cells.len() != header.len() {
            err(
                "row",
                format!("has {} cells, the header has {}", cells.len(), header.len()),
                None,
                None,
            );
            continue;
        }
        let mut account = Account {
            enabled: true,
            ..Account::default()
        };
        let (mut device, mut line, mut password) = (None, None, None);
        let mut bad: Option<(String, String)> = None;
        for (h, v) in header.iter().zip(cells.iter()) {
            match h.as_str() {
                "device_id" => device = Some(v.trim().to_string()).filter(|d| !d.is_empty()),
                "line" => match v.trim().parse::<i32>() {
                    Ok(n) if (1..=MAX_LINE).contains(&n) => line = Some(n),
                    _ => {
                        bad.get_or_insert((
                            "line".into(),
                            format!("{:?} is not a line number from 1 to {MAX_LINE}", v.trim()),
                        ));
                    }
                },
                "password" => password = Some(v.clone()).filter(|p| !p.is_empty()),
                field => {
                    if let Err(e) = account.set_field(field, v) {
                        bad.get_or_insert(split_error(e));
                    }
                }
            }
        }
        let Some(dev) = device else {
            err("device_id", "is empty".into(), None, line);
            continue;
        };
        if let Some((f, m)) = bad {
            err(&f, m, Some(dev), line);
            continue;
        }
        let Some(line) = line else {
            err("line", "is empty".into(), Some(dev), None);
            continue;
        };
        if let Err(e) = account.validate(password.as_deref()) {
            let (f, m) = split_error(e);
            err(&f, m, Some(dev), Some(line));
            continue;
        }
        if !seen.insert((dev.clone(), line)) {
            err(
                "line",
                "the same device and line appear on an earlier row".into(),
                Some(dev),
                Some(line),
            );
            continue;
        }
        good.push((
            row_no,
            NewLine {
                device_id: dev,
                line,
                account: serde_json::to_string(&account)?,
                password,
            },
        ));
    }
    // Devices must exist.
    let ids: Vec<String> = {
        let mut v: Vec<String> = good.iter().map(|(_, l)| l.device_id.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let existing: std::collections::HashSet<String> = store
        .run(move |st| st.existing_devices(&ids))
        .await?
        .into_iter()
        .collect();
    let mut lines = Vec::with_capacity(good.len());
    for (row_no, l) in good {
        if existing.contains(&l.device_id) {
            lines.push(l);
        } else {
            errors.push(RowError {
                row: row_no,
                device_id: Some(l.device_id.clone()),
                line: Some(l.line),
                field: "device_id".into(),
                message: "no such device; provision it first (ferroacs device provision)".into(),
            });
        }
    }
    errors.sort_by_key(|e| e.row);
    let imported = lines.len();
    if !dry_run && !lines.is_empty() {
        store.run(move |st| st.upsert_lines(&lines, now)).await?;
    }
    Ok(ImportReport {
        imported,
        rejected: errors.len(),
        errors,
    })
}

fn split_error(e: Error) -> (String, String) {
    match e {
        Error::Invalid { field, message } => (field, message),
        other => ("row".into(), other.to_string()),
    }
}

/// RFC 4180 CSV: fields separated by commas, optionally in double quotes (`""` inside is a
/// quote), records separated by LF or CRLF. Returns `(line number, cells)` per record.
pub fn parse_csv(text: &str) -> std::result::Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_quotes = false;
    let mut line = 1usize;
    let mut start_line = 1usize;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    cell.push(c)
                }
                _ => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.is_empty() => in_quotes = true,
            ',' => cells.push(std::mem::take(&mut cell)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                cells.push(std::mem::take(&mut cell));
                out.push((start_line, std::mem::take(&mut cells)));
                line += 1;
                start_line = line;
                any = false;
            }
            _ => cell.push(c),
        }
    }
    if in_quotes {
        return Err(format!(
            "a quoted field opened on line {start_line} is not closed"
        ));
    }
    if any {
        cells.push(cell);
        out.push((start_line, cells));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_parses_quotes_and_crlf() {
        let rows = parse_csv("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\"multi\nline\",z").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].1, vec!["x,1", "say \"hi\""]);
        assert_eq!(
            rows[2],
            (3, vec!["multi\nline".to_string(), "z".to_string()])
        );
        assert!(parse_csv("\"open").is_err());
    }

    #[test]
    fn line_input_takes_flat_json_and_refuses_unknown_fields() {
        let i: LineInput =
            serde_json::from_str(r#"{"sip_user":"a","password":"p","registrar":"r"}"#).unwrap();
        assert_eq!(i.password.as_deref(), Some("p"));
        assert_eq!(i.account.sip_user.as_deref(), Some("a"));
        assert!(serde_json::from_str::<LineInput>(r#"{"sip_user":"a","colour":"red"}"#).is_err());
        let e = serde_json::from_str::<LineInput>(r#"{"sip_user":"a","registrar_port":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("registrar_port") && e.contains("u32"), "{e}");
        assert!(!format!("{i:?}").contains("\"p\""));
        // Never serialised with the password.
        assert!(!serde_json::to_string(&i).unwrap().contains("password"));
    }
}
