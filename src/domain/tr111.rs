//! TR-111 and TR-069 Annex K at the session.
//!
//! Reaching devices behind NAT: TR-111 Part 2 STUN settings a device gets after its
//! discovery ([`stun_settings`], pure, with its unit tests) and, for XMPP connection requests
//! (TR-069 Annex K), ferroacs's JID added to the JIDs the device accepts requests from
//! ([`xmpp_allowed_jids`], pure); both queued by [`after_discovery`]. The STUN credentials
//! are stored, the password sealed, by [`settings_accepted`] once the device accepted them.
//!
//! Part 1, the device–gateway association: a gateway lists the devices of its LAN that
//! announced themselves (DHCP option 125) in `ManagementServer.ManageableDevice.{i}`
//! ([`manageable_devices`]), and a LAN device names its gateway in `GatewayInfo`
//! ([`gateway_claim`]); both sides are turned into device ids as ferroacs computes them
//! (`cwmp::device_id`). [`session_reports`] decides what a session's values say about either
//! table, [`table_reread`] re-reads a gateway's table when its Inform says it changed, and
//! [`gateway_notifications`] asks for active notification on the parameters that announce
//! a change. [`after_session`] writes what a session learnt into the association.

use std::collections::BTreeMap;

use crate::config::BooleanLiteral;
use crate::cwmp::{
    AcsRequest, GetParameterValues, ParameterValue, SetParameterAttribute, SetParameterAttributes,
    SetParameterValues,
};
use crate::datamodel::ActiveNotify;
use crate::domain::params::ParamTree;
use crate::domain::session_state::{DeviceSession, Env, Origin, Planned};
use crate::error::Result;

/// The STUN settings ferroacs offers devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunOffer {
    /// STUNServerAddress; empty = left alone (the device uses its ACS URL's host).
    pub server_address: String,
    pub server_port: u16,
    pub min_keepalive_secs: u32,
    pub max_keepalive_secs: i32,
}

/// The SetParameterValues giving a device STUN, or `None`.
///
/// Only devices with a settable `ManagementServer.STUNEnable` (`settable(name)`: the device
/// reported the parameter, not read-only) get it; a device that already has credentials
/// from ferroacs gets it again only at BOOTSTRAP (a factory reset forgot them). Each other
/// STUN parameter is set only when the device has it; USERNAME and PASSWORD only together.
/// STUNEnable is written in the form `booleans` (`cwmp.boolean_literal`).
pub fn stun_settings(
    root: &str,
    settable: impl Fn(&str) -> bool,
    bootstrap: bool,
    has_credentials: bool,
    offer: &StunOffer,
    credentials: (String, String),
    booleans: BooleanLiteral,
) -> Option<Planned> {
    let ms = format!("{root}.ManagementServer.");
    let name = |leaf: &str| format!("{ms}{leaf}");
    if !settable(&name("STUNEnable")) || (has_credentials && !bootstrap) {
        return None;
    }
    let mut list = vec![ParameterValue::new(
        name("STUNEnable"),
        booleans.literal(true),
        "xsd:boolean",
    )];
    if !offer.server_address.is_empty() && settable(&name("STUNServerAddress")) {
        list.push(ParameterValue::string(
            name("STUNServerAddress"),
            offer.server_address.clone(),
        ));
    }
    if settable(&name("STUNServerPort")) {
        list.push(ParameterValue::new(
            name("STUNServerPort"),
            offer.server_port.to_string(),
            "xsd:unsignedInt",
        ));
    }
    let (mut username, mut password) = (None, None);
    if settable(&name("STUNUsername")) && settable(&name("STUNPassword")) {
        let (u, p) = credentials;
        list.push(ParameterValue::string(name("STUNUsername"), u.clone()));
        list.push(ParameterValue::string(name("STUNPassword"), p.clone()));
        username = Some(u);
        password = Some(p);
    }
    if settable(&name("STUNMinimumKeepAlivePeriod")) {
        list.push(ParameterValue::new(
            name("STUNMinimumKeepAlivePeriod"),
            offer.min_keepalive_secs.to_string(),
            "xsd:unsignedInt",
        ));
    }
    if settable(&name("STUNMaximumKeepAlivePeriod")) {
        list.push(ParameterValue::new(
            name("STUNMaximumKeepAlivePeriod"),
            offer.max_keepalive_secs.to_string(),
            "xsd:int",
        ));
    }
    Some(Planned {
        origin: Origin::StunSettings { username, password },
        request: AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: list,
            parameter_key: String::new(),
        }),
    })
}

/// Most entries ConnReqAllowedJabberIDs holds (TR-181: a list of at most 32 JIDs).
pub const MAX_ALLOWED_JIDS: usize = 32;

/// The SetParameterValues adding `own` (ferroacs's bare JID) to
/// `ManagementServer.ConnReqAllowedJabberIDs`, or `None`.
///
/// Only devices that support XMPP connection requests get it: a settable
/// ConnReqAllowedJabberIDs (`settable(name)`) and XMPP connection objects
/// (`has_xmpp_connection`: `XMPP.Connection.` or `ManagementServer.ConnReqXMPPConnection`
/// reported). The entries already there (`current`, comma-separated) are kept in their order;
/// nothing is sent when `own` is among them (compared without case) or the list is full.
pub fn xmpp_allowed_jids(
    root: &str,
    settable: impl Fn(&str) -> bool,
    has_xmpp_connection: bool,
    current: Option<&str>,
    own: &str,
) -> Option<Planned> {
    let name = format!("{root}.ManagementServer.ConnReqAllowedJabberIDs");
    let own = own.trim();
    if own.is_empty() || !has_xmpp_connection || !settable(&name) {
        return None;
    }
    let mut entries: Vec<&str> = current
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.iter().any(|e| e.eq_ignore_ascii_case(own)) || entries.len() >= MAX_ALLOWED_JIDS {
        return None;
    }
    entries.push(own);
    Some(Planned {
        origin: Origin::XmppAllowedJids,
        request: AcsRequest::SetParameterValues(SetParameterValues {
            parameter_list: vec![ParameterValue::string(name, entries.join(","))],
            parameter_key: String::new(),
        }),
    })
}

/// Discovery of `s` finished: queue its STUN settings when the STUN server is on and the
/// device fits (see [`stun_settings`]), and ferroacs's JID in its ConnReqAllowedJabberIDs
/// when XMPP is configured and the device supports it (see [`xmpp_allowed_jids`]).
pub async fn after_discovery(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    if let Some(x) = env.services.and_then(|sv| sv.connreq.xmpp()) {
        if env.config.xmpp.configure_devices {
            let settable = |n: &str| {
                s.learnt
                    .get(n)
                    .is_some_and(|e| !e.object && e.writable != Some(false))
            };
            let ms = format!("{}.ManagementServer.", s.root);
            let xmpp_objects = format!("{}.XMPP.Connection.", s.root);
            let has_connection = s
                .learnt
                .get(&format!("{ms}ConnReqXMPPConnection"))
                .is_some()
                || s.learnt.iter().any(|(n, _)| n.starts_with(&xmpp_objects));
            let current = s
                .learnt
                .get(&format!("{ms}ConnReqAllowedJabberIDs"))
                .and_then(|e| e.value.clone());
            if let Some(p) = xmpp_allowed_jids(
                &s.root,
                settable,
                has_connection,
                current.as_deref(),
                x.bare_jid(),
            ) {
                s.queue.push_back(p);
            }
        }
    }
    stun_after_discovery(env, s).await
}

async fn stun_after_discovery(env: &Env<'_>, s: &mut DeviceSession) -> Result<()> {
    let cfg = &env.config.stun;
    let Some(sv) = env.services else {
        return Ok(());
    };
    let Some(addr) = sv.stun.addr() else {
        return Ok(());
    };
    if !cfg.configure_devices {
        return Ok(());
    }
    let settable = |n: &str| {
        s.learnt
            .get(n)
            .is_some_and(|e| !e.object && e.writable != Some(false))
    };
    let enable = format!("{}.ManagementServer.STUNEnable", s.root);
    if !settable(&enable) {
        return Ok(());
    }
    // As configured, or as the device reports STUNEnable (1/0: it surely takes that form).
    let booleans = env
        .config
        .cwmp
        .boolean_literal
        .or_as_reported(s.learnt.get(&enable).and_then(|e| e.value.as_deref()));
    let id = s.device_id.clone();
    let has = env.store.run(move |st| st.stun_of(&id)).await?.is_some();
    let bootstrap = s.created || s.events.iter().any(|e| e == "0 BOOTSTRAP");
    let offer = StunOffer {
        server_address: cfg.server_address.clone(),
        server_port: if cfg.server_port == 0 {
            addr.port()
        } else {
            cfg.server_port
        },
        min_keepalive_secs: cfg.min_keepalive_secs,
        max_keepalive_secs: cfg.max_keepalive_secs,
    };
    let mut pw = [0u8; 16];
    rand::fill(&mut pw[..]);
    let planned = stun_settings(
        &s.root,
        settable,
        bootstrap,
        has,
        &offer,
        (s.device_id.clone(), hex::encode(pw)),
        booleans,
    );
    if let Some(p) = planned {
        s.queue.push_back(p);
    }
    Ok(())
}

/// The device accepted its STUN credentials: store them (the password sealed).
pub async fn settings_accepted(
    env: &Env<'_>,
    s: &DeviceSession,
    username: &str,
    password: &str,
) -> Result<()> {
    let sealed = env
        .store
        .keyring()
        .seal(crate::secrets::purpose::STUN_PASSWORD, password)?;
    let (id, u, now) = (s.device_id.clone(), username.to_string(), env.now);
    env.store
        .run(move |st| st.set_stun_credentials(&id, &u, &sealed, now))
        .await?;
    if let Some(sv) = env.services {
        sv.stun.forget(username);
    }
    Ok(())
}

/// A device named by the ManufacturerOUI, ProductClass and SerialNumber another device
/// reported, with its id as ferroacs computes it from an Inform's DeviceId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub id: String,
    pub oui: String,
    pub product_class: String,
    pub serial_number: String,
}

/// What a LAN device says about its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Behind this gateway.
    Gateway(DeviceRef),
    /// No gateway (every GatewayInfo value empty).
    None,
    /// Values no gateway can have (the reason); counted as no gateway.
    Malformed(String),
}

/// One row of a gateway's ManageableDevice table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub device: DeviceRef,
    /// The row's `Host` (references to the gateway's Hosts table), as reported.
    pub host: String,
}

/// Longest ProductClass and SerialNumber TR-111 allows (string(64)).
const MAX_FIELD: usize = 64;

/// The device named by `oui`, `product_class` and `serial`, or why they name none.
///
/// The OUI must be six hexadecimal digits (TR-069 writes it in upper case, as DeviceId does;
/// lower-case digits are read as upper case), the serial number non-empty; both other
/// fields at most 64 characters without control characters. Surrounding spaces are
/// ignored.
pub fn device_ref(
    oui: &str,
    product_class: &str,
    serial: &str,
) -> std::result::Result<DeviceRef, String> {
    let (oui, product_class, serial) = (oui.trim(), product_class.trim(), serial.trim());
    if oui.len() != 6 || !oui.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "ManufacturerOUI {oui:?} is not six hexadecimal digits"
        ));
    }
    if serial.is_empty() {
        return Err("SerialNumber is empty".into());
    }
    for (what, v) in [("ProductClass", product_class), ("SerialNumber", serial)] {
        if v.chars().count() > MAX_FIELD {
            return Err(format!("{what} is longer than {MAX_FIELD} characters"));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("{what} holds control characters"));
        }
    }
    let oui = oui.to_ascii_uppercase();
    Ok(DeviceRef {
        id: crate::cwmp::device_id(&oui, product_class, serial),
        oui,
        product_class: product_class.to_string(),
        serial_number: serial.to_string(),
    })
}

/// What `values` (parameter name → value) say about the gateway of a device whose root
/// object is `root`: `None` when they hold no `GatewayInfo` value at all.
pub fn gateway_claim(root: &str, values: &BTreeMap<String, String>) -> Option<Claim> {
    let prefix = format!("{root}.GatewayInfo.");
    let get = |leaf: &str| values.get(&format!("{prefix}{leaf}")).map(String::as_str);
    let (oui, pc, serial) = (
        get("ManufacturerOUI"),
        get("ProductClass"),
        get("SerialNumber"),
    );
    if oui.is_none() && pc.is_none() && serial.is_none() {
        return None;
    }
    let (oui, pc, serial) = (oui.unwrap_or(""), pc.unwrap_or(""), serial.unwrap_or(""));
    if oui.trim().is_empty() && serial.trim().is_empty() {
        return Some(Claim::None);
    }
    Some(match device_ref(oui, pc, serial) {
        Ok(r) => Claim::Gateway(r),
        Err(why) => Claim::Malformed(why),
    })
}

/// The rows of the ManageableDevice table in `values`, by instance number; rows whose
/// values name no device (see [`device_ref`]) are left out, each device once.
pub fn manageable_devices(root: &str, values: &BTreeMap<String, String>) -> Vec<Listed> {
    let prefix = format!("{root}.ManagementServer.ManageableDevice.");
    let mut rows: BTreeMap<u64, BTreeMap<&str, &str>> = BTreeMap::new();
    for (name, value) in values.range(prefix.clone()..) {
        let Some(rest) = name.strip_prefix(&prefix) else {
            break;
        };
        let Some((inst, leaf)) = rest.split_once('.') else {
            continue;
        };
        let Ok(i) = inst.parse::<u64>() else {
            continue;
        };
        rows.entry(i).or_default().insert(leaf, value.as_str());
    }
    let mut out: Vec<Listed> = Vec::new();
    for row in rows.values() {
        let get = |leaf: &str| row.get(leaf).copied().unwrap_or("");
        let Ok(device) = device_ref(
            get("ManufacturerOUI"),
            get("ProductClass"),
            get("SerialNumber"),
        ) else {
            continue;
        };
        if out.iter().any(|l| l.device.id == device.id) {
            continue;
        }
        out.push(Listed {
            device,
            host: get("Host").to_string(),
        });
    }
    out
}

fn number_of_entries(root: &str) -> String {
    format!("{root}.ManagementServer.ManageableDeviceNumberOfEntries")
}

fn table_path(root: &str) -> String {
    format!("{root}.ManagementServer.ManageableDevice.")
}

/// Whether `values` hold the whole ManageableDevice table: its NumberOfEntries and as many
/// rows with a SerialNumber.
fn table_whole(root: &str, values: &BTreeMap<String, String>) -> bool {
    let Some(n) = values
        .get(&number_of_entries(root))
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return false;
    };
    let prefix = table_path(root);
    let rows = values
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| k.ends_with(".SerialNumber"))
        .count();
    rows == n
}

/// What one session tells about the association.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reports {
    /// The gateway's whole ManageableDevice table, when the session read it (discovery, a
    /// re-read, or an Inform carrying every row).
    pub table: Option<Vec<Listed>>,
    /// The device's GatewayInfo, when the session saw any of it.
    pub claim: Option<Claim>,
}

/// What the values of a session (the Inform's, overlaid by those read in the session) say.
/// The table counts as read when the session read its NumberOfEntries (discovery or
/// [`table_reread`] read it together with the rows), or when the Inform carried every row.
pub fn session_reports(root: &str, inform: &[(String, String)], learnt: &ParamTree) -> Reports {
    // Only the association's values are looked at: a discovery's whole tree is not copied.
    let table = table_path(root);
    let count = number_of_entries(root);
    let gateway = format!("{root}.GatewayInfo.");
    let inform_only: BTreeMap<String, String> = inform
        .iter()
        .filter(|(n, _)| n.starts_with(&table) || *n == count || n.starts_with(&gateway))
        .cloned()
        .collect();
    let mut values = inform_only.clone();
    let learnt_values = learnt
        .with_prefix(&table)
        .chain(learnt.get_key_value(&count))
        .chain(learnt.with_prefix(&gateway));
    for (name, e) in learnt_values {
        if let Some(v) = &e.value {
            values.insert(name.clone(), v.clone());
        }
    }
    let read = learnt.get(&count).is_some_and(|e| e.value.is_some());
    Reports {
        table: (read || table_whole(root, &inform_only)).then(|| manageable_devices(root, &values)),
        claim: gateway_claim(root, &values),
    }
}

/// The read of a gateway's ManageableDevice table (with its NumberOfEntries, so that the
/// answer always says the table was read) when the Inform carries the count or rows, for
/// instance as a value change, but not every row; `None` when a discovery reads it anyway.
pub fn table_reread(root: &str, inform: &[(String, String)], discovering: bool) -> Option<Planned> {
    let count = number_of_entries(root);
    let table = table_path(root);
    if discovering
        || !inform
            .iter()
            .any(|(n, _)| *n == count || n.starts_with(&table))
    {
        return None;
    }
    // Only an Inform that mentions the table is copied into a map (every session asks).
    let values: BTreeMap<String, String> = inform.iter().cloned().collect();
    if table_whole(root, &values) {
        return None;
    }
    Some(Planned {
        origin: Origin::GatewayTable,
        request: AcsRequest::GetParameterValues(GetParameterValues {
            parameter_names: vec![count, table],
        }),
    })
}

/// The SetParameterAttributes asking for active notification on what announces a change
/// of the association: a gateway's `ManagementServer.ManageableDeviceNumberOfEntries` and a
/// LAN device's `GatewayInfo.ManufacturerOUI/ProductClass/SerialNumber`, or `None`.
///
/// Only parameters the device has (`has`) and that do not have it already
/// (`notification`: what the device said, if known) are asked for; the data model's rule
/// (`rule`) leaves out those whose active notification is always on. A device may refuse
/// (fault 9009 for a `canDeny` parameter): the session records the fault and goes on.
pub fn gateway_notifications(
    root: &str,
    has: impl Fn(&str) -> bool,
    notification: impl Fn(&str) -> Option<u8>,
    rule: impl Fn(&str) -> Option<ActiveNotify>,
) -> Option<Planned> {
    let names = [
        number_of_entries(root),
        format!("{root}.GatewayInfo.ManufacturerOUI"),
        format!("{root}.GatewayInfo.ProductClass"),
        format!("{root}.GatewayInfo.SerialNumber"),
    ];
    let list: Vec<SetParameterAttribute> = names
        .into_iter()
        .filter(|n| has(n))
        .filter(|n| notification(n) != Some(2))
        .filter(|n| rule(n) != Some(ActiveNotify::ForceEnabled))
        .map(|name| SetParameterAttribute {
            name,
            notification_change: true,
            notification: 2,
            access_list_change: false,
            access_list: Vec::new(),
        })
        .collect();
    (!list.is_empty()).then_some(Planned {
        origin: Origin::GatewayNotify,
        request: AcsRequest::SetParameterAttributes(SetParameterAttributes {
            parameter_list: list,
        }),
    })
}

/// The data model's active-notification rule of `path`, in the models its root can mean.
fn notify_rule(path: &str) -> Option<ActiveNotify> {
    let reg = crate::datamodel::Registry::builtin().ok()?;
    crate::datamodel::RootModel::candidates(path)
        .iter()
        .find_map(|r| reg.lookup(*r, path))
        .map(|d| d.active_notify())
}

/// Discovery of `s` finished: queue the active notifications of [`gateway_notifications`].
pub fn notifications_after_discovery(s: &mut DeviceSession) {
    let planned = gateway_notifications(
        &s.root,
        |n| s.learnt.get(n).is_some_and(|e| !e.object),
        |n| s.learnt.get(n).and_then(|e| e.notification),
        notify_rule,
    );
    if let Some(p) = planned {
        s.queue.push_back(p);
    }
}

/// The Inform opened `s`: re-read the gateway's table when the Inform says it changed
/// (see [`table_reread`]).
pub fn after_inform(s: &mut DeviceSession) {
    let discovering = s.queue.iter().any(|p| {
        matches!(
            p.origin,
            Origin::DiscoverNames | Origin::DiscoverAllValues | Origin::DiscoverValues { .. }
        )
    });
    if let Some(p) = table_reread(&s.root, &s.inform_values, discovering) {
        s.queue.push_back(p);
    }
}

/// The session of `s` ends with `learnt` (everything it read): record what it says about
/// the association (see [`session_reports`]).
pub async fn after_session(env: &Env<'_>, s: &DeviceSession, learnt: &ParamTree) -> Result<()> {
    let r = session_reports(&s.root, &s.inform_values, learnt);
    if r.table.is_none() && r.claim.is_none() {
        return Ok(());
    }
    if let Some(Claim::Malformed(why)) = &r.claim {
        tracing::info!(device = %s.device_id, "GatewayInfo names no gateway: {why}");
    }
    let (id, now) = (s.device_id.clone(), env.now);
    let table: Option<Vec<(String, String)>> = r.table.map(|t| {
        t.into_iter()
            .filter(|l| l.device.id != id)
            .map(|l| (l.device.id, l.host))
            .collect()
    });
    let claim: Option<Option<String>> = r.claim.map(|c| match c {
        Claim::Gateway(g) if g.id != id => Some(g.id),
        _ => None,
    });
    env.store
        .run(move |st| {
            if let Some(t) = &table {
                st.set_gateway_table(&id, t, now)?;
            }
            if let Some(c) = &claim {
                st.set_gateway_claim(&id, c.as_deref(), now)?;
            }
            Ok(())
        })
        .await
}

/// How ferroacs knows a device sits behind a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSource {
    /// The gateway's ManageableDevice table lists the device and the device names the
    /// gateway in its GatewayInfo.
    Confirmed,
    /// Only the gateway's ManageableDevice table lists the device.
    GatewayTable,
    /// Only the device's GatewayInfo names the gateway (not confirmed by the gateway).
    DeviceGatewayInfo,
}

impl LinkSource {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkSource::Confirmed => "confirmed",
            LinkSource::GatewayTable => "gateway_table",
            LinkSource::DeviceGatewayInfo => "device_gateway_info",
        }
    }

    /// What the console shows.
    pub fn label(self) -> &'static str {
        match self {
            LinkSource::Confirmed => "confirmed by both",
            LinkSource::GatewayTable => "listed by the gateway",
            LinkSource::DeviceGatewayInfo => "reported by the device (not confirmed)",
        }
    }
}

/// The other side of one (gateway, LAN device) pair, seen from one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The gateway's id (seen from the LAN device) or the LAN device's (seen from the
    /// gateway).
    pub id: String,
    pub source: LinkSource,
    /// When the gateway's table last listed the device / the device last named the gateway.
    pub listed_at: Option<i64>,
    pub claimed_at: Option<i64>,
    pub last_seen: i64,
    /// Whether `id` is a device ferroacs manages.
    pub managed: bool,
    /// The Host of the gateway's ManageableDevice row.
    pub host: String,
}

/// A device's place in the association.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Association {
    /// The gateway the device is behind: the one it names itself if any, else the one
    /// whose table lists it most recently.
    pub gateway: Option<Link>,
    /// The devices behind this device (as a gateway), by id.
    pub behind: Vec<Link>,
}

/// The association of `id` from its stored pairs and the ids ferroacs manages.
pub fn association_of(
    id: &str,
    rows: &[crate::store::gateways::GatewayLinkRow],
    managed: &[String],
) -> Association {
    let link = |r: &crate::store::gateways::GatewayLinkRow, other: &str| {
        let source = match (r.listed_at, r.claimed_at) {
            (Some(_), Some(_)) => LinkSource::Confirmed,
            (Some(_), None) => LinkSource::GatewayTable,
            _ => LinkSource::DeviceGatewayInfo,
        };
        Link {
            id: other.to_string(),
            source,
            listed_at: r.listed_at,
            claimed_at: r.claimed_at,
            last_seen: r.listed_at.max(r.claimed_at).unwrap_or(0),
            managed: managed.iter().any(|m| m == other),
            host: r.host.clone(),
        }
    };
    let gateway = rows
        .iter()
        .filter(|r| r.device_id == id)
        .map(|r| link(r, &r.gateway_id))
        .max_by_key(|l| (l.claimed_at.is_some(), l.last_seen));
    let behind = rows
        .iter()
        .filter(|r| r.gateway_id == id)
        .map(|r| link(r, &r.device_id))
        .collect();
    Association { gateway, behind }
}

/// The association of `id` as stored.
pub async fn association(store: &crate::store::Store, id: &str) -> Result<Association> {
    let i = id.to_string();
    let (rows, managed) = store.run(move |s| s.gateway_links_of(&i)).await?;
    Ok(association_of(id, &rows, &managed))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offer() -> StunOffer {
        StunOffer {
            server_address: "acs.example.net".into(),
            server_port: 3478,
            min_keepalive_secs: 30,
            max_keepalive_secs: 60,
        }
    }

    fn names(p: &Planned) -> Vec<(String, String)> {
        match &p.request {
            AcsRequest::SetParameterValues(s) => s
                .parameter_list
                .iter()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect(),
            _ => panic!("not an SPV"),
        }
    }

    #[test]
    fn devices_with_stun_get_every_setting_they_have() {
        let all = |_: &str| true;
        let p = stun_settings(
            "InternetGatewayDevice",
            all,
            true,
            false,
            &offer(),
            ("dev".into(), "pw".into()),
            BooleanLiteral::Word,
        )
        .unwrap();
        let ms = "InternetGatewayDevice.ManagementServer.";
        let got = names(&p);
        for (leaf, v) in [
            ("STUNEnable", "true"),
            ("STUNServerAddress", "acs.example.net"),
            ("STUNServerPort", "3478"),
            ("STUNUsername", "dev"),
            ("STUNPassword", "pw"),
            ("STUNMinimumKeepAlivePeriod", "30"),
            ("STUNMaximumKeepAlivePeriod", "60"),
        ] {
            assert!(
                got.contains(&(format!("{ms}{leaf}"), v.to_string())),
                "{leaf} missing from {got:?}"
            );
        }
        assert_eq!(
            p.origin,
            Origin::StunSettings {
                username: Some("dev".into()),
                password: Some("pw".into())
            }
        );
    }

    #[test]
    fn devices_without_stun_or_already_configured_get_nothing() {
        let none = |_: &str| false;
        assert!(stun_settings(
            "Device",
            none,
            true,
            false,
            &offer(),
            ("d".into(), "p".into()),
            BooleanLiteral::Word
        )
        .is_none());
        let all = |_: &str| true;
        // Credentials given before: only a BOOTSTRAP (factory reset) sets them again.
        assert!(stun_settings(
            "Device",
            all,
            false,
            true,
            &offer(),
            ("d".into(), "p".into()),
            BooleanLiteral::Word
        )
        .is_none());
        assert!(stun_settings(
            "Device",
            all,
            true,
            true,
            &offer(),
            ("d".into(), "p".into()),
            BooleanLiteral::Word
        )
        .is_some());
        assert!(stun_settings(
            "Device",
            all,
            false,
            false,
            &offer(),
            ("d".into(), "p".into()),
            BooleanLiteral::Word
        )
        .is_some());
    }

    #[test]
    fn ferroacs_joins_the_allowed_jids_of_xmpp_devices_once() {
        let name = "Device.ManagementServer.ConnReqAllowedJabberIDs";
        let all = |_: &str| true;
        let own = "acs@xmpp.example.net";
        let p = xmpp_allowed_jids(
            "Device",
            all,
            true,
            Some("ops@xmpp.example.net, other@x.net/r"),
            own,
        )
        .unwrap();
        assert_eq!(p.origin, Origin::XmppAllowedJids);
        assert_eq!(
            names(&p),
            vec![(
                name.to_string(),
                "ops@xmpp.example.net,other@x.net/r,acs@xmpp.example.net".to_string()
            )]
        );
        let p = xmpp_allowed_jids("Device", all, true, Some(""), own).unwrap();
        assert_eq!(names(&p)[0].1, own);
        // Already there (any case), no XMPP connection objects, not writable, list full.
        assert!(
            xmpp_allowed_jids("Device", all, true, Some("ACS@xmpp.example.net"), own).is_none()
        );
        assert!(xmpp_allowed_jids("Device", all, false, None, own).is_none());
        assert!(xmpp_allowed_jids("Device", |_: &str| false, true, None, own).is_none());
        let full = vec!["a@b"; MAX_ALLOWED_JIDS].join(",");
        assert!(xmpp_allowed_jids("Device", all, true, Some(&full), own).is_none());
    }

    #[test]
    fn partial_support_sets_what_exists_and_credentials_only_in_pairs() {
        let some = |n: &str| n.ends_with("STUNEnable") || n.ends_with("STUNUsername");
        let mut o = offer();
        o.server_address.clear();
        let p = stun_settings(
            "Device",
            some,
            true,
            false,
            &o,
            ("d".into(), "p".into()),
            BooleanLiteral::Word,
        )
        .unwrap();
        assert_eq!(
            names(&p),
            vec![(
                "Device.ManagementServer.STUNEnable".to_string(),
                "true".to_string()
            )]
        );
        assert_eq!(
            p.origin,
            Origin::StunSettings {
                username: None,
                password: None
            }
        );
    }

    #[test]
    fn stun_enable_goes_out_in_the_form_asked_for() {
        let only_enable = |n: &str| n.ends_with("STUNEnable");
        let p = stun_settings(
            "Device",
            only_enable,
            true,
            false,
            &offer(),
            ("d".into(), "p".into()),
            BooleanLiteral::Digit,
        )
        .unwrap();
        assert_eq!(
            names(&p),
            vec![(
                "Device.ManagementServer.STUNEnable".to_string(),
                "1".to_string()
            )]
        );
    }

    // ---- TR-111 Part 1 ----

    /// Parameter name → value of a vendored dump (GenieACS CSV: the first column is the
    /// name, the value follows the Object and Writable columns, or sits in column 6 of the
    /// timestamped export).
    fn dump(file: &str) -> BTreeMap<String, String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/samples")
            .join(file);
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines = text.lines();
        let header = split_csv(lines.next().unwrap());
        let col = header.iter().position(|h| h == "Value").unwrap();
        lines
            .map(split_csv)
            .filter(|f| f.len() > col)
            .map(|f| (f[0].clone(), f[col].clone()))
            .collect()
    }

    fn split_csv(line: &str) -> Vec<String> {
        let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => out.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        out.push(cur);
        out
    }

    fn pairs(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn a_gateway_dump_lists_its_lan_devices_with_the_ids_ferroacs_gives_them() {
        let values = dump("data_model_202BC1-BM632w-TR111GW0001.csv");
        let listed = manageable_devices("InternetGatewayDevice", &values);
        let ids: Vec<&str> = listed.iter().map(|l| l.device.id.as_str()).collect();
        // The lower-case OUI of the second row is read as TR-069 writes OUIs.
        assert_eq!(
            ids,
            vec![
                "0004F2-VVX411-0004F2A1B2C3",
                "00179A-IP%2DSTB-STB%2D0012345"
            ]
        );
        assert_eq!(
            listed[0].host,
            "InternetGatewayDevice.LANDevice.1.Hosts.Host.1"
        );
        // The dump holds the whole table (NumberOfEntries = rows): an Inform carrying it
        // needs no second read.
        let all = pairs(&values);
        let r = session_reports("InternetGatewayDevice", &all, &ParamTree::new());
        assert_eq!(r.table.unwrap().len(), 2);
        assert!(table_reread("InternetGatewayDevice", &all, false).is_none());
        // A gateway is behind no gateway: the dump has no GatewayInfo.
        assert_eq!(r.claim, None);
    }

    #[test]
    fn a_dump_with_an_empty_table_and_empty_gateway_info_says_no_gateway_and_no_devices() {
        let values = dump("device-1C61B4-XX230v-22275A7000395-2023-04-27T154050686Z.csv");
        assert!(manageable_devices("Device", &values).is_empty());
        let r = session_reports("Device", &pairs(&values), &ParamTree::new());
        assert_eq!(r.table, Some(vec![]));
        assert_eq!(r.claim, Some(Claim::None));
        // A dump with neither says nothing.
        let igd = dump("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
        assert_eq!(
            session_reports("InternetGatewayDevice", &pairs(&igd), &ParamTree::new()),
            Reports::default()
        );
    }

    fn claim_of(oui: &str, pc: &str, serial: &str) -> Option<Claim> {
        let mut v = BTreeMap::new();
        v.insert("Device.GatewayInfo.ManufacturerOUI".to_string(), oui.into());
        v.insert("Device.GatewayInfo.ProductClass".to_string(), pc.into());
        v.insert("Device.GatewayInfo.SerialNumber".to_string(), serial.into());
        gateway_claim("Device", &v)
    }

    #[test]
    fn gateway_info_names_the_gateway_by_its_device_id() {
        let Some(Claim::Gateway(g)) = claim_of("202bc1", "BM632w", "TR111GW0001") else {
            panic!("no gateway");
        };
        assert_eq!(g.id, "202BC1-BM632w-TR111GW0001");
        assert_eq!(
            g.id,
            crate::cwmp::device_id("202BC1", "BM632w", "TR111GW0001")
        );
        // Without a product class the id has two parts, as for an Inform.
        let Some(Claim::Gateway(g)) = claim_of(" 202BC1 ", "", "X-1") else {
            panic!("no gateway");
        };
        assert_eq!(g.id, "202BC1-X%2D1");
        assert_eq!(claim_of("", "", ""), Some(Claim::None));
    }

    #[test]
    fn malformed_values_name_no_device() {
        for (oui, pc, serial) in [
            ("20-2B-C1", "BM632w", "S1"),
            ("ZZZZZZ", "BM632w", "S1"),
            ("202BC1", "BM632w", ""),
            ("202BC1", "BM632w", "a\u{0}b"),
            ("202BC1", &"P".repeat(65), "S1"),
            ("202BC1", "BM632w", &"9".repeat(65)),
            ("", "BM632w", "S1"),
            ("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", "x", "S1"),
        ] {
            assert!(
                matches!(claim_of(oui, pc, serial), Some(Claim::Malformed(_))),
                "{oui:?} {pc:?} {serial:?}"
            );
        }
        // A malformed row of a table is left out, the others kept.
        let mut v = dump("data_model_202BC1-BM632w-TR111GW0001.csv");
        v.insert(
            "InternetGatewayDevice.ManagementServer.ManageableDevice.1.ManufacturerOUI".into(),
            "<script>".into(),
        );
        let listed = manageable_devices("InternetGatewayDevice", &v);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].device.serial_number, "STB-0012345");
    }

    #[test]
    fn a_changed_count_in_an_inform_reads_the_table_again_unless_discovery_does() {
        let inform = vec![(
            "InternetGatewayDevice.ManagementServer.ManageableDeviceNumberOfEntries".to_string(),
            "1".to_string(),
        )];
        let p = table_reread("InternetGatewayDevice", &inform, false).unwrap();
        assert_eq!(p.origin, Origin::GatewayTable);
        match &p.request {
            AcsRequest::GetParameterValues(g) => assert_eq!(
                g.parameter_names,
                vec![
                    "InternetGatewayDevice.ManagementServer.ManageableDeviceNumberOfEntries",
                    "InternetGatewayDevice.ManagementServer.ManageableDevice."
                ]
            ),
            _ => panic!("not a GPV"),
        }
        assert!(table_reread("InternetGatewayDevice", &inform, true).is_none());
        assert!(table_reread("InternetGatewayDevice", &[], false).is_none());
        // The Inform alone does not count as the table: only the read does.
        let r = session_reports("InternetGatewayDevice", &inform, &ParamTree::new());
        assert_eq!(r.table, None);
        // The read answered with one row: the table is that row.
        let mut learnt = ParamTree::new();
        let ms = "InternetGatewayDevice.ManagementServer.";
        learnt.set_value(
            &format!("{ms}ManageableDeviceNumberOfEntries"),
            "1",
            "xsd:unsignedInt",
            1,
        );
        for (leaf, v) in [
            ("ManufacturerOUI", "0004F2"),
            ("ProductClass", "VVX411"),
            ("SerialNumber", "0004F2A1B2C3"),
        ] {
            learnt.set_value(
                &format!("{ms}ManageableDevice.1.{leaf}"),
                v,
                "xsd:string",
                1,
            );
        }
        let r = session_reports("InternetGatewayDevice", &inform, &learnt);
        let t = r.table.unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].device.id, "0004F2-VVX411-0004F2A1B2C3");
    }

    fn spa_names(p: &Planned) -> Vec<String> {
        match &p.request {
            AcsRequest::SetParameterAttributes(s) => {
                assert!(s.parameter_list.iter().all(|a| a.notification_change
                    && a.notification == 2
                    && !a.access_list_change));
                s.parameter_list.iter().map(|a| a.name.clone()).collect()
            }
            _ => panic!("not an SPA"),
        }
    }

    #[test]
    fn active_notification_is_asked_for_what_the_device_has() {
        let gw = dump("data_model_202BC1-BM632w-TR111GW0001.csv");
        let p = gateway_notifications(
            "InternetGatewayDevice",
            |n| gw.contains_key(n),
            |_| None,
            notify_rule,
        )
        .unwrap();
        assert_eq!(p.origin, Origin::GatewayNotify);
        assert_eq!(
            spa_names(&p),
            vec!["InternetGatewayDevice.ManagementServer.ManageableDeviceNumberOfEntries"]
        );
        // A Device:2 LAN device: its GatewayInfo (and its own empty table's count).
        let lan = dump("device-1C61B4-XX230v-22275A7000395-2023-04-27T154050686Z.csv");
        let p = gateway_notifications("Device", |n| lan.contains_key(n), |_| None, notify_rule)
            .unwrap();
        assert_eq!(spa_names(&p).len(), 4);
        // Already active, or always active by the data model: nothing to ask.
        assert!(
            gateway_notifications("Device", |n| lan.contains_key(n), |_| Some(2), notify_rule)
                .is_none()
        );
        assert!(gateway_notifications(
            "Device",
            |n| lan.contains_key(n),
            |_| None,
            |_| Some(ActiveNotify::ForceEnabled)
        )
        .is_none());
        // A device without any of them.
        let plain = dump("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
        assert!(gateway_notifications(
            "InternetGatewayDevice",
            |n| plain.contains_key(n),
            |_| None,
            notify_rule
        )
        .is_none());
    }

    #[test]
    fn the_association_says_how_each_side_is_known() {
        use crate::store::gateways::GatewayLinkRow;
        let row = |g: &str, d: &str, listed: Option<i64>, claimed: Option<i64>| GatewayLinkRow {
            gateway_id: g.into(),
            device_id: d.into(),
            listed_at: listed,
            claimed_at: claimed,
            host: String::new(),
        };
        let rows = vec![
            row("GW", "PHONE", Some(10), Some(20)),
            row("GW", "STB", Some(30), None),
            row("OTHER", "PHONE", Some(40), None),
            row("GW2", "LIAR", None, Some(5)),
        ];
        let managed = vec!["GW".to_string(), "PHONE".to_string()];
        let a = association_of("GW", &rows, &managed);
        assert_eq!(a.gateway, None);
        let behind: Vec<(&str, LinkSource, bool)> = a
            .behind
            .iter()
            .map(|l| (l.id.as_str(), l.source, l.managed))
            .collect();
        assert_eq!(
            behind,
            vec![
                ("PHONE", LinkSource::Confirmed, true),
                ("STB", LinkSource::GatewayTable, false)
            ]
        );
        // The device's own word counts before a table that lists it more recently.
        let p = association_of("PHONE", &rows, &managed);
        let g = p.gateway.unwrap();
        assert_eq!(
            (g.id.as_str(), g.source, g.last_seen),
            ("GW", LinkSource::Confirmed, 20)
        );
        let l = association_of("LIAR", &rows, &managed).gateway.unwrap();
        assert_eq!(l.source, LinkSource::DeviceGatewayInfo);
        assert!(!l.managed);
    }
}
