//! Campaign webhooks: each state change of a campaign that has `webhook.url` (created,
//! started, a wave opened, paused and why, resumed, approved, aborted, completed, ...) is
//! POSTed there as JSON by the scheduler leader, in timeline order, at least once.
//!
//! - What is sent: the campaign's id, name, current state and reason, the timeline entry
//!   (id, kind, time, text) and the member counts per state. Never the spec (a task may
//!   carry passwords), never the webhook URL itself. The entry id lets a receiver drop a
//!   duplicate (a leader that died between the POST and recording it sends it again).
//! - Where: the URL passes the connection requests' target policy
//!   ([`crate::connreq::webhook`]: denied networks, no redirects, a deadline).
//! - Order and retries: entries go one at a time; a failed one is retried after
//!   [`backoff_ms`] (30 s, 1, 2, 4 ... minutes, at most an hour) and holds back the ones
//!   after it; after [`MAX_ATTEMPTS`] tries it is given up and the next goes. Every failure
//!   is a `webhook_failed` entry of the campaign's timeline (and counted on its delivery
//!   state), so an operator sees it on the campaign page.
//! - Cost: the delivery state (`campaign_webhooks`) keeps a cursor into the timeline, so a
//!   tick reads only the state changes written since the last one. One query per tick finds the
//!   webhooks with a state change after their cursor ([`Store::webhooks_due`]): a campaign
//!   whose state changes are all delivered (a completed one, or a running one with only
//!   device entries since) costs no further query until it has a new one. A tick spends at most
//!   [`TICK_BUDGET_MS`] of real time starting deliveries, so a receiver that hangs cannot
//!   hold the scheduler past its lease.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{counts_of, spec_of, EventRow};
use crate::connreq::webhook::WebhookSender;
use crate::error::Result;
use crate::store::campaigns::NewEvent;
use crate::store::Store;

pub use crate::connreq::webhook::TIMEOUT_MS;
/// Real time a tick may spend starting deliveries.
pub const TICK_BUDGET_MS: u64 = 5_000;
/// Tries of one entry before it is given up.
pub const MAX_ATTEMPTS: i32 = 8;
/// Timeline entries read per campaign and tick.
const BATCH: i64 = 1000;
/// The timeline kind recording a failed delivery (never sent itself).
pub const FAILED: &str = "webhook_failed";

/// Wait after the `attempts`-th failed try of an entry: 30 s doubled per try, at most 1 h.
pub fn backoff_ms(attempts: i32) -> i64 {
    let n = attempts.clamp(1, 20) - 1;
    30_000i64.saturating_mul(1i64 << n).min(3_600_000)
}

/// Whether a timeline entry is a campaign state change (sent) rather than a device's entry
/// or the webhook's own record (not sent).
pub fn is_state_change(e: &EventRow) -> bool {
    e.device_id.is_none() && !e.kind.starts_with("webhook")
}

#[derive(Serialize)]
struct Payload<'a> {
    campaign: PayloadCampaign<'a>,
    event: PayloadEvent<'a>,
    counts: &'a BTreeMap<String, i64>,
}

#[derive(Serialize)]
struct PayloadCampaign<'a> {
    id: i64,
    name: &'a str,
    state: &'a str,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct PayloadEvent<'a> {
    id: i64,
    kind: &'a str,
    at: i64,
    detail: &'a str,
}

/// Deliver what is due of every campaign webhook; returns how many entries were delivered.
pub async fn deliver_due(store: &Store, sender: &WebhookSender, now: i64) -> Result<usize> {
    let began = Instant::now();
    let budget = Duration::from_millis(TICK_BUDGET_MS);
    let due = store.run(move |s| s.webhooks_due(now)).await?;
    let mut sent = 0;
    for mut w in due {
        if began.elapsed() > budget {
            break;
        }
        let id = w.campaign_id;
        let Some(row) = store.run(move |s| s.get_campaign(id)).await? else {
            continue;
        };
        let Some(hook) = spec_of(&store.keyring(), &row)?.webhook else {
            continue;
        };
        let cursor = w.event_cursor;
        let events = store
            .run(move |s| s.campaign_state_changes(id, cursor, BATCH))
            .await?;
        if events.is_empty() {
            continue;
        }
        let counts = counts_of(store, vec![id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        let mut failure: Option<NewEvent> = None;
        for e in &events {
            if !is_state_change(e) {
                w.event_cursor = e.id;
                continue;
            }
            if began.elapsed() > budget {
                break;
            }
            let body = serde_json::to_vec(&Payload {
                campaign: PayloadCampaign {
                    id,
                    name: &row.name,
                    state: &row.state,
                    reason: row.reason.as_deref(),
                },
                event: PayloadEvent {
                    id: e.id,
                    kind: &e.kind,
                    at: e.at,
                    detail: &e.detail,
                },
                counts: &counts,
            })?;
            match sender.post(&hook.url, body).await {
                Ok(_) => {
                    w.event_cursor = e.id;
                    w.attempts = 0;
                    w.retry_at = None;
                    w.delivered += 1;
                    sent += 1;
                }
                Err(why) => {
                    w.attempts += 1;
                    w.failures += 1;
                    w.last_error = Some(why.clone());
                    let detail = if w.attempts >= MAX_ATTEMPTS {
                        let d = format!(
                            "\"{}\" (entry {}) not delivered after {} tries, given up: {why}",
                            e.kind, e.id, w.attempts
                        );
                        w.event_cursor = e.id;
                        w.attempts = 0;
                        w.retry_at = None;
                        d
                    } else {
                        let wait = backoff_ms(w.attempts);
                        w.retry_at = Some(now.saturating_add(wait));
                        format!(
                            "\"{}\" (entry {}) try {} failed: {why}; next try in {} s",
                            e.kind,
                            e.id,
                            w.attempts,
                            wait / 1000
                        )
                    };
                    tracing::warn!(campaign = id, entry = e.id, error = %why, "campaign webhook failed");
                    failure = Some(NewEvent {
                        campaign_id: id,
                        at: now,
                        device_id: None,
                        kind: FAILED.into(),
                        detail,
                    });
                    break;
                }
            }
        }
        store
            .run(move |s| s.update_campaign_webhook(&w, failure.as_ref()))
            .await?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_30_seconds_up_to_an_hour() {
        let b: Vec<i64> = (1..=9).map(backoff_ms).collect();
        assert_eq!(
            b,
            vec![
                30_000, 60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000
            ]
        );
        assert_eq!(backoff_ms(0), 30_000);
        assert_eq!(backoff_ms(i32::MAX), 3_600_000);
    }

    #[test]
    fn only_campaign_state_changes_are_sent() {
        let e = |device: Option<&str>, kind: &str| EventRow {
            id: 1,
            campaign_id: 1,
            at: 0,
            device_id: device.map(str::to_string),
            kind: kind.into(),
            detail: String::new(),
        };
        assert!(is_state_change(&e(None, "paused")));
        assert!(is_state_change(&e(None, "complete")));
        assert!(!is_state_change(&e(Some("dev"), "succeeded")));
        assert!(!is_state_change(&e(None, FAILED)));
    }
}
