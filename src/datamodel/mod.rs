//! The TR-069 data models ferroacs knows: parameter paths, types, facets and
//! access rules, loaded from the generated files in `datamodel/`, plus value
//! validation. Pure: no I/O at run time (the files are embedded).
//!
//! Models: `InternetGatewayDevice:1` (TR-098), `Device:1` (TR-106 / TR-181
//! Issue 1), `Device:2` (TR-181 Issue 2), and the service models
//! `VoiceService:1` (TR-104 Issue 1) and `VoiceService:2` (TR-104 Issue 2),
//! which are mounted under both `InternetGatewayDevice.Services.` and
//! `Device.Services.`.
//!
//! [`Registry::lookup`] maps a concrete path such as
//! `InternetGatewayDevice.Services.VoiceService.1.VoiceProfile.2.Line.1.SIP.AuthUserName`
//! (instance numbers or `[alias]` references) to its definition. Vendor
//! extensions (`X_...`) and anything else the models do not define give
//! `None`; callers pass such parameters through unchecked.
//! [`validate_value`] / [`validate_set`] check a value against a definition
//! and [`xsd_type`] names the `xsi:type` to send in SetParameterValues.
//!
//! # File format (`datamodel/*.tsv`, version 1)
//!
//! The files are written by [`generate::generate`] from the Broadband Forum
//! XML and must not be edited by hand. UTF-8 text, one record per line,
//! fields separated by one tab:
//!
//! * Line 1: `ferroacs-datamodel` and the format version (`1`).
//! * Line 2: `model`, the model name with version (`Device:2.19`), `root` or
//!   `service`, and the BBF file it was generated from.
//! * Lines starting with `#` are comments; empty lines are ignored.
//! * **Object line**: the full object path ending in `.`, with `{i}` for each
//!   instance number (`Device.IP.Interface.{i}.`), then flags: `R` (read-only)
//!   or `W` (for a table: AddObject/DeleteObject allowed), optionally followed
//!   by `D` (deprecated, obsoleted or deleted: kept because devices built to
//!   older versions still use them). Service-model paths are relative to the
//!   mount point: `VoiceService.{i}.VoiceProfile.{i}.`.
//! * **Parameter line**: `name`, `type`, `flags`, then zero or more facets.
//!   The parameter belongs to the nearest object line above it; parameters
//!   before the first object line sit at the mount point of a service model
//!   (`VoiceServiceNumberOfEntries`).
//!   * `type`: the resolved built-in type, for a list the type of each item:
//!     `str` (string), `uint` (unsignedInt), `int`, `ulong` (unsignedLong),
//!     `long`, `bool` (boolean), `dateTime`, `base64`, `hex` (hexBinary) or
//!     `decimal`.
//!   * `flags`: first the access, `R` (readOnly), `W` (readWrite) or `O`
//!     (writeOnceReadOnly), then any of `F` (forcedInform), `H` (hidden or
//!     secured: reads back empty), `C` (command), `L` (comma-separated list),
//!     `D` (deprecated, obsoleted or deleted), and the default active-notification
//!     rule, `n` (canDeny), `a` (forceEnabled) or `A` (forceDefaultEnabled);
//!     no letter means "normal".
//!   * facets, `key=value`, always in this order when present:
//!     `size=MIN..MAX[,MIN..MAX...]` allowed lengths (characters for strings,
//!     bytes for hexBinary and base64; an empty bound is open);
//!     `range=MIN..MAX[/STEP][,...]` allowed numeric ranges;
//!     `enum=A|B|C` allowed values (vendor values starting with `X_` are
//!     accepted too); `ro=A|B` the enumerated values only the device may
//!     report (an ACS must not set them); `pattern=REGEX` (repeatable; an XML
//!     Schema pattern, the value must match one; an empty pattern allows the
//!     empty string); for lists `items=MIN..MAX` (item count) and
//!     `listsize=MIN..MAX` (length of the whole list string). `size`, `range`,
//!     `enum` and `pattern` apply to each item of a list.
//!
//! For example (tabs shown as `→`):
//!
//! ```text
//! InternetGatewayDevice.ManagementServer.→R
//! URL→str→W→size=..256
//! PeriodicInformInterval→uint→W→range=1..
//! ParameterKey→str→RFn→size=..32
//! InternetGatewayDevice.LANDevice.{i}.WLANConfiguration.{i}.→W
//! ```
//!
//! Regenerate after updating the BBF files with
//! `ferroacs datamodel generate --bbf <BBF dir> --out datamodel/`; a test
//! fails while the committed files differ from the generator's output.
//!
//! # Lookups
//!
//! A path under `InternetGatewayDevice.` uses `InternetGatewayDevice:1`; a
//! path under `Device.` uses `Device:1` or `Device:2` as the caller says
//! ([`RootModel`]). Below `<root>.Services.VoiceService`, the path shape picks
//! the TR-104 issue (`VoiceProfile`/`PhyInterface`: Issue 1; `SIP`,
//! `CallControl`, ...: Issue 2), so a Device:2 device with the Issue 1 layout
//! resolves; paths both issues have go to the caller's hint
//! ([`Registry::lookup_in`]) or else the issue that belongs with the root.

pub mod generate;
mod pattern;
mod registry;
mod setvalue;
mod validate;

use std::collections::HashSet;
use std::sync::OnceLock;

pub use registry::{LoadError, Model, Registry, VoiceIssue};
pub use setvalue::{check_set_value, Reported, SetValueError};

pub use validate::{
    describe, validate_set, validate_value, xsd_type, Problem, SetError, ValueError,
};

/// Whether a parameter holds a secret (a password or key): the data model marks it hidden,
/// or (vendor parameters the models do not know) its name says so ([`secret_by_name`]). Its
/// value is never kept in the stored tree nor shown; devices read such values back as empty
/// anyway.
pub fn is_secret(name: &str) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if secret_by_name(leaf) {
        return true;
    }
    let Ok(reg) = Registry::builtin() else {
        return false;
    };
    // Only a leaf name some model hides can be hidden: most names need no lookup.
    static HIDDEN_LEAVES: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let hidden = HIDDEN_LEAVES.get_or_init(|| {
        reg.models()
            .flat_map(|m| m.objects().iter().flat_map(move |o| m.params_of(o)))
            .filter(|d| d.is_hidden())
            .map(|d| d.name())
            .collect()
    });
    if !hidden.contains(leaf) {
        return false;
    }
    let roots: &[RootModel] = if name.starts_with("InternetGatewayDevice.") {
        &[RootModel::InternetGatewayDevice1]
    } else if name.starts_with("Device.") {
        &[RootModel::Device2, RootModel::Device1]
    } else {
        &[]
    };
    roots
        .iter()
        .find_map(|r| reg.lookup(*r, name))
        .is_some_and(|d| d.is_hidden())
}

/// Whether a leaf name says it holds a secret, as vendors spell them: it ends (case aside,
/// after a key number and a band such as `1`, `2G` or `5G`) in `Password`, `Passwd`,
/// `Passphrase`, `Secret`, `WEPKey`, `PreSharedKey`, `PSK` or `PSKey`
/// (`X_TP_WEPKey1`, `KeyPassphrase5G`, `UAMSecret`, `X_ZTE-COM_WPAPSK`). Names that merely
/// mention one (`PasswordRequired`, `WEPKeyIndex`, `SecretType`) are not secrets.
fn secret_by_name(leaf: &str) -> bool {
    // Bytes, case folded as compared: this runs for every value a session learns.
    let ends = |t: &[u8], end: &str| {
        t.len() >= end.len() && t[t.len() - end.len()..].eq_ignore_ascii_case(end.as_bytes())
    };
    let mut t = leaf.as_bytes();
    while let [rest @ .., b'0'..=b'9'] = t {
        t = rest;
    }
    for band in ["2g", "5g", "6g", "24g"] {
        if ends(t, band) {
            t = &t[..t.len() - band.len()];
            break;
        }
    }
    while let [rest @ .., b'0'..=b'9' | b'_' | b'-'] = t {
        t = rest;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "wepkey",
        "presharedkey",
        "psk",
        "pskey",
    ]
    .iter()
    .any(|end| ends(t, end))
}

/// Version of the file format described above.
pub const FORMAT_VERSION: u32 = 1;
/// File holding `InternetGatewayDevice:1` (TR-098).
pub const IGD1_FILE: &str = "InternetGatewayDevice-1.tsv";
/// File holding `Device:1` (TR-106 / TR-181 Issue 1).
pub const DEVICE1_FILE: &str = "Device-1.tsv";
/// File holding `Device:2` (TR-181 Issue 2).
pub const DEVICE2_FILE: &str = "Device-2.tsv";
/// File holding `VoiceService:1` (TR-104 Issue 1).
pub const VOICE1_FILE: &str = "VoiceService-1.tsv";
/// File holding `VoiceService:2` (TR-104 Issue 2).
pub const VOICE2_FILE: &str = "VoiceService-2.tsv";

/// The committed files, embedded in the binary: `(file name, contents)`.
pub const EMBEDDED_FILES: [(&str, &str); 5] = [
    (
        IGD1_FILE,
        include_str!("../../datamodel/InternetGatewayDevice-1.tsv"),
    ),
    (DEVICE1_FILE, include_str!("../../datamodel/Device-1.tsv")),
    (DEVICE2_FILE, include_str!("../../datamodel/Device-2.tsv")),
    (
        VOICE1_FILE,
        include_str!("../../datamodel/VoiceService-1.tsv"),
    ),
    (
        VOICE2_FILE,
        include_str!("../../datamodel/VoiceService-2.tsv"),
    ),
];

/// The root data model a device implements, as announced in its Inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootModel {
    /// `InternetGatewayDevice:1.x` (TR-098).
    InternetGatewayDevice1,
    /// `Device:1.x` (TR-106 / TR-181 Issue 1).
    Device1,
    /// `Device:2.x` (TR-181 Issue 2).
    Device2,
}

impl RootModel {
    /// The one detector of the root model, from an Inform: any parameter path it carries,
    /// the `DeviceSummary` value if the device sent one, and `Device.RootDataModelVersion`
    /// if present. The result is stored with the device ([`RootModel::as_str`]) and read
    /// back with [`RootModel::parse`]; nothing else guesses it.
    ///
    /// `RootDataModelVersion` exists only in `Device:2`; `DeviceSummary` exists in
    /// `InternetGatewayDevice:1` and `Device:1` but not in `Device:2`, so a `Device.` device
    /// with neither is taken to be `Device:2`. Returns `None` for a path under neither root.
    pub fn detect(
        parameter_path: &str,
        device_summary: Option<&str>,
        root_data_model_version: Option<&str>,
    ) -> Option<Self> {
        if parameter_path.starts_with("InternetGatewayDevice.") {
            return Some(Self::InternetGatewayDevice1);
        }
        if !parameter_path.starts_with("Device.") {
            return None;
        }
        if root_data_model_version.is_some() {
            return Some(Self::Device2);
        }
        match device_summary.map(str::trim) {
            Some(summary) if summary.starts_with("Device:2") || summary.contains(" Device:2.") => {
                Some(Self::Device2)
            }
            Some(_) => Some(Self::Device1),
            None => Some(Self::Device2),
        }
    }

    /// The name stored with the device: `InternetGatewayDevice:1`, `Device:1`, `Device:2`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InternetGatewayDevice1 => "InternetGatewayDevice:1",
            Self::Device1 => "Device:1",
            Self::Device2 => "Device:2",
        }
    }

    /// The root object: `InternetGatewayDevice` or `Device`.
    pub const fn root_object(self) -> &'static str {
        match self {
            Self::InternetGatewayDevice1 => "InternetGatewayDevice",
            Self::Device1 | Self::Device2 => "Device",
        }
    }

    /// Read back the stored name ([`RootModel::as_str`]).
    pub fn parse(stored: &str) -> Option<Self> {
        [Self::InternetGatewayDevice1, Self::Device1, Self::Device2]
            .into_iter()
            .find(|m| m.as_str() == stored)
    }

    /// The models a path may belong to when the device is not known, most likely first.
    pub fn candidates(path: &str) -> &'static [RootModel] {
        if path.starts_with("InternetGatewayDevice.") {
            &[Self::InternetGatewayDevice1]
        } else if path.starts_with("Device.") {
            &[Self::Device2, Self::Device1]
        } else {
            &[]
        }
    }
}

impl std::fmt::Display for RootModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in type of a parameter (of each item, for lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseType {
    /// `xsd:string`
    String,
    /// `xsd:unsignedInt` (0 to 4294967295)
    UnsignedInt,
    /// `xsd:int` (-2147483648 to 2147483647)
    Int,
    /// `xsd:unsignedLong` (0 to 18446744073709551615)
    UnsignedLong,
    /// `xsd:long`
    Long,
    /// `xsd:boolean`
    Boolean,
    /// `xsd:dateTime`
    DateTime,
    /// `xsd:base64Binary`
    Base64,
    /// `xsd:hexBinary`
    HexBinary,
    /// `xsd:decimal`
    Decimal,
}

impl BaseType {
    /// The name used in the BBF XML.
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::UnsignedInt => "unsignedInt",
            Self::Int => "int",
            Self::UnsignedLong => "unsignedLong",
            Self::Long => "long",
            Self::Boolean => "boolean",
            Self::DateTime => "dateTime",
            Self::Base64 => "base64",
            Self::HexBinary => "hexBinary",
            Self::Decimal => "decimal",
        }
    }

    /// Every type, for iteration.
    pub const ALL: [Self; 10] = [
        Self::String,
        Self::UnsignedInt,
        Self::Int,
        Self::UnsignedLong,
        Self::Long,
        Self::Boolean,
        Self::DateTime,
        Self::Base64,
        Self::HexBinary,
        Self::Decimal,
    ];

    /// The short name used in the data-model files.
    pub fn code(self) -> &'static str {
        match self {
            Self::String => "str",
            Self::UnsignedInt => "uint",
            Self::Int => "int",
            Self::UnsignedLong => "ulong",
            Self::Long => "long",
            Self::Boolean => "bool",
            Self::DateTime => "dateTime",
            Self::Base64 => "base64",
            Self::HexBinary => "hex",
            Self::Decimal => "decimal",
        }
    }

    /// The type whose BBF XML name ([`Self::name`]) is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The value range of an integer type, `None` for other types.
    pub fn integer_limits(self) -> Option<(i128, i128)> {
        Some(match self {
            Self::UnsignedInt => (0, i128::from(u32::MAX)),
            Self::Int => (i128::from(i32::MIN), i128::from(i32::MAX)),
            Self::UnsignedLong => (0, i128::from(u64::MAX)),
            Self::Long => (i128::from(i64::MIN), i128::from(i64::MAX)),
            _ => return None,
        })
    }
}

/// Who may write a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Only the device changes it.
    ReadOnly,
    /// The ACS may set it.
    ReadWrite,
    /// The ACS may set it once; afterwards it is read-only.
    WriteOnce,
}

/// The data model's rule for active notification on a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveNotify {
    /// The ACS may turn active notification on or off.
    Normal,
    /// The device may refuse a request to turn active notification on.
    CanDeny,
    /// Active notification is always on and cannot be turned off.
    ForceEnabled,
    /// Active notification is on by default.
    ForceDefaultEnabled,
}

/// Where a model's paths are rooted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mount {
    Root,
    IgdServices,
    DeviceServices,
}

impl Mount {
    fn prefix(self) -> &'static str {
        match self {
            Self::Root => "",
            Self::IgdServices => "InternetGatewayDevice.Services.",
            Self::DeviceServices => "Device.Services.",
        }
    }
}

const FLAG_FORCED_INFORM: u8 = 1;
const FLAG_HIDDEN: u8 = 2;
const FLAG_COMMAND: u8 = 4;
const FLAG_LIST: u8 = 8;
const FLAG_DEPRECATED: u8 = 16;

/// Definition of one parameter.
///
/// Strings borrow from the embedded model text, so a definition costs a few
/// pointers and no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamDef {
    object: &'static str,
    /// The whole definition line: name first, facets at the end.
    line: &'static str,
    name_len: u8,
    facets_at: u16,
    mount: Mount,
    base: BaseType,
    access: Access,
    notify: ActiveNotify,
    flags: u8,
}

impl ParamDef {
    /// The path pattern, `{i}` standing for instance numbers:
    /// `Device.Services.VoiceService.{i}.VoiceProfile.{i}.Line.{i}.SIP.AuthPassword`.
    pub fn path(&self) -> String {
        let prefix = self.mount.prefix();
        let name = self.name();
        let mut path = String::with_capacity(prefix.len() + self.object.len() + name.len());
        path.push_str(prefix);
        path.push_str(self.object);
        path.push_str(name);
        path
    }

    /// The last path segment (`AuthPassword`).
    pub fn name(&self) -> &'static str {
        self.line
            .get(..usize::from(self.name_len))
            .unwrap_or_default()
    }

    fn facet_text(&self) -> &'static str {
        self.line
            .get(usize::from(self.facets_at)..)
            .unwrap_or_default()
    }

    /// The built-in type (the item type for lists).
    pub fn base_type(&self) -> BaseType {
        self.base
    }

    /// Who may write the parameter.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Whether an ACS may set the parameter (read-write or write-once).
    pub fn is_writable(&self) -> bool {
        self.access != Access::ReadOnly
    }

    /// Whether the device includes it in every Inform.
    pub fn forced_inform(&self) -> bool {
        self.flags & FLAG_FORCED_INFORM != 0
    }

    /// The model's active-notification rule for this parameter.
    pub fn active_notify(&self) -> ActiveNotify {
        self.notify
    }

    /// Hidden or secured (passwords, keys): reads back as an empty string,
    /// so a stored value cannot be compared with what the device reports.
    pub fn is_hidden(&self) -> bool {
        self.flags & FLAG_HIDDEN != 0
    }

    /// Setting it triggers an action; the value read back has no meaning.
    pub fn is_command(&self) -> bool {
        self.flags & FLAG_COMMAND != 0
    }

    /// A comma-separated list of items of [`Self::base_type`].
    pub fn is_list(&self) -> bool {
        self.flags & FLAG_LIST != 0
    }

    /// Deprecated, obsoleted or deleted in the latest version of its model
    /// (devices built to older versions still use it).
    pub fn is_deprecated(&self) -> bool {
        self.flags & FLAG_DEPRECATED != 0
    }

    /// The value constraints.
    pub fn facets(&self) -> Facets {
        // The text was checked when the model was loaded.
        Facets::parse(self.facet_text(), self.base).unwrap_or_default()
    }
}

/// Allowed lengths or counts, both ends inclusive; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// Lowest allowed value.
    pub min: Option<u64>,
    /// Highest allowed value.
    pub max: Option<u64>,
}

impl Bounds {
    fn contains(&self, n: u64) -> bool {
        self.min.is_none_or(|min| n >= min) && self.max.is_none_or(|max| n <= max)
    }
}

/// An allowed numeric range, both ends inclusive; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NumRange {
    /// Lowest allowed value.
    pub min: Option<f64>,
    /// Highest allowed value.
    pub max: Option<f64>,
    /// Lowest allowed value of an integer parameter (exact).
    pub int_min: Option<i128>,
    /// Highest allowed value of an integer parameter (exact).
    pub int_max: Option<i128>,
    /// Allowed values are `min + k * step`.
    pub step: Option<i128>,
}

/// The constraints on a parameter's value, from its data-model syntax.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Facets {
    /// Allowed lengths: characters for strings, bytes for hexBinary/base64.
    /// The value must fit one of them; empty means any length.
    pub sizes: Vec<Bounds>,
    /// Allowed numeric ranges; the value must fit one of them.
    pub ranges: Vec<NumRange>,
    /// Allowed values (empty: not an enumeration).
    pub enumeration: Vec<&'static str>,
    /// Enumerated values only the device may report.
    pub read_only_values: Vec<&'static str>,
    /// XML Schema patterns; the value must match one of them.
    pub patterns: Vec<&'static str>,
    /// For lists: allowed number of items.
    pub items: Option<Bounds>,
    /// For lists: allowed lengths of the whole list string.
    pub list_sizes: Vec<Bounds>,
}

impl Facets {
    fn parse(text: &'static str, base: BaseType) -> Result<Self, String> {
        let mut facets = Self::default();
        if text.is_empty() {
            return Ok(facets);
        }
        for entry in text.split('\t') {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("facet {entry:?} has no '='"))?;
            match key {
                "size" => facets.sizes = parse_bounds(value)?,
                "range" => {
                    facets.ranges = value
                        .split(',')
                        .map(|r| parse_range(r, base))
                        .collect::<Result<_, _>>()?;
                }
                "enum" => facets.enumeration = value.split('|').collect(),
                "ro" => facets.read_only_values = value.split('|').collect(),
                "pattern" => facets.patterns.push(value),
                "items" => {
                    facets.items = parse_bounds(value)?.first().copied();
                }
                "listsize" => facets.list_sizes = parse_bounds(value)?,
                other => return Err(format!("unknown facet {other:?}")),
            }
        }
        Ok(facets)
    }

    /// The longest allowed length, if every size facet has an upper bound.
    pub fn max_length(&self) -> Option<u64> {
        if self.sizes.is_empty() {
            return None;
        }
        self.sizes
            .iter()
            .map(|b| b.max)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }
}

fn parse_bounds(text: &str) -> Result<Vec<Bounds>, String> {
    text.split(',')
        .map(|part| {
            let (min, max) = part
                .split_once("..")
                .ok_or_else(|| format!("bounds {part:?} lack '..'"))?;
            let num = |s: &str| -> Result<Option<u64>, String> {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse()
                        .map(Some)
                        .map_err(|_| format!("bound {s:?} is not a whole number"))
                }
            };
            Ok(Bounds {
                min: num(min)?,
                max: num(max)?,
            })
        })
        .collect()
}

fn parse_range(text: &str, base: BaseType) -> Result<NumRange, String> {
    let (bounds, step) = match text.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (text, None),
    };
    let (min, max) = bounds
        .split_once("..")
        .ok_or_else(|| format!("range {text:?} lacks '..'"))?;
    let float = |s: &str| -> Result<Option<f64>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("range bound {s:?} is not a number"))
        }
    };
    let int = |s: &str| -> Result<Option<i128>, String> {
        if s.is_empty() || base == BaseType::Decimal {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("range bound {s:?} is not a whole number"))
        }
    };
    Ok(NumRange {
        min: float(min)?,
        max: float(max)?,
        int_min: int(min)?,
        int_max: int(max)?,
        step: step.map(int).transpose()?.flatten().filter(|s| *s > 0),
    })
}

/// Definition of one object (a path ending in `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDef {
    path: &'static str,
    mount: Mount,
    writable: bool,
    deprecated: bool,
    params: (u32, u32),
}

impl ObjectDef {
    /// The path pattern ending in `.` (`Device.IP.Interface.{i}.`).
    pub fn path(&self) -> String {
        format!("{}{}", self.mount.prefix(), self.path)
    }

    /// A table row (the path ends in `{i}.`).
    pub fn is_multi_instance(&self) -> bool {
        self.path.ends_with("{i}.")
    }

    /// Whether AddObject and DeleteObject are allowed on the table.
    pub fn is_writable(&self) -> bool {
        self.writable && self.is_multi_instance()
    }

    /// Deprecated, obsoleted or deleted in the latest version of its model.
    pub fn is_deprecated(&self) -> bool {
        self.deprecated
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn root_model_detection() {
        use RootModel::*;
        assert_eq!(
            RootModel::detect("InternetGatewayDevice.DeviceInfo.SerialNumber", None, None),
            Some(InternetGatewayDevice1)
        );
        assert_eq!(
            RootModel::detect("Device.DeviceInfo.SerialNumber", None, Some("2.4")),
            Some(Device2)
        );
        assert_eq!(
            RootModel::detect("Device.DeviceInfo.SerialNumber", None, None),
            Some(Device2)
        );
        assert_eq!(
            RootModel::detect(
                "Device.DeviceInfo.SerialNumber",
                Some("Device:1.4[](Baseline:2), VoiceService:1.0[1](Endpoint:1)"),
                None
            ),
            Some(Device1)
        );
        assert_eq!(RootModel::detect("Foo.Bar", None, None), None);
        // RootDataModelVersion exists only in Device:2, whatever its value says.
        assert_eq!(
            RootModel::detect("Device.X", Some("Device:1.0[]"), Some("")),
            Some(Device2)
        );
        assert_eq!(
            RootModel::detect("Device.X", Some("Device:2.11[](Baseline:1)"), None),
            Some(Device2)
        );
        for m in [InternetGatewayDevice1, Device1, Device2] {
            assert_eq!(RootModel::parse(m.as_str()), Some(m));
        }
        assert_eq!(RootModel::parse("Device"), None);
    }

    #[test]
    fn facets_parse_every_kind() {
        let text = "size=0..0,36..260\trange=..-1,5..10/5\tenum=A|B|X\tro=X\tpattern=\tpattern=[0-9]+\titems=1..4\tlistsize=..256";
        let f = Facets::parse(text, BaseType::String).unwrap();
        assert_eq!(
            f.sizes,
            vec![
                Bounds {
                    min: Some(0),
                    max: Some(0)
                },
                Bounds {
                    min: Some(36),
                    max: Some(260)
                }
            ]
        );
        assert_eq!(f.ranges.len(), 2);
        assert_eq!((f.ranges[0].int_min, f.ranges[0].int_max), (None, Some(-1)));
        assert_eq!(
            (f.ranges[1].int_min, f.ranges[1].int_max, f.ranges[1].step),
            (Some(5), Some(10), Some(5))
        );
        assert_eq!(f.enumeration, vec!["A", "B", "X"]);
        assert_eq!(f.read_only_values, vec!["X"]);
        assert_eq!(f.patterns, vec!["", "[0-9]+"]);
        assert_eq!(
            f.items,
            Some(Bounds {
                min: Some(1),
                max: Some(4)
            })
        );
        assert_eq!(
            f.list_sizes,
            vec![Bounds {
                min: None,
                max: Some(256)
            }]
        );
        assert_eq!(f.max_length(), Some(260));
        assert_eq!(
            Facets::parse("", BaseType::String).unwrap(),
            Facets::default()
        );
        assert!(Facets::parse("size=..x", BaseType::String).is_err());
        assert!(Facets::parse("colour=red", BaseType::String).is_err());
        assert!(Facets::parse("range=1.5..2", BaseType::Int).is_err());
        assert!(Facets::parse("range=1.5..2", BaseType::Decimal).is_ok());
    }

    #[test]
    fn type_names_and_codes_round_trip() {
        for t in BaseType::ALL {
            assert_eq!(BaseType::from_name(t.name()), Some(t));
            assert_eq!(BaseType::from_code(t.code()), Some(t));
        }
        assert_eq!(BaseType::from_name("str"), None);
    }
}
