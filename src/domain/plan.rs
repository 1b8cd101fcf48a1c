//! The decisions of a CWMP session as pure functions over values: what to ask a device
//! given what its Inform says and what is known of it (bootstrap settings, discovery,
//! whether to load its tasks), what to do with each of its queued or running tasks (incl.
//! confirming an interrupted transfer before any resend), how a large read is cut into
//! batches, what a fault means for a task, and what the end of a
//! session records. `domain::session` reads the values from the store, calls these, and
//! writes what they decide; nothing here does I/O or reads a clock.

use crate::config::{BooleanLiteral, CwmpConfig};
use crate::cwmp::{
    AcsRequest, CwmpFault, EventStruct, GetParameterNames, GetParameterValues, ParameterValue,
    SetParameterValues,
};
use crate::domain::session_state::{Origin, Planned};
use crate::domain::tasks::{self, TaskSpec};
use crate::store::tasks::TaskRow;

/// What a session asks before anything else, decided from the Inform and the device row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// The device is new to the ACS (a `0 BOOTSTRAP` event, or its row was just created):
    /// it gets the bootstrap settings and is discovered.
    pub bootstrap: bool,
    /// Read the whole tree (GetParameterNames of the root, then values in batches).
    pub discover: bool,
    /// Load the device's pending and running tasks.
    pub load_tasks: bool,
}

/// What the device row says for [`opening`].
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts {
    /// The row was created by this Inform.
    pub created: bool,
    /// When the whole tree was last read.
    pub discovered_at: Option<i64>,
    /// Work was queued (tasks, lines, presets) since the last session that drained it.
    pub has_new_work: bool,
    /// Discoveries that gave up since the tree was last read whole (read only when a
    /// discovery is due otherwise: [`discovery_may_wait`]).
    pub gave_up: Option<GaveUp>,
}

/// Decide what the session starts with.
pub fn opening(cfg: &CwmpConfig, events: &[EventStruct], device: DeviceFacts, now: i64) -> Opening {
    opening_after(cfg.discovery_refresh_secs, events, device, now)
}

/// [`opening`] with only the setting it reads (`cwmp.discovery_refresh_secs`), for the
/// store's side of the Inform's hand-off.
pub fn opening_after(
    discovery_refresh_secs: u64,
    events: &[EventStruct],
    device: DeviceFacts,
    now: i64,
) -> Opening {
    let bootstrap = bootstraps(events, device.created);
    // A discovery that gave up is not tried again at every Inform: it waits, longer each
    // time; a BOOTSTRAP (a factory reset, a new device) always reads the tree.
    let waits = device
        .gave_up
        .is_some_and(|g| now < g.last_at.saturating_add(discovery_retry_ms(g.times)));
    Opening {
        bootstrap,
        discover: bootstrap || (stale(discovery_refresh_secs, device.discovered_at, now) && !waits),
        load_tasks: loads_tasks(events, device.has_new_work),
    }
}

/// Whether the session bootstraps the device: a `0 BOOTSTRAP` event, or its row was just
/// created.
fn bootstraps(events: &[EventStruct], created: bool) -> bool {
    created || events.iter().any(|e| e.event_code == "0 BOOTSTRAP")
}

/// Whether the tree read at `discovered_at` (never: `None`) is to be read again.
fn stale(discovery_refresh_secs: u64, discovered_at: Option<i64>, now: i64) -> bool {
    let refresh_ms = i64::try_from(discovery_refresh_secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    match discovered_at {
        None => true,
        Some(at) => discovery_refresh_secs > 0 && now - at > refresh_ms,
    }
}

/// Whether a discovery is due that discoveries which gave up may hold back (the tree is
/// stale and the device does not bootstrap): only then are those looked up
/// (`DeviceFacts::gave_up`).
pub fn discovery_may_wait(
    discovery_refresh_secs: u64,
    events: &[EventStruct],
    created: bool,
    discovered_at: Option<i64>,
    now: i64,
) -> bool {
    !bootstraps(events, created) && stale(discovery_refresh_secs, discovered_at, now)
}

/// Whether a session reads the device's tasks: work was added since the last session that
/// drained it, or the events may complete running tasks (M Reboot, a factory reset, a
/// reboot).
pub fn loads_tasks(events: &[EventStruct], has_new_work: bool) -> bool {
    has_new_work
        || events.iter().any(|e| {
            e.event_code.starts_with("M ")
                || e.event_code == "0 BOOTSTRAP"
                || e.event_code == "1 BOOT"
        })
}

/// Whether a bootstrapping device gets settings at all (periodic inform, connection-request
/// credentials).
pub fn wants_bootstrap_settings(cfg: &CwmpConfig) -> bool {
    cfg.periodic_inform_interval_secs > 0 || cfg.set_connection_request_credentials
}

/// The bootstrap SetParameterValues: periodic inform on with the configured interval (when
/// it is not 0; PeriodicInformEnable written in the form `booleans`,
/// `cwmp.boolean_literal`), the connection-request credentials `cr` (user, password) when
/// given, and the CWMP credentials issued to the device (`domain::credentials`, trust on
/// first use) when there are any.
pub fn bootstrap_settings(
    root: &str,
    periodic_interval_secs: u32,
    cr: Option<(String, String)>,
    acs_credentials: Vec<ParameterValue>,
    booleans: BooleanLiteral,
) -> Planned {
    let mut list = Vec::new();
    let ms = format!("{root}.ManagementServer.");
    if periodic_interval_secs > 0 {
        list.push(ParameterValue::new(
            format!("{ms}PeriodicInformEnable"),
            booleans.literal(true),
            "xsd:boolean",
        ));
        list.push(ParameterValue::new(
            format!("{ms}PeriodicInformInterval"),
            periodic_interval_secs.to_string(),
            "xsd:unsignedInt",
        ));
    }
    let (mut cr_username, mut cr_password) = (None, None);
    if let Some((user, pass)) = cr {
        list.push(ParameterValue::string(
            format!("{ms}ConnectionRequestUsername"),
            user.clone(),
        ));
        list.push(ParameterValue::string(
            format!("{ms}ConnectionRequestPassword"),
            pass.clone(),
        ));
        cr_username = Some(user);
        cr_password = Some(pass);
    }
    let with_credentials = !acs_credentials.is_empty();
    list.extend(acs_credentials);
    Planned {
        origin: Origin::Bootstrap {
            cr_username,
            cr_password,
            acs_credentials: with_credentials,
        },
        request: AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: list,
            parameter_key: String::new(),
        }),
    }
}

/// What follows a fault of the bootstrap SetParameterValues ([`after_bootstrap_fault`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootstrapFault {
    /// Sent at once instead: the write without the parameters the fault names (the same
    /// write when it names none of them). Its origin carries the connection-request
    /// credentials only while both are in it (they are stored once the device accepts them).
    pub resend: Option<Planned>,
    /// Sent after it: the named booleans ferroacs wrote as words (`true`), as digits (`1`).
    pub digits: Option<Planned>,
    /// The device refused the CWMP credentials issued to it: they are not issued again.
    pub refused: bool,
}

/// Decide after `fault` answered the bootstrap SetParameterValues `set` (planned with
/// `origin`); `resent`: this session sent it again already.
///
/// SetParameterValues is all or nothing, so one parameter the device refuses (a
/// SetParameterValuesFault naming it, e.g. 9007 on PeriodicInformEnable) would cost it all
/// the others, its connection-request credentials among them. The write goes again once in
/// the same session without the named parameters (a named Username or Password takes its
/// pair along), and named booleans that went out as words go again on their own as digits.
/// A fault naming no parameter it carries (9002 internal error, a lost answer, a bare 9003)
/// sends the same write again, once.
///
/// The issued CWMP credentials count as refused only when the fault names them, or when a
/// permanent fault naming nothing comes back to the write sent again. A transient fault is
/// no refusal: the credentials stay issued and go again at the next session
/// (`domain::credentials` gives up after its bounded attempts).
pub fn after_bootstrap_fault(
    root: &str,
    origin: &Origin,
    set: &SetParameterValues,
    fault: &CwmpFault,
    resent: bool,
) -> BootstrapFault {
    let Origin::Bootstrap {
        cr_username,
        cr_password,
        acs_credentials,
    } = origin
    else {
        return BootstrapFault::default();
    };
    let ms = format!("{root}.ManagementServer.");
    let pairs = [
        [format!("{ms}Username"), format!("{ms}Password")],
        [
            format!("{ms}ConnectionRequestUsername"),
            format!("{ms}ConnectionRequestPassword"),
        ],
    ];
    let sent = |name: &str| set.parameter_list.iter().any(|p| p.name == name);
    let named: Vec<&str> = fault
        .set_parameter_values_faults
        .iter()
        .map(|f| f.parameter_name.as_str())
        .filter(|n| sent(n))
        .collect();
    let names_pair = |pair: &[String; 2]| named.iter().any(|n| pair.iter().any(|p| p == n));
    let refused = *acs_credentials
        && (names_pair(&pairs[0]) || (resent && named.is_empty() && fault.is_permanent()));
    if resent {
        return BootstrapFault {
            refused,
            ..BootstrapFault::default()
        };
    }
    if named.is_empty() {
        return BootstrapFault {
            resend: Some(Planned {
                origin: origin.clone(),
                request: AcsRequest::SetParameterValues(set.clone()),
            }),
            ..BootstrapFault::default()
        };
    }
    let dropped = |name: &str| {
        named.contains(&name)
            || pairs
                .iter()
                .any(|pair| names_pair(pair) && pair.iter().any(|p| p == name))
    };
    let rest: Vec<ParameterValue> = set
        .parameter_list
        .iter()
        .filter(|p| !dropped(&p.name))
        .cloned()
        .collect();
    let kept = |pair: &[String; 2]| pair.iter().all(|n| rest.iter().any(|p| p.name == *n));
    let cr_kept = kept(&pairs[1]);
    let resend = (!rest.is_empty()).then(|| Planned {
        origin: Origin::Bootstrap {
            cr_username: cr_username.clone().filter(|_| cr_kept),
            cr_password: cr_password.clone().filter(|_| cr_kept),
            acs_credentials: *acs_credentials && rest.iter().any(|p| pairs[0].contains(&p.name)),
        },
        request: AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: rest,
            parameter_key: set.parameter_key.clone(),
        }),
    });
    let digits: Vec<ParameterValue> = set
        .parameter_list
        .iter()
        .filter_map(|p| as_digit_if_refused(p, fault))
        .collect();
    BootstrapFault {
        resend,
        digits: (!digits.is_empty()).then(|| Planned {
            origin: Origin::Bootstrap {
                cr_username: None,
                cr_password: None,
                acs_credentials: false,
            },
            request: AcsRequest::SetParameterValues(SetParameterValues {
                parameter_list: digits,
                parameter_key: set.parameter_key.clone(),
            }),
        }),
        refused,
    }
}

/// `p` (an xsd:boolean ferroacs wrote as a word) again as a digit, when `fault` names it
/// with 9007 (invalid value) or 9003 (invalid arguments), as CPEs that take only 1/0 answer.
fn as_digit_if_refused(p: &ParameterValue, fault: &CwmpFault) -> Option<ParameterValue> {
    let on = match p.value.trim() {
        v if v.eq_ignore_ascii_case("true") => true,
        v if v.eq_ignore_ascii_case("false") => false,
        _ => return None,
    };
    let refused = fault
        .set_parameter_values_faults
        .iter()
        .any(|f| f.parameter_name == p.name && matches!(f.code, 9003 | 9007));
    (refused && p.xsd_type == "xsd:boolean").then(|| {
        ParameterValue::new(
            p.name.clone(),
            BooleanLiteral::Digit.literal(on),
            p.xsd_type.clone(),
        )
    })
}

/// A SetParameterValues ferroacs generated (`set`) again with the booleans it wrote as
/// words and `fault` refuses (see [`after_bootstrap_fault`]) as digits; `None` when the
/// fault names no such boolean, so asking again changes nothing (and a write sent again
/// carries no words left to refuse: at most one resend).
pub fn with_digit_booleans(
    set: &SetParameterValues,
    fault: &CwmpFault,
) -> Option<SetParameterValues> {
    let mut changed = false;
    let parameter_list = set
        .parameter_list
        .iter()
        .map(|p| match as_digit_if_refused(p, fault) {
            Some(digit) => {
                changed = true;
                digit
            }
            None => p.clone(),
        })
        .collect();
    changed.then(|| SetParameterValues {
        parameter_list,
        parameter_key: set.parameter_key.clone(),
    })
}

/// The question that confirms an interrupted transfer (task `id`): which transfers the
/// device holds. CWMP 1.0 devices only know GetQueuedTransfers.
pub fn confirm_transfer(id: i64, cwmp_version: &str) -> Planned {
    Planned {
        origin: Origin::ConfirmTransfer { id },
        request: if cwmp_version.ends_with("1-0") {
            AcsRequest::GetQueuedTransfers
        } else {
            AcsRequest::GetAllQueuedTransfers
        },
    }
}

/// Whether the device holds the transfer with `command_key`, from the CommandKeys of its
/// queued transfers; `None` (it answered the question with a fault) counts as holding it,
/// so nothing is sent twice: the task waits for its TransferComplete until its deadline.
pub fn holds_transfer(queued: Option<&[String]>, command_key: &str) -> bool {
    queued.is_none_or(|keys| keys.iter().any(|k| k == command_key))
}

/// The first request of a discovery: the names of the whole tree under `root`.
pub fn discover_names(root: &str) -> Planned {
    Planned {
        origin: Origin::DiscoverNames,
        request: AcsRequest::GetParameterNames(GetParameterNames {
            parameter_path: format!("{root}."),
            next_level: false,
        }),
    }
}

/// What to do with a pending or running task at the start of a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Triage {
    /// Its deadline passed: it ends `expired`.
    Expire,
    /// The Inform shows it was carried out: it ends `done` with this result; `refresh`
    /// names an object to read back (a confirmed AddObject).
    Done {
        result: serde_json::Value,
        refresh: Option<String>,
    },
    /// Leave it as it is: it waits for a later message (TransferComplete), or it was
    /// interrupted with an outcome nobody can know and must not be repeated.
    Leave,
    /// Not yet: it waits for its retry time (work is left for a later session).
    Later,
    /// Keep it running and wait for what the device reports later (`TransferComplete`, `M
    /// ScheduleInform`) until the transfer deadline: it was carried out, or may have been,
    /// and a second one would run twice.
    Await(&'static str),
    /// A transfer sent in an earlier session and never answered: first ask the device
    /// whether it holds it ([`confirm_transfer`]), then send it again only if it does not.
    ConfirmThenSend,
    /// Send it (again).
    Send,
}

/// Decide what happens to task `row` (its arguments `spec`) at the start of a session whose
/// Inform carries `events` and reports `parameter_key` (`ManagementServer.ParameterKey`).
///
/// A running task was interrupted by the end of the previous session, unless it waits for
/// something (`awaiting` in its result). State-changing RPCs are confirmed by what the
/// device reports back (`M Reboot` with the CommandKey, the ParameterKey) before being
/// resent, so nothing runs twice; idempotent ones are simply sent again. A transfer
/// (Download, Upload, ScheduleDownload) that was sent and never answered may have been
/// accepted: its `M` event in this Inform means it was carried out (wait for its
/// TransferComplete), otherwise the device is asked for its queued transfers before the
/// resend. A ScheduleInform is never resent: it waits for its `M ScheduleInform`.
pub fn triage(
    row: &TaskRow,
    spec: &TaskSpec,
    events: &[EventStruct],
    parameter_key: Option<&str>,
    now: i64,
) -> Triage {
    let expired = row.expires_at.is_some_and(|exp| exp < now);
    if expired && row.status == tasks::TaskStatus::Pending {
        return Triage::Expire;
    }
    if row.status == tasks::TaskStatus::Running {
        let awaited: Option<String> = row
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
            .and_then(|v| {
                v.get("awaiting")
                    .and_then(|a| a.as_str())
                    .map(str::to_string)
            });
        let awaiting = awaited.is_some();
        let has_m = |code: &str| {
            events
                .iter()
                .any(|e| e.event_code == code && e.command_key == row.command_key)
        };
        let booted_after_accepting = || {
            awaited.as_deref() == Some("M Reboot")
                && events.iter().any(|e| e.event_code == "1 BOOT")
        };
        let completed = match spec {
            // Some CPEs report the reboot they accepted with `1 BOOT` alone, without
            // `M Reboot` and its CommandKey: the boot after the RebootResponse is it.
            TaskSpec::Reboot {} => has_m("M Reboot") || booted_after_accepting(),
            TaskSpec::FactoryReset {} => events.iter().any(|e| e.event_code == "0 BOOTSTRAP"),
            TaskSpec::ScheduleInform { .. } => has_m("M ScheduleInform"),
            _ => false,
        };
        if completed {
            let codes: Vec<&str> = events.iter().map(|e| e.event_code.as_str()).collect();
            return Triage::Done {
                result: serde_json::json!({ "confirmed_by": codes }),
                refresh: None,
            };
        }
        // A Reboot or FactoryReset the device accepted happens only once its session has
        // ended well. An Inform with neither `1 BOOT` nor `0 BOOTSTRAP` shows it did not
        // happen (the session was cut, e.g. the ACS node serving it died): send it again.
        let booted = events
            .iter()
            .any(|e| e.event_code == "1 BOOT" || e.event_code == "0 BOOTSTRAP");
        let awaits_boot = matches!(
            (spec, awaited.as_deref()),
            (TaskSpec::Reboot {}, Some("M Reboot"))
                | (TaskSpec::FactoryReset {}, Some("0 BOOTSTRAP"))
        );
        if awaits_boot && !booted {
            return if expired {
                Triage::Expire
            } else {
                Triage::Send
            };
        }
        if awaiting {
            // Still waiting (e.g. for a TransferComplete in a later session).
            return if expired {
                Triage::Expire
            } else {
                Triage::Leave
            };
        }
        // Sent in an earlier session and never answered ("sent, unconfirmed"): look for the
        // device's confirmation before sending it again.
        let transfer_event = match spec {
            TaskSpec::Download { .. } => Some("M Download"),
            TaskSpec::Upload { .. } => Some("M Upload"),
            TaskSpec::ScheduleDownload { .. } => Some("M ScheduleDownload"),
            _ => None,
        };
        if let Some(event) = transfer_event {
            return if has_m(event) {
                // Accepted and carried out: its TransferComplete follows.
                Triage::Await("TransferComplete")
            } else {
                Triage::ConfirmThenSend
            };
        }
        if let TaskSpec::ScheduleInform { .. } = spec {
            // A second one would schedule a second Inform.
            return Triage::Await("M ScheduleInform");
        }
        // Interrupted with unknown outcome.
        let applied = spec.uses_key()
            && matches!(
                spec,
                TaskSpec::AddObject { .. }
                    | TaskSpec::DeleteObject { .. }
                    | TaskSpec::SetParameterValues { .. }
            )
            && parameter_key == Some(row.command_key.as_str());
        if applied {
            let refresh = match spec {
                TaskSpec::AddObject { object } => Some(object.clone()),
                _ => None,
            };
            return Triage::Done {
                result: serde_json::json!({ "confirmed_by": "ParameterKey" }),
                refresh,
            };
        }
        if !spec.idempotent()
            && !matches!(
                spec,
                TaskSpec::Reboot {}
                    | TaskSpec::FactoryReset {}
                    | TaskSpec::AddObject { .. }
                    | TaskSpec::DeleteObject { .. }
                    | TaskSpec::ChangeDuState { .. }
            )
        {
            return Triage::Leave;
        }
        // Not applied (or harmless to repeat): send again.
        return Triage::Send;
    }
    if row.not_before > now {
        return Triage::Later;
    }
    Triage::Send
}

/// Whether the session's first task (`row`, the oldest of the device's open tasks, read
/// with the Inform) moves to `running` in the Inform's own hand-off to the store, before it
/// is sent: one commit and one hand-off fewer for a session with work. Only when
/// - nothing is asked before it (no bootstrap settings, no discovery: `opening`);
/// - it is pending, due and not expired ([`triage`] sends it);
/// - a task found `running` but never sent is simply sent again by a later session, so a
///   session cut before it goes out loses and repeats nothing: reads,
///   SetParameterValues / SetParameterAttributes, whose repetition changes nothing, and
///   the transfer-queue questions and CancelTransfer ([`triage`] of a running task). Not
///   transfers (asked about first), nor what a later event confirms (ScheduleInform,
///   Reboot, FactoryReset), nor object changes.
pub fn starts_with_inform(
    opening: &Opening,
    row: &TaskRow,
    spec: &TaskSpec,
    events: &[EventStruct],
    now: i64,
) -> bool {
    // Idempotent, and nothing the device reports later is awaited for it (a transfer is
    // asked about first, a ScheduleInform waits for its event).
    let harmless = spec.idempotent()
        && !matches!(
            spec,
            TaskSpec::Download { .. }
                | TaskSpec::ScheduleDownload { .. }
                | TaskSpec::Upload { .. }
                | TaskSpec::ScheduleInform { .. }
        );
    !opening.bootstrap
        && !opening.discover
        && harmless
        && row.status == tasks::TaskStatus::Pending
        && triage(row, spec, events, None, now) == Triage::Send
}

/// A read of `names` cut into GetParameterValues of at most `batch` names each (0 counts
/// as 1), each with the origin `origin(last)` gives it.
pub fn batches(names: Vec<String>, batch: usize, origin: impl Fn(bool) -> Origin) -> Vec<Planned> {
    let batch = batch.max(1);
    let n = names.len().div_ceil(batch);
    let mut names = names.into_iter();
    // The names move into the requests: a discovery's leaves are not copied again.
    (0..n)
        .map(|i| Planned {
            origin: origin(i + 1 == n),
            request: AcsRequest::GetParameterValues(GetParameterValues {
                parameter_names: names.by_ref().take(batch).collect(),
            }),
        })
        .collect()
}

/// Faults of a discovery GetParameterValues that may blame some of the names it asks for
/// rather than the request: 9005 (invalid parameter name), 9003 (invalid arguments), 9002
/// (internal error: CPEs answer it when reading one broken parameter fails), 9001 (request
/// denied: a parameter the CPE does not disclose) and 9004 (resources exceeded: the batch is
/// too large for the CPE). Asked again in halves, the names that still fault alone are
/// isolated; any other fault (9000 method not supported, vendor codes) would answer every
/// read alike.
pub fn blames_names(code: u32) -> bool {
    matches!(code, 9001..=9005)
}

/// The ACS's own faults for an answer that was lost or mixed up (the CPE answered another
/// request, e.g. a message sent again after a reconnection, or sent empty POSTs instead):
/// they say nothing of the names, the same request is asked again.
pub fn answer_lost(code: u32) -> bool {
    code == CwmpFault::UNEXPECTED_RESPONSE || code == CwmpFault::NO_RESPONSE
}

/// The extra GetParameterValues a discovery of `leaves` read in batches of `batch` may spend
/// on faulted batches (a split costs two requests, a batch asked again whole one).
///
/// Isolating one unreadable name in a batch of b names takes two requests at each of the
/// ⌈log2 b⌉ halvings (128 names: 14), and a name alone that still faults is dropped at no
/// further cost; the bound allows that much for every batch (a 300-leaf tree in batches of
/// 128: 3 × 14 = 42), so a tree with a few broken parameters spread over its batches is
/// read whole, while a device that faults everything costs at most about 2·⌈log2 b⌉ + 1
/// times a normal discovery's requests (all of them small) before discovery gives up.
pub fn discovery_split_budget(leaves: usize, batch: usize) -> u32 {
    let batch = batch.max(1).min(leaves.max(1));
    let batches = leaves.div_ceil(batch);
    let levels = batch.next_power_of_two().trailing_zeros() as usize;
    u32::try_from(batches.saturating_mul(2 * levels)).unwrap_or(u32::MAX)
}

/// What to do with a discovery batch of `names` the device answered with a fault of `code`,
/// with `budget` extra requests left ([`discovery_split_budget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryFault {
    /// Ask again for the same names (the answer was lost); costs one of the budget.
    Retry(Vec<String>),
    /// Ask again for each half (in this order); costs two of the budget.
    Split(Vec<String>, Vec<String>),
    /// The one name cannot be read: drop it from the tree and carry on.
    Drop(String),
    /// Stop discovering: the fault does not blame a name, or the budget is spent.
    GiveUp,
}

/// Decide after a faulted discovery batch: a fault that may blame the names
/// ([`blames_names`]) splits the batch in halves down to single names, and a single name
/// that still faults is dropped (GenieACS, on 9005, drops the named paths and carries on);
/// a lost answer ([`answer_lost`]) asks for the same names again.
pub fn after_discovery_fault(code: u32, mut names: Vec<String>, budget: u32) -> DiscoveryFault {
    if names.is_empty() {
        return DiscoveryFault::GiveUp;
    }
    if answer_lost(code) {
        return if budget >= 1 {
            DiscoveryFault::Retry(names)
        } else {
            DiscoveryFault::GiveUp
        };
    }
    if !blames_names(code) {
        return DiscoveryFault::GiveUp;
    }
    if names.len() == 1 {
        return names
            .pop()
            .map_or(DiscoveryFault::GiveUp, DiscoveryFault::Drop);
    }
    if budget < 2 {
        return DiscoveryFault::GiveUp;
    }
    let second = names.split_off(names.len() / 2);
    DiscoveryFault::Split(names, second)
}

/// How a device's earlier discoveries that gave up are known: the newest one's time and
/// how many there were since the tree was last read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp {
    pub last_at: i64,
    pub times: u32,
}

/// The start of the fault message a discovery that gave up records.
pub const DISCOVERY_INCOMPLETE: &str = "discovery incomplete";

/// The discoveries that gave up, from the device's recent faults (message, time), newest
/// first, recorded since its tree was last read whole.
pub fn discoveries_given_up<'a>(
    faults: impl IntoIterator<Item = (&'a str, i64)>,
) -> Option<GaveUp> {
    faults
        .into_iter()
        .filter(|(message, _)| message.starts_with(DISCOVERY_INCOMPLETE))
        .fold(None, |acc: Option<GaveUp>, (_, at)| {
            Some(match acc {
                None => GaveUp {
                    last_at: at,
                    times: 1,
                },
                Some(g) => GaveUp {
                    last_at: g.last_at.max(at),
                    times: g.times.saturating_add(1),
                },
            })
        })
}

/// How long after a discovery that gave up (the `times`-th in a row) the next one waits: 15
/// minutes, doubling each time, at most a day. Reading the whole tree is the costliest thing
/// a session does; without this a device that faults it would be read again at every Inform.
pub fn discovery_retry_ms(times: u32) -> i64 {
    let exp = times.clamp(1, 8) - 1;
    (900_000i64 << exp).min(86_400_000)
}

/// What a fault of the device means for the task whose RPC it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFault {
    /// The task ends `fault`: the fault is permanent, or the attempts are used up.
    Final,
    /// The task goes back to `pending` for another attempt, not before the given time.
    Retry { attempts: i32, not_before: i64 },
}

/// Decide after `fault` on a task that had made `attempts` attempts before this one.
pub fn after_fault(fault: &CwmpFault, attempts: i32, now: i64) -> AfterFault {
    if fault.is_permanent() || attempts + 1 >= tasks::MAX_ATTEMPTS {
        return AfterFault::Final;
    }
    let attempts = attempts + 1;
    AfterFault::Retry {
        attempts,
        not_before: now + tasks::retry_delay_ms(attempts),
    }
}

/// The work epoch a session that ends with `completed` drained, if any: only when the
/// tasks were looked at and none is left for later.
pub fn work_drained(
    tasks_checked: bool,
    tasks_left: bool,
    completed: bool,
    work_epoch: i64,
) -> Option<i64> {
    (tasks_checked && !tasks_left && completed).then_some(work_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: &str, key: &str) -> EventStruct {
        EventStruct {
            event_code: code.into(),
            command_key: key.into(),
        }
    }

    fn cfg() -> CwmpConfig {
        CwmpConfig {
            discovery_refresh_secs: 3600,
            ..CwmpConfig::default()
        }
    }

    fn known(discovered_at: i64) -> DeviceFacts {
        DeviceFacts {
            created: false,
            discovered_at: Some(discovered_at),
            has_new_work: false,
            gave_up: None,
        }
    }

    fn row(status: tasks::TaskStatus) -> TaskRow {
        TaskRow {
            id: 7,
            device_id: "D".into(),
            rpc: "Reboot".into(),
            args: "{}".into(),
            status,
            command_key: "k1".into(),
            result: None,
            fault_code: None,
            fault_string: None,
            fault_detail: None,
            attempts: 0,
            not_before: 0,
            expires_at: None,
            created_by: "test".into(),
            created_at: 0,
            updated_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    fn spv() -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "rpc": "SetParameterValues",
            "values": [{"name": "Device.X", "value": "1"}]
        }))
        .expect("a SetParameterValues spec")
    }

    #[test]
    fn a_quiet_periodic_inform_of_a_known_device_asks_nothing() {
        let o = opening(&cfg(), &[ev("2 PERIODIC", "")], known(1_000), 2_000);
        assert_eq!(
            o,
            Opening {
                bootstrap: false,
                discover: false,
                load_tasks: false
            }
        );
    }

    #[test]
    fn a_bootstrap_or_a_new_row_means_settings_and_discovery() {
        let o = opening(&cfg(), &[ev("0 BOOTSTRAP", "")], known(1_000), 2_000);
        assert!(o.bootstrap && o.discover && o.load_tasks);
        let created = DeviceFacts {
            created: true,
            ..known(1_000)
        };
        let o = opening(&cfg(), &[ev("2 PERIODIC", "")], created, 2_000);
        assert!(o.bootstrap && o.discover && !o.load_tasks);
    }

    #[test]
    fn an_unknown_or_stale_tree_is_discovered_again() {
        let never = DeviceFacts {
            discovered_at: None,
            ..known(0)
        };
        assert!(opening(&cfg(), &[], never, 5).discover);
        // One hour and a millisecond later.
        assert!(opening(&cfg(), &[], known(0), 3_600_001).discover);
        assert!(!opening(&cfg(), &[], known(0), 3_600_000).discover);
        // 0 turns refreshing off.
        let off = CwmpConfig {
            discovery_refresh_secs: 0,
            ..cfg()
        };
        assert!(!opening(&off, &[], known(0), i64::MAX / 2).discover);
    }

    #[test]
    fn tasks_are_loaded_for_new_work_or_events_that_complete_tasks() {
        let work = DeviceFacts {
            has_new_work: true,
            ..known(0)
        };
        assert!(opening(&cfg(), &[ev("2 PERIODIC", "")], work, 1).load_tasks);
        for code in ["M Reboot", "1 BOOT", "0 BOOTSTRAP", "M Download"] {
            assert!(
                opening(&cfg(), &[ev(code, "k")], known(0), 1).load_tasks,
                "{code}"
            );
        }
        for code in ["2 PERIODIC", "6 CONNECTION REQUEST", "4 VALUE CHANGE"] {
            assert!(
                !opening(&cfg(), &[ev(code, "")], known(0), 1).load_tasks,
                "{code}"
            );
        }
    }

    #[test]
    fn bootstrap_settings_name_the_root_and_keep_the_credentials() {
        let p = bootstrap_settings(
            "InternetGatewayDevice",
            300,
            Some(("cr-u".into(), "secret".into())),
            Vec::new(),
            BooleanLiteral::Word,
        );
        let AcsRequest::SetParameterValues(set) = &p.request else {
            panic!("a SetParameterValues: {:?}", p.request.name());
        };
        let names: Vec<&str> = set.parameter_list.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "InternetGatewayDevice.ManagementServer.PeriodicInformEnable",
                "InternetGatewayDevice.ManagementServer.PeriodicInformInterval",
                "InternetGatewayDevice.ManagementServer.ConnectionRequestUsername",
                "InternetGatewayDevice.ManagementServer.ConnectionRequestPassword",
            ]
        );
        assert_eq!(set.parameter_list[0].value, "true");
        assert_eq!(set.parameter_list[1].value, "300");
        assert!(matches!(
            &p.origin,
            Origin::Bootstrap { cr_username: Some(u), cr_password: Some(pw), acs_credentials: false }
                if u == "cr-u" && pw == "secret"
        ));
        // Without an interval nor credentials there is nothing to set.
        let none = bootstrap_settings("Device", 0, None, Vec::new(), BooleanLiteral::Word);
        let AcsRequest::SetParameterValues(set) = &none.request else {
            panic!("a SetParameterValues");
        };
        assert!(set.parameter_list.is_empty());
        assert!(!wants_bootstrap_settings(&CwmpConfig {
            periodic_inform_interval_secs: 0,
            set_connection_request_credentials: false,
            ..cfg()
        }));
    }

    #[test]
    fn booleans_go_out_as_configured_or_as_the_device_reports_them() {
        let p = bootstrap_settings("Device", 60, None, Vec::new(), BooleanLiteral::Digit);
        let AcsRequest::SetParameterValues(set) = &p.request else {
            panic!("a SetParameterValues");
        };
        assert_eq!(
            (
                set.parameter_list[0].value.as_str(),
                &*set.parameter_list[0].xsd_type
            ),
            ("1", "xsd:boolean")
        );
        assert_eq!(BooleanLiteral::Digit.literal(false), "0");
        assert_eq!(BooleanLiteral::Word.literal(false), "false");
        let word = BooleanLiteral::Word;
        assert_eq!(word.or_as_reported(Some(" 0")), BooleanLiteral::Digit);
        assert_eq!(word.or_as_reported(Some("true")), word);
        assert_eq!(word.or_as_reported(None), word);
        assert_eq!(
            BooleanLiteral::Digit.or_as_reported(Some("false")),
            BooleanLiteral::Digit
        );
    }

    const MS: &str = "Device.ManagementServer.";

    /// The bootstrap write of a device logging in with the shared credentials: periodic
    /// inform, connection-request credentials, issued credentials.
    fn full_bootstrap() -> (Planned, SetParameterValues) {
        let issued = vec![
            ParameterValue::string(format!("{MS}Username"), "00D09E-IGD-S1"),
            ParameterValue::string(format!("{MS}Password"), "p"),
        ];
        let p = bootstrap_settings(
            "Device",
            300,
            Some(("cr-u".into(), "cr-p".into())),
            issued,
            BooleanLiteral::Word,
        );
        let AcsRequest::SetParameterValues(set) = p.request.clone() else {
            panic!("a SetParameterValues");
        };
        (p, set)
    }

    fn spv_fault(code: u32, named: &[(&str, u32)]) -> CwmpFault {
        CwmpFault {
            code,
            string: String::new(),
            set_parameter_values_faults: named
                .iter()
                .map(|(leaf, code)| crate::cwmp::SpvFault {
                    parameter_name: format!("{MS}{leaf}"),
                    code: *code,
                    string: String::new(),
                })
                .collect(),
        }
    }

    fn leaves(p: &Planned) -> Vec<(String, String)> {
        let AcsRequest::SetParameterValues(set) = &p.request else {
            panic!("a SetParameterValues");
        };
        set.parameter_list
            .iter()
            .map(|v| (v.name.trim_start_matches(MS).to_string(), v.value.clone()))
            .collect()
    }

    #[test]
    fn a_fault_naming_periodic_inform_sends_the_rest_and_the_boolean_as_a_digit() {
        let (p, set) = full_bootstrap();
        assert!(matches!(
            p.origin,
            Origin::Bootstrap {
                acs_credentials: true,
                ..
            }
        ));
        let fault = spv_fault(9003, &[("PeriodicInformEnable", 9007)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
        assert!(!after.refused);
        let resend = after.resend.expect("the rest goes again");
        let names: Vec<String> = leaves(&resend).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "PeriodicInformInterval",
                "ConnectionRequestUsername",
                "ConnectionRequestPassword",
                "Username",
                "Password"
            ]
        );
        // Still stored once accepted, and still carrying the issued credentials.
        assert!(matches!(
            &resend.origin,
            Origin::Bootstrap { cr_username: Some(u), cr_password: Some(pw), acs_credentials: true }
                if u == "cr-u" && pw == "cr-p"
        ));
        let digits = after.digits.expect("the boolean as a digit");
        assert_eq!(
            leaves(&digits),
            [("PeriodicInformEnable".to_string(), "1".to_string())]
        );
        assert_eq!(
            digits.origin,
            Origin::Bootstrap {
                cr_username: None,
                cr_password: None,
                acs_credentials: false
            }
        );
        // Named as not writable: not a question of its form, no digit.
        let fault = spv_fault(9003, &[("PeriodicInformEnable", 9008)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
        assert!(after.resend.is_some() && after.digits.is_none() && !after.refused);
    }

    #[test]
    fn only_a_fault_naming_the_issued_credentials_refuses_them() {
        let (p, set) = full_bootstrap();
        // The Password named: both issued parameters leave, the rest goes again.
        let fault = spv_fault(9003, &[("Password", 9008)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
        assert!(after.refused);
        let resend = after.resend.expect("the rest goes again");
        let names: Vec<String> = leaves(&resend).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "PeriodicInformEnable",
                "PeriodicInformInterval",
                "ConnectionRequestUsername",
                "ConnectionRequestPassword"
            ]
        );
        assert!(matches!(
            resend.origin,
            Origin::Bootstrap {
                cr_username: Some(_),
                acs_credentials: false,
                ..
            }
        ));
        // The connection-request username named: its password leaves with it, and nothing
        // is stored for them.
        let fault = spv_fault(9003, &[("ConnectionRequestUsername", 9007)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
        assert!(!after.refused);
        let resend = after.resend.expect("the rest goes again");
        assert!(!leaves(&resend)
            .iter()
            .any(|(n, _)| n.starts_with("ConnectionRequest")));
        assert!(matches!(
            resend.origin,
            Origin::Bootstrap {
                cr_username: None,
                cr_password: None,
                acs_credentials: true
            }
        ));
        // Credentials alone (a device that is not bootstrapping), refused: nothing left.
        let only = bootstrap_settings(
            "Device",
            0,
            None,
            vec![ParameterValue::string(format!("{MS}Password"), "p")],
            BooleanLiteral::Word,
        );
        let AcsRequest::SetParameterValues(set) = &only.request else {
            panic!("a SetParameterValues");
        };
        let after = after_bootstrap_fault("Device", &only.origin, set, &fault_on_password(), false);
        assert_eq!(
            after,
            BootstrapFault {
                resend: None,
                digits: None,
                refused: true
            }
        );
    }

    fn fault_on_password() -> CwmpFault {
        spv_fault(9003, &[("Password", 9007)])
    }

    #[test]
    fn a_fault_naming_nothing_sends_the_same_write_once_and_refuses_only_a_permanent_repeat() {
        let (p, set) = full_bootstrap();
        for code in [9002, 9003, 9001, CwmpFault::NO_RESPONSE] {
            let fault = CwmpFault::from_code(code);
            let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
            assert!(!after.refused, "{code}");
            assert_eq!(after.digits, None, "{code}");
            assert_eq!(after.resend.as_ref(), Some(&p), "{code}");
            // Sent again already: only a permanent fault is a refusal; nothing goes again.
            let again = after_bootstrap_fault("Device", &p.origin, &set, &fault, true);
            assert_eq!(again.resend, None, "{code}");
            assert_eq!(again.refused, code == 9003, "{code}");
        }
        // A fault naming a parameter the write did not carry names nothing.
        let fault = spv_fault(9003, &[("URL", 9007)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, false);
        assert_eq!(after.resend.as_ref(), Some(&p));
        // Sent again already, naming the credentials: refused; naming another one: not.
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault_on_password(), true);
        assert!(after.refused && after.resend.is_none() && after.digits.is_none());
        let fault = spv_fault(9003, &[("PeriodicInformEnable", 9007)]);
        let after = after_bootstrap_fault("Device", &p.origin, &set, &fault, true);
        assert_eq!(after, BootstrapFault::default());
        // Nothing issued in it: never a refusal.
        let (mut plain, _) = full_bootstrap();
        plain.origin = Origin::Bootstrap {
            cr_username: None,
            cr_password: None,
            acs_credentials: false,
        };
        let after = after_bootstrap_fault(
            "Device",
            &plain.origin,
            &set,
            &CwmpFault::from_code(9003),
            true,
        );
        assert!(!after.refused);
    }

    #[test]
    fn only_booleans_refused_as_words_go_again_as_digits() {
        let set = SetParameterValues {
            parameter_list: vec![
                ParameterValue::new(format!("{MS}STUNEnable"), "true", "xsd:boolean"),
                ParameterValue::new(format!("{MS}STUNServerPort"), "3478", "xsd:unsignedInt"),
            ],
            parameter_key: String::new(),
        };
        let fault = spv_fault(9003, &[("STUNEnable", 9007), ("STUNServerPort", 9007)]);
        let again = with_digit_booleans(&set, &fault).expect("sent again");
        let values: Vec<&str> = again
            .parameter_list
            .iter()
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(values, ["1", "3478"]);
        // Already digits, or another fault code: nothing to change, nothing sent again.
        assert_eq!(with_digit_booleans(&again, &fault), None);
        let fault = spv_fault(9003, &[("STUNEnable", 9008)]);
        assert_eq!(with_digit_booleans(&set, &fault), None);
        assert_eq!(with_digit_booleans(&set, &CwmpFault::from_code(9002)), None);
    }

    fn download() -> TaskSpec {
        serde_json::from_value(serde_json::json!({
            "rpc": "Download",
            "url": "http://files.example/fw.bin",
            "file_type": "1 Firmware Upgrade Image"
        }))
        .expect("a Download spec")
    }

    #[test]
    fn an_interrupted_download_is_confirmed_before_it_is_ever_sent_again() {
        let running = row(tasks::TaskStatus::Running);
        // Carried out: the Inform says so, its TransferComplete follows.
        assert_eq!(
            triage(&running, &download(), &[ev("M Download", "k1")], None, 10),
            Triage::Await("TransferComplete")
        );
        // Another transfer's event says nothing about this one: ask the device first.
        for events in [vec![], vec![ev("M Download", "k2")], vec![ev("1 BOOT", "")]] {
            assert_eq!(
                triage(&running, &download(), &events, None, 10),
                Triage::ConfirmThenSend
            );
        }
        // A pending Download was never sent: it simply goes out.
        assert_eq!(
            triage(&row(tasks::TaskStatus::Pending), &download(), &[], None, 10),
            Triage::Send
        );
        // A Download already awaiting its TransferComplete keeps waiting.
        let mut awaiting = row(tasks::TaskStatus::Running);
        awaiting.result = Some(r#"{"awaiting":"TransferComplete"}"#.into());
        assert_eq!(triage(&awaiting, &download(), &[], None, 10), Triage::Leave);
    }

    #[test]
    fn an_interrupted_schedule_inform_waits_for_its_event() {
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "rpc": "ScheduleInform", "delay_seconds": 60
        }))
        .expect("a ScheduleInform spec");
        let running = row(tasks::TaskStatus::Running);
        assert_eq!(
            triage(&running, &spec, &[], None, 10),
            Triage::Await("M ScheduleInform")
        );
        assert!(matches!(
            triage(&running, &spec, &[ev("M ScheduleInform", "k1")], None, 10),
            Triage::Done { .. }
        ));
    }

    #[test]
    fn the_queued_transfers_say_whether_the_device_holds_a_transfer() {
        let keys = vec!["k0".to_string(), "k1".to_string()];
        assert!(holds_transfer(Some(&keys), "k1"));
        assert!(!holds_transfer(Some(&keys), "k2"));
        assert!(!holds_transfer(Some(&[]), "k1"));
        // No answer (a fault): taken as held, so nothing is sent twice.
        assert!(holds_transfer(None, "k1"));
        assert!(matches!(
            confirm_transfer(7, "cwmp-1-0").request,
            AcsRequest::GetQueuedTransfers
        ));
        let p = confirm_transfer(7, "cwmp-1-2");
        assert!(matches!(p.request, AcsRequest::GetAllQueuedTransfers));
        assert!(matches!(p.origin, Origin::ConfirmTransfer { id: 7 }));
    }

    #[test]
    fn a_reboot_is_done_when_the_device_reports_it_with_the_key() {
        let reboot = TaskSpec::Reboot {};
        let running = row(tasks::TaskStatus::Running);
        let t = triage(
            &running,
            &reboot,
            &[ev("1 BOOT", ""), ev("M Reboot", "k1")],
            None,
            10,
        );
        assert_eq!(
            t,
            Triage::Done {
                result: serde_json::json!({"confirmed_by": ["1 BOOT", "M Reboot"]}),
                refresh: None
            }
        );
        // Another key is another reboot: this one was interrupted and is sent again.
        let t = triage(&running, &reboot, &[ev("M Reboot", "k2")], None, 10);
        assert_eq!(t, Triage::Send);
    }

    #[test]
    fn an_accepted_reboot_the_device_never_carried_out_is_sent_again() {
        let reboot = TaskSpec::Reboot {};
        let mut accepted = row(tasks::TaskStatus::Running);
        accepted.result = Some(r#"{"awaiting":"M Reboot"}"#.into());
        // The session that carried the RebootResponse was cut: no reboot followed.
        let t = triage(&accepted, &reboot, &[ev("2 PERIODIC", "")], None, 10);
        assert_eq!(t, Triage::Send);
        // It rebooted but reported no `M Reboot` (some CPEs send `1 BOOT` alone): the boot
        // after the RebootResponse completes it, never a second reboot.
        let t = triage(&accepted, &reboot, &[ev("1 BOOT", "")], None, 10);
        assert_eq!(
            t,
            Triage::Done {
                result: serde_json::json!({"confirmed_by": ["1 BOOT"]}),
                refresh: None
            }
        );
        // A boot before the device accepted the Reboot is not it.
        let sent = row(tasks::TaskStatus::Running);
        let t = triage(&sent, &reboot, &[ev("1 BOOT", "")], None, 10);
        assert_ne!(
            t,
            Triage::Done {
                result: serde_json::json!({"confirmed_by": ["1 BOOT"]}),
                refresh: None
            }
        );
    }

    #[test]
    fn an_interrupted_set_is_confirmed_by_the_parameter_key_and_never_sent_twice() {
        let mut running = row(tasks::TaskStatus::Running);
        running.rpc = "SetParameterValues".into();
        let t = triage(&running, &spv(), &[ev("2 PERIODIC", "")], Some("k1"), 10);
        assert_eq!(
            t,
            Triage::Done {
                result: serde_json::json!({"confirmed_by": "ParameterKey"}),
                refresh: None
            }
        );
        // Another key: not applied, so it goes out again.
        let t = triage(&running, &spv(), &[], Some("other"), 10);
        assert_eq!(t, Triage::Send);
    }

    #[test]
    fn a_confirmed_add_object_reads_the_object_back() {
        let spec = TaskSpec::AddObject {
            object: "Device.NAT.PortMapping.".into(),
        };
        let t = triage(&row(tasks::TaskStatus::Running), &spec, &[], Some("k1"), 10);
        assert!(matches!(
            t,
            Triage::Done { refresh: Some(ref o), .. } if o == "Device.NAT.PortMapping."
        ));
    }

    #[test]
    fn a_task_awaiting_transfer_complete_waits_until_its_deadline() {
        let mut running = row(tasks::TaskStatus::Running);
        running.result = Some(r#"{"awaiting":"TransferComplete"}"#.into());
        running.expires_at = Some(100);
        let spec = TaskSpec::Reboot {};
        assert_eq!(triage(&running, &spec, &[], None, 50), Triage::Leave);
        assert_eq!(triage(&running, &spec, &[], None, 101), Triage::Expire);
    }

    #[test]
    fn pending_tasks_expire_wait_for_their_retry_time_or_go_out() {
        let spec = TaskSpec::Reboot {};
        let mut pending = row(tasks::TaskStatus::Pending);
        assert_eq!(triage(&pending, &spec, &[], None, 10), Triage::Send);
        pending.not_before = 20;
        assert_eq!(triage(&pending, &spec, &[], None, 10), Triage::Later);
        pending.expires_at = Some(5);
        assert_eq!(triage(&pending, &spec, &[], None, 10), Triage::Expire);
    }

    #[test]
    fn reads_are_cut_into_batches_and_only_the_last_is_marked() {
        let names: Vec<String> = (0..5).map(|i| format!("Device.P{i}")).collect();
        let b = batches(names.clone(), 2, |last| Origin::DiscoverValues { last });
        let sizes: Vec<usize> = b
            .iter()
            .map(|p| match &p.request {
                AcsRequest::GetParameterValues(g) => g.parameter_names.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        let lasts: Vec<bool> = b
            .iter()
            .map(|p| matches!(p.origin, Origin::DiscoverValues { last: true }))
            .collect();
        assert_eq!(lasts, [false, false, true]);
        // A batch size of 0 is taken as 1; nothing to read, no request.
        assert_eq!(batches(names.clone(), 0, |_| Origin::Refresh).len(), 5);
        assert!(batches(Vec::new(), 3, |_| Origin::Refresh).is_empty());
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("Device.P{i}")).collect()
    }

    #[test]
    fn a_faulted_discovery_batch_is_halved_down_to_the_name_that_is_dropped() {
        // Halves, the first first; an odd batch gives the second half the extra name.
        assert_eq!(
            after_discovery_fault(9005, names(5), 10),
            DiscoveryFault::Split(names(5)[..2].to_vec(), names(5)[2..].to_vec())
        );
        for code in [9001, 9002, 9003, 9004, 9005] {
            assert!(matches!(
                after_discovery_fault(code, names(2), 2),
                DiscoveryFault::Split(..)
            ));
        }
        // A name alone that still faults is dropped, even with no budget left.
        assert_eq!(
            after_discovery_fault(9005, names(1), 0),
            DiscoveryFault::Drop("Device.P0".into())
        );
        // No budget for another split, a fault that blames no name, nothing asked: give up.
        assert_eq!(
            after_discovery_fault(9005, names(4), 1),
            DiscoveryFault::GiveUp
        );
        assert_eq!(
            after_discovery_fault(9000, names(4), 10),
            DiscoveryFault::GiveUp
        );
        assert_eq!(
            after_discovery_fault(9000, names(1), 10),
            DiscoveryFault::GiveUp
        );
        assert_eq!(
            after_discovery_fault(9850, names(4), 10),
            DiscoveryFault::GiveUp
        );
        // An answer lost (a reconnection, a CPE that answered something else): the same
        // names again, while the budget lasts.
        for code in [CwmpFault::UNEXPECTED_RESPONSE, CwmpFault::NO_RESPONSE] {
            assert_eq!(
                after_discovery_fault(code, names(4), 1),
                DiscoveryFault::Retry(names(4))
            );
            assert_eq!(
                after_discovery_fault(code, names(4), 0),
                DiscoveryFault::GiveUp
            );
        }
        assert_eq!(
            after_discovery_fault(9005, Vec::new(), 10),
            DiscoveryFault::GiveUp
        );
    }

    #[test]
    fn isolating_one_bad_name_per_batch_fits_the_split_budget() {
        // 300 leaves in batches of 128: 3 batches, 7 halvings of 2 requests each.
        assert_eq!(discovery_split_budget(300, 128), 42);
        // Follow the rule on a batch of 128 with one bad name: it is found within 14.
        let bad = "Device.P77".to_string();
        let (mut queue, mut spent, mut dropped) = (vec![names(128)], 0, Vec::new());
        while let Some(batch) = queue.pop() {
            if !batch.contains(&bad) {
                continue;
            }
            match after_discovery_fault(9005, batch, 14 - spent) {
                DiscoveryFault::Split(a, b) => {
                    spent += 2;
                    queue.push(b);
                    queue.push(a);
                }
                DiscoveryFault::Drop(n) => dropped.push(n),
                other => panic!("{other:?} after {spent}"),
            }
        }
        assert_eq!((spent, dropped), (14, vec![bad]));
        // Small trees and batches: no split needed for batches of one name.
        assert_eq!(discovery_split_budget(10, 1), 0);
        assert_eq!(discovery_split_budget(3, 128), 4);
        assert_eq!(discovery_split_budget(0, 128), 0);
    }

    #[test]
    fn a_discovery_that_gave_up_waits_longer_each_time_except_at_bootstrap() {
        let given_up = discoveries_given_up([
            ("discovery incomplete: 9002 Internal error", 5_000),
            ("session: 9001 Request denied", 6_000),
            ("discovery incomplete: 9002 Internal error", 1_000),
        ]);
        assert_eq!(
            given_up,
            Some(GaveUp {
                last_at: 5_000,
                times: 2
            })
        );
        assert_eq!(discoveries_given_up([("discovery: 9005", 1)]), None);
        let retry: Vec<i64> = (1..=10).map(discovery_retry_ms).collect();
        assert_eq!(retry[0], 900_000);
        assert_eq!(retry[1], 1_800_000);
        assert_eq!(retry[6], 57_600_000);
        assert_eq!(retry[7..], [86_400_000; 3]);
        assert_eq!(discovery_retry_ms(0), 900_000);

        let never = DeviceFacts {
            created: false,
            discovered_at: None,
            has_new_work: false,
            gave_up: Some(GaveUp {
                last_at: 10_000,
                times: 2,
            }),
        };
        let periodic = [ev("2 PERIODIC", "")];
        assert!(discovery_may_wait(3600, &periodic, false, None, 10_000));
        assert!(!opening(&cfg(), &periodic, never, 10_000).discover);
        assert!(!opening(&cfg(), &periodic, never, 10_000 + 1_799_999).discover);
        assert!(opening(&cfg(), &periodic, never, 10_000 + 1_800_000).discover);
        // A BOOTSTRAP reads the tree whatever happened before.
        let bootstrap = [ev("0 BOOTSTRAP", "")];
        assert!(!discovery_may_wait(3600, &bootstrap, false, None, 10_000));
        assert!(opening(&cfg(), &bootstrap, never, 10_000).discover);
        // A tree read recently needs no look-up.
        assert!(!discovery_may_wait(
            3600,
            &periodic,
            false,
            Some(9_000),
            10_000
        ));
    }

    #[test]
    fn transient_faults_are_retried_with_backoff_until_the_attempts_run_out() {
        let transient = CwmpFault::new(9002, "internal error");
        assert_eq!(
            after_fault(&transient, 0, 1_000),
            AfterFault::Retry {
                attempts: 1,
                not_before: 1_000 + tasks::retry_delay_ms(1)
            }
        );
        assert_eq!(
            after_fault(&transient, tasks::MAX_ATTEMPTS - 1, 1_000),
            AfterFault::Final
        );
        let permanent = CwmpFault::new(9005, "invalid parameter name");
        assert!(permanent.is_permanent());
        assert_eq!(after_fault(&permanent, 0, 1_000), AfterFault::Final);
    }

    #[test]
    fn only_a_completed_session_that_left_no_task_drains_the_work_epoch() {
        assert_eq!(work_drained(true, false, true, 4), Some(4));
        assert_eq!(work_drained(false, false, true, 4), None);
        assert_eq!(work_drained(true, true, true, 4), None);
        assert_eq!(work_drained(true, false, false, 4), None);
    }

    #[test]
    fn only_a_first_task_whose_resend_is_harmless_starts_with_the_inform() {
        let quiet = Opening {
            bootstrap: false,
            discover: false,
            load_tasks: true,
        };
        let pending = row(tasks::TaskStatus::Pending);
        let periodic = [ev("2 PERIODIC", "")];
        assert!(starts_with_inform(&quiet, &pending, &spv(), &periodic, 1));
        let gpv: TaskSpec = serde_json::from_value(serde_json::json!({
            "rpc": "GetParameterValues", "names": ["Device.X"]
        }))
        .expect("a GetParameterValues spec");
        assert!(starts_with_inform(&quiet, &pending, &gpv, &periodic, 1));
        // Something is asked before it.
        for opening in [
            Opening {
                discover: true,
                ..quiet
            },
            Opening {
                bootstrap: true,
                ..quiet
            },
        ] {
            assert!(!starts_with_inform(
                &opening,
                &pending,
                &spv(),
                &periodic,
                1
            ));
        }
        // Not due, expired, or already running (an interrupted task is triaged first).
        let later = TaskRow {
            not_before: 5,
            ..pending.clone()
        };
        let expired = TaskRow {
            expires_at: Some(0),
            ..pending.clone()
        };
        let running = row(tasks::TaskStatus::Running);
        for r in [&later, &expired, &running] {
            assert!(!starts_with_inform(&quiet, r, &spv(), &periodic, 1));
        }
        // Confirmed by a later event, or a transfer: a running one is not simply resent.
        let schedule = TaskSpec::ScheduleInform { delay_seconds: 5 };
        for spec in [TaskSpec::Reboot {}, TaskSpec::FactoryReset {}, schedule] {
            assert!(!starts_with_inform(&quiet, &pending, &spec, &periodic, 1));
        }
        let download: TaskSpec = serde_json::from_value(serde_json::json!({
            "rpc": "Download", "url": "http://files.example/fw.bin",
            "file_type": "1 Firmware Upgrade Image"
        }))
        .expect("a Download spec");
        assert!(!starts_with_inform(
            &quiet, &pending, &download, &periodic, 1
        ));
        // What makes it safe: a session cut before it went out leaves it running, and the
        // next session sends it again (the device never reported its ParameterKey).
        assert_eq!(
            triage(&running, &spv(), &periodic, Some("older-key"), 1),
            Triage::Send
        );
        for spec in [
            gpv,
            TaskSpec::GetRpcMethods {},
            TaskSpec::GetAllQueuedTransfers {},
        ] {
            assert!(starts_with_inform(&quiet, &pending, &spec, &periodic, 1));
            assert_eq!(triage(&running, &spec, &periodic, None, 1), Triage::Send);
        }
    }
}
