//! Small view models shared by the console's pages: relative times, task rows.

use crate::store::tasks::TaskRow;

/// "12 min ago", "3 h ago", "never".
pub fn ago(now: i64, at: Option<i64>) -> String {
    let Some(at) = at else {
        return "never".into();
    };
    let s = (now - at).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=172_799 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// A UTC timestamp, `2026-12-05 13:04:05 UTC`.
pub fn utc(at: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// One task as the console lists it.
pub struct TaskView {
    pub id: i64,
    pub device_id: String,
    pub rpc: String,
    pub status: String,
    /// Arguments in short, passwords hidden.
    pub args: String,
    /// The result or the fault, in short.
    pub outcome: String,
    pub created: String,
    pub created_by: String,
    pub open: bool,
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n).collect();
        out.push('…');
        out
    }
}

impl TaskView {
    pub fn new(t: &TaskRow, now: i64) -> TaskView {
        let mut args: serde_json::Value =
            serde_json::from_str(&t.args).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(m) = &mut args {
            m.remove("rpc");
        }
        // The one definition of a secret in task arguments, as in the API.
        crate::domain::tasks::redact_secrets(&mut args);
        let args = match &args {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            v => short(&v.to_string(), 160),
        };
        let outcome = match (t.fault_code, &t.result) {
            (Some(code), _) => format!(
                "fault {code}: {}",
                short(t.fault_string.as_deref().unwrap_or(""), 160)
            ),
            (None, Some(r)) => {
                let mut v = serde_json::from_str::<serde_json::Value>(r)
                    .unwrap_or_else(|_| serde_json::Value::String(r.clone()));
                crate::domain::tasks::redact_secrets(&mut v);
                match v {
                    serde_json::Value::String(text) => short(&text, 160),
                    v => short(&v.to_string(), 160),
                }
            }
            (None, None) => String::new(),
        };
        TaskView {
            id: t.id,
            device_id: t.device_id.clone(),
            rpc: t.rpc.clone(),
            status: t.status.to_string(),
            args,
            outcome,
            created: ago(now, Some(t.created_at)),
            created_by: t.created_by.clone(),
            open: !t.status.is_final(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(ago(10_000, None), "never");
        assert_eq!(ago(61_000, Some(1_000)), "1 min ago");
        assert_eq!(ago(12 * 60_000, Some(0)), "12 min ago");
        assert_eq!(ago(3 * 3_600_000, Some(0)), "3 h ago");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
