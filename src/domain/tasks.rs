//! Tasks: what an operator asked ferroacs to do on a device, one CWMP RPC each.
//!
//! A task is created `pending`, becomes `running` when its RPC is sent, and ends `done`,
//! `fault`, `expired` or `cancelled`. Some RPCs finish later than their response: a Reboot
//! when the device comes back with `M Reboot`, a Download when its TransferComplete arrives,
//! a FactoryReset with `0 BOOTSTRAP`. Such a task stays `running` with an `awaiting` marker
//! in its result.
//!
//! Crash safety: a task found `running` without an `awaiting` marker when its device starts
//! a new session was interrupted (server killed, device vanished) with its outcome unknown.
//! Idempotent RPCs are simply sent again; RPCs that change state carry a key (CommandKey or
//! ParameterKey) that the device reports back, so ferroacs can tell whether the first
//! attempt took effect and never applies it twice.

use serde::{Deserialize, Serialize};

use crate::cwmp::{
    AcsRequest, CancelTransfer, ChangeDuState, CpeResponse, CwmpFault, Download, DuOperation,
    GetParameterAttributes, GetParameterNames, GetParameterValues, ObjectRequest, ParameterValue,
    Reboot, ScheduleDownload, ScheduleInform, SetParameterAttribute, SetParameterAttributes,
    SetParameterValues, TimeWindow, Upload,
};
use crate::error::{Error, Result};

pub use crate::store::tasks::TaskStatus;

/// One value of a SetParameterValues task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetValue {
    pub name: String,
    pub value: String,
    /// `xsd:string`, `xsd:unsignedInt`, ...; when absent the type the device reported (or
    /// the data model's) is used.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub xsd_type: Option<String>,
}

/// One entry of a SetParameterAttributes task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAttribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_list: Option<Vec<String>>,
}

/// A time window of a ScheduleDownload task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub start: u32,
    pub end: u32,
    #[serde(default = "default_window_mode")]
    pub mode: String,
    #[serde(default)]
    pub user_message: String,
    #[serde(default = "default_max_retries")]
    pub max_retries: i32,
}

fn default_window_mode() -> String {
    "1 At Any Time".into()
}

fn default_max_retries() -> i32 {
    -1
}

/// What a task does, as the API receives it (`{"rpc": "...", ...arguments}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rpc", deny_unknown_fields)]
pub enum TaskSpec {
    GetParameterValues {
        names: Vec<String>,
    },
    SetParameterValues {
        values: Vec<SetValue>,
    },
    GetParameterNames {
        #[serde(default)]
        path: String,
        #[serde(default)]
        next_level: bool,
    },
    GetParameterAttributes {
        names: Vec<String>,
    },
    SetParameterAttributes {
        attributes: Vec<SetAttribute>,
    },
    AddObject {
        object: String,
    },
    DeleteObject {
        object: String,
    },
    Reboot {},
    FactoryReset {},
    Download {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        file_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_size: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_file_name: Option<String>,
        #[serde(default)]
        delay_seconds: u32,
    },
    Upload {
        file_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        #[serde(default)]
        delay_seconds: u32,
    },
    ScheduleInform {
        delay_seconds: u32,
    },
    ScheduleDownload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        file_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_size: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_file_name: Option<String>,
        windows: Vec<Window>,
    },
    CancelTransfer {
        command_key: String,
    },
    #[serde(rename = "GetRPCMethods")]
    GetRpcMethods {},
    #[serde(rename = "ChangeDUState")]
    ChangeDuState {
        operations: Vec<DuOperation>,
    },
    GetQueuedTransfers {},
    GetAllQueuedTransfers {},
}

/// The CWMP RPC a task carries, serialized as CWMP spells it (`"GetRPCMethods"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rpc {
    GetParameterValues,
    SetParameterValues,
    GetParameterNames,
    GetParameterAttributes,
    SetParameterAttributes,
    AddObject,
    DeleteObject,
    Reboot,
    FactoryReset,
    Download,
    Upload,
    ScheduleInform,
    ScheduleDownload,
    CancelTransfer,
    #[serde(rename = "GetRPCMethods")]
    GetRpcMethods,
    #[serde(rename = "ChangeDUState")]
    ChangeDuState,
    GetQueuedTransfers,
    GetAllQueuedTransfers,
}

impl Rpc {
    /// Every RPC a task can carry.
    pub const ALL: [Rpc; 18] = [
        Rpc::GetParameterValues,
        Rpc::SetParameterValues,
        Rpc::GetParameterNames,
        Rpc::GetParameterAttributes,
        Rpc::SetParameterAttributes,
        Rpc::AddObject,
        Rpc::DeleteObject,
        Rpc::Reboot,
        Rpc::FactoryReset,
        Rpc::Download,
        Rpc::Upload,
        Rpc::ScheduleInform,
        Rpc::ScheduleDownload,
        Rpc::CancelTransfer,
        Rpc::GetRpcMethods,
        Rpc::ChangeDuState,
        Rpc::GetQueuedTransfers,
        Rpc::GetAllQueuedTransfers,
    ];

    /// The name as CWMP spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rpc::GetParameterValues => "GetParameterValues",
            Rpc::SetParameterValues => "SetParameterValues",
            Rpc::GetParameterNames => "GetParameterNames",
            Rpc::GetParameterAttributes => "GetParameterAttributes",
            Rpc::SetParameterAttributes => "SetParameterAttributes",
            Rpc::AddObject => "AddObject",
            Rpc::DeleteObject => "DeleteObject",
            Rpc::Reboot => "Reboot",
            Rpc::FactoryReset => "FactoryReset",
            Rpc::Download => "Download",
            Rpc::Upload => "Upload",
            Rpc::ScheduleInform => "ScheduleInform",
            Rpc::ScheduleDownload => "ScheduleDownload",
            Rpc::CancelTransfer => "CancelTransfer",
            Rpc::GetRpcMethods => "GetRPCMethods",
            Rpc::ChangeDuState => "ChangeDUState",
            Rpc::GetQueuedTransfers => "GetQueuedTransfers",
            Rpc::GetAllQueuedTransfers => "GetAllQueuedTransfers",
        }
    }

    /// Read a name as CWMP spells it.
    pub fn parse(s: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Rpc {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Names of every RPC a task can carry (for docs and validation messages).
pub const TASK_RPCS: [&str; 18] = {
    let mut out = [""; 18];
    let mut i = 0;
    while i < out.len() {
        out[i] = Rpc::ALL[i].as_str();
        i += 1;
    }
    out
};

/// What a successfully answered RPC means for its task.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Finished; the JSON is the task's result.
    Done(serde_json::Value),
    /// Accepted; the task finishes when the device reports `event` (e.g. "M Reboot") or a
    /// TransferComplete/DUStateChangeComplete with the task's command key.
    Awaiting(&'static str),
}

impl TaskSpec {
    /// The RPC name as CWMP spells it.
    pub fn rpc(&self) -> Rpc {
        match self {
            TaskSpec::GetParameterValues { .. } => Rpc::GetParameterValues,
            TaskSpec::SetParameterValues { .. } => Rpc::SetParameterValues,
            TaskSpec::GetParameterNames { .. } => Rpc::GetParameterNames,
            TaskSpec::GetParameterAttributes { .. } => Rpc::GetParameterAttributes,
            TaskSpec::SetParameterAttributes { .. } => Rpc::SetParameterAttributes,
            TaskSpec::AddObject { .. } => Rpc::AddObject,
            TaskSpec::DeleteObject { .. } => Rpc::DeleteObject,
            TaskSpec::Reboot {} => Rpc::Reboot,
            TaskSpec::FactoryReset {} => Rpc::FactoryReset,
            TaskSpec::Download { .. } => Rpc::Download,
            TaskSpec::Upload { .. } => Rpc::Upload,
            TaskSpec::ScheduleInform { .. } => Rpc::ScheduleInform,
            TaskSpec::ScheduleDownload { .. } => Rpc::ScheduleDownload,
            TaskSpec::CancelTransfer { .. } => Rpc::CancelTransfer,
            TaskSpec::GetRpcMethods {} => Rpc::GetRpcMethods,
            TaskSpec::ChangeDuState { .. } => Rpc::ChangeDuState,
            TaskSpec::GetQueuedTransfers {} => Rpc::GetQueuedTransfers,
            TaskSpec::GetAllQueuedTransfers {} => Rpc::GetAllQueuedTransfers,
        }
    }

    /// Whether sending the RPC twice does no harm (so an interrupted attempt is just resent).
    pub fn idempotent(&self) -> bool {
        matches!(
            self,
            TaskSpec::GetParameterValues { .. }
                | TaskSpec::SetParameterValues { .. }
                | TaskSpec::GetParameterNames { .. }
                | TaskSpec::GetParameterAttributes { .. }
                | TaskSpec::SetParameterAttributes { .. }
                | TaskSpec::GetRpcMethods {}
                | TaskSpec::GetQueuedTransfers {}
                | TaskSpec::GetAllQueuedTransfers {}
                | TaskSpec::CancelTransfer { .. }
                // The CPE recognises a transfer by its CommandKey, which a resend reuses.
                | TaskSpec::Download { .. }
                | TaskSpec::ScheduleDownload { .. }
                | TaskSpec::Upload { .. }
                | TaskSpec::ScheduleInform { .. }
        )
    }

    /// Whether the task carries a key the device reports back: a CommandKey in an `M` event
    /// or TransferComplete, or a ParameterKey in `ManagementServer.ParameterKey`.
    pub fn uses_key(&self) -> bool {
        !matches!(
            self,
            TaskSpec::GetParameterValues { .. }
                | TaskSpec::GetParameterNames { .. }
                | TaskSpec::GetParameterAttributes { .. }
                | TaskSpec::SetParameterAttributes { .. }
                | TaskSpec::GetRpcMethods {}
                | TaskSpec::GetQueuedTransfers {}
                | TaskSpec::GetAllQueuedTransfers {}
                | TaskSpec::FactoryReset {}
                | TaskSpec::CancelTransfer { .. }
        )
    }

    /// Basic shape checks (the data-model checks of values happen in the domain service).
    pub fn check(&self) -> Result<()> {
        let object_path = |field: &str, p: &str| -> Result<()> {
            if p.is_empty() || !p.ends_with('.') || p.len() > 256 {
                return Err(Error::invalid(
                    field,
                    format!("`{p}` must be an object path ending in '.' (at most 256 characters)"),
                ));
            }
            Ok(())
        };
        match self {
            TaskSpec::GetParameterValues { names } | TaskSpec::GetParameterAttributes { names } => {
                if names.is_empty() {
                    return Err(Error::invalid(
                        "names",
                        "give at least one parameter name or partial path",
                    ));
                }
                for n in names {
                    if n.len() > 256 {
                        return Err(Error::invalid(
                            "names",
                            format!("`{n}` is longer than 256 characters"),
                        ));
                    }
                }
            }
            TaskSpec::SetParameterValues { values } => {
                if values.is_empty() {
                    return Err(Error::invalid("values", "give at least one {name, value}"));
                }
                for v in values {
                    if v.name.is_empty() || v.name.ends_with('.') {
                        return Err(Error::invalid(
                            "values",
                            format!("`{}` is not a parameter name", v.name),
                        ));
                    }
                }
            }
            TaskSpec::SetParameterAttributes { attributes } => {
                if attributes.is_empty() {
                    return Err(Error::invalid(
                        "attributes",
                        "give at least one attribute change",
                    ));
                }
                for a in attributes {
                    if let Some(n) = a.notification {
                        if n > 6 {
                            return Err(Error::invalid(
                                "attributes",
                                format!("{}: notification must be 0..6", a.name),
                            ));
                        }
                    }
                }
            }
            TaskSpec::AddObject { object } => object_path("object", object)?,
            TaskSpec::DeleteObject { object } => {
                object_path("object", object)?;
                let last = object
                    .trim_end_matches('.')
                    .rsplit('.')
                    .next()
                    .unwrap_or("");
                if last.parse::<u32>().is_err() && !last.starts_with('[') {
                    return Err(Error::invalid(
                        "object",
                        format!("`{object}` must name an instance, e.g. X.Y.3."),
                    ));
                }
            }
            TaskSpec::Download {
                file_id,
                url,
                file_type,
                ..
            }
            | TaskSpec::ScheduleDownload {
                file_id,
                url,
                file_type,
                ..
            } => {
                if file_id.is_none() == url.is_none() {
                    return Err(Error::invalid(
                        "file_id",
                        "give either file_id (a stored file) or url",
                    ));
                }
                if let Some(u) = url {
                    check_transfer_url(u)?;
                }
                if file_type.is_empty() || file_type.len() > 64 {
                    return Err(Error::invalid(
                        "file_type",
                        "e.g. \"1 Firmware Upgrade Image\" (at most 64 characters)",
                    ));
                }
                if let TaskSpec::ScheduleDownload { windows, .. } = self {
                    if windows.is_empty() || windows.len() > 2 {
                        return Err(Error::invalid("windows", "give one or two time windows"));
                    }
                }
            }
            TaskSpec::Upload { file_type, .. } if file_type.is_empty() || file_type.len() > 64 => {
                return Err(Error::invalid(
                    "file_type",
                    "e.g. \"1 Vendor Configuration File\"",
                ));
            }
            TaskSpec::Upload { url: Some(u), .. } => check_transfer_url(u)?,
            TaskSpec::CancelTransfer { command_key } if command_key.len() > 32 => {
                return Err(Error::invalid("command_key", "at most 32 characters"));
            }
            TaskSpec::ChangeDuState { operations } if operations.is_empty() => {
                return Err(Error::invalid("operations", "give at least one operation"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Build the CWMP request. `key` is the task's CommandKey / ParameterKey; `download_url`
    /// resolves a stored file id to the URL (and credentials) the device should use;
    /// `upload_url` is where an Upload should go.
    pub fn to_request(
        &self,
        key: &str,
        types: &dyn Fn(&str) -> Option<String>,
        download_url: &dyn Fn(&str) -> Result<(String, u32)>,
        upload_url: &dyn Fn() -> String,
    ) -> Result<AcsRequest> {
        Ok(match self {
            TaskSpec::GetParameterValues { names } => {
                AcsRequest::GetParameterValues(GetParameterValues {
                    parameter_names: names.clone(),
                })
            }
            TaskSpec::SetParameterValues { values } => {
                AcsRequest::SetParameterValues(SetParameterValues {
                    parameter_list: values
                        .iter()
                        .map(|v| ParameterValue {
                            name: v.name.clone(),
                            value: v.value.clone(),
                            xsd_type: v
                                .xsd_type
                                .clone()
                                .or_else(|| types(&v.name))
                                .map_or_else(|| "xsd:string".into(), Into::into),
                        })
                        .collect(),
                    parameter_key: key.to_string(),
                })
            }
            TaskSpec::GetParameterNames { path, next_level } => {
                AcsRequest::GetParameterNames(GetParameterNames {
                    parameter_path: path.clone(),
                    next_level: *next_level,
                })
            }
            TaskSpec::GetParameterAttributes { names } => {
                AcsRequest::GetParameterAttributes(GetParameterAttributes {
                    parameter_names: names.clone(),
                })
            }
            TaskSpec::SetParameterAttributes { attributes } => {
                AcsRequest::SetParameterAttributes(SetParameterAttributes {
                    parameter_list: attributes
                        .iter()
                        .map(|a| SetParameterAttribute {
                            name: a.name.clone(),
                            notification_change: a.notification.is_some(),
                            notification: a.notification.unwrap_or(0),
                            access_list_change: a.access_list.is_some(),
                            access_list: a.access_list.clone().unwrap_or_default(),
                        })
                        .collect(),
                })
            }
            TaskSpec::AddObject { object } => AcsRequest::AddObject(ObjectRequest {
                object_name: object.clone(),
                parameter_key: key.to_string(),
            }),
            TaskSpec::DeleteObject { object } => AcsRequest::DeleteObject(ObjectRequest {
                object_name: object.clone(),
                parameter_key: key.to_string(),
            }),
            TaskSpec::Reboot {} => AcsRequest::Reboot(Reboot {
                command_key: key.to_string(),
            }),
            TaskSpec::FactoryReset {} => AcsRequest::FactoryReset,
            TaskSpec::Download {
                file_id,
                url,
                file_type,
                username,
                password,
                file_size,
                target_file_name,
                delay_seconds,
            } => {
                let (url, size) = resolve_url(file_id, url, *file_size, download_url)?;
                AcsRequest::Download(Download {
                    command_key: key.to_string(),
                    file_type: file_type.clone(),
                    url,
                    username: username.clone().unwrap_or_default(),
                    password: password.clone().unwrap_or_default(),
                    file_size: size,
                    target_file_name: target_file_name.clone().unwrap_or_default(),
                    delay_seconds: *delay_seconds,
                    success_url: String::new(),
                    failure_url: String::new(),
                })
            }
            TaskSpec::Upload {
                file_type,
                url,
                username,
                password,
                delay_seconds,
            } => AcsRequest::Upload(Upload {
                command_key: key.to_string(),
                file_type: file_type.clone(),
                url: url.clone().unwrap_or_else(upload_url),
                username: username.clone().unwrap_or_default(),
                password: password.clone().unwrap_or_default(),
                delay_seconds: *delay_seconds,
            }),
            TaskSpec::ScheduleInform { delay_seconds } => {
                AcsRequest::ScheduleInform(ScheduleInform {
                    delay_seconds: *delay_seconds,
                    command_key: key.to_string(),
                })
            }
            TaskSpec::ScheduleDownload {
                file_id,
                url,
                file_type,
                username,
                password,
                file_size,
                target_file_name,
                windows,
            } => {
                let (url, size) = resolve_url(file_id, url, *file_size, download_url)?;
                AcsRequest::ScheduleDownload(ScheduleDownload {
                    command_key: key.to_string(),
                    file_type: file_type.clone(),
                    url,
                    username: username.clone().unwrap_or_default(),
                    password: password.clone().unwrap_or_default(),
                    file_size: size,
                    target_file_name: target_file_name.clone().unwrap_or_default(),
                    time_window_list: windows
                        .iter()
                        .map(|w| TimeWindow {
                            window_start: w.start,
                            window_end: w.end,
                            window_mode: w.mode.clone(),
                            user_message: w.user_message.clone(),
                            max_retries: w.max_retries,
                        })
                        .collect(),
                })
            }
            TaskSpec::CancelTransfer { command_key } => {
                AcsRequest::CancelTransfer(CancelTransfer {
                    command_key: command_key.clone(),
                })
            }
            TaskSpec::GetRpcMethods {} => AcsRequest::GetRpcMethods,
            TaskSpec::ChangeDuState { operations } => AcsRequest::ChangeDuState(ChangeDuState {
                operations: operations.clone(),
                command_key: Some(key.to_string()),
            }),
            TaskSpec::GetQueuedTransfers {} => AcsRequest::GetQueuedTransfers,
            TaskSpec::GetAllQueuedTransfers {} => AcsRequest::GetAllQueuedTransfers,
        })
    }

    /// What a successful response means for the task.
    pub fn complete(&self, resp: &CpeResponse) -> Completion {
        use serde_json::json;
        match resp {
            CpeResponse::GetParameterValues { parameter_list } => Completion::Done(json!({
                "values": parameter_list.iter().map(|p| json!({"name": p.name, "value": p.value, "type": p.xsd_type})).collect::<Vec<_>>()
            })),
            CpeResponse::GetParameterNames { parameter_list } => Completion::Done(json!({
                "names": parameter_list.iter().map(|p| json!({"name": p.name, "writable": p.writable})).collect::<Vec<_>>()
            })),
            CpeResponse::GetParameterAttributes { parameter_list } => Completion::Done(json!({
                "attributes": parameter_list.iter().map(|p| json!({"name": p.name, "notification": p.notification, "access_list": p.access_list})).collect::<Vec<_>>()
            })),
            CpeResponse::SetParameterValues { status } => {
                Completion::Done(json!({ "status": status }))
            }
            CpeResponse::AddObject {
                instance_number,
                status,
            } => Completion::Done(json!({ "instance_number": instance_number, "status": status })),
            CpeResponse::DeleteObject { status } => Completion::Done(json!({ "status": status })),
            CpeResponse::Reboot => Completion::Awaiting("M Reboot"),
            CpeResponse::FactoryReset => Completion::Awaiting("0 BOOTSTRAP"),
            CpeResponse::Download {
                status,
                start_time,
                complete_time,
            }
            | CpeResponse::Upload {
                status,
                start_time,
                complete_time,
            } => {
                if *status == 0 {
                    Completion::Done(
                        json!({"status": 0, "start_time": start_time, "complete_time": complete_time}),
                    )
                } else {
                    Completion::Awaiting("TransferComplete")
                }
            }
            CpeResponse::ScheduleDownload => Completion::Awaiting("TransferComplete"),
            CpeResponse::ChangeDuState => Completion::Awaiting("DUStateChangeComplete"),
            CpeResponse::GetRpcMethods { method_list } => {
                Completion::Done(json!({ "methods": method_list }))
            }
            CpeResponse::GetQueuedTransfers { transfer_list } => Completion::Done(json!({
                "transfers": transfer_list.iter().map(|t| json!({"command_key": t.command_key, "state": t.state})).collect::<Vec<_>>()
            })),
            CpeResponse::GetAllQueuedTransfers { transfer_list } => Completion::Done(json!({
                "transfers": transfer_list.iter().map(|t| json!({
                    "command_key": t.command_key, "state": t.state, "is_download": t.is_download,
                    "file_type": t.file_type, "file_size": t.file_size, "target_file_name": t.target_file_name
                })).collect::<Vec<_>>()
            })),
            CpeResponse::SetParameterAttributes
            | CpeResponse::ScheduleInform
            | CpeResponse::CancelTransfer => Completion::Done(json!({})),
        }
    }
}

/// A URL an operator gives a Download or Upload: HTTP, HTTPS or FTP, as CPEs fetch them; at
/// most 256 characters, the schema's limit; no credentials in it (they would be shown with
/// the task to every role: `username` and `password` are sealed, and masked when shown).
fn check_transfer_url(url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = ["http://", "https://", "ftp://"]
        .iter()
        .find_map(|p| lower.strip_prefix(p))
    else {
        return Err(Error::invalid(
            "url",
            "an http://, https:// or ftp:// URL the device can fetch",
        ));
    };
    if url.len() > 256 {
        return Err(Error::invalid(
            "url",
            "at most 256 characters (the CWMP schema's limit)",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(Error::invalid(
            "url",
            "no credentials in the URL: give them as username and password",
        ));
    }
    if authority.is_empty() {
        return Err(Error::invalid("url", "the URL has no host"));
    }
    Ok(())
}

fn resolve_url(
    file_id: &Option<String>,
    url: &Option<String>,
    size: Option<u32>,
    download_url: &dyn Fn(&str) -> Result<(String, u32)>,
) -> Result<(String, u32)> {
    match (file_id, url) {
        (Some(id), _) => {
            let (u, s) = download_url(id)?;
            Ok((u, size.unwrap_or(s)))
        }
        (None, Some(u)) => Ok((u.clone(), size.unwrap_or(0))),
        (None, None) => Err(Error::invalid("file_id", "give either file_id or url")),
    }
}

/// A fresh CommandKey / ParameterKey (at most 32 characters, as the schema requires).
pub fn new_key() -> String {
    let mut b = [0u8; 10];
    rand::fill(&mut b);
    format!("fa-{}", hex::encode(b))
}

/// JSON describing a CWMP fault, for the task's `fault_detail`. `set_parameter_values_faults`
/// appears only when the device listed faults per parameter (SetParameterValues).
pub fn fault_detail(f: &CwmpFault) -> serde_json::Value {
    let mut v = serde_json::json!({ "code": f.code, "string": f.string });
    if !f.set_parameter_values_faults.is_empty() {
        v["set_parameter_values_faults"] = f
            .set_parameter_values_faults
            .iter()
            .map(|s| {
                serde_json::json!({
                    "parameter": s.parameter_name, "code": s.code, "string": s.string
                })
            })
            .collect();
    }
    v
}

/// Delay before retrying after a transient fault: 1, 2, 4, ... minutes, capped at one hour.
pub fn retry_delay_ms(attempts: i32) -> i64 {
    let exp = attempts.clamp(1, 7) as u32 - 1;
    (60_000i64 << exp).min(3_600_000)
}

/// Attempts after which a transiently failing task is given up.
pub const MAX_ATTEMPTS: i32 = 5;

/// Shown instead of a secret value (task arguments and results, presets, the tasks of
/// scheduled jobs and campaigns); given back where a value is stored, it keeps that value.
pub const MASK: &str = "***";

/// Applies `f` to every secret inside task arguments or results (JSON as stored or shown):
/// the value of a `{"name", "value"}` pair whose parameter is secret
/// ([`crate::domain::params::is_secret`]: `…Password` or hidden in the data model), and every
/// `username`/`password` (Download, Upload, ScheduleDownload, ChangeDUState operations).
pub fn for_each_secret(
    v: &mut serde_json::Value,
    f: &mut dyn FnMut(&mut String) -> Result<()>,
) -> Result<()> {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let secret_pair = m
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(crate::domain::params::is_secret);
            for (k, x) in m.iter_mut() {
                let secret = (secret_pair && k == "value") || k == "password" || k == "username";
                match x {
                    Value::String(text) if secret => f(text)?,
                    // A campaign's webhook URL carries the receiver's secret (credentials in
                    // it are refused: the secret goes in its path or query).
                    Value::Object(hook) if k == "webhook" => {
                        for (hk, hx) in hook.iter_mut() {
                            match hx {
                                Value::String(url) if hk == "url" => f(url)?,
                                other => for_each_secret(other, f)?,
                            }
                        }
                    }
                    other => for_each_secret(other, f)?,
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().try_for_each(|x| for_each_secret(x, f)),
        _ => Ok(()),
    }
}

/// Task arguments as stored: every secret sealed.
pub fn seal_args(k: &crate::secrets::Keyring, args: &str) -> Result<String> {
    seal_json(k, crate::secrets::purpose::TASK_ARG, args)
}

/// Stored task arguments with every secret opened (to send to the device).
pub fn open_args(k: &crate::secrets::Keyring, stored: &str) -> Result<String> {
    open_json(k, crate::secrets::purpose::TASK_ARG, stored)
}

/// Stored task arguments with every secret under the current key; `None` when unchanged.
pub fn reseal_args(k: &crate::secrets::Keyring, stored: &str) -> Result<Option<String>> {
    reseal_json(k, crate::secrets::purpose::TASK_ARG, stored)
}

/// JSON (task arguments, a preset's spec) with every secret ([`for_each_secret`]) sealed
/// for `purpose`; values sealed already are kept.
pub fn seal_json(k: &crate::secrets::Keyring, purpose: &str, json: &str) -> Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(json)?;
    for_each_secret(&mut v, &mut |s| {
        if !s.is_empty() && !crate::secrets::is_sealed(s) {
            *s = k.seal(purpose, s)?;
        }
        Ok(())
    })?;
    Ok(serde_json::to_string(&v)?)
}

/// Stored JSON with every secret opened.
pub fn open_json(k: &crate::secrets::Keyring, purpose: &str, stored: &str) -> Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(stored)?;
    for_each_secret(&mut v, &mut |s| {
        *s = k.open(purpose, s)?;
        Ok(())
    })?;
    Ok(serde_json::to_string(&v)?)
}

/// Stored JSON with every secret under the current key (clear ones sealed); `None` when
/// unchanged.
pub fn reseal_json(
    k: &crate::secrets::Keyring,
    purpose: &str,
    stored: &str,
) -> Result<Option<String>> {
    let mut v: serde_json::Value = serde_json::from_str(stored)?;
    let mut changed = false;
    for_each_secret(&mut v, &mut |s| {
        if s.is_empty() {
            return Ok(());
        }
        if let Some(new) = k.reseal(purpose, s)? {
            *s = new;
            changed = true;
        }
        Ok(())
    })?;
    Ok(if changed {
        Some(serde_json::to_string(&v)?)
    } else {
        None
    })
}

/// A specification given back as it was shown (a scheduled job's, a campaign's action):
/// every secret ([`for_each_secret`]) given as [`MASK`] takes the value `stored` holds (the
/// stored JSON with its secrets opened; `None` when nothing is stored yet): a secret
/// parameter's value the stored value of the same parameter, a `username` or `password` the
/// one at the same place, only while that place keeps its `rpc`, `url` and `file_id`. A mask
/// with nothing stored behind it is refused, naming the parameter or the field.
pub fn keep_stored_secrets(
    given: &mut serde_json::Value,
    stored: Option<&serde_json::Value>,
) -> Result<()> {
    let mut by_name = std::collections::BTreeMap::new();
    if let Some(s) = stored {
        secret_pairs(s, &mut by_name);
    }
    unmask(given, stored, "", &by_name)
}

/// Secret parameter name → its value, for every `{"name", "value"}` pair inside `v`.
fn secret_pairs(v: &serde_json::Value, out: &mut std::collections::BTreeMap<String, String>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| crate::domain::params::is_secret(n));
            if let (Some(n), Some(Value::String(value))) = (name, m.get("value")) {
                out.entry(n.to_string()).or_insert_with(|| value.clone());
            }
            m.values().for_each(|x| secret_pairs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| secret_pairs(x, out)),
        _ => {}
    }
}

fn unmask(
    v: &mut serde_json::Value,
    stored: Option<&serde_json::Value>,
    path: &str,
    by_name: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let pair = m
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| crate::domain::params::is_secret(n))
                .map(str::to_string);
            // Credentials stay with what they were given for: not kept for another RPC,
            // URL or file (they would go to whoever the new URL names).
            let same_target = ["rpc", "url", "file_id"]
                .iter()
                .all(|k| m.get(*k) == stored.and_then(|s| s.get(*k)));
            for (k, x) in m.iter_mut() {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let old = stored.and_then(|s| s.get(k));
                let pair_value = pair.is_some() && k == "value";
                match x {
                    Value::String(text)
                        if (pair_value || k == "password" || k == "username") && text == MASK =>
                    {
                        let kept = if pair_value {
                            pair.as_ref().and_then(|n| by_name.get(n)).cloned()
                        } else if stored.is_some() && !same_target {
                            return Err(Error::invalid(
                                here,
                                format!(
                                    "give the {k} again: {MASK} keeps a stored one only for the same rpc, url and file_id"
                                ),
                            ));
                        } else {
                            old.and_then(Value::as_str).map(str::to_string)
                        };
                        match kept.filter(|s| !s.is_empty() && s != MASK) {
                            Some(s) => *text = s,
                            None => {
                                return Err(Error::invalid(
                                    pair.clone().unwrap_or(here),
                                    format!(
                                        "give the secret value ({MASK} keeps a stored one, and none is stored)"
                                    ),
                                ))
                            }
                        }
                    }
                    other => unmask(other, old, &here, by_name)?,
                }
            }
            Ok(())
        }
        Value::Array(a) => a.iter_mut().enumerate().try_for_each(|(i, x)| {
            unmask(
                x,
                stored.and_then(|s| s.get(i)),
                &format!("{path}[{i}]"),
                by_name,
            )
        }),
        _ => Ok(()),
    }
}

/// Task arguments or results as anyone may see them: every secret replaced by `"***"`
/// (an empty one stays empty, so "unset" stays visible).
pub fn redact_secrets(v: &mut serde_json::Value) {
    let _ = for_each_secret(v, &mut |s| {
        if !s.is_empty() {
            *s = MASK.into();
        }
        Ok(())
    });
}

/// Stored task arguments as text safe for logs and the audit log.
pub fn redacted_args(stored: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(mut v) => {
            redact_secrets(&mut v);
            v.to_string()
        }
        Err(_) => "(unreadable arguments)".into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transfer_urls_are_checked_and_carry_no_credentials() {
        let download = |url: &str| {
            serde_json::from_value::<TaskSpec>(serde_json::json!({
                "rpc": "Download", "url": url, "file_type": "1 Firmware Upgrade Image"
            }))
            .unwrap()
            .check()
        };
        assert!(download("http://fw.example.net/a.bin").is_ok());
        assert!(download("FTP://fw.example.net/a.bin").is_ok());
        for bad in [
            "http://user:pw@fw.example.net/a.bin",
            "https://token@fw.example.net/a.bin",
            "file:///etc/shadow",
            "fw.example.net/a.bin",
            "http:///a.bin",
        ] {
            let e = download(bad).unwrap_err().to_string();
            assert!(e.contains("url"), "{bad}: {e}");
        }
        let long = format!("http://fw.example.net/{}", "a".repeat(240));
        assert!(download(&long).is_err());
        let upload = serde_json::from_value::<TaskSpec>(serde_json::json!({
            "rpc": "Upload", "url": "http://u:p@up.example.net/", "file_type": "1 Vendor Configuration File"
        }))
        .unwrap();
        assert!(upload.check().is_err());
    }

    #[test]
    fn status_and_rpc_enums_keep_the_stored_names() {
        for st in TaskStatus::ALL {
            let json = serde_json::to_string(&st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.as_str()));
            assert_eq!(TaskStatus::parse(st.as_str()), Some(st));
        }
        assert!(TaskStatus::Cancelled.is_final() && !TaskStatus::Running.is_final());
        assert_eq!(TaskStatus::parse("Done"), None);
        for rpc in Rpc::ALL {
            let json = serde_json::to_string(&rpc).unwrap();
            assert_eq!(json, format!("\"{}\"", rpc.as_str()));
            assert_eq!(serde_json::from_str::<Rpc>(&json).unwrap(), rpc);
            assert_eq!(Rpc::parse(rpc.as_str()), Some(rpc));
        }
        assert_eq!(Rpc::GetRpcMethods.as_str(), "GetRPCMethods");
        // The task JSON's `rpc` tag is the RPC's name.
        for j in [r#"{"rpc":"GetRPCMethods"}"#, r#"{"rpc":"Reboot"}"#] {
            let t: TaskSpec = serde_json::from_str(j).unwrap();
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            assert_eq!(t.rpc(), v["rpc"].as_str().unwrap());
        }
    }

    #[test]
    fn api_json_round_trips() {
        let j = r#"{"rpc":"SetParameterValues","values":[{"name":"A.B","value":"1","type":"xsd:unsignedInt"}]}"#;
        let t: TaskSpec = serde_json::from_str(j).unwrap();
        assert_eq!(t.rpc(), "SetParameterValues");
        let back = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<TaskSpec>(&back).unwrap(), t);
        assert!(serde_json::from_str::<TaskSpec>(r#"{"rpc":"Reboot","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<TaskSpec>(r#"{"rpc":"GetRPCMethods"}"#).is_ok());
        assert!(serde_json::from_str::<TaskSpec>(r#"{"rpc":"Nope"}"#).is_err());
    }

    #[test]
    fn checks_shapes() {
        assert!(TaskSpec::AddObject {
            object: "A.B".into()
        }
        .check()
        .is_err());
        assert!(TaskSpec::AddObject {
            object: "A.B.".into()
        }
        .check()
        .is_ok());
        assert!(TaskSpec::DeleteObject {
            object: "A.B.".into()
        }
        .check()
        .is_err());
        assert!(TaskSpec::DeleteObject {
            object: "A.B.3.".into()
        }
        .check()
        .is_ok());
        assert!(TaskSpec::GetParameterValues { names: vec![] }
            .check()
            .is_err());
    }

    #[test]
    fn set_uses_known_type_when_none_given() {
        let t = TaskSpec::SetParameterValues {
            values: vec![SetValue {
                name: "X.Interval".into(),
                value: "60".into(),
                xsd_type: None,
            }],
        };
        let types = |n: &str| (n == "X.Interval").then(|| "xsd:unsignedInt".to_string());
        let req = t
            .to_request("k", &types, &|_| Err(Error::internal("none")), &String::new)
            .unwrap();
        match req {
            AcsRequest::SetParameterValues(s) => {
                assert_eq!(s.parameter_list[0].xsd_type, "xsd:unsignedInt");
                assert_eq!(s.parameter_key, "k");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn masked_secrets_keep_the_stored_values() {
        let cr = "Device.ManagementServer.ConnectionRequestPassword";
        let stored = serde_json::json!({"action": {"type": "task", "task": {
        "rpc": "SetParameterValues",
        "values": [
            {"name": "Device.A", "value": "1"},
            {"name": cr, "value": "cr-secret"},
        ]}}});
        // Reordered values: the secret follows its parameter, not its place.
        let mut given = serde_json::json!({"action": {"type": "task", "task": {
        "rpc": "SetParameterValues",
        "values": [
            {"name": cr, "value": "***"},
            {"name": "Device.A", "value": "***"},
        ]}}});
        keep_stored_secrets(&mut given, Some(&stored)).unwrap();
        let values = &given["action"]["task"]["values"];
        assert_eq!(values[0]["value"], "cr-secret");
        // Not a secret: "***" is an ordinary value there.
        assert_eq!(values[1]["value"], "***");
        // A new value replaces the stored one.
        let mut given = serde_json::json!({"values": [{"name": cr, "value": "new"}]});
        keep_stored_secrets(&mut given, Some(&stored)).unwrap();
        assert_eq!(given["values"][0]["value"], "new");
        // Download credentials keep theirs by place.
        let stored =
            serde_json::json!({"task": {"rpc": "Download", "username": "u1", "password": "p1"}});
        let mut given =
            serde_json::json!({"task": {"rpc": "Download", "username": "***", "password": "***"}});
        keep_stored_secrets(&mut given, Some(&stored)).unwrap();
        assert_eq!(given["task"]["username"], "u1");
        assert_eq!(given["task"]["password"], "p1");
        // Not for another RPC or URL: the credentials would go wherever it points.
        let mut given = serde_json::json!({"task": {"rpc": "Upload", "password": "***"}});
        let e = keep_stored_secrets(&mut given, Some(&stored)).unwrap_err();
        assert!(e.to_string().starts_with("task.password:"), "{e}");
        let stored =
            serde_json::json!({"task": {"rpc": "Download", "url": "http://a/f", "password": "p1"}});
        let mut given = serde_json::json!({"task": {"rpc": "Download", "url": "http://evil/f", "password": "***"}});
        let e = keep_stored_secrets(&mut given, Some(&stored)).unwrap_err();
        assert!(e.to_string().contains("give the password again"), "{e}");
        let mut given = serde_json::json!({"task": {"rpc": "Download", "url": "http://a/f", "password": "***"}});
        keep_stored_secrets(&mut given, Some(&stored)).unwrap();
        assert_eq!(given["task"]["password"], "p1");
        // A mask with nothing behind it names the field or the parameter.
        let mut given = serde_json::json!({"task": {"rpc": "Download", "url": "http://a/f", "username": "***"}});
        let e = keep_stored_secrets(&mut given, Some(&stored)).unwrap_err();
        assert!(e.to_string().starts_with("task.username:"), "{e}");
        let mut given = serde_json::json!({"values": [{"name": cr, "value": "***"}]});
        let e = keep_stored_secrets(&mut given, None).unwrap_err();
        assert!(e.to_string().starts_with(cr), "{e}");
        assert!(e.to_string().contains("give the secret value"), "{e}");
        // Nothing masked: nothing needed.
        let mut given = serde_json::json!({"task": {"rpc": "Reboot"}});
        keep_stored_secrets(&mut given, None).unwrap();
    }

    #[test]
    fn a_job_spec_is_sealed_shown_masked_and_opened() {
        let k = crate::secrets::Keyring::from_hex(&[crate::secrets::generate_key()], "t").unwrap();
        let spec = serde_json::json!({"name": "rotate", "query": "tag = a", "cron": "0 0 3 * * *",
            "action": {"type": "task", "task": {"rpc": "Download", "url": "http://x/f",
                "file_type": "3 Vendor Configuration File", "username": "dl-user", "password": "dl-pass"}}})
        .to_string();
        let purpose = crate::secrets::purpose::SCHEDULE_SPEC;
        let stored = seal_json(&k, purpose, &spec).unwrap();
        assert!(
            !stored.contains("dl-pass") && !stored.contains("dl-user"),
            "{stored}"
        );
        assert!(stored.contains("http://x/f") && stored.contains("tag = a"));
        let mut shown: serde_json::Value = serde_json::from_str(&stored).unwrap();
        redact_secrets(&mut shown);
        assert_eq!(shown["action"]["task"]["password"], "***");
        let open: serde_json::Value =
            serde_json::from_str(&open_json(&k, purpose, &stored).unwrap()).unwrap();
        assert_eq!(open["action"]["task"]["password"], "dl-pass");
        // Bound to its column.
        assert!(open_json(&k, crate::secrets::purpose::CAMPAIGN_SPEC, &stored).is_err());
        // Clear rows of older versions: sealed once, then left alone.
        let resealed = reseal_json(&k, purpose, &spec).unwrap().unwrap();
        assert!(!resealed.contains("dl-pass"));
        assert_eq!(reseal_json(&k, purpose, &resealed).unwrap(), None);
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(retry_delay_ms(1), 60_000);
        assert_eq!(retry_delay_ms(2), 120_000);
        assert_eq!(retry_delay_ms(30), 3_600_000);
        assert!(new_key().len() <= 32);
    }
}
