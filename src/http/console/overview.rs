//! The overview: device counts, software versions per product class, sessions per minute
//! over 24 hours, faults by code over 24 hours, open tasks, campaigns in progress.
//!
//! Nothing here grows with the number of devices, sessions or faults: the total and the
//! version chart read `device_version_counts`, the session and fault charts the per-minute
//! counters `session_minutes` and `fault_minutes` (all kept exact by database triggers);
//! the other counts walk an index and stop after `COUNT_CAP` rows, shown as "more than".

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use std::collections::BTreeMap;

use super::campaigns::{state_view, Bar};
use super::session::{Ctx, Viewer};
use super::{charts, render, ConsoleError, Layout};
use crate::state::AppState;
use crate::store::console::{DeviceCounts, COUNT_CAP};

const DAY_MS: i64 = 86_400_000;
/// Late by this much past the periodic interval, a device counts as overdue.
const GRACE_MS: i64 = 60_000;

#[derive(askama::Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    ctx: Layout,
    counts: DeviceCounts,
    /// The counts as shown: "more than 10000" where a count stopped at its cap.
    seen: String,
    overdue: String,
    never_informed: String,
    never_discovered: String,
    interval_label: String,
    versions_svg: String,
    versions: Vec<(String, i64)>,
    sessions_svg: String,
    sessions_total: i64,
    faults_svg: String,
    faults: Vec<(String, i64)>,
    pending: String,
    running: String,
    campaigns: Vec<ActiveCampaign>,
}

/// A capped count as shown.
fn capped(n: i64) -> String {
    if n > COUNT_CAP {
        format!("more than {COUNT_CAP}")
    } else {
        n.to_string()
    }
}

/// A running or paused campaign on the overview.
struct ActiveCampaign {
    id: i64,
    name: String,
    class: &'static str,
    state: String,
    bar: Bar,
}

/// Running and paused campaigns with their counts per member state, in id order.
async fn active_campaigns(state: &AppState) -> Result<Vec<ActiveCampaign>, ConsoleError> {
    let rows = crate::domain::campaigns::active_counts(&state.store).await?;
    let mut by_id: BTreeMap<i64, (String, String, BTreeMap<String, i64>)> = BTreeMap::new();
    for (id, name, cstate, mstate, n) in rows {
        by_id
            .entry(id)
            .or_insert_with(|| (name, cstate, BTreeMap::new()))
            .2
            .insert(mstate, n);
    }
    Ok(by_id
        .into_iter()
        .map(|(id, (name, cstate, counts))| {
            let (class, label) = state_view(&cstate, false);
            ActiveCampaign {
                id,
                name,
                class,
                state: label,
                bar: Bar::new(&counts),
            }
        })
        .collect())
}

/// Sessions per minute as a full series (minutes without sessions count 0).
fn minute_series(buckets: &[(i64, i64)], from_minute: i64, to_minute: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::with_capacity((to_minute - from_minute + 1).max(0) as usize);
    let mut it = buckets.iter().peekable();
    for m in from_minute..=to_minute {
        while it.peek().is_some_and(|(bm, _)| *bm < m) {
            it.next();
        }
        let n = match it.peek() {
            Some((bm, n)) if *bm == m => *n,
            _ => 0,
        };
        out.push((m, n));
    }
    out
}

fn hh_mm(ms: i64) -> String {
    let mins = ms.div_euclid(60_000).rem_euclid(1440);
    format!("{:02}:{:02} UTC", mins / 60, mins % 60)
}

pub async fn page(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let now = state.now();
    let interval_s = match state.config.cwmp.periodic_inform_interval_secs {
        0 => 3600,
        s => s,
    };
    let interval_ms = i64::from(interval_s) * 1000;
    let since = now - DAY_MS;
    let (counts, versions, sessions, faults, (pending, running)) = state
        .store
        .run(move |s| {
            Ok((
                s.device_counts(now - interval_ms - GRACE_MS)?,
                s.versions_by_product_class()?,
                s.sessions_per_minute(since)?,
                s.faults_by_code(since)?,
                s.open_task_counts()?,
            ))
        })
        .await?;
    let campaigns = active_campaigns(&state).await?;
    let versions: Vec<(String, i64)> = versions
        .into_iter()
        .map(|(pc, v, n)| {
            let pc = if pc.is_empty() {
                "(no product class)".into()
            } else {
                pc
            };
            let v = if v.is_empty() { "(unknown)".into() } else { v };
            (format!("{pc} · {v}"), n)
        })
        .collect();
    let faults: Vec<(String, i64)> = faults
        .into_iter()
        .map(|(code, n)| (code.to_string(), n))
        .collect();
    let (from_m, to_m) = (since.div_euclid(60_000), now.div_euclid(60_000));
    let series = minute_series(&sessions, from_m, to_m);
    let sessions_total = sessions.iter().map(|(_, n)| n).sum();
    let labels: Vec<(i64, String)> = (0..=4)
        .map(|i| {
            let m = from_m + (to_m - from_m) * i / 4;
            (m, hh_mm(m * 60_000))
        })
        .collect();
    let page = OverviewPage {
        ctx: ctx.layout("overview"),
        seen: if counts.seen_exact() {
            counts.seen.to_string()
        } else {
            format!("about {} (at most)", counts.seen)
        },
        overdue: capped(counts.overdue),
        never_informed: capped(counts.never_informed),
        never_discovered: capped(counts.never_discovered),
        counts,
        interval_label: format!("{} min", interval_s / 60),
        versions_svg: charts::bars("Devices per product class and software version", &versions),
        versions,
        sessions_svg: charts::line(
            "Sessions per minute, last 24 hours",
            &series,
            (from_m, to_m),
            &labels,
        ),
        sessions_total,
        faults_svg: charts::bars("Faults in the last 24 hours by code", &faults),
        faults,
        pending: capped(pending),
        running: capped(running),
        campaigns,
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_without_sessions_count_zero() {
        let s = minute_series(&[(11, 3), (13, 1)], 10, 14);
        assert_eq!(s, vec![(10, 0), (11, 3), (12, 0), (13, 1), (14, 0)]);
        assert_eq!(hh_mm(90 * 60_000), "01:30 UTC");
    }
}
