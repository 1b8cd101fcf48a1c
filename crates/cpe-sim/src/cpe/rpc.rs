//! What the simulated CPE does with each ACS request: parameter reads and writes against
//! the data model, object creation and deletion, and the acceptance of reboots, resets,
//! transfers and software-module operations (performed after the session).
//!
//! Arrays are counted by their elements; `arrayType` is only checked for consistency and a
//! mismatch is recorded in the session report's notes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::device::{AfterAction, Device, DuResult, QueuedTransfer};
use super::model::{self, is_child, is_instance, last_segment, parent_of, with_prefix, Param};
use super::session::SessionReport;
use super::xml::{self, fault_envelope, CwmpFault, Elem, Envelope, Header, SoapMessage};

/// The CPE's reply to one ACS request.
#[derive(Debug, Clone)]
pub struct RpcReply {
    /// Complete envelope to POST.
    pub xml: String,
    /// `<Method>Response` or `Fault`.
    pub name: String,
    /// The CWMP fault code when the reply is a fault.
    pub fault: Option<u32>,
}

/// Methods a CPE speaking the namespace `ns` offers.
pub fn supported_methods(ns: &str) -> Vec<&'static str> {
    let minor = ns
        .rsplit('-')
        .next()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(0);
    let mut m = vec![
        "GetRPCMethods",
        "SetParameterValues",
        "GetParameterValues",
        "GetParameterNames",
        "SetParameterAttributes",
        "GetParameterAttributes",
        "AddObject",
        "DeleteObject",
        "Reboot",
        "Download",
        "Upload",
        "FactoryReset",
        "GetQueuedTransfers",
        "ScheduleInform",
    ];
    if minor >= 1 {
        m.push("GetAllQueuedTransfers");
    }
    if minor >= 2 {
        m.extend(["ScheduleDownload", "CancelTransfer", "ChangeDUState"]);
    }
    m
}

type RpcResult = Result<(), CwmpFault>;

/// Executes the request in `msg` and builds the reply.
pub fn execute(dev: &mut Device, msg: &SoapMessage, report: &mut SessionReport) -> RpcReply {
    let id = msg.id.as_deref();
    let ns = dev.cwmp_ns.clone();
    let Some(body) = msg.body.as_ref() else {
        return fault_reply(&ns, id, CwmpFault::with_message(9003, "Body is empty"));
    };
    let method = body.name.as_str();
    report.acs_methods.push(method.to_string());
    if let Some((_, code)) = dev.faults.rpc_faults.iter().find(|(m, _)| m == method) {
        return fault_reply(&ns, id, CwmpFault::new(*code));
    }
    if !supported_methods(&ns).contains(&method) {
        return fault_reply(
            &ns,
            id,
            CwmpFault::with_message(9000, format!("Method not supported: {method}")),
        );
    }
    let resp_name = format!("{method}Response");
    let mut env = Envelope::new(
        &ns,
        &Header {
            id,
            ..Header::default()
        },
        1024,
    );
    env.open(&resp_name);
    let result = match method {
        "GetRPCMethods" => get_rpc_methods(&ns, &mut env),
        "GetParameterNames" => gpn(dev, body, &mut env),
        "GetParameterValues" => gpv(dev, body, &mut env, report),
        "SetParameterValues" => spv(dev, body, &mut env, report),
        "GetParameterAttributes" => gpa(dev, body, &mut env, report),
        "SetParameterAttributes" => spa(dev, body, report),
        "AddObject" => add_object(dev, body, &mut env),
        "DeleteObject" => delete_object(dev, body, &mut env),
        "Reboot" => {
            let key = text(body, "CommandKey");
            dev.state.after_session.push(AfterAction::Reboot(key));
            Ok(())
        }
        "FactoryReset" => {
            dev.state.after_session.push(AfterAction::FactoryReset);
            Ok(())
        }
        "Download" => transfer(dev, body, &mut env, true, "M Download"),
        "Upload" => transfer(dev, body, &mut env, false, "M Upload"),
        "ScheduleDownload" => schedule_download(dev, body),
        "ScheduleInform" => schedule_inform(dev, body),
        "CancelTransfer" => cancel_transfer(dev, body),
        "GetQueuedTransfers" => queued(dev, &mut env, false),
        "GetAllQueuedTransfers" => queued(dev, &mut env, true),
        "ChangeDUState" => change_du_state(dev, body),
        _ => Err(CwmpFault::new(9000)),
    };
    if result.is_ok() {
        let key = match method {
            "Reboot" | "Download" => Some(text(body, "CommandKey")),
            "SetParameterValues" | "AddObject" | "DeleteObject" => Some(text(body, "ParameterKey")),
            // FactoryReset carries no key: recorded with an empty one.
            "FactoryReset" => Some(String::new()),
            _ => None,
        };
        if let Some(key) = key {
            let device = dev.identity.device_id();
            dev.state.executed.push(crate::ledger::Execution {
                device,
                rpc: method.to_string(),
                key,
            });
        }
    }
    match result {
        Ok(()) => {
            env.close(&resp_name);
            RpcReply {
                xml: env.finish(),
                name: resp_name,
                fault: None,
            }
        }
        Err(f) => fault_reply(&ns, id, f),
    }
}

fn fault_reply(ns: &str, id: Option<&str>, f: CwmpFault) -> RpcReply {
    RpcReply {
        xml: fault_envelope(ns, id, &f),
        name: "Fault".to_string(),
        fault: Some(f.code),
    }
}

fn text(e: &Elem, child: &str) -> String {
    e.child_text(child).unwrap_or("").trim().to_string()
}

fn invalid(msg: impl Into<String>) -> CwmpFault {
    CwmpFault::with_message(9003, msg)
}

fn bad_name(name: &str) -> CwmpFault {
    CwmpFault::with_message(9005, format!("Invalid parameter name: {name}"))
}

fn check_array(e: &Elem, count: usize, report: &mut SessionReport) {
    if let Some(t) = e.attr("arrayType") {
        let declared = t
            .rsplit_once('[')
            .and_then(|(_, n)| n.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok());
        if declared != Some(count) {
            report.notes.push(format!(
                "{} declares arrayType {t:?} but holds {count} elements",
                e.name
            ));
        }
    }
}

fn get_rpc_methods(ns: &str, env: &mut Envelope) -> RpcResult {
    let methods = supported_methods(ns);
    env.open_array("MethodList", "xsd:string", methods.len(), true);
    for m in methods {
        env.field("string", m);
    }
    env.buf.push_str("</MethodList>");
    Ok(())
}

fn gpn(dev: &Device, body: &Elem, env: &mut Envelope) -> RpcResult {
    let path = body
        .child("ParameterPath")
        .map(|e| e.text.trim().to_string())
        .unwrap_or_default();
    let next_level = match body.child_text("NextLevel") {
        Some(v) => model::parse_bool(v)
            .ok_or_else(|| invalid(format!("NextLevel {v:?} is not a boolean")))?,
        None => return Err(invalid("NextLevel is missing")),
    };
    let m = &dev.model;
    let list: Vec<(&String, &Param)> = if path.is_empty() {
        if next_level {
            m.iter()
                .filter(|(k, _)| k.ends_with('.') && k.matches('.').count() == 1)
                .collect()
        } else {
            m.iter().collect()
        }
    } else if path.ends_with('.') {
        match m.get(&path) {
            Some(p) if p.is_object => {}
            _ => return Err(bad_name(&path)),
        }
        if next_level {
            with_prefix(m, &path)
                .filter(|(k, _)| is_child(&path, k))
                .collect()
        } else {
            with_prefix(m, &path).collect()
        }
    } else {
        match m.get_key_value(&path) {
            Some((k, p)) if !p.is_object => {
                if next_level {
                    return Err(invalid(
                        "NextLevel is true but ParameterPath names a parameter, not an object",
                    ));
                }
                vec![(k, p)]
            }
            _ => return Err(bad_name(&path)),
        }
    };
    env.buf.reserve(list.len() * 110);
    env.open_array(
        "ParameterList",
        "cwmp:ParameterInfoStruct",
        list.len(),
        true,
    );
    for (k, p) in list {
        env.buf.push_str("<ParameterInfoStruct>");
        env.field("Name", k);
        env.field("Writable", if p.writable { "1" } else { "0" });
        env.buf.push_str("</ParameterInfoStruct>");
    }
    env.buf.push_str("</ParameterList>");
    Ok(())
}

/// Expands requested names (full names or partial paths) to leaf names.
fn expand<'a>(
    dev: &'a Device,
    names: &[String],
) -> Result<Vec<(&'a String, &'a Param)>, CwmpFault> {
    let m = &dev.model;
    let mut out = Vec::new();
    for n in names {
        if n.is_empty() {
            out.extend(m.iter().filter(|(_, p)| !p.is_object));
        } else if n.ends_with('.') {
            match m.get(n.as_str()) {
                Some(p) if p.is_object => {}
                _ => return Err(bad_name(n)),
            }
            out.extend(with_prefix(m, n).filter(|(_, p)| !p.is_object));
        } else {
            match m.get_key_value(n.as_str()) {
                Some((k, p)) if !p.is_object => out.push((k, p)),
                _ => return Err(bad_name(n)),
            }
        }
    }
    Ok(out)
}

fn name_list(body: &Elem, report: &mut SessionReport) -> Result<Vec<String>, CwmpFault> {
    let list = body
        .child("ParameterNames")
        .ok_or_else(|| invalid("ParameterNames is missing"))?;
    check_array(list, list.children.len(), report);
    Ok(list
        .children
        .iter()
        .map(|c| c.text.trim().to_string())
        .collect())
}

fn gpv(dev: &Device, body: &Elem, env: &mut Envelope, report: &mut SessionReport) -> RpcResult {
    let names = name_list(body, report)?;
    let broken = dev.faults.gpv_fault_on.iter().find(|(bad, _)| {
        names
            .iter()
            .any(|n| n == bad || (n.ends_with('.') && bad.starts_with(n.as_str())) || n.is_empty())
    });
    if let Some((bad, code)) = broken {
        return Err(CwmpFault::with_message(*code, format!("Cannot read {bad}")));
    }
    let list = expand(dev, &names)?;
    let raw = dev.behavior.raw_types;
    env.buf.reserve(list.len() * 150);
    env.open_array(
        "ParameterList",
        "cwmp:ParameterValueStruct",
        list.len(),
        true,
    );
    for (k, p) in list {
        env.pvs(k, &p.value, model::wire_type(&p.xsd_type, raw));
    }
    env.buf.push_str("</ParameterList>");
    Ok(())
}

/// Keeps the boolean spelling a parameter already uses (`true`/`false` or `1`/`0`).
fn boolean_like(old: &str, new: &str, xsd_type: &str) -> String {
    if !xsd_type.eq_ignore_ascii_case("xsd:boolean") {
        return new.to_string();
    }
    let Some(b) = model::parse_bool(new) else {
        return new.to_string();
    };
    let numeric = matches!(old.trim(), "0" | "1");
    match (numeric, b) {
        (true, true) => "1".into(),
        (true, false) => "0".into(),
        (false, true) => "true".into(),
        (false, false) => "false".into(),
    }
}

fn spv(dev: &mut Device, body: &Elem, env: &mut Envelope, report: &mut SessionReport) -> RpcResult {
    let list = body
        .child("ParameterList")
        .ok_or_else(|| invalid("ParameterList is missing"))?;
    check_array(list, list.children.len(), report);
    let key = match body.child("ParameterKey") {
        Some(k) => k.text.clone(),
        None => {
            report
                .notes
                .push("SetParameterValues without ParameterKey".to_string());
            String::new()
        }
    };
    if key.chars().count() > 32 {
        return Err(invalid("ParameterKey is longer than 32 characters"));
    }
    let strict = dev.behavior.strict_types;
    let mut seen = HashSet::new();
    let mut faults = Vec::new();
    let mut updates: Vec<(String, String)> = Vec::new();
    for pvs in &list.children {
        let name = pvs.child_text("Name").unwrap_or("").trim().to_string();
        let value_el = pvs.child("Value");
        let value = value_el.map(|v| v.text.clone()).unwrap_or_default();
        let given_type = value_el.and_then(|v| v.attr("type"));
        if !seen.insert(name.clone()) {
            return Err(invalid(format!("{name} appears more than once")));
        }
        if let Some((_, code)) = dev.faults.spv_fault_on.iter().find(|(n, _)| *n == name) {
            faults.push((name, *code, xml::fault_text(*code).to_string()));
            continue;
        }
        let code = match dev.model.get(&name) {
            None => 9005,
            Some(p) if p.is_object => 9005,
            Some(p) if !p.writable => 9008,
            Some(p) if strict && !model::types_compatible(&p.xsd_type, given_type) => 9006,
            Some(p) if !model::valid_value(&p.xsd_type, &value) => 9007,
            Some(p)
                if dev.behavior.digit_booleans
                    && p.xsd_type.eq_ignore_ascii_case("xsd:boolean")
                    && !matches!(value.trim(), "0" | "1") =>
            {
                9007
            }
            Some(p) => {
                updates.push((name, boolean_like(&p.value, &value, &p.xsd_type)));
                continue;
            }
        };
        faults.push((name, code, xml::fault_text(code).to_string()));
    }
    if !faults.is_empty() {
        return Err(CwmpFault {
            code: 9003,
            message: xml::fault_text(9003).to_string(),
            spv: faults,
        });
    }
    let url_name = dev.ms("URL");
    let mut credentials_touched = false;
    for (name, value) in updates {
        if name == url_name && dev.get(&name) != Some(value.as_str()) {
            // A new ACS URL means a new bootstrap.
            dev.state.bootstrapped = false;
        }
        credentials_touched |= name.starts_with(&dev.ms(""))
            && (name.ends_with("Username") || name.ends_with("Password"));
        if let Some(p) = dev.model.get_mut(&name) {
            p.value.clone_from(&value);
        }
        report.params_set.push((name, value));
    }
    set_parameter_key(dev, &key);
    if credentials_touched {
        dev.sync_credentials_from_model();
    }
    env.field("Status", &dev.behavior.apply_status.to_string());
    Ok(())
}

fn set_parameter_key(dev: &mut Device, key: &str) {
    let name = dev.ms("ParameterKey");
    if let Some(p) = dev.model.get_mut(&name) {
        p.value = key.to_string();
    }
}

fn gpa(dev: &Device, body: &Elem, env: &mut Envelope, report: &mut SessionReport) -> RpcResult {
    let names = name_list(body, report)?;
    let list = expand(dev, &names)?;
    env.open_array(
        "ParameterList",
        "cwmp:ParameterAttributeStruct",
        list.len(),
        true,
    );
    for (k, p) in list {
        env.buf.push_str("<ParameterAttributeStruct>");
        env.field("Name", k);
        env.field("Notification", &p.notification.to_string());
        env.open_array("AccessList", "xsd:string", p.access_list.len(), true);
        for a in &p.access_list {
            env.field("string", a);
        }
        env.buf.push_str("</AccessList></ParameterAttributeStruct>");
    }
    env.buf.push_str("</ParameterList>");
    Ok(())
}

fn spa(dev: &mut Device, body: &Elem, report: &mut SessionReport) -> RpcResult {
    let list = body
        .child("ParameterList")
        .ok_or_else(|| invalid("ParameterList is missing"))?;
    check_array(list, list.children.len(), report);
    struct Change {
        targets: Vec<String>,
        notification: Option<u8>,
        access: Option<Vec<String>>,
    }
    let mut changes = Vec::new();
    for s in &list.children {
        let name = text(s, "Name");
        let flag = |f: &str| -> Result<bool, CwmpFault> {
            let v = s.child_text(f).unwrap_or("false");
            model::parse_bool(v).ok_or_else(|| invalid(format!("{f} {v:?} is not a boolean")))
        };
        let notification = if flag("NotificationChange")? {
            let v = text(s, "Notification");
            let n: u8 = v
                .parse()
                .ok()
                .filter(|n| *n <= 6)
                .ok_or_else(|| invalid(format!("Notification {v:?} is not 0-6")))?;
            Some(n)
        } else {
            None
        };
        let access = if flag("AccessListChange")? {
            let items = s
                .child("AccessList")
                .map(|a| {
                    a.children
                        .iter()
                        .map(|c| c.text.trim().to_string())
                        .collect()
                })
                .unwrap_or_default();
            Some(items)
        } else {
            None
        };
        let targets: Vec<String> = expand(dev, std::slice::from_ref(&name))?
            .into_iter()
            .map(|(k, _)| k.clone())
            .collect();
        changes.push(Change {
            targets,
            notification,
            access,
        });
    }
    for c in changes {
        for t in c.targets {
            if let Some(p) = dev.model.get_mut(&t) {
                if let Some(n) = c.notification {
                    p.notification = n;
                }
                if let Some(a) = &c.access {
                    p.access_list.clone_from(a);
                }
            }
        }
    }
    Ok(())
}

fn update_entry_count(dev: &mut Device, table: &str) {
    let count = with_prefix(&dev.model, table)
        .filter(|(k, p)| p.is_object && is_child(table, k))
        .count();
    let counter = format!("{}{}NumberOfEntries", parent_of(table), last_segment(table));
    if let Some(p) = dev.model.get_mut(&counter) {
        p.value = count.to_string();
    }
}

fn add_object(dev: &mut Device, body: &Elem, env: &mut Envelope) -> RpcResult {
    let name = text(body, "ObjectName");
    let key = text(body, "ParameterKey");
    if !name.ends_with('.') || is_instance(last_segment(&name)) {
        return Err(bad_name(&name));
    }
    match dev.model.get(&name) {
        Some(p) if p.is_object && p.writable => {}
        _ => return Err(bad_name(&name)),
    }
    let instances: Vec<u32> = with_prefix(&dev.model, &name)
        .filter(|(k, p)| p.is_object && is_child(&name, k))
        .filter_map(|(k, _)| last_segment(k).parse().ok())
        .collect();
    let next = instances.iter().max().map_or(1, |m| m + 1);
    let new_prefix = format!("{name}{next}.");
    let mut new_entries = vec![(new_prefix.clone(), Param::object(true))];
    if let Some(template) = instances.iter().min() {
        let tp = format!("{name}{template}.");
        for (k, p) in with_prefix(&dev.model, &tp) {
            let rel = &k[tp.len()..];
            if rel.is_empty() || rel.trim_end_matches('.').split('.').any(is_instance) {
                continue;
            }
            let mut np = p.clone();
            np.notification = 0;
            np.access_list.clear();
            if !np.is_object {
                np.value = model::default_value(&np.xsd_type).to_string();
            }
            new_entries.push((format!("{new_prefix}{rel}"), np));
        }
    } else if let Some(template) = dev.instance_templates.get(&table_pattern(&name)) {
        for (rel, p) in template {
            new_entries.push((format!("{new_prefix}{rel}"), p.clone()));
        }
    }
    dev.model.extend(new_entries);
    update_entry_count(dev, &name);
    set_parameter_key(dev, &key);
    dev.invalidate_caches();
    env.field("InstanceNumber", &next.to_string());
    env.field("Status", &dev.behavior.apply_status.to_string());
    Ok(())
}

/// `A.1.B.2.C.` → `A.{i}.B.{i}.C.`
fn table_pattern(name: &str) -> String {
    name.split('.')
        .map(|seg| if is_instance(seg) { "{i}" } else { seg })
        .collect::<Vec<_>>()
        .join(".")
}

fn delete_object(dev: &mut Device, body: &Elem, env: &mut Envelope) -> RpcResult {
    let name = text(body, "ObjectName");
    let key = text(body, "ParameterKey");
    if !name.ends_with('.') || !is_instance(last_segment(&name)) {
        return Err(bad_name(&name));
    }
    let table = parent_of(&name).to_string();
    let deletable = match dev.model.get(&name) {
        Some(p) if p.is_object => p.writable || dev.model.get(&table).is_some_and(|t| t.writable),
        _ => return Err(bad_name(&name)),
    };
    if !deletable {
        return Err(bad_name(&name));
    }
    let doomed: Vec<String> = with_prefix(&dev.model, &name)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        dev.model.remove(&k);
    }
    dev.state
        .value_changes
        .retain(|n| !n.starts_with(name.as_str()));
    update_entry_count(dev, &table);
    set_parameter_key(dev, &key);
    dev.invalidate_caches();
    env.field("Status", &dev.behavior.apply_status.to_string());
    Ok(())
}

fn parse_u32(body: &Elem, field: &str) -> Result<u32, CwmpFault> {
    let v = text(body, field);
    if v.is_empty() {
        return Ok(0);
    }
    v.parse()
        .map_err(|_| invalid(format!("{field} {v:?} is not an unsigned integer")))
}

fn check_url(url: &str) -> RpcResult {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") {
        Ok(())
    } else if lower.contains("://") {
        Err(CwmpFault::with_message(
            9013,
            format!("Unsupported protocol for file transfer: {url}"),
        ))
    } else {
        Err(invalid(format!("URL {url:?} is not absolute")))
    }
}

fn delay(dev: &Device, secs: u32) -> Instant {
    let now = Instant::now();
    if dev.behavior.honor_delays {
        now + Duration::from_secs(u64::from(secs))
    } else {
        now
    }
}

fn transfer(
    dev: &mut Device,
    body: &Elem,
    env: &mut Envelope,
    is_download: bool,
    event: &str,
) -> RpcResult {
    let url = text(body, "URL");
    check_url(&url)?;
    let file_type = text(body, "FileType");
    if file_type.is_empty() {
        return Err(invalid("FileType is missing"));
    }
    let command_key = body.child_text("CommandKey").unwrap_or("").to_string();
    let file_size = if is_download {
        u64::from(parse_u32(body, "FileSize")?)
    } else {
        0
    };
    let secs = parse_u32(body, "DelaySeconds")?;
    let q = QueuedTransfer {
        command_key,
        is_download,
        file_type,
        url,
        username: body.child_text("Username").unwrap_or("").to_string(),
        password: body.child_text("Password").unwrap_or("").to_string(),
        file_size,
        target_file_name: body.child_text("TargetFileName").unwrap_or("").to_string(),
        due: delay(dev, secs),
        method_event: event.to_string(),
    };
    if dev.state.queued_transfers.len() >= 16 {
        return Err(CwmpFault::with_message(9004, "Too many queued transfers"));
    }
    dev.state.queued_transfers.push(q);
    env.field("Status", "1");
    env.field("StartTime", xml::UNKNOWN_TIME);
    env.field("CompleteTime", xml::UNKNOWN_TIME);
    Ok(())
}

fn schedule_download(dev: &mut Device, body: &Elem) -> RpcResult {
    let url = text(body, "URL");
    check_url(&url)?;
    let windows: Vec<&Elem> = body
        .child("TimeWindowList")
        .map(|l| l.children.iter().collect())
        .unwrap_or_default();
    if windows.is_empty() || windows.len() > 2 {
        return Err(invalid("TimeWindowList must hold one or two windows"));
    }
    let start = parse_u32(windows[0], "WindowStart")?;
    let end = parse_u32(windows[0], "WindowEnd")?;
    if end < start {
        return Err(invalid("WindowEnd is before WindowStart"));
    }
    let q = QueuedTransfer {
        command_key: body.child_text("CommandKey").unwrap_or("").to_string(),
        is_download: true,
        file_type: text(body, "FileType"),
        url,
        username: body.child_text("Username").unwrap_or("").to_string(),
        password: body.child_text("Password").unwrap_or("").to_string(),
        file_size: u64::from(parse_u32(body, "FileSize")?),
        target_file_name: body.child_text("TargetFileName").unwrap_or("").to_string(),
        due: delay(dev, start),
        method_event: "M ScheduleDownload".to_string(),
    };
    dev.state.queued_transfers.push(q);
    Ok(())
}

fn schedule_inform(dev: &mut Device, body: &Elem) -> RpcResult {
    let secs = parse_u32(body, "DelaySeconds")?;
    let key = body.child_text("CommandKey").unwrap_or("").to_string();
    let due = Instant::now() + Duration::from_secs(u64::from(secs));
    dev.state.scheduled_informs.push((due, key));
    Ok(())
}

fn cancel_transfer(dev: &mut Device, body: &Elem) -> RpcResult {
    let key = body.child_text("CommandKey").unwrap_or("");
    let before = dev.state.queued_transfers.len();
    dev.state.queued_transfers.retain(|q| q.command_key != key);
    if dev.state.queued_transfers.len() == before {
        return Err(CwmpFault::new(9021));
    }
    Ok(())
}

fn queued(dev: &Device, env: &mut Envelope, all: bool) -> RpcResult {
    let list = &dev.state.queued_transfers;
    let n = list.len().min(16);
    if all {
        env.open_array("TransferList", "cwmp:AllQueuedTransferStruct", n, true);
    } else {
        env.open_array("TransferList", "cwmp:QueuedTransferStruct", n, true);
    }
    for q in list.iter().take(16) {
        env.buf.push_str(if all {
            "<AllQueuedTransferStruct>"
        } else {
            "<QueuedTransferStruct>"
        });
        env.field("CommandKey", &q.command_key);
        env.field("State", "1");
        if all {
            env.field("IsDownload", if q.is_download { "1" } else { "0" });
            env.field("FileType", &queued_file_type(&dev.cwmp_ns, q));
            env.field("FileSize", &q.file_size.to_string());
            env.field("TargetFileName", &q.target_file_name);
            env.buf.push_str("</AllQueuedTransferStruct>");
        } else {
            env.buf.push_str("</QueuedTransferStruct>");
        }
    }
    env.buf.push_str("</TransferList>");
    Ok(())
}

/// CWMP 1.1 lists queued uploads with the file types `3 Vendor Configuration File` and
/// `4 Vendor Log File` (its AllQueuedTransferStruct only knows the download numbering).
fn queued_file_type(ns: &str, q: &QueuedTransfer) -> String {
    if q.is_download || !ns.ends_with("cwmp-1-1") {
        return q.file_type.clone();
    }
    match q.file_type.as_str() {
        "1 Vendor Configuration File" => "3 Vendor Configuration File".to_string(),
        "2 Vendor Log File" => "4 Vendor Log File".to_string(),
        other => other.to_string(),
    }
}

fn random_uuid() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn change_du_state(dev: &mut Device, body: &Elem) -> RpcResult {
    let ops: Vec<&Elem> = body.children_named("Operations").collect();
    if ops.is_empty() {
        return Err(invalid("ChangeDUState without Operations"));
    }
    let key = body.child_text("CommandKey").unwrap_or("").to_string();
    let now = xml::now_utc(dev.behavior.millis);
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let ty = op.attr("type").map(|t| t.rsplit(':').next().unwrap_or(t));
        let url = text(op, "URL");
        let uuid = text(op, "UUID");
        let version = text(op, "Version");
        let kind = match ty {
            Some(t) => t.to_string(),
            None if uuid.is_empty() => "InstallOpStruct".to_string(),
            None if !url.is_empty() => "UpdateOpStruct".to_string(),
            None => "UninstallOpStruct".to_string(),
        };
        let units = &mut dev.state.deployment_units;
        let known = units.iter().position(|u| u.0.eq_ignore_ascii_case(&uuid));
        let mut r = DuResult {
            uuid: uuid.clone(),
            deployment_unit_ref: String::new(),
            version: if version.is_empty() {
                "1.0".into()
            } else {
                version.clone()
            },
            current_state: "Installed".into(),
            fault_code: 0,
            fault_string: String::new(),
            start: now.clone(),
            complete: now.clone(),
        };
        match kind.as_str() {
            "InstallOpStruct" => {
                if !url.to_ascii_lowercase().starts_with("http") {
                    r.current_state = "Failed".into();
                    r.fault_code = 9013;
                    r.fault_string = xml::fault_text(9013).into();
                }
                if r.uuid.is_empty() {
                    r.uuid = random_uuid();
                }
                if r.fault_code == 0 {
                    if known.is_some() {
                        r.current_state = "Failed".into();
                        r.fault_code = 9026;
                        r.fault_string = "Duplicate deployment unit".into();
                    } else {
                        units.push((r.uuid.clone(), url.clone(), r.version.clone()));
                    }
                }
            }
            "UpdateOpStruct" | "UninstallOpStruct" => match known {
                Some(i) => {
                    if kind == "UninstallOpStruct" {
                        r.current_state = "Uninstalled".into();
                        units.remove(i);
                    } else {
                        units[i].2.clone_from(&r.version);
                    }
                }
                None => {
                    if r.uuid.is_empty() {
                        r.uuid = "00000000-0000-4000-8000-000000000000".into();
                    }
                    r.current_state = "Failed".into();
                    r.fault_code = 9028;
                    r.fault_string = "Unknown deployment unit".into();
                }
            },
            other => return Err(invalid(format!("unknown operation type {other}"))),
        }
        if let Some(i) = units.iter().position(|u| u.0 == r.uuid) {
            r.deployment_unit_ref = format!(
                "{}SoftwareModules.DeploymentUnit.{}",
                dev.root.prefix(),
                i + 1
            );
        }
        results.push(r);
    }
    dev.state
        .after_session
        .push(AfterAction::DuChange(key, results));
    Ok(())
}
