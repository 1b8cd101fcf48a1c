//! Cron expressions over an injected clock, for maintenance windows and scheduled jobs,
//! parsed by `croner` (the parser tokio-cron-scheduler is built on) and evaluated in an
//! IANA time zone.
//! Pure: times go in and come out as milliseconds since the epoch.

use chrono::{TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// A parsed cron expression in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

/// Parse `expr` (6 fields: sec min hour day-of-month month day-of-week) in `tz`. Errors
/// say which part (`cron` or `time_zone`) is wrong.
pub fn parse(expr: &str, tz: &str) -> Result<CronSchedule, (&'static str, String)> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err((
            "cron",
            format!(
                "{expr:?} has {fields} fields; give 6, seconds first: \"sec min hour day month weekday\", e.g. \"0 0 3 * * Sun\""
            ),
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| ("cron", format!("{expr:?} does not parse: {e}")))?;
    let tz: Tz = tz.parse().map_err(|_| {
        (
            "time_zone",
            format!("{tz:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"),
        )
    })?;
    Ok(CronSchedule { cron, tz })
}

impl CronSchedule {
    /// The first fire time strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let t = Utc
            .timestamp_millis_opt(after_ms)
            .single()?
            .with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&t, false)
            .ok()
            .map(|d| d.timestamp_millis())
    }

    /// The last fire time at or before `at_ms`.
    pub fn last_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let t = Utc
            .timestamp_millis_opt(at_ms)
            .single()?
            .with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&t, true)
            .ok()
            .map(|d| d.timestamp_millis())
    }
}

/// A maintenance window: opens at each fire time, open for a duration.
#[derive(Debug, Clone)]
pub struct CronWindow {
    schedule: CronSchedule,
    duration_ms: i64,
}

impl CronWindow {
    pub fn new(
        expr: &str,
        tz: &str,
        duration_secs: u64,
    ) -> Result<CronWindow, (&'static str, String)> {
        if duration_secs == 0 || duration_secs > 7 * 86_400 {
            return Err((
                "duration_secs",
                "must be between 1 and 604800 (one week)".to_string(),
            ));
        }
        Ok(CronWindow {
            schedule: parse(expr, tz)?,
            duration_ms: duration_secs as i64 * 1000,
        })
    }

    /// When the window containing `now` opened, if one does.
    pub fn opened_at(&self, now: i64) -> Option<i64> {
        self.schedule
            .last_at_or_before(now)
            .filter(|start| now < start + self.duration_ms)
    }
}

/// When the windows open at `now` close (the latest of them); `None` when none is open or
/// there are no windows.
pub fn open_until(windows: &[CronWindow], now: i64) -> Option<i64> {
    windows
        .iter()
        .filter_map(|w| w.opened_at(now).map(|start| start + w.duration_ms))
        .max()
}

/// When the windows open at `now` opened (the earliest of them); `None` when none is open or
/// there are no windows.
pub fn opened_since(windows: &[CronWindow], now: i64) -> Option<i64> {
    windows.iter().filter_map(|w| w.opened_at(now)).min()
}

/// Whether `now` is inside one of `windows`; no windows = always open.
pub fn window_open(windows: &[CronWindow], now: i64) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.opened_at(now).is_some())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn next_fire_in_a_time_zone() {
        // Every Sunday 03:00 in Berlin: 02:00 UTC in winter, 01:00 UTC in summer.
        let c = parse("0 0 3 * * Sun", "Europe/Berlin").unwrap();
        assert_eq!(
            c.next_after(ms("2026-01-01T00:00:00Z")),
            Some(ms("2026-01-04T02:00:00Z"))
        );
        assert_eq!(
            c.next_after(ms("2026-07-01T00:00:00Z")),
            Some(ms("2026-07-05T01:00:00Z"))
        );
        // Strictly after: a fire time itself gives the next one.
        assert_eq!(
            c.next_after(ms("2026-01-04T02:00:00Z")),
            Some(ms("2026-01-11T02:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_name_the_part() {
        assert_eq!(parse("0 3 * * *", "UTC").unwrap_err().0, "cron");
        assert_eq!(parse("0 0 25 * * *", "UTC").unwrap_err().0, "cron");
        assert_eq!(parse("x y z a b c", "UTC").unwrap_err().0, "cron");
        assert_eq!(
            parse("0 0 3 * * *", "Mars/Olympus").unwrap_err().0,
            "time_zone"
        );
        assert_eq!(
            CronWindow::new("0 0 3 * * *", "UTC", 0).unwrap_err().0,
            "duration_secs"
        );
    }

    #[test]
    fn windows_open_and_close() {
        // 01:00-05:00 UTC every night.
        let w = CronWindow::new("0 0 1 * * *", "UTC", 4 * 3600).unwrap();
        let ws = [w];
        assert!(!window_open(&ws, ms("2026-03-10T00:59:59Z")));
        assert!(window_open(&ws, ms("2026-03-10T01:00:00Z")));
        assert!(window_open(&ws, ms("2026-03-10T04:59:59Z")));
        assert!(!window_open(&ws, ms("2026-03-10T05:00:00Z")));
        assert_eq!(
            ws[0].opened_at(ms("2026-03-10T03:00:00Z")),
            Some(ms("2026-03-10T01:00:00Z"))
        );
        // A window crossing midnight, in local time.
        let late = CronWindow::new("0 0 23 * * *", "Europe/Berlin", 3 * 3600).unwrap();
        // 23:30 Berlin (winter) = 22:30 UTC; 01:30 Berlin = 00:30 UTC next day.
        assert!(window_open(
            std::slice::from_ref(&late),
            ms("2026-01-10T22:30:00Z")
        ));
        assert!(window_open(
            std::slice::from_ref(&late),
            ms("2026-01-11T00:30:00Z")
        ));
        assert!(!window_open(&[late], ms("2026-01-11T02:30:00Z")));
        assert!(window_open(&[], 0));
        // Two overlapping windows: open since the earlier opening, until the later close.
        let early = CronWindow::new("0 30 0 * * *", "UTC", 3600).unwrap();
        let both = [ws[0].clone(), early];
        let at = ms("2026-03-10T01:15:00Z");
        assert_eq!(opened_since(&both, at), Some(ms("2026-03-10T00:30:00Z")));
        assert_eq!(open_until(&both, at), Some(ms("2026-03-10T05:00:00Z")));
        assert_eq!(opened_since(&both, ms("2026-03-10T06:00:00Z")), None);
        assert_eq!(opened_since(&[], at), None);
    }
}
