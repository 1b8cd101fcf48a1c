//! What happens in a CWMP session, in business terms: record the Inform, reconcile tasks
//! with the events it carries, decide what to ask the device (bootstrap settings, discovery,
//! queued tasks), and file away what it answers.
//!
//! The protocol mechanics (message order, cwmp:ID, HoldRequests) belong to
//! [`crate::cwmp::Session`]; the HTTP layer feeds both. A [`DeviceSession`] is a plain value:
//! when a connection drops mid-session it is saved as JSON so any node can continue it.
//!
//! Database round trips of a periodic session with nothing to do: one `UPDATE … RETURNING`
//! (record the Inform, take the lock, load the device) and one `UPDATE` (release the lock).
//! The session-log row is written in batches off the request path.

use std::collections::VecDeque;

use crate::config::{Config, UnknownDevices};
use crate::cwmp::{
    self, AcsRequest, AcsResponse, CpeRequest, CpeResponse, CwmpFault, GetParameterValues, Inform,
    ParameterValue,
};
use crate::domain::converge;
use crate::domain::credentials::Recorded;
use crate::domain::params::ParamTree;
use crate::domain::plan;
use crate::domain::tasks::{self, Completion, TaskSpec, TaskStatus};
use crate::error::{Error, Result};
use crate::store::devices::{BeginSession, DeviceRow, IdentityUpdate, InformUpdate};
use crate::store::faults::NewFault;
use crate::store::params::{SessionClose, TreeWrite};
use crate::store::search::SearchWrite;
use crate::store::sessions::NewSessionLog;
use crate::store::tasks::{TaskRow, TaskUpdate};
use crate::store::Store;

pub use crate::domain::session_state::{
    CpeLogin, DeviceSession, DoneTask, Env, Identity, Origin, Planned,
};

/// How the session's log starts a fault of its bootstrap settings.
const BOOTSTRAP_FAULT: &str = "bootstrap settings: ";

/// Result of [`begin`].
pub enum Begin {
    Started(Box<DeviceSession>),
    Busy { owner: String },
    Rejected(String),
    WrongCredentials(String),
}

/// The root object of the data model the Inform speaks, and its model name
/// (`datamodel::RootModel::detect`; a device naming neither root is taken as `Device:2`).
pub fn detect_root(inform: &Inform) -> (&'static str, &'static str) {
    let path = inform
        .parameter_list
        .iter()
        .map(|p| p.name.as_str())
        .find(|n| n.starts_with("InternetGatewayDevice.") || n.starts_with("Device."))
        .unwrap_or("Device.");
    let summary = inform
        .parameter_list
        .iter()
        .find(|p| p.name.ends_with(".DeviceSummary"))
        .map(|p| p.value.as_str());
    let root_version = inform.parameter("Device.RootDataModelVersion");
    let model = crate::datamodel::RootModel::detect(path, summary, root_version)
        .unwrap_or(crate::datamodel::RootModel::Device2);
    (model.root_object(), model.as_str())
}

fn param<'a>(inform: &'a Inform, root: &str, rel: &str) -> Option<&'a str> {
    let full = format!("{root}.{rel}");
    inform.parameter(&full)
}

/// Record the Inform, take the device's session lock and plan the session.
pub async fn begin(
    env: &Env<'_>,
    inform: &Inform,
    cwmp_version: &str,
    source_ip: &str,
    owner: String,
    takeover: Option<String>,
    login: CpeLogin,
) -> Result<Begin> {
    let default_credentials = login.shared();
    let d = &inform.device_id;
    if d.oui.is_empty() || d.serial_number.is_empty() {
        return Err(Error::invalid(
            "DeviceId",
            "the Inform has no OUI or SerialNumber",
        ));
    }
    let device_id = cwmp::device_id(&d.oui, &d.product_class, &d.serial_number);
    let (root, model) = detect_root(inform);
    let now = env.now;
    // A CPE may put secrets in its Inform (e.g. a password parameter with notification on):
    // they are kept neither in the stored Inform nor in the searchable values.
    let mut inform_tree = ParamTree::new();
    for p in &inform.parameter_list {
        if !crate::domain::params::is_secret(&p.name) {
            inform_tree.set_value(&p.name, &p.value, &p.xsd_type, now);
        }
    }
    let bootstrap = inform.has_event("0 BOOTSTRAP");
    let update = InformUpdate {
        id: device_id.clone(),
        oui: d.oui.clone(),
        product_class: d.product_class.clone(),
        serial_number: d.serial_number.clone(),
        manufacturer: d.manufacturer.clone(),
        model_name: param(inform, root, "DeviceInfo.ModelName").map(str::to_string),
        software_version: param(inform, root, "DeviceInfo.SoftwareVersion").map(str::to_string),
        hardware_version: param(inform, root, "DeviceInfo.HardwareVersion").map(str::to_string),
        root_model: model.to_string(),
        cwmp_version: cwmp_version.to_string(),
        source_ip: source_ip.to_string(),
        retry_count: i32::try_from(inform.retry_count).unwrap_or(i32::MAX),
        connection_request_url: param(inform, root, "ManagementServer.ConnectionRequestURL")
            .map(str::to_string),
        inform_params: inform_tree.encode(false),
        boot: inform.has_event("1 BOOT"),
        bootstrap,
    };
    // Shared with the store's thread, not copied for it (a retry hands it over again).
    let update = std::sync::Arc::new(update);
    let lock_until = now + lock_ttl_ms(env.config);
    let allow_create = env.config.cwmp.unknown_devices == UnknownDevices::Accept;
    // Before the device's work is read: a task added from here on is either read below or
    // rings this session (see `next_request`).
    if let Some(sv) = env.services {
        sv.connreq.session_opening(&device_id, &owner);
    }
    let not_started = |dev: &str| {
        if let Some(sv) = env.services {
            sv.connreq.session_gone(dev, &owner, now);
        }
    };
    let mut reset_done = false;
    let refresh_secs = env.config.cwmp.discovery_refresh_secs;
    // Trust on first use: recorded in the Inform's hand-off, sent with the bootstrap
    // settings (never as a task).
    let credentials = crate::domain::credentials::prepare(env, &login, inform)
        .inspect_err(|_| not_started(&device_id))?;
    let (mut device, created, reads, recorded) = loop {
        let (owner2, takeover2, update2) = (owner.clone(), takeover.clone(), update.clone());
        let events = inform.events.clone();
        let credentials2 = credentials.clone();
        let begun = env
            .store
            .run_short(move |s| {
                let begun = s.begin_session(
                    &update2,
                    &owner2,
                    now,
                    lock_until,
                    allow_create,
                    takeover2.as_deref(),
                    default_credentials,
                )?;
                let (reads, recorded) = match &begun {
                    BeginSession::Started { device, created } => (
                        read_with_inform(s, device, *created, &events, refresh_secs, now)?,
                        crate::domain::credentials::record(s, &device.id, &credentials2, now)?,
                    ),
                    _ => (InformReads::default(), Recorded::Nothing),
                };
                Ok((begun, reads, recorded))
            })
            .await
            .inspect_err(|_| not_started(&device_id))?;
        match begun {
            (BeginSession::Started { device, created }, reads, recorded) => {
                break (device, created, reads, recorded)
            }
            (BeginSession::Busy { owner, .. }, ..) => {
                not_started(&device_id);
                return Ok(Begin::Busy { owner });
            }
            (BeginSession::OwnCredentialsRequired, ..)
                if !reset_done
                    && bootstrap
                    && crate::domain::credentials::factory_reset_ordered(env, &device_id)
                        .await
                        .inspect_err(|_| not_started(&device_id))? =>
            {
                reset_done = true;
            }
            (BeginSession::OwnCredentialsRequired, ..) => {
                not_started(&device_id);
                return Ok(Begin::WrongCredentials(format!(
                    "device {device_id} has its own CWMP credentials (issued at first contact or \
                     provisioned); the shared default ones no longer open it. If it was \
                     factory-reset, reset its credentials (ferroacs device reset-credentials)"
                )));
            }
            (BeginSession::Unknown, ..) => {
                not_started(&device_id);
                return Ok(Begin::Rejected(format!(
                    "device {device_id} is not provisioned and unknown devices are rejected (cwmp.unknown_devices)"
                )));
            }
        }
    };
    if let (Some(sv), true) = (env.services, inform.has_event("6 CONNECTION REQUEST")) {
        sv.connreq.confirmed(env.store, &device_id, now).await?;
    }
    let mut s = DeviceSession {
        device_id,
        owner,
        started_at: now,
        lock_until,
        source_ip: source_ip.to_string(),
        root: root.to_string(),
        events: inform.events.iter().map(|e| e.event_code.clone()).collect(),
        rpcs: Vec::new(),
        faults: Vec::new(),
        work_epoch: device.work_epoch,
        tasks_checked: false,
        tasks_left: false,
        queue: VecDeque::new(),
        current: None,
        learnt: ParamTree::new(),
        learnt_blob: None,
        params_delta: device.params_delta.take(),
        subtrees_removed: Vec::new(),
        discovered: false,
        discovery_splits_left: 0,
        discovery_dropped: Vec::new(),
        bootstrap_resent: false,
        created,
        converge: None,
        known: None,
        search_sig: device.search_sig,
        inform_values: inform
            .parameter_list
            .iter()
            .filter(|p| !crate::domain::params::is_secret(&p.name))
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect(),
        batch_values: Vec::new(),
        opened_with_default: default_credentials,
        cwmp_version: cwmp_version.to_string(),
        tasks_done: Vec::new(),
        task_rows: Vec::new(),
        started: None,
        identity: Some(Identity {
            manufacturer: device.manufacturer.clone(),
            model_name: device.model_name.clone(),
            software_version: device.software_version.clone(),
            hardware_version: device.hardware_version.clone(),
        }),
    };
    // How to reach the device (ConnReqJabberID, UDPConnectionRequestAddress, NATDetected) is
    // reported with VALUE CHANGE and is no forced Inform parameter: it goes to the stored
    // tree, so a later Inform without it does not make ferroacs forget it.
    if s.events.iter().any(|e| e == "4 VALUE CHANGE") {
        let ms = format!("{}.ManagementServer.", s.root);
        for p in &inform.parameter_list {
            let reach = p
                .name
                .strip_prefix(&ms)
                .is_some_and(|leaf| crate::domain::connreq::REPORTED_REACH.contains(&leaf));
            if reach {
                s.learnt.set_value(&p.name, &p.value, &p.xsd_type, now);
            }
        }
    }
    let acs_credentials =
        crate::domain::credentials::settings(&s.device_id, &s.root, credentials, recorded);
    plan(env, &mut s, &device, inform, acs_credentials, reads).await?;
    crate::domain::tr111::after_inform(&mut s);
    Ok(Begin::Started(Box::new(s)))
}

/// What the Inform's hand-off to the store read besides the device row.
#[derive(Default)]
struct InformReads {
    tasks: Option<InformTasks>,
    converge: Option<converge::Read>,
    /// Discoveries that gave up, when a discovery is due otherwise.
    gave_up: Option<plan::GaveUp>,
}

/// In the Inform's hand-off, once the session holds the device's lock (`device`, the row
/// the Inform updated): read the tasks the session will look at, start the first one when
/// it may be (`plan::starts_with_inform`), and read what convergence plans from.
fn read_with_inform(
    st: &Store,
    device: &DeviceRow,
    created: bool,
    events: &[cwmp::EventStruct],
    discovery_refresh_secs: u64,
    now: i64,
) -> Result<InformReads> {
    let gave_up = discoveries_given_up(st, device, created, events, discovery_refresh_secs, now)?;
    let tasks = if plan::loads_tasks(events, device.has_new_work()) {
        let rows = st.device_tasks_in(&device.id, &[TaskStatus::Pending, TaskStatus::Running])?;
        let opening = plan::opening_after(
            discovery_refresh_secs,
            events,
            facts(device, created, gave_up),
            now,
        );
        let first = rows.first().and_then(|row| {
            let spec = tasks::open_args(&st.keyring(), &row.args)
                .and_then(|a| Ok(serde_json::from_str::<TaskSpec>(&a)?))
                .ok()?;
            plan::starts_with_inform(&opening, row, &spec, events, now).then_some(row.id)
        });
        let started = match first {
            Some(id) => st.transition_task(id, &[TaskStatus::Pending], &running_update(now))?,
            None => None,
        };
        Some(InformTasks { rows, started })
    } else {
        None
    };
    let wants = converge::wants(device, created, events);
    let converge = (wants.lines || wants.presets)
        .then(|| converge::read(st, &device.id, wants))
        .transpose()?;
    Ok(InformReads {
        tasks,
        converge,
        gave_up,
    })
}

/// The device's discoveries that gave up since its tree was last read whole, looked up only
/// when a discovery is due otherwise (`plan::discovery_may_wait`), among its 32 newest
/// faults since then (a discovery records at most two: a refused GetParameterNames, and
/// why it gave up; other faults in between may hide older ones, which only shortens the
/// wait).
fn discoveries_given_up(
    st: &Store,
    device: &DeviceRow,
    created: bool,
    events: &[cwmp::EventStruct],
    discovery_refresh_secs: u64,
    now: i64,
) -> Result<Option<plan::GaveUp>> {
    if !plan::discovery_may_wait(
        discovery_refresh_secs,
        events,
        created,
        device.discovered_at,
        now,
    ) {
        return Ok(None);
    }
    let filter = crate::store::faults::FaultFilter {
        device_id: Some(device.id.clone()),
        since: device.discovered_at,
        ..Default::default()
    };
    let rows = st.find_faults(&filter, None, 32)?;
    Ok(plan::discoveries_given_up(
        rows.iter().map(|f| (f.message.as_str(), f.created_at)),
    ))
}

/// The tasks read in the Inform's hand-off: the device's open tasks as they were read, and
/// the first of them as moved to `running` there, when it was.
struct InformTasks {
    rows: Vec<TaskRow>,
    started: Option<TaskRow>,
}

/// What the device row says for `plan::opening`.
fn facts(device: &DeviceRow, created: bool, gave_up: Option<plan::GaveUp>) -> plan::DeviceFacts {
    plan::DeviceFacts {
        created,
        discovered_at: device.discovered_at,
        has_new_work: device.has_new_work(),
        gave_up,
    }
}

/// A task's move to `running`, made just before its request goes out.
fn running_update(now: i64) -> TaskUpdate {
    TaskUpdate {
        status: Some(TaskStatus::Running),
        started_at: Some(Some(now)),
        result: Some(None),
        updated_at: Some(now),
        ..TaskUpdate::default()
    }
}

fn lock_ttl_ms(cfg: &Config) -> i64 {
    (cfg.cwmp.session_timeout_secs as i64 + 20) * 1000
}

/// Does the session need its lock extended (long discovery sessions)?
pub fn lock_needs_refresh(s: &DeviceSession, cfg: &Config, now: i64) -> Option<i64> {
    let ttl = lock_ttl_ms(cfg);
    (now > s.lock_until - ttl / 2).then_some(now + ttl)
}

/// Decide what to ask the device in this session.
async fn plan(
    env: &Env<'_>,
    s: &mut DeviceSession,
    device: &DeviceRow,
    inform: &Inform,
    acs_credentials: Vec<cwmp::ParameterValue>,
    reads: InformReads,
) -> Result<()> {
    let cfg = &env.config.cwmp;
    let facts = facts(device, s.created, reads.gave_up);
    let decided = plan::opening(cfg, &inform.events, facts, env.now);

    // Bootstrap settings.
    let settings = decided.bootstrap && plan::wants_bootstrap_settings(cfg);
    if settings || !acs_credentials.is_empty() {
        let cr = (decided.bootstrap && cfg.set_connection_request_credentials)
            .then(|| (format!("cr-{}", random_token(6)), random_token(16)));
        let interval = if decided.bootstrap {
            cfg.periodic_inform_interval_secs
        } else {
            0
        };
        s.queue.push_back(plan::bootstrap_settings(
            &s.root,
            interval,
            cr,
            acs_credentials,
            cfg.boolean_literal,
        ));
    }

    // Discovery of the whole tree.
    if decided.discover {
        s.queue.push_back(plan::discover_names(&s.root));
    }

    // Tasks: when something new was queued, or events may complete running tasks.
    if decided.load_tasks {
        load_tasks(env, s, Some(inform), reads.tasks).await?;
    }

    // VoIP lines and presets: planned once the queue runs dry (after discovery).
    converge::prepare(env, s, device, inform, reads.converge).await?;
    Ok(())
}

/// Tasks were added while the session ran: read the device's work epoch, then queue its
/// pending tasks (those it had at the Inform are finished or running by now).
async fn reload_tasks(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    let id = s.device_id.clone();
    let epoch = env.store.run_short(move |st| st.work_epoch(&id)).await?;
    if let Some(e) = epoch {
        s.work_epoch = e;
    }
    load_tasks(env, s, None, None).await
}

/// Whether the device's work epoch moved since the session last read it (it then takes the
/// new epoch).
async fn work_added(env: &Env<'_>, s: &mut DeviceSession) -> Result<bool> {
    let id = s.device_id.clone();
    match env.store.run_short(move |st| st.work_epoch(&id)).await? {
        Some(e) if e != s.work_epoch => {
            s.work_epoch = e;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Load the device's pending and running tasks: finish those the Inform's events complete,
/// recover interrupted ones, and queue the pending ones. Without an Inform (tasks added
/// during the session) only pending tasks are read. `read`: the rows, when the Inform's
/// hand-off read them already (and maybe started the first).
async fn load_tasks(
    env: &Env<'_>,
    s: &mut DeviceSession,
    inform: Option<&Inform>,
    read: Option<InformTasks>,
) -> Result<()> {
    let id = s.device_id.clone();
    let states: &'static [TaskStatus] = match inform {
        Some(_) => &[TaskStatus::Pending, TaskStatus::Running],
        None => &[TaskStatus::Pending],
    };
    let (rows, mut started) = match read {
        Some(read) => (read.rows, read.started),
        None => (
            env.store
                .run_short(move |st| st.device_tasks_in(&id, states))
                .await?,
            None,
        ),
    };
    s.tasks_checked = true;
    let now = env.now;
    let param_key = inform
        .and_then(|i| i.parameter(&format!("{}.ManagementServer.ParameterKey", s.root)))
        .map(str::to_string);
    // The stored tree, when a task needs it (types of untyped values): kept in the session,
    // where convergence and the session's end use it instead of reading it again.
    let mut tree: Option<ParamTree> = s.known.take();
    let keyring = env.store.keyring();
    for row in rows {
        // Secrets in the arguments are sealed at rest; the device gets the real values.
        let opened = tasks::open_args(&keyring, &row.args)
            .and_then(|a| Ok(serde_json::from_str::<TaskSpec>(&a)?));
        let spec: TaskSpec = match opened {
            Ok(spec) => spec,
            Err(e) => {
                finish_task(
                    env,
                    &row,
                    TaskStatus::Fault,
                    None,
                    Some((8002, format!("stored task is unreadable: {e}"))),
                    None,
                )
                .await?;
                continue;
            }
        };
        match plan::triage(
            &row,
            &spec,
            inform.map_or(&[][..], |i| &i.events[..]),
            param_key.as_deref(),
            now,
        ) {
            plan::Triage::Expire => {
                finish_task(env, &row, TaskStatus::Expired, None, None, None).await?;
                continue;
            }
            plan::Triage::Done { result, refresh } => {
                finish_task(env, &row, TaskStatus::Done, Some(result), None, None).await?;
                if let Some(object) = refresh {
                    s.queue.push_back(self::refresh(&object));
                }
                continue;
            }
            plan::Triage::Leave => continue,
            plan::Triage::Later => {
                s.tasks_left = true;
                continue;
            }
            plan::Triage::Await(what) => {
                await_confirmation(env, &row, &spec, what).await?;
                continue;
            }
            plan::Triage::ConfirmThenSend => {
                // Maybe accepted and not carried out yet: ask before the resend queued
                // below, which the answer drops when the device holds the transfer.
                s.queue
                    .push_back(plan::confirm_transfer(row.id, &s.cwmp_version));
            }
            plan::Triage::Send => {}
        }
        // The stored tree gives the types of values set without one.
        let untyped = match &spec {
            TaskSpec::SetParameterValues { values } => values.iter().any(|v| v.xsd_type.is_none()),
            _ => false,
        };
        if tree.is_none() && untyped {
            let id = s.device_id.clone();
            tree = Some(
                env.store
                    .run(move |st| crate::domain::params::read_tree(st, &id))
                    .await?,
            );
        }
        let file = match &spec {
            TaskSpec::Download {
                file_id: Some(fid), ..
            }
            | TaskSpec::ScheduleDownload {
                file_id: Some(fid), ..
            } => {
                let fid = fid.clone();
                env.store.run(move |st| st.get_file(&fid)).await?
            }
            _ => None,
        };
        let known = tree.as_ref();
        let types = |n: &str| {
            known
                .and_then(|t| t.get(n))
                .map(|e| e.xsd_type.to_string())
                .filter(|t| !t.is_empty())
        };
        let base = env.files_base_url.clone();
        let signer = env.services.map(|sv| &sv.signer);
        // Long enough for the device to start the transfer after its delay or time window.
        let valid_until = now / 1000 + url_validity_secs(env.config, &spec);
        let download_url = |file_id: &str| -> Result<(String, u32)> {
            let f = file
                .as_ref()
                .ok_or_else(|| Error::not_found(format!("file {file_id}")))?;
            let url = match signer {
                Some(sg) => sg.download_url(&base, &f.id, &s.device_id, valid_until),
                None => format!("{base}/files/{}", f.id),
            };
            Ok((url, u32::try_from(f.size).unwrap_or(0)))
        };
        let upload_url = || match signer {
            Some(sg) => sg.upload_url(&base, &s.device_id, valid_until),
            None => format!("{}/uploads/{}", base, s.device_id),
        };
        let req = spec.to_request(&row.command_key, &types, &download_url, &upload_url);
        match req {
            Ok(AcsRequest::GetParameterValues(g))
                if g.parameter_names.len() > env.config.cwmp.gpv_batch_size.max(1) =>
            {
                // Large reads go in batches; the task completes with the last one.
                let id = row.id;
                s.queue.extend(plan::batches(
                    g.parameter_names,
                    env.config.cwmp.gpv_batch_size,
                    |last| Origin::TaskBatch { id, last },
                ));
                keep_row(s, &mut started, row);
            }
            Ok(request) => {
                s.queue.push_back(Planned {
                    origin: Origin::Task { id: row.id },
                    request,
                });
                keep_row(s, &mut started, row);
            }
            Err(e) => {
                finish_task(
                    env,
                    &row,
                    TaskStatus::Fault,
                    None,
                    Some((8002, e.to_string())),
                    None,
                )
                .await?;
            }
        }
    }
    s.known = tree;
    Ok(())
}

/// Keep the row of a queued task: as moved to `running` with the Inform, when it was (the
/// session then does not move it again when it goes out).
fn keep_row(s: &mut DeviceSession, started: &mut Option<TaskRow>, row: TaskRow) {
    let row = match started.take_if(|r| r.id == row.id) {
        Some(running) => {
            s.started = Some(running.id);
            running
        }
        None => row,
    };
    s.task_rows.push(row);
}

/// A running task whose outcome the device reports later (`what`): keep it running, awaiting
/// that, until the transfer timeout (plus any delay or window) has passed.
async fn await_confirmation(
    env: &Env<'_>,
    row: &TaskRow,
    spec: &TaskSpec,
    what: &str,
) -> Result<()> {
    let now = env.now;
    let deadline = now + 1000 * url_validity_secs(env.config, spec);
    let update = TaskUpdate {
        result: Some(Some(serde_json::json!({ "awaiting": what }).to_string())),
        expires_at: Some(Some(deadline)),
        updated_at: Some(now),
        ..TaskUpdate::default()
    };
    let id = row.id;
    env.store
        .run_short(move |st| st.transition_task(id, &[TaskStatus::Running], &update))
        .await?;
    Ok(())
}

/// The answer to a [`Origin::ConfirmTransfer`] question: the device holds the transfer of
/// task `id` (drop the resend queued after the question and wait for its
/// TransferComplete), or it does not (the resend goes out). `held`: `None` when the device
/// could not say (a fault): nothing is sent twice, the task waits for its TransferComplete
/// until the transfer timeout.
async fn on_transfer_answer(
    env: &Env<'_>,
    s: &mut DeviceSession,
    id: i64,
    held: Option<Vec<String>>,
) -> Result<()> {
    let Some(row) = env.store.run_short(move |st| st.get_task(id)).await? else {
        return Ok(());
    };
    if !plan::holds_transfer(held.as_deref(), &row.command_key) {
        return Ok(());
    }
    s.queue
        .retain(|q| !matches!(q.origin, Origin::Task { id: other } if other == id));
    let spec = tasks::open_args(&env.store.keyring(), &row.args)
        .ok()
        .and_then(|a| serde_json::from_str::<TaskSpec>(&a).ok());
    if let Some(spec) = spec {
        await_confirmation(env, &row, &spec, "TransferComplete").await?;
    }
    Ok(())
}

/// Seconds a signed file URL stays valid: the transfer timeout plus any delay or window.
fn url_validity_secs(cfg: &Config, spec: &TaskSpec) -> i64 {
    let base = cfg.api.task_transfer_timeout_secs.max(600) as i64;
    let extra = match spec {
        TaskSpec::Download { delay_seconds, .. } | TaskSpec::Upload { delay_seconds, .. } => {
            *delay_seconds as i64
        }
        TaskSpec::ScheduleDownload { windows, .. } => {
            windows.iter().map(|w| w.end as i64).max().unwrap_or(0)
        }
        _ => 0,
    };
    base + extra
}

fn refresh(object: &str) -> Planned {
    Planned {
        origin: Origin::Refresh,
        request: AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: vec![object.to_string()],
        }),
    }
}

/// The task is done: it becomes `done` in the transaction that stores what the session
/// learnt (before the next request to the device, or at the end of the session), so once
/// it reads `done` the values it read or set are readable through the API.
fn finish_task_readable(s: &mut DeviceSession, row: &TaskRow, result: serde_json::Value) {
    s.tasks_done.push(DoneTask {
        id: row.id,
        result: result.to_string(),
    });
}

/// The transition of a task the device carried out.
fn done_update(result: &str, now: i64) -> TaskUpdate {
    TaskUpdate {
        status: Some(TaskStatus::Done),
        result: Some(Some(result.to_string())),
        finished_at: Some(Some(now)),
        updated_at: Some(now),
        ..TaskUpdate::default()
    }
}

/// What the session learnt so far (the saved part and the rest), if anything.
fn learnt_so_far(s: &DeviceSession) -> Option<ParamTree> {
    let mut learnt = match &s.learnt_blob {
        Some(b) => ParamTree::decode(b).unwrap_or_default(),
        None => ParamTree::new(),
    };
    learnt.overlay(&s.learnt);
    (!learnt.is_empty() || !s.subtrees_removed.is_empty()).then_some(learnt)
}

/// The device's stored tree with `removed` subtrees dropped and `learnt` laid over it.
fn stored_with(
    st: &Store,
    device_id: &str,
    removed: &[String],
    learnt: &ParamTree,
) -> Result<ParamTree> {
    Ok(merged(
        crate::domain::params::read_tree(st, device_id)?,
        removed,
        learnt,
    ))
}

/// How a session writes what it learnt: as a delta over the stored tree when it stays small
/// and nothing was removed (no read of the tree), else the whole tree, from `known` when the
/// session read it. The delta the device then has.
fn tree_write(
    st: &Store,
    device_id: &str,
    known: Option<ParamTree>,
    previous_delta: Option<&[u8]>,
    removed: &[String],
    learnt: &ParamTree,
) -> Result<TreeWriteOwned> {
    if removed.is_empty() {
        if let Some(delta) = crate::domain::params::delta_after(previous_delta, learnt) {
            return Ok(TreeWriteOwned::Delta(delta));
        }
    }
    whole_tree_write(st, device_id, known, removed, learnt)
}

/// The whole tree with what the session learnt (the write when no delta will do).
fn whole_tree_write(
    st: &Store,
    device_id: &str,
    known: Option<ParamTree>,
    removed: &[String],
    learnt: &ParamTree,
) -> Result<TreeWriteOwned> {
    let tree = match known {
        Some(stored) => merged(stored, removed, learnt),
        None => stored_with(st, device_id, removed, learnt)?,
    };
    let (blob, count) = encoded(tree);
    Ok(TreeWriteOwned::Whole(blob, count))
}

/// An owned [`TreeWrite`].
enum TreeWriteOwned {
    Whole(Vec<u8>, i32),
    Delta(Vec<u8>),
}

impl TreeWriteOwned {
    /// The write, over a device whose delta was `previous`.
    fn as_write(&self, previous: Option<&[u8]>) -> TreeWrite<'_> {
        match self {
            TreeWriteOwned::Whole(b, n) => TreeWrite::Whole {
                data: b,
                count: *n,
                had_delta: previous.is_some(),
            },
            TreeWriteOwned::Delta(d) => TreeWrite::Delta(d),
        }
    }

    /// The device's delta once this is written.
    fn into_delta(self) -> Option<Vec<u8>> {
        match self {
            TreeWriteOwned::Whole(..) => None,
            TreeWriteOwned::Delta(d) => Some(d),
        }
    }
}

/// `stored` without the subtrees `removed`, with `learnt` over it.
fn merged(mut tree: ParamTree, removed: &[String], learnt: &ParamTree) -> ParamTree {
    for r in removed {
        tree.remove_subtree(r);
    }
    tree.overlay(learnt);
    tree
}

/// A tree as stored: its encoding and its parameter count.
fn encoded(tree: ParamTree) -> (Vec<u8>, i32) {
    let count = i32::try_from(tree.len()).unwrap_or(i32::MAX);
    (tree.encode(true), count)
}

/// Make the tasks of [`DeviceSession::tasks_done`] `done` with what the session learnt
/// stored, and move `start` (the next task to send) in the same transaction. The row
/// `start` moved, if it did. What was learnt stays in the session and is merged again at
/// its end.
async fn flush_done(
    env: &Env<'_>,
    s: &mut DeviceSession,
    start: Option<(i64, TaskUpdate)>,
) -> Result<Option<TaskRow>> {
    let now = env.now;
    let done = std::mem::take(&mut s.tasks_done);
    let transitions: Vec<(i64, TaskUpdate)> = done
        .iter()
        .map(|d| (d.id, done_update(&d.result, now)))
        .collect();
    let learnt = learnt_so_far(s);
    let removed = s.subtrees_removed.clone();
    let device = s.device_id.clone();
    let previous_delta = s.params_delta.clone();
    let flushed = env
        .store
        .run(move |st| {
            let tree = match learnt {
                Some(learnt) => Some(tree_write(
                    st,
                    &device,
                    None,
                    previous_delta.as_deref(),
                    &removed,
                    &learnt,
                )?),
                None => None,
            };
            let started = st.transition_tasks_with_tree(
                &device,
                tree.as_ref().map(|t| t.as_write(previous_delta.as_deref())),
                now,
                &transitions,
                start.as_ref().map(|(id, u)| (*id, u)),
            )?;
            Ok((started, tree.map(TreeWriteOwned::into_delta)))
        })
        .await;
    let started = match flushed {
        Ok((started, delta)) => {
            if let Some(delta) = delta {
                s.params_delta = delta;
            }
            started
        }
        Err(e) => {
            // Still carried out: the session's closing transaction tries again.
            s.tasks_done = done;
            return Err(e);
        }
    };
    if let Some(sv) = env.services {
        for d in &done {
            sv.task_watch.notify(d.id);
        }
    }
    Ok(started)
}

/// The task row this session read last, or the stored one.
async fn task_row(env: &Env<'_>, s: &DeviceSession, id: i64) -> Result<Option<TaskRow>> {
    if let Some(row) = s.task_rows.iter().find(|r| r.id == id) {
        return Ok(Some(row.clone()));
    }
    env.store.run_short(move |st| st.get_task(id)).await
}

async fn finish_task(
    env: &Env<'_>,
    row: &TaskRow,
    status: TaskStatus,
    result: Option<serde_json::Value>,
    fault: Option<(u32, String)>,
    fault_detail: Option<serde_json::Value>,
) -> Result<()> {
    let now = env.now;
    let update = TaskUpdate {
        status: Some(status),
        // A final state replaces what the task was waiting for (`awaiting`).
        result: Some(result.map(|r| r.to_string())),
        fault_code: fault.as_ref().map(|(c, _)| Some(*c as i32)),
        fault_string: fault.as_ref().map(|(_, s)| Some(s.clone())),
        fault_detail: fault_detail.map(|d| Some(d.to_string())),
        finished_at: Some(Some(now)),
        updated_at: Some(now),
        ..TaskUpdate::default()
    };
    let id = row.id;
    let new_fault = fault.map(|(code, message)| NewFault {
        device_id: row.device_id.clone(),
        task_id: Some(row.id),
        code: code as i32,
        message: format!("{}: {message}", row.rpc),
        detail: None,
        created_at: now,
    });
    env.store
        .run_short(move |st| {
            st.transition_task(id, &[TaskStatus::Pending, TaskStatus::Running], &update)?;
            if let Some(f) = new_fault {
                st.insert_fault(&f)?;
            }
            Ok(())
        })
        .await?;
    if let Some(sv) = env.services {
        sv.task_watch.notify(id);
    }
    Ok(())
}

/// Answer a request the CPE made.
pub async fn on_cpe_request(
    env: &Env<'_>,
    s: &mut DeviceSession,
    req: &CpeRequest,
) -> Result<AcsResponse> {
    s.rpcs.push(format!("<{}", req.name()));
    match req {
        CpeRequest::TransferComplete(tc) => {
            complete_by_command_key(
                env,
                s,
                &tc.command_key,
                tc.fault.fault_code,
                &tc.fault.fault_string,
                &["Download", "ScheduleDownload", "Upload"],
            )
            .await?;
            Ok(AcsResponse::TransferComplete)
        }
        CpeRequest::DuStateChangeComplete(d) => {
            let key = d.command_key.clone().unwrap_or_default();
            let failed = d.results.iter().find(|r| r.fault.fault_code != 0);
            let (code, msg) = failed
                .map(|r| (r.fault.fault_code, r.fault.fault_string.clone()))
                .unwrap_or((0, String::new()));
            complete_by_command_key(env, s, &key, code, &msg, &["ChangeDUState"]).await?;
            Ok(AcsResponse::DuStateChangeComplete)
        }
        CpeRequest::GetRpcMethods => Ok(AcsResponse::GetRpcMethods {
            method_list: vec![
                "Inform".into(),
                "GetRPCMethods".into(),
                "TransferComplete".into(),
                "AutonomousTransferComplete".into(),
                "RequestDownload".into(),
                "DUStateChangeComplete".into(),
                "AutonomousDUStateChangeComplete".into(),
                "Kicked".into(),
            ],
        }),
        CpeRequest::Kicked(k) => Ok(AcsResponse::Kicked {
            next_url: k.next.clone(),
        }),
        other => other.acknowledgement().ok_or_else(|| {
            Error::invalid(
                "request",
                format!("{} cannot be answered here", other.name()),
            )
        }),
    }
}

async fn complete_by_command_key(
    env: &Env<'_>,
    s: &mut DeviceSession,
    key: &str,
    fault_code: u32,
    fault_string: &str,
    rpcs: &[&str],
) -> Result<()> {
    let id = s.device_id.clone();
    let rows = env
        .store
        .run(move |st| st.device_tasks_in(&id, &[TaskStatus::Running, TaskStatus::Pending]))
        .await?;
    for row in rows
        .iter()
        .filter(|r| r.command_key == key && rpcs.contains(&r.rpc.as_str()))
    {
        if fault_code == 0 {
            finish_task(
                env,
                row,
                TaskStatus::Done,
                Some(serde_json::json!({"transfer": "complete"})),
                None,
                None,
            )
            .await?;
        } else {
            s.faults.push(format!("{} {}", fault_code, fault_string));
            finish_task(
                env,
                row,
                TaskStatus::Fault,
                None,
                Some((fault_code, fault_string.to_string())),
                None,
            )
            .await?;
        }
    }
    Ok(())
}

/// The next request for the device, if any. Marks tasks running before they are sent.
pub async fn next_request(env: &Env<'_>, s: &mut DeviceSession) -> Result<Option<AcsRequest>> {
    loop {
        if let Some(req) = next_queued(env, s).await? {
            return Ok(Some(req));
        }
        if s.converge.is_none() {
            // Before the final empty response: tasks added during the session run in it.
            let rung = env
                .services
                .is_some_and(|sv| sv.connreq.session_closing(&s.device_id, &s.owner));
            if rung {
                reload_tasks(env, s).await?;
                continue;
            }
            if env.config.cwmp.save_every_exchange && work_added(env, s).await? {
                // The session may have moved between nodes, and a ring reaches only the
                // node that opened it: the database says whether work was added.
                load_tasks(env, s, None, None).await?;
                continue;
            }
            return Ok(None);
        }
        crate::domain::converge::plan_round(env, s).await?;
    }
}

async fn next_queued(env: &Env<'_>, s: &mut DeviceSession) -> Result<Option<AcsRequest>> {
    while let Some(p) = s.queue.pop_front() {
        let task = match p.origin {
            Origin::Task { id } | Origin::TaskBatch { id, .. } => Some(id),
            _ => None,
        };
        if task.is_some() && task == s.started {
            // Moved to `running` in the Inform's hand-off (`plan::starts_with_inform`).
            s.started = None;
        } else if let Some(id) = task {
            let update = running_update(env.now);
            let started = if s.tasks_done.is_empty() {
                env.store
                    .run_short(move |st| {
                        st.transition_task(id, &[TaskStatus::Pending, TaskStatus::Running], &update)
                    })
                    .await?
            } else {
                // The tasks the device carried out become done first, in the same
                // transaction: at most the task in flight has an unknown outcome.
                flush_done(env, s, Some((id, update))).await?
            };
            match &started {
                Some(row) => match s.task_rows.iter_mut().find(|r| r.id == id) {
                    Some(cached) => *cached = row.clone(),
                    None => s.task_rows.push(row.clone()),
                },
                None => s.task_rows.retain(|r| r.id != id),
            }
            if started.is_none() {
                // Cancelled (or finished) meanwhile: drop its other batches too.
                s.queue.retain(
                    |q| !matches!(q.origin, Origin::TaskBatch { id: other, .. } if other == id),
                );
                s.batch_values.clear();
                continue;
            }
        }
        if !s.tasks_done.is_empty() {
            // Before any other request: it may change what the device holds.
            flush_done(env, s, None).await?;
        }
        s.rpcs.push(format!(">{}", p.request.name()));
        s.current = Some(p.origin);
        return Ok(Some(p.request));
    }
    Ok(None)
}

/// File away the device's answer to the current request.
pub async fn on_result(
    env: &Env<'_>,
    s: &mut DeviceSession,
    request: AcsRequest,
    outcome: std::result::Result<CpeResponse, CwmpFault>,
) -> Result<()> {
    let Some(origin) = s.current.take() else {
        return Ok(());
    };
    let current = Planned { origin, request };
    let now = env.now;
    // Discovery reads that fault are answered here: nothing else is blamed for them.
    let outcome = match outcome {
        Err(fault) if matches!(current.origin, Origin::DiscoverValues { .. }) => {
            return discovery_batch_fault(env, s, current.request, fault).await;
        }
        Err(fault) if current.origin == Origin::DiscoverAllValues => {
            let why = "the device read neither the names nor the values of the whole tree";
            return give_up_discovery(env, s, &fault, why).await;
        }
        outcome => outcome,
    };
    match (&current.origin, outcome) {
        (origin, Ok(mut resp)) => {
            let mut discovered_leaves = None;
            match origin {
                // Nothing reads the response after this: its strings move into the tree.
                Origin::DiscoverValues { .. } | Origin::DiscoverAllValues => {
                    learn_values(s, &mut resp, now);
                }
                Origin::DiscoverNames => discovered_leaves = learn_names(s, &mut resp, now),
                _ => {}
            }
            learn(s, &current.request, &resp, now);
            match origin {
                Origin::Bootstrap {
                    cr_username: Some(u),
                    cr_password: Some(p),
                    ..
                } => {
                    let sealed = env
                        .store
                        .keyring()
                        .seal(crate::secrets::purpose::CR_PASSWORD, p)?;
                    let (id, u) = (s.device_id.clone(), u.clone());
                    env.store
                        .run_short(move |st| st.set_cr_credentials(&id, &u, &sealed))
                        .await?;
                }
                Origin::DiscoverNames => {
                    if let Some(leaves) = discovered_leaves {
                        let batch = env.config.cwmp.gpv_batch_size;
                        s.discovery_splits_left = plan::discovery_split_budget(leaves.len(), batch);
                        s.discovery_dropped.clear();
                        let batches =
                            plan::batches(leaves, batch, |last| Origin::DiscoverValues { last });
                        let n = batches.len();
                        // Discovery goes before anything else still queued.
                        for p in batches.into_iter().rev() {
                            s.queue.push_front(p);
                        }
                        if n == 0 {
                            s.discovered = true;
                        }
                    }
                }
                Origin::DiscoverValues { .. } => discovery_progress(env, s).await?,
                Origin::DiscoverAllValues => discovery_completed(env, s).await?,
                Origin::GatewayTable => {
                    // The rows read replace the stored ones: removed rows disappear.
                    s.subtrees_removed
                        .push(format!("{}.ManagementServer.ManageableDevice.", s.root));
                }
                Origin::StunSettings {
                    username: Some(u),
                    password: Some(p),
                } => crate::domain::tr111::settings_accepted(env, s, u, p).await?,
                Origin::Converge(step) => {
                    crate::domain::converge::on_ok(env, s, step, &current.request, &resp).await?;
                }
                Origin::Task { id } => {
                    let id = *id;
                    let row = task_row(env, s, id).await?;
                    if let Some(row) = row {
                        let spec: Option<TaskSpec> = serde_json::from_str(&row.args).ok();
                        let completion = spec
                            .as_ref()
                            .map(|sp| sp.complete(&resp))
                            .unwrap_or(Completion::Done(serde_json::json!({})));
                        if let (
                            Some(TaskSpec::AddObject { object }),
                            CpeResponse::AddObject {
                                instance_number, ..
                            },
                        ) = (&spec, &resp)
                        {
                            s.queue
                                .push_front(refresh(&format!("{object}{instance_number}.")));
                        }
                        match completion {
                            Completion::Done(result) => {
                                finish_task_readable(s, &row, result);
                            }
                            Completion::Awaiting(what) => {
                                // Give up if the device never reports back.
                                let deadline = now
                                    + 1000
                                        * spec.as_ref().map_or(
                                            env.config.api.task_transfer_timeout_secs as i64,
                                            |sp| url_validity_secs(env.config, sp),
                                        );
                                let update = TaskUpdate {
                                    result: Some(Some(
                                        serde_json::json!({ "awaiting": what }).to_string(),
                                    )),
                                    expires_at: Some(Some(deadline)),
                                    updated_at: Some(now),
                                    ..TaskUpdate::default()
                                };
                                env.store
                                    .run(move |st| {
                                        st.transition_task(id, &[TaskStatus::Running], &update)
                                    })
                                    .await?;
                            }
                        }
                    }
                }
                Origin::ConfirmTransfer { id } => {
                    let keys = match &resp {
                        CpeResponse::GetAllQueuedTransfers { transfer_list } => transfer_list
                            .iter()
                            .map(|t| t.command_key.clone())
                            .collect(),
                        CpeResponse::GetQueuedTransfers { transfer_list } => transfer_list
                            .iter()
                            .map(|t| t.command_key.clone())
                            .collect(),
                        _ => Vec::new(),
                    };
                    on_transfer_answer(env, s, *id, Some(keys)).await?;
                }
                Origin::TaskBatch { id, last } => {
                    if let CpeResponse::GetParameterValues { parameter_list } = &resp {
                        for p in parameter_list {
                            s.batch_values.push(serde_json::json!({
                                "name": p.name, "value": p.value, "type": p.xsd_type
                            }));
                        }
                    }
                    if *last {
                        let values = std::mem::take(&mut s.batch_values);
                        let id = *id;
                        if let Some(row) = task_row(env, s, id).await? {
                            let result = serde_json::json!({ "values": values });
                            finish_task_readable(s, &row, result);
                        }
                    }
                }
                _ => {}
            }
        }
        (origin, Err(fault)) => {
            // A fault of the bootstrap settings is marked as such in the session's log.
            let bootstrap = matches!(origin, Origin::Bootstrap { .. });
            let resent = bootstrap && s.bootstrap_resent;
            s.faults.push(format!(
                "{}{} {}: {}",
                if bootstrap { BOOTSTRAP_FAULT } else { "" },
                current.request.name(),
                fault.code,
                fault.string
            ));
            let detail = tasks::fault_detail(&fault);
            match origin {
                Origin::Task { id } | Origin::TaskBatch { id, .. } => {
                    let id = *id;
                    s.queue.retain(
                        |q| !matches!(q.origin, Origin::TaskBatch { id: other, .. } if other == id),
                    );
                    s.batch_values.clear();
                    let row = task_row(env, s, id).await?;
                    if let Some(row) = row {
                        let after = plan::after_fault(&fault, row.attempts, now);
                        if let plan::AfterFault::Retry {
                            attempts,
                            not_before,
                        } = after
                        {
                            let update = TaskUpdate {
                                status: Some(TaskStatus::Pending),
                                attempts: Some(attempts),
                                not_before: Some(not_before),
                                fault_code: Some(Some(fault.code as i32)),
                                fault_string: Some(Some(fault.string.clone())),
                                fault_detail: Some(Some(detail.to_string())),
                                updated_at: Some(now),
                                ..TaskUpdate::default()
                            };
                            env.store
                                .run(move |st| {
                                    st.transition_task(id, &[TaskStatus::Running], &update)
                                })
                                .await?;
                            s.tasks_left = true;
                        } else {
                            finish_task(
                                env,
                                &row,
                                TaskStatus::Fault,
                                None,
                                Some((fault.code, fault.string.clone())),
                                Some(detail),
                            )
                            .await?;
                        }
                    }
                }
                Origin::Converge(step) => {
                    crate::domain::converge::on_fault(env, s, step, &current.request, &fault)
                        .await?;
                }
                Origin::Bootstrap { .. } => {
                    // SetParameterValues is all or nothing: what the device did not refuse
                    // goes again without what it did (`plan::after_bootstrap_fault`), so its
                    // connection-request credentials are still set, and stored once accepted.
                    let after = match &current.request {
                        AcsRequest::SetParameterValues(set) => {
                            plan::after_bootstrap_fault(&s.root, origin, set, &fault, resent)
                        }
                        _ => plan::BootstrapFault::default(),
                    };
                    if after.refused {
                        crate::domain::credentials::refused(env, &s.device_id, &fault).await?;
                    }
                    let what = if after.refused {
                        "issued credentials"
                    } else {
                        "bootstrap settings"
                    };
                    record_fault(env, s, &fault, what).await?;
                    // The rest first, then the booleans refused as words, as digits.
                    s.bootstrap_resent |= after.digits.is_some() || after.resend.is_some();
                    if let Some(digits) = after.digits {
                        s.queue.push_front(digits);
                    }
                    if let Some(resend) = after.resend {
                        s.queue.push_front(resend);
                    }
                }
                Origin::StunSettings { .. } => {
                    // Booleans refused as words go again as digits, once (none are left).
                    if let AcsRequest::SetParameterValues(set) = &current.request {
                        if let Some(again) = plan::with_digit_booleans(set, &fault) {
                            s.queue.push_front(Planned {
                                origin: origin.clone(),
                                request: AcsRequest::SetParameterValues(again),
                            });
                        }
                    }
                    record_fault(env, s, &fault, "session").await?;
                }
                Origin::ConfirmTransfer { id } => {
                    on_transfer_answer(env, s, *id, None).await?;
                }
                Origin::GatewayTable | Origin::GatewayNotify => {
                    // The device keeps working without them; the fault is kept for the
                    // operator.
                    record_fault(env, s, &fault, "device-gateway association").await?;
                }
                Origin::DiscoverNames => {
                    // Some devices refuse a whole-tree GetParameterNames: ask for all values instead.
                    s.queue.push_front(Planned {
                        origin: Origin::DiscoverAllValues,
                        request: AcsRequest::GetParameterValues(GetParameterValues {
                            parameter_names: vec![format!("{}.", s.root)],
                        }),
                    });
                    record_fault(env, s, &fault, "discovery").await?;
                }
                _ => {
                    if fault.code == 9005 {
                        // A path that no longer exists: forget it.
                        if let AcsRequest::GetParameterValues(g) = &current.request {
                            for n in &g.parameter_names {
                                s.subtrees_removed.push(n.clone());
                            }
                        }
                    }
                    record_fault(env, s, &fault, "session").await?;
                }
            }
        }
    }
    Ok(())
}

/// A discovery batch the device answered with a fault: halved and asked again while the
/// fault may blame its names, down to single names that are dropped when they still fault,
/// or asked again whole when its answer was lost (`plan::after_discovery_fault`); the
/// discovery gives up when the fault blames no name or its extra requests are spent. A
/// retry is not logged: what it ends in is, once.
async fn discovery_batch_fault(
    env: &Env<'_>,
    s: &mut DeviceSession,
    request: AcsRequest,
    fault: CwmpFault,
) -> Result<()> {
    let names = match request {
        AcsRequest::GetParameterValues(g) => g.parameter_names,
        _ => Vec::new(),
    };
    match plan::after_discovery_fault(fault.code, names, s.discovery_splits_left) {
        plan::DiscoveryFault::Retry(names) => {
            s.discovery_splits_left = s.discovery_splits_left.saturating_sub(1);
            s.queue.push_front(Planned {
                origin: Origin::DiscoverValues { last: false },
                request: AcsRequest::GetParameterValues(GetParameterValues {
                    parameter_names: names,
                }),
            });
        }
        plan::DiscoveryFault::Split(first, second) => {
            s.discovery_splits_left = s.discovery_splits_left.saturating_sub(2);
            // Before the batches still queued (discovery goes before anything else).
            for names in [second, first] {
                s.queue.push_front(Planned {
                    origin: Origin::DiscoverValues { last: false },
                    request: AcsRequest::GetParameterValues(GetParameterValues {
                        parameter_names: names,
                    }),
                });
            }
        }
        plan::DiscoveryFault::Drop(name) => {
            s.faults.push(format!(
                "GetParameterValues {} {name}: {}",
                fault.code, fault.string
            ));
            s.learnt.remove(&name);
            s.discovery_dropped.push((name, fault.code));
        }
        plan::DiscoveryFault::GiveUp => {
            let why = if plan::blames_names(fault.code) || plan::answer_lost(fault.code) {
                "the device faulted more reads than a few unreadable parameters explain"
            } else {
                "the device refused to read the tree's values"
            };
            return give_up_discovery(env, s, &fault, why).await;
        }
    }
    discovery_progress(env, s).await
}

/// A discovery batch was answered (or its faulted names dropped): the discovery completes
/// once no batch is left.
async fn discovery_progress(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    let left = s
        .queue
        .iter()
        .any(|q| matches!(q.origin, Origin::DiscoverValues { .. }));
    if left {
        return Ok(());
    }
    discovery_completed(env, s).await
}

/// The whole tree was read (but for the names dropped): it replaces the stored one at the
/// end of the session, which records the discovery's time.
async fn discovery_completed(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    s.discovered = true;
    if let Some(&(_, code)) = s.discovery_dropped.first() {
        let message = format!("discovery: {}", dropped_summary(&s.discovery_dropped));
        let detail = serde_json::json!({ "dropped": dropped_detail(&s.discovery_dropped) });
        record_discovery_fault(env, s, code, message, detail).await?;
    }
    crate::domain::tr111::after_discovery(env, s).await?;
    crate::domain::tr111::notifications_after_discovery(s);
    Ok(())
}

/// Stop the discovery, not completed: its batches still queued are dropped, what it read is
/// kept, and one fault says why; the next discovery waits (`plan::discovery_retry_ms`)
/// instead of starting again at the next Inform.
async fn give_up_discovery(
    env: &Env<'_>,
    s: &mut DeviceSession,
    fault: &CwmpFault,
    why: &str,
) -> Result<()> {
    s.queue
        .retain(|q| !matches!(q.origin, Origin::DiscoverValues { .. }));
    let mut message = format!(
        "{}: {why} (last fault {} {})",
        plan::DISCOVERY_INCOMPLETE,
        fault.code,
        fault.string
    );
    s.faults.push(message.clone());
    if !s.discovery_dropped.is_empty() {
        message.push_str("; ");
        message.push_str(&dropped_summary(&s.discovery_dropped));
    }
    let mut detail = tasks::fault_detail(fault);
    detail["dropped"] = dropped_detail(&s.discovery_dropped);
    record_discovery_fault(env, s, fault.code, message, detail).await
}

/// How many names a discovery dropped, and the first few.
fn dropped_summary(dropped: &[(String, u32)]) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = dropped
        .iter()
        .take(SHOWN)
        .map(|(n, _)| n.as_str())
        .collect();
    let more = dropped.len().saturating_sub(SHOWN);
    let plural = if dropped.len() == 1 { "" } else { "s" };
    let mut out = format!(
        "{} unreadable parameter{plural} dropped: {}",
        dropped.len(),
        names.join(", ")
    );
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// The names a discovery dropped with their fault codes (at most 1000), for a fault's detail.
fn dropped_detail(dropped: &[(String, u32)]) -> serde_json::Value {
    dropped
        .iter()
        .take(1000)
        .map(|(name, code)| serde_json::json!({ "parameter": name, "code": code }))
        .collect()
}

async fn record_discovery_fault(
    env: &Env<'_>,
    s: &DeviceSession,
    code: u32,
    message: String,
    detail: serde_json::Value,
) -> Result<()> {
    let f = NewFault {
        device_id: s.device_id.clone(),
        task_id: None,
        code: i32::try_from(code).unwrap_or(i32::MAX),
        message,
        detail: Some(detail.to_string()),
        created_at: env.now,
    };
    env.store.run_short(move |st| st.insert_fault(&f)).await
}

async fn record_fault(
    env: &Env<'_>,
    s: &DeviceSession,
    fault: &CwmpFault,
    what: &str,
) -> Result<()> {
    let f = NewFault {
        device_id: s.device_id.clone(),
        task_id: None,
        code: fault.code as i32,
        message: format!("{what}: {}", fault.string),
        detail: Some(tasks::fault_detail(fault).to_string()),
        created_at: env.now,
    };
    env.store.run_short(move |st| st.insert_fault(&f)).await
}

/// The value to keep of a parameter: secrets are kept empty, as devices read them back.
fn kept_value(p: &ParameterValue) -> &str {
    if crate::domain::params::is_secret(&p.name) {
        ""
    } else {
        &p.value
    }
}

/// Move the values of a GetParameterValuesResponse into `learnt` (leaving the list empty),
/// as [`learn`] would copy them.
fn learn_values(s: &mut DeviceSession, resp: &mut CpeResponse, now: i64) {
    if let CpeResponse::GetParameterValues { parameter_list } = resp {
        for p in parameter_list.drain(..) {
            if crate::domain::params::is_secret(&p.name) {
                s.learnt.set_value(&p.name, "", &p.xsd_type, now);
            } else {
                s.learnt.set_value_owned(p.name, p.value, &p.xsd_type, now);
            }
        }
    }
}

/// The whole tree's names, from a discovery's GetParameterNamesResponse, moved into
/// `learnt` (nothing reads the response after this); the leaves, whose values are read
/// next. `None` for another response.
fn learn_names(s: &mut DeviceSession, resp: &mut CpeResponse, now: i64) -> Option<Vec<String>> {
    let CpeResponse::GetParameterNames { parameter_list } = resp else {
        return None;
    };
    let leaves = parameter_list
        .iter()
        .filter(|p| !p.name.ends_with('.'))
        .map(|p| p.name.clone())
        .collect();
    for p in parameter_list.drain(..) {
        s.learnt.set_info_owned(p.name, p.writable, now);
    }
    Some(leaves)
}

/// Put what a response tells about the device's parameters into `learnt`.
fn learn(s: &mut DeviceSession, req: &AcsRequest, resp: &CpeResponse, now: i64) {
    match (req, resp) {
        (_, CpeResponse::GetParameterValues { parameter_list }) => {
            for p in parameter_list {
                s.learnt.set_value(&p.name, kept_value(p), &p.xsd_type, now);
            }
        }
        (_, CpeResponse::GetParameterNames { parameter_list }) => {
            for p in parameter_list {
                s.learnt.set_info(&p.name, p.writable, now);
            }
        }
        (_, CpeResponse::GetParameterAttributes { parameter_list }) => {
            for p in parameter_list {
                s.learnt.set_attributes(
                    &p.name,
                    u8::try_from(p.notification).ok(),
                    Some(p.access_list.clone()),
                    now,
                );
            }
        }
        (AcsRequest::SetParameterValues(set), CpeResponse::SetParameterValues { .. }) => {
            for p in &set.parameter_list {
                s.learnt.set_value(&p.name, kept_value(p), &p.xsd_type, now);
            }
        }
        (AcsRequest::SetParameterAttributes(set), CpeResponse::SetParameterAttributes) => {
            for p in &set.parameter_list {
                s.learnt.set_attributes(
                    &p.name,
                    p.notification_change
                        .then(|| u8::try_from(p.notification).unwrap_or(0)),
                    p.access_list_change.then(|| p.access_list.clone()),
                    now,
                );
            }
        }
        (
            AcsRequest::AddObject(a),
            CpeResponse::AddObject {
                instance_number, ..
            },
        ) => {
            s.learnt
                .set_info(&format!("{}{}.", a.object_name, instance_number), true, now);
        }
        (AcsRequest::DeleteObject(d), CpeResponse::DeleteObject { .. }) => {
            s.subtrees_removed.push(d.object_name.clone());
        }
        _ => {}
    }
}

/// How a session ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Timeout,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }
}

/// Finish the session: merge what was learnt into the stored tree, release the lock, and
/// produce the session-log row (written in batches by the caller).
pub async fn end(env: &Env<'_>, s: &mut DeviceSession, outcome: Outcome) -> Result<NewSessionLog> {
    let now = env.now;
    // From here on new work waits for the lock to be released (and gets its own request).
    if let Some(sv) = env.services {
        sv.connreq.session_gone(&s.device_id, &s.owner, now);
    }
    if let Some(blob) = s.learnt_blob.take() {
        let mut t = ParamTree::decode(&blob).unwrap_or_default();
        t.overlay(&s.learnt);
        s.learnt = t;
        // Names a discovery dropped after the session was saved are in the saved part.
        for (name, _) in &s.discovery_dropped {
            s.learnt.remove(name);
        }
    }
    let changed = !s.learnt.is_empty() || !s.subtrees_removed.is_empty();
    // Searchable values are written only when they differ from the last ones written.
    let sig = crate::domain::devices::inform_signature(&s.inform_values);
    let learnt_info = s
        .learnt
        .with_prefix(&format!("{}.DeviceInfo.", s.root))
        .next()
        .is_some();
    let write_search = (sig != s.search_sig || learnt_info).then(|| {
        let search =
            crate::domain::devices::searchable_values(&s.root, &s.inform_values, &s.learnt);
        let replace = s.events.iter().any(|e| e == "0 BOOTSTRAP");
        if replace || sig != s.search_sig {
            return (search, sig, replace);
        }
        // The Inform's values are stored as they are (same signature): only the values
        // learnt of DeviceInfo that the Inform does not carry are written, not every row.
        let prefix = format!("{}.DeviceInfo.", s.root);
        let learnt: std::collections::BTreeSet<&str> = s
            .learnt
            .with_prefix(&prefix)
            .map(|(n, _)| crate::domain::devices::relative_name(n))
            .collect();
        let informed: std::collections::BTreeSet<&str> = s
            .inform_values
            .iter()
            .map(|(n, _)| crate::domain::devices::relative_name(n))
            .collect();
        let only_learnt = search
            .into_iter()
            .filter(|(n, _)| learnt.contains(n.as_str()) && !informed.contains(n.as_str()))
            .collect();
        (only_learnt, sig, false)
    });
    let identity = identity_changes(identity_from(&s.root, &s.learnt), s.identity.as_ref());
    if let Err(e) = crate::domain::tr111::after_session(env, s, &s.learnt).await {
        // The association is recorded again at the device's next report; the session ends.
        tracing::warn!(device = %s.device_id, "device-gateway association not recorded: {e}");
    }
    let learnt = std::mem::take(&mut s.learnt);
    let removed = std::mem::take(&mut s.subtrees_removed);
    let discovered = s.discovered;
    let work_seen = plan::work_drained(
        s.tasks_checked,
        s.tasks_left,
        outcome == Outcome::Completed,
        s.work_epoch,
    );
    let (id, owner) = (s.device_id.clone(), s.owner.clone());
    // Tasks the device carried out become done with the tree that makes them readable.
    let done = std::mem::take(&mut s.tasks_done);
    let tasks: Vec<(i64, TaskUpdate)> = done
        .iter()
        .map(|d| (d.id, done_update(&d.result, now)))
        .collect();
    // The stored tree as this session read it, if it did: nothing but this session writes
    // the device's tree while it holds the lock, and what it wrote meanwhile (`flush_done`)
    // is in `learnt` too, so it need not be read again.
    let known = s.known.take();
    let previous_delta = s.params_delta.take();
    if changed || discovered || write_search.is_some() || !tasks.is_empty() {
        // A few values learnt go to the delta, computed here (once: without it the whole
        // tree is written): then the transaction is a few short statements, and takes the
        // shared short path.
        let delta = (changed && !discovered && removed.is_empty())
            .then(|| crate::domain::params::delta_after(previous_delta.as_deref(), &learnt))
            .flatten();
        let short = !discovered && (!changed || delta.is_some());
        // The tree, the identity, the searchable values and the lock: one transaction.
        let close = move |st: &Store| {
            let tree = if discovered {
                // A completed discovery replaces what was known: the tree is what the
                // session learnt, built from the responses as they came.
                let (blob, count) = encoded(learnt);
                Some(TreeWriteOwned::Whole(blob, count))
            } else if let Some(delta) = delta {
                Some(TreeWriteOwned::Delta(delta))
            } else if changed {
                Some(whole_tree_write(st, &id, known, &removed, &learnt)?)
            } else {
                None
            };
            st.close_session(&SessionClose {
                device_id: &id,
                owner: &owner,
                work_seen,
                now,
                params: tree.as_ref().map(|t| t.as_write(previous_delta.as_deref())),
                discovered,
                identity: &identity,
                search: write_search
                    .as_ref()
                    .map(|(values, sig, replace)| SearchWrite {
                        values,
                        sig: *sig,
                        replace: *replace,
                    }),
                tasks: &tasks,
            })
        };
        if short {
            env.store.run_short(close).await?;
        } else {
            env.store.run(close).await?;
        }
        if let Some(sv) = env.services {
            for d in &done {
                sv.task_watch.notify(d.id);
            }
        }
    } else {
        // A quiet session: only the lock, on the shared short path.
        env.store
            .run_short(move |st| st.end_session(&id, &owner, work_seen))
            .await?;
    }
    Ok(NewSessionLog {
        device_id: s.device_id.clone(),
        started_at: s.started_at,
        ended_at: now,
        source_ip: s.source_ip.clone(),
        events: s.events.join(","),
        rpcs: s.rpcs.join(","),
        faults: serde_json::to_string(&s.faults).unwrap_or_default(),
        outcome: outcome.as_str().to_string(),
    })
}

/// Identity columns from what the session learnt of `DeviceInfo`: many devices (TR-098
/// ones especially) leave ModelName and HardwareVersion out of the Inform, and the device
/// list and its query language read the columns. Empty values are not written.
pub fn identity_from(root: &str, learnt: &ParamTree) -> IdentityUpdate {
    let value = |leaf: &str| {
        learnt
            .get(&format!("{root}.DeviceInfo.{leaf}"))
            .and_then(|e| e.value.as_deref())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    IdentityUpdate {
        manufacturer: value("Manufacturer"),
        model_name: value("ModelName"),
        software_version: value("SoftwareVersion"),
        hardware_version: value("HardwareVersion"),
    }
}

/// What of `learnt` changes the identity columns as they are (`stored`; `None`: unknown,
/// everything learnt). The manufacturer only ever fills an empty column.
pub fn identity_changes(learnt: IdentityUpdate, stored: Option<&Identity>) -> IdentityUpdate {
    let Some(stored) = stored else {
        return learnt;
    };
    let changed = |v: Option<String>, old: &str| v.filter(|v| v != old);
    IdentityUpdate {
        manufacturer: learnt
            .manufacturer
            .filter(|_| stored.manufacturer.is_empty()),
        model_name: changed(learnt.model_name, &stored.model_name),
        software_version: changed(learnt.software_version, &stored.software_version),
        hardware_version: changed(learnt.hardware_version, &stored.hardware_version),
    }
}

/// Prepare for saving mid-session (connection dropped): keep learnt values in encoded form.
pub fn freeze(s: &mut DeviceSession) {
    // Nothing learnt since the last save: the encoded tree is still current.
    if s.learnt.is_empty() {
        return;
    }
    let mut t = match s.learnt_blob.take() {
        Some(b) => ParamTree::decode(&b).unwrap_or_default(),
        None => ParamTree::new(),
    };
    t.overlay(&s.learnt);
    s.learnt = ParamTree::new();
    s.learnt_blob = Some(t.encode(true));
}

fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learnt(m: &str, model: &str, sw: &str, hw: &str) -> IdentityUpdate {
        let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
        IdentityUpdate {
            manufacturer: some(m),
            model_name: some(model),
            software_version: some(sw),
            hardware_version: some(hw),
        }
    }

    #[test]
    fn only_identity_columns_that_change_are_written() {
        let stored = Identity {
            manufacturer: "Huawei".into(),
            model_name: String::new(),
            software_version: "V1".into(),
            hardware_version: "HW1".into(),
        };
        // The Inform named the software and hardware versions, not the model: only the
        // model is written; the manufacturer never replaces a non-empty one.
        let got = identity_changes(learnt("Huawei Tech", "BM632w", "V1", "HW1"), Some(&stored));
        assert_eq!(got, learnt("", "BM632w", "", ""));
        // A new firmware version is written.
        let got = identity_changes(learnt("", "", "V2", ""), Some(&stored));
        assert_eq!(got, learnt("", "", "V2", ""));
        // Everything as stored: nothing to write.
        assert!(identity_changes(learnt("Huawei", "", "V1", "HW1"), Some(&stored)).is_empty());
        // An empty manufacturer is filled.
        let blank = Identity::default();
        let got = identity_changes(learnt("Huawei", "", "", ""), Some(&blank));
        assert_eq!(got, learnt("Huawei", "", "", ""));
        // A session saved before the stored identity was kept: everything learnt.
        let all = learnt("Huawei", "BM632w", "V1", "HW1");
        assert_eq!(identity_changes(all.clone(), None), all);
    }
}
