//! The one check of a value to set with SetParameterValues, used by tasks, presets and VoIP
//! lines alike.
//!
//! In order: the name must be a parameter name; a given type must be an XML Schema type; what
//! the device reported about the parameter decides first (an object or a parameter it
//! reported read-only is refused, its reported type must match a given one); then the data
//! model of the device's root: the type must match (`xsd:base64Binary` and `xsd:base64` are
//! the same), the value must fit the type and facets, and the parameter must be writable —
//! unless the device itself reported it writable, which wins over the model. Vendor
//! parameters (`X_…`) and parameters no model knows are checked against the given or the
//! reported type only.

use super::{describe, validate_set, validate_value, xsd_type, Registry, RootModel, SetError};

/// What a device reported about a parameter (from its known tree); default: nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reported<'a> {
    pub object: bool,
    pub writable: Option<bool>,
    /// The `xsi:type` the device used, if any.
    pub xsd_type: Option<&'a str>,
}

/// Why a value cannot be set: `name` is the parameter, `message` says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetValueError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for SetValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for SetValueError {}

fn normalize(t: &str) -> &str {
    match t {
        "xsd:base64Binary" => "xsd:base64",
        other => other,
    }
}

/// Whether `value` is a valid literal of the XML Schema type `t` (types not listed pass).
fn fits_type(t: &str, value: &str) -> bool {
    match normalize(t) {
        "xsd:unsignedInt" => value.parse::<u32>().is_ok(),
        "xsd:int" => value.parse::<i32>().is_ok(),
        "xsd:unsignedLong" => value.parse::<u64>().is_ok(),
        "xsd:long" => value.parse::<i64>().is_ok(),
        "xsd:boolean" => matches!(value, "true" | "false" | "1" | "0"),
        "xsd:dateTime" => value.len() >= 19 && value.as_bytes().get(4) == Some(&b'-'),
        _ => true,
    }
}

/// Check one value to set. `roots` are the models the device may implement (its detected
/// root, or [`RootModel::candidates`] when no device is known); the first that defines the
/// parameter applies.
pub fn check_set_value(
    registry: Option<&Registry>,
    roots: &[RootModel],
    name: &str,
    value: &str,
    given_type: Option<&str>,
    reported: Reported<'_>,
) -> Result<(), SetValueError> {
    let err = |message: String| SetValueError {
        name: name.to_string(),
        message,
    };
    if name.is_empty() || name.ends_with('.') || name.len() > 256 {
        return Err(SetValueError {
            name: "values".into(),
            message: format!(
                "{name:?} is not a parameter name (at most 256 characters, not ending in '.')"
            ),
        });
    }
    if let Some(t) = given_type {
        if !t.starts_with("xsd:") {
            return Err(err(format!(
                "type {t:?} is not an XML Schema type such as xsd:string or xsd:unsignedInt"
            )));
        }
    }
    if reported.object {
        return Err(err(
            "is an object; SetParameterValues takes parameter names".into(),
        ));
    }
    if reported.writable == Some(false) {
        return Err(err(
            "is read-only on this device (the device reported it as not writable)".into(),
        ));
    }
    let reported_type = reported.xsd_type.filter(|t| !t.is_empty());
    let vendor = name.split('.').any(|seg| seg.starts_with("X_"));
    let def = (!vendor)
        .then(|| registry.and_then(|r| roots.iter().find_map(|m| r.lookup(*m, name))))
        .flatten();
    if let Some(def) = def {
        let expected = xsd_type(def);
        if let Some(t) = given_type {
            if normalize(t) != expected {
                return Err(err(format!(
                    "type {t} does not match the data model; it takes {expected} ({})",
                    describe(def)
                )));
            }
        }
        let checked = if reported.writable == Some(true) {
            validate_value(def, value).map_err(SetError::from)
        } else {
            validate_set(def, value)
        };
        return checked.map_err(|e| match e {
            SetError::ReadOnly { .. } => err(format!(
                "is read-only ({expected}, {}): devices do not accept values for it",
                describe(def)
            )),
            other => err(format!("{other} (type {expected})")),
        });
    }
    if let (Some(given), Some(known)) = (given_type, reported_type) {
        if normalize(given) != normalize(known) {
            return Err(err(format!(
                "type {given} given, but the device reports {known}"
            )));
        }
    }
    if let Some(t) = given_type.or(reported_type) {
        if !fits_type(t, value) {
            return Err(err(format!("the value {value:?} is not a valid {t}")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(
        roots: &[RootModel],
        name: &str,
        value: &str,
        t: Option<&str>,
        reported: Reported<'_>,
    ) -> Result<(), SetValueError> {
        let reg = Registry::builtin().unwrap();
        check_set_value(Some(reg), roots, name, value, t, reported)
    }

    const IGD: &[RootModel] = &[RootModel::InternetGatewayDevice1];
    const INTERVAL: &str = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";

    #[test]
    fn model_parameters_are_checked_by_type_facets_and_access() {
        let none = Reported::default();
        assert!(check(IGD, INTERVAL, "300", None, none).is_ok());
        assert!(check(IGD, INTERVAL, "300", Some("xsd:unsignedInt"), none).is_ok());
        let e = check(IGD, INTERVAL, "abc", None, none).unwrap_err();
        assert_eq!(e.name, INTERVAL);
        assert!(e.message.contains("unsignedInt"), "{e}");
        let e = check(IGD, INTERVAL, "300", Some("xsd:string"), none).unwrap_err();
        assert!(e.message.contains("does not match"), "{e}");
        let serial = "InternetGatewayDevice.DeviceInfo.SerialNumber";
        let e = check(IGD, serial, "x", None, none).unwrap_err();
        assert!(e.message.contains("read-only"), "{e}");
        // The device's own report wins over the model's access.
        let writable = Reported {
            writable: Some(true),
            ..Reported::default()
        };
        assert!(check(IGD, serial, "x", None, writable).is_ok());
        let ro = Reported {
            writable: Some(false),
            ..Reported::default()
        };
        let e = check(IGD, INTERVAL, "300", None, ro).unwrap_err();
        assert!(e.message.contains("on this device"), "{e}");
        let obj = Reported {
            object: true,
            ..Reported::default()
        };
        assert!(check(IGD, INTERVAL, "300", None, obj).is_err());
    }

    #[test]
    fn names_and_type_names_are_checked() {
        let none = Reported::default();
        for bad in ["", "InternetGatewayDevice.ManagementServer."] {
            let e = check(IGD, bad, "1", None, none).unwrap_err();
            assert_eq!(e.name, "values");
        }
        let e = check(IGD, INTERVAL, "1", Some("unsignedInt"), none).unwrap_err();
        assert!(e.message.contains("XML Schema"), "{e}");
        assert!(check(IGD, "Foo.Bar", "1", Some("int"), none).is_err());
    }

    #[test]
    fn vendor_and_unknown_parameters_are_checked_against_their_type() {
        let none = Reported::default();
        let vendor = "InternetGatewayDevice.X_ACME_Level";
        assert!(check(IGD, vendor, "anything", None, none).is_ok());
        // A given type is a promise: the value must fit it, with or without a device.
        let e = check(IGD, vendor, "-4", Some("xsd:unsignedInt"), none).unwrap_err();
        assert!(e.message.contains("not a valid xsd:unsignedInt"), "{e}");
        let reported = Reported {
            writable: Some(true),
            xsd_type: Some("xsd:unsignedInt"),
            ..Reported::default()
        };
        assert!(check(IGD, vendor, "4", None, reported).is_ok());
        assert!(check(IGD, vendor, "-4", None, reported).is_err());
        assert!(check(IGD, vendor, "4", Some("xsd:string"), reported).is_err());
        // Both spellings of base64 are the same type.
        let b64 = Reported {
            xsd_type: Some("xsd:base64"),
            ..Reported::default()
        };
        assert!(check(IGD, vendor, "QQ==", Some("xsd:base64Binary"), b64).is_ok());
    }
}
