//! The MAC a phone's factory certificate names.
//!
//! Many desk phones (Polycom, Yealink, Cisco, Snom) carry a device certificate issued by
//! their vendor whose subject names the phone's MAC: the common name alone
//! (`0004F2AABBCC`, `00:15:65:aa:bb:cc`), with a prefix (`SEP001122AABBCC`), or among
//! other text (`CP-8841-SEP001122AABBCC`, `Polycom VVX 0004f2aabbcc`); some put it in a
//! subject alternative name. [`mac_of_certificate`] reads the subject's common names and
//! the DNS, URI and e-mail alternative names and finds MACs in them with [`macs_in_text`];
//! every MAC is normalised with [`Mac::parse`]. A certificate naming two different MACs
//! (or none) names no phone.
//!
//! Only the names are read here; whether the certificate is trusted (signed by a CA of
//! `phones.client_ca`, valid now) is the TLS layer's check, made before any of this.

use super::Mac;

/// The MACs written in `s`: 12 hex digits in a row (`001122AABBCC`, also after letters
/// as in `SEP001122AABBCC`), six pairs joined by one `:` or `-` each
/// (`00:11:22:aa:bb:cc`), or three groups of four joined by `.` (`0011.22aa.bbcc`). A run
/// of more hex digits than a MAC has is none (a serial number is not a MAC). Each MAC
/// once, in order of appearance; addresses [`Mac::parse`] refuses (all zero, group
/// addresses) are left out.
pub fn macs_in_text(s: &str) -> Vec<Mac> {
    let mut out: Vec<Mac> = Vec::new();
    let mut push = |candidate: &str| {
        if let Ok(m) = Mac::parse(candidate) {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    };
    // Runs of hex digits and separators; anything else ends a run.
    for run in s.split(|c: char| !(c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'))) {
        // The run's groups of hex digits, each with the separator before it.
        let mut groups: Vec<(Option<char>, &str)> = Vec::new();
        let mut start = 0;
        let mut sep = None;
        for (i, c) in run.char_indices() {
            if matches!(c, ':' | '-' | '.') {
                groups.push((sep, &run[start..i]));
                sep = Some(c);
                start = i + c.len_utf8();
            }
        }
        groups.push((sep, &run[start..]));
        // 12 digits in a row.
        for (_, g) in &groups {
            if g.len() == 12 {
                push(g);
            }
        }
        // Separated forms: a maximal chain of groups of the same length joined by the same
        // separator is a MAC when it has exactly the right number of groups.
        let mut i = 0;
        while i < groups.len() {
            let len = groups[i].1.len();
            let shape = match len {
                2 => Some(6),
                4 => Some(3),
                _ => None,
            };
            let Some(count) = shape else {
                i += 1;
                continue;
            };
            let mut j = i + 1;
            let mut joint = None;
            while j < groups.len() && groups[j].1.len() == len {
                let s = groups[j].0;
                let fits = match (len, s) {
                    (2, Some(':' | '-')) | (4, Some('.')) => joint.is_none() || joint == s,
                    _ => false,
                };
                if !fits {
                    break;
                }
                joint = s;
                j += 1;
            }
            if j - i == count {
                let text: String = groups[i..j].iter().map(|(_, g)| *g).collect();
                push(&text);
            }
            i = j.max(i + 1);
        }
    }
    out
}

/// Why a certificate names no phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMacError {
    /// Not a readable X.509 certificate.
    Unreadable(String),
    /// No MAC in its common name or alternative names.
    NoMac,
    /// Two different MACs: which phone it is cannot be told.
    SeveralMacs(Vec<Mac>),
}

impl std::fmt::Display for CertMacError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertMacError::Unreadable(e) => write!(f, "the certificate cannot be read: {e}"),
            CertMacError::NoMac => write!(
                f,
                "the certificate names no MAC in its subject common name or alternative names"
            ),
            CertMacError::SeveralMacs(m) => write!(
                f,
                "the certificate names several MACs ({}): it identifies no single phone",
                m.iter().map(Mac::lower).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The MAC the certificate (DER) names in its subject's common names or its DNS, URI or
/// e-mail subject alternative names (see the module documentation).
pub fn mac_of_certificate(der: &[u8]) -> Result<Mac, CertMacError> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CertMacError::Unreadable(e.to_string()))?;
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                    names.push((*s).to_string())
                }
                _ => {}
            }
        }
    }
    let mut macs: Vec<Mac> = Vec::new();
    for n in &names {
        for m in macs_in_text(n) {
            if !macs.contains(&m) {
                macs.push(m);
            }
        }
    }
    match macs.len() {
        0 => Err(CertMacError::NoMac),
        1 => Ok(macs[0]),
        _ => Err(CertMacError::SeveralMacs(macs)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn macs(s: &str) -> Vec<String> {
        macs_in_text(s).iter().map(Mac::lower).collect()
    }

    #[test]
    fn usual_spellings() {
        let want = vec!["001122aabbcc".to_string()];
        for s in [
            "001122AABBCC",
            "001122aabbcc",
            "00:11:22:aa:bb:cc",
            "00-11-22-AA-BB-CC",
            "0011.22aa.bbcc",
            "SEP001122AABBCC",
            "CP-8841-SEP001122AABBCC",
            "Polycom VVX 001122aabbcc device",
            "snomD785-001122AABBCC",
            "urn:dev:mac:001122aabbcc",
            "001122aabbcc.phones.example.net",
            "MAC 00:11:22:AA:BB:CC, 001122AABBCC",
        ] {
            assert_eq!(macs(s), want, "{s}");
        }
    }

    #[test]
    fn not_macs() {
        for s in [
            "",
            "phone",
            "0011223344556677",           // 16 digits: a serial number
            "00112233445",                // 11
            "00:11:22:aa:bb",             // five pairs
            "00:11:22:aa:bb:cc:dd",       // seven pairs
            "00:11-22:aa:bb:cc",          // mixed separators
            "000000000000",               // no phone's
            "01:00:5e:00:00:01",          // multicast
            "0011.22aa.bbcc.ddee",        // four groups
            "00.11.22.aa.bb.cc",          // dots join groups of four only
            "Yealink Root CA 2024-01-01", // dates
        ] {
            assert!(macs(s).is_empty(), "{s}: {:?}", macs(s));
        }
    }

    #[test]
    fn two_macs_are_both_found() {
        assert_eq!(
            macs("001122aabbcc 00:11:22:aa:bb:cd"),
            vec!["001122aabbcc".to_string(), "001122aabbcd".to_string()]
        );
    }

    #[test]
    fn certificates() {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let cert = |cn: &str, sans: Vec<SanType>| {
            let mut p = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p.subject_alt_names = sans;
            p.self_signed(&key).unwrap().der().to_vec()
        };
        let m = |s: &str| Mac::parse(s).unwrap();
        assert_eq!(
            mac_of_certificate(&cert("SEP001122AABBCC", vec![])),
            Ok(m("001122aabbcc"))
        );
        assert_eq!(
            mac_of_certificate(&cert(
                "Yealink device",
                vec![SanType::DnsName("00-15-65-aa-bb-cc".try_into().unwrap())]
            )),
            Ok(m("001565aabbcc"))
        );
        // The same MAC twice is one MAC.
        assert_eq!(
            mac_of_certificate(&cert(
                "0004f2aabbcc",
                vec![SanType::DnsName("0004F2AABBCC".try_into().unwrap())]
            )),
            Ok(m("0004f2aabbcc"))
        );
        assert_eq!(
            mac_of_certificate(&cert("a phone", vec![])),
            Err(CertMacError::NoMac)
        );
        assert!(matches!(
            mac_of_certificate(&cert(
                "0004f2aabbcc",
                vec![SanType::DnsName("0004f2aabbcd".try_into().unwrap())]
            )),
            Err(CertMacError::SeveralMacs(_))
        ));
        assert!(matches!(
            mac_of_certificate(b"not a certificate"),
            Err(CertMacError::Unreadable(_))
        ));
    }
}
