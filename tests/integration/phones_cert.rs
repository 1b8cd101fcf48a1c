//! Phones authenticated by their factory client certificate on `/prov/cert/`, over real
//! TLS with curl (`--cert --key --cacert`): CAs and certificates are made in the test with
//! rcgen. The CWMP listener trusts CPE certificates (`cwmp.tls_client_ca`) and phone
//! certificates (`phones.client_ca`) side by side, and neither passes as the other.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SanType,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::cpe::{Device, Root};
use crate::phones::{curl, need};
use crate::support::{Backend, TestApp};

battery!(
    phone_certificates_open_their_own_files_only,
    phone_certificates_register_unknown_phones_and_are_no_cpe_login,
);

const SECRET: &str = "pw-cert-phone-Q81-secret";
const OTHER_SECRET: &str = "pw-other-phone-Z44";
const DIGEST_PW: &str = "Dg-cert-7781-zq";

fn ca(dir: &Path, name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
    ca
}

/// A client certificate with this subject CN and DNS names, signed by `issuer`: the paths
/// of its certificate and key.
fn client(
    dir: &Path,
    file: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    dns: &[&str],
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.subject_alt_names = dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().unwrap()))
        .collect();
    let cert = p.signed_by(&key, issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (
        c.to_str().unwrap().to_string(),
        k.to_str().unwrap().to_string(),
    )
}

struct Pki {
    dir: tempfile::TempDir,
    server_crt: PathBuf,
    server_key: PathBuf,
    cpe_ca: CertifiedIssuer<'static, KeyPair>,
    phone_ca: CertifiedIssuer<'static, KeyPair>,
    rogue_ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let server = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        let (server_crt, server_key) =
            (dir.path().join("server.crt"), dir.path().join("server.key"));
        std::fs::write(&server_crt, server.cert.pem()).unwrap();
        std::fs::write(&server_key, server.signing_key.serialize_pem()).unwrap();
        let cpe_ca = ca(dir.path(), "cpe-ca");
        let phone_ca = ca(dir.path(), "phone-ca");
        let rogue_ca = ca(dir.path(), "rogue-ca");
        Pki {
            dir,
            server_crt,
            server_key,
            cpe_ca,
            phone_ca,
            rogue_ca,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cacert(&self) -> String {
        self.server_crt.to_str().unwrap().to_string()
    }
}

async fn add_phone(api: &Api, mac: &str, extra: Value, password: &str) {
    let mut body = json!({"mac": mac, "vendor": "polycom", "model": "vvx400"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = api.call(Method::POST, "/api/v1/phones", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/api/v1/phones/{mac}/lines/1"),
            Some(json!({"sip_user": "3071", "password": password, "registrar": "sip.example.net"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

fn inform_file(dir: &Path, serial: &str) -> String {
    let mut dev = Device::synthetic(Root::Igd, serial, 10);
    let ev = dev.inform_events(&[]);
    let f = dir.join(format!("inform-{serial}.xml"));
    std::fs::write(&f, dev.inform_envelope(&ev, "1")).unwrap();
    format!("@{}", f.display())
}

/// Both CAs configured: a phone certificate opens its own phone's files (and uploads) on
/// `/prov/cert/` and nothing else; a certificate of another CA, of the CPE CA, or none is
/// refused there; the CWMP endpoint takes only CPE certificates; without a certificate the
/// token and Digest URLs still work; failures count towards the rate limit.
async fn phone_certificates_open_their_own_files_only(b: Backend) {
    if !need("curl") {
        return;
    }
    let pki = Pki::new();
    let d = pki.dir.path();
    // Polycom: the MAC alone as CN; Yealink: in a DNS name; Cisco: SEP<MAC> in other text.
    let own = client(d, "own", &pki.phone_ca, "0004f2000071", &[]);
    let own_dns = client(
        d,
        "own-dns",
        &pki.phone_ca,
        "Polycom VVX",
        &["00-04-F2-00-00-71"],
    );
    let own_cisco = client(
        d,
        "own-cisco",
        &pki.phone_ca,
        "CP-8841-SEP0004F2000071",
        &[],
    );
    let other = client(d, "other", &pki.phone_ca, "00:04:f2:00:00:73", &[]);
    let unknown = client(d, "unknown", &pki.phone_ca, "0004f2000074", &[]);
    let two_macs = client(d, "two", &pki.phone_ca, "0004f2000071", &["0004f2000073"]);
    let no_mac = client(d, "nomac", &pki.phone_ca, "a phone", &[]);
    let rogue = client(d, "rogue", &pki.rogue_ca, "0004f2000071", &[]);
    // A CPE certificate that happens to name the phone's MAC.
    let cpe = client(d, "cpe", &pki.cpe_ca, "0004f2000071", &["cpe-0001"]);
    let (c, k) = (pki.server_crt.clone(), pki.server_key.clone());
    let (cpe_ca, phone_ca) = (pki.path("cpe-ca.pem"), pki.path("phone-ca.pem"));
    let app = TestApp::spawn(b, move |cfg| {
        cfg.cwmp.tls_cert = Some(c);
        cfg.cwmp.tls_key = Some(k);
        cfg.cwmp.tls_client_ca = Some(cpe_ca);
        cfg.phones.client_ca = vec![phone_ca];
        cfg.phones.max_failed_fetches = 12;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    add_phone(
        &api,
        "0004f2000071",
        json!({"digest_user": "vvx-0071", "digest_password": DIGEST_PW}),
        SECRET,
    )
    .await;
    add_phone(&api, "0004f2000073", json!({}), OTHER_SECRET).await;
    let base = format!("https://localhost:{}", app.cwmp_addr().port());
    let cacert = pki.cacert();
    let get = |cert: Option<&(String, String)>, path: &str| {
        let url = format!("{base}{path}");
        let mut args = vec!["--cacert", &cacert];
        if let Some((c, k)) = cert {
            args.extend(["--cert", c.as_str(), "--key", k.as_str()]);
        }
        args.push(&url);
        curl(&args)
    };

    // The right certificate, whatever spelling of the MAC it carries: the phone's files.
    for cert in [&own, &own_dns, &own_cisco] {
        let (s, body) = get(Some(cert), "/prov/cert/0004F2000071-ferroacs.cfg");
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
        let body = String::from_utf8(body).unwrap();
        assert!(
            body.contains(&format!("reg.1.auth.password=\"{SECRET}\"")),
            "{body}"
        );
    }
    let (s, master) = get(Some(&own), "/prov/cert/0004F2000071.cfg");
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&master).contains("0004F2000071-ferroacs.cfg"));
    let f = api.get("/api/v1/phones/0004f2000071/fetches").await;
    assert_eq!(f["items"][0]["status"], 200, "{f}");
    assert_eq!(f["items"][0]["protocol"], "https", "{f}");

    // A certificate for another MAC asking this phone's file: refused and logged.
    let (s, body) = get(Some(&other), "/prov/cert/0004F2000071-ferroacs.cfg");
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    let f = api.get("/api/v1/phones/0004f2000071/fetches").await;
    assert_eq!(f["items"][0]["status"], 404, "{f}");
    assert!(
        crate::support::captured_logs().contains("another MAC presented this phone's credentials")
    );
    // Two MACs, or none: no phone.
    for cert in [&two_macs, &no_mac] {
        let (s, body) = get(Some(cert), "/prov/cert/0004F2000071-ferroacs.cfg");
        assert_eq!(s, 403);
        assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    }
    // An unknown phone with phones.unknown_phones = "reject": 404, nothing created.
    let (s, _) = get(Some(&unknown), "/prov/cert/0004F2000074.cfg");
    assert_eq!(s, 404);
    let (s, _) = api
        .call(Method::GET, "/api/v1/phones/0004f2000074", None)
        .await;
    assert_eq!(s, 404);
    // A certificate of an unknown CA: the handshake fails, no HTTP answer at all.
    let (s, body) = get(Some(&rogue), "/prov/cert/0004F2000071-ferroacs.cfg");
    assert_eq!(s, 0);
    assert!(body.is_empty());
    // A CPE certificate (even one naming this MAC) or none: not a phone's.
    let (s, body) = get(Some(&cpe), "/prov/cert/0004F2000071-ferroacs.cfg");
    assert_eq!(s, 403);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    let (s, body) = get(None, "/prov/cert/0004F2000071-ferroacs.cfg");
    assert_eq!(s, 403);
    assert!(String::from_utf8_lossy(&body).contains("phones.client_ca"));

    // Uploads with the certificate: its own MAC only.
    let upload = d.join("o.cfg");
    let text = "<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity=\"2\"/></PHONE_CONFIG>";
    std::fs::write(&upload, text).unwrap();
    let put = |cert: Option<&(String, String)>, name: &str| {
        let url = format!("{base}/prov/cert/{name}");
        let up = upload.to_str().unwrap().to_string();
        let mut args = vec!["--cacert", &cacert, "-T", &up];
        if let Some((c, k)) = cert {
            args.extend(["--cert", c.as_str(), "--key", k.as_str()]);
        }
        args.push(&url);
        curl(&args).0
    };
    assert_eq!(put(Some(&own), "0004F2000071-phone.cfg"), 201);
    let (s, back) = get(Some(&own), "/prov/cert/0004F2000071-phone.cfg");
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8_lossy(&back), text);
    assert_eq!(put(Some(&own), "0004F2000073-phone.cfg"), 404);
    assert_eq!(put(Some(&cpe), "0004F2000071-web.cfg"), 403);
    assert_eq!(put(None, "0004F2000071-web.cfg"), 403);
    assert_eq!(get(Some(&own), "/prov/cert/0004F2000071-web.cfg").0, 404);

    // Without a certificate the token and Digest URLs still work.
    let url = api.get("/api/v1/phones/0004f2000071/url").await["url"]
        .as_str()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let (s, body) = curl(&[
        "--cacert",
        &cacert,
        &format!("{url}/0004F2000071-ferroacs.cfg"),
    ]);
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains(SECRET));
    let (s, body) = curl(&[
        "--cacert",
        &cacert,
        "--digest",
        "-u",
        &format!("vvx-0071:{DIGEST_PW}"),
        &format!("{base}/prov/auth/0004F2000071-ferroacs.cfg"),
    ]);
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains(SECRET));

    // The CWMP endpoint: a CPE certificate logs the CPE in; a phone certificate (even one
    // whose names look like a CPE's) or none does not.
    let cwmp = format!("{base}/");
    let inform = |cert: Option<&(String, String)>, serial: &str| {
        let data = inform_file(d, serial);
        let mut args = vec![
            "--cacert",
            &cacert,
            "-H",
            "Content-Type: text/xml; charset=utf-8",
            "--data-binary",
            &data,
        ];
        if let Some((c, k)) = cert {
            args.extend(["--cert", c.as_str(), "--key", k.as_str()]);
        }
        args.push(&cwmp);
        curl(&args)
    };
    let (s, body) = inform(Some(&cpe), "CERT1");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("InformResponse"));
    let phone_as_cpe = client(d, "phone-as-cpe", &pki.phone_ca, "cpe-0002", &["cpe-0002"]);
    let (s, body) = inform(Some(&phone_as_cpe), "CERT2");
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    let (s, _) = inform(Some(&own), "CERT3");
    assert_eq!(s, 403);
    let (s, _) = inform(None, "CERT4");
    assert_eq!(s, 403);
    let admin = Api::new(&app, "admin").await;
    let devices = admin.get("/api/v1/devices").await.to_string();
    assert!(devices.contains("CERT1"), "{devices}");
    for refused in ["CERT2", "CERT3", "CERT4"] {
        assert!(!devices.contains(refused), "{devices}");
    }

    // Failures count per source: a certificate trying another phone's files soon gets 429,
    // and then so does the right one for the rest of the minute.
    let mut refused = 0;
    for _ in 0..20 {
        let (s, _) = get(Some(&other), "/prov/cert/0004F2000071.cfg");
        if s == 429 {
            break;
        }
        assert_eq!(s, 404);
        refused += 1;
    }
    assert!(refused < 12, "{refused} refusals before 429");
    assert_eq!(get(Some(&own), "/prov/cert/0004F2000071.cfg").0, 429);
}

/// Only phone certificates configured (the handshake then asks but does not require one):
/// an unknown phone registers itself with `phones.unknown_phones = "accept"` (its own
/// file only), and a phone certificate is no CPE login: the CWMP endpoint asks for Digest.
async fn phone_certificates_register_unknown_phones_and_are_no_cpe_login(b: Backend) {
    if !need("curl") {
        return;
    }
    let pki = Pki::new();
    let d = pki.dir.path();
    let new_phone = client(d, "new", &pki.phone_ca, "SEP0004F2000081", &[]);
    let cpe = client(d, "cpe", &pki.cpe_ca, "cpe-0001", &[]);
    let (c, k) = (pki.server_crt.clone(), pki.server_key.clone());
    let phone_ca = pki.path("phone-ca.pem");
    let app = TestApp::spawn(b, move |cfg| {
        cfg.cwmp.tls_cert = Some(c);
        cfg.cwmp.tls_key = Some(k);
        cfg.phones.client_ca = vec![phone_ca];
        cfg.phones.unknown_phones = ferroacs::config::UnknownDevices::Accept;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let base = format!("https://localhost:{}", app.cwmp_addr().port());
    let cacert = pki.cacert();
    // The URL API names the certificate URL when phones.client_ca is set.
    add_phone(&api, "0004f2000083", json!({}), SECRET).await;
    let urls = api.get("/api/v1/phones/0004f2000083/url").await;
    assert!(
        urls["cert_url"].as_str().unwrap().ends_with("/prov/cert"),
        "{urls}"
    );
    let with = |cert: &(String, String), path: &str| {
        curl(&[
            "-A",
            "FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373",
            "--cacert",
            &cacert,
            "--cert",
            &cert.0,
            "--key",
            &cert.1,
            &format!("{base}{path}"),
        ])
    };
    // Another MAC's file first: refused, nobody registered.
    let (s, _) = with(&new_phone, "/prov/cert/0004F2000082.cfg");
    assert_eq!(s, 404);
    for mac in ["0004f2000081", "0004f2000082"] {
        let (s, _) = api
            .call(Method::GET, &format!("/api/v1/phones/{mac}"), None)
            .await;
        assert_eq!(s, 404, "{mac}");
    }
    // Its own file: registered (vendor from the User-Agent) and served.
    let (s, body) = with(&new_phone, "/prov/cert/0004F2000081.cfg");
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let p = api.get("/api/v1/phones/0004f2000081").await;
    assert_eq!(p["vendor"], "polycom", "{p}");
    // A CPE certificate (no CPE CA configured) is nothing here.
    let (s, _) = with(&cpe, "/prov/cert/0004F2000081.cfg");
    assert_eq!(s, 0, "an unknown CA: the handshake fails");

    // A phone certificate on the CWMP endpoint: no login, the Digest challenge.
    let data = inform_file(d, "CERT9");
    let (s, _) = curl(&[
        "--cacert",
        &cacert,
        "--cert",
        &new_phone.0,
        "--key",
        &new_phone.1,
        "-H",
        "Content-Type: text/xml; charset=utf-8",
        "--data-binary",
        &data,
        &format!("{base}/"),
    ]);
    assert_eq!(s, 401);
    let admin = Api::new(&app, "admin").await;
    assert!(!admin
        .get("/api/v1/devices")
        .await
        .to_string()
        .contains("CERT9"));
}
