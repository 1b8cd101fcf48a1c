//! CWMP message model: namespaces, SOAP headers, every RPC of TR-069 with its
//! arguments, and the envelope bodies exchanged in each direction.
//!
//! Everything here is a plain owned value (`String`s and integers) that can be
//! cloned, compared and persisted as JSON. `dateTime` values are kept exactly as
//! the peer wrote them; nothing in this module converts them. Field names follow
//! the XSD element names in snake case.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::fault::CwmpFault;

/// The "Unknown Time" dateTime value of TR-106, used when a CPE leaves a
/// dateTime element out or empty.
pub const UNKNOWN_TIME: &str = "0001-01-01T00:00:00Z";

/// The `xsi:type` assumed for a parameter value that carries none.
pub const DEFAULT_XSD_TYPE: &str = "xsd:string";

/// The `cwmp` namespace URI of a session.
///
/// CWMP 1.3 and 1.4 officially keep the `cwmp-1-2` URI; `cwmp-1-3` and
/// `cwmp-1-4` are not official but some CPE stacks send them, so they are
/// accepted and answered in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CwmpNs {
    /// `urn:dslforum-org:cwmp-1-0` (TR-069 Issue 1 / Amendment 1).
    #[serde(rename = "urn:dslforum-org:cwmp-1-0")]
    V1_0,
    /// `urn:dslforum-org:cwmp-1-1` (Amendment 2).
    #[serde(rename = "urn:dslforum-org:cwmp-1-1")]
    V1_1,
    /// `urn:dslforum-org:cwmp-1-2` (Amendment 3 and later, CWMP 1.2 to 1.4).
    #[serde(rename = "urn:dslforum-org:cwmp-1-2")]
    V1_2,
    /// `urn:dslforum-org:cwmp-1-3` (unofficial).
    #[serde(rename = "urn:dslforum-org:cwmp-1-3")]
    V1_3,
    /// `urn:dslforum-org:cwmp-1-4` (unofficial).
    #[serde(rename = "urn:dslforum-org:cwmp-1-4")]
    V1_4,
}

impl CwmpNs {
    /// Every namespace this module understands, oldest first.
    pub const ALL: [CwmpNs; 5] = [
        CwmpNs::V1_0,
        CwmpNs::V1_1,
        CwmpNs::V1_2,
        CwmpNs::V1_3,
        CwmpNs::V1_4,
    ];

    /// The namespace URI.
    pub fn as_uri(self) -> &'static str {
        match self {
            CwmpNs::V1_0 => "urn:dslforum-org:cwmp-1-0",
            CwmpNs::V1_1 => "urn:dslforum-org:cwmp-1-1",
            CwmpNs::V1_2 => "urn:dslforum-org:cwmp-1-2",
            CwmpNs::V1_3 => "urn:dslforum-org:cwmp-1-3",
            CwmpNs::V1_4 => "urn:dslforum-org:cwmp-1-4",
        }
    }

    /// Parses a namespace URI (exact match).
    pub fn from_uri(uri: &str) -> Option<CwmpNs> {
        CwmpNs::ALL.into_iter().find(|ns| ns.as_uri() == uri)
    }

    /// `true` for any URI of the `urn:dslforum-org:cwmp-` family, including
    /// versions this module does not know.
    pub fn looks_like_cwmp(uri: &str) -> bool {
        uri.starts_with("urn:dslforum-org:cwmp-")
    }
}

impl std::fmt::Display for CwmpNs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_uri())
    }
}

/// A CWMP protocol version as used by `SupportedCWMPVersions` and
/// `UseCWMPVersion` (CWMP 1.4 version negotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CwmpVersion {
    /// CWMP 1.0.
    #[serde(rename = "1.0")]
    V1_0,
    /// CWMP 1.1.
    #[serde(rename = "1.1")]
    V1_1,
    /// CWMP 1.2.
    #[serde(rename = "1.2")]
    V1_2,
    /// CWMP 1.3.
    #[serde(rename = "1.3")]
    V1_3,
    /// CWMP 1.4.
    #[serde(rename = "1.4")]
    V1_4,
}

impl CwmpVersion {
    /// The versions this ACS implements, oldest first.
    pub const SUPPORTED: [CwmpVersion; 5] = [
        CwmpVersion::V1_0,
        CwmpVersion::V1_1,
        CwmpVersion::V1_2,
        CwmpVersion::V1_3,
        CwmpVersion::V1_4,
    ];

    /// The version as written on the wire, e.g. `"1.4"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CwmpVersion::V1_0 => "1.0",
            CwmpVersion::V1_1 => "1.1",
            CwmpVersion::V1_2 => "1.2",
            CwmpVersion::V1_3 => "1.3",
            CwmpVersion::V1_4 => "1.4",
        }
    }

    /// Parses `"1.4"` and the like (surrounding whitespace ignored).
    pub fn parse(s: &str) -> Option<CwmpVersion> {
        let s = s.trim();
        CwmpVersion::SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// Picks the highest version that both this ACS and the CPE support, from
    /// the CPE's comma-separated `SupportedCWMPVersions` list. Unknown entries
    /// are ignored; `None` means there is no common version (fault 8006).
    pub fn negotiate(supported_by_cpe: &str) -> Option<CwmpVersion> {
        supported_by_cpe
            .split(',')
            .filter_map(CwmpVersion::parse)
            .max()
    }
}

impl std::fmt::Display for CwmpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CWMP SOAP header elements.
///
/// On input every element is optional. On output `id`, `hold_requests`,
/// `use_cwmp_version`, `session_timeout` and `supported_cwmp_versions` are
/// written when set; `no_more_requests` (TR-069 Issue 1 only) is parsed but
/// never written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// `cwmp:ID`: correlates a request with its response.
    pub id: Option<String>,
    /// `cwmp:HoldRequests` (ACS to CPE only).
    pub hold_requests: Option<bool>,
    /// `cwmp:SessionTimeout` in seconds (CPE Inform only, CWMP 1.3+).
    pub session_timeout: Option<u32>,
    /// `cwmp:SupportedCWMPVersions`, e.g. `"1.0,1.1,1.2,1.3,1.4"` (CPE Inform only).
    pub supported_cwmp_versions: Option<String>,
    /// `cwmp:UseCWMPVersion`, e.g. `"1.4"` (ACS InformResponse only).
    pub use_cwmp_version: Option<String>,
    /// `cwmp:NoMoreRequests` (Issue 1, obsolete; parsed for logging only).
    pub no_more_requests: Option<bool>,
}

impl Header {
    /// A header with only a `cwmp:ID`.
    pub fn with_id(id: impl Into<String>) -> Header {
        Header {
            id: Some(id.into()),
            ..Header::default()
        }
    }
}

// ---------------------------------------------------------------------------
// Shared structures
// ---------------------------------------------------------------------------

/// `ParameterValueStruct`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterValue {
    /// Full parameter name.
    pub name: String,
    /// The value exactly as transmitted (after XML unescaping).
    pub value: String,
    /// The `xsi:type` with its prefix normalised: XML Schema types come out as
    /// `xsd:<type>` whatever prefix the peer bound, SOAP-encoding types as
    /// `soap-enc:<type>`. [`DEFAULT_XSD_TYPE`] when the peer sent none. The types
    /// CWMP defines are shared, not copied per value.
    pub xsd_type: Cow<'static, str>,
}

impl ParameterValue {
    /// Builds a value with an explicit `xsi:type` such as `"xsd:unsignedInt"`.
    pub fn new(
        name: impl Into<String>,
        value: impl Into<String>,
        xsd_type: impl Into<Cow<'static, str>>,
    ) -> ParameterValue {
        ParameterValue {
            name: name.into(),
            value: value.into(),
            xsd_type: xsd_type.into(),
        }
    }

    /// Builds an `xsd:string` value.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> ParameterValue {
        ParameterValue::new(name, value, DEFAULT_XSD_TYPE)
    }
}

/// `ParameterInfoStruct` (GetParameterNamesResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterInfo {
    /// Parameter or object name; object names end in `.`.
    pub name: String,
    /// Whether the parameter is writable (objects: whether instances can be
    /// added or deleted).
    pub writable: bool,
}

/// `ParameterAttributeStruct` (GetParameterAttributesResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterAttribute {
    /// Parameter name.
    pub name: String,
    /// 0 off, 1 passive, 2 active, 3-6 lightweight variants (CWMP 1.4).
    pub notification: u32,
    /// Entities allowed to write besides the ACS (only `"Subscriber"` is defined).
    pub access_list: Vec<String>,
}

/// `SetParameterAttributesStruct`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetParameterAttribute {
    /// Parameter name or partial path.
    pub name: String,
    /// Whether `notification` is to be applied.
    pub notification_change: bool,
    /// 0 off, 1 passive, 2 active, 3-6 lightweight variants (CWMP 1.4).
    pub notification: u32,
    /// Whether `access_list` is to be applied.
    pub access_list_change: bool,
    /// New access list, e.g. `["Subscriber"]` or empty.
    pub access_list: Vec<String>,
}

/// `DeviceIdStruct` of an Inform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdStruct {
    /// Manufacturer name.
    pub manufacturer: String,
    /// Organizationally unique identifier, as sent (normally 6 upper-case hex digits).
    pub oui: String,
    /// Product class; may be empty.
    pub product_class: String,
    /// Serial number.
    pub serial_number: String,
}

/// `EventStruct` of an Inform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStruct {
    /// Event code such as `"1 BOOT"` or `"M Reboot"`.
    pub event_code: String,
    /// CommandKey of the ACS request that caused the event (may be empty).
    pub command_key: String,
}

/// `FaultStruct` of TransferComplete / AutonomousTransferComplete and the
/// `Fault` of a deployment-unit operation result. Code 0 means success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStruct {
    /// 0 for success, otherwise a 9xxx fault code.
    pub fault_code: u32,
    /// Human-readable description (may be empty).
    pub fault_string: String,
}

/// `ArgStruct` (RequestDownload FileTypeArg).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgStruct {
    /// Argument name.
    pub name: String,
    /// Argument value.
    pub value: String,
}

/// `TimeWindowStruct` of ScheduleDownload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Seconds from the time the CPE received the request.
    pub window_start: u32,
    /// Seconds from the time the CPE received the request.
    pub window_end: u32,
    /// `"1 At Any Time"`, `"2 Immediately"`, `"3 When Idle"`, `"4 Confirmation Needed"`.
    pub window_mode: String,
    /// Message to show the user (mode 4).
    pub user_message: String,
    /// Retry count; -1 means CPE-defined.
    pub max_retries: i32,
}

/// `QueuedTransferStruct` (GetQueuedTransfersResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedTransfer {
    /// CommandKey of the transfer.
    pub command_key: String,
    /// 1 not yet started, 2 in progress, 3 completed.
    pub state: u32,
}

/// `AllQueuedTransferStruct` (GetAllQueuedTransfersResponse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllQueuedTransfer {
    /// CommandKey of the transfer.
    pub command_key: String,
    /// 1 not yet started, 2 in progress, 3 completed.
    pub state: u32,
    /// `true` for a download, `false` for an upload.
    pub is_download: bool,
    /// Transfer file type.
    pub file_type: String,
    /// Size in bytes (0 if unknown).
    pub file_size: u32,
    /// Target file name (may be empty).
    pub target_file_name: String,
}

/// One operation of ChangeDUState. On the wire each is an `Operations`
/// element with `xsi:type="cwmp:InstallOpStruct"` (or Update/Uninstall).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DuOperation {
    /// `InstallOpStruct`.
    Install(InstallOp),
    /// `UpdateOpStruct`.
    Update(UpdateOp),
    /// `UninstallOpStruct`.
    Uninstall(UninstallOp),
}

impl DuOperation {
    /// The `xsi:type` local name, e.g. `"InstallOpStruct"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            DuOperation::Install(_) => "InstallOpStruct",
            DuOperation::Update(_) => "UpdateOpStruct",
            DuOperation::Uninstall(_) => "UninstallOpStruct",
        }
    }
}

/// `InstallOpStruct`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallOp {
    /// Where to fetch the deployment unit.
    pub url: String,
    /// Deployment unit UUID.
    pub uuid: Option<String>,
    /// File server user name.
    pub username: Option<String>,
    /// File server password.
    pub password: Option<String>,
    /// Execution environment path, e.g. `"Device.SoftwareModules.ExecEnv.1."`.
    pub execution_env_ref: Option<String>,
}

/// `UpdateOpStruct`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOp {
    /// Deployment unit UUID.
    pub uuid: Option<String>,
    /// Version to update.
    pub version: Option<String>,
    /// Where to fetch the new version.
    pub url: Option<String>,
    /// File server user name.
    pub username: Option<String>,
    /// File server password.
    pub password: Option<String>,
}

/// `UninstallOpStruct`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UninstallOp {
    /// Deployment unit UUID.
    pub uuid: String,
    /// Version to remove (all versions when absent).
    pub version: Option<String>,
    /// Execution environment path.
    pub execution_env_ref: Option<String>,
}

/// `OpResultStruct` of DUStateChangeComplete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpResult {
    /// Deployment unit UUID.
    pub uuid: String,
    /// Path of the DeploymentUnit instance.
    pub deployment_unit_ref: String,
    /// Deployment unit version.
    pub version: String,
    /// `"Installed"`, `"Uninstalled"` or `"Failed"`.
    pub current_state: String,
    /// Whether dependencies were resolved.
    pub resolved: bool,
    /// Comma-separated ExecutionUnit paths.
    pub execution_unit_ref_list: String,
    /// dateTime, verbatim.
    pub start_time: String,
    /// dateTime, verbatim.
    pub complete_time: String,
    /// Fault code 0 means success.
    pub fault: FaultStruct,
}

/// `AutonOpResultStruct` of AutonomousDUStateChangeComplete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutonOpResult {
    /// The common result fields.
    pub result: OpResult,
    /// `"Install"`, `"Update"`, `"Uninstall"` or a vendor string.
    pub operation_performed: String,
}

// ---------------------------------------------------------------------------
// ACS -> CPE requests
// ---------------------------------------------------------------------------

/// GetParameterNames arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetParameterNames {
    /// Full name or partial path ending in `.`; `""` is the root.
    pub parameter_path: String,
    /// `true`: immediate children only.
    pub next_level: bool,
}

/// GetParameterValues arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetParameterValues {
    /// Full names or partial paths.
    pub parameter_names: Vec<String>,
}

/// SetParameterValues arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetParameterValues {
    /// Values to set, all or nothing.
    pub parameter_list: Vec<ParameterValue>,
    /// New value of ManagementServer.ParameterKey on success (max 32 chars).
    pub parameter_key: String,
}

/// GetParameterAttributes arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetParameterAttributes {
    /// Full names or partial paths.
    pub parameter_names: Vec<String>,
}

/// SetParameterAttributes arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetParameterAttributes {
    /// Attribute changes.
    pub parameter_list: Vec<SetParameterAttribute>,
}

/// AddObject / DeleteObject arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRequest {
    /// Object path ending in `.` (table for AddObject, instance for DeleteObject).
    pub object_name: String,
    /// New ParameterKey on success.
    pub parameter_key: String,
}

/// Reboot arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reboot {
    /// Echoed in the `M Reboot` event.
    pub command_key: String,
}

/// Download arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    /// Echoed in `M Download` and TransferComplete.
    pub command_key: String,
    /// e.g. `"1 Firmware Upgrade Image"`, `"3 Vendor Configuration File"`.
    pub file_type: String,
    /// File location.
    pub url: String,
    /// File server user name (may be empty).
    pub username: String,
    /// File server password (may be empty).
    pub password: String,
    /// Size in bytes, 0 if unknown.
    pub file_size: u32,
    /// Target file name (may be empty).
    pub target_file_name: String,
    /// Seconds to wait before starting.
    pub delay_seconds: u32,
    /// Browser redirect on success (may be empty).
    pub success_url: String,
    /// Browser redirect on failure (may be empty).
    pub failure_url: String,
}

/// Upload arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Echoed in `M Upload` and TransferComplete.
    pub command_key: String,
    /// e.g. `"1 Vendor Configuration File"`, `"2 Vendor Log File"`.
    pub file_type: String,
    /// Destination.
    pub url: String,
    /// Server user name (may be empty).
    pub username: String,
    /// Server password (may be empty).
    pub password: String,
    /// Seconds to wait before starting.
    pub delay_seconds: u32,
}

/// ScheduleInform arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInform {
    /// Seconds until the Inform.
    pub delay_seconds: u32,
    /// Echoed in `M ScheduleInform`.
    pub command_key: String,
}

/// ScheduleDownload arguments (CWMP 1.2+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDownload {
    /// Echoed in `M ScheduleDownload` and TransferComplete.
    pub command_key: String,
    /// Download file type.
    pub file_type: String,
    /// File location.
    pub url: String,
    /// File server user name.
    pub username: String,
    /// File server password.
    pub password: String,
    /// Size in bytes, 0 if unknown.
    pub file_size: u32,
    /// Target file name.
    pub target_file_name: String,
    /// One or two windows.
    pub time_window_list: Vec<TimeWindow>,
}

/// CancelTransfer arguments (CWMP 1.2+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelTransfer {
    /// CommandKey of the transfer to cancel.
    pub command_key: String,
}

/// ChangeDUState arguments (CWMP 1.2+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDuState {
    /// One or more operations.
    pub operations: Vec<DuOperation>,
    /// Optional CommandKey echoed in DUStateChangeComplete.
    pub command_key: Option<String>,
}

/// A request the ACS sends to a CPE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "args")]
pub enum AcsRequest {
    /// GetRPCMethods.
    GetRpcMethods,
    /// GetParameterNames.
    GetParameterNames(GetParameterNames),
    /// GetParameterValues.
    GetParameterValues(GetParameterValues),
    /// SetParameterValues.
    SetParameterValues(SetParameterValues),
    /// GetParameterAttributes.
    GetParameterAttributes(GetParameterAttributes),
    /// SetParameterAttributes.
    SetParameterAttributes(SetParameterAttributes),
    /// AddObject.
    AddObject(ObjectRequest),
    /// DeleteObject.
    DeleteObject(ObjectRequest),
    /// Reboot.
    Reboot(Reboot),
    /// FactoryReset.
    FactoryReset,
    /// Download.
    Download(Download),
    /// Upload.
    Upload(Upload),
    /// ScheduleInform.
    ScheduleInform(ScheduleInform),
    /// ScheduleDownload (CWMP 1.2+).
    ScheduleDownload(ScheduleDownload),
    /// CancelTransfer (CWMP 1.2+).
    CancelTransfer(CancelTransfer),
    /// ChangeDUState (CWMP 1.2+).
    ChangeDuState(ChangeDuState),
    /// GetQueuedTransfers.
    GetQueuedTransfers,
    /// GetAllQueuedTransfers (CWMP 1.1+).
    GetAllQueuedTransfers,
}

impl AcsRequest {
    /// The SOAP element name, e.g. `"GetParameterValues"`.
    pub fn name(&self) -> &'static str {
        match self {
            AcsRequest::GetRpcMethods => "GetRPCMethods",
            AcsRequest::GetParameterNames(_) => "GetParameterNames",
            AcsRequest::GetParameterValues(_) => "GetParameterValues",
            AcsRequest::SetParameterValues(_) => "SetParameterValues",
            AcsRequest::GetParameterAttributes(_) => "GetParameterAttributes",
            AcsRequest::SetParameterAttributes(_) => "SetParameterAttributes",
            AcsRequest::AddObject(_) => "AddObject",
            AcsRequest::DeleteObject(_) => "DeleteObject",
            AcsRequest::Reboot(_) => "Reboot",
            AcsRequest::FactoryReset => "FactoryReset",
            AcsRequest::Download(_) => "Download",
            AcsRequest::Upload(_) => "Upload",
            AcsRequest::ScheduleInform(_) => "ScheduleInform",
            AcsRequest::ScheduleDownload(_) => "ScheduleDownload",
            AcsRequest::CancelTransfer(_) => "CancelTransfer",
            AcsRequest::ChangeDuState(_) => "ChangeDUState",
            AcsRequest::GetQueuedTransfers => "GetQueuedTransfers",
            AcsRequest::GetAllQueuedTransfers => "GetAllQueuedTransfers",
        }
    }

    /// The element name of the matching response, e.g. `"GetParameterValuesResponse"`.
    pub fn response_name(&self) -> String {
        format!("{}Response", self.name())
    }

    /// The oldest namespace whose schema defines this RPC. Sending it to a CPE
    /// that speaks an older namespace is pointless (expect fault 9000).
    pub fn introduced_in(&self) -> CwmpNs {
        match self {
            AcsRequest::GetAllQueuedTransfers => CwmpNs::V1_1,
            AcsRequest::ScheduleDownload(_)
            | AcsRequest::CancelTransfer(_)
            | AcsRequest::ChangeDuState(_) => CwmpNs::V1_2,
            _ => CwmpNs::V1_0,
        }
    }
}

// ---------------------------------------------------------------------------
// CPE -> ACS responses
// ---------------------------------------------------------------------------

/// A CPE's successful response to an [`AcsRequest`]. Each variant is named
/// after the request it answers; [`CpeResponse::name`] gives the element name
/// (`...Response`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method")]
pub enum CpeResponse {
    /// GetRPCMethodsResponse.
    GetRpcMethods {
        /// Supported method names.
        method_list: Vec<String>,
    },
    /// GetParameterNamesResponse.
    GetParameterNames {
        /// Names found.
        parameter_list: Vec<ParameterInfo>,
    },
    /// GetParameterValuesResponse.
    GetParameterValues {
        /// Values found.
        parameter_list: Vec<ParameterValue>,
    },
    /// SetParameterValuesResponse.
    SetParameterValues {
        /// 0 applied, 1 committed but applied later (e.g. after reboot).
        status: u32,
    },
    /// GetParameterAttributesResponse.
    GetParameterAttributes {
        /// Attributes found.
        parameter_list: Vec<ParameterAttribute>,
    },
    /// SetParameterAttributesResponse.
    SetParameterAttributes,
    /// AddObjectResponse.
    AddObject {
        /// Instance number of the new object.
        instance_number: u32,
        /// 0 applied, 1 applied later.
        status: u32,
    },
    /// DeleteObjectResponse.
    DeleteObject {
        /// 0 applied, 1 applied later.
        status: u32,
    },
    /// RebootResponse.
    Reboot,
    /// FactoryResetResponse.
    FactoryReset,
    /// DownloadResponse.
    Download {
        /// 0 done and applied, 1 not yet (TransferComplete follows).
        status: u32,
        /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
        start_time: String,
        /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
        complete_time: String,
    },
    /// UploadResponse.
    Upload {
        /// 0 done, 1 not yet (TransferComplete follows).
        status: u32,
        /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
        start_time: String,
        /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
        complete_time: String,
    },
    /// ScheduleInformResponse.
    ScheduleInform,
    /// ScheduleDownloadResponse.
    ScheduleDownload,
    /// CancelTransferResponse.
    CancelTransfer,
    /// ChangeDUStateResponse.
    ChangeDuState,
    /// GetQueuedTransfersResponse.
    GetQueuedTransfers {
        /// Queued transfers.
        transfer_list: Vec<QueuedTransfer>,
    },
    /// GetAllQueuedTransfersResponse.
    GetAllQueuedTransfers {
        /// Queued transfers, including autonomous ones.
        transfer_list: Vec<AllQueuedTransfer>,
    },
}

impl CpeResponse {
    /// The SOAP element name, e.g. `"GetParameterValuesResponse"`.
    pub fn name(&self) -> &'static str {
        match self {
            CpeResponse::GetRpcMethods { .. } => "GetRPCMethodsResponse",
            CpeResponse::GetParameterNames { .. } => "GetParameterNamesResponse",
            CpeResponse::GetParameterValues { .. } => "GetParameterValuesResponse",
            CpeResponse::SetParameterValues { .. } => "SetParameterValuesResponse",
            CpeResponse::GetParameterAttributes { .. } => "GetParameterAttributesResponse",
            CpeResponse::SetParameterAttributes => "SetParameterAttributesResponse",
            CpeResponse::AddObject { .. } => "AddObjectResponse",
            CpeResponse::DeleteObject { .. } => "DeleteObjectResponse",
            CpeResponse::Reboot => "RebootResponse",
            CpeResponse::FactoryReset => "FactoryResetResponse",
            CpeResponse::Download { .. } => "DownloadResponse",
            CpeResponse::Upload { .. } => "UploadResponse",
            CpeResponse::ScheduleInform => "ScheduleInformResponse",
            CpeResponse::ScheduleDownload => "ScheduleDownloadResponse",
            CpeResponse::CancelTransfer => "CancelTransferResponse",
            CpeResponse::ChangeDuState => "ChangeDUStateResponse",
            CpeResponse::GetQueuedTransfers { .. } => "GetQueuedTransfersResponse",
            CpeResponse::GetAllQueuedTransfers { .. } => "GetAllQueuedTransfersResponse",
        }
    }

    /// The oldest namespace whose schema defines this response.
    pub fn introduced_in(&self) -> CwmpNs {
        match self {
            CpeResponse::GetAllQueuedTransfers { .. } => CwmpNs::V1_1,
            CpeResponse::ScheduleDownload
            | CpeResponse::CancelTransfer
            | CpeResponse::ChangeDuState => CwmpNs::V1_2,
            _ => CwmpNs::V1_0,
        }
    }

    /// Whether this is the response type of `request`.
    pub fn matches(&self, request: &AcsRequest) -> bool {
        matches!(
            (self, request),
            (CpeResponse::GetRpcMethods { .. }, AcsRequest::GetRpcMethods)
                | (
                    CpeResponse::GetParameterNames { .. },
                    AcsRequest::GetParameterNames(_)
                )
                | (
                    CpeResponse::GetParameterValues { .. },
                    AcsRequest::GetParameterValues(_)
                )
                | (
                    CpeResponse::SetParameterValues { .. },
                    AcsRequest::SetParameterValues(_)
                )
                | (
                    CpeResponse::GetParameterAttributes { .. },
                    AcsRequest::GetParameterAttributes(_)
                )
                | (
                    CpeResponse::SetParameterAttributes,
                    AcsRequest::SetParameterAttributes(_)
                )
                | (CpeResponse::AddObject { .. }, AcsRequest::AddObject(_))
                | (
                    CpeResponse::DeleteObject { .. },
                    AcsRequest::DeleteObject(_)
                )
                | (CpeResponse::Reboot, AcsRequest::Reboot(_))
                | (CpeResponse::FactoryReset, AcsRequest::FactoryReset)
                | (CpeResponse::Download { .. }, AcsRequest::Download(_))
                | (CpeResponse::Upload { .. }, AcsRequest::Upload(_))
                | (CpeResponse::ScheduleInform, AcsRequest::ScheduleInform(_))
                | (
                    CpeResponse::ScheduleDownload,
                    AcsRequest::ScheduleDownload(_)
                )
                | (CpeResponse::CancelTransfer, AcsRequest::CancelTransfer(_))
                | (CpeResponse::ChangeDuState, AcsRequest::ChangeDuState(_))
                | (
                    CpeResponse::GetQueuedTransfers { .. },
                    AcsRequest::GetQueuedTransfers
                )
                | (
                    CpeResponse::GetAllQueuedTransfers { .. },
                    AcsRequest::GetAllQueuedTransfers
                )
        )
    }
}

// ---------------------------------------------------------------------------
// CPE -> ACS requests
// ---------------------------------------------------------------------------

/// Inform arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inform {
    /// Who is calling.
    pub device_id: DeviceIdStruct,
    /// Why it is calling (several events per Inform are common).
    pub events: Vec<EventStruct>,
    /// Envelopes per HTTP message the CPE accepts (always treat as 1).
    pub max_envelopes: u32,
    /// CPE clock, verbatim (may be malformed: never parsed here).
    pub current_time: String,
    /// Failed session attempts since the last success.
    pub retry_count: u32,
    /// Forced and changed parameters.
    pub parameter_list: Vec<ParameterValue>,
}

impl Inform {
    /// Whether an event with exactly this code (e.g. `"0 BOOTSTRAP"`) is present.
    pub fn has_event(&self, code: &str) -> bool {
        self.events.iter().any(|e| e.event_code == code)
    }

    /// The value of a parameter from the ParameterList, if present.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameter_list
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }
}

/// TransferComplete arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferComplete {
    /// CommandKey of the Download/Upload/ScheduleDownload.
    pub command_key: String,
    /// Fault code 0 means success.
    pub fault: FaultStruct,
    /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
    pub start_time: String,
    /// dateTime, verbatim; [`UNKNOWN_TIME`] if absent.
    pub complete_time: String,
}

/// AutonomousTransferComplete arguments (CWMP 1.1+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutonomousTransferComplete {
    /// URL on which the transfer was announced (may be empty).
    pub announce_url: String,
    /// URL of the transferred file.
    pub transfer_url: String,
    /// `true` for a download.
    pub is_download: bool,
    /// Transfer file type.
    pub file_type: String,
    /// Size in bytes.
    pub file_size: u32,
    /// Target file name.
    pub target_file_name: String,
    /// Fault code 0 means success.
    pub fault: FaultStruct,
    /// dateTime, verbatim.
    pub start_time: String,
    /// dateTime, verbatim.
    pub complete_time: String,
}

/// RequestDownload arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDownload {
    /// Requested file type.
    pub file_type: String,
    /// Up to 16 name/value arguments.
    pub file_type_arg: Vec<ArgStruct>,
}

/// Kicked arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kicked {
    /// Generic command.
    pub command: String,
    /// Referring page.
    pub referer: String,
    /// Command argument.
    pub arg: String,
    /// URL the browser goes to next.
    pub next: String,
}

/// DUStateChangeComplete arguments (CWMP 1.2+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuStateChangeComplete {
    /// One result per operation.
    pub results: Vec<OpResult>,
    /// CommandKey of the ChangeDUState, if it had one.
    pub command_key: Option<String>,
}

/// AutonomousDUStateChangeComplete arguments (CWMP 1.2+).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutonomousDuStateChangeComplete {
    /// One result per operation.
    pub results: Vec<AutonOpResult>,
}

/// A request a CPE sends to the ACS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "args")]
pub enum CpeRequest {
    /// Inform (only ever the first message of a session).
    Inform(Inform),
    /// TransferComplete.
    TransferComplete(TransferComplete),
    /// AutonomousTransferComplete (CWMP 1.1+).
    AutonomousTransferComplete(AutonomousTransferComplete),
    /// GetRPCMethods.
    GetRpcMethods,
    /// RequestDownload.
    RequestDownload(RequestDownload),
    /// Kicked.
    Kicked(Kicked),
    /// DUStateChangeComplete (CWMP 1.2+).
    DuStateChangeComplete(DuStateChangeComplete),
    /// AutonomousDUStateChangeComplete (CWMP 1.2+).
    AutonomousDuStateChangeComplete(AutonomousDuStateChangeComplete),
}

impl CpeRequest {
    /// The SOAP element name, e.g. `"TransferComplete"`.
    pub fn name(&self) -> &'static str {
        match self {
            CpeRequest::Inform(_) => "Inform",
            CpeRequest::TransferComplete(_) => "TransferComplete",
            CpeRequest::AutonomousTransferComplete(_) => "AutonomousTransferComplete",
            CpeRequest::GetRpcMethods => "GetRPCMethods",
            CpeRequest::RequestDownload(_) => "RequestDownload",
            CpeRequest::Kicked(_) => "Kicked",
            CpeRequest::DuStateChangeComplete(_) => "DUStateChangeComplete",
            CpeRequest::AutonomousDuStateChangeComplete(_) => "AutonomousDUStateChangeComplete",
        }
    }

    /// The oldest namespace whose schema defines this RPC.
    pub fn introduced_in(&self) -> CwmpNs {
        match self {
            CpeRequest::AutonomousTransferComplete(_) => CwmpNs::V1_1,
            CpeRequest::DuStateChangeComplete(_)
            | CpeRequest::AutonomousDuStateChangeComplete(_) => CwmpNs::V1_2,
            _ => CwmpNs::V1_0,
        }
    }

    /// The argument-less acknowledgement for requests whose response carries no
    /// data (TransferComplete, AutonomousTransferComplete, RequestDownload,
    /// DUStateChangeComplete, AutonomousDUStateChangeComplete). `None` for
    /// Inform, GetRPCMethods and Kicked, whose responses need data.
    pub fn acknowledgement(&self) -> Option<AcsResponse> {
        match self {
            CpeRequest::TransferComplete(_) => Some(AcsResponse::TransferComplete),
            CpeRequest::AutonomousTransferComplete(_) => {
                Some(AcsResponse::AutonomousTransferComplete)
            }
            CpeRequest::RequestDownload(_) => Some(AcsResponse::RequestDownload),
            CpeRequest::DuStateChangeComplete(_) => Some(AcsResponse::DuStateChangeComplete),
            CpeRequest::AutonomousDuStateChangeComplete(_) => {
                Some(AcsResponse::AutonomousDuStateChangeComplete)
            }
            CpeRequest::Inform(_) | CpeRequest::GetRpcMethods | CpeRequest::Kicked(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------
// ACS -> CPE responses
// ---------------------------------------------------------------------------

/// The ACS's response to a [`CpeRequest`]. Each variant is named after the
/// request it answers; [`AcsResponse::name`] gives the element name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method")]
pub enum AcsResponse {
    /// InformResponse.
    Inform {
        /// Always 1 in practice.
        max_envelopes: u32,
    },
    /// TransferCompleteResponse.
    TransferComplete,
    /// AutonomousTransferCompleteResponse (CWMP 1.1+).
    AutonomousTransferComplete,
    /// GetRPCMethodsResponse.
    GetRpcMethods {
        /// Methods the ACS supports.
        method_list: Vec<String>,
    },
    /// RequestDownloadResponse.
    RequestDownload,
    /// KickedResponse.
    Kicked {
        /// Where the browser goes next.
        next_url: String,
    },
    /// DUStateChangeCompleteResponse (CWMP 1.2+).
    DuStateChangeComplete,
    /// AutonomousDUStateChangeCompleteResponse (CWMP 1.2+).
    AutonomousDuStateChangeComplete,
}

impl AcsResponse {
    /// The SOAP element name, e.g. `"InformResponse"`.
    pub fn name(&self) -> &'static str {
        match self {
            AcsResponse::Inform { .. } => "InformResponse",
            AcsResponse::TransferComplete => "TransferCompleteResponse",
            AcsResponse::AutonomousTransferComplete => "AutonomousTransferCompleteResponse",
            AcsResponse::GetRpcMethods { .. } => "GetRPCMethodsResponse",
            AcsResponse::RequestDownload => "RequestDownloadResponse",
            AcsResponse::Kicked { .. } => "KickedResponse",
            AcsResponse::DuStateChangeComplete => "DUStateChangeCompleteResponse",
            AcsResponse::AutonomousDuStateChangeComplete => {
                "AutonomousDUStateChangeCompleteResponse"
            }
        }
    }

    /// Whether this is the response type of `request`.
    pub fn matches(&self, request: &CpeRequest) -> bool {
        matches!(
            (self, request),
            (AcsResponse::Inform { .. }, CpeRequest::Inform(_))
                | (
                    AcsResponse::TransferComplete,
                    CpeRequest::TransferComplete(_)
                )
                | (
                    AcsResponse::AutonomousTransferComplete,
                    CpeRequest::AutonomousTransferComplete(_)
                )
                | (AcsResponse::GetRpcMethods { .. }, CpeRequest::GetRpcMethods)
                | (AcsResponse::RequestDownload, CpeRequest::RequestDownload(_))
                | (AcsResponse::Kicked { .. }, CpeRequest::Kicked(_))
                | (
                    AcsResponse::DuStateChangeComplete,
                    CpeRequest::DuStateChangeComplete(_)
                )
                | (
                    AcsResponse::AutonomousDuStateChangeComplete,
                    CpeRequest::AutonomousDuStateChangeComplete(_)
                )
        )
    }

    /// The oldest namespace whose schema defines this response.
    pub fn introduced_in(&self) -> CwmpNs {
        match self {
            AcsResponse::AutonomousTransferComplete => CwmpNs::V1_1,
            AcsResponse::DuStateChangeComplete | AcsResponse::AutonomousDuStateChangeComplete => {
                CwmpNs::V1_2
            }
            _ => CwmpNs::V1_0,
        }
    }
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

/// The body of an envelope a CPE sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum IncomingBody {
    /// A CPE-initiated RPC.
    Request(CpeRequest),
    /// A response to the ACS's outstanding request.
    Response(CpeResponse),
    /// A SOAP fault answering the ACS's outstanding request.
    Fault(CwmpFault),
    /// An RPC element this module does not know (answer a request with fault
    /// 8000). Carries the element's local name.
    UnknownMethod(String),
}

impl IncomingBody {
    /// The body element's name (`"Fault"` for faults).
    pub fn name(&self) -> &str {
        match self {
            IncomingBody::Request(r) => r.name(),
            IncomingBody::Response(r) => r.name(),
            IncomingBody::Fault(_) => "Fault",
            IncomingBody::UnknownMethod(name) => name,
        }
    }
}

/// The body of an envelope the ACS sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum OutgoingBody {
    /// An ACS-initiated RPC.
    Request(AcsRequest),
    /// A response to a CPE request.
    Response(AcsResponse),
    /// A SOAP fault answering a CPE request.
    Fault(CwmpFault),
}

impl OutgoingBody {
    /// The body element's name (`"Fault"` for faults).
    pub fn name(&self) -> &'static str {
        match self {
            OutgoingBody::Request(r) => r.name(),
            OutgoingBody::Response(r) => r.name(),
            OutgoingBody::Fault(_) => "Fault",
        }
    }
}

/// A parsed envelope from a CPE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The `cwmp` namespace the CPE used.
    pub ns: CwmpNs,
    /// SOAP header values.
    pub header: Header,
    /// The RPC, response or fault.
    pub body: IncomingBody,
}

/// An envelope from the ACS (what [`encode`](super::encode::encode) writes and
/// [`parse_outgoing`](super::decode::parse_outgoing) reads back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingEnvelope {
    /// The session's `cwmp` namespace.
    pub ns: CwmpNs,
    /// SOAP header values.
    pub header: Header,
    /// The RPC, response or fault.
    pub body: OutgoingBody,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn namespace_uris_round_trip() {
        for ns in CwmpNs::ALL {
            assert_eq!(CwmpNs::from_uri(ns.as_uri()), Some(ns));
        }
        assert_eq!(CwmpNs::from_uri("urn:dslforum-org:cwmp-1-5"), None);
        assert!(CwmpNs::looks_like_cwmp("urn:dslforum-org:cwmp-1-5"));
        assert!(!CwmpNs::looks_like_cwmp(
            "http://schemas.xmlsoap.org/soap/envelope/"
        ));
        assert!(CwmpNs::V1_0 < CwmpNs::V1_2);
    }

    #[test]
    fn version_negotiation_picks_highest_common() {
        assert_eq!(
            CwmpVersion::negotiate("1.0,1.1,1.2,1.3,1.4"),
            Some(CwmpVersion::V1_4)
        );
        assert_eq!(
            CwmpVersion::negotiate(" 1.2 , 1.0 ,2.0"),
            Some(CwmpVersion::V1_2)
        );
        assert_eq!(CwmpVersion::negotiate("2.0,3.1"), None);
        assert_eq!(CwmpVersion::negotiate(""), None);
    }

    #[test]
    fn response_matching_follows_request_kind() {
        let gpv = AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: vec!["Device.".into()],
        });
        let ok = CpeResponse::GetParameterValues {
            parameter_list: vec![],
        };
        let other = CpeResponse::SetParameterValues { status: 0 };
        assert!(ok.matches(&gpv));
        assert!(!other.matches(&gpv));
        assert_eq!(ok.name(), gpv.response_name());
        assert!(CpeResponse::Reboot.matches(&AcsRequest::Reboot(Reboot {
            command_key: String::new()
        })));
        assert!(!CpeResponse::Reboot.matches(&AcsRequest::FactoryReset));
    }

    #[test]
    fn acknowledgements_exist_only_for_data_less_responses() {
        let tc = CpeRequest::TransferComplete(TransferComplete::default());
        let ack = tc.acknowledgement();
        assert_eq!(ack, Some(AcsResponse::TransferComplete));
        assert!(ack.is_some_and(|a| a.matches(&tc)));
        assert_eq!(CpeRequest::GetRpcMethods.acknowledgement(), None);
        assert_eq!(
            CpeRequest::Kicked(Kicked::default()).acknowledgement(),
            None
        );
    }

    #[test]
    fn requests_serialize_as_tagged_json() {
        let req = AcsRequest::Reboot(Reboot {
            command_key: "rb-1".into(),
        });
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"method":"Reboot","args":{"command_key":"rb-1"}}"#);
        let back: AcsRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req);
    }
}
