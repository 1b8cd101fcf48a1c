//! Snom (D3xx/D7xx): without a file name in its setting server URL the phone asks for
//! `snom<model>.htm` and `snom<model>-<MAC>.htm`. The per-phone file is settings XML,
//! `<settings><phone-settings>` with one element per setting, `idx` for per-account ones,
//! and `perm`: `R` (the user cannot change it), `RW` (the user can), empty (default).
//! ferroacs writes accounts `R` and phone-wide settings `RW`.

use super::{xml_escape, Context, PhoneConfig, Rendered};

fn language(code: &str) -> &'static str {
    match code {
        "de" => "Deutsch",
        "fr" => "Francais",
        "es" => "Espanol",
        "it" => "Italiano",
        "nl" => "Nederlands",
        _ => "English",
    }
}

fn el(out: &mut String, name: &str, idx: Option<u32>, perm: &str, v: &str) {
    let idx = idx.map(|i| format!(" idx=\"{i}\"")).unwrap_or_default();
    out.push_str(&format!(
        "    <{name}{idx} perm=\"{perm}\">{}</{name}>\n",
        xml_escape(v)
    ));
}

/// `snom<model>-<MAC>.htm`.
pub fn phone(p: &PhoneConfig, _ctx: &Context) -> Rendered {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<settings>\n  <phone-settings e=\"2\">\n",
    );
    for l in &p.lines {
        let i = Some(l.number);
        el(
            &mut out,
            "user_active",
            i,
            "R",
            if l.enabled { "on" } else { "off" },
        );
        el(&mut out, "user_name", i, "R", &l.user);
        let host = match l.registrar_port {
            Some(port) => format!("{}:{port}", l.registrar),
            None => l.registrar.clone(),
        };
        el(&mut out, "user_host", i, "R", &host);
        el(&mut out, "user_pname", i, "R", &l.auth_user);
        el(&mut out, "user_pass", i, "R", &l.password);
        el(&mut out, "user_realname", i, "R", &l.display_name);
        if !l.outbound_proxy.is_empty() {
            let proxy = match l.outbound_proxy_port {
                Some(port) => format!("{}:{port}", l.outbound_proxy),
                None => l.outbound_proxy.clone(),
            };
            el(&mut out, "user_outbound", i, "R", &proxy);
        }
        if let Some(e) = l.register_expires {
            el(&mut out, "user_expiry", i, "R", &e.to_string());
        }
        if !l.voicemail.is_empty() {
            el(&mut out, "user_mailbox", i, "R", &l.voicemail);
        }
        let codecs: Vec<String> = p
            .codecs_of(l)
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if !codecs.is_empty() {
            el(&mut out, "codec_priority_list", i, "R", &codecs.join(","));
        }
    }
    let s = &p.settings;
    if let Some(ntp) = &s.ntp_server {
        el(&mut out, "ntp_server", None, "RW", ntp);
    }
    if let Some(l) = &s.language {
        el(&mut out, "language", None, "RW", language(l));
        el(&mut out, "web_language", None, "RW", language(l));
    }
    for (k, v) in &s.vendor {
        el(&mut out, k, None, "RW", v);
    }
    out.push_str("  </phone-settings>\n</settings>\n");
    Rendered::xml(out, !p.lines.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone as test_phone, xmllint};
    use crate::phones::Vendor;

    #[test]
    fn snom_file_matches_its_golden_file() {
        let p = test_phone(Vendor::Snom, "d785", "000413aabbcc");
        let r = phone(&p, &ctx());
        golden("snom/snomD785-000413AABBCC.htm", &r.bytes);
        xmllint("snom", &r.bytes);
    }
}
