//! What a requested file name is: the names each vendor's phones ask for, in the order
//! they ask. A name that is none of them is "not found"; a name with a path separator, a
//! dot segment or a byte outside printable ASCII is refused before it is looked at.

use super::{Mac, Vendor};

/// The longest file name looked at.
pub const MAX_NAME: usize = 128;

/// A file a phone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRequest {
    /// Polycom's default master `000000000000.cfg` (no phone-specific content).
    PolycomDefaultMaster,
    /// `<MAC>.cfg` in either case: Polycom's master file or Yealink's per-phone file; the
    /// phone's vendor decides.
    MacCfg(Mac),
    /// Polycom `<MAC>-ferroacs.cfg`: the per-phone file the master lists.
    PolycomPhone(Mac),
    /// Polycom uploads: `<MAC>-phone.cfg`, `<MAC>-web.cfg` (overrides), `<MAC>-app.log`,
    /// `<MAC>-boot.log`; read back by the phone too. The name is the part after the MAC.
    PolycomUpload(Mac, String),
    /// Yealink common file `y0000000000XX.cfg`, XX the model code.
    YealinkCommon(String),
    /// Yealink boot file: `y000000000000.boot` (None) or `<mac>.boot`.
    YealinkBoot(Option<Mac>),
    /// Grandstream `cfg<mac>.xml`.
    GrandstreamMac(Mac),
    /// Grandstream legacy binary `cfg<mac>` / `cfg<mac>.bin`: never served (the phone then
    /// asks for the XML file).
    GrandstreamBinary(Mac),
    /// Grandstream `cfg<model>.xml` (lower case).
    GrandstreamModel(String),
    /// Grandstream `cfg.xml`.
    GrandstreamGlobal,
    /// Cisco `SEP<MAC>.cnf.xml`.
    CiscoSep(Mac),
    /// Cisco `XMLDefault.cnf.xml` (phones not known yet, with auto-registration).
    CiscoDefault,
    /// Cisco trust lists (`CTLFile.tlv`, `ITLFile.tlv`, `CTLSEP<MAC>.tlv`, `ITLSEP<MAC>.tlv`):
    /// always "file not found", so the phone accepts unsigned configuration files.
    CiscoTrustList,
    /// Snom `snom<model>-<MAC>.htm`.
    SnomPhone(String, Mac),
    /// Gigaset `<MAC>.xml` (the `%MACD` of its provisioning URL template: upper-case hex,
    /// no separators; either case accepted).
    GigasetMac(Mac),
}

impl FileRequest {
    /// The phone the name identifies, if any.
    pub fn mac(&self) -> Option<Mac> {
        use FileRequest as F;
        match self {
            F::MacCfg(m)
            | F::PolycomPhone(m)
            | F::PolycomUpload(m, _)
            | F::YealinkBoot(Some(m))
            | F::GrandstreamMac(m)
            | F::GrandstreamBinary(m)
            | F::CiscoSep(m)
            | F::SnomPhone(_, m)
            | F::GigasetMac(m) => Some(*m),
            _ => None,
        }
    }

    /// The vendor the name alone tells (for auto-registration); `MacCfg` is ambiguous.
    pub fn vendor(&self) -> Option<Vendor> {
        use FileRequest as F;
        match self {
            F::PolycomDefaultMaster | F::PolycomPhone(_) | F::PolycomUpload(..) => {
                Some(Vendor::Polycom)
            }
            F::YealinkCommon(_) | F::YealinkBoot(_) => Some(Vendor::Yealink),
            F::GrandstreamMac(_)
            | F::GrandstreamBinary(_)
            | F::GrandstreamModel(_)
            | F::GrandstreamGlobal => Some(Vendor::Grandstream),
            F::CiscoSep(_) | F::CiscoDefault | F::CiscoTrustList => Some(Vendor::Cisco),
            F::SnomPhone(..) => Some(Vendor::Snom),
            F::GigasetMac(_) => Some(Vendor::Gigaset),
            F::MacCfg(_) => None,
        }
    }

    /// Whether the file holds a phone's accounts (so its URL needs a secret).
    pub fn is_per_phone(&self) -> bool {
        self.mac().is_some()
    }
}

/// Why a name is refused outright (400), as opposed to simply not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadName(pub &'static str);

/// The file names phones upload (Polycom overrides and logs).
const POLYCOM_UPLOADS: &[&str] = &["-phone.cfg", "-web.cfg", "-app.log", "-boot.log"];

fn mac12(s: &str) -> Option<Mac> {
    if s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        Mac::parse(s).ok()
    } else {
        None
    }
}

/// Check a requested name: one path segment of printable ASCII, no dot segment.
pub fn check_name(name: &str) -> Result<(), BadName> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(BadName("the file name is empty or too long"));
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." || name.starts_with("..") {
        return Err(BadName("the file name must not contain a path"));
    }
    if !name.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(BadName("the file name must be printable ASCII"));
    }
    if name.contains('%') {
        // Still encoded after the server decoded the path once (`%252e`, `%2F`).
        return Err(BadName("the file name must not contain encoded characters"));
    }
    Ok(())
}

/// What `name` is. `Ok(None)`: a valid name no phone of ours asks for (404).
pub fn parse(name: &str) -> Result<Option<FileRequest>, BadName> {
    use FileRequest as F;
    check_name(name)?;
    let lower = name.to_ascii_lowercase();
    if lower == "000000000000.cfg" {
        return Ok(Some(F::PolycomDefaultMaster));
    }
    if lower == "y000000000000.boot" {
        return Ok(Some(F::YealinkBoot(None)));
    }
    if lower == "cfg.xml" {
        return Ok(Some(F::GrandstreamGlobal));
    }
    if lower == "xmldefault.cnf.xml" {
        return Ok(Some(F::CiscoDefault));
    }
    if matches!(lower.as_str(), "ctlfile.tlv" | "itlfile.tlv")
        || ((lower.starts_with("ctlsep") || lower.starts_with("itlsep")) && lower.ends_with(".tlv"))
    {
        return Ok(Some(F::CiscoTrustList));
    }
    if let Some(stem) = lower.strip_suffix(".cfg") {
        if let Some(m) = mac12(stem) {
            return Ok(Some(F::MacCfg(m)));
        }
        if let Some(code) = stem.strip_prefix("y0000000000") {
            if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Ok(Some(F::YealinkCommon(code.to_string())));
            }
        }
        if let Some(m) = stem.strip_suffix("-ferroacs").and_then(mac12) {
            return Ok(Some(F::PolycomPhone(m)));
        }
    }
    if lower.len() > 12 {
        if let Some(m) = mac12(&lower[..12]) {
            let rest = &lower[12..];
            if POLYCOM_UPLOADS.contains(&rest) {
                return Ok(Some(F::PolycomUpload(m, rest.to_string())));
            }
        }
    }
    if let Some(m) = lower.strip_suffix(".xml").and_then(mac12) {
        return Ok(Some(F::GigasetMac(m)));
    }
    if let Some(m) = lower.strip_suffix(".boot").and_then(mac12) {
        return Ok(Some(F::YealinkBoot(Some(m))));
    }
    if let Some(rest) = lower.strip_prefix("cfg") {
        if let Some(m) = rest.strip_suffix(".xml").and_then(mac12) {
            return Ok(Some(F::GrandstreamMac(m)));
        }
        if let Some(m) = mac12(rest).or_else(|| rest.strip_suffix(".bin").and_then(mac12)) {
            return Ok(Some(F::GrandstreamBinary(m)));
        }
        if let Some(model) = rest.strip_suffix(".xml") {
            if !model.is_empty()
                && model.len() <= 32
                && model.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Ok(Some(F::GrandstreamModel(model.to_string())));
            }
        }
    }
    if let Some(m) = lower
        .strip_prefix("sep")
        .and_then(|r| r.strip_suffix(".cnf.xml"))
        .and_then(mac12)
    {
        return Ok(Some(F::CiscoSep(m)));
    }
    if let Some(rest) = lower
        .strip_prefix("snom")
        .and_then(|r| r.strip_suffix(".htm"))
    {
        if let Some((model, mac)) = rest.rsplit_once('-') {
            if let Some(m) = mac12(mac) {
                if !model.is_empty() && model.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Ok(Some(F::SnomPhone(model.to_string(), m)));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use FileRequest as F;

    fn m(s: &str) -> Mac {
        Mac::parse(s).unwrap()
    }

    #[test]
    fn every_vendor_name_is_recognised() {
        let mac = m("0004f2aabbcc");
        for (name, want) in [
            ("000000000000.cfg", F::PolycomDefaultMaster),
            ("0004F2AABBCC.cfg", F::MacCfg(mac)),
            ("0004f2aabbcc.cfg", F::MacCfg(mac)),
            ("0004F2AABBCC-ferroacs.cfg", F::PolycomPhone(mac)),
            (
                "0004F2AABBCC-phone.cfg",
                F::PolycomUpload(mac, "-phone.cfg".into()),
            ),
            (
                "0004F2AABBCC-app.log",
                F::PolycomUpload(mac, "-app.log".into()),
            ),
            ("y000000000028.cfg", F::YealinkCommon("28".into())),
            ("y000000000000.boot", F::YealinkBoot(None)),
            ("0004f2aabbcc.boot", F::YealinkBoot(Some(mac))),
            ("cfg0004f2aabbcc.xml", F::GrandstreamMac(mac)),
            ("cfg0004f2aabbcc", F::GrandstreamBinary(mac)),
            ("cfg0004f2aabbcc.bin", F::GrandstreamBinary(mac)),
            ("cfggxp2170.xml", F::GrandstreamModel("gxp2170".into())),
            ("cfg.xml", F::GrandstreamGlobal),
            ("SEP0004F2AABBCC.cnf.xml", F::CiscoSep(mac)),
            ("XMLDefault.cnf.xml", F::CiscoDefault),
            ("CTLSEP0004F2AABBCC.tlv", F::CiscoTrustList),
            ("ITLFile.tlv", F::CiscoTrustList),
            (
                "snomD785-0004F2AABBCC.htm",
                F::SnomPhone("d785".into(), mac),
            ),
            ("0004F2AABBCC.xml", F::GigasetMac(mac)),
            ("0004f2aabbcc.xml", F::GigasetMac(mac)),
        ] {
            assert_eq!(parse(name).unwrap(), Some(want.clone()), "{name}");
        }
        assert_eq!(parse("index.html").unwrap(), None);
        assert_eq!(parse("0004f2aabbc.cfg").unwrap(), None);
        assert_eq!(parse("y00000000002.cfg").unwrap(), None);
    }

    #[test]
    fn paths_and_odd_bytes_are_refused() {
        for name in [
            "../0004f2aabbcc.cfg",
            "..",
            "a/b.cfg",
            "a\\b.cfg",
            "%2e%2e",
            "",
            "x y.cfg",
            "caf\u{e9}.cfg",
            &"a".repeat(200),
        ] {
            assert!(parse(name).is_err(), "{name:?}");
        }
    }
}
