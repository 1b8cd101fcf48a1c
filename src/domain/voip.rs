//! VoIP lines: a SIP account assigned to line N of a device, mapped onto whatever TR-104
//! layout the device has.
//!
//! Layouts (protocol brief §5.3):
//!
//! * **TR-104 issue 1** under `InternetGatewayDevice.Services.` or `Device.Services.`:
//!   `VoiceService.1.VoiceProfile.{p}.` carries the servers (SIP registrar, proxy, domain,
//!   DTMF), `VoiceProfile.{p}.Line.{l}.` the account (credentials, URI, number). Line N is the
//!   N-th `Line` instance of the first profile.
//! * **TR-104 issue 2** under `Device.Services.`: `SIP.Client.{c}` (credentials, URI),
//!   `SIP.Network.{n}` (servers), `VoIPProfile.{v}` (DTMF), `CallControl.Line.{l}` (number,
//!   provider) and `CallControl.Extension.{e}` (display name). Line N is the N-th
//!   `CallControl.Line`; its client is the one its `Provider` names (else the N-th client),
//!   the client's network the one its `Network` names (else the first).
//! * Vendor mirrors such as `Device.X_TP_Services.VoiceService.` (TP-Link keeps the complete
//!   issue-1 tree there and only part of it under `Device.Services.`): every candidate is
//!   mapped and the one where most of the account's parameters exist wins; the standard tree
//!   wins ties.
//!
//! Missing instances are reported as tables to `AddObject` on; once created (and read back)
//! the mapping is computed again. Only parameters the device has are set; the account fields
//! the device cannot take are listed as `unmapped`.
//!
//! Passwords: [`Account`] never holds one; it travels separately and is never put in
//! `Debug` output, errors or logs.

use serde::{Deserialize, Serialize};

use crate::config::BooleanLiteral;
use crate::cwmp::ParameterValue;
use crate::datamodel::{self, Registry, RootModel};
use crate::domain::params::ParamTree;
use crate::error::{Error, Result};

/// Highest line number accepted.
pub const MAX_LINE: i32 = 64;

/// A SIP account as operators describe it. Every field is optional except what the device
/// needs to register (at least an auth user or SIP user).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Line enabled (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_number: Option<String>,
    /// User part of the SIP URI (address of record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_user: Option<String>,
    /// Digest user name (default: `sip_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// Full SIP URI (default: `sip:<sip_user>@<user_agent_domain or registrar>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrar_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_proxy_port: Option<u32>,
    /// `UDP`, `TCP`, `TLS` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_domain: Option<String>,
    /// Local SIP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_port: Option<u32>,
    /// Codec names in order of preference (`G.711ALaw`, `G.729`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codecs: Option<Vec<String>>,
    /// `InBand`, `RFC2833` (= `RFC4733`) or `SIPInfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voicemail_number: Option<String>,
    /// Registration expiry in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_expires: Option<u32>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Field names of [`Account`] in CSV/JSON order (the import header uses them).
pub const ACCOUNT_FIELDS: &[&str] = &[
    "enabled",
    "directory_number",
    "sip_user",
    "auth_user",
    "uri",
    "display_name",
    "registrar",
    "registrar_port",
    "proxy",
    "proxy_port",
    "outbound_proxy",
    "outbound_proxy_port",
    "transport",
    "user_agent_domain",
    "user_agent_port",
    "codecs",
    "dtmf_mode",
    "voicemail_number",
    "register_expires",
];

/// Reference definitions used to check account fields before anything is stored: the
/// TR-104 issue 1 parameter each field goes to (issue 2 has the same sizes and ranges).
const V1: &str = "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.";

impl Account {
    /// Set one field from text (CSV import). Empty text leaves the field unset.
    pub fn set_field(&mut self, field: &str, text: &str) -> Result<()> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(());
        }
        let s = || Some(t.to_string());
        let port = |f: &str| -> Result<Option<u32>> {
            t.parse::<u32>().map(Some).map_err(|_| {
                Error::invalid(
                    f,
                    format!("{t:?} is not a whole number; it takes an unsignedInt from 0 to 65535"),
                )
            })
        };
        match field {
            "enabled" => {
                self.enabled = match t.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => true,
                    "0" | "false" | "no" | "off" => false,
                    _ => {
                        return Err(Error::invalid(
                            "enabled",
                            format!("{t:?} is not a boolean; use true or false"),
                        ))
                    }
                }
            }
            "directory_number" => self.directory_number = s(),
            "sip_user" => self.sip_user = s(),
            "auth_user" => self.auth_user = s(),
            "uri" => self.uri = s(),
            "display_name" => self.display_name = s(),
            "registrar" => self.registrar = s(),
            "registrar_port" => self.registrar_port = port(field)?,
            "proxy" => self.proxy = s(),
            "proxy_port" => self.proxy_port = port(field)?,
            "outbound_proxy" => self.outbound_proxy = s(),
            "outbound_proxy_port" => self.outbound_proxy_port = port(field)?,
            "transport" => self.transport = s(),
            "user_agent_domain" => self.user_agent_domain = s(),
            "user_agent_port" => self.user_agent_port = port(field)?,
            "codecs" => {
                self.codecs = Some(
                    t.split([';', '|', ' '])
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
            "dtmf_mode" => self.dtmf_mode = s(),
            "voicemail_number" => self.voicemail_number = s(),
            "register_expires" => self.register_expires = port(field)?,
            other => {
                return Err(Error::invalid(
                    other,
                    format!(
                        "unknown account field; known fields: {}",
                        ACCOUNT_FIELDS.join(", ")
                    ),
                ))
            }
        }
        Ok(())
    }

    /// Check every field against the data model (sizes, ranges, enumerations), naming the
    /// field and what it takes. `password` is checked too but never repeated.
    pub fn validate(&self, password: Option<&str>) -> Result<()> {
        if self.auth_user.is_none() && self.sip_user.is_none() {
            return Err(Error::invalid(
                "sip_user",
                "give sip_user or auth_user: the device cannot register without a user name",
            ));
        }
        self.check_fields(password)
    }

    /// [`Self::validate`] without requiring a user name (a preset's line defaults).
    pub fn check_fields(&self, password: Option<&str>) -> Result<()> {
        let reg = Registry::builtin().map_err(Error::internal)?;
        let igd = RootModel::InternetGatewayDevice1;
        let check = |field: &str, rel: &str, value: &str| -> Result<()> {
            let path = format!("{V1}{rel}");
            let Some(def) = reg.lookup(igd, &path) else {
                return Ok(());
            };
            datamodel::validate_value(def, value).map_err(|e| {
                let shown = if field == "password" {
                    String::new()
                } else {
                    format!("{value:?} ")
                };
                Error::invalid(
                    field,
                    format!("{shown}{}; it takes {}", e.problem, e.expected),
                )
            })
        };
        let opt = |field: &str, rel: &str, v: &Option<String>| -> Result<()> {
            match v {
                Some(v) => check(field, rel, v),
                None => Ok(()),
            }
        };
        let num = |field: &str, rel: &str, v: Option<u32>| -> Result<()> {
            match v {
                Some(v) => check(field, rel, &v.to_string()),
                None => Ok(()),
            }
        };
        opt(
            "directory_number",
            "Line.1.DirectoryNumber",
            &self.directory_number,
        )?;
        opt("sip_user", "Line.1.SIP.AuthUserName", &self.sip_user)?;
        opt("auth_user", "Line.1.SIP.AuthUserName", &self.auth_user)?;
        opt("uri", "Line.1.SIP.URI", &self.uri)?;
        opt(
            "display_name",
            "Line.1.CallingFeatures.CallerIDName",
            &self.display_name,
        )?;
        opt("registrar", "SIP.RegistrarServer", &self.registrar)?;
        num(
            "registrar_port",
            "SIP.RegistrarServerPort",
            self.registrar_port,
        )?;
        opt("proxy", "SIP.ProxyServer", &self.proxy)?;
        num("proxy_port", "SIP.ProxyServerPort", self.proxy_port)?;
        opt("outbound_proxy", "SIP.OutboundProxy", &self.outbound_proxy)?;
        num(
            "outbound_proxy_port",
            "SIP.OutboundProxyPort",
            self.outbound_proxy_port,
        )?;
        opt(
            "user_agent_domain",
            "SIP.UserAgentDomain",
            &self.user_agent_domain,
        )?;
        num("user_agent_port", "SIP.UserAgentPort", self.user_agent_port)?;
        num(
            "register_expires",
            "SIP.RegisterExpires",
            self.register_expires,
        )?;
        if let Some(p) = password {
            check("password", "Line.1.SIP.AuthPassword", p)?;
        }
        if let Some(t) = &self.transport {
            if !["UDP", "TCP", "TLS", "SCTP"].contains(&t.as_str()) {
                return Err(Error::invalid(
                    "transport",
                    format!(
                        "{t:?} is not one of the allowed values; it takes UDP, TCP, TLS or SCTP"
                    ),
                ));
            }
        }
        if let Some(d) = &self.dtmf_mode {
            if !["InBand", "RFC2833", "RFC4733", "SIPInfo"].contains(&d.as_str()) {
                return Err(Error::invalid(
                    "dtmf_mode",
                    format!("{d:?} is not one of the allowed values; it takes InBand, RFC2833 (RFC4733) or SIPInfo"),
                ));
            }
        }
        if let Some(v) = &self.voicemail_number {
            if v.chars().count() > 32 {
                return Err(Error::invalid(
                    "voicemail_number",
                    "is too long; it takes text of at most 32 characters",
                ));
            }
        }
        Ok(())
    }

    /// Fill the fields this account leaves unset from `defaults` (a preset's line).
    pub fn with_defaults(mut self, defaults: &Account) -> Account {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = defaults.$f.clone(); } )* };
        }
        fill!(
            directory_number,
            sip_user,
            auth_user,
            uri,
            display_name,
            registrar,
            registrar_port,
            proxy,
            proxy_port,
            outbound_proxy,
            outbound_proxy_port,
            transport,
            user_agent_domain,
            user_agent_port,
            codecs,
            dtmf_mode,
            voicemail_number,
            register_expires
        );
        self
    }

    fn effective_auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref().or(self.sip_user.as_deref())
    }

    fn effective_uri(&self) -> Option<String> {
        if let Some(u) = &self.uri {
            return Some(u.clone());
        }
        let user = self.sip_user.as_deref()?;
        let domain = self
            .user_agent_domain
            .as_deref()
            .or(self.registrar.as_deref())?;
        Some(format!("sip:{user}@{domain}"))
    }
}

/// The TR-104 layout found on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `VoiceService.{i}.VoiceProfile.{i}.Line.{i}.`
    Tr104Issue1,
    /// `VoiceService.{i}.SIP.Client.{i}.`, `CallControl.Line.{i}.`, ...
    Tr104Issue2,
}

/// Where line N goes on a device, and what to send.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinePlan {
    pub layout: Option<Layout>,
    /// The `VoiceService.{i}.` object used.
    pub base: String,
    /// Tables to AddObject on, in order, before values can be set (then map again).
    pub add_objects: Vec<String>,
    /// Values to set; passwords included (never log these).
    pub values: Vec<ParameterValue>,
    /// The parameter holding the line's registration status.
    pub status_path: Option<String>,
    /// The objects the account lives in.
    pub objects: Vec<String>,
    /// Account fields the device has no parameter for.
    pub unmapped: Vec<String>,
    /// Values that do not fit the device's data model: `(path, why)`.
    pub invalid: Vec<(String, String)>,
    /// How many of the wanted parameters exist on the device (to choose between trees).
    score: usize,
}

impl LinePlan {
    /// The mapping as JSON for storage and the API (no values).
    pub fn mapping_json(&self) -> serde_json::Value {
        serde_json::json!({
            "layout": self.layout,
            "base": self.base,
            "objects": self.objects,
            "status_path": self.status_path,
            "unmapped": self.unmapped,
        })
    }
}

/// Instance numbers of a table (`…Line.`), ascending.
pub fn instances(tree: &ParamTree, table: &str) -> Vec<u32> {
    let mut out: Vec<u32> = tree
        .with_prefix(table)
        .filter_map(|(k, _)| {
            let rest = &k[table.len()..];
            let seg = rest.split('.').next()?;
            seg.parse::<u32>().ok()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn exists(tree: &ParamTree, path: &str) -> bool {
    tree.get(path).is_some() || (path.ends_with('.') && tree.with_prefix(path).next().is_some())
}

fn value_of<'a>(tree: &'a ParamTree, path: &str) -> Option<&'a str> {
    tree.get(path).and_then(|e| e.value.as_deref())
}

/// The `VoiceService.` tables of a device: the standard one first, then vendor mirrors
/// (`<root>.X_..._Services.VoiceService.`).
pub fn voice_tables(tree: &ParamTree, root: &str) -> Vec<String> {
    let mut out = Vec::new();
    let std = format!("{root}.Services.VoiceService.");
    if exists(tree, &std) {
        out.push(std);
    }
    let vendor_prefix = format!("{root}.X_");
    let mut last = String::new();
    for (k, _) in tree.with_prefix(&vendor_prefix) {
        let Some(seg) = k[root.len() + 1..].split('.').next() else {
            continue;
        };
        if seg == last {
            continue;
        }
        last = seg.to_string();
        if seg.ends_with("_Services") {
            let t = format!("{root}.{seg}.VoiceService.");
            if exists(tree, &t) && !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Whether the device has any VoiceService tree.
pub fn has_voice(tree: &ParamTree, root: &str) -> bool {
    !voice_tables(tree, root).is_empty()
}

/// Map `account` (with `password`) to line `line` (1-based) of the device whose known
/// parameters are `tree`.
pub fn plan_line(
    tree: &ParamTree,
    root: &str,
    root_model: RootModel,
    line: u32,
    account: &Account,
    password: Option<&str>,
) -> Result<LinePlan> {
    let tables = voice_tables(tree, root);
    if tables.is_empty() {
        return Err(Error::invalid(
            "line",
            format!(
                "the device has no {root}.Services.VoiceService tree (no TR-104 voice service)"
            ),
        ));
    }
    let mut best: Option<LinePlan> = None;
    for table in &tables {
        let Some(vs) = instances(tree, table).first().copied() else {
            continue;
        };
        let base = format!("{table}{vs}.");
        let plan = if exists(tree, &format!("{base}VoiceProfile.")) {
            plan_issue1(tree, &base, line, account, password)
        } else if exists(tree, &format!("{base}SIP."))
            || exists(tree, &format!("{base}CallControl."))
        {
            plan_issue2(tree, &base, line, account, password)
        } else {
            continue;
        };
        let better = match &best {
            None => true,
            Some(b) => plan.score > b.score,
        };
        if better {
            best = Some(plan);
        }
    }
    let mut plan = best.ok_or_else(|| {
        Error::invalid(
            "line",
            "the device's VoiceService has neither VoiceProfile (TR-104 issue 1) nor SIP/CallControl (issue 2)",
        )
    })?;
    type_and_check(&mut plan, root, root_model, tree);
    Ok(plan)
}

/// Builder of one plan: wanted values are kept only when the device has the parameter.
struct Builder<'a> {
    tree: &'a ParamTree,
    plan: LinePlan,
}

impl<'a> Builder<'a> {
    /// Registrar, proxy, outbound proxy and user-agent settings: the same leaf names under
    /// TR-104 issue 1's `VoiceProfile.{i}.SIP.` and issue 2's `SIP.Network.{i}.`.
    fn set_servers(&mut self, p: &str, a: &Account) {
        self.set(
            "registrar",
            format!("{p}RegistrarServer"),
            a.registrar.clone(),
        );
        self.set(
            "registrar_port",
            format!("{p}RegistrarServerPort"),
            port(a.registrar_port),
        );
        self.set(
            "transport",
            format!("{p}RegistrarServerTransport"),
            a.transport.clone(),
        );
        self.set("proxy", format!("{p}ProxyServer"), a.proxy.clone());
        self.set(
            "proxy_port",
            format!("{p}ProxyServerPort"),
            port(a.proxy_port),
        );
        self.set(
            "transport",
            format!("{p}ProxyServerTransport"),
            a.transport.clone(),
        );
        self.set(
            "outbound_proxy",
            format!("{p}OutboundProxy"),
            a.outbound_proxy.clone(),
        );
        self.set(
            "outbound_proxy_port",
            format!("{p}OutboundProxyPort"),
            port(a.outbound_proxy_port),
        );
        self.set(
            "user_agent_domain",
            format!("{p}UserAgentDomain"),
            a.user_agent_domain.clone(),
        );
        self.set(
            "user_agent_port",
            format!("{p}UserAgentPort"),
            port(a.user_agent_port),
        );
        self.set(
            "transport",
            format!("{p}UserAgentTransport"),
            a.transport.clone(),
        );
        self.set(
            "register_expires",
            format!("{p}RegisterExpires"),
            port(a.register_expires),
        );
    }

    fn new(tree: &'a ParamTree, layout: Layout, base: &str) -> Self {
        Builder {
            tree,
            plan: LinePlan {
                layout: Some(layout),
                base: base.to_string(),
                ..LinePlan::default()
            },
        }
    }

    fn set(&mut self, field: &str, path: String, value: Option<String>) {
        let Some(value) = value else { return };
        if self.tree.get(&path).is_some() {
            self.plan.score += 1;
            self.plan.values.push(ParameterValue::string(path, value));
        } else if !field.is_empty() && !self.plan.unmapped.iter().any(|f| f == field) {
            self.plan.unmapped.push(field.to_string());
        }
    }

    fn add(&mut self, table: String) {
        self.plan.add_objects.push(table);
    }
}

fn port(v: Option<u32>) -> Option<String> {
    v.map(|p| p.to_string())
}

fn plan_issue1(
    tree: &ParamTree,
    base: &str,
    line: u32,
    a: &Account,
    password: Option<&str>,
) -> LinePlan {
    let mut b = Builder::new(tree, Layout::Tr104Issue1, base);
    let profiles_table = format!("{base}VoiceProfile.");
    let Some(p) = instances(tree, &profiles_table).first().copied() else {
        b.add(profiles_table);
        return b.plan;
    };
    let prof = format!("{profiles_table}{p}.");
    let lines_table = format!("{prof}Line.");
    let lines = instances(tree, &lines_table);
    if (lines.len() as u32) < line {
        for _ in lines.len() as u32..line {
            b.add(lines_table.clone());
        }
        return b.plan;
    }
    let l = format!("{lines_table}{}.", lines[line as usize - 1]);
    b.plan.objects = vec![prof.clone(), l.clone()];
    b.plan.status_path = Some(format!("{l}Status"));
    let enable = |on: bool| Some(if on { "Enabled" } else { "Disabled" }.to_string());
    if a.enabled {
        b.set("", format!("{prof}Enable"), enable(true));
    }
    b.set("enabled", format!("{l}Enable"), enable(a.enabled));
    b.set(
        "directory_number",
        format!("{l}DirectoryNumber"),
        a.directory_number.clone(),
    );
    b.set(
        "auth_user",
        format!("{l}SIP.AuthUserName"),
        a.effective_auth_user().map(str::to_string),
    );
    b.set(
        "password",
        format!("{l}SIP.AuthPassword"),
        password.map(str::to_string),
    );
    b.set("uri", format!("{l}SIP.URI"), a.effective_uri());
    b.set(
        "display_name",
        format!("{l}CallingFeatures.CallerIDName"),
        a.display_name.clone(),
    );
    let sip = format!("{prof}SIP.");
    b.set_servers(&sip, a);
    b.set(
        "dtmf_mode",
        format!("{prof}DTMFMethod"),
        a.dtmf_mode
            .as_deref()
            .map(|d| if d == "RFC4733" { "RFC2833" } else { d }.to_string()),
    );
    if let Some(codecs) = &a.codecs {
        let table = format!("{l}Codec.List.");
        let rows = instances(tree, &table);
        let mut mapped = false;
        for i in rows {
            let row = format!("{table}{i}.");
            let Some(name) = value_of(tree, &format!("{row}Codec")) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            mapped = true;
            let pos = codecs.iter().position(|c| c.eq_ignore_ascii_case(name));
            let enable = format!("{row}Enable");
            let on = BooleanLiteral::Word.or_as_reported(value_of(tree, &enable));
            b.set("", enable, Some(on.literal(pos.is_some()).to_string()));
            if let Some(pos) = pos {
                b.set("", format!("{row}Priority"), Some((pos + 1).to_string()));
            }
        }
        if !mapped {
            b.plan.unmapped.push("codecs".into());
        }
    }
    if a.voicemail_number.is_some() {
        b.plan.unmapped.push("voicemail_number".into());
    }
    b.plan
}

/// `Device.Services.VoiceService.1.SIP.Client.2` for the object `….Client.2.`.
fn reference(object: &str) -> String {
    object.trim_end_matches('.').to_string()
}

/// The object a reference value names, if it exists in the tree and lies under `table`.
fn referenced(tree: &ParamTree, value: Option<&str>, table: &str) -> Option<String> {
    let v = value?.trim();
    if v.is_empty() {
        return None;
    }
    let obj = format!("{}.", v.trim_end_matches('.'));
    (obj.starts_with(table) && exists(tree, &obj)).then_some(obj)
}

fn plan_issue2(
    tree: &ParamTree,
    base: &str,
    line: u32,
    a: &Account,
    password: Option<&str>,
) -> LinePlan {
    let mut b = Builder::new(tree, Layout::Tr104Issue2, base);
    let idx = line as usize - 1;
    let lines_table = format!("{base}CallControl.Line.");
    let clients_table = format!("{base}SIP.Client.");
    let networks_table = format!("{base}SIP.Network.");
    let profiles_table = format!("{base}VoIPProfile.");
    let ext_table = format!("{base}CallControl.Extension.");
    let lines = instances(tree, &lines_table);
    let clients = instances(tree, &clients_table);
    let networks = instances(tree, &networks_table);
    let profiles = instances(tree, &profiles_table);
    let exts = instances(tree, &ext_table);

    let cl = lines.get(idx).map(|i| format!("{lines_table}{i}."));
    let client = cl
        .as_ref()
        .and_then(|cl| {
            referenced(
                tree,
                value_of(tree, &format!("{cl}Provider")),
                &clients_table,
            )
        })
        .or_else(|| clients.get(idx).map(|i| format!("{clients_table}{i}.")));
    let network = client
        .as_ref()
        .and_then(|c| {
            referenced(
                tree,
                value_of(tree, &format!("{c}Network")),
                &networks_table,
            )
        })
        .or_else(|| networks.first().map(|i| format!("{networks_table}{i}.")));
    let profile = network
        .as_ref()
        .and_then(|n| {
            referenced(
                tree,
                value_of(tree, &format!("{n}VoIPProfile")),
                &profiles_table,
            )
        })
        .or_else(|| profiles.first().map(|i| format!("{profiles_table}{i}.")));
    let ext = exts.get(idx).map(|i| format!("{ext_table}{i}."));

    if cl.is_none() {
        for _ in lines.len()..=idx {
            b.add(lines_table.clone());
        }
    }
    if client.is_none() {
        // One client per line: create up to this line's.
        for _ in clients.len()..=idx {
            b.add(clients_table.clone());
        }
    }
    if network.is_none() {
        b.add(networks_table.clone());
    }
    if profile.is_none() && exists(tree, &profiles_table) {
        b.add(profiles_table.clone());
    }
    if ext.is_none() && a.display_name.is_some() && exists(tree, &ext_table) {
        for _ in exts.len()..=idx {
            b.add(ext_table.clone());
        }
    }
    if !b.plan.add_objects.is_empty() {
        return b.plan;
    }
    let (Some(cl), Some(c), Some(n)) = (cl, client, network) else {
        return b.plan;
    };
    b.plan.objects = vec![cl.clone(), c.clone(), n.clone()];
    b.plan.status_path = Some(format!("{c}Status"));
    // In the form the device reports the parameter in (1/0 or true/false).
    let on = |path: &str, v: bool| {
        let form = BooleanLiteral::Word.or_as_reported(value_of(tree, path));
        Some(form.literal(v).to_string())
    };
    b.set(
        "enabled",
        format!("{c}Enable"),
        on(&format!("{c}Enable"), a.enabled),
    );
    b.set(
        "enabled",
        format!("{cl}Enable"),
        on(&format!("{cl}Enable"), a.enabled),
    );
    if a.enabled {
        b.set("", format!("{n}Enable"), on(&format!("{n}Enable"), true));
    }
    b.set(
        "auth_user",
        format!("{c}AuthUserName"),
        a.effective_auth_user().map(str::to_string),
    );
    b.set(
        "password",
        format!("{c}AuthPassword"),
        password.map(str::to_string),
    );
    b.set("uri", format!("{c}RegisterURI"), a.effective_uri());
    b.set("", format!("{c}Network"), Some(reference(&n)));
    b.set(
        "directory_number",
        format!("{cl}DirectoryNumber"),
        a.directory_number.clone(),
    );
    b.set("", format!("{cl}Provider"), Some(reference(&c)));
    b.set_servers(&n, a);
    if let Some(v) = &profile {
        b.plan.objects.push(v.clone());
        b.set("", format!("{n}VoIPProfile"), Some(reference(v)));
        b.set(
            "dtmf_mode",
            format!("{v}DTMFMethod"),
            a.dtmf_mode
                .as_deref()
                .map(|d| if d == "RFC2833" { "RFC4733" } else { d }.to_string()),
        );
    } else if a.dtmf_mode.is_some() {
        b.plan.unmapped.push("dtmf_mode".into());
    }
    if let Some(e) = &ext {
        b.plan.objects.push(e.clone());
        b.set("display_name", format!("{e}Name"), a.display_name.clone());
    } else if a.display_name.is_some() {
        b.plan.unmapped.push("display_name".into());
    }
    if let Some(codecs) = &a.codecs {
        // N.CodecList: references to CodecProfile rows, whose Codec references a
        // Capabilities.Codec row carrying the name.
        let cp_table = format!("{base}CodecProfile.");
        let mut refs = Vec::new();
        for want in codecs {
            for i in instances(tree, &cp_table) {
                let row = format!("{cp_table}{i}.");
                let name = value_of(tree, &format!("{row}Codec"))
                    .map(|r| format!("{}.Codec", r.trim_end_matches('.')))
                    .and_then(|p| value_of(tree, &p));
                if name.is_some_and(|n| n.eq_ignore_ascii_case(want)) {
                    refs.push(reference(&row));
                }
            }
        }
        if refs.is_empty() {
            b.plan.unmapped.push("codecs".into());
        } else {
            b.set("codecs", format!("{n}CodecList"), Some(refs.join(",")));
        }
    }
    if a.voicemail_number.is_some() {
        b.plan.unmapped.push("voicemail_number".into());
    }
    b.plan
}

/// The path the data model knows for a parameter of a vendor mirror
/// (`Device.X_TP_Services.VoiceService…` → `Device.Services.VoiceService…`).
fn standard_path(path: &str, root: &str) -> String {
    let rest = &path[root.len().min(path.len())..];
    if let Some(after) = rest.strip_prefix(".X_") {
        if let Some(i) = after.find("_Services.") {
            return format!("{root}.Services.{}", &after[i + "_Services.".len()..]);
        }
    }
    path.to_string()
}

/// The `xsi:type` to send for `path`: the data model's, else what the device reported,
/// else `xsd:string`.
pub fn type_for(path: &str, root: &str, root_model: RootModel, tree: &ParamTree) -> String {
    let std = standard_path(path, root);
    if let Ok(reg) = Registry::builtin() {
        if let Some(def) = reg.lookup(root_model, &std) {
            return datamodel::xsd_type(def).to_string();
        }
    }
    tree.get(path)
        .map(|e| e.xsd_type.to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "xsd:string".to_string())
}

fn type_and_check(plan: &mut LinePlan, root: &str, root_model: RootModel, tree: &ParamTree) {
    let reg = Registry::builtin().ok();
    let mut invalid = Vec::new();
    plan.values.retain_mut(|v| {
        v.xsd_type = type_for(&v.name, root, root_model, tree).into();
        let std = standard_path(&v.name, root);
        // Only a positive report counts here: a value the device refuses is recorded then.
        let reported = datamodel::Reported {
            writable: tree.get(&v.name).and_then(|e| e.writable).filter(|w| *w),
            ..datamodel::Reported::default()
        };
        let checked =
            datamodel::check_set_value(reg, &[root_model], &std, &v.value, None, reported);
        if let Err(e) = checked {
            invalid.push((v.name.clone(), format!("{std}: {}", e.message)));
            return false;
        }
        true
    });
    plan.invalid = invalid;
}

/// The line status ferroacs shows, from what the device reports.
pub fn normalize_status(raw: &str) -> &'static str {
    match raw {
        "Up" => "registered",
        "Initializing" | "Registering" | "Unregistering" | "Deregistering" | "Testing" => {
            "registering"
        }
        "Disabled" | "Quiescent" => "disabled",
        r if r.starts_with("Error") => "error",
        _ => "unknown",
    }
}

/// The root model named in the device row (`InternetGatewayDevice:1`, `Device:2`, ...).
pub fn root_model_of(name: &str) -> RootModel {
    RootModel::parse(name).unwrap_or(if name.starts_with("InternetGatewayDevice") {
        RootModel::InternetGatewayDevice1
    } else {
        RootModel::Device2
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, &str, &str)]) -> ParamTree {
        let mut t = ParamTree::new();
        for (n, v, ty) in entries {
            if n.ends_with('.') {
                t.set_info(n, true, 1);
            } else {
                t.set_value(n, v, ty, 1);
            }
        }
        t
    }

    fn account() -> Account {
        Account {
            enabled: true,
            directory_number: Some("+3312345".into()),
            sip_user: Some("alice".into()),
            registrar: Some("sip.example.net".into()),
            registrar_port: Some(5060),
            transport: Some("UDP".into()),
            display_name: Some("Alice".into()),
            dtmf_mode: Some("RFC4733".into()),
            ..Account::default()
        }
    }

    const P: &str = "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.";

    fn issue1_tree(with_line: bool) -> ParamTree {
        let mut e = vec![
            ("InternetGatewayDevice.Services.VoiceService.1.", "", ""),
            (P, "", ""),
            ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Enable", "Disabled", "xsd:string"),
            ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.DTMFMethod", "InBand", "xsd:string"),
            ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.SIP.RegistrarServer", "", "xsd:string"),
            ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.SIP.RegistrarServerPort", "5060", "xsd:unsignedInt"),
            ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.", "", ""),
        ];
        if with_line {
            e.extend([
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.", "", ""),
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.Enable", "Disabled", "xsd:string"),
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.DirectoryNumber", "", "xsd:string"),
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.SIP.AuthUserName", "", "xsd:string"),
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.SIP.AuthPassword", "", "xsd:string"),
                ("InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.3.Status", "Disabled", "xsd:string"),
            ]);
        }
        tree(&e)
    }

    #[test]
    fn issue1_without_line_asks_for_add_object() {
        let t = issue1_tree(false);
        let plan = plan_line(
            &t,
            "InternetGatewayDevice",
            RootModel::InternetGatewayDevice1,
            1,
            &account(),
            Some("pw"),
        )
        .unwrap();
        assert_eq!(plan.layout, Some(Layout::Tr104Issue1));
        assert_eq!(plan.add_objects, vec![format!("{P}Line.")]);
        assert!(plan.values.is_empty());
    }

    #[test]
    fn issue1_maps_the_nth_instance_with_types() {
        let t = issue1_tree(true);
        let plan = plan_line(
            &t,
            "InternetGatewayDevice",
            RootModel::InternetGatewayDevice1,
            1,
            &account(),
            Some("pw"),
        )
        .unwrap();
        assert!(plan.add_objects.is_empty());
        let get = |n: &str| {
            plan.values
                .iter()
                .find(|v| v.name == format!("{P}{n}"))
                .map(|v| (v.value.as_str(), &*v.xsd_type))
        };
        assert_eq!(
            get("Line.3.SIP.AuthUserName"),
            Some(("alice", "xsd:string"))
        );
        assert_eq!(get("Line.3.SIP.AuthPassword"), Some(("pw", "xsd:string")));
        assert_eq!(get("Line.3.Enable"), Some(("Enabled", "xsd:string")));
        assert_eq!(
            get("SIP.RegistrarServerPort"),
            Some(("5060", "xsd:unsignedInt"))
        );
        assert_eq!(get("DTMFMethod"), Some(("RFC2833", "xsd:string")));
        assert_eq!(
            plan.status_path.as_deref(),
            Some(&*format!("{P}Line.3.Status"))
        );
        // Not in this tree: reported, not sent.
        assert!(plan.unmapped.contains(&"display_name".to_string()));
        // Line 2 does not exist yet.
        let plan2 = plan_line(
            &t,
            "InternetGatewayDevice",
            RootModel::InternetGatewayDevice1,
            2,
            &account(),
            None,
        )
        .unwrap();
        assert_eq!(plan2.add_objects.len(), 1);
    }

    #[test]
    fn issue2_creates_then_links_objects() {
        let b = "Device.Services.VoiceService.1.";
        let mut t = tree(&[
            ("Device.Services.VoiceService.1.", "", ""),
            ("Device.Services.VoiceService.1.SIP.", "", ""),
            ("Device.Services.VoiceService.1.SIP.Client.", "", ""),
            ("Device.Services.VoiceService.1.SIP.Network.", "", ""),
            ("Device.Services.VoiceService.1.CallControl.Line.", "", ""),
        ]);
        let plan = plan_line(&t, "Device", RootModel::Device2, 1, &account(), Some("pw")).unwrap();
        assert_eq!(
            plan.add_objects,
            vec![
                format!("{b}CallControl.Line."),
                format!("{b}SIP.Client."),
                format!("{b}SIP.Network.")
            ]
        );
        for (n, v, ty) in [
            ("CallControl.Line.1.Enable", "false", "xsd:boolean"),
            ("CallControl.Line.1.DirectoryNumber", "", "xsd:string"),
            ("CallControl.Line.1.Provider", "", "xsd:string"),
            ("SIP.Client.1.Enable", "false", "xsd:boolean"),
            ("SIP.Client.1.AuthUserName", "", "xsd:string"),
            ("SIP.Client.1.AuthPassword", "", "xsd:string"),
            ("SIP.Client.1.Network", "", "xsd:string"),
            ("SIP.Client.1.Status", "Disabled", "xsd:string"),
            ("SIP.Network.1.RegistrarServer", "", "xsd:string"),
            ("SIP.Network.1.RegistrarServerPort", "0", "xsd:unsignedInt"),
        ] {
            t.set_value(&format!("{b}{n}"), v, ty, 2);
        }
        let plan = plan_line(&t, "Device", RootModel::Device2, 1, &account(), Some("pw")).unwrap();
        assert!(plan.add_objects.is_empty(), "{:?}", plan.add_objects);
        let get = |n: &str| {
            plan.values
                .iter()
                .find(|v| v.name == format!("{b}{n}"))
                .map(|v| (v.value.clone(), v.xsd_type.clone()))
        };
        assert_eq!(
            get("CallControl.Line.1.Provider").unwrap().0,
            "Device.Services.VoiceService.1.SIP.Client.1"
        );
        assert_eq!(
            get("SIP.Client.1.Network").unwrap().0,
            "Device.Services.VoiceService.1.SIP.Network.1"
        );
        assert_eq!(
            get("SIP.Client.1.Enable").unwrap(),
            ("true".to_string(), "xsd:boolean".into())
        );
        assert_eq!(plan.status_path.unwrap(), format!("{b}SIP.Client.1.Status"));
    }

    #[test]
    fn vendor_mirror_wins_when_it_has_more() {
        let t = tree(&[
            ("Device.Services.VoiceService.1.", "", ""),
            ("Device.Services.VoiceService.1.VoiceProfile.1.", "", ""),
            (
                "Device.Services.VoiceService.1.VoiceProfile.1.Line.1.",
                "",
                "",
            ),
            (
                "Device.Services.VoiceService.1.VoiceProfile.1.Line.1.CallingFeatures.CallerIDName",
                "",
                "xsd:string",
            ),
            ("Device.X_TP_Services.VoiceService.1.", "", ""),
            (
                "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.",
                "",
                "",
            ),
            (
                "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.1.",
                "",
                "",
            ),
            (
                "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthUserName",
                "",
                "xsd:string",
            ),
            (
                "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword",
                "",
                "xsd:string",
            ),
            (
                "Device.X_TP_Services.VoiceService.1.VoiceProfile.1.SIP.RegistrarServerPort",
                "",
                "xsd:unsignedInt",
            ),
        ]);
        let plan = plan_line(&t, "Device", RootModel::Device2, 1, &account(), Some("pw")).unwrap();
        assert_eq!(plan.base, "Device.X_TP_Services.VoiceService.1.");
        let port = plan
            .values
            .iter()
            .find(|v| v.name.ends_with("RegistrarServerPort"))
            .unwrap();
        // Typed from the standard definition.
        assert_eq!(port.xsd_type, "xsd:unsignedInt");
    }

    #[test]
    fn account_validation_names_field_and_type() {
        let mut a = account();
        a.registrar_port = Some(70000);
        let e = a.validate(None).unwrap_err().to_string();
        assert!(e.starts_with("registrar_port:"), "{e}");
        assert!(e.contains("0 to 65535") || e.contains("65535"), "{e}");
        let mut a = account();
        a.directory_number = Some("1".repeat(40));
        let e = a.validate(None).unwrap_err().to_string();
        assert!(e.contains("directory_number") && e.contains("32"), "{e}");
        let e = account()
            .validate(Some(&"x".repeat(200)))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("password:") && !e.contains("xxxx"), "{e}");
        assert!(account().validate(Some("ok")).is_ok());
        let mut a = Account::default();
        assert!(a.validate(None).is_err());
        a.set_field("sip_user", "bob").unwrap();
        a.set_field("codecs", "G.711ALaw;G.729").unwrap();
        assert_eq!(a.codecs.as_ref().unwrap().len(), 2);
        assert!(a.set_field("registrar_port", "x").is_err());
        assert!(a.set_field("nope", "x").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(normalize_status("Up"), "registered");
        assert_eq!(normalize_status("Registering"), "registering");
        assert_eq!(normalize_status("Error_Registration"), "error");
        assert_eq!(normalize_status("Error"), "error");
        assert_eq!(normalize_status("Disabled"), "disabled");
        assert_eq!(normalize_status(""), "unknown");
    }
}
