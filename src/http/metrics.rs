//! `GET /metrics` on the admin listener, in the Prometheus text exposition format (0.0.4).
//!
//! Counters only grow; rates (sessions per second, database time per session) are derived
//! by the scraper, e.g. `rate(ferroacs_cwmp_sessions_total[1m])` and
//! `rate(ferroacs_cwmp_session_db_seconds_total[1m]) / rate(ferroacs_cwmp_sessions_total[1m])`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use crate::state::AppState;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Resident set size and CPU seconds of this process, from /proc (Linux).
fn process_figures() -> (Option<u64>, Option<f64>) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            // USER_HZ is 100 on Linux.
            Some((utime + stime) / 100.0)
        });
    (rss, cpu)
}

/// The metrics page. Task counts come from the database; when it does not answer, they
/// are left out and `ferroacs_database_up` is 0.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let tasks = state.store.run(|s| s.count_tasks_by_status()).await;
    let m = &state.driver.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "ferroacs_cwmp_informs_total",
        "counter",
        "Informs accepted (sessions started).",
    );
    sample(&mut out, "ferroacs_cwmp_informs_total", "", get(&m.informs));

    family(
        &mut out,
        "ferroacs_cwmp_sessions_total",
        "counter",
        "CWMP sessions ended, by outcome; sessions per second is its rate.",
    );
    for (outcome, v) in [
        ("completed", get(&m.sessions_completed)),
        ("timeout", get(&m.sessions_timed_out)),
        ("error", get(&m.sessions_failed)),
    ] {
        sample(
            &mut out,
            "ferroacs_cwmp_sessions_total",
            &format!("outcome=\"{outcome}\""),
            v,
        );
    }

    family(
        &mut out,
        "ferroacs_cwmp_sessions_active",
        "gauge",
        "CWMP sessions in progress on this node.",
    );
    sample(
        &mut out,
        "ferroacs_cwmp_sessions_active",
        "",
        state.driver.live_count(),
    );

    family(
        &mut out,
        "ferroacs_cwmp_sessions_resumed_total",
        "counter",
        "Sessions continued on a new connection after theirs closed.",
    );
    sample(
        &mut out,
        "ferroacs_cwmp_sessions_resumed_total",
        "",
        get(&m.sessions_resumed),
    );

    family(
        &mut out,
        "ferroacs_cwmp_session_db_seconds_total",
        "counter",
        "Wall time spent in the database opening and closing sessions; divide its rate by the \
         sessions rate for the database time per session.",
    );
    sample(
        &mut out,
        "ferroacs_cwmp_session_db_seconds_total",
        "",
        get(&m.db_time_us) as f64 / 1e6,
    );

    family(
        &mut out,
        "ferroacs_db_statements_total",
        "counter",
        "SQL statements executed by this node (all work, not only sessions).",
    );
    sample(
        &mut out,
        "ferroacs_db_statements_total",
        "",
        state.store.statements_executed() as f64,
    );

    family(
        &mut out,
        "ferroacs_cwmp_refused_total",
        "counter",
        "Informs refused, by reason.",
    );
    for (reason, v) in [
        ("device_busy", get(&m.refused_busy)),
        ("overload", get(&m.refused_overload)),
        ("bad_request", get(&m.bad_requests)),
        ("auth_failed", get(&state.cwmp.auth.failures)),
        ("auth_blocked", get(&state.cwmp.auth.blocked)),
        ("shared_credentials", get(&state.cwmp.auth.shared_refused)),
    ] {
        sample(
            &mut out,
            "ferroacs_cwmp_refused_total",
            &format!("reason=\"{reason}\""),
            v,
        );
    }

    family(
        &mut out,
        "ferroacs_connection_requests_total",
        "counter",
        "Connection requests sent to devices, by outcome.",
    );
    for (outcome, v) in state.services.connreq.counters.snapshot() {
        sample(
            &mut out,
            "ferroacs_connection_requests_total",
            &format!("outcome=\"{outcome}\""),
            v,
        );
    }

    if let Some(x) = state.services.connreq.xmpp() {
        let st = x.status();
        family(
            &mut out,
            "ferroacs_xmpp_connected",
            "gauge",
            "1 while ferroacs is logged in to its XMPP server (connection requests, TR-069 Annex K).",
        );
        sample(
            &mut out,
            "ferroacs_xmpp_connected",
            "",
            u64::from(st.state == "online"),
        );
        family(
            &mut out,
            "ferroacs_xmpp_reconnects_total",
            "counter",
            "XMPP connections lost or refused since the start.",
        );
        sample(
            &mut out,
            "ferroacs_xmpp_reconnects_total",
            "",
            st.reconnects,
        );
    }
    let fetch_log = &state.services.phones.fetch_log;
    family(
        &mut out,
        "ferroacs_phone_fetch_log_pending",
        "gauge",
        "Phone fetches waiting in memory to be written to the fetch log.",
    );
    sample(
        &mut out,
        "ferroacs_phone_fetch_log_pending",
        "",
        fetch_log.pending(),
    );
    family(
        &mut out,
        "ferroacs_phone_fetch_log_dropped_total",
        "counter",
        "Phone fetches left out of the fetch log: \"full\" when phones.fetch_log_buffer rows were already waiting, \"refused\" when the database refused the row.",
    );
    sample(
        &mut out,
        "ferroacs_phone_fetch_log_dropped_total",
        "reason=\"full\"",
        fetch_log.dropped(),
    );
    sample(
        &mut out,
        "ferroacs_phone_fetch_log_dropped_total",
        "reason=\"refused\"",
        fetch_log.lost(),
    );

    family(
        &mut out,
        "ferroacs_database_up",
        "gauge",
        "1 when the database answered this scrape.",
    );
    sample(
        &mut out,
        "ferroacs_database_up",
        "",
        u8::from(tasks.is_ok()),
    );
    if let Ok(rows) = &tasks {
        family(&mut out, "ferroacs_tasks", "gauge", "Tasks by status.");
        for status in crate::domain::tasks::TaskStatus::ALL {
            let n = rows
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n);
            sample(
                &mut out,
                "ferroacs_tasks",
                &format!("status=\"{status}\""),
                n,
            );
        }
    }

    let (rss, cpu) = process_figures();
    if let Some(rss) = rss {
        family(
            &mut out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        sample(&mut out, "process_resident_memory_bytes", "", rss);
    }
    if let Some(cpu) = cpu {
        family(
            &mut out,
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent in seconds.",
        );
        sample(&mut out, "process_cpu_seconds_total", "", cpu);
    }
    campaign_metrics(&state, &mut out).await;
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(out)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Per-campaign device counts of running and paused campaigns, and whether this node leads
/// the scheduler.
async fn campaign_metrics(state: &AppState, out: &mut String) {
    use crate::domain::campaigns;
    if let Ok(leads) = campaigns::leads(&state.store, &state.node_id, state.now()).await {
        family(
            out,
            "ferroacs_scheduler_leader",
            "gauge",
            "1 when this node holds the scheduler lease (paces campaigns).",
        );
        sample(out, "ferroacs_scheduler_leader", "", u8::from(leads));
    }
    let Ok(rows) = campaigns::active_counts(&state.store).await else {
        return;
    };
    family(
        out,
        "ferroacs_campaign_devices",
        "gauge",
        "Devices of each running or paused campaign, by state (pending, in_progress, succeeded, \
         failed_confirmed, failed_unconfirmed, skipped).",
    );
    for (id, name, cstate, mstate, n) in rows {
        sample(
            out,
            "ferroacs_campaign_devices",
            &format!(
                "campaign=\"{id}\",name=\"{}\",campaign_state=\"{}\",state=\"{}\"",
                label(&name),
                label(&cstate),
                label(&mstate)
            ),
            n,
        );
    }
}
