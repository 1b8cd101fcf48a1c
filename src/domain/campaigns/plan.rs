//! Campaign pacing as pure functions over values: wave sizes, how a started device is judged,
//! stop rules, and what the scheduler does next for a campaign. No clock, no I/O: the
//! scheduler gathers a [`Snapshot`] from the store, asks [`decide`], and applies the answer.

use super::{Outcome, Size, StopRule, StopScope};
use crate::domain::tasks::TaskStatus;

/// Split `total` eligible devices into waves: the canary first, then each size in turn; the
/// last wave takes whatever is left. Counts are sizes of that wave; percentages are
/// cumulative shares of all devices ("50%" = until half of them are in a wave). Empty waves
/// are dropped, so every wave returned has at least one device.
pub fn wave_sizes(total: u64, canary: Option<Size>, sizes: &[Size]) -> Vec<u64> {
    let mut out = Vec::new();
    let mut assigned = 0u64;
    let push = |want: u64, assigned: &mut u64, out: &mut Vec<u64>| {
        let n = want.min(total - *assigned);
        if n > 0 {
            out.push(n);
            *assigned += n;
        }
    };
    if let Some(c) = canary {
        let n = match c {
            Size::Count(n) => n,
            Size::Percent(p) => ((total as f64) * p / 100.0).ceil() as u64,
            Size::Rest => total,
        };
        push(n.max(1), &mut assigned, &mut out);
    }
    for s in sizes {
        let n = match *s {
            Size::Count(n) => n,
            Size::Percent(p) => {
                let upto = ((total as f64) * p / 100.0).ceil() as u64;
                upto.saturating_sub(assigned)
            }
            Size::Rest => total,
        };
        push(n, &mut assigned, &mut out);
    }
    if assigned < total {
        // Whatever the sizes leave goes with the last wave (or forms one).
        match out.last_mut() {
            Some(last) if !sizes.is_empty() => *last += total - assigned,
            _ => out.push(total - assigned),
        }
    }
    out
}

/// The wave of each of `total` devices, in order, from [`wave_sizes`].
pub fn wave_of_each(sizes: &[u64]) -> Vec<i32> {
    let mut out = Vec::new();
    for (w, n) in sizes.iter().enumerate() {
        for _ in 0..*n {
            out.push(w as i32);
        }
    }
    out
}

/// The state of the task a started device runs, as the scheduler reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub status: TaskStatus,
    pub fault_code: Option<i32>,
    pub fault_string: Option<String>,
    pub finished_at: Option<i64>,
}

/// What the device last told the ACS.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub software_version: String,
    pub last_inform: Option<i64>,
    pub last_boot: Option<i64>,
}

/// A started device: when it started and what it should end up running.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub started_at: i64,
    /// Expected SoftwareVersion for firmware (of the image it runs now); empty for other
    /// actions.
    pub target_version: String,
    /// It runs an intermediate image: reaching `target_version` is a step, not the end.
    pub intermediate: bool,
}

/// The verdict on a started device.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not decided yet.
    Wait,
    Succeeded,
    /// An intermediate image is confirmed: the device goes on with the next image of its
    /// upgrade path.
    StepDone,
    /// Fault, or the device came back on another version.
    FailedConfirmed(String),
    /// No answer within the confirmation timeout.
    FailedUnconfirmed(String),
}

/// Judge a started device.
///
/// Firmware succeeds when the task is done (TransferComplete without fault) **and** the
/// device reports the expected SoftwareVersion. A device that rebooted, or informed again,
/// after the transfer and still reports another version has failed (confirmed). A task that
/// expired, or no verdict within `timeout_ms` of the start, is an unconfirmed failure. Other
/// actions succeed when their task is done. An intermediate image confirmed the same way is
/// a step done: the device is judged again on the next image, so a failure at any step
/// counts once.
pub fn judge(
    m: &MemberView,
    task: Option<&TaskView>,
    device: Option<&DeviceView>,
    firmware: bool,
    timeout_ms: i64,
    now: i64,
) -> Verdict {
    let Some(task) = task else {
        return Verdict::FailedUnconfirmed("its task was deleted".into());
    };
    let overdue = now >= m.started_at.saturating_add(timeout_ms);
    match task.status {
        TaskStatus::Fault => Verdict::FailedConfirmed(format!(
            "fault {}: {}",
            task.fault_code.unwrap_or(0),
            task.fault_string.as_deref().unwrap_or("")
        )),
        TaskStatus::Expired => {
            Verdict::FailedUnconfirmed("the device did not run the task before it expired".into())
        }
        TaskStatus::Cancelled => Verdict::FailedUnconfirmed("its task was cancelled".into()),
        TaskStatus::Done if !firmware => Verdict::Succeeded,
        TaskStatus::Done => {
            let Some(d) = device else {
                return Verdict::FailedUnconfirmed("the device was deleted".into());
            };
            if d.software_version == m.target_version {
                return if m.intermediate {
                    Verdict::StepDone
                } else {
                    Verdict::Succeeded
                };
            }
            let finished = task.finished_at.unwrap_or(m.started_at);
            let rebooted = d.last_boot.is_some_and(|b| b >= m.started_at);
            let informed_since = d.last_inform.is_some_and(|i| i > finished);
            if rebooted || informed_since {
                Verdict::FailedConfirmed(format!(
                    "the device reports SoftwareVersion {:?} after the upgrade, expected {:?}",
                    d.software_version, m.target_version
                ))
            } else if overdue {
                Verdict::FailedUnconfirmed(format!(
                    "the transfer completed but the device did not report version {:?} in time",
                    m.target_version
                ))
            } else {
                Verdict::Wait
            }
        }
        TaskStatus::Pending | TaskStatus::Running if overdue => Verdict::FailedUnconfirmed(
            format!("no result within {} s of the start", timeout_ms / 1000),
        ),
        TaskStatus::Pending | TaskStatus::Running => Verdict::Wait,
    }
}

/// What a started phone fetched since its start (served fetches only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhoneFetches {
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// The firmware the latest fetch reporting one reported.
    pub firmware: Option<String>,
}

/// A phone's fetches that far apart belong to different boots: the first fetch after the
/// start picks up the configuration naming the new firmware (the phone still runs the old
/// one), the phone installs it and reboots, and its next boot's fetch reports the version.
pub const PHONE_SETTLE_MS: i64 = 5 * 60_000;

/// Judge a started phone of a phone firmware campaign.
///
/// A fetch since the start reporting the expected version = success. A fetch at least
/// [`PHONE_SETTLE_MS`] after the first one since the start still reporting another version
/// = the phone came back on the old firmware (confirmed). No verdict within `timeout_ms` of
/// the start = unconfirmed.
pub fn judge_phone(
    started_at: i64,
    target_version: &str,
    f: &PhoneFetches,
    timeout_ms: i64,
    now: i64,
) -> Verdict {
    match (&f.firmware, f.first, f.last) {
        (Some(v), _, Some(_)) if v == target_version => return Verdict::Succeeded,
        (Some(v), Some(first), Some(last)) if last >= first + PHONE_SETTLE_MS => {
            return Verdict::FailedConfirmed(format!(
                "the phone fetched its configuration again and reports firmware {v:?}, expected {target_version:?}"
            ))
        }
        _ => {}
    }
    if now >= started_at.saturating_add(timeout_ms) {
        Verdict::FailedUnconfirmed(match f.first {
            None => format!(
                "the phone did not fetch its configuration within {} s of the start",
                timeout_ms / 1000
            ),
            Some(_) => format!(
                "the phone fetched its configuration but did not report firmware {target_version:?} in time"
            ),
        })
    } else {
        Verdict::Wait
    }
}

/// Whether a failed device is tried again: attempts left, and a failure a later try may
/// mend — no answer in time, or a task fault the task fault policy retries
/// (`CwmpFault::is_permanent` is false). A device that came back on the wrong version is a
/// verdict on the image, never retried.
pub fn retry(verdict: &Verdict, task: Option<&TaskView>, attempts: i32, retries: u32) -> bool {
    if attempts < 1 || attempts as u32 > retries {
        return false;
    }
    match verdict {
        Verdict::FailedUnconfirmed(_) => true,
        Verdict::FailedConfirmed(_) => task.is_some_and(|t| {
            t.status == TaskStatus::Fault
                && t.fault_code.is_some_and(|c| {
                    !crate::cwmp::CwmpFault::new(c.max(0) as u32, "").is_permanent()
                })
        }),
        _ => false,
    }
}

/// The first stop rule the recent outcomes break, as a reason to record. `recent` holds the
/// finished devices newest first (at least as many as the largest `of_last`); `totals` is
/// (confirmed, unconfirmed) failures counted since the campaign (re)started.
pub fn broken_rule(rules: &[StopRule], recent: &[Outcome], totals: (u64, u64)) -> Option<String> {
    for r in rules {
        let counts = |o: &Outcome| match (r.scope, o) {
            (_, Outcome::Succeeded) => false,
            (StopScope::Any, _) => true,
            (StopScope::Confirmed, Outcome::Confirmed) => true,
            (StopScope::Unconfirmed, Outcome::Unconfirmed) => true,
            _ => false,
        };
        let what = match r.scope {
            StopScope::Any => "failed",
            StopScope::Confirmed => "failed (confirmed)",
            StopScope::Unconfirmed => "did not answer (unconfirmed)",
        };
        match r.of_last {
            Some(n) => {
                let window = &recent[..recent.len().min(n as usize)];
                let failed = window.iter().filter(|o| counts(o)).count() as u64;
                if failed >= r.failures {
                    return Some(format!(
                        "stop rule: {failed} of the last {} devices {what} (limit {} of {n})",
                        window.len(),
                        r.failures
                    ));
                }
            }
            None => {
                let failed = match r.scope {
                    StopScope::Any => totals.0 + totals.1,
                    StopScope::Confirmed => totals.0,
                    StopScope::Unconfirmed => totals.1,
                };
                if failed >= r.failures {
                    return Some(format!(
                        "stop rule: {failed} devices {what} (limit {})",
                        r.failures
                    ));
                }
            }
        }
    }
    None
}

/// Counts of the current wave's devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaveCounts {
    pub pending: u64,
    pub in_progress: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// When its last device finished.
    pub last_finished_at: Option<i64>,
}

/// Everything [`decide`] needs about a running campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub now: i64,
    pub current_wave: i32,
    pub wave_count: i32,
    pub wave: WaveCounts,
    /// Devices started and not finished, over all waves.
    pub in_flight: u64,
    /// Devices started in the last 60 s.
    pub started_last_minute: u64,
    /// Pending devices in the current and earlier waves (with `spread`, those whose drawn
    /// start time has come: [`due_in_spread`]).
    pub startable: u64,
    pub window_open: bool,
    /// When the open window closes (or the end time comes, if sooner); `None` = no end.
    pub window_closes_at: Option<i64>,
    pub end_at: Option<i64>,
    pub awaiting_approval: bool,
    /// A stop rule's reason, if one is broken.
    pub stop: Option<String>,
}

/// The campaign's pacing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingLimits {
    pub max_in_flight: u64,
    pub max_starts_per_minute: u64,
    pub success_ratio: f64,
    pub soak_ms: i64,
    pub manual_approval: bool,
}

/// What the scheduler does next for a running campaign.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Pause and record why.
    Pause(String),
    /// Every device finished (or the end time passed and nothing is in flight).
    Complete(String),
    /// Open the next wave.
    AdvanceWave(i32),
    /// The wave is done; wait for an operator to approve the next one.
    AwaitApproval,
    /// Start this many pending devices now.
    Start(u64),
    /// Nothing to do now.
    Idle,
}

/// A device's draw for its start time in a spread campaign: a hash of the campaign and the
/// device (FNV-1a, then the SplitMix64 finaliser to mix the bits). The same on every node,
/// in every version and after a restart, so nothing is stored per device.
pub fn jitter_seed(campaign: i64, device: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in campaign
        .to_le_bytes()
        .iter()
        .chain([0xffu8].iter())
        .chain(device.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The SplitMix64 finaliser: every input bit moves about half the output bits.
fn mix64(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The stretch of time a spread campaign's starts are drawn in: from the later of the
/// open window's opening and the current wave's opening (so a wave that opens mid-window
/// spreads over what is left of it, and the devices left over for the next window spread
/// over all of that one) until the window closes (or the end time, if sooner). `None` when
/// nothing closes: then the limits alone pace the starts.
pub fn spread_span(
    window_opened_at: Option<i64>,
    wave_opened_at: Option<i64>,
    closes_at: Option<i64>,
    now: i64,
) -> Option<(i64, i64)> {
    let closes = closes_at?;
    let from = match (window_opened_at, wave_opened_at) {
        (Some(w), Some(v)) => w.max(v),
        (w, v) => w.or(v).unwrap_or(now),
    };
    Some((from.min(closes), closes))
}

/// When a device with draw `seed` may start inside `span`: uniformly distributed over
/// `[from, closes)`. The span's start is mixed into the draw, so each window (and each wave
/// opening) draws anew: a device whose time came too late for one window, or found the
/// limits full, is not late again in the next one.
pub fn jittered_start(seed: u64, span: (i64, i64)) -> i64 {
    let (from, closes) = span;
    let len = closes.saturating_sub(from).max(0) as u64;
    let draw = mix64(seed ^ (from as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let offset = ((u128::from(draw) * u128::from(len)) >> 64) as i64;
    from.saturating_add(offset)
}

/// Of the startable devices (by their draws), the ones whose start time has come at `now`,
/// earliest first: indices into `seeds`. [`decide`] then starts as many of them as the
/// in-flight and per-minute limits allow; the rest wait for a later tick (or the next
/// window).
pub fn due_in_spread(seeds: &[u64], span: (i64, i64), now: i64) -> Vec<usize> {
    let mut due: Vec<(i64, usize)> = seeds
        .iter()
        .enumerate()
        .map(|(i, s)| (jittered_start(*s, span), i))
        .filter(|(at, _)| *at <= now)
        .collect();
    due.sort_unstable();
    due.into_iter().map(|(_, i)| i).collect()
}

/// Decide the next step of a running campaign. Order: stop rules, end time, wave end (ratio,
/// soak, approval, next wave or completion), window, then pacing.
pub fn decide(s: &Snapshot, p: &PacingLimits) -> Decision {
    if let Some(reason) = &s.stop {
        return Decision::Pause(reason.clone());
    }
    if s.end_at.is_some_and(|e| s.now >= e) {
        return if s.in_flight == 0 {
            Decision::Complete("the campaign's end time passed".into())
        } else {
            Decision::Idle
        };
    }
    let w = &s.wave;
    if w.pending == 0 && w.in_progress == 0 {
        let finished = w.succeeded + w.failed;
        if finished > 0 {
            let ratio = w.succeeded as f64 / finished as f64;
            if ratio + 1e-9 < p.success_ratio {
                return Decision::Pause(format!(
                    "wave {}: {} of {} devices succeeded ({:.0} %), below the required {:.0} %",
                    s.current_wave,
                    w.succeeded,
                    finished,
                    ratio * 100.0,
                    p.success_ratio * 100.0
                ));
            }
        }
        if s.current_wave + 1 >= s.wave_count {
            return if s.in_flight == 0 {
                Decision::Complete("every device finished".into())
            } else {
                Decision::Idle
            };
        }
        if w.last_finished_at.is_some_and(|t| s.now < t + p.soak_ms) {
            return Decision::Idle;
        }
        if p.manual_approval {
            return if s.awaiting_approval {
                Decision::Idle
            } else {
                Decision::AwaitApproval
            };
        }
        return Decision::AdvanceWave(s.current_wave + 1);
    }
    if !s.window_open || s.startable == 0 {
        return Decision::Idle;
    }
    let room = p.max_in_flight.saturating_sub(s.in_flight);
    let rate = p
        .max_starts_per_minute
        .saturating_sub(s.started_last_minute);
    let n = s.startable.min(room).min(rate);
    if n == 0 {
        Decision::Idle
    } else {
        Decision::Start(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod retry_tests {
    use super::*;

    fn fault(code: i32) -> TaskView {
        TaskView {
            status: TaskStatus::Fault,
            fault_code: Some(code),
            fault_string: None,
            finished_at: Some(0),
        }
    }

    #[test]
    fn transient_failures_are_retried_until_the_attempts_run_out() {
        let conf = Verdict::FailedConfirmed("fault".into());
        let unconf = Verdict::FailedUnconfirmed("no answer".into());
        // 9010 (download failure) may pass later; 9003 (invalid arguments) never will.
        assert!(retry(&conf, Some(&fault(9010)), 1, 2));
        assert!(retry(&conf, Some(&fault(9010)), 2, 2));
        assert!(!retry(&conf, Some(&fault(9010)), 3, 2));
        assert!(!retry(&conf, Some(&fault(9003)), 1, 2));
        assert!(retry(&unconf, None, 1, 1));
        assert!(!retry(&unconf, None, 1, 0));
        // Back on the old version: the image is at fault, not luck.
        let done = TaskView {
            status: TaskStatus::Done,
            fault_code: None,
            fault_string: None,
            finished_at: Some(0),
        };
        assert!(!retry(&conf, Some(&done), 1, 5));
        assert!(!retry(&Verdict::Succeeded, Some(&done), 1, 5));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn waves_split_counts_percentages_and_rest() {
        // 10 / 100 / rest over 300.
        let s = wave_sizes(300, Some(Size::Count(10)), &[Size::Count(100), Size::Rest]);
        assert_eq!(s, vec![10, 100, 190]);
        // Cumulative percentages: 1 %, 10 %, 50 %, 100 % of 1000 after a canary of 5.
        let s = wave_sizes(
            1000,
            Some(Size::Count(5)),
            &[
                Size::Percent(1.0),
                Size::Percent(10.0),
                Size::Percent(50.0),
                Size::Percent(100.0),
            ],
        );
        assert_eq!(s, vec![5, 5, 90, 400, 500]);
        assert_eq!(s.iter().sum::<u64>(), 1000);
        // Sizes that do not cover everything: the rest joins the last wave.
        assert_eq!(
            wave_sizes(50, None, &[Size::Count(10), Size::Count(10)]),
            vec![10, 40]
        );
        // No waves at all: one wave.
        assert_eq!(wave_sizes(7, None, &[]), vec![7]);
        // Canary larger than the fleet; empty waves dropped.
        assert_eq!(
            wave_sizes(3, Some(Size::Count(10)), &[Size::Count(5)]),
            vec![3]
        );
        assert_eq!(
            wave_sizes(0, Some(Size::Count(1)), &[Size::Rest]),
            Vec::<u64>::new()
        );
        // A canary percentage never rounds to zero devices.
        assert_eq!(
            wave_sizes(10, Some(Size::Percent(1.0)), &[Size::Rest]),
            vec![1, 9]
        );
        assert_eq!(wave_of_each(&[2, 1]), vec![0, 0, 1]);
    }

    fn task(status: TaskStatus, finished: Option<i64>) -> TaskView {
        TaskView {
            status,
            fault_code: (status == TaskStatus::Fault).then_some(9010),
            fault_string: (status == TaskStatus::Fault).then(|| "Download failure".into()),
            finished_at: finished,
        }
    }

    fn dev(v: &str, inform: i64, boot: Option<i64>) -> DeviceView {
        DeviceView {
            software_version: v.into(),
            last_inform: Some(inform),
            last_boot: boot,
        }
    }

    #[test]
    fn firmware_needs_transfer_complete_and_the_new_version() {
        let m = MemberView {
            started_at: 1000,
            target_version: "2.0".into(),
            intermediate: false,
        };
        let t = 60_000;
        // Still running, then overdue.
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Running, None)),
                None,
                true,
                t,
                2000
            ),
            Verdict::Wait
        );
        assert!(matches!(
            judge(
                &m,
                Some(&task(TaskStatus::Running, None)),
                None,
                true,
                t,
                61_000
            ),
            Verdict::FailedUnconfirmed(_)
        ));
        // Done and the Inform of that session reported the new version.
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&dev("2.0", 4900, Some(4900))),
                true,
                t,
                5000
            ),
            Verdict::Succeeded
        );
        // Done, but it booted back into the old image: confirmed failure.
        let v = judge(
            &m,
            Some(&task(TaskStatus::Done, Some(5000))),
            Some(&dev("1.0", 4900, Some(4900))),
            true,
            t,
            5000,
        );
        assert!(
            matches!(&v, Verdict::FailedConfirmed(r) if r.contains("1.0") && r.contains("2.0")),
            "{v:?}"
        );
        // Done, no reboot yet, no Inform since: wait until the timeout, then unconfirmed.
        let d = dev("1.0", 900, None);
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&d),
                true,
                t,
                6000
            ),
            Verdict::Wait
        );
        assert!(matches!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&d),
                true,
                t,
                70_000
            ),
            Verdict::FailedUnconfirmed(_)
        ));
        // Faults are confirmed failures; expiry is unconfirmed.
        assert!(matches!(
            judge(&m, Some(&task(TaskStatus::Fault, Some(5000))), None, true, t, 5000),
            Verdict::FailedConfirmed(r) if r.contains("9010")
        ));
        assert!(matches!(
            judge(
                &m,
                Some(&task(TaskStatus::Expired, Some(5000))),
                None,
                true,
                t,
                5000
            ),
            Verdict::FailedUnconfirmed(_)
        ));
        assert!(matches!(
            judge(&m, None, None, true, t, 5000),
            Verdict::FailedUnconfirmed(_)
        ));
        // Other actions: done is success whatever the version.
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                None,
                false,
                t,
                5000
            ),
            Verdict::Succeeded
        );
    }

    #[test]
    fn an_intermediate_image_confirmed_is_a_step_and_its_failure_a_failure() {
        let m = MemberView {
            started_at: 1000,
            target_version: "1.5".into(),
            intermediate: true,
        };
        let t = 60_000;
        // Reports the stepping stone's version: a step, not success.
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&dev("1.5", 4900, Some(4900))),
                true,
                t,
                5000
            ),
            Verdict::StepDone
        );
        // Back on the old version after the step's reboot: the device failed (once).
        assert!(matches!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&dev("1.0", 4900, Some(4900))),
                true,
                t,
                5000
            ),
            Verdict::FailedConfirmed(r) if r.contains("1.5")
        ));
        // Not yet reported: wait.
        assert_eq!(
            judge(
                &m,
                Some(&task(TaskStatus::Done, Some(5000))),
                Some(&dev("1.0", 900, None)),
                true,
                t,
                6000
            ),
            Verdict::Wait
        );
        // A step is no failure: never retried.
        assert!(!retry(&Verdict::StepDone, None, 1, 5));
    }

    #[test]
    fn a_phone_is_confirmed_by_the_firmware_a_later_fetch_reports() {
        let t = 3_600_000;
        let at = |first: Option<i64>, last: Option<i64>, fw: Option<&str>| PhoneFetches {
            first,
            last,
            firmware: fw.map(str::to_string),
        };
        // No fetch yet: wait, then unconfirmed.
        assert_eq!(
            judge_phone(0, "2.0", &at(None, None, None), t, 1000),
            Verdict::Wait
        );
        assert!(matches!(
            judge_phone(0, "2.0", &at(None, None, None), t, t),
            Verdict::FailedUnconfirmed(r) if r.contains("did not fetch")
        ));
        // The fetch picking up the new configuration still reports the old firmware.
        let picked = at(Some(1000), Some(2000), Some("1.0"));
        assert_eq!(judge_phone(0, "2.0", &picked, t, 3000), Verdict::Wait);
        // Back after the upgrade's reboot on the new version.
        let upgraded = at(Some(1000), Some(400_000), Some("2.0"));
        assert_eq!(
            judge_phone(0, "2.0", &upgraded, t, 400_000),
            Verdict::Succeeded
        );
        // Back on the old one: confirmed.
        let back = at(Some(1000), Some(1000 + PHONE_SETTLE_MS), Some("1.0"));
        assert!(matches!(
            judge_phone(0, "2.0", &back, t, 400_000),
            Verdict::FailedConfirmed(r) if r.contains("1.0")
        ));
        // Fetched but never reported a version later: unconfirmed at the timeout.
        assert!(matches!(
            judge_phone(0, "2.0", &picked, t, t),
            Verdict::FailedUnconfirmed(r) if r.contains("in time")
        ));
    }

    #[test]
    fn stop_rules_count_confirmed_and_unconfirmed_apart() {
        use Outcome::*;
        let window = StopRule {
            scope: StopScope::Any,
            failures: 5,
            of_last: Some(100),
        };
        let mut recent = vec![Succeeded; 95];
        recent.extend(vec![Confirmed; 4]);
        assert_eq!(broken_rule(&[window], &recent, (4, 0)), None);
        recent.insert(0, Unconfirmed);
        let r = broken_rule(&[window], &recent, (4, 1)).unwrap();
        assert!(r.contains("5 of the last 100"), "{r}");
        // Failures older than the window do not count.
        let mut recent = vec![Succeeded; 100];
        recent.extend(vec![Confirmed; 10]);
        assert_eq!(broken_rule(&[window], &recent, (10, 0)), None);
        // Confirmed-only rule ignores unconfirmed failures.
        let confirmed = StopRule {
            scope: StopScope::Confirmed,
            failures: 3,
            of_last: None,
        };
        assert_eq!(broken_rule(&[confirmed], &[], (2, 50)), None);
        assert!(broken_rule(&[confirmed], &[], (3, 0)).is_some());
        let unconfirmed = StopRule {
            scope: StopScope::Unconfirmed,
            failures: 2,
            of_last: Some(10),
        };
        assert_eq!(
            broken_rule(&[unconfirmed], &[Confirmed, Confirmed, Confirmed], (3, 0)),
            None
        );
        assert!(broken_rule(
            &[unconfirmed],
            &[Unconfirmed, Succeeded, Unconfirmed],
            (0, 2)
        )
        .is_some());
    }

    fn snap() -> Snapshot {
        Snapshot {
            now: 100_000,
            current_wave: 0,
            wave_count: 3,
            wave: WaveCounts {
                pending: 10,
                ..WaveCounts::default()
            },
            in_flight: 0,
            started_last_minute: 0,
            startable: 10,
            window_open: true,
            window_closes_at: None,
            end_at: None,
            awaiting_approval: false,
            stop: None,
        }
    }

    const LIMITS: PacingLimits = PacingLimits {
        max_in_flight: 4,
        max_starts_per_minute: 6,
        success_ratio: 0.9,
        soak_ms: 60_000,
        manual_approval: false,
    };

    #[test]
    fn spread_draws_are_deterministic_per_campaign_and_device() {
        assert_eq!(
            jitter_seed(7, "0A0001-GwA-S0001"),
            jitter_seed(7, "0A0001-GwA-S0001")
        );
        assert_ne!(
            jitter_seed(7, "0A0001-GwA-S0001"),
            jitter_seed(8, "0A0001-GwA-S0001")
        );
        assert_ne!(
            jitter_seed(7, "0A0001-GwA-S0001"),
            jitter_seed(7, "0A0001-GwA-S0002")
        );
        // A start time always falls inside the span; an empty span starts at once.
        let span = (1_000, 61_000);
        for d in 0..1000 {
            let at = jittered_start(jitter_seed(1, &format!("d{d}")), span);
            assert!((1_000..61_000).contains(&at), "{at}");
        }
        // Each window draws anew: a device late in one is not late in every one.
        let nights = |d: u32| {
            let seed = jitter_seed(1, &format!("d{d}"));
            (0..3i64)
                .map(|n| {
                    jittered_start(seed, (n * 86_400_000, n * 86_400_000 + 3_600_000))
                        - n * 86_400_000
                })
                .collect::<Vec<i64>>()
        };
        let same = (0..100)
            .filter(|d| nights(*d).windows(2).any(|w| w[0] == w[1]))
            .count();
        assert_eq!(same, 0);
        let late_every_night = (0..1000)
            .filter(|d| nights(*d).iter().all(|t| *t >= 3_400_000))
            .count();
        assert!(
            late_every_night <= 2,
            "{late_every_night} of 1000 late three nights running"
        );
        assert_eq!(jittered_start(u64::MAX, (5, 5)), 5);
        assert_eq!(jittered_start(u64::MAX, (5, 4)), 5);
        // The span starts at the later of the window's and the wave's opening.
        assert_eq!(
            spread_span(Some(100), Some(250), Some(1_000), 300),
            Some((250, 1_000))
        );
        assert_eq!(
            spread_span(Some(400), Some(250), Some(1_000), 500),
            Some((400, 1_000))
        );
        assert_eq!(
            spread_span(None, None, Some(1_000), 500),
            Some((500, 1_000))
        );
        assert_eq!(spread_span(Some(100), Some(250), None, 300), None);
    }

    #[test]
    fn spread_starts_fall_at_random_over_the_whole_window() {
        // 2,000 devices, a 4-hour window: the drawn start times cover it evenly (each of the
        // 16 quarter-hours gets its share of 125, give or take), not bunched at the opening.
        let open = 3_600_000;
        let span = (open, open + 4 * 3_600_000);
        let seeds: Vec<u64> = (0..2000)
            .map(|d| jitter_seed(42, &format!("0A0001-GwA-S{d:05}")))
            .collect();
        let mut buckets = [0u32; 16];
        for s in &seeds {
            let at = jittered_start(*s, span);
            buckets[((at - open) / 900_000) as usize] += 1;
        }
        for (q, n) in buckets.iter().enumerate() {
            assert!(
                (85..=165).contains(n),
                "quarter-hour {q}: {n} of 2000: {buckets:?}"
            );
        }
        // Due at a time: exactly the devices drawn before it, earliest first.
        let half = open + 2 * 3_600_000;
        let due = due_in_spread(&seeds, span, half);
        assert!((900..=1100).contains(&due.len()), "{}", due.len());
        let times: Vec<i64> = due
            .iter()
            .map(|i| jittered_start(seeds[*i], span))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times.iter().all(|t| *t <= half));
        assert!(due_in_spread(&seeds, span, open - 1).is_empty());
        assert_eq!(due_in_spread(&seeds, span, span.1).len(), 2000);
    }

    #[test]
    fn spread_starts_keep_the_in_flight_and_per_minute_limits() {
        // A pure simulation of the scheduler: a tick every 20 s, each device takes 2 minutes,
        // 300 devices in a 1-hour window, at most 10 in flight and 12 starts a minute.
        let limits = PacingLimits {
            max_in_flight: 10,
            max_starts_per_minute: 12,
            ..LIMITS
        };
        let open = 0i64;
        let span = (open, open + 3_600_000);
        let seeds: Vec<u64> = (0..300)
            .map(|d| jitter_seed(9, &format!("dev{d}")))
            .collect();
        let mut started: Vec<Option<i64>> = vec![None; seeds.len()];
        let mut now = open;
        let mut peak = 0u64;
        while now < span.1 {
            let in_flight = started
                .iter()
                .filter(|s| s.is_some_and(|t| now < t + 120_000))
                .count() as u64;
            let last_minute = started
                .iter()
                .filter(|s| s.is_some_and(|t| t > now - 60_000))
                .count() as u64;
            let pending: Vec<usize> = (0..seeds.len()).filter(|i| started[*i].is_none()).collect();
            let pending_seeds: Vec<u64> = pending.iter().map(|i| seeds[*i]).collect();
            let due = due_in_spread(&pending_seeds, span, now);
            let s = Snapshot {
                now,
                wave_count: 1,
                wave: WaveCounts {
                    pending: pending.len() as u64,
                    in_progress: in_flight,
                    ..WaveCounts::default()
                },
                in_flight,
                started_last_minute: last_minute,
                startable: due.len() as u64,
                window_closes_at: Some(span.1),
                ..snap()
            };
            if let Decision::Start(n) = decide(&s, &limits) {
                assert!(n <= due.len() as u64);
                for i in due.iter().take(n as usize) {
                    started[pending[*i]] = Some(now);
                }
            }
            let in_flight = started
                .iter()
                .filter(|s| s.is_some_and(|t| now < t + 120_000))
                .count() as u64;
            peak = peak.max(in_flight);
            now += 20_000;
        }
        assert_eq!(peak, 10, "the in-flight limit is reached and holds");
        let mut times: Vec<i64> = started.iter().flatten().copied().collect();
        times.sort_unstable();
        for (i, t) in times.iter().enumerate() {
            let in_minute = times[i..].iter().take_while(|u| **u < t + 60_000).count();
            assert!(in_minute <= 12, "{in_minute} starts in the minute from {t}");
        }
        // Spread over the window, not bunched at its opening: each quarter-hour starts its
        // share (75, give or take), and nearly every device started before the window closed
        // (the few whose turn came while the limits were full wait for the next one).
        assert!(times.len() >= 280, "{} of 300 started", times.len());
        let mut quarters = [0u32; 4];
        for t in &times {
            quarters[((t - open) / 900_000) as usize] += 1;
        }
        assert!(
            quarters.iter().all(|n| (45..=105).contains(n)),
            "{quarters:?}"
        );
    }

    #[test]
    fn pacing_respects_in_flight_and_rate() {
        assert_eq!(decide(&snap(), &LIMITS), Decision::Start(4));
        let s = Snapshot {
            in_flight: 3,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Start(1));
        let s = Snapshot {
            in_flight: 4,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Idle);
        let s = Snapshot {
            started_last_minute: 5,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Start(1));
        let s = Snapshot {
            startable: 2,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Start(2));
        // Window closed: nothing new starts.
        let s = Snapshot {
            window_open: false,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Idle);
        // A broken stop rule wins over everything.
        let s = Snapshot {
            stop: Some("x".into()),
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Pause("x".into()));
    }

    #[test]
    fn waves_advance_on_ratio_and_soak() {
        let done = |succeeded, failed, at| WaveCounts {
            pending: 0,
            in_progress: 0,
            succeeded,
            failed,
            last_finished_at: Some(at),
        };
        // Wave finished at 90 s, soak 60 s: wait until 150 s.
        let s = Snapshot {
            wave: done(10, 0, 90_000),
            startable: 0,
            ..snap()
        };
        assert_eq!(decide(&s, &LIMITS), Decision::Idle);
        let s = Snapshot { now: 150_000, ..s };
        assert_eq!(decide(&s, &LIMITS), Decision::AdvanceWave(1));
        // Below the success ratio: pause with the figures.
        let s = Snapshot {
            wave: done(8, 2, 0),
            ..s
        };
        match decide(&s, &LIMITS) {
            Decision::Pause(r) => assert!(r.contains("8 of 10"), "{r}"),
            d => panic!("{d:?}"),
        }
        // Manual approval.
        let manual = PacingLimits {
            manual_approval: true,
            ..LIMITS
        };
        let s = Snapshot {
            wave: done(10, 0, 0),
            ..s
        };
        assert_eq!(decide(&s, &manual), Decision::AwaitApproval);
        let s2 = Snapshot {
            awaiting_approval: true,
            ..s.clone()
        };
        assert_eq!(decide(&s2, &manual), Decision::Idle);
        // Last wave done: complete once nothing is in flight.
        let last = Snapshot {
            current_wave: 2,
            ..s.clone()
        };
        assert!(matches!(decide(&last, &LIMITS), Decision::Complete(_)));
        // End time: nothing new, complete when the in-flight devices finished.
        let ended = Snapshot {
            end_at: Some(50_000),
            in_flight: 1,
            ..snap()
        };
        assert_eq!(decide(&ended, &LIMITS), Decision::Idle);
        let ended = Snapshot {
            in_flight: 0,
            ..ended
        };
        assert!(matches!(decide(&ended, &LIMITS), Decision::Complete(_)));
    }
}
