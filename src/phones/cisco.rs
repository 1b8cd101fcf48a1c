//! Cisco (CUCM-style SIP phones, 78xx/88xx): over TFTP (DHCP option 150) the phone first
//! asks for its trust lists (CTL/ITL; answered "file not found", so it accepts unsigned
//! files), then `SEP<MAC>.cnf.xml`; a phone ferroacs does not know, with auto-registration
//! on, gets `XMLDefault.cnf.xml` (the call manager to register with, no account).

use super::{xml_escape, Context, PhoneConfig, Rendered};

fn locale(code: &str) -> &'static str {
    match code {
        "de" => "German_Germany",
        "fr" => "French_France",
        "es" => "Spanish_Spain",
        "it" => "Italian_Italy",
        "nl" => "Dutch_Netherlands",
        _ => "English_United_States",
    }
}

fn codec(c: &str) -> &'static str {
    match c {
        "PCMA" => "g711alaw",
        "PCMU" => "g711ulaw",
        "G722" => "g722",
        "G729" => "g729a",
        _ => "opus",
    }
}

fn call_manager(host: &str, port: u32) -> String {
    format!(
        "    <callManagerGroup>\n      <members>\n        <member priority=\"0\">\n          \
         <callManager>\n            <ports>\n              <ethernetPhonePort>2000</ethernetPhonePort>\n              \
         <sipPort>{port}</sipPort>\n            </ports>\n            \
         <processNodeName>{}</processNodeName>\n          </callManager>\n        </member>\n      \
         </members>\n    </callManagerGroup>\n",
        xml_escape(host)
    )
}

fn el(out: &mut String, indent: usize, name: &str, v: &str) {
    out.push_str(&format!(
        "{:indent$}<{name}>{}</{name}>\n",
        "",
        xml_escape(v),
        indent = indent
    ));
}

/// `SEP<MAC>.cnf.xml`.
pub fn sep(p: &PhoneConfig, _ctx: &Context) -> Rendered {
    let s = &p.settings;
    let first = p.lines.first();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n");
    el(&mut out, 2, "deviceProtocol", "SIP");
    out.push_str("  <devicePool>\n");
    out.push_str("    <dateTimeSetting>\n");
    el(&mut out, 6, "dateTemplate", "D.M.Y");
    // No `timeZone`: Cisco names zones its own way ("Central Europe Standard/Daylight
    // Time"), not by IANA name.
    if let Some(ntp) = &s.ntp_server {
        out.push_str("      <ntps>\n        <ntp>\n");
        el(&mut out, 10, "name", ntp);
        el(&mut out, 10, "ntpMode", "Unicast");
        out.push_str("        </ntp>\n      </ntps>\n");
    }
    out.push_str("    </dateTimeSetting>\n");
    if let Some(l) = first {
        out.push_str(&call_manager(
            &l.registrar,
            l.registrar_port.unwrap_or(5060),
        ));
    }
    out.push_str("  </devicePool>\n");
    out.push_str("  <sipProfile>\n    <sipProxies>\n");
    if let Some(l) = first {
        if !l.outbound_proxy.is_empty() {
            el(&mut out, 6, "outboundProxy", &l.outbound_proxy);
            el(
                &mut out,
                6,
                "outboundProxyPort",
                &l.outbound_proxy_port.unwrap_or(5060).to_string(),
            );
        }
    }
    el(&mut out, 6, "registerWithProxy", "true");
    out.push_str("    </sipProxies>\n");
    if let Some(l) = first {
        if let Some(c) = p.codecs_of(l).first() {
            el(&mut out, 4, "preferredCodec", codec(c));
        }
    }
    if let Some(e) = first.and_then(|l| l.register_expires) {
        el(&mut out, 4, "timerRegisterExpires", &e.to_string());
    }
    el(
        &mut out,
        4,
        "phoneLabel",
        first.map(|l| l.label.as_str()).unwrap_or(""),
    );
    out.push_str("    <sipLines>\n");
    for l in &p.lines {
        out.push_str(&format!("      <line button=\"{}\">\n", l.number));
        el(&mut out, 8, "featureID", "9");
        el(&mut out, 8, "featureLabel", &l.label);
        el(&mut out, 8, "proxy", "USECALLMANAGER");
        el(
            &mut out,
            8,
            "port",
            &l.registrar_port.unwrap_or(5060).to_string(),
        );
        el(&mut out, 8, "name", &l.user);
        el(&mut out, 8, "displayName", &l.display_name);
        el(&mut out, 8, "autoAnswer", "false");
        el(&mut out, 8, "callWaiting", "3");
        el(&mut out, 8, "authName", &l.auth_user);
        el(&mut out, 8, "authPassword", &l.password);
        el(&mut out, 8, "sharedLine", "false");
        el(&mut out, 8, "messagesNumber", &l.voicemail);
        el(&mut out, 8, "contact", &l.user);
        out.push_str("      </line>\n");
    }
    out.push_str("    </sipLines>\n  </sipProfile>\n");
    // A load name (not a URL) is given without `.loads`: the phone appends it and asks
    // the TFTP server for `<load>.loads`.
    let load = s.firmware_file.as_deref().unwrap_or("");
    let load = if load.contains("://") {
        load
    } else {
        load.strip_suffix(".loads").unwrap_or(load)
    };
    el(&mut out, 2, "loadInformation", load);
    if let Some(lang) = &s.language {
        out.push_str("  <userLocale>\n");
        el(&mut out, 4, "name", locale(lang));
        el(&mut out, 4, "langCode", lang);
        out.push_str("  </userLocale>\n");
    }
    for (k, v) in &s.vendor {
        el(&mut out, 2, k, v);
    }
    out.push_str("</device>\n");
    Rendered::xml(out, !p.lines.is_empty())
}

/// `XMLDefault.cnf.xml`: where unknown phones register (none when no default SIP server is
/// configured: "file not found").
pub fn xml_default(ctx: &Context) -> Option<Rendered> {
    let host = ctx.default_sip_server.as_deref()?;
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u32>().is_ok() => (h, p.parse::<u32>().unwrap_or(5060)),
        _ => (host, 5060),
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Default>\n");
    out.push_str(&call_manager(host, port));
    out.push_str("  <loadInformation></loadInformation>\n</Default>\n");
    Some(Rendered::xml(out, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone, xmllint};
    use crate::phones::Vendor;

    #[test]
    fn cisco_files_match_their_golden_files() {
        let mut p = phone(Vendor::Cisco, "cp-8841", "00562bAABBCC");
        p.settings.firmware_file = Some("sip88xx.12-8-1-0001-455".into());
        let d = xml_default(&ctx());
        assert!(d.is_some());
        let files = [
            ("cisco/SEP00562BAABBCC.cnf.xml", sep(&p, &ctx())),
            (
                "cisco/XMLDefault.cnf.xml",
                d.unwrap_or_else(|| sep(&p, &ctx())),
            ),
        ];
        for (name, r) in files {
            golden(name, &r.bytes);
            xmllint(name, &r.bytes);
        }
        let mut c = ctx();
        c.default_sip_server = None;
        assert!(xml_default(&c).is_none());
    }
}
