//! Grandstream (GXP/GRP): the phone asks for `cfg<mac>` (legacy binary, never served),
//! `cfg<mac>.xml`, then `cfg<model>.xml`, then `cfg.xml`. The files are `gs_provision` XML:
//! `<mac>` (checked by the phone when present) and `<config version="1">` with P-values,
//! Grandstream's numbered configuration keys. The per-phone file may be encrypted
//! ([`encrypt`]) with a per-phone or global password: AES-256-CBC in OpenSSL's `Salted__`
//! format, the phone's firmware deriving the key with SHA-256 or (older firmware) MD5.
//!
//! P-values of accounts 1 to 4 follow Grandstream's configuration templates (account 1:
//! P271 active, P270 name, P47 server, P48 outbound proxy, P35 user, P36 auth user, P34
//! password, P3 display name, P33 voicemail, P32 expiry in minutes, P130 transport; accounts
//! 2, 3, 4 use P401…, P501…, P601…). Other keys go in as vendor keys.

use super::{opensslenc, xml_escape, Context, KeyDigest, PhoneConfig, Rendered};

/// The P-values of one account: active, name, server, proxy, user, auth, password,
/// display name, voicemail, expiry, transport.
fn account_keys(n: u32) -> Option<[&'static str; 11]> {
    match n {
        1 => Some([
            "P271", "P270", "P47", "P48", "P35", "P36", "P34", "P3", "P33", "P32", "P130",
        ]),
        2 => Some([
            "P401", "P417", "P402", "P403", "P404", "P405", "P406", "P407", "P426", "P412", "P448",
        ]),
        3 => Some([
            "P501", "P517", "P502", "P503", "P504", "P505", "P506", "P507", "P526", "P512", "P548",
        ]),
        4 => Some([
            "P601", "P617", "P602", "P603", "P604", "P605", "P606", "P607", "P626", "P612", "P648",
        ]),
        _ => None,
    }
}

fn codec_value(c: &str) -> &'static str {
    match c {
        "PCMU" => "0",
        "PCMA" => "8",
        "G722" => "9",
        "G729" => "18",
        _ => "123",
    }
}

fn doc(mac: Option<&str>, values: &[(String, String)], comments: &[String]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gs_provision version=\"1\">\n");
    if let Some(mac) = mac {
        out.push_str(&format!("  <mac>{mac}</mac>\n"));
    }
    out.push_str("  <config version=\"1\">\n");
    for c in comments {
        out.push_str(&format!(
            "    <!-- {} -->\n",
            xml_escape(c).replace("--", "- -")
        ));
    }
    for (k, v) in values {
        out.push_str(&format!("    <{k}>{}</{k}>\n", xml_escape(v)));
    }
    out.push_str("  </config>\n</gs_provision>\n");
    out
}

/// `cfg<mac>.xml`: accounts and settings of the phone (clear text; see [`encrypt`]).
pub fn phone(p: &PhoneConfig, ctx: &Context) -> Rendered {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut comments = Vec::new();
    let mut push = |k: &str, val: String| v.push((k.to_string(), val));
    for l in &p.lines {
        let Some(k) = account_keys(l.number) else {
            comments.push(format!(
                "line {}: no P-values known for this account; set it with vendor keys",
                l.number
            ));
            continue;
        };
        push(k[0], if l.enabled { "1" } else { "0" }.into());
        push(k[1], l.label.clone());
        let server = match l.registrar_port {
            Some(port) if !l.registrar.is_empty() => format!("{}:{port}", l.registrar),
            _ => l.registrar.clone(),
        };
        push(k[2], server);
        let proxy = match l.outbound_proxy_port {
            Some(port) if !l.outbound_proxy.is_empty() => {
                format!("{}:{port}", l.outbound_proxy)
            }
            _ => l.outbound_proxy.clone(),
        };
        push(k[3], proxy);
        push(k[4], l.user.clone());
        push(k[5], l.auth_user.clone());
        push(k[6], l.password.clone());
        push(k[7], l.display_name.clone());
        push(k[8], l.voicemail.clone());
        if let Some(e) = l.register_expires {
            push(k[9], (e.div_ceil(60)).to_string());
        }
        let t = match l.transport.to_ascii_uppercase().as_str() {
            "TCP" => "1",
            "TLS" => "2",
            _ => "0",
        };
        push(k[10], t.into());
    }
    if let Some(first) = p.lines.first() {
        for (i, c) in p.codecs_of(first).iter().take(6).enumerate() {
            push(&format!("P{}", 57 + i), codec_value(c).into());
        }
    }
    let s = &p.settings;
    if let Some(ntp) = &s.ntp_server {
        push("P30", ntp.clone());
    }
    if let Some(fw) = &s.firmware_file {
        let url = ctx.url_of(fw);
        let dir = url.rsplit_once('/').map(|(d, _)| d).unwrap_or(&url);
        let (scheme, path) = dir.split_once("://").unwrap_or(("http", dir));
        push("P192", path.to_string());
        push(
            "P212",
            match scheme {
                "https" => "2",
                "tftp" => "0",
                _ => "1",
            }
            .into(),
        );
    }
    for (k, val) in &s.vendor {
        push(k, val.clone());
    }
    Rendered::xml(
        doc(Some(&p.mac.lower()), &v, &comments),
        !p.lines.is_empty(),
    )
}

/// `cfg<model>.xml`: nothing model-specific beyond the defaults; an empty configuration
/// keeps the phone from falling back to a stale global file.
pub fn model(model: &str, _ctx: &Context) -> Rendered {
    Rendered::xml(
        doc(None, &[], &[format!("ferroacs: model file of {model}")]),
        false,
    )
}

/// `cfg.xml`: the global file (no account).
pub fn global(_ctx: &Context) -> Rendered {
    Rendered::xml(doc(None, &[], &["ferroacs: global file".into()]), false)
}

/// Encrypt a rendered file the way the phone decrypts it.
pub fn encrypt(r: &Rendered, password: &str, salt: [u8; 8], digest: KeyDigest) -> Rendered {
    Rendered {
        content_type: "application/octet-stream",
        bytes: opensslenc::encrypt(&r.bytes, password, salt, digest),
        secret: r.secret,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::phones::testutil::{ctx, golden, phone as test_phone, xmllint};
    use crate::phones::Vendor;

    #[test]
    fn grandstream_files_match_their_golden_files() {
        let mut p = test_phone(Vendor::Grandstream, "gxp2170", "000b82aabbcc");
        p.settings.vendor.insert("P1362".into(), "de".into());
        p.settings.firmware_file = Some("fw/gxp2170fw.bin".into());
        let files = [
            ("grandstream/cfg000b82aabbcc.xml", phone(&p, &ctx())),
            ("grandstream/cfggxp2170.xml", model("gxp2170", &ctx())),
            ("grandstream/cfg.xml", global(&ctx())),
        ];
        for (name, r) in files {
            golden(name, &r.bytes);
            xmllint(name, &r.bytes);
        }
    }

    #[test]
    fn encrypted_file_opens_with_the_password() {
        let p = test_phone(Vendor::Grandstream, "gxp1400", "000b82aabbcc");
        let clear = phone(&p, &ctx());
        let enc = encrypt(&clear, "pw", *b"saltsalt", KeyDigest::Md5);
        assert!(enc.bytes.starts_with(b"Salted__saltsalt"));
        assert_eq!(
            opensslenc::decrypt(&enc.bytes, "pw", KeyDigest::Md5).unwrap(),
            clear.bytes
        );
    }
}
