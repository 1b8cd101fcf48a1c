//! Presets: named desired states. A preset says which devices it is for (a filter), what
//! they should have (parameter values, VoIP line settings, periodic-inform settings, a
//! firmware version), how much it counts (priority) and at which events it applies
//! (bootstrap, boot, periodic, value change; always when the preset itself changed).
//!
//! Conflicts: when several matching presets set the same parameter, the highest priority
//! wins; on equal priority the preset whose name sorts first wins. Deterministic, and the
//! API shows the winner per parameter.
//!
//! # Filters
//!
//! A preset's filter is a device query, the language of `GET /api/v1/devices?q=` (see
//! `domain::devices`): `FIELD OP value` combined with `AND`, `OR`, `NOT` and parentheses;
//! the empty filter matches every device. Example:
//! `product_class = EG8145V5 AND (tag = voip OR software_version LIKE "V5R020*")`.
//! In a session the filter is evaluated against the device in memory
//! ([`crate::domain::devices::matches`]), so any known parameter can be named
//! (`DeviceInfo.UpTime`, root-relative or full), not only the searchable ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::datamodel::{self, Registry, RootModel};
use crate::domain::voip::Account;
use crate::error::{Error, Result};
use crate::store::presets::PresetState;

/// A preset filter: a device query as `GET /api/v1/devices?q=` takes (see
/// `domain::devices`), stored as text and parsed when presets are evaluated.
pub use crate::store::search::Filter;

/// Shown instead of a secret value (a parameter [`crate::domain::params::is_secret`] says is
/// one) wherever a preset or what it did is shown; given back in a preset to save, it keeps
/// the value stored for that parameter.
pub use crate::domain::tasks::MASK;

/// A value as it may be kept outside the preset itself (what presets did on a device) or
/// shown: a secret one is [`MASK`] (empty stays empty, so "unset" stays visible).
pub fn kept(name: &str, value: &str) -> String {
    if !value.is_empty() && crate::domain::params::is_secret(name) {
        MASK.to_string()
    } else {
        value.to_string()
    }
}

/// A stored spec with its secret values opened (to send to devices).
pub fn open_spec(k: &crate::secrets::Keyring, stored: &str) -> Result<PresetSpec> {
    let clear = crate::domain::tasks::open_json(k, crate::secrets::purpose::PRESET_SPEC, stored)?;
    Ok(serde_json::from_str(&clear)?)
}

/// A stored spec as anyone may see it: secret values [`MASK`]ed.
pub fn masked_spec(stored: &str) -> PresetSpec {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(stored) else {
        return PresetSpec::default();
    };
    crate::domain::tasks::redact_secrets(&mut v);
    serde_json::from_value(v).unwrap_or_default()
}

/// The events a preset can apply at.
pub const EVENTS: &[&str] = &["bootstrap", "boot", "periodic", "value_change"];

/// The preset event an Inform event code stands for.
pub fn event_of(code: &str) -> Option<&'static str> {
    match code {
        "0 BOOTSTRAP" => Some("bootstrap"),
        "1 BOOT" => Some("boot"),
        "2 PERIODIC" => Some("periodic"),
        "4 VALUE CHANGE" => Some("value_change"),
        _ => None,
    }
}

/// One parameter value of a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetValue {
    pub name: String,
    pub value: String,
    /// `xsd:...`; by default the data model's type, else the type the device reports.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub xsd_type: Option<String>,
}

/// Line settings a preset gives line N of matching devices that have no account of their
/// own on that line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetLine {
    pub line: u32,
    pub account: Account,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicInform {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u32>,
}

/// The firmware a device should run: when its SoftwareVersion differs, the file is sent
/// with a Download (once per preset revision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    pub version: String,
    pub file_id: String,
}

/// What a preset wants, stored as JSON in the preset row.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetSpec {
    #[serde(default)]
    pub values: Vec<PresetValue>,
    #[serde(default)]
    pub lines: Vec<PresetLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic_inform: Option<PeriodicInform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
}

/// A preset as the API and the CLI give it: one flat object; unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct PresetInput {
    pub name: String,
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(flatten)]
    pub spec: PresetSpec,
}

impl TryFrom<serde_json::Value> for PresetInput {
    type Error = String;

    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        let serde_json::Value::Object(mut map) = v else {
            return Err("expected a JSON object describing the preset".into());
        };
        let mut take = |k: &str| map.remove(k).filter(|v| !v.is_null());
        let name = match take("name") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err("name must be a string".into()),
            None => String::new(),
        };
        let filter = match take("filter") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err("filter must be a string".into()),
            None => String::new(),
        };
        let priority = match take("priority") {
            Some(v) => i32::deserialize(v).map_err(|e| format!("priority: {e}"))?,
            None => 0,
        };
        let events = match take("events") {
            Some(v) => Vec::<String>::deserialize(v).map_err(|e| format!("events: {e}"))?,
            None => Vec::new(),
        };
        let spec =
            PresetSpec::deserialize(serde_json::Value::Object(map)).map_err(|e| e.to_string())?;
        Ok(PresetInput {
            name,
            filter,
            priority,
            events,
            spec,
        })
    }
}

/// A preset loaded for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub name: String,
    pub filter: Filter,
    pub priority: i32,
    pub events: Vec<String>,
    pub spec: PresetSpec,
    pub revision: i64,
}

pub fn split_events(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect()
}

/// Check a preset before it is stored; errors name the offending input (for values: the
/// parameter and the type it takes).
pub fn validate(input: &PresetInput) -> Result<()> {
    let name = input.name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Error::invalid(
            "name",
            "1 to 64 characters among A-Z a-z 0-9 - _ .",
        ));
    }
    for e in &input.events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(Error::invalid(
                "events",
                format!("unknown event {e:?}; use {}", EVENTS.join(", ")),
            ));
        }
    }
    parse_filter(&input.filter)?;
    let spec = &input.spec;
    if spec.values.is_empty()
        && spec.lines.is_empty()
        && spec.periodic_inform.is_none()
        && spec.firmware.is_none()
    {
        return Err(Error::invalid(
            "values",
            "a preset needs values, lines, periodic_inform or firmware",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for v in &spec.values {
        if !seen.insert(v.name.as_str()) {
            return Err(Error::invalid(
                v.name.clone(),
                "appears more than once in values",
            ));
        }
        validate_value(&v.name, &v.value, v.xsd_type.as_deref())?;
    }
    for l in &spec.lines {
        if l.line == 0 || l.line > crate::domain::voip::MAX_LINE as u32 {
            return Err(Error::invalid(
                "lines",
                format!("line must be 1 to {}", crate::domain::voip::MAX_LINE),
            ));
        }
        l.account.check_fields(None)?;
    }
    if let Some(p) = &spec.periodic_inform {
        if p.interval == Some(0) {
            return Err(Error::invalid(
                "periodic_inform.interval",
                "0 is out of range; it takes an unsignedInt (whole number) of at least 1 (seconds)",
            ));
        }
    }
    if let Some(f) = &spec.firmware {
        if f.version.trim().is_empty() || f.file_id.trim().is_empty() {
            return Err(Error::invalid(
                "firmware",
                "give both version and file_id (a stored firmware file)",
            ));
        }
    }
    Ok(())
}

/// The data model definition of a parameter path, trying the models its root can mean.
pub fn definition(path: &str) -> Option<&'static datamodel::ParamDef> {
    let reg = Registry::builtin().ok()?;
    RootModel::candidates(path)
        .iter()
        .find_map(|r| reg.lookup(*r, path))
}

/// Check one value to set, for any device the preset may match
/// (`datamodel::check_set_value`, with the models the path may belong to).
pub fn validate_value(name: &str, value: &str, xsd_type: Option<&str>) -> Result<()> {
    datamodel::check_set_value(
        Registry::builtin().ok(),
        RootModel::candidates(name),
        name,
        value,
        xsd_type,
        datamodel::Reported::default(),
    )
    .map_err(|e| Error::invalid(e.name, e.message))
}

/// The parameter values a device should have according to one preset (lines excluded).
pub fn preset_values(p: &Preset, root: &str) -> Vec<PresetValue> {
    let mut out = p.spec.values.clone();
    if let Some(pi) = &p.spec.periodic_inform {
        if let Some(e) = pi.enable {
            out.push(PresetValue {
                name: format!("{root}.ManagementServer.PeriodicInformEnable"),
                value: e.to_string(),
                xsd_type: Some("xsd:boolean".into()),
            });
        }
        if let Some(i) = pi.interval {
            out.push(PresetValue {
                name: format!("{root}.ManagementServer.PeriodicInformInterval"),
                value: i.to_string(),
                xsd_type: Some("xsd:unsignedInt".into()),
            });
        }
    }
    // Values for the other root never apply.
    out.retain(|v| v.name.starts_with(&format!("{root}.")));
    out
}

/// A value a device should have, and which preset wants it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub value: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub xsd_type: Option<String>,
    pub preset: String,
    pub revision: i64,
    pub priority: i32,
    /// Presets that wanted another value and lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

/// Order presets by precedence: priority descending, then name ascending.
pub fn by_precedence(presets: &mut [&Preset]) {
    presets.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));
}

/// Resolve the values several presets want: the first in precedence order wins.
pub fn resolve(presets: &[&Preset], root: &str) -> BTreeMap<String, Desired> {
    let mut ordered: Vec<&Preset> = presets.to_vec();
    by_precedence(&mut ordered);
    let mut out: BTreeMap<String, Desired> = BTreeMap::new();
    for p in ordered {
        for v in preset_values(p, root) {
            match out.get_mut(&v.name) {
                Some(d) => {
                    if d.value != v.value {
                        d.overrides.push(p.name.clone());
                    }
                }
                None => {
                    out.insert(
                        v.name.clone(),
                        Desired {
                            value: v.value,
                            xsd_type: v.xsd_type,
                            preset: p.name.clone(),
                            revision: p.revision,
                            priority: p.priority,
                            overrides: Vec::new(),
                        },
                    );
                }
            }
        }
    }
    out
}

/// Whether a known value equals a desired one (booleans compare as booleans, numbers as
/// numbers).
pub fn same_value(known: &str, desired: &str, xsd_type: &str) -> bool {
    if known == desired {
        return true;
    }
    let b = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    };
    if xsd_type.ends_with("boolean") {
        return b(known).is_some() && b(known) == b(desired);
    }
    if xsd_type.ends_with("int")
        || xsd_type.ends_with("Int")
        || xsd_type.ends_with("long")
        || xsd_type.ends_with("Long")
    {
        if let (Ok(x), Ok(y)) = (known.trim().parse::<i128>(), desired.trim().parse::<i128>()) {
            return x == y;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------
// Filters

/// Parse a preset filter; errors name the `filter` field. The empty filter matches every
/// device.
pub fn parse_filter(s: &str) -> Result<Filter> {
    let f = crate::domain::devices::parse_query(s).map_err(|e| match e {
        Error::Invalid { message, .. } => Error::invalid("filter", message),
        other => other,
    })?;
    if crate::domain::devices::uses_gateway(&f) {
        return Err(Error::invalid(
            "filter",
            "a preset filter cannot use `gateway` (the device-gateway association is known to \
             device searches only); tag the devices behind the gateway instead",
        ));
    }
    Ok(f)
}

/// The devices a preset change may concern, as a filter the store can run: those its old
/// or new filter may match (a superset; `Filter::All` when the filters cannot narrow it).
pub fn affected(filters: &[Option<&str>]) -> Filter {
    let mut parts = Vec::new();
    for f in filters.iter().flatten() {
        match parse_filter(f) {
            Ok(f) => parts.push(crate::domain::devices::sql_superset(&f)),
            Err(_) => return Filter::All,
        }
    }
    if parts.is_empty() || parts.contains(&Filter::All) {
        Filter::All
    } else if parts.len() == 1 {
        parts.remove(0)
    } else {
        Filter::Or(parts)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::params::ParamTree;

    fn matches(filter: &str, tags: &[String], tree: &ParamTree) -> bool {
        let mut columns = BTreeMap::new();
        columns.insert("product_class".to_string(), "EG8145V5".to_string());
        columns.insert("software_version".to_string(), "V5R020C00S280".to_string());
        columns.insert("oui".to_string(), "00259E".to_string());
        columns.insert("serial_number".to_string(), "4857ABCD".to_string());
        columns.insert("last_inform".to_string(), "1000".to_string());
        let facts = crate::domain::devices::DeviceFacts {
            columns: &columns,
            tags,
            tree,
        };
        crate::domain::devices::matches(&parse_filter(filter).unwrap(), &facts)
    }

    #[test]
    fn preset_filters_refuse_gateway_conditions() {
        assert!(crate::domain::devices::parse_query("gateway = GW1").is_ok());
        let e = parse_filter("tag = lab OR gateway = GW1").unwrap_err();
        assert!(e.to_string().contains("gateway"), "{e}");
    }

    #[test]
    fn filters_are_device_queries_evaluated_in_memory() {
        let mut tree = ParamTree::new();
        tree.set_value(
            "InternetGatewayDevice.DeviceInfo.UpTime",
            "120",
            "xsd:unsignedInt",
            1,
        );
        let tags = vec!["voip".to_string()];
        let yes = [
            "",
            "product_class = \"EG8145V5\"",
            "product_class = EG8145V5 AND tag = voip",
            "tag = \"other\" OR software_version LIKE \"V5R020*\"",
            "NOT (tag = \"other\")",
            "tag != \"other\"",
            "serial LIKE '4857*'",
            "4857ABCD",
            "last_inform >= 1000",
            "InternetGatewayDevice.DeviceInfo.UpTime > 100",
            "DeviceInfo.UpTime = \"120\"",
            "Device.DeviceInfo.UpTime = 120",
            "InternetGatewayDevice.DeviceInfo.Missing != \"x\"",
        ];
        for s in yes {
            assert!(matches(s, &tags, &tree), "{s}");
        }
        let no = [
            "product_class = \"ATA\"",
            "tag = \"voip\" AND oui = \"000000\"",
            "tag != voip",
            "InternetGatewayDevice.DeviceInfo.UpTime < 100",
            "InternetGatewayDevice.DeviceInfo.Missing = \"x\"",
            "last_boot > 0",
            "model LIKE \"x*\"",
        ];
        for s in no {
            assert!(!matches(s, &tags, &tree), "{s}");
        }
        for bad in ["colour = \"red\"", "oui =", "oui \"x\"", "(oui = \"x\""] {
            let e = parse_filter(bad).unwrap_err().to_string();
            assert!(e.starts_with("filter:"), "{bad}: {e}");
        }
        assert!(crate::domain::devices::uses_tags(
            &parse_filter("oui = x OR tag = \"a\"").unwrap()
        ));
    }

    fn preset(name: &str, priority: i32, values: &[(&str, &str)]) -> Preset {
        Preset {
            name: name.into(),
            filter: Filter::All,
            priority,
            events: vec![],
            spec: PresetSpec {
                values: values
                    .iter()
                    .map(|(n, v)| PresetValue {
                        name: n.to_string(),
                        value: v.to_string(),
                        xsd_type: None,
                    })
                    .collect(),
                ..PresetSpec::default()
            },
            revision: 7,
        }
    }

    #[test]
    fn priority_then_name_decides() {
        let a = preset("a", 1, &[("Device.X.A", "1"), ("Device.X.B", "a")]);
        let b = preset("b", 5, &[("Device.X.A", "2")]);
        let c = preset("c", 1, &[("Device.X.B", "c")]);
        let r = resolve(&[&c, &a, &b], "Device");
        assert_eq!(r["Device.X.A"].value, "2");
        assert_eq!(r["Device.X.A"].preset, "b");
        assert_eq!(r["Device.X.A"].overrides, vec!["a".to_string()]);
        assert_eq!(r["Device.X.B"].preset, "a");
        // Same answer whatever the input order.
        assert_eq!(resolve(&[&b, &c, &a], "Device"), r);
    }

    #[test]
    fn values_are_checked_against_the_model() {
        let e = validate_value(
            "InternetGatewayDevice.ManagementServer.PeriodicInformInterval",
            "soon",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PeriodicInformInterval") && e.contains("unsignedInt"),
            "{e}"
        );
        let e = validate_value("InternetGatewayDevice.DeviceInfo.SerialNumber", "x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("SerialNumber") && e.contains("read-only"), "{e}");
        let e = validate_value(
            "Device.ManagementServer.PeriodicInformEnable",
            "true",
            Some("xsd:string"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("xsd:boolean"), "{e}");
        assert!(
            validate_value("Device.ManagementServer.PeriodicInformInterval", "60", None).is_ok()
        );
        assert!(validate_value("InternetGatewayDevice.X_HW_Foo.Bar", "anything", None).is_ok());
        assert!(same_value("1", "true", "xsd:boolean"));
        assert!(same_value("060", "60", "xsd:unsignedInt"));
        assert!(!same_value("a", "b", "xsd:string"));
    }

    #[test]
    fn secret_values_are_sealed_masked_and_opened() {
        let k = crate::secrets::Keyring::from_hex(&[crate::secrets::generate_key()], "t").unwrap();
        let sip =
            "InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.1.Line.1.SIP.AuthPassword";
        let wpa = "Device.WiFi.AccessPoint.1.Security.KeyPassphrase";
        let spec = serde_json::json!({"values": [
            {"name": sip, "value": "sip-secret"},
            {"name": wpa, "value": "wpa-secret"},
            {"name": "Device.ManagementServer.PeriodicInformInterval", "value": "60"},
            {"name": "Device.X.Password", "value": ""},
        ]})
        .to_string();
        let stored =
            crate::domain::tasks::seal_json(&k, crate::secrets::purpose::PRESET_SPEC, &spec)
                .unwrap();
        assert!(
            !stored.contains("secret") && stored.contains("\"60\""),
            "{stored}"
        );
        let shown = masked_spec(&stored);
        let values: Vec<&str> = shown.values.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(values, [MASK, MASK, "60", ""]);
        let open = open_spec(&k, &stored).unwrap();
        assert_eq!(open.values[0].value, "sip-secret");
        assert_eq!(open.values[1].value, "wpa-secret");
        // Another purpose does not open it.
        assert!(crate::domain::tasks::open_args(&k, &stored).is_err());
        // What presets did keeps secrets masked.
        assert_eq!(kept(sip, "sip-secret"), MASK);
        assert_eq!(kept(sip, ""), "");
        assert_eq!(
            kept("Device.ManagementServer.PeriodicInformInterval", "60"),
            "60"
        );
        let mut st = DeviceState::default();
        for (name, value) in [(sip, "sip-secret"), ("Device.A", "1")] {
            st.applied.insert(
                name.into(),
                Applied {
                    preset: "p".into(),
                    revision: 1,
                    value: value.into(),
                    at: 1,
                },
            );
        }
        assert!(st.mask());
        assert!(!st.mask());
        assert_eq!(st.applied[sip].value, MASK);
        assert_eq!(st.applied["Device.A"].value, "1");
    }

    #[test]
    fn input_json_is_flat_and_strict() {
        let i: PresetInput = serde_json::from_str(
            r#"{"name":"p","events":["boot"],"values":[{"name":"Device.A","value":"1"}],"periodic_inform":{"interval":60}}"#,
        )
        .unwrap();
        assert_eq!(i.spec.values.len(), 1);
        assert!(validate(&i).is_ok());
        assert!(serde_json::from_str::<PresetInput>(r#"{"name":"p","colour":1}"#).is_err());
        let mut bad = i.clone();
        bad.events = vec!["sometimes".into()];
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("events:"));
    }
}

// ---------------------------------------------------------------------------------------
// Operations for the API and the CLI

/// A preset as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresetView {
    pub name: String,
    pub filter: String,
    pub priority: i32,
    pub events: Vec<String>,
    #[serde(flatten)]
    pub spec: PresetSpec,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl PresetView {
    pub fn from_row(r: &crate::store::presets::PresetRow) -> PresetView {
        PresetView {
            name: r.name.clone(),
            filter: r.filter.clone(),
            priority: r.priority,
            events: split_events(&r.events),
            spec: masked_spec(&r.spec),
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// Create or replace a preset (by name) after checking it. Returns whether it was created.
/// Secret values are sealed before they are stored; a secret value given as [`MASK`] keeps
/// the one stored for that parameter.
pub async fn put(
    store: &crate::store::Store,
    mut input: PresetInput,
    now: i64,
) -> Result<(PresetView, bool)> {
    let masked: Vec<usize> = input
        .spec
        .values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.value == MASK && crate::domain::params::is_secret(&v.name))
        .map(|(i, _)| i)
        .collect();
    if !masked.is_empty() {
        let n = input.name.trim().to_string();
        let stored = store.run(move |st| st.get_preset(&n)).await?;
        let stored = match stored {
            Some(row) => open_spec(&store.keyring(), &row.spec)?,
            None => PresetSpec::default(),
        };
        for i in masked {
            let v = &mut input.spec.values[i];
            let old = stored
                .values
                .iter()
                .find(|o| o.name == v.name)
                .ok_or_else(|| {
                    Error::invalid(
                        v.name.clone(),
                        format!(
                            "give the secret value ({MASK} keeps a stored one, and none is stored)"
                        ),
                    )
                })?;
            v.value = old.value.clone();
        }
    }
    validate(&input)?;
    let mut events = input.events.clone();
    events.sort();
    events.dedup();
    let new = crate::store::presets::NewPreset {
        name: input.name.trim().to_string(),
        filter: input.filter.trim().to_string(),
        priority: input.priority,
        events: events.join(","),
        spec: crate::domain::tasks::seal_json(
            &store.keyring(),
            crate::secrets::purpose::PRESET_SPEC,
            &serde_json::to_string(&input.spec)?,
        )?,
    };
    let (row, created) = store
        .run(move |st| {
            let filter = new.filter.clone();
            st.put_preset(&new, now, |old| affected(&[old, Some(&filter)]))
        })
        .await?;
    Ok((PresetView::from_row(&row), created))
}

pub async fn list(store: &crate::store::Store) -> Result<Vec<PresetView>> {
    let rows = store.run(|st| st.list_presets()).await?;
    Ok(rows.iter().map(PresetView::from_row).collect())
}

pub async fn get(store: &crate::store::Store, name: &str) -> Result<PresetView> {
    let n = name.to_string();
    store
        .run(move |st| st.get_preset(&n))
        .await?
        .map(|r| PresetView::from_row(&r))
        .ok_or_else(|| Error::not_found(format!("preset {name}")))
}

pub async fn delete(store: &crate::store::Store, name: &str) -> Result<()> {
    let n = name.to_string();
    if store
        .run(move |st| st.delete_preset(&n, |old| affected(&[Some(old)])))
        .await?
    {
        Ok(())
    } else {
        Err(Error::not_found(format!("preset {name}")))
    }
}

/// Which preset set a value on the device, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub preset: String,
    pub revision: i64,
    pub value: String,
    pub at: i64,
}

/// A value the device refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    pub preset: String,
    pub revision: i64,
    pub value: String,
    pub code: u32,
    pub reason: String,
    pub at: i64,
}

/// What presets did on one device (the `device_preset_state` row, decoded).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceState {
    /// Parameter → the preset that set it.
    #[serde(default)]
    pub applied: BTreeMap<String, Applied>,
    /// Parameter → the refused value.
    #[serde(default)]
    pub refused: BTreeMap<String, Refused>,
    /// Preset → the revision the device converged to.
    #[serde(default)]
    pub revisions: BTreeMap<String, i64>,
    /// Preset → the revision whose firmware Download was sent.
    #[serde(default)]
    pub firmware: BTreeMap<String, i64>,
}

impl DeviceState {
    pub fn decode(s: Option<&PresetState>) -> DeviceState {
        let Some(s) = s else {
            return DeviceState::default();
        };
        #[derive(Deserialize, Default)]
        struct Stored {
            #[serde(default)]
            applied: BTreeMap<String, Applied>,
            #[serde(default)]
            revisions: BTreeMap<String, i64>,
            #[serde(default)]
            firmware: BTreeMap<String, i64>,
        }
        let stored: Stored = serde_json::from_str(&s.applied).unwrap_or_default();
        DeviceState {
            applied: stored.applied,
            refused: serde_json::from_str(&s.refused).unwrap_or_default(),
            revisions: stored.revisions,
            firmware: stored.firmware,
        }
    }

    /// Secret values [`MASK`]ed (they are stored so since they are recorded; older rows are
    /// rewritten at start by `domain::secrets`).
    pub fn mask(&mut self) -> bool {
        let mut changed = false;
        for (name, a) in self.applied.iter_mut() {
            let k = kept(name, &a.value);
            changed |= k != a.value;
            a.value = k;
        }
        for (name, r) in self.refused.iter_mut() {
            let k = kept(name, &r.value);
            changed |= k != r.value;
            r.value = k;
        }
        changed
    }

    pub fn encode(&self) -> PresetState {
        let applied = serde_json::json!({
            "applied": self.applied,
            "revisions": self.revisions,
            "firmware": self.firmware,
        });
        PresetState {
            applied: applied.to_string(),
            refused: serde_json::to_string(&self.refused).unwrap_or_default(),
        }
    }
}

/// Which preset set which value on a device, and what it refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DevicePresets {
    pub device_id: String,
    /// Parameter → the preset that set it (value, preset revision, when).
    pub applied: BTreeMap<String, Applied>,
    /// Parameter → the value the device refused, and why; not resent until the preset changes.
    pub refused: BTreeMap<String, Refused>,
    /// Preset → the revision the device last converged to.
    pub converged: BTreeMap<String, i64>,
    /// Events at which the presets matching the device apply.
    pub events: Vec<String>,
}

pub async fn device_report(store: &crate::store::Store, device_id: &str) -> Result<DevicePresets> {
    let id = device_id.to_string();
    let (device, state) = store
        .run(move |st| Ok((st.get_device(&id)?, st.preset_state(&id)?)))
        .await?;
    let device = device.ok_or_else(|| Error::not_found(format!("device {device_id}")))?;
    let mut st = DeviceState::decode(state.as_ref());
    st.mask();
    Ok(DevicePresets {
        device_id: device_id.to_string(),
        applied: st.applied,
        refused: st.refused,
        converged: st.revisions,
        events: split_events(&device.preset_events),
    })
}
