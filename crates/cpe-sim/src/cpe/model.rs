//! The simulated parameter tree: parameters, CSV dump loading, a synthetic generator, root
//! detection, forced Inform parameters and value validation.
//!
//! Names follow CWMP conventions: objects end with `.` (`InternetGatewayDevice.LANDevice.1.`),
//! leaf parameters do not. The tree is a `BTreeMap`, so every partial path maps to one
//! contiguous key range.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use super::SimError;

/// One node of the data model: a leaf parameter or an object (`is_object`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Current value (empty for objects).
    pub value: String,
    /// Type as reported in `xsi:type`, e.g. `xsd:unsignedInt` (empty for objects).
    pub xsd_type: String,
    /// Leaf: SetParameterValues allowed. Table object: AddObject allowed. Instance: DeleteObject allowed.
    pub writable: bool,
    /// True for objects (names ending with `.`).
    pub is_object: bool,
    /// Notification attribute: 0 off, 1 passive, 2 active (3-6 lightweight variants).
    pub notification: u8,
    /// Access list attribute (e.g. `["Subscriber"]`).
    pub access_list: Vec<String>,
}

impl Param {
    /// A leaf parameter with notification off and an empty access list.
    pub fn leaf(value: impl Into<String>, xsd_type: impl Into<String>, writable: bool) -> Param {
        Param {
            value: value.into(),
            xsd_type: xsd_type.into(),
            writable,
            is_object: false,
            notification: 0,
            access_list: Vec::new(),
        }
    }

    /// An object node.
    pub fn object(writable: bool) -> Param {
        Param {
            value: String::new(),
            xsd_type: String::new(),
            writable,
            is_object: true,
            notification: 0,
            access_list: Vec::new(),
        }
    }
}

/// The data model of one device, keyed by full name.
pub type Model = BTreeMap<String, Param>;

/// Which root data model the device implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    /// `InternetGatewayDevice.` (TR-098).
    Igd,
    /// `Device.` with a Device:1 summary (TR-106 / TR-181 issue 1).
    Device1,
    /// `Device.` (TR-181 issue 2).
    Device2,
}

impl Root {
    /// The root object name including the trailing dot.
    pub fn prefix(self) -> &'static str {
        match self {
            Root::Igd => "InternetGatewayDevice.",
            Root::Device1 | Root::Device2 => "Device.",
        }
    }

    /// Detects the root from the names present in a model.
    pub fn detect(model: &Model) -> Option<Root> {
        if first_with_prefix(model, "InternetGatewayDevice.").is_some() {
            return Some(Root::Igd);
        }
        first_with_prefix(model, "Device.")?;
        match model.get("Device.DeviceSummary") {
            Some(p) if p.value.starts_with("Device:1") => Some(Root::Device1),
            _ => Some(Root::Device2),
        }
    }
}

/// The DeviceId of an Inform.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `Manufacturer` (≤64 characters).
    pub manufacturer: String,
    /// `OUI`, six upper-case hex digits.
    pub oui: String,
    /// `ProductClass` (≤64 characters).
    pub product_class: String,
    /// `SerialNumber` (≤64 characters).
    pub serial_number: String,
}

impl Identity {
    /// The conventional CPE identifier `OUI-ProductClass-SerialNumber`, with every character of
    /// ProductClass and SerialNumber other than `A-Z a-z 0-9 _` percent-encoded (TR-069 §3.4.4).
    pub fn device_id(&self) -> String {
        let mut out = String::with_capacity(
            self.oui.len() + self.product_class.len() + self.serial_number.len() + 8,
        );
        out.push_str(&self.oui);
        out.push('-');
        if !self.product_class.is_empty() {
            percent_escape_into(&self.product_class, &mut out);
            out.push('-');
        }
        percent_escape_into(&self.serial_number, &mut out);
        out
    }
}

fn percent_escape_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
}

/// The result of loading a CSV dump.
#[derive(Debug, Clone)]
pub struct CsvDump {
    /// All parameters and objects under the root.
    pub model: Model,
    /// Identity taken from `DeviceID.*` rows, `DeviceInfo.*` parameters or the file name.
    pub identity: Identity,
}

/// Loads a GenieACS UI export or a genieacs-sim data-model CSV.
///
/// The header row names the columns; `Parameter`, `Object`, `Writable`, `Value` and
/// `Value type` are used, `Notification` and `Access list` when present. Rows outside the
/// `InternetGatewayDevice.`/`Device.` trees (`DeviceID.*`, `Events.*`) are not parameters;
/// `DeviceID.*` feeds the identity. Type names are normalised ([`normalize_type`]); an empty
/// value of a typed parameter becomes the type's default ([`default_value`]) and any other
/// value that does not fit its type is kept as `xsd:string`, so every value the device
/// reports is valid for its `xsi:type`.
pub fn load_csv(path: &Path) -> Result<CsvDump, SimError> {
    let err = |detail: String| SimError::Csv {
        path: path.display().to_string(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut dump = parse_csv_dump(&text).map_err(err)?;
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(identity_from_file_name);
    if let Some(n) = from_name {
        fill_missing(&mut dump.identity, &n);
    }
    if dump.identity.serial_number.is_empty() {
        return Err(err(
            "no serial number found (no DeviceID.SerialNumber, DeviceInfo.SerialNumber or \
             OUI-ProductClass-Serial file name); set one with Device::with_serial"
                .into(),
        ));
    }
    Ok(dump)
}

fn fill_missing(id: &mut Identity, other: &Identity) {
    let pairs = [
        (&mut id.manufacturer, &other.manufacturer),
        (&mut id.oui, &other.oui),
        (&mut id.product_class, &other.product_class),
        (&mut id.serial_number, &other.serial_number),
    ];
    for (dst, src) in pairs {
        if dst.is_empty() && !src.is_empty() {
            dst.clone_from(src);
        }
    }
}

/// Parses the text of a CSV dump (see [`load_csv`]).
pub fn parse_csv_dump(text: &str) -> Result<CsvDump, String> {
    let rows = parse_csv(text)?;
    let mut iter = rows.into_iter();
    let header = iter.next().ok_or("the file is empty")?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let c_name = col("Parameter").ok_or("no \"Parameter\" column in the header row")?;
    let c_obj = col("Object").ok_or("no \"Object\" column in the header row")?;
    let c_wr = col("Writable").ok_or("no \"Writable\" column in the header row")?;
    let c_val = col("Value").ok_or("no \"Value\" column in the header row")?;
    let c_type = col("Value type");
    let c_notif = col("Notification");
    let c_acl = col("Access list");

    let mut model = Model::new();
    let mut device_id = Identity::default();
    for (line, row) in iter.enumerate() {
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        let name = get(c_name).trim();
        if name.is_empty() {
            continue;
        }
        if let Some(field) = name.strip_prefix("DeviceID.") {
            let v = get(c_val).to_string();
            match field {
                "Manufacturer" => device_id.manufacturer = v,
                "OUI" => device_id.oui = v,
                "ProductClass" => device_id.product_class = v,
                "SerialNumber" => device_id.serial_number = v,
                _ => {}
            }
            continue;
        }
        let top = name.split('.').next().unwrap_or("");
        if top != "InternetGatewayDevice" && top != "Device" {
            continue;
        }
        let is_object = parse_bool(get(c_obj)).unwrap_or(false) || name.ends_with('.');
        let writable = parse_bool(get(c_wr)).unwrap_or(false);
        if is_object {
            let key = if name.ends_with('.') {
                name.to_string()
            } else {
                format!("{name}.")
            };
            model.insert(key, Param::object(writable));
        } else {
            let mut p = Param::leaf(
                get(c_val),
                normalize_type(c_type.map(get).unwrap_or("")),
                writable,
            );
            if !valid_value(&p.xsd_type, &p.value) {
                // Exports hold empty values for typed parameters that were never read;
                // a device reports a valid literal.
                if p.value.trim().is_empty() {
                    p.value = default_value(&p.xsd_type).to_string();
                } else {
                    p.xsd_type = "xsd:string".to_string();
                }
            }
            if let Some(c) = c_notif {
                let n = get(c).trim();
                if !n.is_empty() {
                    p.notification = n
                        .parse()
                        .map_err(|_| format!("row {}: bad Notification {n:?}", line + 2))?;
                }
            }
            if let Some(c) = c_acl {
                p.access_list = split_list(get(c));
            }
            model.insert(name.to_string(), p);
        }
    }
    if model.is_empty() {
        return Err("no InternetGatewayDevice. or Device. parameters found".into());
    }
    // Every object implied by a name exists, including the root.
    let implied: Vec<String> = model
        .keys()
        .flat_map(|k| {
            let trimmed = k.strip_suffix('.').unwrap_or(k);
            trimmed
                .match_indices('.')
                .map(|(i, _)| trimmed[..=i].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for k in implied {
        model.entry(k).or_insert_with(|| Param::object(false));
    }

    let mut identity = device_id;
    if let Some(root) = Root::detect(&model) {
        let info = |leaf: &str| {
            model
                .get(&format!("{}DeviceInfo.{leaf}", root.prefix()))
                .map(|p| p.value.clone())
                .unwrap_or_default()
        };
        let from_info = Identity {
            manufacturer: info("Manufacturer"),
            oui: info("ManufacturerOUI"),
            product_class: info("ProductClass"),
            serial_number: info("SerialNumber"),
        };
        fill_missing(&mut identity, &from_info);
    }
    Ok(CsvDump { model, identity })
}

/// Derives an identity from a dump file name such as
/// `device-00259E-EG8145V5-48575443A94196A5-2023-03-28T154335106Z.csv` or
/// `data_model_202BC1-BM632w-8KA8WA1151100043.csv` (`%XX` escapes are decoded per part).
pub fn identity_from_file_name(name: &str) -> Option<Identity> {
    let stem = name.strip_suffix(".csv").unwrap_or(name);
    let stem = stem
        .strip_prefix("device-")
        .or_else(|| stem.strip_prefix("data_model_"))
        .unwrap_or(stem);
    let mut parts = stem.split('-');
    let oui = parts.next()?;
    let product_class = parts.next()?;
    let serial = parts.next()?;
    if oui.len() != 6 || !oui.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Identity {
        manufacturer: String::new(),
        oui: oui.to_ascii_uppercase(),
        product_class: percent_decode(product_class),
        serial_number: percent_decode(serial),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits an RFC 4180 CSV text into rows of fields (quoted fields may contain commas,
/// doubled quotes and line breaks; CRLF and LF line ends are accepted).
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .chars()
        .peekable();
    let mut in_quotes = false;
    let mut line = 1usize;
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                row_has_content = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                row_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                if row_has_content || !field.is_empty() {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                row_has_content = false;
            }
            _ => {
                field.push(c);
                row_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err(format!(
            "unterminated quoted field at end of file (line {line})"
        ));
    }
    if row_has_content || !field.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// Parses an xsd:boolean literal (`true`, `false`, `1`, `0`; surrounding blanks ignored).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "1" | "TRUE" | "True" => Some(true),
        "false" | "0" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Maps the spellings found in dumps (`xsd:unsignedint`, `xsd:Int`, empty) to the XML Schema
/// names. Unknown types are kept as they are.
pub fn normalize_type(t: &str) -> String {
    let t = t.trim();
    if t.is_empty() {
        return "xsd:string".into();
    }
    let local = t.rsplit(':').next().unwrap_or(t);
    let canon = match local.to_ascii_lowercase().as_str() {
        "string" => "string",
        "int" => "int",
        "unsignedint" => "unsignedInt",
        "long" => "long",
        "unsignedlong" => "unsignedLong",
        "boolean" => "boolean",
        "datetime" => "dateTime",
        "base64" => "base64",
        "base64binary" => "base64Binary",
        "hexbinary" => "hexBinary",
        _ => return t.to_string(),
    };
    format!("xsd:{canon}")
}

/// The type written on the wire. `xsd:base64` (used by many CPEs, but not an XML Schema
/// type) becomes `xsd:base64Binary` unless `raw` is set.
pub fn wire_type(t: &str, raw: bool) -> &str {
    if !raw && t == "xsd:base64" {
        "xsd:base64Binary"
    } else if t.is_empty() {
        "xsd:string"
    } else {
        t
    }
}

fn type_local(t: &str) -> String {
    let local = t.rsplit(':').next().unwrap_or(t).to_ascii_lowercase();
    if local == "base64binary" {
        "base64".into()
    } else {
        local
    }
}

/// Whether a value sent with `given` type may be written to a parameter of type `declared`.
/// A missing `xsi:type` is accepted.
pub fn types_compatible(declared: &str, given: Option<&str>) -> bool {
    match given {
        None => true,
        Some(g) if g.trim().is_empty() => true,
        Some(g) => type_local(declared) == type_local(g),
    }
}

/// Whether `value` is a valid literal of `xsd_type`.
pub fn valid_value(xsd_type: &str, value: &str) -> bool {
    let v = value.trim();
    match type_local(xsd_type).as_str() {
        "int" => v.parse::<i32>().is_ok(),
        "unsignedint" => v.parse::<u32>().is_ok(),
        "long" => v.parse::<i64>().is_ok(),
        "unsignedlong" => v.parse::<u64>().is_ok(),
        "boolean" => matches!(v, "true" | "false" | "1" | "0"),
        "datetime" => valid_datetime(v),
        "base64" => {
            let s: Vec<u8> = v.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            s.len() % 4 == 0
                && s.iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        }
        "hexbinary" => v.len() % 2 == 0 && v.bytes().all(|b| b.is_ascii_hexdigit()),
        _ => true,
    }
}

fn valid_datetime(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 19 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19..]
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'Z' | b'+' | b'-' | b':'))
}

/// The value a freshly created instance gets for a leaf of this type.
pub fn default_value(xsd_type: &str) -> &'static str {
    match type_local(xsd_type).as_str() {
        "int" | "unsignedint" | "long" | "unsignedlong" => "0",
        "boolean" => "false",
        "datetime" => "0001-01-01T00:00:00Z",
        _ => "",
    }
}

/// Iterates over the entries whose name starts with `prefix` (one contiguous range).
pub fn with_prefix<'a, 'p>(
    model: &'a Model,
    prefix: &'p str,
) -> impl Iterator<Item = (&'a String, &'a Param)> + use<'a, 'p> {
    model
        .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
}

fn first_with_prefix<'a>(model: &'a Model, prefix: &'a str) -> Option<&'a String> {
    with_prefix(model, prefix).next().map(|(k, _)| k)
}

/// True when `name` is an immediate child of the object `parent` (which ends with `.`).
pub fn is_child(parent: &str, name: &str) -> bool {
    match name.strip_prefix(parent) {
        Some(rest) if !rest.is_empty() => {
            let rest = rest.strip_suffix('.').unwrap_or(rest);
            !rest.is_empty() && !rest.contains('.')
        }
        _ => false,
    }
}

/// The last segment of a name (`"3"` for `A.B.3.`).
pub fn last_segment(name: &str) -> &str {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    trimmed.rsplit('.').next().unwrap_or(trimmed)
}

/// The parent object of a name (`A.B.` for `A.B.3.` and for `A.B.Leaf`).
pub fn parent_of(name: &str) -> &str {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    match trimmed.rfind('.') {
        Some(i) => &trimmed[..=i],
        None => "",
    }
}

/// Whether a segment is an instance number.
pub fn is_instance(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())
}

/// Names of the forced Inform parameters that exist in the model (TR-098 / TR-106 / TR-181
/// `forcedInform`), in Inform order. For TR-098 one WAN `ExternalIPAddress` is included: the
/// first one that holds an address other than `0.0.0.0`, else the first one.
pub fn forced_inform_names(model: &Model, root: Root) -> Vec<String> {
    let p = root.prefix();
    let leaves: &[&str] = match root {
        Root::Igd => &[
            "DeviceSummary",
            "DeviceInfo.SpecVersion",
            "DeviceInfo.HardwareVersion",
            "DeviceInfo.SoftwareVersion",
            "DeviceInfo.ProvisioningCode",
            "ManagementServer.ParameterKey",
            "ManagementServer.ConnectionRequestURL",
            "ManagementServer.AliasBasedAddressing",
        ],
        Root::Device1 => &[
            "DeviceSummary",
            "DeviceInfo.HardwareVersion",
            "DeviceInfo.SoftwareVersion",
            "ManagementServer.ParameterKey",
            "ManagementServer.ConnectionRequestURL",
            "ManagementServer.AliasBasedAddressing",
            "LAN.IPAddress",
        ],
        Root::Device2 => &[
            "RootDataModelVersion",
            "DeviceInfo.HardwareVersion",
            "DeviceInfo.SoftwareVersion",
            "DeviceInfo.ProvisioningCode",
            "ManagementServer.ParameterKey",
            "ManagementServer.ConnectionRequestURL",
            "ManagementServer.AliasBasedAddressing",
        ],
    };
    let mut out: Vec<String> = leaves
        .iter()
        .map(|l| format!("{p}{l}"))
        .filter(|n| model.get(n).is_some_and(|x| !x.is_object))
        .collect();
    if root == Root::Igd {
        let wan = "InternetGatewayDevice.WANDevice.";
        let mut first: Option<&String> = None;
        let mut good: Option<&String> = None;
        for (k, v) in with_prefix(model, wan) {
            let is_ext = k.ends_with(".ExternalIPAddress")
                && (k.contains(".WANIPConnection.") || k.contains(".WANPPPConnection."));
            if !is_ext || v.is_object {
                continue;
            }
            first.get_or_insert(k);
            if !v.value.is_empty() && v.value != "0.0.0.0" {
                good = Some(k);
                break;
            }
        }
        if let Some(k) = good.or(first) {
            out.push(k.clone());
        }
    }
    out
}

/// Builds a plausible data model of roughly `n_params` entries (objects and leaves) for the
/// given root: DeviceInfo, ManagementServer, a WAN/IP interface, two WiFi networks, one VoIP
/// line and as many LAN hosts as needed to reach the size.
pub fn synthetic_model(root: Root, identity: &Identity, n_params: usize) -> Model {
    let mut g = Gen {
        m: Model::new(),
        p: root.prefix(),
    };
    g.obj("", false);
    let id = identity;
    match root {
        Root::Igd => g.s(
            "DeviceSummary",
            "InternetGatewayDevice:1.4[](Baseline:1, EthernetLAN:1, WiFiLAN:1, Time:1, IPPing:1), \
             VoiceService:1.0[1](Endpoint:1, SIPEndpoint:1)",
            false,
        ),
        Root::Device1 => g.s(
            "DeviceSummary",
            "Device:1.4[](Baseline:2, EthernetLAN:1)",
            false,
        ),
        Root::Device2 => g.s("RootDataModelVersion", "2.14", false),
    }
    g.obj("DeviceInfo.", false);
    g.s("DeviceInfo.Manufacturer", &id.manufacturer, false);
    g.s("DeviceInfo.ManufacturerOUI", &id.oui, false);
    g.s("DeviceInfo.ModelName", &id.product_class, false);
    g.s(
        "DeviceInfo.Description",
        "Simulated residential gateway",
        false,
    );
    g.s("DeviceInfo.ProductClass", &id.product_class, false);
    g.s("DeviceInfo.SerialNumber", &id.serial_number, false);
    g.s("DeviceInfo.HardwareVersion", "HW1.0", false);
    g.s("DeviceInfo.SoftwareVersion", "1.0.0", false);
    g.s("DeviceInfo.ProvisioningCode", "", true);
    if root == Root::Igd {
        g.s("DeviceInfo.SpecVersion", "1.0", false);
    }
    g.t("DeviceInfo.UpTime", "3600", "xsd:unsignedInt", false);
    g.obj("ManagementServer.", false);
    g.s("ManagementServer.URL", "", true);
    g.s("ManagementServer.Username", "", true);
    g.s("ManagementServer.Password", "", true);
    g.t(
        "ManagementServer.PeriodicInformEnable",
        "true",
        "xsd:boolean",
        true,
    );
    g.t(
        "ManagementServer.PeriodicInformInterval",
        "3600",
        "xsd:unsignedInt",
        true,
    );
    g.t(
        "ManagementServer.PeriodicInformTime",
        "0001-01-01T00:00:00Z",
        "xsd:dateTime",
        true,
    );
    g.s("ManagementServer.ParameterKey", "", false);
    g.s("ManagementServer.ConnectionRequestURL", "", false);
    g.s("ManagementServer.ConnectionRequestUsername", "", true);
    g.s("ManagementServer.ConnectionRequestPassword", "", true);
    g.t(
        "ManagementServer.UpgradesManaged",
        "false",
        "xsd:boolean",
        true,
    );
    let serial_num: u32 = id
        .serial_number
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    let wan_ip = format!(
        "100.{}.{}.{}",
        64 + (serial_num % 64),
        (serial_num >> 8) % 256,
        1 + (serial_num >> 16) % 254
    );
    match root {
        Root::Igd => {
            g.obj("WANDevice.", false);
            g.obj("WANDevice.1.", false);
            g.obj("WANDevice.1.WANConnectionDevice.", true);
            g.obj("WANDevice.1.WANConnectionDevice.1.", true);
            let c = "WANDevice.1.WANConnectionDevice.1.WANIPConnection.";
            g.obj(c, true);
            g.obj(&format!("{c}1."), true);
            g.t(&format!("{c}1.Enable"), "true", "xsd:boolean", true);
            g.s(&format!("{c}1.ConnectionStatus"), "Connected", false);
            g.s(&format!("{c}1.ExternalIPAddress"), &wan_ip, true);
            g.s(&format!("{c}1.DNSServers"), "192.0.2.53,192.0.2.54", true);
            g.obj("LANDevice.", false);
            g.obj("LANDevice.1.", false);
            g.obj("LANDevice.1.WLANConfiguration.", false);
            for i in 1..=2 {
                let w = format!("LANDevice.1.WLANConfiguration.{i}.");
                g.obj(&w, false);
                g.t(&format!("{w}Enable"), "true", "xsd:boolean", true);
                g.s(
                    &format!("{w}SSID"),
                    &format!("sim-{}-{i}", id.serial_number),
                    true,
                );
                g.t(&format!("{w}Channel"), "6", "xsd:unsignedInt", true);
                g.s(&format!("{w}BeaconType"), "WPAand11i", true);
                g.s(&format!("{w}KeyPassphrase"), "", true);
            }
            let v = "Services.VoiceService.1.VoiceProfile.1.";
            g.obj("Services.", false);
            g.obj("Services.VoiceService.", false);
            g.obj("Services.VoiceService.1.", false);
            g.obj("Services.VoiceService.1.VoiceProfile.", true);
            g.obj(v, true);
            g.t(&format!("{v}Enable"), "Enabled", "xsd:string", true);
            g.obj(&format!("{v}SIP."), false);
            g.s(&format!("{v}SIP.ProxyServer"), "", true);
            g.t(
                &format!("{v}SIP.ProxyServerPort"),
                "5060",
                "xsd:unsignedInt",
                true,
            );
            g.s(&format!("{v}SIP.RegistrarServer"), "", true);
            g.obj(&format!("{v}Line."), true);
            g.obj(&format!("{v}Line.1."), true);
            g.s(&format!("{v}Line.1.Enable"), "Disabled", true);
            g.s(&format!("{v}Line.1.DirectoryNumber"), "", true);
            g.obj(&format!("{v}Line.1.SIP."), false);
            g.s(&format!("{v}Line.1.SIP.AuthUserName"), "", true);
            g.s(&format!("{v}Line.1.SIP.AuthPassword"), "", true);
            g.s(&format!("{v}Line.1.SIP.URI"), "", true);
            g.obj("LANDevice.1.Hosts.", false);
            g.obj("LANDevice.1.Hosts.Host.", false);
        }
        Root::Device1 | Root::Device2 => {
            if root == Root::Device1 {
                g.obj("LAN.", false);
                g.s("LAN.IPAddress", &wan_ip, false);
            }
            g.obj("IP.", false);
            g.obj("IP.Interface.", true);
            g.obj("IP.Interface.1.", true);
            g.t("IP.Interface.1.Enable", "true", "xsd:boolean", true);
            g.s("IP.Interface.1.Status", "Up", false);
            g.obj("IP.Interface.1.IPv4Address.", true);
            g.obj("IP.Interface.1.IPv4Address.1.", true);
            g.s("IP.Interface.1.IPv4Address.1.IPAddress", &wan_ip, true);
            g.s(
                "IP.Interface.1.IPv4Address.1.SubnetMask",
                "255.255.255.0",
                true,
            );
            g.obj("WiFi.", false);
            g.obj("WiFi.SSID.", true);
            for i in 1..=2 {
                let w = format!("WiFi.SSID.{i}.");
                g.obj(&w, true);
                g.t(&format!("{w}Enable"), "true", "xsd:boolean", true);
                g.s(
                    &format!("{w}SSID"),
                    &format!("sim-{}-{i}", id.serial_number),
                    true,
                );
            }
            g.obj("WiFi.AccessPoint.", true);
            g.obj("WiFi.AccessPoint.1.", true);
            g.obj("WiFi.AccessPoint.1.Security.", false);
            g.s(
                "WiFi.AccessPoint.1.Security.ModeEnabled",
                "WPA2-Personal",
                true,
            );
            g.s("WiFi.AccessPoint.1.Security.KeyPassphrase", "", true);
            let v = "Services.VoiceService.1.";
            g.obj("Services.", false);
            g.obj("Services.VoiceService.", false);
            g.obj(v, false);
            g.obj(&format!("{v}SIP."), false);
            g.obj(&format!("{v}SIP.Client."), true);
            g.obj(&format!("{v}SIP.Client.1."), true);
            g.t(
                &format!("{v}SIP.Client.1.Enable"),
                "false",
                "xsd:boolean",
                true,
            );
            g.s(&format!("{v}SIP.Client.1.AuthUserName"), "", true);
            g.s(&format!("{v}SIP.Client.1.AuthPassword"), "", true);
            g.s(&format!("{v}SIP.Client.1.RegisterURI"), "", true);
            g.obj(&format!("{v}SIP.Network."), true);
            g.obj(&format!("{v}SIP.Network.1."), true);
            g.s(&format!("{v}SIP.Network.1.ProxyServer"), "", true);
            g.s(&format!("{v}SIP.Network.1.RegistrarServer"), "", true);
            g.obj("Hosts.", false);
            g.obj("Hosts.Host.", false);
        }
    }
    let hosts = if root == Root::Igd {
        "LANDevice.1.Hosts.Host."
    } else {
        "Hosts.Host."
    };
    let count_name = if root == Root::Igd {
        "LANDevice.1.Hosts.HostNumberOfEntries"
    } else {
        "Hosts.HostNumberOfEntries"
    };
    g.t(count_name, "0", "xsd:unsignedInt", false);
    let mut i = 0u32;
    while g.m.len() < n_params {
        i += 1;
        let h = format!("{hosts}{i}.");
        g.obj(&h, false);
        g.s(
            &format!("{h}IPAddress"),
            &format!("192.168.1.{}", 1 + i % 250),
            false,
        );
        g.s(
            &format!("{h}MACAddress"),
            &format!(
                "02:00:00:{:02X}:{:02X}:{:02X}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ),
            false,
        );
        g.s(&format!("{h}HostName"), &format!("host-{i}"), false);
        g.t(&format!("{h}Active"), "true", "xsd:boolean", false);
        g.t(&format!("{h}LeaseTimeRemaining"), "86400", "xsd:int", false);
        g.s(&format!("{h}AddressSource"), "DHCP", false);
    }
    g.t(count_name, &i.to_string(), "xsd:unsignedInt", false);
    g.m
}

struct Gen {
    m: Model,
    p: &'static str,
}

impl Gen {
    fn obj(&mut self, rel: &str, writable: bool) {
        self.m
            .insert(format!("{}{rel}", self.p), Param::object(writable));
    }
    fn s(&mut self, rel: &str, v: &str, writable: bool) {
        self.t(rel, v, "xsd:string", writable);
    }
    fn t(&mut self, rel: &str, v: &str, ty: &str, writable: bool) {
        self.m
            .insert(format!("{}{rel}", self.p), Param::leaf(v, ty, writable));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting_and_multiline() {
        let rows = parse_csv("a,b\r\n\"x,1\",\"he said \"\"hi\"\"\nline2\"\n,\n").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1], vec!["x,1", "he said \"hi\"\nline2"]);
        assert_eq!(rows[2], vec!["", ""]);
        assert!(parse_csv("a,\"b").is_err());
    }

    #[test]
    fn file_name_identity() {
        let id = identity_from_file_name(
            "device-9075BC-G%2D1425G%2DA-ALCLFC265D6F-2023-03-28T160833431Z.csv",
        )
        .unwrap();
        assert_eq!(id.oui, "9075BC");
        assert_eq!(id.product_class, "G-1425G-A");
        assert_eq!(id.serial_number, "ALCLFC265D6F");
        assert_eq!(id.device_id(), "9075BC-G%2D1425G%2DA-ALCLFC265D6F");
        assert!(identity_from_file_name("notes.csv").is_none());
    }

    #[test]
    fn value_validation() {
        assert!(valid_value("xsd:unsignedInt", "42"));
        assert!(!valid_value("xsd:unsignedInt", "abc"));
        assert!(!valid_value("xsd:unsignedInt", "-1"));
        assert!(valid_value("xsd:int", "-1"));
        assert!(valid_value("xsd:boolean", "1"));
        assert!(!valid_value("xsd:boolean", "yes"));
        assert!(valid_value("xsd:dateTime", "2024-01-02T03:04:05.123Z"));
        assert!(!valid_value("xsd:dateTime", "2019-03-05T11:54::14"));
        assert!(valid_value("xsd:base64", "aGVsbG8="));
        assert!(!valid_value("xsd:hexBinary", "abc"));
        assert!(types_compatible("xsd:base64", Some("xsd:base64Binary")));
        assert!(!types_compatible("xsd:unsignedInt", Some("xsd:string")));
        assert!(types_compatible("xsd:unsignedInt", None));
        assert_eq!(normalize_type("xsd:unsignedint"), "xsd:unsignedInt");
        assert_eq!(normalize_type(""), "xsd:string");
    }

    #[test]
    fn path_helpers() {
        assert!(is_child("A.B.", "A.B.C"));
        assert!(is_child("A.B.", "A.B.1."));
        assert!(!is_child("A.B.", "A.B.1.C"));
        assert!(!is_child("A.B.", "A.B."));
        assert_eq!(parent_of("A.B.3."), "A.B.");
        assert_eq!(parent_of("A.B.Leaf"), "A.B.");
        assert_eq!(last_segment("A.B.3."), "3");
    }

    #[test]
    fn synthetic_sizes_and_forced() {
        let id = Identity {
            manufacturer: "Sim".into(),
            oui: "001122".into(),
            product_class: "GW".into(),
            serial_number: "S1".into(),
        };
        for (root, n) in [
            (Root::Igd, 300),
            (Root::Device2, 1000),
            (Root::Device1, 200),
        ] {
            let m = synthetic_model(root, &id, n);
            assert!(m.len() >= n && m.len() < n + 10, "{root:?} {}", m.len());
            assert_eq!(Root::detect(&m), Some(root));
            let forced = forced_inform_names(&m, root);
            assert!(forced.iter().any(|f| f.ends_with("ConnectionRequestURL")));
            assert!(forced.iter().all(|f| m.contains_key(f)));
        }
        let m = synthetic_model(Root::Igd, &id, 10);
        let forced = forced_inform_names(&m, Root::Igd);
        assert!(forced
            .last()
            .unwrap()
            .ends_with("WANIPConnection.1.ExternalIPAddress"));
    }
}
