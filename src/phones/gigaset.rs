//! Gigaset IP-DECT: the base fetches the URL it was given (DHCP option 114, Gigaset's
//! redirect server, or the "provisioning server" field), with `%MACD` replaced by its MAC in
//! upper-case hex without separators: ferroacs serves `<MAC>.xml`.
//!
//! - N510/C610/DE410 generation: a `ProviderFrame` with one element per setting, each
//!   carrying its value in a `value` attribute (`<MAC_ADDRESS value="…"/>`,
//!   `<VERSION value="DDMMYYHHMM"/>`, `<PROFILE_NAME class="string" value="…"/>`) and per
//!   account `S_SIP_LOGIN_ID_n`, `S_SIP_PASSWORD_n`, `S_SIP_USER_ID_n`,
//!   `S_SIP_DISPLAYNAME_n`, `S_SIP_DOMAIN_n`, `S_SIP_SERVER_n`, `I_SIP_SERVER_PORT_n`. A
//!   base applies a file only when its MAC is the base's own and its VERSION differs from the
//!   one it applied last, so VERSION comes from [`PhoneConfig::version_ms`] (when the
//!   content last changed), never from the time of the fetch.
//! - N870 IP PRO (multicell): `<provisioning version="1.1" productID="…">` with
//!   `<param name="SIP.Account.<i>.…" value="…"/>`, account `i` = line `i + 1`.
//!
//! What is not from the sources ferroacs relied on (docs/phones.md lists them): the `class`
//! attribute on other elements than `PROFILE_NAME` (`string` for `S_`, `integer` for `I_`,
//! `boolean` for `B_` names), `B_SIP_ACCOUNT_IS_ACTIVE_n`, the firmware elements, and every
//! N870 parameter name but `SIP.Account.<i>.AuthName`.

use super::{xml_escape, Context, PhoneConfig, Rendered};

/// Models that take the N870 `provisioning` format.
const MULTICELL: &[&str] = &["n870", "n870e", "n670"];

/// Whether `model` is a multicell system (N870 format).
pub fn is_multicell(model: &str) -> bool {
    MULTICELL.contains(&model.to_ascii_lowercase().as_str())
}

/// `DDMMYYHHMM` in UTC of `ms`.
pub fn version_stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%d%m%y%H%M")
        .to_string()
}

/// `<MAC>.xml`: the format the model takes.
pub fn phone(p: &PhoneConfig, ctx: &Context) -> Rendered {
    if is_multicell(&p.model) {
        multicell(p, ctx)
    } else {
        provider_frame(p, ctx)
    }
}

/// The `class` of a ProviderFrame element by its name's prefix.
fn class_of(name: &str) -> Option<&'static str> {
    if name.starts_with("S_") {
        Some("string")
    } else if name.starts_with("I_") {
        Some("integer")
    } else if name.starts_with("B_") {
        Some("boolean")
    } else {
        None
    }
}

fn el(out: &mut String, name: &str, value: &str) {
    let class = class_of(name)
        .map(|c| format!(" class=\"{c}\""))
        .unwrap_or_default();
    out.push_str(&format!(
        "    <{name}{class} value=\"{}\"/>\n",
        xml_escape(value)
    ));
}

/// The firmware URL and version the phone should run (per-model file, else settings).
fn firmware(p: &PhoneConfig, ctx: &Context) -> Option<(String, Option<String>)> {
    let s = &p.settings;
    s.firmware_file
        .as_ref()
        .map(|f| (ctx.url_of(f), s.firmware_version.clone()))
}

/// The `ProviderFrame` of an N510/C610/DE410-generation base.
pub fn provider_frame(p: &PhoneConfig, ctx: &Context) -> Rendered {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ProviderFrame>\n  <Provider>\n");
    out.push_str(&format!("    <MAC_ADDRESS value=\"{}\"/>\n", p.mac.upper()));
    out.push_str(&format!(
        "    <VERSION value=\"{}\"/>\n",
        version_stamp(p.version_ms)
    ));
    out.push_str(&format!(
        "    <PROFILE_NAME class=\"string\" value=\"{}\"/>\n",
        xml_escape(
            p.settings
                .vendor
                .get("PROFILE_NAME")
                .map(String::as_str)
                .unwrap_or("ferroacs")
        )
    ));
    for l in &p.lines {
        let n = l.number;
        el(
            &mut out,
            &format!("B_SIP_ACCOUNT_IS_ACTIVE_{n}"),
            if l.enabled { "true" } else { "false" },
        );
        el(&mut out, &format!("S_SIP_LOGIN_ID_{n}"), &l.auth_user);
        el(&mut out, &format!("S_SIP_PASSWORD_{n}"), &l.password);
        el(&mut out, &format!("S_SIP_USER_ID_{n}"), &l.user);
        el(&mut out, &format!("S_SIP_DISPLAYNAME_{n}"), &l.display_name);
        el(&mut out, &format!("S_SIP_DOMAIN_{n}"), &l.registrar);
        el(&mut out, &format!("S_SIP_SERVER_{n}"), &l.registrar);
        el(
            &mut out,
            &format!("I_SIP_SERVER_PORT_{n}"),
            &l.registrar_port.unwrap_or(5060).to_string(),
        );
    }
    if let Some((url, version)) = firmware(p, ctx) {
        el(&mut out, "S_FIRMWARE_URL", &url);
        if let Some(v) = version {
            el(&mut out, "S_FIRMWARE_VERSION", &v);
        }
    }
    for (k, v) in &p.settings.vendor {
        if k != "PROFILE_NAME" {
            el(&mut out, k, v);
        }
    }
    out.push_str("  </Provider>\n</ProviderFrame>\n");
    Rendered::xml(out, !p.lines.is_empty())
}

/// The N870 `provisioning` file: one SIP account per line (handset).
pub fn multicell(p: &PhoneConfig, ctx: &Context) -> Rendered {
    let product = p
        .settings
        .vendor
        .get("productID")
        .cloned()
        .unwrap_or_else(|| p.model.to_ascii_lowercase());
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<provisioning version=\"1.1\" productID=\"{}\">\n",
        xml_escape(&product)
    );
    let mut param = |name: &str, value: &str| {
        out.push_str(&format!(
            "  <param name=\"{}\" value=\"{}\"/>\n",
            xml_escape(name),
            xml_escape(value)
        ));
    };
    for l in &p.lines {
        let i = l.number.saturating_sub(1);
        let a = |k: &str| format!("SIP.Account.{i}.{k}");
        param(&a("Active"), if l.enabled { "1" } else { "0" });
        param(&a("AuthName"), &l.auth_user);
        param(&a("AuthPassword"), &l.password);
        param(&a("UserName"), &l.user);
        param(&a("DisplayName"), &l.display_name);
        param(&a("Domain"), &l.registrar);
        param(&a("Server"), &l.registrar);
        param(
            &a("ServerPort"),
            &l.registrar_port.unwrap_or(5060).to_string(),
        );
        if !l.outbound_proxy.is_empty() {
            param(&a("OutboundProxy"), &l.outbound_proxy);
            if let Some(port) = l.outbound_proxy_port {
                param(&a("OutboundProxyPort"), &port.to_string());
            }
        }
        param(&a("Transport"), &l.transport);
    }
    if let Some((url, version)) = firmware(p, ctx) {
        param("Firmware.URL", &url);
        if let Some(v) = version {
            param("Firmware.Version", &v);
        }
    }
    if let Some(ntp) = &p.settings.ntp_server {
        param("Time.NTPServer", ntp);
    }
    for (k, v) in &p.settings.vendor {
        if k != "productID" {
            param(k, v);
        }
    }
    out.push_str("</provisioning>\n");
    Rendered::xml(out, !p.lines.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone as test_phone, xmllint};
    use crate::phones::Vendor;

    #[test]
    fn n510_provider_frame_matches_its_golden_file() {
        let p = test_phone(Vendor::Gigaset, "n510", "7c2f80aabbcc");
        let r = phone(&p, &ctx());
        golden("gigaset/7C2F80AABBCC-n510.xml", &r.bytes);
        xmllint("gigaset n510", &r.bytes);
        assert!(r.secret);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(
            text.contains("<MAC_ADDRESS value=\"7C2F80AABBCC\"/>"),
            "{text}"
        );
        assert!(text.contains("<VERSION value=\"1401261415\"/>"), "{text}");
    }

    #[test]
    fn n870_provisioning_matches_its_golden_file() {
        let p = test_phone(Vendor::Gigaset, "n870", "7c2f80aabbcd");
        let r = phone(&p, &ctx());
        golden("gigaset/7C2F80AABBCD-n870.xml", &r.bytes);
        xmllint("gigaset n870", &r.bytes);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.contains("<provisioning version=\"1.1\" productID=\"n870\">"));
        assert!(text.contains("name=\"SIP.Account.1.AuthName\" value=\"auth1002\""));
    }

    #[test]
    fn stamps_are_utc_day_month_year_hour_minute() {
        assert_eq!(version_stamp(1_768_400_100_000), "1401261415");
        assert_eq!(version_stamp(0), "0101700000");
        assert!(is_multicell("N870") && !is_multicell("n510"));
    }
}
