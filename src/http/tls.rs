//! rustls server configuration from PEM files, and the client certificates of the CWMP
//! listener.
//!
//! The CWMP listener trusts two kinds of client certificates, each with its own CAs:
//! CPEs' (`cwmp.tls_client_ca`) and phones' (`phones.client_ca`). The handshake accepts a
//! chain that verifies against either; after it, [`ClientCas::classify`] tells per
//! connection WHICH of the two the chain verifies against, and only that decides what the
//! certificate is good for: a CPE certificate authenticates a CPE on the CWMP endpoint, a
//! phone certificate opens its phone's files on `/prov/cert/`, never the other way round.
//! A chain that verifies against both (overlapping bundles) is good for neither; the same
//! CA in both bundles is refused at start.
//!
//! With `cwmp.tls_client_ca` alone the handshake requires a certificate (as it always
//! did); once `phones.client_ca` is set it is optional, so that phones without one keep
//! their token and Digest URLs, and the CWMP endpoint refuses requests without a CPE
//! certificate itself.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

/// Which configured CA a client certificate chain verifies against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCa {
    /// `cwmp.tls_client_ca`: a CPE.
    Cpe,
    /// `phones.client_ca`: a phone.
    Phone,
}

/// The client certificate of a connection, by the CA its chain verifies against
/// ([`crate::http::tls::ClientCas::classify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// None, or one that is good for nothing here.
    None,
    /// Signed by `cwmp.tls_client_ca`: authenticates a CPE.
    Cpe,
    /// Signed by `phones.client_ca`: the MAC its names give, or why they name no phone.
    Phone(Result<crate::phones::Mac, crate::phones::cert::CertMacError>),
}

/// The client certificate CAs of the CWMP listener.
#[derive(Debug)]
pub struct ClientCas {
    cpe: Option<Arc<dyn ClientCertVerifier>>,
    phone: Option<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    provider: Arc<CryptoProvider>,
}

fn read_roots(key: &str, files: &[&Path], roots: &mut RootCertStore) -> anyhow::Result<()> {
    for ca in files {
        let mut n = 0;
        for c in CertificateDer::pem_file_iter(ca)
            .map_err(|e| anyhow::anyhow!("{key}: cannot read CA bundle {}: {e}", ca.display()))?
        {
            let c = c.map_err(|e| anyhow::anyhow!("{key}: bad PEM in {}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| {
                anyhow::anyhow!("{key}: bad CA certificate in {}: {e}", ca.display())
            })?;
            n += 1;
        }
        if n == 0 {
            anyhow::bail!("{key}: no certificate found in {}", ca.display());
        }
    }
    Ok(())
}

impl ClientCas {
    /// Load the CPE bundle and the phone bundles. `None` when neither is configured.
    pub fn load(cpe: Option<&Path>, phones: &[&Path]) -> anyhow::Result<Option<ClientCas>> {
        if cpe.is_none() && phones.is_empty() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = |roots: RootCertStore| -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| anyhow::anyhow!("client certificate verifier: {e}"))?;
            Ok(v)
        };
        let mut cpe_roots = RootCertStore::empty();
        if let Some(ca) = cpe {
            read_roots("cwmp.tls_client_ca", &[ca], &mut cpe_roots)?;
        }
        let mut phone_roots = RootCertStore::empty();
        read_roots("phones.client_ca", phones, &mut phone_roots)?;
        // The same CA for both would let either kind pass as the other.
        for a in &phone_roots.roots {
            if cpe_roots.roots.iter().any(|b| {
                a.subject == b.subject && a.subject_public_key_info == b.subject_public_key_info
            }) {
                anyhow::bail!(
                    "phones.client_ca and cwmp.tls_client_ca share a CA: a phone's certificate could pass as a \
                     CPE's and the other way round; give phones and CPEs different CAs"
                );
            }
        }
        let hints: Vec<DistinguishedName> = cpe_roots
            .subjects()
            .into_iter()
            .chain(phone_roots.subjects())
            .collect();
        Ok(Some(ClientCas {
            cpe: if cpe.is_some() {
                Some(verifier(cpe_roots)?)
            } else {
                None
            },
            phone: if phones.is_empty() {
                None
            } else {
                Some(verifier(phone_roots)?)
            },
            hints,
            provider,
        }))
    }

    /// Which configured CA the chain (end entity first) verifies against now: `None` when
    /// none, or both (then it is good for neither, and that is logged).
    pub fn classify(&self, chain: &[CertificateDer<'_>]) -> Option<ClientCa> {
        let (end, intermediates) = chain.split_first()?;
        let now = UnixTime::now();
        let ok = |v: &Option<Arc<dyn ClientCertVerifier>>| {
            v.as_ref()
                .is_some_and(|v| v.verify_client_cert(end, intermediates, now).is_ok())
        };
        match (ok(&self.cpe), ok(&self.phone)) {
            (true, false) => Some(ClientCa::Cpe),
            (false, true) => Some(ClientCa::Phone),
            (true, true) => {
                tracing::warn!(
                    "a client certificate verifies against both cwmp.tls_client_ca and phones.client_ca: \
                     accepted as neither (make the two CA bundles disjoint)"
                );
                None
            }
            (false, false) => None,
        }
    }

    /// Whether the handshake must carry a certificate: only when CPE certificates are
    /// required and phones do not use certificates (phones without one must get through).
    fn mandatory(&self) -> bool {
        self.cpe.is_some() && self.phone.is_none()
    }
}

impl ClientCertVerifier for ClientCas {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut last = rustls::Error::General("no client certificate CA is configured".into());
        for v in [&self.cpe, &self.phone].into_iter().flatten() {
            match v.verify_client_cert(end_entity, intermediates, now) {
                Ok(ok) => return Ok(ok),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Build a TLS server config. With `client_cas`, clients are asked for a certificate
/// signed by one of their CAs (required when only CPE certificates are configured).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_cas: Option<Arc<ClientCas>>,
) -> anyhow::Result<ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("bad PEM certificate in {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS set-up: {e}"))?;
    let builder = match client_cas {
        Some(cas) => builder.with_client_cert_verifier(cas),
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("certificate {} and its key do not fit: {e}", cert.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
    }

    fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        CertificateParams::new(vec!["0004f2aabbcc".to_string()])
            .unwrap()
            .signed_by(&key, issuer)
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn each_certificate_is_classified_by_its_own_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cpe, phone, rogue) = (ca(), ca(), ca());
        let (cp, pp) = (dir.path().join("cpe.pem"), dir.path().join("phone.pem"));
        std::fs::write(&cp, cpe.pem()).unwrap();
        std::fs::write(&pp, phone.pem()).unwrap();
        let cas = ClientCas::load(Some(&cp), &[&pp]).unwrap().unwrap();
        assert!(
            !cas.client_auth_mandatory(),
            "phones without a certificate get through"
        );
        assert_eq!(cas.classify(&[leaf(&cpe)]), Some(ClientCa::Cpe));
        assert_eq!(cas.classify(&[leaf(&phone)]), Some(ClientCa::Phone));
        assert_eq!(cas.classify(&[leaf(&rogue)]), None);
        assert_eq!(cas.classify(&[]), None);
        // CPE certificates only: required in the handshake, as before phones had any.
        let only_cpe = ClientCas::load(Some(&cp), &[]).unwrap().unwrap();
        assert!(only_cpe.client_auth_mandatory());
        assert_eq!(only_cpe.classify(&[leaf(&phone)]), None);
        assert!(ClientCas::load(None, &[]).unwrap().is_none());
    }

    #[test]
    fn one_ca_for_both_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = ca();
        let p = dir.path().join("shared.pem");
        std::fs::write(&p, shared.pem()).unwrap();
        let e = ClientCas::load(Some(&p), &[&p]).unwrap_err().to_string();
        assert!(e.contains("share a CA"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = ClientCas::load(None, &[&empty]).unwrap_err().to_string();
        assert!(e.contains("no certificate found"), "{e}");
    }
}
