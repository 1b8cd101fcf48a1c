//! JSON shapes of the API, kept apart from the store rows they are built from.

use serde::Serialize;
use serde_json::Value;

use crate::domain::connreq::{CrResult, CrState};
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
    /// `sent`, `scheduled` or `joined_session`.
    pub state: &'static str,
    pub at: i64,
    pub outcome: String,
    pub message: String,
    /// When a scheduled request goes out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<i64>,
    /// The transport of a request sent now (`http`, `udp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

impl From<&ConnReqRow> for ConnReqDto {
    fn from(r: &ConnReqRow) -> Self {
        ConnReqDto {
            state: CrState::Sent.as_str(),
            at: r.at,
            outcome: r.outcome.clone(),
            message: r.message.clone(),
            scheduled_at: None,
            transport: r.transport.clone(),
        }
    }
}

impl From<&CrResult> for ConnReqDto {
    fn from(r: &CrResult) -> Self {
        ConnReqDto {
            state: r.state.as_str(),
            at: r.at,
            outcome: r.outcome.to_string(),
            message: r.message.clone(),
            scheduled_at: r.scheduled_at,
            transport: r.transport.map(str::to_string),
        }
    }
}

/// How a device can be reached (TR-111 STUN binding, routes, attempts).
#[derive(Debug, Serialize)]
pub struct ReachabilityDto {
    pub stun: Option<StunDto>,
    /// ferroacs's own XMPP connection (null when `[xmpp]` is not configured).
    pub xmpp: Option<XmppDto>,
    pub routes: Vec<RouteDto>,
    pub attempts: Vec<AttemptDto>,
    /// When no route reaches the device: the gateway it is behind (TR-111), if known.
    pub behind_gateway: Option<GatewayLinkDto>,
}

/// The other side of a device–gateway pair (TR-111 Part 1).
#[derive(Debug, Serialize)]
pub struct GatewayLinkDto {
    pub id: String,
    /// `confirmed`, `gateway_table` or `device_gateway_info`.
    pub source: &'static str,
    pub listed_at: Option<i64>,
    pub claimed_at: Option<i64>,
    pub last_seen: i64,
    /// Whether ferroacs manages that device.
    pub managed: bool,
    pub host: String,
}

impl From<&crate::domain::tr111::Link> for GatewayLinkDto {
    fn from(l: &crate::domain::tr111::Link) -> Self {
        GatewayLinkDto {
            id: l.id.clone(),
            source: l.source.as_str(),
            listed_at: l.listed_at,
            claimed_at: l.claimed_at,
            last_seen: l.last_seen,
            managed: l.managed,
            host: l.host.clone(),
        }
    }
}

/// A device's place in the device–gateway association.
#[derive(Debug, Serialize)]
pub struct GatewayAssociationDto {
    pub gateway: Option<GatewayLinkDto>,
    pub behind_gateway: Vec<GatewayLinkDto>,
}

impl From<&crate::domain::tr111::Association> for GatewayAssociationDto {
    fn from(a: &crate::domain::tr111::Association) -> Self {
        GatewayAssociationDto {
            gateway: a.gateway.as_ref().map(GatewayLinkDto::from),
            behind_gateway: a.behind.iter().map(GatewayLinkDto::from).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StunDto {
    pub username: String,
    pub binding: Option<String>,
    pub binding_at: Option<i64>,
    pub age_ms: Option<i64>,
    pub seen_at: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct XmppDto {
    pub state: &'static str,
    pub jid: String,
    pub bound_jid: Option<String>,
    pub since: i64,
    pub tls: bool,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

impl From<&crate::connreq::xmpp::XmppStatus> for XmppDto {
    fn from(x: &crate::connreq::xmpp::XmppStatus) -> Self {
        XmppDto {
            state: x.state,
            jid: x.jid.clone(),
            bound_jid: x.bound_jid.clone(),
            since: x.since,
            tls: x.tls,
            last_error: x.last_error.clone(),
            reconnects: x.reconnects,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RouteDto {
    pub transport: &'static str,
    pub target: String,
}

#[derive(Debug, Serialize)]
pub struct AttemptDto {
    pub at: i64,
    pub transport: String,
    pub outcome: String,
    pub message: String,
    pub confirmed_at: Option<i64>,
}

impl From<&crate::domain::connreq::Reachability> for ReachabilityDto {
    fn from(r: &crate::domain::connreq::Reachability) -> Self {
        ReachabilityDto {
            stun: r.stun.as_ref().map(|s| StunDto {
                username: s.username.clone(),
                binding: s.binding.clone(),
                binding_at: s.binding_at,
                age_ms: s.age_ms,
                seen_at: s.seen_at,
            }),
            xmpp: r.xmpp.as_ref().map(XmppDto::from),
            routes: r
                .routes
                .iter()
                .map(|x| RouteDto {
                    transport: x.transport.as_str(),
                    target: x.target.clone(),
                })
                .collect(),
            attempts: r
                .attempts
                .iter()
                .map(|a| AttemptDto {
                    at: a.at,
                    transport: a.transport.clone(),
                    outcome: a.outcome.clone(),
                    message: a.message.clone(),
                    confirmed_at: a.confirmed_at,
                })
                .collect(),
            behind_gateway: None,
        }
    }
}

/// A device's CWMP credentials as an operator may see them: their state, never a secret.
#[derive(Debug, Serialize)]
pub struct CredentialsDto {
    pub state: &'static str,
    pub username: Option<String>,
    pub issued: bool,
    pub attempts: i32,
    pub reason: String,
    pub issued_at: Option<i64>,
    pub confirmed_at: Option<i64>,
}

impl From<crate::domain::credentials::Status> for CredentialsDto {
    fn from(s: crate::domain::credentials::Status) -> Self {
        CredentialsDto {
            state: s.state,
            username: s.username,
            issued: s.issued,
            attempts: s.attempts,
            reason: s.reason,
            issued_at: s.issued_at,
            confirmed_at: s.confirmed_at,
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
    /// The connection request sent for the task (null when none was).
    pub connection_request: Option<ConnReqDto>,
}

impl From<&TaskRow> for TaskDto {
    fn from(t: &TaskRow) -> Self {
        let mut args: Value = serde_json::from_str(&t.args).unwrap_or(Value::Null);
        crate::domain::tasks::redact_secrets(&mut args);
        let result = t.result.as_deref().map(|r| {
            let mut v =
                serde_json::from_str::<Value>(r).unwrap_or_else(|_| Value::String(r.to_string()));
            crate::domain::tasks::redact_secrets(&mut v);
            v
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
            status: t.status.to_string(),
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
    pub disabled: bool,
}

impl From<&UserRow> for UserDto {
    fn from(u: &UserRow) -> Self {
        UserDto {
            id: u.id,
            username: u.username.clone(),
            role: u.role.clone(),
            created_at: u.created_at,
            disabled: crate::domain::usecases::admin::is_disabled(u),
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

/// A VoIP line: the account (never its password), what the device reported, where the
/// account lives on the device.
#[derive(Debug, Serialize)]
pub struct LineDto {
    pub device_id: String,
    pub line: i32,
    pub account: crate::domain::voip::Account,
    /// Whether a password is stored (it is never shown).
    pub password_set: bool,
    /// `pending`, `applied`, `registered`, `registering`, `error`, `disabled`, `unknown` or
    /// `fault` (the device refused the account; see `fault`).
    pub status: String,
    /// The status as the device reported it (`Up`, `Registering`, `Error_Registration`, ...).
    pub device_status: Option<String>,
    pub status_at: Option<i64>,
    /// The account changed since the device last accepted it.
    pub pending: bool,
    pub revision: i64,
    pub applied_revision: i64,
    /// `tr104_issue1` or `tr104_issue2`, once the account was placed on the device.
    pub layout: Option<String>,
    pub status_path: Option<String>,
    /// Account fields the device has no parameter for.
    pub unmapped: Vec<String>,
    pub mapping: Option<Value>,
    pub fault: Option<String>,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_request: Option<ConnReqDto>,
}

impl From<&crate::domain::lines::LineView> for LineDto {
    fn from(l: &crate::domain::lines::LineView) -> Self {
        let text = |k: &str| {
            l.mapping
                .as_ref()
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        LineDto {
            device_id: l.device_id.clone(),
            line: l.line,
            account: l.account.clone(),
            password_set: l.password_set,
            status: l.status.clone(),
            device_status: l.device_status.clone(),
            status_at: l.status_at,
            pending: l.revision != l.applied_revision,
            revision: l.revision,
            applied_revision: l.applied_revision,
            layout: text("layout"),
            status_path: text("status_path"),
            unmapped: l
                .mapping
                .as_ref()
                .and_then(|m| m.get("unmapped"))
                .and_then(|u| serde_json::from_value(u.clone()).ok())
                .unwrap_or_default(),
            mapping: l.mapping.clone(),
            fault: l.fault.clone(),
            updated_at: l.updated_at,
            connection_request: None,
        }
    }
}

/// One CSV row the import refused.
#[derive(Debug, Serialize)]
pub struct RejectedRowDto {
    /// Line of the CSV file (the header is line 1).
    pub line: usize,
    pub field: String,
    pub message: String,
    pub device_id: Option<String>,
    /// The VoIP line number the row was for, when it could be read.
    pub voip_line: Option<i32>,
}

/// What a CSV import did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct ImportReportDto {
    pub dry_run: bool,
    pub imported: usize,
    pub rejected: Vec<RejectedRowDto>,
}

impl ImportReportDto {
    pub fn new(r: &crate::domain::lines::ImportReport, dry_run: bool) -> Self {
        ImportReportDto {
            dry_run,
            imported: r.imported,
            rejected: r
                .errors
                .iter()
                .map(|e| RejectedRowDto {
                    line: e.row,
                    field: e.field.clone(),
                    message: e.message.clone(),
                    device_id: e.device_id.clone(),
                    voip_line: e.line,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PresetDto {
    pub name: String,
    pub filter: String,
    pub priority: i32,
    pub events: Vec<String>,
    pub values: Vec<crate::domain::presets::PresetValue>,
    pub lines: Vec<crate::domain::presets::PresetLine>,
    pub periodic_inform: Option<crate::domain::presets::PeriodicInform>,
    pub firmware: Option<crate::domain::presets::Firmware>,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// How many devices were sent a connection request (with `connection_request=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_requests: Option<usize>,
}

impl From<&crate::domain::presets::PresetView> for PresetDto {
    fn from(p: &crate::domain::presets::PresetView) -> Self {
        PresetDto {
            name: p.name.clone(),
            filter: p.filter.clone(),
            priority: p.priority,
            events: p.events.clone(),
            values: p.spec.values.clone(),
            lines: p.spec.lines.clone(),
            periodic_inform: p.spec.periodic_inform.clone(),
            firmware: p.spec.firmware.clone(),
            revision: p.revision,
            created_at: p.created_at,
            updated_at: p.updated_at,
            connection_requests: None,
        }
    }
}

/// One preset as far as a device is concerned.
#[derive(Debug, Serialize)]
pub struct DevicePresetRevisionDto {
    pub name: String,
    /// The revision the device last converged to.
    pub converged_revision: i64,
    /// The preset's current revision (null: the preset was deleted since).
    pub current_revision: Option<i64>,
    pub up_to_date: bool,
}

/// Which preset set which value on a device, what it refused, and the revisions it
/// converged to.
#[derive(Debug, Serialize)]
pub struct DevicePresetsDto {
    pub device_id: String,
    /// Parameter → the preset that set it (value, preset revision, when).
    pub applied: std::collections::BTreeMap<String, crate::domain::converge::Applied>,
    /// Parameter → the value the device refused and why; not resent until the preset changes.
    pub refused: std::collections::BTreeMap<String, crate::domain::converge::Refused>,
    pub converged: Vec<DevicePresetRevisionDto>,
    /// Events at which the presets matching the device apply.
    pub events: Vec<String>,
}

impl DevicePresetsDto {
    pub fn new(
        r: crate::domain::presets::DevicePresets,
        current: &[crate::domain::presets::PresetView],
    ) -> Self {
        let converged = r
            .converged
            .iter()
            .map(|(name, rev)| {
                let cur = current.iter().find(|p| &p.name == name).map(|p| p.revision);
                DevicePresetRevisionDto {
                    name: name.clone(),
                    converged_revision: *rev,
                    current_revision: cur,
                    up_to_date: cur == Some(*rev),
                }
            })
            .collect();
        DevicePresetsDto {
            device_id: r.device_id,
            applied: r.applied,
            refused: r.refused,
            converged,
            events: r.events,
        }
    }
}
