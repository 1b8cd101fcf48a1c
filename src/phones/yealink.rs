//! Yealink (T2x/T4x): `key = value` text whose first line must be `#!version:1.0.0.1`. The
//! phone fetches the common file of its model, `y0000000000XX.cfg` (XX = model code), then
//! its own `<mac>.cfg` (lower case). Newer firmware first asks for a boot file
//! (`y000000000000.boot`, `<mac>.boot`) naming the files to load with `include:config`.

use super::models::ModelInfo;
use super::{one_line, utc_offset_secs, Context, PhoneConfig, Rendered};

const HEADER: &str = "#!version:1.0.0.1\n";

fn kv(out: &mut String, k: &str, v: &str) {
    out.push_str(k);
    out.push_str(" = ");
    out.push_str(&one_line(v));
    out.push('\n');
}

fn language(code: &str) -> &'static str {
    match code {
        "de" => "German",
        "fr" => "French",
        "es" => "Spanish",
        "it" => "Italian",
        "nl" => "Dutch",
        "pt" => "Portuguese",
        _ => "English",
    }
}

fn transport(t: &str) -> &'static str {
    match t.to_ascii_uppercase().as_str() {
        "TCP" => "1",
        "TLS" => "2",
        _ => "0",
    }
}

fn dtmf(t: &str) -> &'static str {
    match t {
        "InBand" => "0",
        "SIPInfo" => "2",
        _ => "1",
    }
}

/// `y0000000000XX.cfg`: what every phone of the model gets (no account).
pub fn common(model: &ModelInfo, _ctx: &Context) -> Rendered {
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "## ferroacs: common file of the Yealink {}\n",
        model.model.to_ascii_uppercase()
    ));
    kv(&mut out, "auto_provision.mode", "1");
    Rendered::text(out, false)
}

/// `y000000000000.boot` / `<mac>.boot`: which files to load, and that they replace what the
/// phone has.
pub fn boot(p: Option<&PhoneConfig>, ctx: &Context) -> Rendered {
    let mut out = String::from(HEADER);
    if let Some(p) = p {
        let info = super::models::info(p.vendor, &p.model);
        if let Some(code) = info.yealink_code {
            out.push_str(&format!(
                "include:config \"{}\"\n",
                ctx.url_of(&format!("y0000000000{code}.cfg"))
            ));
        }
        out.push_str(&format!(
            "include:config \"{}\"\n",
            ctx.url_of(&format!("{}.cfg", p.mac.lower()))
        ));
    } else {
        // Without a known phone: its own file, named by the phone ($MAC).
        out.push_str("include:config \"$MAC.cfg\"\n");
    }
    kv(&mut out, "overwrite_mode", "1");
    Rendered::text(out, false)
}

/// `<mac>.cfg`: accounts and settings of the phone.
pub fn mac_cfg(p: &PhoneConfig, ctx: &Context) -> Rendered {
    let mut out = String::from(HEADER);
    out.push_str(&format!(
        "## ferroacs: {} ({})\n",
        p.mac.lower(),
        p.model.to_ascii_uppercase()
    ));
    for l in &p.lines {
        let a = |k: &str| format!("account.{}.{k}", l.number);
        kv(&mut out, &a("enable"), if l.enabled { "1" } else { "0" });
        kv(&mut out, &a("label"), &l.label);
        kv(&mut out, &a("display_name"), &l.display_name);
        kv(&mut out, &a("auth_name"), &l.auth_user);
        kv(&mut out, &a("user_name"), &l.user);
        kv(&mut out, &a("password"), &l.password);
        kv(&mut out, &a("sip_server.1.address"), &l.registrar);
        kv(
            &mut out,
            &a("sip_server.1.port"),
            &l.registrar_port.unwrap_or(5060).to_string(),
        );
        kv(
            &mut out,
            &a("sip_server.1.transport_type"),
            transport(&l.transport),
        );
        if let Some(e) = l.register_expires {
            kv(&mut out, &a("sip_server.1.expires"), &e.to_string());
        }
        if !l.outbound_proxy.is_empty() {
            kv(&mut out, &a("outbound_proxy_enable"), "1");
            kv(&mut out, &a("outbound_proxy.1.address"), &l.outbound_proxy);
            kv(
                &mut out,
                &a("outbound_proxy.1.port"),
                &l.outbound_proxy_port.unwrap_or(5060).to_string(),
            );
        }
        kv(&mut out, &a("dtmf.type"), dtmf(&l.dtmf));
        for (i, c) in p.codecs_of(l).iter().enumerate() {
            let name = c.to_ascii_lowercase();
            kv(&mut out, &a(&format!("codec.{name}.enable")), "1");
            kv(
                &mut out,
                &a(&format!("codec.{name}.priority")),
                &(i + 1).to_string(),
            );
        }
        if !l.voicemail.is_empty() {
            kv(
                &mut out,
                &format!("voice_mail.number.{}", l.number),
                &l.voicemail,
            );
        }
    }
    let s = &p.settings;
    if let Some(ntp) = &s.ntp_server {
        kv(&mut out, "local_time.ntp_server1", ntp);
    }
    if let Some(tz) = &s.time_zone {
        let secs = utc_offset_secs(tz, ctx.now_ms);
        let (sign, secs) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
        let v = if secs % 3600 == 0 {
            format!("{sign}{}", secs / 3600)
        } else {
            format!("{sign}{}:{:02}", secs / 3600, secs % 3600 / 60)
        };
        kv(&mut out, "local_time.time_zone", &v);
    }
    if let Some(l) = &s.language {
        kv(&mut out, "lang.gui", language(l));
        kv(&mut out, "lang.wui", language(l));
    }
    if let Some(fw) = &s.firmware_file {
        kv(&mut out, "firmware.url", &ctx.url_of(fw));
    }
    for (k, v) in &s.vendor {
        kv(&mut out, k, v);
    }
    Rendered::text(out, !p.lines.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone};
    use crate::phones::Vendor;

    #[test]
    fn yealink_files_match_their_golden_files() {
        let mut p = phone(Vendor::Yealink, "t46g", "001565aabbcc");
        p.settings.firmware_file = Some("T46-28.83.0.50.rom".into());
        p.settings
            .vendor
            .insert("local_time.date_format".into(), "5".into());
        let m = crate::phones::models::by_yealink_code("28").copied();
        let files = [
            (
                "yealink/y000000000028.cfg",
                common(&m.unwrap_or(crate::phones::models::MODELS[0]), &ctx()),
            ),
            ("yealink/001565aabbcc.boot", boot(Some(&p), &ctx())),
            ("yealink/y000000000000.boot", boot(None, &ctx())),
            ("yealink/001565aabbcc.cfg", mac_cfg(&p, &ctx())),
        ];
        for (name, r) in files {
            golden(name, &r.bytes);
            assert!(r.bytes.starts_with(b"#!version:1.0.0.1\n"), "{name}");
        }
    }

    #[test]
    fn a_value_cannot_add_a_key() {
        let mut p = phone(Vendor::Yealink, "t46g", "001565aabbcc");
        p.lines[0].display_name = "Eve\naccount.1.sip_server.1.address = evil".into();
        let text = String::from_utf8(mac_cfg(&p, &ctx()).bytes).unwrap_or_default();
        assert!(text
            .lines()
            .all(|l| !l.starts_with("account.1.sip_server.1.address = evil")));
        assert!(text.contains("account.1.display_name = Eve account.1.sip_server"));
    }
}
