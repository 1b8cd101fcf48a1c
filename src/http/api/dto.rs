//! JSON shapes of the API, kept apart from the store rows they are built from.

use serde::Serialize;
use serde_json::Value;

use crate::domain::connreq::CrResult;
use crate::store::audit::AuditRow;
use crate::store::devices::DeviceRow;
use crate::store::faults::FaultRow;
use crate::store::files::FileRow;
use crate::store::search::ConnReqRow;
use crate::store::sessions::SessionLogRow;
use crate::store::tasks::TaskRow;
use crate::store::users::{TokenRow, UserRow};

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `next_cursor` is given when the page is full (there may be more).
    pub fn new(items: Vec<T>, limit: i64, cursor_of: impl Fn(&T) -> String) -> Page<T> {
        let next_cursor = (items.len() as i64 >= limit)
            .then(|| items.last().map(&cursor_of))
            .flatten();
        Page { items, next_cursor }
    }
}

#[derive(Debug, Serialize)]
pub struct ConnReqDto {
    pub at: i64,
    pub outcome: String,
    pub message: String,
}

impl From<&ConnReqRow> for ConnReqDto {
    fn from(r: &ConnReqRow) -> Self {
        ConnReqDto {
            at: r.at,
            outcome: r.outcome.clone(),
            message: r.message.clone(),
        }
    }
}

impl From<&CrResult> for ConnReqDto {
    fn from(r: &CrResult) -> Self {
        ConnReqDto {
            at: r.at,
            outcome: r.outcome.to_string(),
            message: r.message.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct DeviceDto {
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub model_name: String,
    pub software_version: String,
    pub hardware_version: String,
    pub root_model: String,
    pub cwmp_version: String,
    pub ip: String,
    pub last_inform: Option<i64>,
    pub last_boot: Option<i64>,
    pub last_bootstrap: Option<i64>,
    pub connection_request_url: String,
    pub has_own_credentials: bool,
    pub provisioned: bool,
    pub in_session: bool,
    pub tags: Vec<String>,
    pub connection_request: Option<ConnReqDto>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DeviceDto {
    pub fn new(d: &DeviceRow, tags: Vec<String>, cr: Option<&ConnReqRow>, now: i64) -> Self {
        DeviceDto {
            id: d.id.clone(),
            oui: d.oui.clone(),
            product_class: d.product_class.clone(),
            serial_number: d.serial_number.clone(),
            manufacturer: d.manufacturer.clone(),
            model_name: d.model_name.clone(),
            software_version: d.software_version.clone(),
            hardware_version: d.hardware_version.clone(),
            root_model: d.root_model.clone(),
            cwmp_version: d.cwmp_version.clone(),
            ip: d.last_source_ip.clone(),
            last_inform: d.last_inform,
            last_boot: d.last_boot,
            last_bootstrap: d.last_bootstrap,
            connection_request_url: d.connection_request_url.clone(),
            has_own_credentials: d.cwmp_username.is_some(),
            provisioned: d.provisioned != 0,
            in_session: d.session_expires.is_some_and(|e| e > now),
            tags,
            connection_request: cr.map(ConnReqDto::from),
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FaultInfo {
    pub code: i32,
    pub string: String,
    pub detail: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct TaskDto {
    pub id: i64,
    pub device_id: String,
    pub rpc: String,
    pub args: Value,
    pub status: String,
    pub result: Option<Value>,
    pub fault: Option<FaultInfo>,
    pub attempts: i32,
    pub command_key: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub not_before: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_request: Option<ConnReqDto>,
}

/// Hide secrets (Download/Upload passwords) in task arguments.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "password" && x.is_string() {
                    *x = Value::String("********".into());
                } else {
                    redact(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

impl From<&TaskRow> for TaskDto {
    fn from(t: &TaskRow) -> Self {
        let mut args: Value = serde_json::from_str(&t.args).unwrap_or(Value::Null);
        redact(&mut args);
        let result = t.result.as_deref().map(|r| {
            serde_json::from_str::<Value>(r).unwrap_or_else(|_| Value::String(r.to_string()))
        });
        let fault = t.fault_code.map(|code| FaultInfo {
            code,
            string: t.fault_string.clone().unwrap_or_default(),
            detail: t
                .fault_detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        });
        TaskDto {
            id: t.id,
            device_id: t.device_id.clone(),
            rpc: t.rpc.clone(),
            args,
            status: t.status.clone(),
            result,
            fault,
            attempts: t.attempts,
            command_key: t.command_key.clone(),
            created_by: t.created_by.clone(),
            created_at: t.created_at,
            updated_at: t.updated_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            expires_at: t.expires_at,
            not_before: t.not_before,
            connection_request: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FaultDto {
    pub id: i64,
    pub device_id: String,
    pub task_id: Option<i64>,
    pub code: i32,
    pub message: String,
    pub detail: Option<Value>,
    pub created_at: i64,
}

impl From<&FaultRow> for FaultDto {
    fn from(f: &FaultRow) -> Self {
        FaultDto {
            id: f.id,
            device_id: f.device_id.clone(),
            task_id: f.task_id,
            code: f.code,
            message: f.message.clone(),
            detail: f
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
            created_at: f.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SessionDto {
    pub id: i64,
    pub device_id: String,
    pub started_at: i64,
    pub ended_at: i64,
    pub source_ip: String,
    pub events: Vec<String>,
    pub rpcs: Vec<String>,
    pub faults: Vec<String>,
    pub outcome: String,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl From<&SessionLogRow> for SessionDto {
    fn from(r: &SessionLogRow) -> Self {
        SessionDto {
            id: r.id,
            device_id: r.device_id.clone(),
            started_at: r.started_at,
            ended_at: r.ended_at,
            source_ip: r.source_ip.clone(),
            events: split_list(&r.events),
            rpcs: split_list(&r.rpcs),
            faults: serde_json::from_str(&r.faults).unwrap_or_default(),
            outcome: r.outcome.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FileDto {
    pub id: String,
    pub name: String,
    pub file_type: String,
    pub version: String,
    pub size: i64,
    pub sha256: String,
    pub device_id: Option<String>,
    pub created_at: i64,
    /// Where operators fetch the contents (devices get signed links instead).
    pub url: String,
}

impl From<&FileRow> for FileDto {
    fn from(f: &FileRow) -> Self {
        FileDto {
            id: f.id.clone(),
            name: f.name.clone(),
            file_type: f.file_type.clone(),
            version: f.version.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
            device_id: f.device_id.clone(),
            created_at: f.created_at,
            url: format!("{}/files/{}/content", super::PREFIX, f.id),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ParameterDto {
    pub name: String,
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub xsd_type: String,
    pub writable: Option<bool>,
    pub object: bool,
    pub notification: Option<u8>,
    pub access_list: Option<Vec<String>>,
    pub updated_at: i64,
}

#[derive(Debug, Serialize)]
pub struct TokenDto {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<&TokenRow> for TokenDto {
    fn from(t: &TokenRow) -> Self {
        TokenDto {
            id: t.id,
            name: t.name.clone(),
            role: t.role.clone(),
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct UserDto {
    pub id: i64,
    pub username: String,
    pub role: String,
    pub created_at: i64,
}

impl From<&UserRow> for UserDto {
    fn from(u: &UserRow) -> Self {
        UserDto {
            id: u.id,
            username: u.username.clone(),
            role: u.role.clone(),
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuditDto {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<String>,
}

impl From<&AuditRow> for AuditDto {
    fn from(a: &AuditRow) -> Self {
        AuditDto {
            id: a.id,
            at: a.at,
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            detail: a.detail.clone(),
        }
    }
}
