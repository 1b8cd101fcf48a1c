//! Phones that fetch configuration files, with the clients phones and operators use: curl
//! over HTTP and HTTPS with a phone's token and with the site token, Debian's tftp-hpa
//! client and curl's TFTP (block size negotiation), `openssl enc -d` on Grandstream files
//! with both digests, xmllint on every XML served, a UDP socket standing in for a phone
//! that receives SIP NOTIFY check-sync, curl's `--digest` against a phone's own Digest
//! credentials and one-time activation codes. Bad input gets the right status and writes
//! nothing.

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::support::{Backend, TestApp, TestClock, TestDb};

const SECRET: &str = "pw-phone-Zr71-secret";

battery!(
    polycom_files_over_http_with_curl,
    bad_input_is_refused_and_nothing_written,
    grandstream_files_open_with_openssl,
    site_url_registers_or_rejects_unknown_phones,
    tftp_serves_cisco_phones,
    tftp_serves_model_firmware_and_nothing_else_of_the_store,
    tftp_firmware_transfers_are_in_the_fetch_log,
    cached_lookups_follow_every_change,
    https_serves_yealink_files,
    resync_sends_check_sync_notify,
    phone_csv_import_and_profiles,
    digest_and_activation_codes_over_http,
    digest_and_activation_codes_over_https,
    polycom_uploads_with_digest_credentials,
    fetch_log_is_batched_and_kept_at_shutdown,
    fetch_log_flood_is_bounded_and_counted,
    gigaset_bases_and_n870_over_http,
    gigaset_activation_codes_and_mac_binding,
    model_firmware_goes_into_phone_files,
    uploads_are_read_only_for_a_known_phone,
);

/// An upload's body is read only once the phone is known: to an unknown token, or without
/// credentials, the answer comes at once, while the body has barely started (nobody else
/// makes the ACS buffer a megabyte per connection).
async fn uploads_are_read_only_for_a_known_phone(b: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "0004f2000071", "polycom", "vvx400", json!({})).await;
    let own = url_of(&api, "0004f2000071").await;
    let token_path = own
        .split("/prov/")
        .nth(1)
        .expect("the phone's URL")
        .trim_end_matches('/')
        .to_string();
    for (target, expected) in [
        (
            "/prov/not-a-token-0123456789abcdef/0004f2000071-app.log".to_string(),
            404,
        ),
        ("/prov/auth/0004f2000071-app.log".to_string(), 401),
        // The phone's own token: the body is read, and it never ends.
        (format!("/prov/{token_path}/0004f2000071-app.log"), 0),
    ] {
        let mut s = tokio::net::TcpStream::connect(app.cwmp_addr())
            .await
            .unwrap();
        let head = format!(
            "PUT {target} HTTP/1.1\r\nHost: acs\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            crate::security::read_response(&mut s, true),
        )
        .await;
        match (expected, answer) {
            (0, Err(_)) => {} // still reading the known phone's upload
            (0, Ok(r)) => panic!("{target}: answered {} before the body ended", r.status),
            (want, Ok(r)) => assert_eq!(r.status, want, "{target}"),
            (want, Err(_)) => panic!("{target}: no answer while the body trickles (wanted {want})"),
        }
    }
}

pub(crate) fn need(tool: &str) -> bool {
    let ok = Command::new(tool)
        .arg(if tool == "tftp" { "-V" } else { "--version" })
        .output()
        .is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is missing (scripts/test installs it)"
        );
        eprintln!("{tool} not installed: skipped");
    }
    ok
}

/// curl: (HTTP status, body); status 0 when no HTTP answer came (e.g. TLS refused).
pub(crate) fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let o = Command::new("curl")
        .args(["-s", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, std::fs::read(&out).unwrap_or_default())
}

fn xmllint(xml: &[u8]) {
    if !need("xmllint") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f.xml");
    std::fs::write(&f, xml).unwrap();
    let o = Command::new("xmllint")
        .args(["--noout", "--nonet"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "xmllint: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(xml)
    );
}

async fn add_phone(api: &Api, mac: &str, vendor: &str, model: &str, extra: Value) -> Value {
    let mut body = json!({"mac": mac, "vendor": vendor, "model": model});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = api.call(Method::POST, "/api/v1/phones", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn add_line(api: &Api, mac: &str, n: i32, user: &str, password: &str) {
    let (s, v) = api
        .call(
            Method::PUT,
            &format!("/api/v1/phones/{mac}/lines/{n}"),
            Some(json!({
                "sip_user": user,
                "password": password,
                "display_name": format!("User {user}"),
                "registrar": "sip.example.net",
                "registrar_port": 5060
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

async fn url_of(api: &Api, mac: &str) -> String {
    api.get(&format!("/api/v1/phones/{mac}/url")).await["url"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn polycom_files_over_http_with_curl(b: Backend) {
    if !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let v = add_phone(&api, "00:04:F2:AA:BB:CC", "polycom", "VVX400", json!({})).await;
    assert_eq!(v["mac"], "0004f2aabbcc");
    assert_eq!(v["device_id"], "phone:0004f2aabbcc");
    assert_eq!(v["model"], "vvx400");
    add_line(&api, "0004-F2AA-BBCC", 1, "1001", SECRET).await;
    let url = url_of(&api, "0004f2aabbcc").await;
    assert!(
        url.starts_with(&format!("http://{}/prov/", app.cwmp_addr())),
        "{url}"
    );
    let ua = "FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373";

    // The phone asks for its master file, then the file it lists.
    let (s, master) = curl(&["-A", ua, &format!("{url}/0004F2AABBCC.cfg")]);
    assert_eq!(s, 200);
    xmllint(&master);
    let master = String::from_utf8(master).unwrap();
    assert!(
        master.contains("CONFIG_FILES=\"0004F2AABBCC-ferroacs.cfg\""),
        "{master}"
    );
    assert!(!master.contains(SECRET));
    let (s, phone) = curl(&["-A", ua, &format!("{url}/0004F2AABBCC-ferroacs.cfg")]);
    assert_eq!(s, 200);
    xmllint(&phone);
    let phone = String::from_utf8(phone).unwrap();
    assert!(
        phone.contains(&format!("reg.1.auth.password=\"{SECRET}\"")),
        "{phone}"
    );
    assert!(phone.contains("reg.1.address=\"1001@sip.example.net\""));

    // What the phone did is recorded: last file, firmware from the User-Agent.
    let p = api.get("/api/v1/phones/0004f2aabbcc").await;
    assert_eq!(p["firmware"], "5.9.0.9373", "{p}");
    assert_eq!(p["last_file"], "0004F2AABBCC-ferroacs.cfg");
    assert_eq!(p["last_source"], "127.0.0.1");
    let f = api.get("/api/v1/phones/0004f2aabbcc/fetches").await;
    let items = f["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{f}");
    assert_eq!(items[0]["status"], 200);
    assert_eq!(items[0]["protocol"], "http");
    assert!(!f.to_string().contains(SECRET));

    // A changed line is served at the next fetch (the cache follows the revision).
    add_line(&api, "0004f2aabbcc", 1, "1001", "new-pw-4412").await;
    let (_, phone) = curl(&["-A", ua, &format!("{url}/0004F2AABBCC-ferroacs.cfg")]);
    let phone = String::from_utf8(phone).unwrap();
    assert!(
        phone.contains("reg.1.auth.password=\"new-pw-4412\""),
        "{phone}"
    );

    // Overrides the phone uploads are kept with it and read back.
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("o.cfg");
    std::fs::write(
        &up,
        "<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity=\"1\"/></PHONE_CONFIG>",
    )
    .unwrap();
    let (s, _) = curl(&[
        "-T",
        up.to_str().unwrap(),
        &format!("{url}/0004F2AABBCC-phone.cfg"),
    ]);
    assert_eq!(s, 201);
    let (s, back) = curl(&[&format!("{url}/0004F2AABBCC-phone.cfg")]);
    assert_eq!(s, 200);
    assert_eq!(back, std::fs::read(&up).unwrap());

    // The password reaches neither the API nor the audit log.
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=100").await.to_string();
    assert!(!audit.contains(SECRET) && !audit.contains("new-pw-4412"));
    assert!(audit.contains("phone.create"), "{audit}");
    let lines = api
        .get("/api/v1/phones/0004f2aabbcc/lines")
        .await
        .to_string();
    assert!(
        !lines.contains(SECRET) && lines.contains("\"password_set\":true"),
        "{lines}"
    );
}

async fn bad_input_is_refused_and_nothing_written(b: Backend) {
    if !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| c.phones.max_upload_bytes = 4096).await;
    let api = Api::new(&app, "operator").await;
    // Malformed MACs: 400 naming the problem, nothing created.
    for bad in [
        "0004f2aabbcg",
        "0004f2aabb",
        "00:04:f2:aa:bb:cc:dd",
        "ff:ff:ff:ff:ff:ff",
    ] {
        let (s, v) = api
            .call(
                Method::POST,
                "/api/v1/phones",
                Some(json!({"mac": bad, "vendor": "polycom", "model": "vvx400"})),
            )
            .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{v}");
    }
    let (s, v) = api
        .call(Method::GET, "/api/v1/phones/not-a-mac", None)
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/phones",
            Some(json!({"mac": "0004f2000001", "vendor": "nokia", "model": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        api.get("/api/v1/phones").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    add_phone(&api, "0004f2000001", "polycom", "vvx400", json!({})).await;
    add_phone(&api, "0004f2000002", "polycom", "vvx400", json!({})).await;
    add_line(&api, "0004f2000002", 1, "2002", SECRET).await;
    let url1 = url_of(&api, "0004f2000001").await;
    // The same MAC twice: 409.
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/phones",
            Some(json!({"mac": "00-04-F2-00-00-01", "vendor": "polycom", "model": "vvx400"})),
        )
        .await;
    assert_eq!(s, 409);

    // One phone's token does not open another phone's file.
    let (s, body) = curl(&[&format!("{url1}/0004F2000002-ferroacs.cfg")]);
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    // Path traversal, encoded: 400.
    let (s, _) = curl(&["--path-as-is", &format!("{url1}/..%2F..%2Fetc%2Fpasswd")]);
    assert_eq!(s, 400);
    // Oversize upload: 413, nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.cfg");
    std::fs::write(&big, vec![b'x'; 5000]).unwrap();
    let (s, _) = curl(&[
        "-T",
        big.to_str().unwrap(),
        &format!("{url1}/0004F2000001-web.cfg"),
    ]);
    assert_eq!(s, 413);
    let (s, _) = curl(&[&format!("{url1}/0004F2000001-web.cfg")]);
    assert_eq!(s, 404);
    // Uploading a configuration file (not an override or log): refused.
    let small = dir.path().join("s.cfg");
    std::fs::write(&small, b"x").unwrap();
    let (s, _) = curl(&[
        "-T",
        small.to_str().unwrap(),
        &format!("{url1}/0004F2000001.cfg"),
    ]);
    assert_eq!(s, 405);
    // Every refusal is in the fetch log with its status.
    let f = api.get("/api/v1/phones/0004f2000002/fetches").await;
    assert_eq!(f["items"][0]["status"], 404, "{f}");
}

fn openssl_decrypt(data: &[u8], md: &str, pw: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cfg.enc");
    std::fs::write(&f, data).unwrap();
    let o = Command::new("openssl")
        .args(["enc", "-d", "-aes-256-cbc", "-md", md, "-k", pw, "-in"])
        .arg(&f)
        .output()
        .unwrap();
    o.status.success().then_some(o.stdout)
}

async fn grandstream_files_open_with_openssl(b: Backend) {
    if !need("curl") || !need("openssl") {
        return;
    }
    let app = TestApp::spawn(b, |c| {
        c.phones.file_password = Some(ferroacs::config::Secret("global-pw-77".into()));
    })
    .await;
    let api = Api::new(&app, "operator").await;
    // A current model (SHA-256) with its own password.
    add_phone(
        &api,
        "000b82aabb01",
        "grandstream",
        "gxp2170",
        json!({"file_password": "phone-pw-01"}),
    )
    .await;
    add_line(&api, "000b82aabb01", 1, "3001", SECRET).await;
    // An old model (MD5) with the global password.
    add_phone(&api, "000b82aabb02", "grandstream", "gxp1400", json!({})).await;
    add_line(&api, "000b82aabb02", 1, "3002", SECRET).await;
    let v = api.get("/api/v1/phones/000b82aabb01").await;
    assert_eq!(v["file_password_set"], true);
    assert!(!v.to_string().contains("phone-pw-01"));

    for (mac, md, pw, wrong_md) in [
        ("000b82aabb01", "sha256", "phone-pw-01", "md5"),
        ("000b82aabb02", "md5", "global-pw-77", "sha256"),
    ] {
        let url = url_of(&api, mac).await;
        // The binary file is never served: the phone moves on to the XML.
        let (s, _) = curl(&[&format!("{url}/cfg{mac}")]);
        assert_eq!(s, 404);
        let (s, enc) = curl(&[&format!("{url}/cfg{mac}.xml")]);
        assert_eq!(s, 200);
        assert!(enc.starts_with(b"Salted__"), "{mac}");
        assert!(!String::from_utf8_lossy(&enc).contains(SECRET));
        let clear = openssl_decrypt(&enc, md, pw).expect("openssl decrypts");
        xmllint(&clear);
        let text = String::from_utf8(clear).unwrap();
        assert!(text.contains(&format!("<mac>{mac}</mac>")), "{text}");
        assert!(text.contains(&format!("<P34>{SECRET}</P34>")), "{text}");
        let wrong = openssl_decrypt(&enc, md, "not-the-password");
        assert!(wrong.is_none_or(|w| !String::from_utf8_lossy(&w).contains(SECRET)));
        let other = openssl_decrypt(&enc, wrong_md, pw);
        assert!(other.is_none_or(|w| !String::from_utf8_lossy(&w).contains(SECRET)));
        // Model and global files hold no account.
        let (s, model) = curl(&[&format!("{url}/cfggxp2170.xml")]);
        assert_eq!(s, 200);
        xmllint(&model);
        let (s, global) = curl(&[&format!("{url}/cfg.xml")]);
        assert_eq!(s, 200);
        xmllint(&global);
    }
}

async fn site_url_registers_or_rejects_unknown_phones(b: Backend) {
    if !need("curl") {
        return;
    }
    let site = "site-0123456789abcdef";
    let app = TestApp::spawn(b, |c| {
        c.phones.site_token = Some(ferroacs::config::Secret(site.into()));
        c.phones.max_failed_fetches = 3;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let base = format!("http://{}/prov/{site}", app.cwmp_addr());
    // reject (the default): an unknown MAC is not found and nothing is created.
    let (s, _) = curl(&[&format!("{base}/cfg000b82ccdd01.xml")]);
    assert_eq!(s, 404);
    assert_eq!(
        api.get("/api/v1/phones").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // Non-phone files are served through the site URL.
    let (s, body) = curl(&[&format!("{base}/000000000000.cfg")]);
    assert_eq!(s, 200);
    xmllint(&body);
    // Wrong tokens count as failures; the fourth failure in a minute gets 429, even with a
    // right token afterwards.
    for _ in 0..2 {
        let (s, _) = curl(&[&format!(
            "http://{}/prov/wrong-token-000000/cfg.xml",
            app.cwmp_addr()
        )]);
        assert_eq!(s, 404);
    }
    let (s, _) = curl(&[&format!("{base}/cfg.xml")]);
    assert_eq!(s, 429);
    drop(app);

    let app = TestApp::spawn(b, |c| {
        c.phones.site_token = Some(ferroacs::config::Secret(site.into()));
        c.phones.unknown_phones = ferroacs::config::UnknownDevices::Accept;
        c.phones.lock_to_first_network = true;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let base = format!("http://{}/prov/{site}", app.cwmp_addr());
    let (s, body) = curl(&[
        "-A",
        "Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82ccdd01",
        &format!("{base}/cfg000b82ccdd01.xml"),
    ]);
    assert_eq!(s, 200);
    xmllint(&body);
    let p = api.get("/api/v1/phones/000b82ccdd01").await;
    assert_eq!(p["vendor"], "grandstream");
    assert_eq!(p["auto_registered"], true);
    assert_eq!(p["firmware"], "1.0.11.3");
    assert_eq!(p["lock_network"], "127.0.0.0/24", "{p}");
    // From another network of loopback (127.0.1.x): refused by the lock.
    let (s, _) = curl(&[
        "--interface",
        "127.0.1.9",
        &format!("{base}/cfg000b82ccdd01.xml"),
    ]);
    assert_eq!(s, 403);
}

fn tftp_get(port: u16, file: &str, out: &Path) -> std::process::Output {
    Command::new("tftp")
        .args([
            "-v",
            "127.0.0.1",
            &port.to_string(),
            "-m",
            "binary",
            "-c",
            "get",
            file,
        ])
        .arg(out)
        .output()
        .unwrap()
}

async fn tftp_serves_cisco_phones(b: Backend) {
    if !need("tftp") || !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| {
        c.tftp.listen = Some("127.0.0.1:0".into());
        c.phones.default_sip_server = Some("sip.example.net".into());
        c.phones.unknown_phones = ferroacs::config::UnknownDevices::Accept;
    })
    .await;
    let port = app.running.as_ref().unwrap().tftp_addr.unwrap().port();
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "00562baabbcc", "cisco", "cp-8841", json!({})).await;
    add_line(&api, "00562baabbcc", 1, "4001", SECRET).await;
    let dir = tempfile::tempdir().unwrap();

    // The trust lists first: "file not found", so the phone accepts unsigned files.
    let o = tftp_get(port, "CTLSEP00562BAABBCC.tlv", &dir.path().join("ctl"));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Error code 1"), "{text}");
    let out = dir.path().join("sep.xml");
    let o = tftp_get(port, "SEP00562BAABBCC.cnf.xml", &out);
    assert!(o.status.success(), "{o:?}");
    let body = std::fs::read(&out).unwrap();
    xmllint(&body);
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.contains(&format!("<authPassword>{SECRET}</authPassword>")),
        "{text}"
    );
    // Unknown phones get the default file.
    let out = dir.path().join("default.xml");
    let o = tftp_get(port, "XMLDefault.cnf.xml", &out);
    assert!(o.status.success(), "{o:?}");
    xmllint(&std::fs::read(&out).unwrap());
    // Path traversal: access violation, nothing written.
    let o = tftp_get(port, "../../etc/passwd", &dir.path().join("passwd"));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Error code 2"), "{text}");
    // Write requests: refused.
    let o = Command::new("tftp")
        .args(["127.0.0.1", &port.to_string(), "-m", "binary", "-c", "put"])
        .arg(&out)
        .arg("SEP00562BAABBCC.cnf.xml")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(text.contains("Error code 2"), "{text}");
    // Block size negotiation (curl sends blksize and tsize): the same bytes.
    let (s, via_curl) = curl(&[
        "--tftp-blksize",
        "1428",
        &format!("tftp://127.0.0.1:{port}/SEP00562BAABBCC.cnf.xml"),
    ]);
    assert_eq!(s, 0, "curl reports no HTTP code for TFTP");
    assert_eq!(via_curl, body);
    // Fetches over TFTP are recorded.
    let f = api.get("/api/v1/phones/00562baabbcc/fetches").await;
    assert!(
        f["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["protocol"] == "tftp" && i["status"] == 200),
        "{f}"
    );
}

/// A firmware image in the file store: its id.
pub(crate) async fn upload_bytes(api: &Api, name: &str, version: &str, body: Vec<u8>) -> String {
    let res = api
        .http
        .post(format!(
            "{}/api/v1/files?name={name}&file_type=1%20Firmware%20Upgrade%20Image&version={version}",
            api.base
        ))
        .bearer_auth(&api.token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// tftp-hpa's answer, stdout and stderr together.
fn tftp_text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// A Cisco phone's configuration names its model's firmware by name over TFTP, and TFTP
/// serves that file of the file store (tftp-hpa, byte for byte; curl through the phone's
/// token), and a file of `tftp.firmware_files`. Any other file of the store (by name or
/// id), another model's firmware through a phone's token, a traversal name and firmware
/// removed from its model are refused.
async fn tftp_serves_model_firmware_and_nothing_else_of_the_store(b: Backend) {
    if !need("tftp") || !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| {
        c.tftp.listen = Some("127.0.0.1:0".into());
        c.tftp.firmware_files = "dsp88xx.14-2-1.sbn, missing.sbn".into();
    })
    .await;
    let port = app.running.as_ref().unwrap().tftp_addr.unwrap().port();
    let api = Api::new(&app, "operator").await;
    let (fw, image) = cisco_8841_firmware(&api).await;
    let dsp: Vec<u8> = b"DSP-IMAGE".repeat(1000);
    upload_bytes(&api, "dsp88xx.14-2-1.sbn", "", dsp.clone()).await;
    let secret = b"a device's configuration backup with secrets".to_vec();
    let backup = upload_bytes(&api, "backup.cfg", "", secret.clone()).await;
    add_phone(&api, "00562b000051", "cisco", "cp-8841", json!({})).await;
    add_line(&api, "00562b000051", 1, "4051", SECRET).await;
    add_phone(&api, "0004f2000052", "polycom", "vvx400", json!({})).await;
    let dir = tempfile::tempdir().unwrap();

    // The configuration names the load (without .loads: the phone appends it).
    let out = dir.path().join("sep.xml");
    let o = tftp_get(port, "SEP00562B000051.cnf.xml", &out);
    assert!(o.status.success(), "{o:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("<loadInformation>sip88xx.14-2-1</loadInformation>"),
        "{text}"
    );
    // The firmware over TFTP, byte for byte; the allow-listed file too.
    let out = dir.path().join("fw.loads");
    let o = tftp_get(port, "sip88xx.14-2-1.loads", &out);
    assert!(o.status.success(), "{}", tftp_text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), image);
    let out = dir.path().join("dsp.sbn");
    let o = tftp_get(port, "dsp88xx.14-2-1.sbn", &out);
    assert!(o.status.success(), "{}", tftp_text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), dsp);
    // Through the phone's token (curl, blksize 1428): the same bytes.
    let url = url_of(&api, "00562b000051").await;
    let token = url.rsplit('/').next().unwrap().to_string();
    let (_, got) = curl(&[
        "--tftp-blksize",
        "1428",
        &format!("tftp://127.0.0.1:{port}/{token}/sip88xx.14-2-1.loads"),
    ]);
    assert_eq!(got, image);

    // Refused: another file of the store by name or by id, an allow-listed name with no
    // such file, another model's firmware through a phone's token, traversal names.
    let polycom = url_of(&api, "0004f2000052").await;
    let ptoken = polycom.rsplit('/').next().unwrap().to_string();
    for (name, code) in [
        ("backup.cfg".to_string(), "Error code 1"),
        (backup.clone(), "Error code 1"),
        (fw.clone(), "Error code 1"),
        ("missing.sbn".to_string(), "Error code 1"),
        (format!("{ptoken}/sip88xx.14-2-1.loads"), "Error code 1"),
        ("../backup.cfg".to_string(), "Error code 2"),
        (format!("../files/{backup}"), "Error code 2"),
        ("..\\backup.cfg".to_string(), "Error code"),
        ("/etc/passwd".to_string(), "Error code"),
    ] {
        let out = dir.path().join("refused");
        let _ = std::fs::remove_file(&out);
        let o = tftp_get(port, &name, &out);
        let text = tftp_text(&o);
        assert!(text.contains(code), "{name}: {text}");
        let got = std::fs::read(&out).unwrap_or_default();
        assert!(got.is_empty(), "{name}: {} bytes written", got.len());
    }
    // Once the model has no firmware, its file is no longer served.
    let (s, _) = api
        .call(
            Method::DELETE,
            "/api/v1/phone_models/cisco/cp-8841/firmware",
            None,
        )
        .await;
    assert_eq!(s, 204);
    let out = dir.path().join("gone");
    let o = tftp_get(port, "sip88xx.14-2-1.loads", &out);
    assert!(tftp_text(&o).contains("Error code 1"), "{}", tftp_text(&o));
}

/// A client that stops: sends a read request for `name`, acknowledges `acks` blocks
/// (after each, `between` runs), then answers nothing more (or, with `cancel`, sends an
/// ERROR). Returns the payload bytes it received, and its socket (kept open by the caller
/// so the server sees silence, not an unreachable port).
fn tftp_partial(
    port: u16,
    name: &str,
    acks: u16,
    cancel: bool,
    mut between: impl FnMut(u16),
) -> (usize, std::net::UdpSocket) {
    use ferroacs::tftp::codec;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    sock.send_to(&codec::rrq(name, "octet", &[]), ("127.0.0.1", port))
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let mut got = 0;
    let mut acked = 0;
    loop {
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        match codec::decode(&buf[..n]).unwrap() {
            codec::Packet::Data { block, data } => {
                if block != acked + 1 {
                    continue; // a retransmission
                }
                got += data.len();
                if acked == acks {
                    if cancel {
                        sock.send_to(&codec::error(0, "cancelled"), from).unwrap();
                    }
                    return (got, sock);
                }
                between(block);
                sock.send_to(&codec::ack(block), from).unwrap();
                acked = block;
            }
            codec::Packet::Error { .. } => return (got, sock),
            p => panic!("{p:?}"),
        }
    }
}

/// GET `path` until `done` holds for the answer (at most 3 s), and return it.
async fn settled(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..30 {
        let v = api.get(path).await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    api.get(path).await
}

/// Firmware transfers over TFTP are in the phone fetch log like HTTP fetches: through a
/// phone's token under that phone, else under the source address (`GET
/// /api/v1/phone_fetches?source=`), with the status and the bytes the phone acknowledged;
/// a phone that stops answering is 408, one that cancels 400, and a store file that
/// shrinks during the transfer (it is read block by block, not whole) 500.
async fn tftp_firmware_transfers_are_in_the_fetch_log(b: Backend) {
    if !need("tftp") || !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| {
        c.tftp.listen = Some("127.0.0.1:0".into());
        c.tftp.timeout_secs = 1;
        c.tftp.retries = 1;
    })
    .await;
    let port = app.running.as_ref().unwrap().tftp_addr.unwrap().port();
    let api = Api::new(&app, "operator").await;
    let (fw, image) = cisco_8841_firmware(&api).await;
    add_phone(&api, "00562b000091", "cisco", "cp-8841", json!({})).await;
    add_line(&api, "00562b000091", 1, "4091", SECRET).await;
    let token = url_of(&api, "00562b000091")
        .await
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();

    // By name alone (tftp-hpa): logged under the source address, no phone.
    let out = dir.path().join("fw.loads");
    let o = tftp_get(port, "sip88xx.14-2-1.loads", &out);
    assert!(o.status.success(), "{}", tftp_text(&o));
    assert_eq!(std::fs::read(&out).unwrap(), image);
    // The server records a transfer when the last ACK arrives, just after the client ends.
    let log = settled(&api, "/api/v1/phone_fetches?source=127.0.0.1", |l| {
        l["items"][0]["file"] == "sip88xx.14-2-1.loads"
    })
    .await;
    let first = &log["items"][0];
    assert_eq!(first["file"], "sip88xx.14-2-1.loads", "{log}");
    assert_eq!(first["protocol"], "tftp");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], 300_001);
    assert!(first["mac"].is_null(), "{log}");

    // Through the phone's token (curl, blksize 1428): logged under the phone, as its last
    // file; its configuration file over TFTP carries its size too.
    let (_, got) = curl(&[
        "--tftp-blksize",
        "1428",
        &format!("tftp://127.0.0.1:{port}/{token}/sip88xx.14-2-1.loads"),
    ]);
    assert_eq!(got, image);
    let cnf = dir.path().join("sep.xml");
    assert!(tftp_get(port, "SEP00562B000091.cnf.xml", &cnf)
        .status
        .success());
    let cnf_len = std::fs::read(&cnf).unwrap().len();
    let f = settled(&api, "/api/v1/phones/00562b000091/fetches", |f| {
        f["items"].as_array().is_some_and(|i| i.len() >= 2)
    })
    .await;
    let items = f["items"].as_array().unwrap();
    assert_eq!(items[0]["file"], "SEP00562B000091.cnf.xml", "{f}");
    assert_eq!(items[0]["bytes"], cnf_len);
    assert_eq!(items[1]["file"], "sip88xx.14-2-1.loads", "{f}");
    assert_eq!(items[1]["status"], 200);
    assert_eq!(items[1]["bytes"], 300_001);
    assert_eq!(items[1]["mac"], "00562b000091");

    // A phone that stops after one block: 408 with the 512 bytes it acknowledged. One that
    // cancels after two: 400 with 1024.
    let (got, _silent) = tftp_partial(port, "sip88xx.14-2-1.loads", 1, false, |_| {});
    assert_eq!(got, 1024, "two blocks received, one acknowledged");
    let (got, _) = tftp_partial(port, "sip88xx.14-2-1.loads", 2, true, |_| {});
    assert_eq!(got, 1536);
    // Until the server gives up on the first (timeout 1 s, 1 retry).
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let log = api
        .get("/api/v1/phone_fetches?source=127.0.0.1&limit=10")
        .await;
    let entries: Vec<(i64, i64)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["file"] == "sip88xx.14-2-1.loads")
        .map(|i| (i["status"].as_i64().unwrap(), i["bytes"].as_i64().unwrap()))
        .collect();
    assert!(entries.contains(&(408, 512)), "{log}");
    assert!(entries.contains(&(400, 1024)), "{log}");

    // The store file shrinks after the first block: the next block cannot be read, the
    // phone gets an error instead of a wrong image, and the log says 500.
    let path = app.files_dir.path().join(&fw);
    let (got, _) = tftp_partial(port, "sip88xx.14-2-1.loads", 1, false, |_| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(600)
            .unwrap();
    });
    assert_eq!(got, 512, "an error instead of block 2");
    let log = settled(
        &api,
        "/api/v1/phone_fetches?source=127.0.0.1&limit=3",
        |l| l["items"][0]["status"] == 500,
    )
    .await;
    assert_eq!(log["items"][0]["status"], 500, "{log}");
    assert_eq!(log["items"][0]["bytes"], 512, "{log}");

    // The API: a source is required and must be an address; unauthenticated is 401.
    let (s, v) = api.call(Method::GET, "/api/v1/phone_fetches", None).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = api
        .call(Method::GET, "/api/v1/phone_fetches?source=../etc", None)
        .await;
    assert_eq!(s, 400, "{v}");
    let viewer = Api::new(&app, "viewer").await;
    assert!(
        viewer.get("/api/v1/phone_fetches?source=127.0.0.1").await["items"]
            .as_array()
            .is_some()
    );
    let anon = reqwest::get(format!(
        "{}/api/v1/phone_fetches?source=127.0.0.1",
        api.base
    ))
    .await
    .unwrap();
    assert_eq!(anon.status(), 401);
}

/// A cached fetch asks the database nothing (the phone by its token and the revisions
/// keying its files are kept in memory), and every change is served at the next fetch:
/// the phone's settings, a line changed or removed, its profile, its model's firmware,
/// its model, its deletion; the network lock still holds on cached look-ups.
async fn cached_lookups_follow_every_change(b: Backend) {
    if !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| {
        c.scheduler.enabled = false;
        c.phones.fetch_log_flush_ms = 600_000;
        c.phones.lock_to_first_network = true;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_profiles/office",
            Some(json!({"vendor": {"feature.a": "1"}})),
        )
        .await;
    assert!(s == 200 || s == 201, "{v}");
    add_phone(
        &api,
        "0004f20000a1",
        "polycom",
        "vvx400",
        json!({"profile": "office"}),
    )
    .await;
    add_line(&api, "0004f20000a1", 1, "3101", SECRET).await;
    let url = url_of(&api, "0004f20000a1").await;
    let own = format!("{url}/0004F20000A1-ferroacs.cfg");
    let master = format!("{url}/0004F20000A1.cfg");
    let get = |u: &str| {
        let (s, body) = curl(&[u]);
        assert_eq!(s, 200, "{u}");
        String::from_utf8(body).unwrap()
    };
    let body = get(&own);
    assert!(
        body.contains(SECRET) && body.contains("feature.a=\"1\""),
        "{body}"
    );

    // Cached: no statement at all for a fetch (the fetch log is written in batches).
    let store = app.store();
    let mut quietest = u64::MAX;
    for _ in 0..3 {
        let before = store.statements_executed();
        for _ in 0..5 {
            get(&own);
        }
        quietest = quietest.min(store.statements_executed() - before);
    }
    assert_eq!(quietest, 0, "statements for 5 cached fetches");

    // The phone's own settings.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f20000a1",
            Some(
                json!({"vendor": "polycom", "model": "vvx400", "profile": "office",
                "settings": {"vendor": {"feature.b": "2"}}}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(get(&own).contains("feature.b=\"2\""));
    // A line changed, then removed.
    add_line(&api, "0004f20000a1", 1, "3101", "changed-pw-31").await;
    let body = get(&own);
    assert!(
        body.contains("changed-pw-31") && !body.contains(SECRET),
        "{body}"
    );
    let (s, v) = api
        .call(Method::DELETE, "/api/v1/phones/0004f20000a1/lines/1", None)
        .await;
    assert_eq!(s, 204, "{v}");
    assert!(!get(&own).contains("changed-pw-31"));
    // The profile.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_profiles/office",
            Some(json!({"vendor": {"feature.a": "3"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(get(&own).contains("feature.a=\"3\""));
    // The model's firmware, the phone's model, the firmware removed.
    let fw = upload_firmware(&api, "vvx-6.4.0.ld", "6.4.0", "IMAGE").await;
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_models/polycom/vvx400/firmware",
            Some(json!({"file_id": fw})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(
        get(&master).contains(&fw),
        "the firmware's URL names its file"
    );
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f20000a1",
            Some(json!({"vendor": "polycom", "model": "vvx500", "profile": "office"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        !get(&master).contains(&fw),
        "another model: not its firmware"
    );
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f20000a1",
            Some(json!({"vendor": "polycom", "model": "vvx400", "profile": "office"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(get(&master).contains(&fw));
    let (s, _) = api
        .call(
            Method::DELETE,
            "/api/v1/phone_models/polycom/vvx400/firmware",
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(!get(&master).contains(&fw));
    // The network lock holds on a cached look-up: another network gets 403.
    let (s, _) = curl(&["--interface", "127.0.1.9", &own]);
    assert_eq!(s, 403);
    // Deleted: its token opens nothing at once.
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/phones/0004f20000a1", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(curl(&[&own]).0, 404);
}

async fn https_serves_yealink_files(b: Backend) {
    if !need("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (c, k, ca) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("c.pem"),
    );
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let (c2, k2) = (c.clone(), k.clone());
    let app = TestApp::spawn(b, move |cfg| {
        cfg.cwmp.tls_cert = Some(c2);
        cfg.cwmp.tls_key = Some(k2);
    })
    .await;
    let api = Api::new(&app, "operator").await;
    add_phone(
        &api,
        "001565aabbcc",
        "yealink",
        "t46g",
        json!({"settings": {"ntp_server": "ntp.example.net"}}),
    )
    .await;
    add_line(&api, "001565aabbcc", 1, "5001", SECRET).await;
    let url = url_of(&api, "001565aabbcc").await;
    assert!(url.starts_with("https://"), "{url}");
    let url = url.replace("127.0.0.1", "localhost");
    let ca = ca.to_str().unwrap();
    let ua = "Yealink SIP-T46G 28.83.0.50 00:15:65:aa:bb:cc";
    let (s, boot) = curl(&[
        "--cacert",
        ca,
        "-A",
        ua,
        &format!("{url}/001565aabbcc.boot"),
    ]);
    assert_eq!(s, 200);
    let boot = String::from_utf8(boot).unwrap();
    assert!(boot.starts_with("#!version:1.0.0.1\n"));
    assert!(boot.contains("/y000000000028.cfg\""), "{boot}");
    let (s, common) = curl(&[
        "--cacert",
        ca,
        "-A",
        ua,
        &format!("{url}/y000000000028.cfg"),
    ]);
    assert_eq!(s, 200);
    assert!(common.starts_with(b"#!version:1.0.0.1\n"));
    let (s, own) = curl(&["--cacert", ca, "-A", ua, &format!("{url}/001565aabbcc.cfg")]);
    assert_eq!(s, 200);
    let own = String::from_utf8(own).unwrap();
    assert!(own.starts_with("#!version:1.0.0.1\n"));
    assert!(
        own.contains(&format!("account.1.password = {SECRET}\n")),
        "{own}"
    );
    assert!(own.contains("local_time.ntp_server1 = ntp.example.net\n"));
    let p = api.get("/api/v1/phones/001565aabbcc/fetches").await;
    assert_eq!(p["items"][0]["protocol"], "https");
    assert_eq!(
        api.get("/api/v1/phones/001565aabbcc").await["firmware"],
        "28.83.0.50"
    );
}

async fn resync_sends_check_sync_notify(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    // A UDP socket stands in for the phone and answers 200 OK.
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = phone.local_addr().unwrap().port();
    add_phone(
        &api,
        "0004f2aabbdd",
        "polycom",
        "vvx400",
        json!({"contact": format!("127.0.0.1:{port}")}),
    )
    .await;
    add_line(&api, "0004f2aabbdd", 1, "6001", SECRET).await;
    let listener = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let (n, from) = phone.recv_from(&mut buf).await.unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        phone
            .send_to(
                b"SIP/2.0 200 OK\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n",
                from,
            )
            .await
            .unwrap();
        msg
    });
    let (s, v) = api
        .call(Method::POST, "/api/v1/phones/0004f2aabbdd/resync", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"], "answered", "{v}");
    assert_eq!(v["status"], 200);
    let msg = listener.await.unwrap();
    assert!(
        msg.starts_with(&format!("NOTIFY sip:6001@127.0.0.1:{port} SIP/2.0\r\n")),
        "{msg}"
    );
    assert!(
        msg.contains("\r\nEvent: check-sync;reboot=false\r\n"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET));
    // A contact the target policy refuses (cloud metadata): nothing is sent.
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f2aabbdd",
            Some(
                json!({"vendor": "polycom", "model": "vvx400", "contact": "169.254.169.254:5060"}),
            ),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .call(Method::POST, "/api/v1/phones/0004f2aabbdd/resync", None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["outcome"], "refused", "{v}");
    // A viewer may not.
    let viewer = Api::new(&app, "viewer").await;
    let (s, _) = viewer
        .call(Method::POST, "/api/v1/phones/0004f2aabbdd/resync", None)
        .await;
    assert_eq!(s, 403);
}

async fn phone_csv_import_and_profiles(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_profiles/office",
            Some(json!({"ntp_server": "ntp.office.example", "language": "de", "time_zone": "Europe/Berlin"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_profiles/bad",
            Some(json!({"time_zone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let csv = "mac,vendor,model,profile,tags\n\
               00:15:65:00:00:01,yealink,t46g,office,floor1;sales\n\
               00-15-65-00-00-02,yealink,t42g,,\n\
               001565zz0003,yealink,t46g,,\n\
               001565000004,nokia,x,,\n\
               001565000005,yealink,t46g,nosuch,\n";
    let res = api
        .http
        .post(format!("{}/api/v1/phones/import", api.base))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["imported"], 2, "{r}");
    assert_eq!(r["rejected"], 3, "{r}");
    let fields: Vec<&str> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["mac", "vendor", "profile"], "{r}");
    let p = api.get("/api/v1/phones/001565000001").await;
    assert_eq!(p["profile"], "office");
    let dev = api.get("/api/v1/devices/phone:001565000001").await;
    assert!(dev.to_string().contains("sales"), "{dev}");
    assert_eq!(
        api.get("/api/v1/phones").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The profile's settings are in the phone's file; a profile change is served next time.
    add_line(&api, "001565000001", 1, "7001", SECRET).await;
    let url = url_of(&api, "001565000001").await;
    let http = reqwest::Client::new();
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap().text().await.unwrap() }
    };
    let text = get(format!("{url}/001565000001.cfg")).await;
    assert!(
        text.contains("local_time.ntp_server1 = ntp.office.example\n"),
        "{text}"
    );
    assert!(text.contains("lang.gui = German\n"), "{text}");
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/v1/phone_profiles/office",
            Some(json!({"ntp_server": "ntp2.office.example"})),
        )
        .await;
    assert_eq!(s, 200);
    let text = get(format!("{url}/001565000001.cfg")).await;
    assert!(
        text.contains("local_time.ntp_server1 = ntp2.office.example\n"),
        "{text}"
    );
    // A profile in use cannot be deleted.
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/phone_profiles/office", None)
        .await;
    assert_eq!(s, 409);
    // Deleting a phone removes its lines with it.
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/phones/001565000001", None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = api
        .call(
            Method::GET,
            "/api/v1/devices/phone:001565000001/lines",
            None,
        )
        .await;
    assert_eq!(s, 404);
}

const DIGEST_PW: &str = "Dg-pass-7781-zq";
const T0: i64 = 1_800_000_000_000;

async fn digest_and_activation_codes_over_http(b: Backend) {
    if !need("curl") {
        return;
    }
    let clock = TestClock::new(T0);
    let db = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.phones.max_failed_fetches = 6;
    })
    .await;
    let base = format!("http://{}", app.cwmp_addr());
    digest_and_activation(&app, &clock, &base, &[]).await;
}

async fn digest_and_activation_codes_over_https(b: Backend) {
    if !need("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    let (c2, k2) = (c.clone(), k.clone());
    let clock = TestClock::new(T0);
    let db = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), move |cfg| {
        cfg.cwmp.tls_cert = Some(c2);
        cfg.cwmp.tls_key = Some(k2);
        cfg.phones.max_failed_fetches = 6;
    })
    .await;
    let base = format!("https://localhost:{}", app.cwmp_addr().port());
    digest_and_activation(&app, &clock, &base, &["--cacert", c.to_str().unwrap()]).await;
}

/// Polycom uploads on the Digest path (`PUT /prov/auth/<MAC>-…`) with curl `--digest`:
/// the phone's own credentials store its file (read back through its token); no
/// credentials get a challenge; a wrong password 401, another phone's MAC 404 (logged),
/// a file over `phones.max_upload_bytes` 413, and none of these writes anything.
async fn polycom_uploads_with_digest_credentials(b: Backend) {
    if !need("curl") {
        return;
    }
    let app = TestApp::spawn(b, |c| c.phones.max_upload_bytes = 4096).await;
    let api = Api::new(&app, "operator").await;
    add_phone(
        &api,
        "0004f2000061",
        "polycom",
        "vvx400",
        json!({"digest_user": "vvx-0061", "digest_password": DIGEST_PW}),
    )
    .await;
    add_phone(
        &api,
        "0004f2000062",
        "polycom",
        "vvx400",
        json!({"digest_user": "vvx-0062", "digest_password": "other-pw-0062"}),
    )
    .await;
    let own = url_of(&api, "0004f2000061").await;
    let other = url_of(&api, "0004f2000062").await;
    let base = format!("http://127.0.0.1:{}/prov/auth", app.cwmp_addr().port());
    let right = format!("vvx-0061:{DIGEST_PW}");
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("o.cfg");
    let text = "<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity=\"2\"/></PHONE_CONFIG>";
    std::fs::write(&small, text).unwrap();
    let big = dir.path().join("big.log");
    std::fs::write(&big, vec![b'x'; 5000]).unwrap();
    let put = |user: Option<&str>, file: &std::path::Path, name: &str| {
        let mut args = vec!["-T".to_string(), file.to_str().unwrap().to_string()];
        if let Some(u) = user {
            args.extend(["--digest".into(), "-u".into(), u.to_string()]);
        }
        args.push(format!("{base}/{name}"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).0
    };

    // The right credentials: stored, and read back through the token and through Digest.
    assert_eq!(put(Some(&right), &small, "0004F2000061-phone.cfg"), 201);
    let (s, back) = curl(&[&format!("{own}/0004F2000061-phone.cfg")]);
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8_lossy(&back), text);
    let (s, back) = curl(&[
        "--digest",
        "-u",
        &right,
        &format!("{base}/0004F2000061-phone.cfg"),
    ]);
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8_lossy(&back), text);

    // No credentials: a challenge; a wrong password: 401; nothing stored.
    assert_eq!(put(None, &small, "0004F2000061-web.cfg"), 401);
    assert_eq!(
        put(
            Some("vvx-0061:not-the-password"),
            &small,
            "0004F2000061-web.cfg"
        ),
        401
    );
    assert_eq!(
        put(
            Some(&format!("nobody:{DIGEST_PW}")),
            &small,
            "0004F2000061-web.cfg"
        ),
        401
    );
    assert_eq!(curl(&[&format!("{own}/0004F2000061-web.cfg")]).0, 404);
    // Another phone's MAC with these credentials: 404, its file not written.
    assert_eq!(put(Some(&right), &small, "0004F2000062-phone.cfg"), 404);
    assert_eq!(curl(&[&format!("{other}/0004F2000062-phone.cfg")]).0, 404);
    // Too large: 413, nothing stored; the earlier upload is unchanged.
    assert_eq!(put(Some(&right), &big, "0004F2000061-app.log"), 413);
    assert_eq!(curl(&[&format!("{own}/0004F2000061-app.log")]).0, 404);
    assert_eq!(put(Some(&right), &big, "0004F2000061-phone.cfg"), 413);
    let (_, back) = curl(&[&format!("{own}/0004F2000061-phone.cfg")]);
    assert_eq!(String::from_utf8_lossy(&back), text);
    // Not an upload file (a configuration the server renders): 405.
    assert_eq!(put(Some(&right), &small, "0004F2000061.cfg"), 405);

    // The refusals are in the fetch log and the log, without the password.
    let f = api
        .get("/api/v1/phones/0004f2000061/fetches?limit=50")
        .await;
    let statuses: Vec<i64> = f["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_i64().unwrap())
        .collect();
    assert!(
        statuses.contains(&201) && statuses.contains(&401) && statuses.contains(&413),
        "{f}"
    );
    let logs = crate::support::captured_logs();
    assert!(
        logs.contains("another MAC presented this phone's credentials: upload refused"),
        "the refusal is logged"
    );
    assert!(!logs.contains(DIGEST_PW));
}

/// What an attacker and a phone try against `/prov/auth/` (Digest) and `/prov/<code>/`
/// (activation codes), over `base` (HTTP or HTTPS; `tls` = curl's CA arguments).
async fn digest_and_activation(app: &TestApp, clock: &TestClock, base: &str, tls: &[&str]) {
    let api = Api::new(app, "operator").await;
    let curl_tls = |args: &[&str]| {
        let mut all: Vec<&str> = tls.to_vec();
        all.extend_from_slice(args);
        curl(&all)
    };
    add_phone(
        &api,
        "0004f2000011",
        "polycom",
        "vvx400",
        json!({"digest_user": "vvx-0011", "digest_password": DIGEST_PW}),
    )
    .await;
    add_phone(&api, "0004f2000012", "polycom", "vvx400", json!({})).await;
    add_line(&api, "0004f2000011", 1, "3011", SECRET).await;
    add_line(&api, "0004f2000012", 1, "3012", "other-phone-pw-1").await;
    let p = api.get("/api/v1/phones/0004f2000011").await;
    assert_eq!(p["digest_user"], "vvx-0011", "{p}");
    assert!(!p.to_string().contains(DIGEST_PW));
    let urls = api.get("/api/v1/phones/0004f2000011/url").await;
    assert!(
        urls["digest_url"].as_str().unwrap().ends_with("/prov/auth"),
        "{urls}"
    );
    // A user without a password, and a password too short: 400, nothing changed.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f2000012",
            Some(json!({"vendor": "polycom", "model": "vvx400", "digest_user": "x"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("digest_password"),
        "{v}"
    );
    // Another phone cannot take the same Digest user.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f2000012",
            Some(json!({"vendor": "polycom", "model": "vvx400",
                "digest_user": "vvx-0011", "digest_password": "another-pw-99"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(api.get("/api/v1/phones/0004f2000012").await["digest_user"].is_null());

    // The password is sealed at rest.
    let raw = app
        .store()
        .sealed_candidates(
            ferroacs::store::sealed::SealedColumn::PhoneDigestPassword,
            "no-such-key",
        )
        .unwrap();
    assert_eq!(raw.len(), 1, "{raw:?}");
    assert!(raw[0].1.starts_with("enc1:") && !raw[0].1.contains(DIGEST_PW));

    // Digest: no credentials, then wrong ones: 401 with a challenge; right ones: the file.
    let file = format!("{base}/prov/auth/0004F2000011-ferroacs.cfg");
    let (s, body) = curl_tls(&[&file]);
    assert_eq!(s, 401);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    let wrong = "vvx-0011:not-the-password";
    let (s, body) = curl_tls(&["--digest", "-u", wrong, &file]);
    assert_eq!(s, 401);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    let right = format!("vvx-0011:{DIGEST_PW}");
    let (s, body) = curl_tls(&["--digest", "-u", &right, &file]);
    assert_eq!(s, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains(&format!("reg.1.auth.password=\"{SECRET}\"")),
        "{body}"
    );
    // Its credentials do not open another phone's file.
    let (s, body) = curl_tls(&[
        "--digest",
        "-u",
        &right,
        &format!("{base}/prov/auth/0004F2000012-ferroacs.cfg"),
    ]);
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains("other-phone-pw-1"));
    let f = api.get("/api/v1/phones/0004f2000011/fetches").await;
    assert_eq!(f["items"][0]["status"], 200, "{f}");
    assert!(!f.to_string().contains(DIGEST_PW));

    // Activation code: shown once, never in the audit log.
    let (s, code) = api
        .call(
            Method::POST,
            "/api/v1/phones/0004f2000012/activation_code",
            None,
        )
        .await;
    assert_eq!(s, 201, "{code}");
    let c = code["code"].as_str().unwrap().to_string();
    assert_eq!(c.len(), 12);
    assert!(code["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/prov/{c}")));
    assert_eq!(
        api.get("/api/v1/phones/0004f2000012").await["activation_pending"],
        true
    );
    let admin = Api::new(app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=100").await.to_string();
    assert!(audit.contains("phone.activation_code"), "{audit}");
    assert!(!audit.contains(&c) && !audit.contains(DIGEST_PW));
    // Its first use opens the phone's files to this address for the activation window.
    let with_code = format!("{base}/prov/{c}/0004F2000012-ferroacs.cfg");
    let (s, body) = curl_tls(&[&with_code]);
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("other-phone-pw-1"));
    // The version a phone reports in the query string is recorded with the fetch and on the
    // phone (before the User-Agent's).
    let (s, _) = curl_tls(&[
        "-A",
        "FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373",
        &format!("{base}/prov/{c}/0004F2000012.cfg?fw=6.1.0.1"),
    ]);
    assert_eq!(s, 200);
    let f = api.get("/api/v1/phones/0004f2000012/fetches").await;
    assert_eq!(f["items"][0]["firmware"], "6.1.0.1", "{f}");
    assert_eq!(
        api.get("/api/v1/phones/0004f2000012").await["firmware"],
        "6.1.0.1"
    );
    // Not to another address, and not for another phone's file.
    let (s, _) = curl_tls(&["--interface", "127.0.1.9", &with_code]);
    assert_eq!(s, 404);
    let (s, _) = curl_tls(&[&format!("{base}/prov/{c}/0004F2000011-ferroacs.cfg")]);
    assert_eq!(s, 404);
    // After the window the code is dead, even for the address that used it.
    clock.advance_ms(901_000);
    let (s, body) = curl_tls(&[&with_code]);
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains("other-phone-pw-1"));

    // Guessing codes: each wrong code is a failure; past phones.max_failed_fetches (6) in a
    // minute the address gets 429, even with a right code, which stays unused.
    clock.advance_ms(61_000);
    let (_, fresh) = api
        .call(
            Method::POST,
            "/api/v1/phones/0004f2000012/activation_code",
            None,
        )
        .await;
    let fresh = fresh["code"].as_str().unwrap().to_string();
    let mut guesses = 0;
    for g in 0..20u64 {
        let guess = format!("{:012}", 100_000_000_000 + g);
        if guess == fresh {
            continue;
        }
        let (s, _) = curl_tls(&[&format!("{base}/prov/{guess}/0004F2000012.cfg")]);
        guesses += 1;
        if guesses <= 6 {
            assert_eq!(s, 404, "guess {guesses}");
        } else {
            assert_eq!(s, 429, "guess {guesses}");
            break;
        }
    }
    let (s, _) = curl_tls(&[&format!("{base}/prov/{fresh}/0004F2000012.cfg")]);
    assert_eq!(s, 429);
    // A minute later the right code works, from its first use on.
    clock.advance_ms(61_000);
    let (s, _) = curl_tls(&[&format!("{base}/prov/{fresh}/0004F2000012-ferroacs.cfg")]);
    assert_eq!(s, 200);
    // Refusals created nothing: still the two phones.
    assert_eq!(
        api.get("/api/v1/phones").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// A sample of /metrics (the first with this name and labels).
async fn metric(app: &TestApp, name_and_labels: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find(|l| l.split(' ').next() == Some(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in:\n{text}"))
}

/// GET a phone file as a Polycom phone with firmware `fw`: the status.
async fn polycom_get(app: &TestApp, url: &str, fw: &str) -> u16 {
    app.http()
        .get(url)
        .header(
            "User-Agent",
            format!("FileTransport PolycomVVX-VVX_400-UA/{fw}"),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Fetches are written in batches off the request path: none reaches the database before
/// the writer's period, the API shows them at once (it writes what waits first), a row the
/// database could refuse (a NUL byte in the name) does not cost the others, and a clean
/// shutdown writes what still waits.
async fn fetch_log_is_batched_and_kept_at_shutdown(b: Backend) {
    let app = TestApp::spawn(b, |c| c.phones.fetch_log_flush_ms = 3_600_000).await;
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "0004f2000031", "polycom", "vvx400", json!({})).await;
    add_line(&api, "0004f2000031", 1, "1031", SECRET).await;
    let url = url_of(&api, "0004f2000031").await;
    for name in ["0004F2000031.cfg", "0004F2000031-ferroacs.cfg"] {
        assert_eq!(
            polycom_get(&app, &format!("{url}/{name}"), "5.9.0.9373").await,
            200
        );
    }
    assert_eq!(
        polycom_get(&app, &format!("{url}/0004F2000031%00.cfg"), "5.9.0.9373").await,
        400
    );
    let store = app.store();
    let written = tokio::task::spawn_blocking(move || store.phone_fetches("0004f2000031", 10))
        .await
        .unwrap()
        .unwrap();
    assert!(written.is_empty(), "written before the period: {written:?}");
    assert_eq!(metric(&app, "ferroacs_phone_fetch_log_pending").await, 3.0);

    // Reading the phone writes what waits.
    let f = api.get("/api/v1/phones/0004f2000031/fetches").await;
    let items = f["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{f}");
    assert_eq!(items[0]["file"], "0004F2000031-ferroacs.cfg");
    assert_eq!(items[1]["file"], "0004F2000031.cfg");
    assert!(!f.to_string().contains(SECRET));
    let p = api.get("/api/v1/phones/0004f2000031").await;
    assert_eq!(p["firmware"], "5.9.0.9373", "{p}");
    assert_eq!(p["last_file"], "0004F2000031-ferroacs.cfg");
    assert_eq!(metric(&app, "ferroacs_phone_fetch_log_pending").await, 0.0);
    assert_eq!(
        metric(
            &app,
            "ferroacs_phone_fetch_log_dropped_total{reason=\"refused\"}"
        )
        .await,
        0.0
    );

    // Two more wait in memory when the server stops cleanly; they are written.
    let file = format!("{url}/0004F2000031-ferroacs.cfg");
    assert_eq!(polycom_get(&app, &file, "5.9.1.100").await, 200);
    assert_eq!(polycom_get(&app, &file, "5.9.1.100").await, 200);
    assert_eq!(metric(&app, "ferroacs_phone_fetch_log_pending").await, 2.0);
    let app = app.restart().await;
    let api = Api::new(&app, "operator").await;
    let f = api.get("/api/v1/phones/0004f2000031/fetches").await;
    assert_eq!(f["items"].as_array().unwrap().len(), 4, "{f}");
    assert_eq!(f["items"][0]["firmware"], "5.9.1.100", "{f}");
    let p = api.get("/api/v1/phones/0004f2000031").await;
    assert_eq!(p["firmware"], "5.9.1.100", "{p}");
}

/// A flood of fetches faster than the log is written holds at most
/// phones.fetch_log_buffer rows in memory: the others are dropped and counted on
/// /metrics, files are still served, refused guesses take no more room than served files,
/// and the log takes rows again once written.
async fn fetch_log_flood_is_bounded_and_counted(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.phones.fetch_log_flush_ms = 3_600_000;
        c.phones.fetch_log_buffer = 5;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "0004f2000032", "polycom", "vvx400", json!({})).await;
    add_line(&api, "0004f2000032", 1, "1032", SECRET).await;
    let url = url_of(&api, "0004f2000032").await;
    let file = format!("{url}/0004F2000032-ferroacs.cfg");
    let served =
        futures_util::future::join_all((0..12).map(|_| polycom_get(&app, &file, "5.9.0.9373")))
            .await;
    assert!(served.iter().all(|s| *s == 200), "{served:?}");
    // Another phone's MAC under this phone's token: refused, and no more room taken.
    for n in 0..4 {
        let other = format!("{url}/0004F20000{:02}.cfg", 40 + n);
        assert_eq!(polycom_get(&app, &other, "5.9.0.9373").await, 404);
    }
    assert_eq!(metric(&app, "ferroacs_phone_fetch_log_pending").await, 5.0);
    assert_eq!(
        metric(
            &app,
            "ferroacs_phone_fetch_log_dropped_total{reason=\"full\"}"
        )
        .await,
        11.0
    );

    let f = api.get("/api/v1/phones/0004f2000032/fetches").await;
    assert_eq!(f["items"].as_array().unwrap().len(), 5, "{f}");
    assert_eq!(metric(&app, "ferroacs_phone_fetch_log_pending").await, 0.0);
    assert_eq!(polycom_get(&app, &file, "5.9.0.9373").await, 200);
    let f = api.get("/api/v1/phones/0004f2000032/fetches").await;
    assert_eq!(f["items"].as_array().unwrap().len(), 6, "{f}");
    assert_eq!(
        metric(
            &app,
            "ferroacs_phone_fetch_log_dropped_total{reason=\"full\"}"
        )
        .await,
        11.0
    );
}

/// Gigaset: the base asks for `<MAC>.xml` (`%MACD`); the ProviderFrame's VERSION stays the
/// same while nothing changes (the base skips a file whose VERSION it applied) and grows
/// with a line change; the N870 gets its `provisioning` file; an unknown MAC through the
/// site URL is refused.
async fn gigaset_bases_and_n870_over_http(b: Backend) {
    if !need("curl") {
        return;
    }
    let site = "site-gigaset-0123456789";
    let clock = TestClock::new(T0);
    let db = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.phones.site_token = Some(ferroacs::config::Secret(site.into()));
        c.phones.max_failed_fetches = 50;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "7C:2F:80:AA:BB:01", "gigaset", "N510", json!({})).await;
    add_line(&api, "7c2f80aabb01", 1, "4001", SECRET).await;
    add_line(&api, "7c2f80aabb01", 2, "4002", "second-line-pw-2").await;
    let urls = api.get("/api/v1/phones/7c2f80aabb01/url").await;
    assert_eq!(urls["first_file"], "7C2F80AABB01.xml", "{urls}");
    assert!(
        urls["dhcp"][0].as_str().unwrap().contains("option 114")
            && urls["dhcp"][0].as_str().unwrap().contains("/%MACD.xml"),
        "{urls}"
    );
    let url = url_of(&api, "7c2f80aabb01").await;
    // `ferroacs phone url` tells what to give the base: option 114 with %MACD.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        ferroacs_cli(&app, &["phone", "url", "7C:2F:80:AA:BB:01"], &[])
    });
    assert!(ok, "{err}");
    assert!(
        out.contains("option 114")
            && out.contains("/%MACD.xml")
            && out.contains("7C2F80AABB01.xml"),
        "{out}"
    );
    let file = format!("{url}/7C2F80AABB01.xml");
    let ua = "Gigaset N510 IP PRO/42.250.00.000.000;7C2F80AABB01";
    let version = |body: &[u8]| -> String {
        let text = String::from_utf8_lossy(body);
        let i = text.find("<VERSION value=\"").expect("VERSION") + 16;
        text[i..i + 10].to_string()
    };
    let (s, first) = curl(&["-A", ua, &file]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&first));
    xmllint(&first);
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(
        text.contains("<MAC_ADDRESS value=\"7C2F80AABB01\"/>"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "<S_SIP_PASSWORD_1 class=\"string\" value=\"{SECRET}\"/>"
        )),
        "{text}"
    );
    assert!(text.contains("<S_SIP_USER_ID_2 class=\"string\" value=\"4002\"/>"));
    assert!(text.contains("<I_SIP_SERVER_PORT_1 class=\"integer\" value=\"5060\"/>"));
    // The stamp is when the configuration changed (T0 = 2027-01-15 08:00 UTC), not now.
    assert_eq!(version(&first), "1501270800");
    // Later fetches of the unchanged phone: the same VERSION, the same bytes.
    clock.advance_ms(3_600_000);
    let (s, again) = curl(&["-A", ua, &file]);
    assert_eq!(s, 200);
    assert_eq!(version(&again), version(&first));
    assert_eq!(again, first);
    // A line change, seconds later: a newer VERSION (a whole minute later at least).
    clock.advance_ms(5_000);
    add_line(&api, "7c2f80aabb01", 2, "4002", "changed-line-pw-3").await;
    let (s, changed) = curl(&["-A", ua, &file]);
    assert_eq!(s, 200);
    xmllint(&changed);
    assert!(String::from_utf8_lossy(&changed).contains("changed-line-pw-3"));
    assert_eq!(version(&changed), "1501270900");
    // Two changes in the same minute still give two stamps.
    add_line(&api, "7c2f80aabb01", 2, "4002", "changed-line-pw-4").await;
    let (_, twice) = curl(&["-A", ua, &file]);
    assert_eq!(version(&twice), "1501270901");
    let (_, same) = curl(&[&file]);
    assert_eq!(version(&same), "1501270901");
    // Another MAC's file through this phone's token: 404, no password.
    let (s, body) = curl(&[&format!("{url}/7C2F80AABB02.xml")]);
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    // An unknown MAC through the site URL (phones.unknown_phones = reject): 404, nothing made.
    let (s, _) = curl(&[&format!(
        "http://{}/prov/{site}/7C2F80CCDD99.xml",
        app.cwmp_addr()
    )]);
    assert_eq!(s, 404);
    let (s, _) = api
        .call(Method::GET, "/api/v1/phones/7c2f80ccdd99", None)
        .await;
    assert_eq!(s, 404);
    // The known one through the site URL: its file.
    let (s, body) = curl(&[&format!(
        "http://{}/prov/{site}/7C2F80AABB01.xml",
        app.cwmp_addr()
    )]);
    assert_eq!(s, 200);
    assert_eq!(version(&body), "1501270901");
    // The fetch log shows the fetches, never a password.
    let f = api.get("/api/v1/phones/7c2f80aabb01/fetches").await;
    assert_eq!(f["items"][0]["file"], "7C2F80AABB01.xml", "{f}");
    assert!(!f.to_string().contains(SECRET) && !f.to_string().contains("changed-line-pw"));

    // N870 multicell: one account per handset in a provisioning file.
    add_phone(&api, "7c2f80aabb10", "gigaset", "n870", json!({})).await;
    for n in 1..=3 {
        add_line(
            &api,
            "7c2f80aabb10",
            n,
            &format!("50{n:02}"),
            &format!("handset-pw-{n}"),
        )
        .await;
    }
    let url = url_of(&api, "7c2f80aabb10").await;
    let (s, body) = curl(&[&format!("{url}/7C2F80AABB10.xml")]);
    assert_eq!(s, 200);
    xmllint(&body);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("<provisioning version=\"1.1\" productID=\"n870\">"),
        "{text}"
    );
    for i in 0..3 {
        assert!(
            text.contains(&format!(
                "<param name=\"SIP.Account.{i}.AuthName\" value=\"50{:02}\"/>",
                i + 1
            )),
            "{text}"
        );
        assert!(text.contains(&format!("value=\"handset-pw-{}\"", i + 1)));
    }
    // A vendor key of the wrong shape is refused with the field named.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/7c2f80aabb10",
            Some(json!({"vendor": "gigaset", "model": "n870",
                "settings": {"vendor": {"S_X\"/><evil": "1"}}})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
}

/// Gigaset activation codes (`<provider id>#<code>[#<Digest password>]`, at most 32
/// characters) over curl; a base is bound to its MAC: another MAC presenting its code or
/// credentials (in the file name or the User-Agent) is refused and logged; wrong codes are
/// rate limited; no password reaches the log.
async fn gigaset_activation_codes_and_mac_binding(b: Backend) {
    if !need("curl") {
        return;
    }
    let clock = TestClock::new(T0);
    let db = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.phones.gigaset_provider_id = Some("gs1".into());
        c.phones.max_failed_fetches = 8;
    })
    .await;
    let base = format!("http://{}/prov", app.cwmp_addr());
    let api = Api::new(&app, "operator").await;
    add_phone(&api, "7c2f80aabb21", "gigaset", "n510", json!({})).await;
    add_phone(
        &api,
        "7c2f80aabb22",
        "gigaset",
        "c610",
        json!({"digest_user": "base-22", "digest_password": DIGEST_PW}),
    )
    .await;
    add_line(&api, "7c2f80aabb21", 1, "6021", SECRET).await;
    add_line(&api, "7c2f80aabb22", 1, "6022", "base22-line-pw-9").await;
    let ua = |mac: &str| format!("Gigaset N510 IP PRO/42.250.00.000.000;{mac}");

    // A code for the first base: the Gigaset form and the %MACD URL it opens.
    let (s, code) = api
        .call(
            Method::POST,
            "/api/v1/phones/7c2f80aabb21/activation_code",
            None,
        )
        .await;
    assert_eq!(s, 201, "{code}");
    let c = code["code"].as_str().unwrap().to_string();
    let g = code["gigaset_code"].as_str().unwrap().to_string();
    assert_eq!(g, format!("gs1#{c}"));
    assert!(g.len() <= 32);
    assert!(
        code["gigaset_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/prov/gs1%23{c}/%MACD.xml")),
        "{code}"
    );
    let own = format!("{base}/gs1%23{c}/7C2F80AABB21.xml");
    // Another MAC presenting the code first (its own file name): refused, the code unused.
    let (s, body) = curl(&[
        "-A",
        &ua("7C2F80AABB99"),
        &format!("{base}/gs1%23{c}/7C2F80AABB99.xml"),
    ]);
    assert_eq!(s, 404);
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    // The base itself: its file.
    let (s, body) = curl(&["-A", &ua("7C2F80AABB21"), &own]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    xmllint(&body);
    assert!(String::from_utf8_lossy(&body).contains(SECRET));
    // Afterwards another MAC with the same code: by file name or by User-Agent, refused.
    let (s, _) = curl(&["-A", &ua("7C2F80AABB99"), &own]);
    assert_eq!(s, 404);
    let (s, _) = curl(&[&format!("{base}/gs1%23{c}/7C2F80AABB22.xml")]);
    assert_eq!(s, 404);
    // A wrong provider id, and the code with a password the phone does not have: refused.
    let (s, _) = curl(&[
        "-A",
        &ua("7C2F80AABB21"),
        &format!("{base}/xx%23{c}/7C2F80AABB21.xml"),
    ]);
    assert_eq!(s, 404);
    let (s, _) = curl(&[
        "-A",
        &ua("7C2F80AABB21"),
        &format!("{base}/gs1%23{c}%23pw/7C2F80AABB21.xml"),
    ]);
    assert_eq!(s, 404);

    // The base with Digest credentials: its code needs its Digest password as third part.
    clock.advance_ms(61_000);
    let (_, code) = api
        .call(
            Method::POST,
            "/api/v1/phones/7c2f80aabb22/activation_code",
            None,
        )
        .await;
    let c2 = code["code"].as_str().unwrap().to_string();
    let file22 = |token: &str| format!("{base}/{token}/7C2F80AABB22.xml");
    let (s, _) = curl(&["-A", &ua("7C2F80AABB22"), &file22(&format!("gs1%23{c2}"))]);
    assert_eq!(s, 404);
    let (s, _) = curl(&[
        "-A",
        &ua("7C2F80AABB22"),
        &file22(&format!("gs1%23{c2}%23wrong-password")),
    ]);
    assert_eq!(s, 404);
    let full = format!("gs1#{c2}#{DIGEST_PW}");
    assert!(full.len() <= 32, "{full}");
    let (s, body) = curl(&[
        "-A",
        &ua("7C2F80AABB22"),
        &file22(&full.replace('#', "%23")),
    ]);
    assert_eq!(s, 200);
    assert!(String::from_utf8_lossy(&body).contains("base22-line-pw-9"));
    // Its Digest credentials: its own file; another MAC presenting them is refused.
    let right = format!("base-22:{DIGEST_PW}");
    let (s, _) = curl(&[
        "--digest",
        "-u",
        &right,
        "-A",
        &ua("7C2F80AABB22"),
        &format!("{base}/auth/7C2F80AABB22.xml"),
    ]);
    assert_eq!(s, 200);
    let (s, _) = curl(&[
        "--digest",
        "-u",
        &right,
        "-A",
        &ua("7C2F80AABB77"),
        &format!("{base}/auth/7C2F80AABB22.xml"),
    ]);
    assert_eq!(s, 404);
    let (s, _) = curl(&[
        "--digest",
        "-u",
        &right,
        &format!("{base}/auth/7C2F80AABB21.xml"),
    ]);
    assert_eq!(s, 404);

    // Guessing Gigaset codes: past phones.max_failed_fetches (8) in a minute, 429.
    clock.advance_ms(61_000);
    let mut statuses = Vec::new();
    for n in 0..12u64 {
        let (s, _) = curl(&[&file22(&format!("gs1%23{:012}", 500_000_000_000 + n))]);
        statuses.push(s);
    }
    assert_eq!(&statuses[..8], &[404; 8], "{statuses:?}");
    assert!(statuses[8..].iter().all(|s| *s == 429), "{statuses:?}");
    // An oversized token is not a code: refused the same way.
    let (s, _) = curl(&[&file22(&format!("gs1%23{c2}%23{}", "x".repeat(40)))]);
    assert_eq!(s, 429);

    // `ferroacs phone activate` prints the Gigaset form too.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        ferroacs_cli(
            &app,
            &["phone", "activate", "7c2f80aabb21"],
            &[("FERROACS_PHONES_GIGASET_PROVIDER_ID", "gs1")],
        )
    });
    assert!(ok, "{err}");
    assert!(
        out.contains("Gigaset code to type on the base: gs1#"),
        "{out}"
    );
    assert!(out.contains("/prov/gs1%23"), "{out}");

    // The console's "New activation code" shows the Gigaset form.
    crate::console::add_user(&app, "gina", "operator").await;
    let (s, gina) = crate::console::Raw::login(&app, "gina", crate::console::PASSWORD).await;
    assert_eq!(s, 303);
    let (s, page) = gina
        .post_page("/phones/7c2f80aabb21/activation_code", &[])
        .await;
    assert_eq!(s, 200);
    assert!(page.contains("on a Gigaset base type gs1#"), "{page}");

    // The refusals are logged with the MACs; no password, code or Digest password is.
    let text = crate::support::captured_logs();
    assert!(
        text.contains("another MAC presented this phone's credentials")
            && text.contains("7c2f80aabb99"),
        "the refusal is logged"
    );
    for secret in [
        SECRET,
        "base22-line-pw-9",
        DIGEST_PW,
        c.as_str(),
        c2.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in the log");
    }
}

async fn upload_firmware(api: &Api, name: &str, version: &str, body: &str) -> String {
    upload_bytes(api, name, version, body.as_bytes().to_vec()).await
}

/// The value of `<NAME class="…" value="…"/>` in a ProviderFrame, unescaped.
fn frame_value(text: &str, name: &str) -> Option<String> {
    let i = text.find(&format!("<{name} "))?;
    let rest = &text[i..];
    let j = rest.find("value=\"")? + 7;
    let k = rest[j..].find('"')?;
    Some(rest[j..j + k].replace("&amp;", "&"))
}

/// A firmware file of the file store per model: the phones' files carry its URL (which
/// serves the file) and version; a profile or the phone's settings override it; changing it
/// changes a Gigaset file's VERSION; only operators set it; bad references are refused.
async fn model_firmware_goes_into_phone_files(b: Backend) {
    if !need("curl") {
        return;
    }
    let clock = TestClock::new(T0);
    let db = std::sync::Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let image = format!("GIGASET-N510-IMAGE-{}", "z".repeat(3000));
    let fw = upload_firmware(&api, "n510fw.bin", "42.250.00", &image).await;
    let path = "/api/v1/phone_models/gigaset/N510/firmware";
    // A viewer may read but not set it.
    let viewer = Api::new(&app, "viewer").await;
    let (s, _) = viewer
        .call(Method::PUT, path, Some(json!({"file_id": fw})))
        .await;
    assert_eq!(s, 403);
    // Bad references: no such file, no such vendor, a model that cannot be one.
    for (p, body, field) in [
        (path, json!({"file_id": "no-such-file"}), "file_id"),
        (
            "/api/v1/phone_models/nokia/x1/firmware",
            json!({"file_id": fw}),
            "vendor",
        ),
        (
            "/api/v1/phone_models/gigaset/n5%2010/firmware",
            json!({"file_id": fw}),
            "model",
        ),
        (path, json!({"file_id": fw, "version": "1\n2"}), "version"),
    ] {
        let (s, v) = api.call(Method::PUT, p, Some(body)).await;
        assert_eq!(s, 400, "{p}: {v}");
        assert!(v.to_string().contains(field), "{p}: {v}");
    }
    let (s, v) = api
        .call(Method::PUT, path, Some(json!({"file_id": fw})))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["version"], "42.250.00", "{v}");
    assert_eq!(v["model"], "n510");
    assert_eq!(v["file_name"], "n510fw.bin");
    let list = viewer.get("/api/v1/phone_models/firmware").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let doc = viewer.get("/api/v1/openapi.json").await;
    assert!(
        doc["paths"]["/api/v1/phone_models/{vendor}/{model}/firmware"].is_object()
            || doc
                .to_string()
                .contains("/phone_models/{vendor}/{model}/firmware"),
        "OpenAPI lists the route"
    );
    assert!(doc["components"]["schemas"]["PhoneModelFirmware"].is_object());

    // A Gigaset N510: its file carries the firmware URL and version; the URL serves the file.
    add_phone(&api, "7c2f80aabb31", "gigaset", "n510", json!({})).await;
    add_line(&api, "7c2f80aabb31", 1, "7031", SECRET).await;
    let url = url_of(&api, "7c2f80aabb31").await;
    let file = format!("{url}/7C2F80AABB31.xml");
    let (s, body) = curl(&[&file]);
    assert_eq!(s, 200);
    xmllint(&body);
    let text = String::from_utf8(body.clone()).unwrap();
    let fw_url = frame_value(&text, "S_FIRMWARE_URL").expect("firmware URL");
    assert!(fw_url.contains(&format!("/files/{fw}")), "{fw_url}");
    assert_eq!(
        frame_value(&text, "S_FIRMWARE_VERSION").as_deref(),
        Some("42.250.00")
    );
    let (s, got) = curl(&[&fw_url]);
    assert_eq!(s, 200);
    assert_eq!(String::from_utf8_lossy(&got), image);
    // Unchanged: the same VERSION a day later; a new firmware for the model: a newer one.
    let v1 = frame_value(&text, "VERSION").unwrap();
    clock.advance_ms(86_400_000);
    let (_, again) = curl(&[&file]);
    assert_eq!(again, body);
    let fw2 = upload_firmware(&api, "n510fw2.bin", "42.251.00", "GIGASET-N510-IMAGE-2").await;
    let (s, _) = api
        .call(Method::PUT, path, Some(json!({"file_id": fw2})))
        .await;
    assert_eq!(s, 200);
    let (_, newer) = curl(&[&file]);
    let text2 = String::from_utf8(newer).unwrap();
    assert_eq!(
        frame_value(&text2, "S_FIRMWARE_VERSION").as_deref(),
        Some("42.251.00")
    );
    let v2 = frame_value(&text2, "VERSION").unwrap();
    assert_ne!(v1, v2);
    assert_eq!(v2, "1601270800", "a day after T0");
    // The model's firmware cannot be deleted from the store; the file it replaced can.
    let (s, v) = api
        .call(Method::DELETE, &format!("/api/v1/files/{fw2}"), None)
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v.to_string().contains("gigaset n510"), "{v}");
    let (s, got) = curl(&[&frame_value(&text2, "S_FIRMWARE_URL").unwrap()]);
    assert_eq!((s, got), (200, b"GIGASET-N510-IMAGE-2".to_vec()));
    let (s, v) = api
        .call(Method::DELETE, &format!("/api/v1/files/{fw}"), None)
        .await;
    assert!((200..300).contains(&s), "{s} {v}");

    // A Polycom model: the master names the firmware URL.
    let pfw = upload_firmware(&api, "sip.ld", "6.4.0.1", "POLYCOM-UC-IMAGE").await;
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/v1/phone_models/polycom/vvx400/firmware",
            Some(json!({"file_id": pfw})),
        )
        .await;
    assert_eq!(s, 201);
    add_phone(&api, "0004f2000031", "polycom", "vvx400", json!({})).await;
    let purl = url_of(&api, "0004f2000031").await;
    let (s, master) = curl(&[&format!("{purl}/0004F2000031.cfg")]);
    assert_eq!(s, 200);
    xmllint(&master);
    assert!(
        String::from_utf8_lossy(&master).contains(&format!("/files/{pfw}?")),
        "{}",
        String::from_utf8_lossy(&master)
    );

    // The phone's own settings override the model's file.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/7c2f80aabb31",
            Some(json!({"vendor": "gigaset", "model": "n510",
                "settings": {"firmware_file": "own/n510.bin", "firmware_version": "42.100.00"}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, own) = curl(&[&file]);
    let text3 = String::from_utf8(own).unwrap();
    assert_eq!(
        frame_value(&text3, "S_FIRMWARE_URL").as_deref(),
        Some(format!("{url}/own/n510.bin").as_str())
    );
    assert_eq!(
        frame_value(&text3, "S_FIRMWARE_VERSION").as_deref(),
        Some("42.100.00")
    );
    // Removing the model's firmware: 204, then 404; an operator's action is audited.
    let (s, _) = api.call(Method::DELETE, path, None).await;
    assert_eq!(s, 204);
    let (s, _) = api.call(Method::DELETE, path, None).await;
    assert_eq!(s, 404);
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=100").await.to_string();
    assert!(
        audit.contains("phone_model.firmware_save") && audit.contains("phone_model/gigaset/n510"),
        "{audit}"
    );
}

/// Run the `ferroacs` binary against the app's database: (success, stdout, stderr).
fn ferroacs_cli(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferroacs"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FERROACS_") {
            c.env_remove(k);
        }
    }
    let dir = app.files_dir.path().to_path_buf();
    c.current_dir(&dir)
        .env("FERROACS_DATABASE_URL", &app.db.url)
        .env("FERROACS_FILES_DIR", dir.join("files"))
        .env("FERROACS_SECRETS_KEY", &app.db.key)
        .env("FERROACS_PHONES_PUBLIC_URL", "http://acs.example.net:7547")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Cisco CP-8841 load in the file store, set as the model's firmware: (file id, bytes).
/// 300 kB of every byte value: many TFTP blocks, and a last short one.
async fn cisco_8841_firmware(api: &Api) -> (String, Vec<u8>) {
    let image: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
    let fw = upload_bytes(api, "sip88xx.14-2-1.loads", "14.2.1", image.clone()).await;
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phone_models/cisco/cp-8841/firmware",
            Some(json!({"file_id": fw})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    (fw, image)
}
