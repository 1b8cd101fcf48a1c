//! Known phone models and their defaults: how many lines they have, Yealink's model code
//! (the `XX` of `y0000000000XX.cfg`), the digest Grandstream's firmware derives its
//! decryption key with, default codecs. A model not listed gets its vendor's defaults.

use super::{KeyDigest, Settings, Vendor};

/// What ferroacs knows about a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    pub vendor: Vendor,
    /// Lower case, as stored (`t46g`, `gxp2170`, `vvx400`, `cp-8841`, `d785`).
    pub model: &'static str,
    /// Line keys that can carry an account.
    pub lines: u32,
    /// Yealink: the model code of the common file.
    pub yealink_code: Option<&'static str>,
    /// Grandstream: the digest its firmware uses for EVP_BytesToKey.
    pub key_digest: Option<KeyDigest>,
}

const fn m(
    vendor: Vendor,
    model: &'static str,
    lines: u32,
    yealink_code: Option<&'static str>,
    key_digest: Option<KeyDigest>,
) -> ModelInfo {
    ModelInfo {
        vendor,
        model,
        lines,
        yealink_code,
        key_digest,
    }
}

use KeyDigest::{Md5, Sha256};
use Vendor::{Cisco, Gigaset, Grandstream, Polycom, Snom, Yealink};

/// Every model with specific defaults.
pub const MODELS: &[ModelInfo] = &[
    m(Polycom, "vvx300", 6, None, None),
    m(Polycom, "vvx400", 12, None, None),
    m(Polycom, "vvx500", 12, None, None),
    m(Polycom, "vvx600", 16, None, None),
    m(Yealink, "t23g", 3, Some("44"), None),
    m(Yealink, "t41p", 6, Some("36"), None),
    m(Yealink, "t42g", 12, Some("29"), None),
    m(Yealink, "t46g", 16, Some("28"), None),
    m(Yealink, "t48g", 16, Some("35"), None),
    m(Grandstream, "gxp1400", 2, None, Some(Md5)),
    m(Grandstream, "gxp1450", 2, None, Some(Md5)),
    m(Grandstream, "gxp2130", 3, None, Some(Sha256)),
    m(Grandstream, "gxp2170", 6, None, Some(Sha256)),
    m(Grandstream, "grp2614", 4, None, Some(Sha256)),
    m(Cisco, "cp-7841", 4, None, None),
    m(Cisco, "cp-8841", 5, None, None),
    m(Cisco, "cp-8861", 5, None, None),
    m(Snom, "d315", 4, None, None),
    m(Snom, "d785", 12, None, None),
    // Gigaset IP-DECT: SIP accounts per base (N510/C610 IP: 6; DE410: assumed 6); the N870
    // multicell system: one account per handset, assumed up to 250.
    m(Gigaset, "n510", 6, None, None),
    m(Gigaset, "c610", 6, None, None),
    m(Gigaset, "de410", 6, None, None),
    m(Gigaset, "n870", 250, None, None),
];

/// The model's entry, or the vendor's generic one.
pub fn info(vendor: Vendor, model: &str) -> ModelInfo {
    let model = model.to_ascii_lowercase();
    MODELS
        .iter()
        .find(|x| x.vendor == vendor && x.model == model)
        .copied()
        .unwrap_or(ModelInfo {
            vendor,
            model: "",
            lines: 16,
            yealink_code: None,
            key_digest: (vendor == Grandstream).then_some(Sha256),
        })
}

/// The Yealink model of a common-file code.
pub fn by_yealink_code(code: &str) -> Option<&'static ModelInfo> {
    MODELS
        .iter()
        .find(|x| x.yealink_code.is_some_and(|c| c.eq_ignore_ascii_case(code)))
}

/// The settings every phone of this model starts from.
pub fn defaults(vendor: Vendor, model: &str) -> Settings {
    let info = info(vendor, model);
    Settings {
        codecs: Some(vec!["PCMA".into(), "PCMU".into(), "G722".into()]),
        encryption_digest: info.key_digest,
        ..Settings::default()
    }
}

/// Refuse a model string that cannot be one (used in file names and XML).
pub fn check_model(model: &str) -> Result<(), String> {
    if model.is_empty() || model.len() > 32 {
        return Err("give the model, 1 to 32 characters (e.g. t46g, vvx400, gxp2170)".into());
    }
    if !model
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "{model:?}: a model has only letters, digits, - and _"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for x in MODELS {
            assert!(seen.insert((x.vendor, x.model)), "{} twice", x.model);
            assert_eq!(x.model, x.model.to_ascii_lowercase());
            assert!(check_model(x.model).is_ok());
            assert_eq!(x.yealink_code.is_some(), x.vendor == Yealink, "{}", x.model);
            assert_eq!(
                x.key_digest.is_some(),
                x.vendor == Grandstream,
                "{}",
                x.model
            );
        }
        assert_eq!(by_yealink_code("28").map(|x| x.model), Some("t46g"));
        assert_eq!(info(Grandstream, "GXP1400").key_digest, Some(Md5));
        assert_eq!(info(Grandstream, "gxp9999").key_digest, Some(Sha256));
        assert!(check_model("t46g/../x").is_err());
    }
}
