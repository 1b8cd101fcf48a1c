//! Polycom (UC software, VVX): the phone asks for `<MAC>.cfg`, else `000000000000.cfg`; both
//! are master files (`<APPLICATION APP_FILE_PATH=… CONFIG_FILES=…/>`) naming the firmware
//! and the configuration files to load next. ferroacs lists one per-phone file,
//! `<MAC>-ferroacs.cfg` (`<polycomConfig>` with `reg.N.*` attributes). With
//! `OVERRIDES_DIRECTORY` and `LOG_FILE_DIRECTORY` empty the phone uploads its override file
//! (`<MAC>-phone.cfg`, `<MAC>-web.cfg`) and logs to the same place (PUT), where ferroacs
//! keeps them with the phone.

use super::{utc_offset_secs, xml_escape, Context, PhoneConfig, Rendered};

fn master_xml(config_files: &str, app_file: &str) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n\
         <APPLICATION APP_FILE_PATH=\"{}\" CONFIG_FILES=\"{}\" MISC_FILES=\"\" \
         LOG_FILE_DIRECTORY=\"\" OVERRIDES_DIRECTORY=\"\" CONTACTS_DIRECTORY=\"\" \
         LICENSE_DIRECTORY=\"\"/>\n",
        xml_escape(app_file),
        xml_escape(config_files)
    )
}

/// `000000000000.cfg`: for a phone without its own master; the phone substitutes its MAC.
pub fn default_master(_ctx: &Context) -> Rendered {
    Rendered::xml(
        master_xml("[PHONE_MAC_ADDRESS]-ferroacs.cfg", "sip.ld"),
        false,
    )
}

/// `<MAC>.cfg`: the phone's master file.
pub fn master(p: &PhoneConfig, _ctx: &Context) -> Rendered {
    let app = p.settings.firmware_file.as_deref().unwrap_or("sip.ld");
    Rendered::xml(
        master_xml(&format!("{}-ferroacs.cfg", p.mac.upper()), app),
        false,
    )
}

fn lang(code: &str) -> &'static str {
    match code {
        "de" => "German_Germany",
        "fr" => "French_France",
        "es" => "Spanish_Spain",
        "it" => "Italian_Italy",
        "nl" => "Dutch_Netherlands",
        "pt" => "Portuguese_Portugal",
        _ => "English_United_Kingdom",
    }
}

fn codec_param(c: &str) -> &'static str {
    match c {
        "PCMA" => "G711_A",
        "PCMU" => "G711_Mu",
        "G722" => "G722",
        "G729" => "G729_AB",
        _ => "OPUS",
    }
}

fn transport(t: &str) -> &'static str {
    match t.to_ascii_uppercase().as_str() {
        "TCP" => "TCPOnly",
        "TLS" => "TLS",
        _ => "UDPOnly",
    }
}

/// One element with attributes, one attribute per line.
fn element(out: &mut String, name: &str, attrs: &[(String, String)]) {
    if attrs.is_empty() {
        return;
    }
    out.push_str(&format!("  <{name}"));
    for (k, v) in attrs {
        out.push_str(&format!("\n    {k}=\"{}\"", xml_escape(v)));
    }
    out.push_str("/>\n");
}

/// `<MAC>-ferroacs.cfg`: the lines and settings of the phone.
pub fn phone(p: &PhoneConfig, ctx: &Context) -> Rendered {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<polycomConfig>\n",
    );
    let mut reg = Vec::new();
    for l in &p.lines {
        let n = l.number;
        let mut a = |k: &str, v: String| reg.push((format!("reg.{n}.{k}"), v));
        a(
            "address",
            if l.registrar.is_empty() {
                l.user.clone()
            } else {
                format!("{}@{}", l.user, l.registrar)
            },
        );
        a("auth.userId", l.auth_user.clone());
        a("auth.password", l.password.clone());
        a("displayName", l.display_name.clone());
        a("label", l.label.clone());
        a("server.1.address", l.registrar.clone());
        if let Some(port) = l.registrar_port {
            a("server.1.port", port.to_string());
        }
        a("server.1.transport", transport(&l.transport).into());
        if let Some(e) = l.register_expires {
            a("server.1.expires", e.to_string());
        }
        if !l.outbound_proxy.is_empty() {
            a("outboundProxy.address", l.outbound_proxy.clone());
            if let Some(port) = l.outbound_proxy_port {
                a("outboundProxy.port", port.to_string());
            }
        }
        if !l.voicemail.is_empty() {
            reg.push((format!("msg.mwi.{n}.callBackMode"), "contact".into()));
            reg.push((format!("msg.mwi.{n}.callBack"), l.voicemail.clone()));
        }
        if !l.enabled {
            reg.push((format!("reg.{n}.server.1.register"), "0".into()));
        }
    }
    element(&mut out, "reg", &reg);
    let s = &p.settings;
    let mut tcp = Vec::new();
    if let Some(ntp) = &s.ntp_server {
        tcp.push(("tcpIpApp.sntp.address".to_string(), ntp.clone()));
    }
    if let Some(tz) = &s.time_zone {
        tcp.push((
            "tcpIpApp.sntp.gmtOffset".to_string(),
            utc_offset_secs(tz, ctx.now_ms).to_string(),
        ));
    }
    element(&mut out, "tcpIpApp", &tcp);
    if let Some(l) = &s.language {
        element(&mut out, "lcl", &[("lcl.ml.lang".into(), lang(l).into())]);
    }
    let codecs = p
        .lines
        .first()
        .map(|l| p.codecs_of(l))
        .unwrap_or_else(|| p.codecs_of(&super::Line::default()));
    let voice: Vec<(String, String)> = codecs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                format!("voice.codecPref.{}", codec_param(c)),
                (i + 1).to_string(),
            )
        })
        .collect();
    element(&mut out, "voice", &voice);
    let vendor: Vec<(String, String)> = s
        .vendor
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    element(&mut out, "ferroacs", &vendor);
    out.push_str("</polycomConfig>\n");
    Rendered::xml(out, !p.lines.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone as test_phone, xmllint};
    use crate::phones::Vendor;

    #[test]
    fn polycom_files_match_their_golden_files() {
        let mut p = test_phone(Vendor::Polycom, "vvx400", "0004f2aabbcc");
        p.settings
            .vendor
            .insert("feature.presence.enabled".into(), "1".into());
        let files = [
            ("polycom/000000000000.cfg", default_master(&ctx())),
            ("polycom/0004F2AABBCC.cfg", master(&p, &ctx())),
            ("polycom/0004F2AABBCC-ferroacs.cfg", phone(&p, &ctx())),
        ];
        for (name, r) in files {
            golden(name, &r.bytes);
            xmllint(name, &r.bytes);
            assert_eq!(r.content_type, "application/xml");
        }
        assert!(phone(&p, &ctx()).secret);
        assert!(!master(&p, &ctx()).secret);
    }
}
