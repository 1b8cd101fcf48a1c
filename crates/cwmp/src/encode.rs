//! SOAP envelope writer.
//!
//! Writes envelopes straight into a pre-sized `String` (no intermediate tree)
//! with the conventional prefixes `soap-env`, `soap-enc`, `xsd`, `xsi` and
//! `cwmp` declared on the Envelope, because CPE parsers are often
//! prefix-sensitive. Output follows the BBF CWMP schemas: `cwmp:ID` and
//! `cwmp:HoldRequests` carry `soap-env:mustUnderstand="1"`, every SOAP array
//! carries `soap-enc:arrayType` with the exact item count, every `Value`
//! carries `xsi:type`, ChangeDUState operations carry
//! `xsi:type="cwmp:InstallOpStruct"` (etc.), and booleans are written as
//! `1`/`0`, which every CPE accepts.
//!
//! Text is escaped (`&`, `<`, `>`; `"` and `'` as well inside attributes;
//! carriage returns as `&#13;` so they survive end-of-line normalisation).
//! Characters that XML 1.0 cannot carry at all (C0 controls other than tab,
//! line feed and carriage return, U+FFFE, U+FFFF) are dropped.
//!
//! [`encode`] writes what the ACS sends; [`encode_incoming`] writes what a CPE
//! sends, for CPE simulators and round-trip tests.

use std::fmt::Write as _;

use super::fault::CwmpFault;
use super::types::*;

/// SOAP 1.1 envelope namespace.
pub const SOAP_ENV_URI: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.1 encoding namespace.
pub const SOAP_ENC_URI: &str = "http://schemas.xmlsoap.org/soap/encoding/";
/// XML Schema namespace.
pub const XSD_URI: &str = "http://www.w3.org/2001/XMLSchema";
/// XML Schema instance namespace.
pub const XSI_URI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Writes an envelope the ACS sends: a request, a response or a fault.
pub fn encode(ns: CwmpNs, header: &Header, body: &OutgoingBody) -> String {
    let mut w = Writer::new(estimate_outgoing(body));
    w.envelope_start(ns, header);
    match body {
        OutgoingBody::Request(req) => w.acs_request(req),
        OutgoingBody::Response(resp) => w.acs_response(resp),
        OutgoingBody::Fault(fault) => w.fault(fault),
    }
    w.envelope_end();
    w.out
}

/// Writes an envelope carrying an ACS request; the same as [`encode`] with
/// [`OutgoingBody::Request`], without having to move the request into a body.
pub fn encode_request(ns: CwmpNs, header: &Header, request: &AcsRequest) -> String {
    let mut w = Writer::new(estimate_request(request));
    w.envelope_start(ns, header);
    w.acs_request(request);
    w.envelope_end();
    w.out
}

/// Writes an envelope a CPE sends (Inform, responses, faults...). The ACS never
/// needs this; CPE simulators and tests do.
pub fn encode_incoming(ns: CwmpNs, header: &Header, body: &IncomingBody) -> String {
    let mut w = Writer::new(estimate_incoming(body));
    w.envelope_start(ns, header);
    match body {
        IncomingBody::Request(req) => w.cpe_request(req),
        IncomingBody::Response(resp) => w.cpe_response(resp),
        IncomingBody::Fault(fault) => w.fault(fault),
        IncomingBody::UnknownMethod(name) => {
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = if name.is_empty() { "X_Unknown" } else { &name };
            w.rpc_open(name);
            w.rpc_close(name);
        }
    }
    w.envelope_end();
    w.out
}

fn params_len(list: &[ParameterValue]) -> usize {
    list.iter()
        .map(|p| p.name.len() + p.value.len() + p.xsd_type.len() + 110)
        .sum()
}

fn names_len(list: &[String]) -> usize {
    list.iter().map(|n| n.len() + 20).sum()
}

fn estimate_request(req: &AcsRequest) -> usize {
    1024 + match req {
        AcsRequest::SetParameterValues(spv) => params_len(&spv.parameter_list),
        AcsRequest::GetParameterValues(gpv) => names_len(&gpv.parameter_names),
        AcsRequest::GetParameterAttributes(gpa) => names_len(&gpa.parameter_names),
        AcsRequest::SetParameterAttributes(spa) => {
            spa.parameter_list.iter().map(|a| a.name.len() + 300).sum()
        }
        _ => 512,
    }
}

fn estimate_outgoing(body: &OutgoingBody) -> usize {
    match body {
        OutgoingBody::Request(req) => estimate_request(req),
        _ => 1536,
    }
}

fn estimate_incoming(body: &IncomingBody) -> usize {
    1024 + match body {
        IncomingBody::Request(CpeRequest::Inform(inform)) => {
            params_len(&inform.parameter_list) + inform.events.len() * 120
        }
        IncomingBody::Response(CpeResponse::GetParameterValues { parameter_list }) => {
            params_len(parameter_list)
        }
        IncomingBody::Response(CpeResponse::GetParameterNames { parameter_list }) => {
            parameter_list.iter().map(|p| p.name.len() + 90).sum()
        }
        _ => 512,
    }
}

/// Whether XML 1.0 can carry `c` at all.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Appends `s` escaped for element content or (with `attr`) a
/// double-quoted attribute value.
fn push_escaped(out: &mut String, s: &str, attr: bool) {
    let needs_work = s.bytes().any(|b| {
        matches!(b, b'&' | b'<' | b'>' | b'\r' | 0xEF)
            || (b < 0x20 && b != b'\t' && b != b'\n')
            || (attr && (b == b'"' || b == b'\''))
    });
    if !needs_work {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        }
    }
}

/// Normalises an `xsi:type` value so that its prefix is one declared on the
/// Envelope: no prefix or an unknown prefix becomes `xsd:`, and an empty type
/// becomes [`DEFAULT_XSD_TYPE`].
fn normalized_xsd_type(t: &str) -> std::borrow::Cow<'_, str> {
    let t = t.trim();
    if t.is_empty() {
        return DEFAULT_XSD_TYPE.into();
    }
    match t.split_once(':') {
        Some(("xsd" | "soap-enc" | "cwmp", local)) if !local.is_empty() => t.into(),
        Some((_, local)) if !local.is_empty() => format!("xsd:{local}").into(),
        Some(_) => DEFAULT_XSD_TYPE.into(),
        None => format!("xsd:{t}").into(),
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn new(capacity: usize) -> Writer {
        Writer {
            out: String::with_capacity(capacity),
        }
    }

    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn text(&mut self, s: &str) {
        push_escaped(&mut self.out, s, false);
    }

    fn open(&mut self, tag: &str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn leaf(&mut self, tag: &str, value: &str) {
        self.open(tag);
        self.text(value);
        self.close(tag);
    }

    fn leaf_num(&mut self, tag: &str, value: impl std::fmt::Display) {
        self.open(tag);
        let _ = write!(self.out, "{value}");
        self.close(tag);
    }

    fn leaf_bool(&mut self, tag: &str, value: bool) {
        self.leaf(tag, if value { "1" } else { "0" });
    }

    fn leaf_opt(&mut self, tag: &str, value: Option<&String>) {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
    }

    /// `<tag soap-enc:arrayType="item[n]">`.
    fn array_open(&mut self, tag: &str, item_type: &str, n: usize) {
        let _ = write!(self.out, "<{tag} soap-enc:arrayType=\"{item_type}[{n}]\">");
    }

    fn string_array(&mut self, tag: &str, items: &[String]) {
        self.array_open(tag, "xsd:string", items.len());
        for item in items {
            self.leaf("string", item);
        }
        self.close(tag);
    }

    fn rpc_open(&mut self, name: &str) {
        self.out.push_str("<cwmp:");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn rpc_close(&mut self, name: &str) {
        self.out.push_str("</cwmp:");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn header_elem(&mut self, name: &str, must_understand: &str, value: &str) {
        let _ = write!(
            self.out,
            "<cwmp:{name} soap-env:mustUnderstand=\"{must_understand}\">"
        );
        self.text(value);
        self.rpc_close(name);
    }

    fn envelope_start(&mut self, ns: CwmpNs, header: &Header) {
        let _ = write!(
            self.out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <soap-env:Envelope xmlns:soap-env=\"{SOAP_ENV_URI}\" \
             xmlns:soap-enc=\"{SOAP_ENC_URI}\" xmlns:xsd=\"{XSD_URI}\" \
             xmlns:xsi=\"{XSI_URI}\" xmlns:cwmp=\"{}\">",
            ns.as_uri()
        );
        let has_header = header.id.is_some()
            || header.hold_requests.is_some()
            || header.session_timeout.is_some()
            || header.supported_cwmp_versions.is_some()
            || header.use_cwmp_version.is_some();
        if has_header {
            self.raw("<soap-env:Header>");
            if let Some(id) = &header.id {
                self.header_elem("ID", "1", id);
            }
            if let Some(hold) = header.hold_requests {
                self.header_elem("HoldRequests", "1", if hold { "1" } else { "0" });
            }
            if let Some(timeout) = header.session_timeout {
                self.header_elem("SessionTimeout", "0", &timeout.to_string());
            }
            if let Some(versions) = &header.supported_cwmp_versions {
                self.header_elem("SupportedCWMPVersions", "0", versions);
            }
            if let Some(version) = &header.use_cwmp_version {
                self.header_elem("UseCWMPVersion", "1", version);
            }
            self.raw("</soap-env:Header>");
        }
        self.raw("<soap-env:Body>");
    }

    fn envelope_end(&mut self) {
        self.raw("</soap-env:Body></soap-env:Envelope>");
    }

    // -- shared structures -------------------------------------------------

    fn parameter_values(&mut self, list: &[ParameterValue]) {
        self.array_open("ParameterList", "cwmp:ParameterValueStruct", list.len());
        for p in list {
            self.raw("<ParameterValueStruct>");
            self.leaf("Name", &p.name);
            self.raw("<Value xsi:type=\"");
            push_escaped(&mut self.out, &normalized_xsd_type(&p.xsd_type), true);
            self.raw("\">");
            self.text(&p.value);
            self.raw("</Value></ParameterValueStruct>");
        }
        self.close("ParameterList");
    }

    fn fault_struct(&mut self, tag: &str, fault: &FaultStruct) {
        self.open(tag);
        self.leaf_num("FaultCode", fault.fault_code);
        self.leaf("FaultString", &fault.fault_string);
        self.close(tag);
    }

    fn op_result_fields(&mut self, r: &OpResult) {
        self.leaf("UUID", &r.uuid);
        self.leaf("DeploymentUnitRef", &r.deployment_unit_ref);
        self.leaf("Version", &r.version);
        self.leaf("CurrentState", &r.current_state);
        self.leaf_bool("Resolved", r.resolved);
        self.leaf("ExecutionUnitRefList", &r.execution_unit_ref_list);
        self.leaf("StartTime", &r.start_time);
        self.leaf("CompleteTime", &r.complete_time);
        self.fault_struct("Fault", &r.fault);
    }

    fn fault(&mut self, fault: &CwmpFault) {
        self.raw("<soap-env:Fault><faultcode>");
        self.raw(fault.faultcode().as_str());
        self.raw("</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault>");
        self.leaf_num("FaultCode", fault.code);
        self.leaf("FaultString", &fault.string);
        for spv in &fault.set_parameter_values_faults {
            self.open("SetParameterValuesFault");
            self.leaf("ParameterName", &spv.parameter_name);
            self.leaf_num("FaultCode", spv.code);
            self.leaf("FaultString", &spv.string);
            self.close("SetParameterValuesFault");
        }
        self.raw("</cwmp:Fault></detail></soap-env:Fault>");
    }

    // -- ACS -> CPE --------------------------------------------------------

    fn acs_request(&mut self, req: &AcsRequest) {
        let name = req.name();
        self.rpc_open(name);
        match req {
            AcsRequest::GetRpcMethods
            | AcsRequest::FactoryReset
            | AcsRequest::GetQueuedTransfers
            | AcsRequest::GetAllQueuedTransfers => {}
            AcsRequest::GetParameterNames(r) => {
                self.leaf("ParameterPath", &r.parameter_path);
                self.leaf_bool("NextLevel", r.next_level);
            }
            AcsRequest::GetParameterValues(r) => {
                self.string_array("ParameterNames", &r.parameter_names);
            }
            AcsRequest::SetParameterValues(r) => {
                self.parameter_values(&r.parameter_list);
                self.leaf("ParameterKey", &r.parameter_key);
            }
            AcsRequest::GetParameterAttributes(r) => {
                self.string_array("ParameterNames", &r.parameter_names);
            }
            AcsRequest::SetParameterAttributes(r) => {
                self.array_open(
                    "ParameterList",
                    "cwmp:SetParameterAttributesStruct",
                    r.parameter_list.len(),
                );
                for a in &r.parameter_list {
                    self.open("SetParameterAttributesStruct");
                    self.leaf("Name", &a.name);
                    self.leaf_bool("NotificationChange", a.notification_change);
                    self.leaf_num("Notification", a.notification);
                    self.leaf_bool("AccessListChange", a.access_list_change);
                    self.string_array("AccessList", &a.access_list);
                    self.close("SetParameterAttributesStruct");
                }
                self.close("ParameterList");
            }
            AcsRequest::AddObject(r) | AcsRequest::DeleteObject(r) => {
                self.leaf("ObjectName", &r.object_name);
                self.leaf("ParameterKey", &r.parameter_key);
            }
            AcsRequest::Reboot(r) => self.leaf("CommandKey", &r.command_key),
            AcsRequest::Download(r) => {
                self.leaf("CommandKey", &r.command_key);
                self.leaf("FileType", &r.file_type);
                self.leaf("URL", &r.url);
                self.leaf("Username", &r.username);
                self.leaf("Password", &r.password);
                self.leaf_num("FileSize", r.file_size);
                self.leaf("TargetFileName", &r.target_file_name);
                self.leaf_num("DelaySeconds", r.delay_seconds);
                self.leaf("SuccessURL", &r.success_url);
                self.leaf("FailureURL", &r.failure_url);
            }
            AcsRequest::Upload(r) => {
                self.leaf("CommandKey", &r.command_key);
                self.leaf("FileType", &r.file_type);
                self.leaf("URL", &r.url);
                self.leaf("Username", &r.username);
                self.leaf("Password", &r.password);
                self.leaf_num("DelaySeconds", r.delay_seconds);
            }
            AcsRequest::ScheduleInform(r) => {
                self.leaf_num("DelaySeconds", r.delay_seconds);
                self.leaf("CommandKey", &r.command_key);
            }
            AcsRequest::ScheduleDownload(r) => {
                self.leaf("CommandKey", &r.command_key);
                self.leaf("FileType", &r.file_type);
                self.leaf("URL", &r.url);
                self.leaf("Username", &r.username);
                self.leaf("Password", &r.password);
                self.leaf_num("FileSize", r.file_size);
                self.leaf("TargetFileName", &r.target_file_name);
                self.array_open(
                    "TimeWindowList",
                    "cwmp:TimeWindowStruct",
                    r.time_window_list.len(),
                );
                for tw in &r.time_window_list {
                    self.open("TimeWindowStruct");
                    self.leaf_num("WindowStart", tw.window_start);
                    self.leaf_num("WindowEnd", tw.window_end);
                    self.leaf("WindowMode", &tw.window_mode);
                    self.leaf("UserMessage", &tw.user_message);
                    self.leaf_num("MaxRetries", tw.max_retries);
                    self.close("TimeWindowStruct");
                }
                self.close("TimeWindowList");
            }
            AcsRequest::CancelTransfer(r) => self.leaf("CommandKey", &r.command_key),
            AcsRequest::ChangeDuState(r) => {
                for op in &r.operations {
                    let _ = write!(
                        self.out,
                        "<Operations xsi:type=\"cwmp:{}\">",
                        op.type_name()
                    );
                    match op {
                        DuOperation::Install(i) => {
                            self.leaf("URL", &i.url);
                            self.leaf_opt("UUID", i.uuid.as_ref());
                            self.leaf_opt("Username", i.username.as_ref());
                            self.leaf_opt("Password", i.password.as_ref());
                            self.leaf_opt("ExecutionEnvRef", i.execution_env_ref.as_ref());
                        }
                        DuOperation::Update(u) => {
                            self.leaf_opt("UUID", u.uuid.as_ref());
                            self.leaf_opt("Version", u.version.as_ref());
                            self.leaf_opt("URL", u.url.as_ref());
                            self.leaf_opt("Username", u.username.as_ref());
                            self.leaf_opt("Password", u.password.as_ref());
                        }
                        DuOperation::Uninstall(u) => {
                            self.leaf("UUID", &u.uuid);
                            self.leaf_opt("Version", u.version.as_ref());
                            self.leaf_opt("ExecutionEnvRef", u.execution_env_ref.as_ref());
                        }
                    }
                    self.close("Operations");
                }
                self.leaf_opt("CommandKey", r.command_key.as_ref());
            }
        }
        self.rpc_close(name);
    }

    fn acs_response(&mut self, resp: &AcsResponse) {
        let name = resp.name();
        self.rpc_open(name);
        match resp {
            AcsResponse::Inform { max_envelopes } => self.leaf_num("MaxEnvelopes", max_envelopes),
            AcsResponse::GetRpcMethods { method_list } => {
                self.string_array("MethodList", method_list);
            }
            AcsResponse::Kicked { next_url } => self.leaf("NextURL", next_url),
            AcsResponse::TransferComplete
            | AcsResponse::AutonomousTransferComplete
            | AcsResponse::RequestDownload
            | AcsResponse::DuStateChangeComplete
            | AcsResponse::AutonomousDuStateChangeComplete => {}
        }
        self.rpc_close(name);
    }

    // -- CPE -> ACS --------------------------------------------------------

    fn cpe_request(&mut self, req: &CpeRequest) {
        let name = req.name();
        self.rpc_open(name);
        match req {
            CpeRequest::Inform(i) => {
                self.open("DeviceId");
                self.leaf("Manufacturer", &i.device_id.manufacturer);
                self.leaf("OUI", &i.device_id.oui);
                self.leaf("ProductClass", &i.device_id.product_class);
                self.leaf("SerialNumber", &i.device_id.serial_number);
                self.close("DeviceId");
                self.array_open("Event", "cwmp:EventStruct", i.events.len());
                for e in &i.events {
                    self.open("EventStruct");
                    self.leaf("EventCode", &e.event_code);
                    self.leaf("CommandKey", &e.command_key);
                    self.close("EventStruct");
                }
                self.close("Event");
                self.leaf_num("MaxEnvelopes", i.max_envelopes);
                self.leaf("CurrentTime", &i.current_time);
                self.leaf_num("RetryCount", i.retry_count);
                self.parameter_values(&i.parameter_list);
            }
            CpeRequest::TransferComplete(t) => {
                self.leaf("CommandKey", &t.command_key);
                self.fault_struct("FaultStruct", &t.fault);
                self.leaf("StartTime", &t.start_time);
                self.leaf("CompleteTime", &t.complete_time);
            }
            CpeRequest::AutonomousTransferComplete(t) => {
                self.leaf("AnnounceURL", &t.announce_url);
                self.leaf("TransferURL", &t.transfer_url);
                self.leaf_bool("IsDownload", t.is_download);
                self.leaf("FileType", &t.file_type);
                self.leaf_num("FileSize", t.file_size);
                self.leaf("TargetFileName", &t.target_file_name);
                self.fault_struct("FaultStruct", &t.fault);
                self.leaf("StartTime", &t.start_time);
                self.leaf("CompleteTime", &t.complete_time);
            }
            CpeRequest::GetRpcMethods => {}
            CpeRequest::RequestDownload(r) => {
                self.leaf("FileType", &r.file_type);
                self.array_open("FileTypeArg", "cwmp:ArgStruct", r.file_type_arg.len());
                for a in &r.file_type_arg {
                    self.open("ArgStruct");
                    self.leaf("Name", &a.name);
                    self.leaf("Value", &a.value);
                    self.close("ArgStruct");
                }
                self.close("FileTypeArg");
            }
            CpeRequest::Kicked(k) => {
                self.leaf("Command", &k.command);
                self.leaf("Referer", &k.referer);
                self.leaf("Arg", &k.arg);
                self.leaf("Next", &k.next);
            }
            CpeRequest::DuStateChangeComplete(d) => {
                for r in &d.results {
                    self.open("Results");
                    self.op_result_fields(r);
                    self.close("Results");
                }
                self.leaf_opt("CommandKey", d.command_key.as_ref());
            }
            CpeRequest::AutonomousDuStateChangeComplete(d) => {
                for r in &d.results {
                    self.open("Results");
                    self.op_result_fields(&r.result);
                    self.leaf("OperationPerformed", &r.operation_performed);
                    self.close("Results");
                }
            }
        }
        self.rpc_close(name);
    }

    fn cpe_response(&mut self, resp: &CpeResponse) {
        let name = resp.name();
        self.rpc_open(name);
        match resp {
            CpeResponse::GetRpcMethods { method_list } => {
                self.string_array("MethodList", method_list);
            }
            CpeResponse::GetParameterNames { parameter_list } => {
                self.array_open(
                    "ParameterList",
                    "cwmp:ParameterInfoStruct",
                    parameter_list.len(),
                );
                for p in parameter_list {
                    self.open("ParameterInfoStruct");
                    self.leaf("Name", &p.name);
                    self.leaf_bool("Writable", p.writable);
                    self.close("ParameterInfoStruct");
                }
                self.close("ParameterList");
            }
            CpeResponse::GetParameterValues { parameter_list } => {
                self.parameter_values(parameter_list);
            }
            CpeResponse::SetParameterValues { status } | CpeResponse::DeleteObject { status } => {
                self.leaf_num("Status", status);
            }
            CpeResponse::GetParameterAttributes { parameter_list } => {
                self.array_open(
                    "ParameterList",
                    "cwmp:ParameterAttributeStruct",
                    parameter_list.len(),
                );
                for p in parameter_list {
                    self.open("ParameterAttributeStruct");
                    self.leaf("Name", &p.name);
                    self.leaf_num("Notification", p.notification);
                    self.string_array("AccessList", &p.access_list);
                    self.close("ParameterAttributeStruct");
                }
                self.close("ParameterList");
            }
            CpeResponse::AddObject {
                instance_number,
                status,
            } => {
                self.leaf_num("InstanceNumber", instance_number);
                self.leaf_num("Status", status);
            }
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
                self.leaf_num("Status", status);
                self.leaf("StartTime", start_time);
                self.leaf("CompleteTime", complete_time);
            }
            CpeResponse::GetQueuedTransfers { transfer_list } => {
                self.array_open(
                    "TransferList",
                    "cwmp:QueuedTransferStruct",
                    transfer_list.len(),
                );
                for t in transfer_list {
                    self.open("QueuedTransferStruct");
                    self.leaf("CommandKey", &t.command_key);
                    self.leaf_num("State", t.state);
                    self.close("QueuedTransferStruct");
                }
                self.close("TransferList");
            }
            CpeResponse::GetAllQueuedTransfers { transfer_list } => {
                self.array_open(
                    "TransferList",
                    "cwmp:AllQueuedTransferStruct",
                    transfer_list.len(),
                );
                for t in transfer_list {
                    self.open("AllQueuedTransferStruct");
                    self.leaf("CommandKey", &t.command_key);
                    self.leaf_num("State", t.state);
                    self.leaf_bool("IsDownload", t.is_download);
                    self.leaf("FileType", &t.file_type);
                    self.leaf_num("FileSize", t.file_size);
                    self.leaf("TargetFileName", &t.target_file_name);
                    self.close("AllQueuedTransferStruct");
                }
                self.close("TransferList");
            }
            CpeResponse::SetParameterAttributes
            | CpeResponse::Reboot
            | CpeResponse::FactoryReset
            | CpeResponse::ScheduleInform
            | CpeResponse::ScheduleDownload
            | CpeResponse::CancelTransfer
            | CpeResponse::ChangeDuState => {}
        }
        self.rpc_close(name);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::decode::{parse_incoming, parse_outgoing};
    use crate::testdata;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const VALIDATED_NS: [CwmpNs; 3] = [CwmpNs::V1_0, CwmpNs::V1_1, CwmpNs::V1_2];

    fn bbf_dir() -> PathBuf {
        // The vendored schemas in the repository, never a folder outside it.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datamodel/bbf")
    }

    fn schema_for(ns: CwmpNs, header: &Header) -> &'static str {
        match ns {
            CwmpNs::V1_0 => "cwmp-1-0.xsd",
            CwmpNs::V1_1 => "cwmp-1-1.xsd",
            _ if header.use_cwmp_version.is_some()
                || header.supported_cwmp_versions.is_some()
                || header.session_timeout.is_some() =>
            {
                "cwmp-1-4.xsd"
            }
            _ => "cwmp-1-2.xsd",
        }
    }

    /// Every envelope the ACS can send in `ns`, labelled.
    fn outgoing_envelopes(ns: CwmpNs) -> Vec<(String, Header, OutgoingBody)> {
        let id = Header::with_id("acs-1f-7");
        let mut out = Vec::new();
        for req in testdata::acs_requests() {
            if req.introduced_in() <= ns {
                out.push((
                    req.name().to_owned(),
                    id.clone(),
                    OutgoingBody::Request(req),
                ));
            }
        }
        for resp in testdata::acs_responses() {
            if resp.introduced_in() <= ns {
                out.push((
                    resp.name().to_owned(),
                    id.clone(),
                    OutgoingBody::Response(resp),
                ));
            }
        }
        out.push((
            "Fault".into(),
            id.clone(),
            OutgoingBody::Fault(testdata::acs_fault()),
        ));
        let held = Header {
            hold_requests: Some(true),
            ..id.clone()
        };
        out.push((
            "HeldInformResponse".into(),
            held,
            OutgoingBody::Response(AcsResponse::Inform { max_envelopes: 1 }),
        ));
        let not_held = Header {
            hold_requests: Some(false),
            ..id.clone()
        };
        out.push((
            "NotHeldRequest".into(),
            not_held,
            OutgoingBody::Request(AcsRequest::GetRpcMethods),
        ));
        out.push((
            "NoHeader".into(),
            Header::default(),
            OutgoingBody::Response(AcsResponse::TransferComplete),
        ));
        if ns == CwmpNs::V1_2 {
            let versioned = Header {
                id: Some("1".into()),
                hold_requests: Some(true),
                use_cwmp_version: Some("1.4".into()),
                ..Header::default()
            };
            out.push((
                "VersionedInformResponse".into(),
                versioned,
                OutgoingBody::Response(AcsResponse::Inform { max_envelopes: 1 }),
            ));
            out.push((
                "VersionFault".into(),
                Header::with_id("1"),
                OutgoingBody::Fault(CwmpFault::version_incompatible()),
            ));
        }
        out
    }

    /// Every envelope a CPE can send in `ns`, labelled.
    fn incoming_envelopes(ns: CwmpNs) -> Vec<(String, Header, IncomingBody)> {
        let id = Header::with_id("cpe-3");
        let mut out = Vec::new();
        for req in testdata::cpe_requests() {
            if req.introduced_in() <= ns {
                out.push((
                    req.name().to_owned(),
                    id.clone(),
                    IncomingBody::Request(req),
                ));
            }
        }
        for resp in testdata::cpe_responses() {
            if resp.introduced_in() <= ns {
                out.push((
                    resp.name().to_owned(),
                    id.clone(),
                    IncomingBody::Response(resp),
                ));
            }
        }
        out.push((
            "SpvFault".into(),
            id.clone(),
            IncomingBody::Fault(testdata::cpe_spv_fault()),
        ));
        if ns == CwmpNs::V1_2 {
            let inform_header = Header {
                id: Some("1".into()),
                session_timeout: Some(30),
                supported_cwmp_versions: Some("1.0,1.1,1.2,1.3,1.4".into()),
                ..Header::default()
            };
            let inform = testdata::cpe_requests().remove(0);
            out.push((
                "VersionedInform".into(),
                inform_header,
                IncomingBody::Request(inform),
            ));
        }
        out
    }

    /// Runs xmllint once per schema over `files` and returns one message per
    /// file that did not validate.
    fn xmllint(schema: &Path, files: &[(String, PathBuf)]) -> Vec<String> {
        let catalog = bbf_dir().join("soap-catalog.xml");
        assert!(
            schema.is_file() && catalog.is_file(),
            "BBF schemas not found at {} (vendored in datamodel/bbf)",
            bbf_dir().display()
        );
        let output = Command::new("xmllint")
            .env("XML_CATALOG_FILES", &catalog)
            .arg("--nonet")
            .arg("--noout")
            .arg("--schema")
            .arg(schema)
            .args(files.iter().map(|(_, p)| p))
            .output();
        let output = match output {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "xmllint is not installed; schema validation needs it: apt-get install libxml2-utils"
            ),
            Err(e) => panic!("cannot run xmllint: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("failed to compile") && !stderr.contains("WXS schema"),
            "xmllint could not load {}: {stderr}",
            schema.display()
        );
        let mut failures = Vec::new();
        for (label, path) in files {
            let p = path.display().to_string();
            if !stderr.lines().any(|l| l == format!("{p} validates")) {
                let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&p)).collect();
                failures.push(format!(
                    "{label} ({}): {}\n{}",
                    schema.file_name().unwrap().to_string_lossy(),
                    errors.join("\n"),
                    std::fs::read_to_string(path).unwrap_or_default()
                ));
            }
        }
        failures
    }

    #[test]
    fn every_envelope_validates_against_the_bbf_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let mut by_schema: std::collections::BTreeMap<&str, Vec<(String, PathBuf)>> =
            Default::default();
        let mut n = 0;
        for ns in VALIDATED_NS {
            let mut write = |label: String, header: &Header, xml: String| {
                n += 1;
                let path = dir.path().join(format!("{n:03}-{label}.xml"));
                std::fs::write(&path, xml).unwrap();
                by_schema
                    .entry(schema_for(ns, header))
                    .or_default()
                    .push((format!("{ns} {label}"), path));
            };
            for (label, header, body) in outgoing_envelopes(ns) {
                let xml = encode(ns, &header, &body);
                write(format!("acs-{label}"), &header, xml);
            }
            for (label, header, body) in incoming_envelopes(ns) {
                let xml = encode_incoming(ns, &header, &body);
                write(format!("cpe-{label}"), &header, xml);
            }
        }
        assert!(n > 100, "only {n} envelopes were generated");
        let mut failures = Vec::new();
        for (schema, files) in &by_schema {
            failures.extend(xmllint(&bbf_dir().join(schema), files));
        }
        assert!(
            failures.is_empty(),
            "{} envelope(s) failed schema validation:\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }

    #[test]
    fn outgoing_envelopes_round_trip_through_the_parser() {
        for ns in CwmpNs::ALL {
            for (label, header, body) in outgoing_envelopes(ns) {
                let xml = encode(ns, &header, &body);
                let parsed = parse_outgoing(&xml)
                    .unwrap_or_else(|e| panic!("{ns} {label}: {e}\n{xml}"))
                    .unwrap();
                assert_eq!(parsed.ns, ns, "{label}");
                assert_eq!(parsed.header, header, "{label}");
                assert_eq!(parsed.body, body, "{label}");
            }
        }
    }

    #[test]
    fn incoming_envelopes_round_trip_through_the_parser() {
        for ns in CwmpNs::ALL {
            for (label, header, body) in incoming_envelopes(ns) {
                let xml = encode_incoming(ns, &header, &body);
                let parsed = parse_incoming(&xml)
                    .unwrap_or_else(|e| panic!("{ns} {label}: {e}\n{xml}"))
                    .unwrap();
                assert_eq!(parsed.ns, ns, "{label}");
                assert_eq!(parsed.header, header, "{label}");
                assert_eq!(parsed.body, body, "{label}");
            }
        }
    }

    #[test]
    fn request_encoding_matches_body_encoding() {
        let header = Header::with_id("x");
        for req in testdata::acs_requests() {
            assert_eq!(
                encode_request(CwmpNs::V1_2, &header, &req),
                encode(CwmpNs::V1_2, &header, &OutgoingBody::Request(req.clone()))
            );
        }
    }

    #[test]
    fn envelope_uses_conventional_prefixes_and_header_attributes() {
        let header = Header {
            id: Some("42".into()),
            hold_requests: Some(true),
            use_cwmp_version: Some("1.4".into()),
            ..Header::default()
        };
        let xml = encode(
            CwmpNs::V1_2,
            &header,
            &OutgoingBody::Response(AcsResponse::Inform { max_envelopes: 1 }),
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap-env:Envelope "));
        assert!(xml.contains("xmlns:cwmp=\"urn:dslforum-org:cwmp-1-2\""));
        assert!(xml.contains("<cwmp:ID soap-env:mustUnderstand=\"1\">42</cwmp:ID>"));
        assert!(
            xml.contains("<cwmp:HoldRequests soap-env:mustUnderstand=\"1\">1</cwmp:HoldRequests>")
        );
        assert!(xml.contains(
            "<cwmp:UseCWMPVersion soap-env:mustUnderstand=\"1\">1.4</cwmp:UseCWMPVersion>"
        ));
        assert!(xml
            .contains("<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>"));
    }

    #[test]
    fn arrays_carry_exact_counts_and_values_carry_types() {
        let spv = &testdata::acs_requests()[3];
        let xml = encode(
            CwmpNs::V1_0,
            &Header::default(),
            &OutgoingBody::Request(spv.clone()),
        );
        assert!(xml.contains("<ParameterList soap-enc:arrayType=\"cwmp:ParameterValueStruct[3]\">"));
        assert!(xml.contains("<Value xsi:type=\"xsd:unsignedInt\">3600</Value>"));
        assert!(!xml.contains("<soap-env:Header>"));
        let gpv = AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: vec!["A.".into(), "B.".into()],
        });
        let xml = encode(
            CwmpNs::V1_0,
            &Header::default(),
            &OutgoingBody::Request(gpv),
        );
        assert!(xml.contains(
            "<ParameterNames soap-enc:arrayType=\"xsd:string[2]\"><string>A.</string><string>B.</string></ParameterNames>"
        ));
        let cdu = &testdata::acs_requests()[15];
        let xml = encode(
            CwmpNs::V1_2,
            &Header::default(),
            &OutgoingBody::Request(cdu.clone()),
        );
        assert!(xml.contains("<Operations xsi:type=\"cwmp:InstallOpStruct\"><URL>"));
        assert!(xml.contains("<Operations xsi:type=\"cwmp:UninstallOpStruct\">"));
    }

    #[test]
    fn text_is_escaped_and_illegal_characters_dropped() {
        let body = OutgoingBody::Request(AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: vec![ParameterValue::string(
                "X",
                "a&b<c>d\"e'f\r\ng\u{2}h\u{FFFE}",
            )],
            parameter_key: String::new(),
        }));
        let xml = encode(CwmpNs::V1_0, &Header::with_id("i&d"), &body);
        assert!(
            xml.contains(">a&amp;b&lt;c&gt;d\"e'f&#13;\ngh</Value>"),
            "{xml}"
        );
        assert!(xml.contains(">i&amp;d</cwmp:ID>"));
        let parsed = parse_outgoing(&xml).unwrap().unwrap();
        let OutgoingBody::Request(AcsRequest::SetParameterValues(spv)) = parsed.body else {
            panic!("not an SPV");
        };
        assert_eq!(spv.parameter_list[0].value, "a&b<c>d\"e'f\r\ngh");
        assert_eq!(parsed.header.id.as_deref(), Some("i&d"));
    }

    #[test]
    fn value_types_get_a_declared_prefix() {
        assert_eq!(normalized_xsd_type("xsd:int"), "xsd:int");
        assert_eq!(normalized_xsd_type("soap-enc:base64"), "soap-enc:base64");
        assert_eq!(normalized_xsd_type("int"), "xsd:int");
        assert_eq!(normalized_xsd_type("xs:boolean"), "xsd:boolean");
        assert_eq!(normalized_xsd_type(""), "xsd:string");
        assert_eq!(normalized_xsd_type("xsd:"), "xsd:string");
    }

    #[test]
    fn fault_body_has_soap_and_cwmp_parts() {
        let xml = encode(
            CwmpNs::V1_0,
            &Header::with_id("5"),
            &OutgoingBody::Fault(CwmpFault::invalid_arguments()),
        );
        assert!(xml.contains(
            "<soap-env:Fault><faultcode>Client</faultcode><faultstring>CWMP fault</faultstring><detail><cwmp:Fault><FaultCode>8003</FaultCode><FaultString>Invalid arguments</FaultString></cwmp:Fault></detail></soap-env:Fault>"
        ), "{xml}");
    }
}
