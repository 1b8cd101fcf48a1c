//! The scheduler's side of a campaign: judge the started devices, then ask
//! [`plan::decide`] what to do and do it. Called by the leader on every tick with the
//! injected clock's `now`; everything it decides is in the database, so another node (or
//! this one after a restart) continues where it stopped.

use std::collections::HashMap;

use super::plan::{self, DeviceView, MemberView, Snapshot, TaskView, Verdict, WaveCounts};
use super::{
    compile_windows, spec_of, Action, CampaignSpec, Image, Outcome, Wake, COMPLETED,
    FAILED_CONFIRMED, FAILED_UNCONFIRMED, IN_PROGRESS, PAUSED, PENDING, RUNNING, SKIPPED,
    SUCCEEDED,
};
use crate::domain::services::Services;
use crate::domain::tasks::{self, TaskSpec};
use crate::error::{Error, Result};
use crate::store::campaigns::{CampaignRow, CampaignUpdate, MemberFinish, MemberRow};
use crate::store::tasks::{NewTask, TaskUpdate};
use crate::store::Store;

/// Who the scheduler acts as in the audit log and the timeline.
pub const ACTOR: &str = "scheduler";

/// What one call of [`advance`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Advanced {
    pub started: usize,
    pub finished: usize,
    /// Decisions taken, in order (for logs and tests).
    pub decisions: Vec<String>,
}

/// Judge started devices, then pace the campaign if it is running.
pub async fn advance(store: &Store, services: &Services, now: i64, id: i64) -> Result<Advanced> {
    let row = store
        .run(move |s| s.get_campaign(id))
        .await?
        .ok_or_else(|| Error::not_found(format!("campaign {id}")))?;
    let spec = spec_of(&store.keyring(), &row)?;
    if matches!(spec.action, Action::PhoneFirmware { .. }) {
        // Phones are judged by what they fetched: the fetches still in memory first.
        crate::domain::phones::settle_fetch_log_quietly(store, &services.phones).await;
    }
    let mut out = Advanced {
        finished: reconcile(store, &spec, now, id).await?,
        ..Advanced::default()
    };
    if row.state != RUNNING {
        return Ok(out);
    }
    let mut row = row;
    for _ in 0..4 {
        let (snap, due) = snapshot(store, &spec, &row, now).await?;
        let decision = plan::decide(&snap, &spec.limits());
        out.decisions.push(format!("{decision:?}"));
        match decision {
            plan::Decision::Idle => break,
            plan::Decision::Pause(reason) => {
                set_state(store, now, id, PAUSED, "campaign.pause", &reason).await?;
                break;
            }
            plan::Decision::Complete(reason) => {
                set_state(store, now, id, COMPLETED, "campaign.complete", &reason).await?;
                break;
            }
            plan::Decision::AwaitApproval => {
                let update = CampaignUpdate {
                    awaiting_approval: Some(1),
                    updated_at: Some(now),
                    ..CampaignUpdate::default()
                };
                let detail = format!(
                    "wave {} finished; waiting for approval of wave {}",
                    row.current_wave,
                    row.current_wave + 1
                );
                store
                    .run(move |s| {
                        s.transition_campaign(
                            id,
                            &[RUNNING],
                            &update,
                            Some(("awaiting_approval", &detail)),
                            now,
                        )
                    })
                    .await?;
                break;
            }
            plan::Decision::AdvanceWave(next) => {
                let update = CampaignUpdate {
                    current_wave: Some(next),
                    wave_started_at: Some(Some(now)),
                    awaiting_approval: Some(0),
                    updated_at: Some(now),
                    ..CampaignUpdate::default()
                };
                let detail = format!("wave {next} opened");
                let r = store
                    .run(move |s| {
                        s.transition_campaign(id, &[RUNNING], &update, Some(("wave", &detail)), now)
                    })
                    .await?;
                match r {
                    Some(r) => row = r,
                    None => break,
                }
                if spec.target.reevaluate {
                    // A failure leaves the members as they were; the wave runs anyway.
                    if let Err(e) = super::reevaluate(store, &spec, id, next, now).await {
                        tracing::warn!(campaign = id, error = %e, "evaluating the target again failed");
                    }
                }
            }
            plan::Decision::Start(n) if matches!(spec.action, Action::PhoneFirmware { .. }) => {
                out.started += start_phones(store, services, &spec, &row, now, n, due).await?;
                break;
            }
            plan::Decision::Start(n) => {
                out.started += start(store, services, &spec, &row, now, n, due).await?;
                break;
            }
        }
    }
    Ok(out)
}

async fn set_state(
    store: &Store,
    now: i64,
    id: i64,
    state: &'static str,
    action: &'static str,
    reason: &str,
) -> Result<()> {
    let update = CampaignUpdate {
        state: Some(state.into()),
        reason: Some(Some(reason.to_string())),
        finished_at: (state == COMPLETED).then_some(Some(now)),
        updated_at: Some(now),
        ..CampaignUpdate::default()
    };
    let reason = reason.to_string();
    let kind = action.trim_start_matches("campaign.").to_string();
    store
        .run(move |s| {
            if s.transition_campaign(id, &[RUNNING], &update, Some((&kind, &reason)), now)?
                .is_some()
            {
                s.audit(now, ACTOR, action, &format!("campaign/{id}"), Some(&reason))?;
                tracing::info!(campaign = id, state, reason = %reason, "campaign state changed");
            }
            Ok(())
        })
        .await
}

/// Judge every started device; record the finished ones. Tasks of devices given up as
/// unconfirmed are cancelled so they do not run later.
async fn reconcile(store: &Store, spec: &CampaignSpec, now: i64, id: i64) -> Result<usize> {
    let members = store
        .run(move |s| s.members_in(id, IN_PROGRESS, 1_000_000))
        .await?;
    if members.is_empty() {
        return Ok(0);
    }
    if matches!(spec.action, Action::PhoneFirmware { .. }) {
        return reconcile_phones(store, spec, now, id, members).await;
    }
    let firmware = matches!(spec.action, Action::Firmware { .. });
    let task_ids: Vec<i64> = members.iter().filter_map(|m| m.task_id).collect();
    let tasks = store.run(move |s| s.tasks_by_ids(&task_ids)).await?;
    let tasks: HashMap<i64, TaskView> = tasks
        .into_iter()
        .map(|t| {
            (
                t.id,
                TaskView {
                    status: t.status,
                    fault_code: t.fault_code,
                    fault_string: t.fault_string,
                    finished_at: t.finished_at,
                },
            )
        })
        .collect();
    let devices: HashMap<String, DeviceView> = if firmware {
        let ids: Vec<String> = members
            .iter()
            .filter(|m| {
                m.task_id
                    .and_then(|t| tasks.get(&t))
                    .is_some_and(|t| t.status == tasks::TaskStatus::Done)
            })
            .map(|m| m.device_id.clone())
            .collect();
        store
            .run(move |s| s.device_versions(&ids))
            .await?
            .into_iter()
            .map(|(id, v, inform, boot)| {
                (
                    id,
                    DeviceView {
                        software_version: v,
                        last_inform: inform,
                        last_boot: boot,
                    },
                )
            })
            .collect()
    } else {
        HashMap::new()
    };
    let timeout = (spec.pacing.confirm_timeout_secs as i64).saturating_mul(1000);
    let mut done = Vec::new();
    let mut cancel = Vec::new();
    let mut again = Vec::new();
    let mut stepped = Vec::new();
    for m in &members {
        let view = MemberView {
            started_at: m.started_at.unwrap_or(now),
            target_version: if m.step_version.is_empty() {
                m.target_version.clone()
            } else {
                m.step_version.clone()
            },
            intermediate: m.step + 1 < m.steps,
        };
        let task = m.task_id.and_then(|t| tasks.get(&t));
        let verdict = plan::judge(
            &view,
            task,
            devices.get(&m.device_id),
            firmware,
            timeout,
            now,
        );
        if plan::retry(&verdict, task, m.attempts, spec.pacing.retries) {
            if let (Verdict::FailedUnconfirmed(_), Some(tid), Some(t)) = (&verdict, m.task_id, task)
            {
                if !t.status.is_final() {
                    cancel.push(tid);
                }
            }
            let why = match &verdict {
                Verdict::FailedConfirmed(r) | Verdict::FailedUnconfirmed(r) => r.clone(),
                _ => String::new(),
            };
            again.push((
                m.device_id.clone(),
                now + tasks::retry_delay_ms(m.attempts),
                format!("attempt {} failed: {why}", m.attempts),
            ));
            continue;
        }
        let (state, error) = match verdict {
            Verdict::Wait => continue,
            Verdict::StepDone => {
                let next = next_step_version(spec, m);
                stepped.push((
                    m.device_id.clone(),
                    next.clone(),
                    format!(
                        "reports {} (step {} of {} done); next image leads to {next}",
                        view.target_version,
                        m.step + 1,
                        m.steps
                    ),
                ));
                continue;
            }
            Verdict::Succeeded => (SUCCEEDED, None),
            Verdict::FailedConfirmed(r) => (FAILED_CONFIRMED, Some(r)),
            Verdict::FailedUnconfirmed(r) => {
                if let (Some(tid), Some(t)) = (m.task_id, task) {
                    if !t.status.is_final() {
                        cancel.push(tid);
                    }
                }
                (FAILED_UNCONFIRMED, Some(r))
            }
        };
        done.push(MemberFinish {
            device_id: m.device_id.clone(),
            state: state.into(),
            error,
        });
    }
    if done.is_empty() && again.is_empty() && stepped.is_empty() {
        return Ok(0);
    }
    store
        .run(move |s| {
            s.step_members(id, &stepped, now)?;
            s.retry_members(id, &again, now)?;
            for tid in cancel {
                let update = TaskUpdate {
                    status: Some(tasks::TaskStatus::Cancelled),
                    finished_at: Some(Some(now)),
                    updated_at: Some(now),
                    ..TaskUpdate::default()
                };
                s.transition_task(
                    tid,
                    &[tasks::TaskStatus::Pending, tasks::TaskStatus::Running],
                    &update,
                )?;
            }
            s.finish_members(id, &done, now)
        })
        .await
}

/// Judge every started phone of a phone firmware campaign by what it fetched since.
async fn reconcile_phones(
    store: &Store,
    spec: &CampaignSpec,
    now: i64,
    id: i64,
    members: Vec<MemberRow>,
) -> Result<usize> {
    let since: Vec<(String, i64)> = members
        .iter()
        .map(|m| (m.device_id.clone(), m.started_at.unwrap_or(now)))
        .collect();
    let fetched: HashMap<String, plan::PhoneFetches> = store
        .run(move |s| s.phone_fetches_since(&since))
        .await?
        .into_iter()
        .map(|(d, first, last, firmware)| {
            (
                d,
                plan::PhoneFetches {
                    first,
                    last,
                    firmware,
                },
            )
        })
        .collect();
    let timeout = (spec.pacing.confirm_timeout_secs as i64).saturating_mul(1000);
    let mut done = Vec::new();
    let mut again = Vec::new();
    for m in &members {
        let f = fetched.get(&m.device_id).cloned().unwrap_or_default();
        let verdict = plan::judge_phone(
            m.started_at.unwrap_or(now),
            &m.target_version,
            &f,
            timeout,
            now,
        );
        if plan::retry(&verdict, None, m.attempts, spec.pacing.retries) {
            if let Verdict::FailedUnconfirmed(why) = &verdict {
                again.push((
                    m.device_id.clone(),
                    now + tasks::retry_delay_ms(m.attempts),
                    format!("attempt {} failed: {why}", m.attempts),
                ));
            }
            continue;
        }
        let (state, error) = match verdict {
            Verdict::Wait | Verdict::StepDone => continue,
            Verdict::Succeeded => (SUCCEEDED, None),
            Verdict::FailedConfirmed(r) => (FAILED_CONFIRMED, Some(r)),
            Verdict::FailedUnconfirmed(r) => (FAILED_UNCONFIRMED, Some(r)),
        };
        done.push(MemberFinish {
            device_id: m.device_id.clone(),
            state: state.into(),
            error,
        });
    }
    if done.is_empty() && again.is_empty() {
        return Ok(0);
    }
    store
        .run(move |s| {
            s.retry_members(id, &again, now)?;
            s.finish_members(id, &done, now)
        })
        .await
}

/// Start phones: each phone's own settings get its model's firmware file and version, in
/// the transaction that marks its member in progress. The phone picks them up at its next
/// fetch (a SIP NOTIFY check-sync asks for one at once with `wake = connection_request`).
async fn start_phones(
    store: &Store,
    services: &Services,
    spec: &CampaignSpec,
    row: &CampaignRow,
    now: i64,
    n: u64,
    due: Option<Vec<MemberRow>>,
) -> Result<usize> {
    let Action::PhoneFirmware { images } = &spec.action else {
        return Ok(0);
    };
    let id = row.id;
    let pending = to_start(store, row, now, n, due).await?;
    let ids: Vec<String> = pending.iter().map(|m| m.device_id.clone()).collect();
    let settings: HashMap<String, String> = store
        .run(move |s| s.phone_settings_of(&ids))
        .await?
        .into_iter()
        .collect();
    let mut batch = Vec::with_capacity(pending.len());
    for m in &pending {
        let (Some(before), Some(img)) = (
            settings.get(&m.device_id),
            images.iter().find(|i| i.model_key() == m.model),
        ) else {
            continue;
        };
        let mut own: crate::phones::Settings = serde_json::from_str(before).unwrap_or_default();
        own.firmware_file = Some(img.firmware_file.clone());
        own.firmware_version = Some(img.version.clone());
        batch.push((
            m.device_id.clone(),
            before.clone(),
            serde_json::to_string(&own)?,
        ));
    }
    let started = store
        .run(move |s| s.start_phone_members(id, &batch, now))
        .await?;
    if spec.schedule.wake == Wake::ConnectionRequest {
        for dev in &started {
            let Ok(mac) = crate::phones::Mac::parse(dev.trim_start_matches("phone:")) else {
                continue;
            };
            let sent = crate::domain::phones::resync(
                store,
                &services.connreq_policy,
                mac,
                false,
                std::time::Duration::from_secs(2),
            )
            .await;
            if let Err(e) = sent {
                tracing::debug!(campaign = id, phone = %dev, error = %e, "check-sync failed");
            }
        }
    }
    Ok(started.len())
}

/// The first `n` devices to start: of the due ones with `spread` (already in start order),
/// otherwise the pending ones in the campaign's order.
async fn to_start(
    store: &Store,
    row: &CampaignRow,
    now: i64,
    n: u64,
    due: Option<Vec<MemberRow>>,
) -> Result<Vec<MemberRow>> {
    if let Some(mut due) = due {
        due.truncate(n as usize);
        return Ok(due);
    }
    let (id, wave) = (row.id, row.current_wave);
    store
        .run(move |s| s.startable_members(id, wave, now, n as i64))
        .await
}

/// The most pending devices a spread campaign weighs at once (per tick).
const SPREAD_SCAN: i64 = 1_000_000;

/// Gather what [`plan::decide`] needs. With `pacing.spread` and an open window (or end
/// time) that closes, also the pending devices whose drawn start time has come, in start
/// order ([`plan::due_in_spread`]); `startable` counts only those.
async fn snapshot(
    store: &Store,
    spec: &CampaignSpec,
    row: &CampaignRow,
    now: i64,
) -> Result<(Snapshot, Option<Vec<MemberRow>>)> {
    let (id, wave, since) = (row.id, row.current_wave, row.counted_since);
    let max_window = spec
        .stop_rules
        .iter()
        .filter_map(|r| r.of_last)
        .max()
        .unwrap_or(0) as i64;
    let with_rules = !spec.stop_rules.is_empty();
    let (counts, last_finished, started_last_minute, recent, totals) = store
        .run(move |s| {
            let counts = s.member_counts_by_wave(id)?;
            let last = s.wave_last_finished(id, wave)?;
            let started = s.members_started_since(id, now - 60_000)?;
            let (recent, totals) = if with_rules {
                (
                    s.recent_outcomes(id, since, max_window.max(1))?,
                    s.outcome_totals(id, since)?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            Ok((counts, last, started, recent, totals))
        })
        .await?;
    let mut w = WaveCounts {
        last_finished_at: last_finished,
        ..WaveCounts::default()
    };
    let (mut in_flight, mut startable, mut wave_count) = (0u64, 0u64, 0i32);
    for (wv, state, n) in &counts {
        let n = *n as u64;
        if state != SKIPPED {
            wave_count = wave_count.max(wv + 1);
        }
        if state == IN_PROGRESS {
            in_flight += n;
        }
        if state == PENDING && *wv <= wave {
            startable += n;
        }
        if *wv == wave {
            match state.as_str() {
                PENDING => w.pending += n,
                IN_PROGRESS => w.in_progress += n,
                SUCCEEDED => w.succeeded += n,
                FAILED_CONFIRMED | FAILED_UNCONFIRMED => w.failed += n,
                _ => {}
            }
        }
    }
    let stop = if with_rules {
        let recent: Vec<Outcome> = recent.iter().filter_map(|s| Outcome::of_state(s)).collect();
        let count = |st: &str| {
            totals
                .iter()
                .filter(|(s, _)| s == st)
                .map(|(_, n)| *n as u64)
                .sum::<u64>()
        };
        plan::broken_rule(
            &spec.stop_rules,
            &recent,
            (count(FAILED_CONFIRMED), count(FAILED_UNCONFIRMED)),
        )
    } else {
        None
    };
    let windows = compile_windows(spec)?;
    let window_open = spec.schedule.start_at.is_none_or(|s| now >= s)
        && crate::domain::cron::window_open(&windows, now);
    let window_closes_at = match (
        crate::domain::cron::open_until(&windows, now),
        spec.schedule.end_at,
    ) {
        (Some(w), Some(e)) => Some(w.min(e)),
        (w, e) => w.or(e),
    };
    let span = plan::spread_span(
        crate::domain::cron::opened_since(&windows, now),
        row.wave_started_at,
        window_closes_at,
        now,
    )
    .filter(|_| spec.pacing.spread && window_open && startable > 0);
    let due = match span {
        Some(span) => {
            let pending = store
                .run(move |s| s.startable_members(id, wave, now, SPREAD_SCAN))
                .await?;
            let seeds: Vec<u64> = pending
                .iter()
                .map(|m| plan::jitter_seed(id, &m.device_id))
                .collect();
            let order = plan::due_in_spread(&seeds, span, now);
            let mut slots: Vec<Option<MemberRow>> = pending.into_iter().map(Some).collect();
            let due: Vec<MemberRow> = order.into_iter().filter_map(|i| slots[i].take()).collect();
            startable = due.len() as u64;
            Some(due)
        }
        None => None,
    };
    let snap = Snapshot {
        now,
        current_wave: wave,
        wave_count,
        wave: w,
        in_flight,
        started_last_minute: started_last_minute as u64,
        startable,
        window_open,
        window_closes_at,
        end_at: spec.schedule.end_at,
        awaiting_approval: row.awaiting_approval != 0,
        stop,
    };
    Ok((snap, due))
}

/// The image of a member's model and the link of its upgrade path it is on.
fn link<'a>(spec: &'a CampaignSpec, m: &MemberRow) -> Option<(&'a Image, usize)> {
    let Action::Firmware { images } = &spec.action else {
        return None;
    };
    let image = images.iter().find(|i| i.model_key() == m.model)?;
    Some((
        image,
        super::link_of(image.steps.len() + 1, m.steps, m.step),
    ))
}

/// The version the image after a confirmed intermediate one leads to.
fn next_step_version(spec: &CampaignSpec, m: &MemberRow) -> String {
    if m.step + 2 >= m.steps {
        return m.target_version.clone();
    }
    link(spec, m)
        .and_then(|(image, k)| image.steps.get(k + 1))
        .and_then(|st| st.version.clone())
        .unwrap_or_else(|| m.target_version.clone())
}

/// The task a member runs: for firmware, the image of the link of its upgrade path it is on.
fn task_for(spec: &CampaignSpec, m: &MemberRow) -> Option<TaskSpec> {
    match &spec.action {
        Action::PhoneFirmware { .. } => None,
        Action::Task { task } => Some(task.clone()),
        Action::Firmware { .. } => link(spec, m)
            .map(|(i, k)| i.steps.get(k).map_or(&i.file_id, |st| &st.file_id))
            .map(|file_id| TaskSpec::Download {
                file_id: Some(file_id.clone()),
                url: None,
                file_type: "1 Firmware Upgrade Image".into(),
                username: None,
                password: None,
                file_size: None,
                target_file_name: None,
                delay_seconds: 0,
            }),
    }
}

/// Start up to `n` pending devices of the open waves: each is marked in progress in the
/// transaction that queues its task. Wakes them with a connection request if the campaign
/// says so.
async fn start(
    store: &Store,
    services: &Services,
    spec: &CampaignSpec,
    row: &CampaignRow,
    now: i64,
    n: u64,
    due: Option<Vec<MemberRow>>,
) -> Result<usize> {
    let id = row.id;
    let pending = to_start(store, row, now, n, due).await?;
    let timeout = (spec.pacing.confirm_timeout_secs as i64).saturating_mul(1000);
    let mut batch = Vec::with_capacity(pending.len());
    let k = store.keyring();
    for m in &pending {
        let Some(task) = task_for(spec, m) else {
            continue;
        };
        batch.push(NewTask {
            device_id: m.device_id.clone(),
            rpc: task.rpc().to_string(),
            // Its secrets (opened from the campaign's spec) are sealed as every task's are.
            args: tasks::seal_args(&k, &serde_json::to_string(&task)?)?,
            status: tasks::TaskStatus::Pending,
            command_key: if task.uses_key() {
                tasks::new_key()
            } else {
                String::new()
            },
            expires_at: Some(now + timeout),
            created_by: format!("campaign/{id}"),
            created_at: now,
            updated_at: now,
        });
    }
    let started = store.run(move |s| s.start_members(id, &batch, now)).await?;
    if spec.schedule.wake == Wake::ConnectionRequest {
        let wakes = started.iter().map(|(dev, _)| {
            services
                .connreq
                .request_for(store, dev, now, crate::domain::connreq::Wake::Tasks)
        });
        for r in futures_util::future::join_all(wakes).await {
            if let Err(e) = r {
                tracing::debug!(campaign = id, error = %e, "connection request failed");
            }
        }
    }
    Ok(started.len())
}
