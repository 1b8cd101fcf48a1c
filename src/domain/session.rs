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
    self, AcsRequest, AcsResponse, CpeRequest, CpeResponse, CwmpFault, GetParameterNames,
    GetParameterValues, Inform, ParameterValue, SetParameterValues,
};
use crate::domain::params::ParamTree;
use crate::domain::tasks::{self, Completion, TaskSpec};
use crate::error::{Error, Result};
use crate::store::devices::{BeginSession, DeviceRow, InformUpdate};
use crate::store::faults::NewFault;
use crate::store::sessions::NewSessionLog;
use crate::store::tasks::{TaskRow, TaskUpdate};

pub use crate::domain::session_state::{DeviceSession, Env, Origin, Planned};

/// Result of [`begin`].
pub enum Begin {
    Started(Box<DeviceSession>),
    Busy { owner: String },
    Rejected(String),
    WrongCredentials(String),
}

/// The root object of the data model the Inform speaks, and its model name.
pub fn detect_root(inform: &Inform) -> (&'static str, &'static str) {
    let igd = inform
        .parameter_list
        .iter()
        .any(|p| p.name.starts_with("InternetGatewayDevice."));
    if igd {
        return ("InternetGatewayDevice", "InternetGatewayDevice:1");
    }
    let summary = inform
        .parameter_list
        .iter()
        .find(|p| p.name.ends_with(".DeviceSummary"))
        .map(|p| p.value.as_str());
    let root_version = inform.parameter("Device.RootDataModelVersion");
    match (summary, root_version) {
        (_, Some(_)) => ("Device", "Device:2"),
        (Some(s), None) if s.trim_start().starts_with("Device:1") => ("Device", "Device:1"),
        (Some(s), None) if s.trim_start().starts_with("Device:2") => ("Device", "Device:2"),
        (Some(_), None) => ("Device", "Device:1"),
        (None, None) => ("Device", "Device:2"),
    }
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
    default_credentials: bool,
) -> Result<Begin> {
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
    let mut inform_tree = ParamTree::new();
    for p in &inform.parameter_list {
        inform_tree.set_value(&p.name, &p.value, &p.xsd_type, now);
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
    let lock_until = now + lock_ttl_ms(env.config);
    let allow_create = env.config.cwmp.unknown_devices == UnknownDevices::Accept;
    let owner2 = owner.clone();
    let begun = env
        .store
        .run(move |s| {
            s.begin_session(
                &update,
                &owner2,
                now,
                lock_until,
                allow_create,
                takeover.as_deref(),
                default_credentials,
            )
        })
        .await?;
    let (device, created) = match begun {
        BeginSession::Started { device, created } => (device, created),
        BeginSession::Busy { owner, .. } => return Ok(Begin::Busy { owner }),
        BeginSession::OwnCredentialsRequired => {
            return Ok(Begin::WrongCredentials(format!(
                "device {device_id} has its own credentials; the default ones do not open it"
            )))
        }
        BeginSession::Unknown => {
            return Ok(Begin::Rejected(format!(
                "device {device_id} is not provisioned and unknown devices are rejected (cwmp.unknown_devices)"
            )))
        }
    };
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
        subtrees_removed: Vec::new(),
        discovered: false,
        created,
        converge: None,
        known: None,
        search_sig: device.search_sig,
        inform_values: inform
            .parameter_list
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect(),
        batch_values: Vec::new(),
    };
    plan(env, &mut s, &device, inform).await?;
    Ok(Begin::Started(Box::new(s)))
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
) -> Result<()> {
    let cfg = &env.config.cwmp;
    let bootstrap = inform.has_event("0 BOOTSTRAP") || s.created;
    let reconcile_events = inform.events.iter().any(|e| {
        e.event_code.starts_with("M ") || e.event_code == "0 BOOTSTRAP" || e.event_code == "1 BOOT"
    });

    // Bootstrap settings.
    if bootstrap
        && (cfg.periodic_inform_interval_secs > 0 || cfg.set_connection_request_credentials)
    {
        let mut list = Vec::new();
        let ms = format!("{}.ManagementServer.", s.root);
        if cfg.periodic_inform_interval_secs > 0 {
            list.push(ParameterValue::new(
                format!("{ms}PeriodicInformEnable"),
                "true",
                "xsd:boolean",
            ));
            list.push(ParameterValue::new(
                format!("{ms}PeriodicInformInterval"),
                cfg.periodic_inform_interval_secs.to_string(),
                "xsd:unsignedInt",
            ));
        }
        let (mut cr_user, mut cr_pass) = (None, None);
        if cfg.set_connection_request_credentials {
            let user = format!("cr-{}", random_token(6));
            let pass = random_token(16);
            list.push(ParameterValue::string(
                format!("{ms}ConnectionRequestUsername"),
                user.clone(),
            ));
            list.push(ParameterValue::string(
                format!("{ms}ConnectionRequestPassword"),
                pass.clone(),
            ));
            cr_user = Some(user);
            cr_pass = Some(pass);
        }
        s.queue.push_back(Planned {
            origin: Origin::Bootstrap {
                cr_username: cr_user,
                cr_password: cr_pass,
            },
            request: AcsRequest::SetParameterValues(SetParameterValues {
                parameter_list: list,
                parameter_key: String::new(),
            }),
        });
    }

    // Discovery of the whole tree.
    let stale = match device.discovered_at {
        None => true,
        Some(at) => {
            cfg.discovery_refresh_secs > 0
                && env.now - at > cfg.discovery_refresh_secs as i64 * 1000
        }
    };
    if bootstrap || stale {
        s.queue.push_back(Planned {
            origin: Origin::DiscoverNames,
            request: AcsRequest::GetParameterNames(GetParameterNames {
                parameter_path: format!("{}.", s.root),
                next_level: false,
            }),
        });
    }

    // Tasks: when something new was queued, or events may complete running tasks.
    if device.has_new_work() || reconcile_events {
        load_tasks(env, s, inform).await?;
    }

    // VoIP lines and presets: planned once the queue runs dry (after discovery).
    crate::domain::converge::prepare(env, s, device, inform).await?;
    Ok(())
}

/// Load the device's pending and running tasks: finish those the Inform's events complete,
/// recover interrupted ones, and queue the pending ones.
async fn load_tasks(env: &Env<'_>, s: &mut DeviceSession, inform: &Inform) -> Result<()> {
    let id = s.device_id.clone();
    let rows = env
        .store
        .run(move |st| st.device_tasks_in(&id, &[tasks::PENDING, tasks::RUNNING]))
        .await?;
    s.tasks_checked = true;
    let now = env.now;
    let param_key = inform
        .parameter(&format!("{}.ManagementServer.ParameterKey", s.root))
        .map(str::to_string);
    let mut tree: Option<ParamTree> = None;
    for row in rows {
        let spec: TaskSpec = match serde_json::from_str(&row.args) {
            Ok(spec) => spec,
            Err(e) => {
                finish_task(
                    env,
                    &row,
                    tasks::FAULT,
                    None,
                    Some((8002, format!("stored task is unreadable: {e}"))),
                    None,
                )
                .await?;
                continue;
            }
        };
        if let Some(exp) = row.expires_at {
            if exp < now && row.status == tasks::PENDING {
                finish_task(env, &row, tasks::EXPIRED, None, None, None).await?;
                continue;
            }
        }
        if row.status == tasks::RUNNING {
            let awaiting = row
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                .and_then(|v| {
                    v.get("awaiting")
                        .and_then(|a| a.as_str())
                        .map(str::to_string)
                });
            let has_m = |code: &str| {
                inform
                    .events
                    .iter()
                    .any(|e| e.event_code == code && e.command_key == row.command_key)
            };
            let completed = match &spec {
                TaskSpec::Reboot {} => has_m("M Reboot"),
                TaskSpec::FactoryReset {} => inform.has_event("0 BOOTSTRAP"),
                TaskSpec::ScheduleInform { .. } => has_m("M ScheduleInform"),
                _ => false,
            };
            if completed {
                finish_task(
                    env,
                    &row,
                    tasks::DONE,
                    Some(serde_json::json!({"confirmed_by": s.events})),
                    None,
                    None,
                )
                .await?;
                continue;
            }
            if awaiting.is_some() {
                // Still waiting (e.g. for a TransferComplete in a later session).
                if let Some(exp) = row.expires_at {
                    if exp < now {
                        finish_task(env, &row, tasks::EXPIRED, None, None, None).await?;
                    }
                }
                continue;
            }
            // Interrupted with unknown outcome.
            let applied = spec.uses_key()
                && matches!(
                    spec,
                    TaskSpec::AddObject { .. }
                        | TaskSpec::DeleteObject { .. }
                        | TaskSpec::SetParameterValues { .. }
                )
                && param_key.as_deref() == Some(row.command_key.as_str());
            if applied {
                finish_task(
                    env,
                    &row,
                    tasks::DONE,
                    Some(serde_json::json!({"confirmed_by": "ParameterKey"})),
                    None,
                    None,
                )
                .await?;
                if let TaskSpec::AddObject { object } = &spec {
                    s.queue.push_back(refresh(object));
                }
                continue;
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
                continue;
            }
            // Not applied (or harmless to repeat): send again below.
        } else if row.not_before > now {
            s.tasks_left = true;
            continue;
        }
        if tree.is_none() && matches!(spec, TaskSpec::SetParameterValues { .. }) {
            let id = s.device_id.clone();
            let blob = env.store.run(move |st| st.load_params(&id)).await?;
            tree = Some(
                blob.and_then(|b| ParamTree::decode(&b).ok())
                    .unwrap_or_default(),
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
                .map(|e| e.xsd_type.clone())
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
                let chunks: Vec<Vec<String>> = g
                    .parameter_names
                    .chunks(env.config.cwmp.gpv_batch_size.max(1))
                    .map(|c| c.to_vec())
                    .collect();
                let n = chunks.len();
                for (i, names) in chunks.into_iter().enumerate() {
                    s.queue.push_back(Planned {
                        origin: Origin::TaskBatch {
                            id: row.id,
                            last: i + 1 == n,
                        },
                        request: AcsRequest::GetParameterValues(GetParameterValues {
                            parameter_names: names,
                        }),
                    });
                }
            }
            Ok(request) => s.queue.push_back(Planned {
                origin: Origin::Task { id: row.id },
                request,
            }),
            Err(e) => {
                finish_task(
                    env,
                    &row,
                    tasks::FAULT,
                    None,
                    Some((8002, e.to_string())),
                    None,
                )
                .await?;
            }
        }
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

async fn finish_task(
    env: &Env<'_>,
    row: &TaskRow,
    status: &str,
    result: Option<serde_json::Value>,
    fault: Option<(u32, String)>,
    fault_detail: Option<serde_json::Value>,
) -> Result<()> {
    let now = env.now;
    let update = TaskUpdate {
        status: Some(status.to_string()),
        result: result.map(|r| Some(r.to_string())),
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
        .run(move |st| {
            st.transition_task(id, &[tasks::PENDING, tasks::RUNNING], &update)?;
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
        .run(move |st| st.device_tasks_in(&id, &[tasks::RUNNING, tasks::PENDING]))
        .await?;
    for row in rows
        .iter()
        .filter(|r| r.command_key == key && rpcs.contains(&r.rpc.as_str()))
    {
        if fault_code == 0 {
            finish_task(
                env,
                row,
                tasks::DONE,
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
                tasks::FAULT,
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
            return Ok(None);
        }
        crate::domain::converge::plan_round(env, s).await?;
    }
}

async fn next_queued(env: &Env<'_>, s: &mut DeviceSession) -> Result<Option<AcsRequest>> {
    while let Some(p) = s.queue.pop_front() {
        if let Origin::Task { id } | Origin::TaskBatch { id, .. } = p.origin {
            let now = env.now;
            let update = TaskUpdate {
                status: Some(tasks::RUNNING.into()),
                started_at: Some(Some(now)),
                result: Some(None),
                updated_at: Some(now),
                ..TaskUpdate::default()
            };
            let started = env
                .store
                .run(move |st| st.transition_task(id, &[tasks::PENDING, tasks::RUNNING], &update))
                .await?;
            if started.is_none() {
                // Cancelled (or finished) meanwhile: drop its other batches too.
                s.queue.retain(
                    |q| !matches!(q.origin, Origin::TaskBatch { id: other, .. } if other == id),
                );
                s.batch_values.clear();
                continue;
            }
        }
        s.rpcs.push(format!(">{}", p.request.name()));
        let req = p.request.clone();
        s.current = Some(p);
        return Ok(Some(req));
    }
    Ok(None)
}

/// File away the device's answer to the current request.
pub async fn on_result(
    env: &Env<'_>,
    s: &mut DeviceSession,
    outcome: std::result::Result<CpeResponse, CwmpFault>,
) -> Result<()> {
    let Some(current) = s.current.take() else {
        return Ok(());
    };
    let now = env.now;
    match (&current.origin, outcome) {
        (origin, Ok(resp)) => {
            learn(s, &current.request, &resp, now);
            match origin {
                Origin::Bootstrap {
                    cr_username: Some(u),
                    cr_password: Some(p),
                } => {
                    let (id, u, p) = (s.device_id.clone(), u.clone(), p.clone());
                    env.store
                        .run(move |st| st.set_cr_credentials(&id, &u, &p))
                        .await?;
                }
                Origin::DiscoverNames => {
                    if let CpeResponse::GetParameterNames { parameter_list } = &resp {
                        let leaves: Vec<String> = parameter_list
                            .iter()
                            .filter(|p| !p.name.ends_with('.'))
                            .map(|p| p.name.clone())
                            .collect();
                        let batch = env.config.cwmp.gpv_batch_size.max(1);
                        let chunks: Vec<Vec<String>> =
                            leaves.chunks(batch).map(|c| c.to_vec()).collect();
                        let n = chunks.len();
                        // Discovery goes before anything else still queued.
                        for (i, names) in chunks.into_iter().enumerate().rev() {
                            s.queue.push_front(Planned {
                                origin: Origin::DiscoverValues { last: i + 1 == n },
                                request: AcsRequest::GetParameterValues(GetParameterValues {
                                    parameter_names: names,
                                }),
                            });
                        }
                        if n == 0 {
                            s.discovered = true;
                        }
                    }
                }
                Origin::DiscoverValues { last: true } | Origin::DiscoverAllValues => {
                    s.discovered = true
                }
                Origin::Converge(step) => {
                    crate::domain::converge::on_ok(env, s, step, &current.request, &resp).await?;
                }
                Origin::Task { id } => {
                    let id = *id;
                    let row = env.store.run(move |st| st.get_task(id)).await?;
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
                                finish_task(env, &row, tasks::DONE, Some(result), None, None)
                                    .await?;
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
                                        st.transition_task(id, &[tasks::RUNNING], &update)
                                    })
                                    .await?;
                            }
                        }
                    }
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
                        if let Some(row) = env.store.run(move |st| st.get_task(id)).await? {
                            finish_task(
                                env,
                                &row,
                                tasks::DONE,
                                Some(serde_json::json!({ "values": values })),
                                None,
                                None,
                            )
                            .await?;
                        }
                    }
                }
                _ => {}
            }
        }
        (origin, Err(fault)) => {
            s.faults.push(format!(
                "{} {}: {}",
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
                    let row = env.store.run(move |st| st.get_task(id)).await?;
                    if let Some(row) = row {
                        if fault.is_permanent() || row.attempts + 1 >= tasks::MAX_ATTEMPTS {
                            finish_task(
                                env,
                                &row,
                                tasks::FAULT,
                                None,
                                Some((fault.code, fault.string.clone())),
                                Some(detail),
                            )
                            .await?;
                        } else {
                            let attempts = row.attempts + 1;
                            let update = TaskUpdate {
                                status: Some(tasks::PENDING.into()),
                                attempts: Some(attempts),
                                not_before: Some(now + tasks::retry_delay_ms(attempts)),
                                fault_code: Some(Some(fault.code as i32)),
                                fault_string: Some(Some(fault.string.clone())),
                                fault_detail: Some(Some(detail.to_string())),
                                updated_at: Some(now),
                                ..TaskUpdate::default()
                            };
                            env.store
                                .run(move |st| st.transition_task(id, &[tasks::RUNNING], &update))
                                .await?;
                            s.tasks_left = true;
                        }
                    }
                }
                Origin::Converge(step) => {
                    crate::domain::converge::on_fault(env, s, step, &current.request, &fault)
                        .await?;
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
    env.store.run(move |st| st.insert_fault(&f)).await
}

/// The value to keep of a parameter: secrets are kept empty, as devices read them back.
fn kept_value(p: &ParameterValue) -> &str {
    if crate::domain::params::is_secret(&p.name) {
        ""
    } else {
        &p.value
    }
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
    if let Some(blob) = s.learnt_blob.take() {
        let mut t = ParamTree::decode(&blob).unwrap_or_default();
        t.overlay(&s.learnt);
        s.learnt = t;
    }
    let changed = !s.learnt.is_empty() || !s.subtrees_removed.is_empty();
    // Searchable values are written only when they differ from the last ones written.
    let (search, sig) =
        crate::domain::devices::searchable_values(&s.root, &s.inform_values, &s.learnt);
    let learnt_info = s
        .learnt
        .with_prefix(&format!("{}.DeviceInfo.", s.root))
        .next()
        .is_some();
    let write_search = (sig != s.search_sig || learnt_info).then(|| {
        let replace = s.events.iter().any(|e| e == "0 BOOTSTRAP");
        (search, sig, replace)
    });
    let learnt = std::mem::take(&mut s.learnt);
    let removed = std::mem::take(&mut s.subtrees_removed);
    let id = s.device_id.clone();
    let discovered = s.discovered;
    if changed || discovered {
        env.store
            .run(move |st| {
                let mut tree = match st.load_params(&id)? {
                    Some(b) if !discovered => ParamTree::decode(&b).unwrap_or_default(),
                    // A completed discovery replaces what was known.
                    _ => ParamTree::new(),
                };
                for r in &removed {
                    tree.remove_subtree(r);
                }
                tree.overlay(&learnt);
                let count = i32::try_from(tree.len()).unwrap_or(i32::MAX);
                st.save_params(&id, &tree.encode(true), count, now)?;
                if discovered {
                    st.set_discovered(&id, Some(now))?;
                }
                Ok(())
            })
            .await?;
    }
    let work_seen =
        (s.tasks_checked && !s.tasks_left && outcome == Outcome::Completed).then_some(s.work_epoch);
    let (id, owner) = (s.device_id.clone(), s.owner.clone());
    env.store
        .run(move |st| {
            if let Some((values, sig, replace)) = write_search {
                st.write_search_values(&id, &values, sig, replace)?;
            }
            st.end_session(&id, &owner, work_seen)
        })
        .await?;
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

/// Prepare for saving mid-session (connection dropped): keep learnt values in encoded form.
pub fn freeze(s: &mut DeviceSession) {
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
