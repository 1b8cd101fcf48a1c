//! A simulated CPE: identity, credentials, data model, pending events and transfers, and
//! the behaviour and fault-injection knobs that shape how it talks to an ACS.
//!
//! A [`Device`] is a plain value. Sessions are run with [`Device::run_session`] (see
//! `session.rs`); everything the device remembers between sessions lives in
//! [`Device::state`], so a test can inspect or adjust it directly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::ClientOptions;
use super::model::{self, Identity, Model, Param, Root};
use super::session::SessionCtx;
use super::transfer::{DownloadedFile, TransferResult};
use super::xml::{self, Envelope, Header};
use super::SimError;

/// A username/password pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// Builds a pair.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// An Inform `EventStruct`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    /// EventCode, e.g. `1 BOOT` or `M Reboot`.
    pub code: String,
    /// CommandKey (empty for numbered events).
    pub command_key: String,
}

impl Event {
    /// Builds an event.
    pub fn new(code: impl Into<String>, command_key: impl Into<String>) -> Event {
        Event {
            code: code.into(),
            command_key: command_key.into(),
        }
    }
}

/// Result of one ChangeDUState operation, reported in DUStateChangeComplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuResult {
    /// Deployment unit UUID.
    pub uuid: String,
    /// Reference to the DeploymentUnit object.
    pub deployment_unit_ref: String,
    /// Version of the unit.
    pub version: String,
    /// `Installed`, `Uninstalled` or `Failed`.
    pub current_state: String,
    /// Fault code (0 = success).
    pub fault_code: u32,
    /// Fault string.
    pub fault_string: String,
    /// Start time of the operation.
    pub start: String,
    /// Completion time of the operation.
    pub complete: String,
}

/// A request the CPE will send to the ACS in a coming session, with the events that
/// announce it. It stays pending (and its events keep being sent) until the ACS answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpeRequest {
    /// TransferComplete after a Download, Upload or ScheduleDownload.
    TransferComplete {
        /// The transfer's outcome.
        result: TransferResult,
        /// `M Download`, `M Upload` or `M ScheduleDownload`.
        method_event: String,
    },
    /// DUStateChangeComplete after ChangeDUState.
    DuStateChangeComplete {
        /// CommandKey of the ChangeDUState.
        command_key: String,
        /// One result per operation.
        results: Vec<DuResult>,
    },
    /// GetRPCMethods sent by the CPE.
    GetRpcMethods,
    /// RequestDownload (event `9 REQUEST DOWNLOAD`).
    RequestDownload {
        /// FileType, e.g. `3 Vendor Configuration File`.
        file_type: String,
    },
}

impl CpeRequest {
    /// The RPC name.
    pub fn name(&self) -> &'static str {
        match self {
            CpeRequest::TransferComplete { .. } => "TransferComplete",
            CpeRequest::DuStateChangeComplete { .. } => "DUStateChangeComplete",
            CpeRequest::GetRpcMethods => "GetRPCMethods",
            CpeRequest::RequestDownload { .. } => "RequestDownload",
        }
    }

    /// The Inform events that announce this request.
    pub fn events(&self) -> Vec<Event> {
        match self {
            CpeRequest::TransferComplete {
                result,
                method_event,
            } => vec![
                Event::new("7 TRANSFER COMPLETE", ""),
                Event::new(method_event.clone(), result.command_key.clone()),
            ],
            CpeRequest::DuStateChangeComplete { command_key, .. } => vec![
                Event::new("11 DU STATE CHANGE COMPLETE", ""),
                Event::new("M ChangeDUState", command_key.clone()),
            ],
            CpeRequest::GetRpcMethods => Vec::new(),
            CpeRequest::RequestDownload { .. } => vec![Event::new("9 REQUEST DOWNLOAD", "")],
        }
    }

    /// The request envelope.
    pub fn envelope(&self, ns: &str, id: &str) -> String {
        let mut env = Envelope::new(
            ns,
            &Header {
                id: Some(id),
                ..Header::default()
            },
            512,
        );
        let name = self.name();
        env.open(name);
        match self {
            CpeRequest::TransferComplete { result, .. } => {
                env.field("CommandKey", &result.command_key);
                env.buf.push_str("<FaultStruct>");
                env.field("FaultCode", &result.fault_code.to_string());
                env.field("FaultString", &result.fault_string);
                env.buf.push_str("</FaultStruct>");
                env.field("StartTime", &result.start);
                env.field("CompleteTime", &result.complete);
            }
            CpeRequest::DuStateChangeComplete {
                command_key,
                results,
            } => {
                for r in results {
                    env.buf.push_str("<Results>");
                    env.field("UUID", &r.uuid);
                    env.field("DeploymentUnitRef", &r.deployment_unit_ref);
                    env.field("Version", &r.version);
                    env.field("CurrentState", &r.current_state);
                    env.field(
                        "Resolved",
                        if r.current_state == "Installed" {
                            "true"
                        } else {
                            "false"
                        },
                    );
                    env.field("ExecutionUnitRefList", "");
                    env.field("StartTime", &r.start);
                    env.field("CompleteTime", &r.complete);
                    env.buf.push_str("<Fault>");
                    env.field("FaultCode", &r.fault_code.to_string());
                    env.field("FaultString", &r.fault_string);
                    env.buf.push_str("</Fault></Results>");
                }
                env.field("CommandKey", command_key);
            }
            CpeRequest::GetRpcMethods => {}
            CpeRequest::RequestDownload { file_type } => {
                env.field("FileType", file_type);
                env.buf.push_str(
                    "<FileTypeArg soap-enc:arrayType=\"cwmp:ArgStruct[0]\"></FileTypeArg>",
                );
            }
        }
        env.close(name);
        env.finish()
    }
}

/// A Download, Upload or ScheduleDownload accepted but not performed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTransfer {
    /// CommandKey.
    pub command_key: String,
    /// Download (true) or Upload.
    pub is_download: bool,
    /// FileType.
    pub file_type: String,
    /// Source or destination URL.
    pub url: String,
    /// File server user name.
    pub username: String,
    /// File server password.
    pub password: String,
    /// Announced FileSize (0 = unknown).
    pub file_size: u64,
    /// TargetFileName.
    pub target_file_name: String,
    /// When the transfer may start.
    pub due: Instant,
    /// `M Download`, `M Upload` or `M ScheduleDownload`.
    pub method_event: String,
}

/// Something the device does once the current session has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterAction {
    /// Reboot ordered with this CommandKey.
    Reboot(String),
    /// FactoryReset.
    FactoryReset,
    /// ChangeDUState results to report.
    DuChange(String, Vec<DuResult>),
}

/// How the device behaves (defaults are a well-behaved CPE).
#[derive(Debug, Clone)]
pub struct Behavior {
    /// Reject SetParameterValues whose `xsi:type` differs from the parameter's type (9006).
    pub strict_types: bool,
    /// Wait DelaySeconds / time windows before transfers and ScheduleInform events
    /// (false: transfers run right after the session, ScheduleInform is due at once).
    pub honor_delays: bool,
    /// Make every Download fail in TransferComplete with this code (e.g. 9010).
    pub download_fault: Option<u32>,
    /// Make every Upload fail in TransferComplete with this code (e.g. 9011).
    pub upload_fault: Option<u32>,
    /// After a successful `1 Firmware Upgrade Image` download, also send `1 BOOT`.
    pub reboot_after_firmware: bool,
    /// After a Reboot, report `1 BOOT` alone, without `M Reboot` and its CommandKey (as
    /// some CPEs do).
    pub omit_m_reboot: bool,
    /// SoftwareVersion to report after the next successful firmware download. When unset, a
    /// line `SoftwareVersion=<v>` in the first 4 KiB of the image is used, if present.
    pub next_software_version: Option<String>,
    /// Keep downloaded bytes in [`DeviceState::downloads`] (false keeps only size and sha256).
    pub keep_download_bytes: bool,
    /// Fail a download whose size differs from a non-zero FileSize (9018).
    pub check_file_size: bool,
    /// Bytes sent by Upload.
    pub upload_content: Vec<u8>,
    /// HTTP method used by Upload (`PUT` or `POST`).
    pub upload_method: String,
    /// Status returned by SetParameterValues/AddObject/DeleteObject (1 = applied after reboot).
    pub apply_status: u8,
    /// Write `xsi:type` exactly as loaded (`xsd:base64` instead of `xsd:base64Binary`).
    pub raw_types: bool,
    /// Write milliseconds in CurrentTime and transfer times.
    pub millis: bool,
    /// Time the device takes between executing a state-changing request (Reboot, Download,
    /// SetParameterValues, FactoryReset, AddObject, DeleteObject) and answering it: the
    /// window in which a crashed ACS loses the answer of an RPC the device has executed.
    pub reply_delay: Duration,
    /// Accept only `1`/`0` for an xsd:boolean in SetParameterValues: `true`/`false` get fault
    /// 9003 with a SetParameterValuesFault 9007 naming each such parameter, as some CPEs
    /// answer (TP-Link TD-W9970; GenieACS `cwmp.booleanLiteral`).
    pub digit_booleans: bool,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            strict_types: true,
            honor_delays: false,
            download_fault: None,
            upload_fault: None,
            reboot_after_firmware: true,
            omit_m_reboot: false,
            next_software_version: None,
            keep_download_bytes: true,
            check_file_size: true,
            upload_content: b"# simulated configuration backup\nhostname=cpe\n".to_vec(),
            upload_method: "PUT".to_string(),
            apply_status: 0,
            raw_types: false,
            millis: false,
            reply_delay: Duration::ZERO,
            digit_booleans: false,
        }
    }
}

/// One-shot fault injection for robustness tests. Message numbers count the POSTs of a
/// session from 1 (the Inform).
#[derive(Debug, Clone, Default)]
pub struct FaultInjection {
    /// Send POST number N, then close the connection without reading the answer; the session
    /// is suspended and [`Device::resume_session`] continues it. Cleared when used.
    pub drop_after_message: Option<usize>,
    /// Execute the next ACS request of this name (e.g. `Download`), then close the
    /// connection instead of answering it, as a CPE that loses its link (or restarts) right
    /// after accepting a request. The session fails; what the device does after a session
    /// (reboot, due transfers) still happens. Cleared when used.
    pub close_instead_of_answering: Option<String>,
    /// Answer this many requests named by `close_instead_of_answering` normally first.
    pub close_after_answering: usize,
    /// Sleep before sending POST number N. Cleared when used.
    pub pause_before_message: Option<(usize, Duration)>,
    /// Authenticate with a wrong password.
    pub wrong_password: bool,
    /// Accept changes of ManagementServer.Username/Password but keep logging in with the
    /// old credentials, as some CPEs do (the ACS's trust on first use must cope).
    pub ignore_acs_credential_changes: bool,
    /// Answer these ACS methods with a CWMP fault of the given code instead of executing them.
    pub rpc_faults: Vec<(String, u32)>,
    /// Answer any GetParameterValues that names one of these parameters (or an object
    /// above it) with a CWMP fault of the given code, as CPEs whose read of one broken
    /// parameter fails the whole request (9005, 9002).
    pub gpv_fault_on: Vec<(String, u32)>,
    /// Refuse any SetParameterValues that sets one of these parameters, whatever its value:
    /// fault 9003 with a SetParameterValuesFault of the given code (e.g. 9007) naming each.
    pub spv_fault_on: Vec<(String, u32)>,
}

/// What the device remembers between sessions.
#[derive(Debug, Clone, Default)]
pub struct DeviceState {
    /// False until an InformResponse has been received after install or factory reset;
    /// while false every Inform carries `0 BOOTSTRAP` and `1 BOOT`.
    pub bootstrapped: bool,
    /// Events waiting for the next Inform (kept until an InformResponse arrives).
    pub pending_events: Vec<Event>,
    /// Requests the CPE still has to send (kept until the ACS answers them).
    pub pending_requests: Vec<CpeRequest>,
    /// Transfers accepted but not performed yet.
    pub queued_transfers: Vec<QueuedTransfer>,
    /// ScheduleInform requests: (due time, CommandKey).
    pub scheduled_informs: Vec<(Instant, String)>,
    /// Parameters whose value changed locally with notification on.
    pub value_changes: Vec<String>,
    /// Work to do after the current session.
    pub after_session: Vec<AfterAction>,
    /// Failed sessions since the last successful one (Inform `RetryCount`).
    pub retry_count: u32,
    /// Sessions that ended with HTTP 204.
    pub sessions_completed: u64,
    /// Reboots performed.
    pub reboots: u32,
    /// Factory resets performed.
    pub factory_resets: u32,
    /// Files downloaded, newest last.
    pub downloads: Vec<DownloadedFile>,
    /// Every transfer outcome, newest last.
    pub transfers: Vec<TransferResult>,
    /// Installed deployment units: (UUID, URL, version).
    pub deployment_units: Vec<(String, String, String)>,
    /// UseCWMPVersion from the last InformResponse.
    pub use_cwmp_version: Option<String>,
    /// Report of the last session that failed (with a note saying why).
    pub last_failure: Option<super::session::SessionReport>,
    /// Every state-changing RPC executed (Reboot, Download by CommandKey; SetParameterValues,
    /// AddObject, DeleteObject by ParameterKey; FactoryReset with an empty key), oldest first:
    /// the ledger checked after crash tests.
    pub executed: Vec<crate::ledger::Execution>,
    /// State-changing RPCs executed whose answer never reached the ACS (the connection
    /// failed while sending it), by RPC name: the cases a crashed ACS must recover.
    pub interrupted: Vec<String>,
}

/// A simulated CPE.
pub struct Device {
    /// DeviceId sent in the Inform.
    pub identity: Identity,
    /// The `cwmp` namespace URI, e.g. `urn:dslforum-org:cwmp-1-0`.
    pub cwmp_ns: String,
    /// SupportedCWMPVersions header (CWMP 1.4), e.g. `1.0,1.1,1.2,1.3,1.4`.
    pub supported_versions: Option<String>,
    /// SessionTimeout header (CWMP 1.3+).
    pub session_timeout: Option<u32>,
    /// Root data model (detected or chosen).
    pub root: Root,
    /// The parameter tree.
    pub model: Model,
    /// Credentials for authenticating to the ACS.
    pub acs_auth: Credentials,
    /// HTTP behaviour towards the ACS.
    pub client: ClientOptions,
    /// Device behaviour.
    pub behavior: Behavior,
    /// Fault injection.
    pub faults: FaultInjection,
    /// State kept between sessions.
    pub state: DeviceState,
    /// What AddObject creates in a table that has no instance to copy, keyed by the table's
    /// path with `{i}` for instance numbers (`...VoiceProfile.{i}.Line.`): names relative to
    /// the new instance (`Enable`, `SIP.AuthUserName`, `SIP.`) and their initial state.
    pub instance_templates: BTreeMap<String, Vec<(String, Param)>>,
    factory: Arc<Model>,
    factory_acs: Credentials,
    factory_cr: Credentials,
    pub(super) cr: Arc<Mutex<Credentials>>,
    pub(super) cr_url: Option<String>,
    forced_cache: Option<Vec<String>>,
    pub(super) suspended: Option<Box<SessionCtx>>,
    id_counter: u64,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("identity", &self.identity)
            .field("cwmp_ns", &self.cwmp_ns)
            .field("root", &self.root)
            .field("params", &self.model.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// Builds a device from a model and an identity. The root is detected (TR-181 issue 2 if
    /// the model is empty). Default credentials: ACS user `OUI-ProductClass-Serial` with
    /// password `password`; connection-request user/password from the model when set, else
    /// the same user name and `cr-<serial>`.
    pub fn from_model(model: Model, identity: Identity) -> Device {
        let root = Root::detect(&model).unwrap_or(Root::Device2);
        let ms = |leaf: &str| {
            model
                .get(&format!("{}ManagementServer.{leaf}", root.prefix()))
                .map(|p| p.value.clone())
                .filter(|v| !v.is_empty())
        };
        let acs = Credentials::new(identity.device_id(), "password");
        let cr = Credentials::new(
            ms("ConnectionRequestUsername").unwrap_or_else(|| identity.device_id()),
            ms("ConnectionRequestPassword")
                .unwrap_or_else(|| format!("cr-{}", identity.serial_number)),
        );
        let mut dev = Device {
            identity,
            cwmp_ns: "urn:dslforum-org:cwmp-1-0".to_string(),
            supported_versions: None,
            session_timeout: None,
            root,
            factory: Arc::new(model.clone()),
            model,
            acs_auth: acs.clone(),
            client: ClientOptions::default(),
            behavior: Behavior::default(),
            faults: FaultInjection::default(),
            state: DeviceState::default(),
            instance_templates: BTreeMap::new(),
            factory_acs: acs,
            factory_cr: cr.clone(),
            cr: Arc::new(Mutex::new(cr)),
            cr_url: None,
            forced_cache: None,
            suspended: None,
            id_counter: 0,
        };
        dev.apply_identity();
        dev.apply_credentials();
        dev
    }

    /// Loads a CSV dump (see [`model::load_csv`]).
    pub fn from_csv(path: impl AsRef<Path>) -> Result<Device, SimError> {
        let dump = model::load_csv(path.as_ref())?;
        Ok(Device::from_model(dump.model, dump.identity))
    }

    /// A synthetic device of about `n_params` parameters (manufacturer `SimCo`, OUI `02AC50`,
    /// product class `SimGW`).
    pub fn synthetic(root: Root, serial: &str, n_params: usize) -> Device {
        let identity = Identity {
            manufacturer: "SimCo".to_string(),
            oui: "02AC50".to_string(),
            product_class: "SimGW".to_string(),
            serial_number: serial.to_string(),
        };
        let model = model::synthetic_model(root, &identity, n_params);
        let mut d = Device::from_model(model, identity);
        d.root = root;
        d
    }

    /// A copy with another serial number and a fresh state (never bootstrapped, no pending
    /// work, no connection-request registration). The current model is copied and the
    /// factory model shared. The ACS user name follows the serial when the template uses the
    /// default `OUI-ProductClass-Serial`; otherwise the template's credentials are kept.
    pub fn clone_as(&self, serial: &str) -> Device {
        let mut identity = self.identity.clone();
        identity.serial_number = serial.to_string();
        let mut acs = self.factory_acs.clone();
        if acs.username == self.identity.device_id() {
            acs.username = identity.device_id();
        }
        let cr = self.factory_cr.clone();
        let mut model = self.model.clone();
        if self.cr_url.is_some() {
            let name = self.ms("ConnectionRequestURL");
            let factory_url = self.factory.get(&name).map(|p| p.value.clone());
            if let (Some(p), Some(v)) = (model.get_mut(&name), factory_url) {
                p.value = v;
            }
        }
        let mut d = Device {
            identity,
            cwmp_ns: self.cwmp_ns.clone(),
            supported_versions: self.supported_versions.clone(),
            session_timeout: self.session_timeout,
            root: self.root,
            model,
            acs_auth: acs.clone(),
            client: self.client.clone(),
            behavior: self.behavior.clone(),
            faults: FaultInjection::default(),
            state: DeviceState::default(),
            instance_templates: self.instance_templates.clone(),
            factory: Arc::clone(&self.factory),
            factory_acs: acs,
            factory_cr: cr.clone(),
            cr: Arc::new(Mutex::new(cr)),
            cr_url: None,
            forced_cache: None,
            suspended: None,
            id_counter: 0,
        };
        d.apply_identity();
        d.apply_credentials();
        d
    }

    /// Sets the serial number (identity and `DeviceInfo.SerialNumber`). The ACS user name
    /// follows when it still is the default `OUI-ProductClass-Serial`.
    pub fn with_serial(mut self, serial: &str) -> Device {
        let old_id = self.identity.device_id();
        self.identity.serial_number = serial.to_string();
        if self.acs_auth.username == old_id {
            self.acs_auth.username = self.identity.device_id();
            self.factory_acs.username = self.acs_auth.username.clone();
        }
        self.apply_identity();
        self.apply_credentials();
        self
    }

    /// Replaces the whole identity.
    pub fn with_identity(mut self, identity: Identity) -> Device {
        self.identity = identity;
        self.apply_identity();
        self
    }

    /// Sets the `cwmp` namespace URI.
    pub fn with_namespace(mut self, ns: &str) -> Device {
        self.cwmp_ns = ns.to_string();
        self
    }

    /// Chooses the CWMP version the device speaks: `1.0`, `1.1` (own namespaces), `1.2`,
    /// `1.3` (namespace 1-2, SessionTimeout 30) or `1.4` (namespace 1-2, SessionTimeout 30,
    /// SupportedCWMPVersions `1.0,1.1,1.2,1.3,1.4`).
    pub fn with_cwmp_version(mut self, version: &str) -> Device {
        let (ns, timeout, supported) = match version {
            "1.0" => ("urn:dslforum-org:cwmp-1-0", None, None),
            "1.1" => ("urn:dslforum-org:cwmp-1-1", None, None),
            "1.2" => ("urn:dslforum-org:cwmp-1-2", None, None),
            "1.3" => ("urn:dslforum-org:cwmp-1-2", Some(30), None),
            _ => (
                "urn:dslforum-org:cwmp-1-2",
                Some(30),
                Some("1.0,1.1,1.2,1.3,1.4".to_string()),
            ),
        };
        self.cwmp_ns = ns.to_string();
        self.session_timeout = timeout;
        self.supported_versions = supported;
        self
    }

    /// Sets the ACS credentials (also written to ManagementServer.Username/Password and kept
    /// across factory resets).
    pub fn with_acs_credentials(mut self, username: &str, password: &str) -> Device {
        self.acs_auth = Credentials::new(username, password);
        self.factory_acs = self.acs_auth.clone();
        self.apply_credentials();
        self
    }

    /// Sets the connection-request credentials (also written to the model and kept across
    /// factory resets).
    pub fn with_cr_credentials(mut self, username: &str, password: &str) -> Device {
        self.set_cr_credentials(Credentials::new(username, password));
        self.factory_cr = self.cr_credentials();
        self
    }

    /// Sets the HTTP behaviour.
    pub fn with_client_options(mut self, opts: ClientOptions) -> Device {
        self.client = opts;
        self
    }

    /// The connection-request credentials currently in force.
    pub fn cr_credentials(&self) -> Credentials {
        self.cr.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Changes the connection-request credentials (model and listener).
    pub fn set_cr_credentials(&mut self, creds: Credentials) {
        if let Ok(mut c) = self.cr.lock() {
            *c = creds;
        }
        self.apply_credentials();
    }

    /// The ConnectionRequestURL announced to the ACS.
    pub fn connection_request_url(&self) -> Option<String> {
        self.get(&self.ms("ConnectionRequestURL"))
            .map(str::to_string)
    }

    /// Full name of a ManagementServer leaf under this device's root.
    pub fn ms(&self, leaf: &str) -> String {
        format!("{}ManagementServer.{leaf}", self.root.prefix())
    }

    /// Full name of a leaf relative to the root (`"DeviceInfo.SoftwareVersion"`).
    pub fn path(&self, rel: &str) -> String {
        format!("{}{rel}", self.root.prefix())
    }

    /// Value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.model
            .get(name)
            .filter(|p| !p.is_object)
            .map(|p| p.value.as_str())
    }

    /// Sets a value without any notification (creates a string leaf if missing).
    pub fn set_value(&mut self, name: &str, value: &str) {
        match self.model.get_mut(name) {
            Some(p) => p.value = value.to_string(),
            None => {
                self.model
                    .insert(name.to_string(), Param::leaf(value, "xsd:string", false));
                self.forced_cache = None;
            }
        }
    }

    /// TR-111 Part 1: the gateway this device learnt from DHCP option 125, as
    /// `GatewayInfo.ManufacturerOUI/ProductClass/SerialNumber` (read-only, active
    /// notification on, as TR-181 has it by default).
    pub fn with_gateway_info(mut self, oui: &str, product_class: &str, serial: &str) -> Device {
        self.model
            .insert(self.path("GatewayInfo."), Param::object(false));
        for (leaf, v) in [
            ("ManufacturerOUI", oui),
            ("ProductClass", product_class),
            ("SerialNumber", serial),
        ] {
            let mut p = Param::leaf(v, "xsd:string", false);
            p.notification = 2;
            self.model
                .insert(self.path(&format!("GatewayInfo.{leaf}")), p);
        }
        self.forced_cache = None;
        self
    }

    /// Removes the object `path` (ending in `.`) and everything under it, as the device
    /// itself would (a LAN device leaving a gateway's ManageableDevice table); returns how
    /// many names went.
    pub fn remove_object(&mut self, path: &str) -> usize {
        let before = self.model.len();
        self.model.retain(|name, _| !name.starts_with(path));
        self.forced_cache = None;
        before - self.model.len()
    }

    /// Changes a value as the device itself would (e.g. a user on the web UI). When the
    /// parameter's notification is on, the next Inform carries `4 VALUE CHANGE` and the value.
    /// Returns false when the parameter does not exist.
    pub fn local_change(&mut self, name: &str, value: &str) -> bool {
        let Some(p) = self.model.get_mut(name).filter(|p| !p.is_object) else {
            return false;
        };
        let changed = p.value != value;
        p.value = value.to_string();
        if changed && p.notification > 0 && !self.state.value_changes.iter().any(|n| n == name) {
            self.state.value_changes.push(name.to_string());
        }
        true
    }

    /// Queues an event for the next Inform.
    pub fn queue_event(&mut self, code: &str, command_key: &str) {
        self.state
            .pending_events
            .push(Event::new(code, command_key));
    }

    /// Queues a CPE-initiated GetRPCMethods for the next session.
    pub fn queue_get_rpc_methods(&mut self) {
        self.state.pending_requests.push(CpeRequest::GetRpcMethods);
    }

    /// Queues a RequestDownload (event `9 REQUEST DOWNLOAD`) for the next session.
    pub fn queue_request_download(&mut self, file_type: &str) {
        self.state
            .pending_requests
            .push(CpeRequest::RequestDownload {
                file_type: file_type.to_string(),
            });
    }

    /// Makes every ScheduleInform request due now.
    pub fn force_scheduled_informs(&mut self) {
        let now = Instant::now();
        for s in &mut self.state.scheduled_informs {
            s.0 = now;
        }
    }

    /// When the earliest ScheduleInform is due.
    pub fn next_scheduled_inform(&self) -> Option<Instant> {
        self.state.scheduled_informs.iter().map(|s| s.0).min()
    }

    /// The periodic inform interval when periodic informs are enabled.
    pub fn periodic_interval(&self) -> Option<Duration> {
        let enabled = self
            .get(&self.ms("PeriodicInformEnable"))
            .and_then(model::parse_bool)
            .unwrap_or(false);
        let secs: u64 = self
            .get(&self.ms("PeriodicInformInterval"))?
            .trim()
            .parse()
            .ok()?;
        (enabled && secs > 0).then(|| Duration::from_secs(secs))
    }

    /// ManagementServer.ParameterKey.
    pub fn parameter_key(&self) -> &str {
        let key = format!("{}ManagementServer.ParameterKey", self.root.prefix());
        self.model.get(&key).map(|p| p.value.as_str()).unwrap_or("")
    }

    /// Whether a session was cut by fault injection and can be resumed.
    pub fn has_suspended_session(&self) -> bool {
        self.suspended.is_some()
    }

    /// The HTTP client of a suspended session (to send raw messages with its cookies).
    pub fn suspended_client(&mut self) -> Option<&mut super::http::HttpClient> {
        self.suspended.as_mut().map(|s| &mut s.client)
    }

    /// A fresh HTTP client to the ACS with this device's options and credentials.
    pub fn http_client(&self, acs_url: &str) -> Result<super::http::HttpClient, SimError> {
        let pass = self.effective_password();
        super::http::HttpClient::new(acs_url, self.client.clone(), &self.acs_auth.username, &pass)
    }

    pub(super) fn effective_password(&self) -> String {
        if self.faults.wrong_password {
            format!("{}-wrong", self.acs_auth.password)
        } else {
            self.acs_auth.password.clone()
        }
    }

    /// Forgets cached derived data after the model was edited by hand.
    pub fn invalidate_caches(&mut self) {
        self.forced_cache = None;
    }

    /// Restores the factory model and state, as FactoryReset does.
    pub fn factory_reset(&mut self) {
        self.model = (*self.factory).clone();
        self.forced_cache = None;
        self.acs_auth = self.factory_acs.clone();
        let cr = self.factory_cr.clone();
        if let Ok(mut c) = self.cr.lock() {
            *c = cr;
        }
        self.apply_identity();
        self.apply_credentials();
        if let Some(url) = self.cr_url.clone() {
            let name = self.ms("ConnectionRequestURL");
            self.set_value(&name, &url);
        }
        let keep_downloads = std::mem::take(&mut self.state.downloads);
        let keep_transfers = std::mem::take(&mut self.state.transfers);
        let keep_executed = std::mem::take(&mut self.state.executed);
        let keep_interrupted = std::mem::take(&mut self.state.interrupted);
        let stats = (
            self.state.sessions_completed,
            self.state.reboots,
            self.state.factory_resets + 1,
        );
        self.state = DeviceState {
            downloads: keep_downloads,
            transfers: keep_transfers,
            executed: keep_executed,
            interrupted: keep_interrupted,
            sessions_completed: stats.0,
            reboots: stats.1,
            factory_resets: stats.2,
            ..DeviceState::default()
        };
    }

    pub(super) fn next_id(&mut self) -> String {
        self.id_counter += 1;
        format!("cpe-{}", self.id_counter)
    }

    fn apply_identity(&mut self) {
        let id = self.identity.clone();
        for (leaf, v) in [
            ("DeviceInfo.SerialNumber", &id.serial_number),
            ("DeviceInfo.ManufacturerOUI", &id.oui),
            ("DeviceInfo.ProductClass", &id.product_class),
            ("DeviceInfo.Manufacturer", &id.manufacturer),
        ] {
            if v.is_empty() {
                continue;
            }
            let name = self.path(leaf);
            if let Some(p) = self.model.get_mut(&name) {
                p.value.clone_from(v);
            }
        }
    }

    fn apply_credentials(&mut self) {
        let cr = self.cr_credentials();
        let pairs = [
            ("Username", self.acs_auth.username.clone()),
            ("Password", self.acs_auth.password.clone()),
            ("ConnectionRequestUsername", cr.username),
            ("ConnectionRequestPassword", cr.password),
        ];
        for (leaf, v) in pairs {
            let name = self.ms(leaf);
            if let Some(p) = self.model.get_mut(&name) {
                p.value = v;
            }
        }
    }

    /// Re-reads credentials from ManagementServer after the ACS changed them.
    pub(super) fn sync_credentials_from_model(&mut self) {
        let get = |d: &Device, leaf: &str| d.get(&d.ms(leaf)).map(str::to_string);
        if !self.faults.ignore_acs_credential_changes {
            if let Some(u) = get(self, "Username") {
                self.acs_auth.username = u;
            }
            if let Some(p) = get(self, "Password") {
                self.acs_auth.password = p;
            }
        }
        let mut cr = self.cr_credentials();
        if let Some(u) = get(self, "ConnectionRequestUsername") {
            cr.username = u;
        }
        if let Some(p) = get(self, "ConnectionRequestPassword") {
            cr.password = p;
        }
        if let Ok(mut c) = self.cr.lock() {
            *c = cr;
        }
    }

    /// Names of the forced Inform parameters (cached until the tree's structure changes).
    pub fn forced_names(&mut self) -> &[String] {
        if self.forced_cache.is_none() {
            self.forced_cache = Some(model::forced_inform_names(&self.model, self.root));
        }
        self.forced_cache.as_deref().unwrap_or(&[])
    }

    /// Builds the events of the next Inform from the device state plus `extra`, without
    /// changing the state. Numbered events appear once; `M` events once per CommandKey.
    pub fn inform_events(&self, extra: &[(&str, &str)]) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::with_capacity(4 + extra.len());
        let mut push = |e: Event| {
            let numbered = e.code.as_bytes().first().is_some_and(u8::is_ascii_digit);
            let dup = out
                .iter()
                .any(|x| x.code == e.code && (numbered || x.command_key == e.command_key));
            if !dup && out.len() < 64 {
                out.push(e);
            }
        };
        if !self.state.bootstrapped {
            push(Event::new("0 BOOTSTRAP", ""));
            push(Event::new("1 BOOT", ""));
        }
        for e in &self.state.pending_events {
            push(e.clone());
        }
        let now = Instant::now();
        for (due, key) in &self.state.scheduled_informs {
            if *due <= now {
                push(Event::new("3 SCHEDULED", ""));
                push(Event::new("M ScheduleInform", key.clone()));
            }
        }
        for r in &self.state.pending_requests {
            for e in r.events() {
                push(e);
            }
        }
        if !self.state.value_changes.is_empty() {
            push(Event::new("4 VALUE CHANGE", ""));
        }
        for (code, key) in extra {
            push(Event::new(*code, *key));
        }
        out
    }

    /// Builds an Inform envelope for `events` with header ID `id`: DeviceId, the events,
    /// MaxEnvelopes 1, CurrentTime, RetryCount and the forced parameters plus pending value
    /// changes. Does not change the device state.
    pub fn inform_envelope(&mut self, events: &[Event], id: &str) -> String {
        self.forced_names();
        let forced = self.forced_cache.as_deref().unwrap_or(&[]);
        let changes = &self.state.value_changes;
        let names: Vec<(&String, &Param)> = forced
            .iter()
            .chain(changes.iter().filter(|c| !forced.contains(*c)))
            .filter_map(|n| self.model.get(n).filter(|p| !p.is_object).map(|p| (n, p)))
            .collect();
        let n_params = names.len();
        let mut env = Envelope::new(
            &self.cwmp_ns,
            &Header {
                id: Some(id),
                session_timeout: self.session_timeout,
                supported_versions: self.supported_versions.as_deref(),
            },
            600 + n_params * 160,
        );
        env.open("Inform");
        env.buf.push_str("<DeviceId>");
        env.field("Manufacturer", &self.identity.manufacturer);
        env.field("OUI", &self.identity.oui);
        env.field("ProductClass", &self.identity.product_class);
        env.field("SerialNumber", &self.identity.serial_number);
        env.buf.push_str("</DeviceId>");
        env.open_array("Event", "cwmp:EventStruct", events.len(), true);
        for e in events {
            env.buf.push_str("<EventStruct>");
            env.field("EventCode", &e.code);
            env.field("CommandKey", &e.command_key);
            env.buf.push_str("</EventStruct>");
        }
        env.buf.push_str("</Event><MaxEnvelopes>1</MaxEnvelopes>");
        env.field("CurrentTime", &xml::now_utc(self.behavior.millis));
        env.field("RetryCount", &self.state.retry_count.to_string());
        env.open_array("ParameterList", "cwmp:ParameterValueStruct", n_params, true);
        let raw = self.behavior.raw_types;
        for (name, p) in names {
            env.pvs(name, &p.value, model::wire_type(&p.xsd_type, raw));
        }
        env.buf.push_str("</ParameterList>");
        env.close("Inform");
        env.finish()
    }

    /// Executes one ACS request envelope against this device and returns the reply
    /// envelope (response or CWMP fault), without any I/O. Side effects that happen after a
    /// session (reboot, transfers, ...) are queued in [`DeviceState::after_session`] and
    /// [`DeviceState::queued_transfers`]; [`Device::finish_actions`] performs them (the next
    /// [`Device::run_session`] would do so at its end).
    pub fn respond_to(&mut self, acs_xml: &str) -> Result<super::rpc::RpcReply, SimError> {
        let msg = xml::parse_soap(acs_xml).map_err(SimError::BadXml)?;
        let mut report = super::session::SessionReport::default();
        Ok(super::rpc::execute(self, &msg, &mut report))
    }
}
