//! The console's phone pages in headless Chromium: create a phone, see its lines, its last
//! fetch, the firmware it reported and its fetch log, search the list, re-provision it
//! (SIP NOTIFY check-sync to a UDP socket standing in for the phone), edit it; and what a
//! forged or under-privileged request gets (403, nothing changed).

use std::process::Command;

use reqwest::Method;
use serde_json::json;

use crate::api::Api;
use crate::battery;
use crate::console::{add_user, backend_name, console_config, login, Raw, A11Y_AUDIT, PASSWORD};
use crate::support::browser::Browser;
use crate::support::{Backend, TestApp};

battery!(
    phone_pages_list_detail_edit_and_resync,
    firmware_per_model_page_and_the_firmware_a_phone_is_given
);

const LINE_PW: &str = "line-pw-Qx81-secret";
const DIGEST_PW: &str = "Dg-pass-21-abcdef";

async fn phone_pages_list_detail_edit_and_resync(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "otto", "operator").await;
    add_user(&app, "vera", "viewer").await;
    let api = Api::new(&app, "operator").await;
    // The phone: a UDP socket that answers NOTIFY with 200 OK.
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = phone.local_addr().unwrap().port();
    let listener = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        let (n, from) = phone.recv_from(&mut buf).await.unwrap();
        phone
            .send_to(
                b"SIP/2.0 200 OK\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n",
                from,
            )
            .await
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    });

    let b = Browser::start(&format!("phones-{}", backend_name(backend))).await;
    login(&b, &app, "otto", PASSWORD).await;
    b.goto(&app.api_url("/phones")).await;
    b.find("#no-phones").await;
    b.click_css("#new-phone").await;
    b.find("#phone-form").await;
    // A malformed MAC is refused on the form, naming the problem.
    b.type_into("#phone-mac-input", "00:04:F2:00:00:2G").await;
    b.type_into("#phone-model", "vvx400").await;
    b.click_css("#save-phone").await;
    let err = b.wait_text("#phone-error", "Refused").await;
    assert!(err.contains("mac"), "{err}");
    let mac = b.find("#phone-mac-input").await;
    b.clear(&mac).await;
    b.type_into("#phone-mac-input", "00:04:F2:00:00:21").await;
    b.type_into("#phone-contact", &format!("127.0.0.1:{port}"))
        .await;
    b.type_into("#phone-digest-user", "vvx-21").await;
    b.type_into("#phone-digest-password", DIGEST_PW).await;
    b.click_css("#save-phone").await;
    b.wait_text("#phone-notice", "Phone 0004f2000021 created")
        .await;
    assert_eq!(
        b.text(&b.find("#phone-access").await).await,
        "its URL token; HTTP Digest as vvx-21"
    );

    // A line and a fetch with a reported firmware version show on the page.
    let (s, v) = api
        .call(
            Method::PUT,
            "/api/v1/phones/0004f2000021/lines/1",
            Some(json!({"sip_user": "2021", "password": LINE_PW, "registrar": "sip.example.net"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let url = api.get("/api/v1/phones/0004f2000021/url").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-A"])
        .arg("FileTransport PolycomVVX-VVX_400-UA/5.9.0.9373")
        .arg(format!("{url}/0004F2000021-ferroacs.cfg?fw=5.9.1.100"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "200");
    b.goto(&app.api_url("/phones/00-04-f2-00-00-21")).await;
    b.wait_text("#phone-firmware", "5.9.1.100").await;
    assert_eq!(
        b.text(&b.find("#phone-last-file").await).await,
        "0004F2000021-ferroacs.cfg"
    );
    let fetches = b.text(&b.find("table#fetches").await).await;
    assert!(fetches.contains("0004F2000021-ferroacs.cfg") && fetches.contains("200"));
    let lines = b.text(&b.find("table#lines").await).await;
    assert!(
        lines.contains("2021") && lines.contains("sip.example.net"),
        "{lines}"
    );
    let body = b.body_text().await;
    assert!(!body.contains(LINE_PW) && !body.contains(DIGEST_PW));
    assert_eq!(b.exec(A11Y_AUDIT, vec![]).await, json!([]));
    b.screenshot("phone").await;

    // Re-provision now.
    b.click_css("#phone-resync").await;
    b.wait_text("#phone-notice", "answered 200").await;
    let msg = listener.await.unwrap();
    assert!(msg.contains("\r\nEvent: check-sync"), "{msg}");

    // Edit: another model; the Digest password is kept when left empty.
    let model = b.find("#phone-model").await;
    b.clear(&model).await;
    b.type_into("#phone-model", "vvx500").await;
    b.click_css("#save-phone").await;
    b.wait_text("#phone-notice", "Phone 0004f2000021 saved")
        .await;
    let p = api.get("/api/v1/phones/0004f2000021").await;
    assert_eq!(p["model"], "vvx500", "{p}");
    assert_eq!(p["digest_user"], "vvx-21", "{p}");

    // The list: search by part of a MAC in another spelling, and by vendor.
    b.goto(&app.api_url("/phones")).await;
    b.type_into("#phone-q", "F2:00:00:21").await;
    b.click_css("#phone-search").await;
    b.wait_text("table#phones", "0004f2000021").await;
    assert!(b
        .text(&b.find("table#phones").await)
        .await
        .contains("5.9.1.100"));
    b.goto(&app.api_url("/phones?q=yealink")).await;
    b.find("#no-phones").await;
    b.goto(&app.api_url("/phones?q=polycom")).await;
    b.wait_text("table#phones", "0004f2000021").await;
    assert_eq!(b.exec(A11Y_AUDIT, vec![]).await, json!([]));
    b.screenshot("phones").await;

    // Forged and under-privileged requests: 403, nothing changes.
    let (s, otto) = Raw::login(&app, "otto", PASSWORD).await;
    assert_eq!(s, 303);
    let save = [
        ("existing", "1"),
        ("mac", "0004f2000021"),
        ("vendor", "polycom"),
        ("model", "vvx600"),
    ];
    assert_eq!(otto.post("/phones/save", &save, None).await, 403);
    assert_eq!(
        otto.post("/phones/0004f2000021/resync", &[("_csrf", "forged")], None)
            .await,
        403
    );
    let (s, vera) = Raw::login(&app, "vera", PASSWORD).await;
    assert_eq!(s, 303);
    let (s, page) = vera.get("/phones/0004f2000021").await;
    assert_eq!(s, 200);
    assert!(!page.contains("phone-resync") && !page.contains("phone-form"));
    let csrf = vera.csrf().await;
    let mut with_csrf = save.to_vec();
    with_csrf.push(("_csrf", &csrf));
    assert_eq!(vera.post("/phones/save", &with_csrf, None).await, 403);
    assert_eq!(
        vera.post(
            "/phones/0004f2000021/activation_code",
            &[("_csrf", &csrf)],
            None
        )
        .await,
        403
    );
    assert_eq!(
        api.get("/api/v1/phones/0004f2000021").await["model"],
        "vvx500"
    );
    // The console's actions are audited as the user's.
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=100").await.to_string();
    assert!(audit.contains("user:otto"), "{audit}");
    assert!(audit.contains("phone.resync") && audit.contains("phone.update"));
    assert!(!audit.contains(DIGEST_PW) && !audit.contains(LINE_PW));
}

async fn upload_file(api: &Api, name: &str, version: &str, body: &str) -> String {
    let res = api
        .http
        .post(format!(
            "{}/api/v1/files?name={name}&file_type=1%20Firmware%20Upgrade%20Image&version={version}",
            api.base
        ))
        .bearer_auth(&api.token)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: serde_json::Value = res.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// The "Firmware per model" page: an operator sets and clears a model's firmware (the
/// use cases of the API, audited as the user's); a phone's page shows the firmware it is
/// given and where from (the model, its profile) beside the version it reported; a viewer
/// reads the page without its forms and is refused its actions, as is a forged request.
async fn firmware_per_model_page_and_the_firmware_a_phone_is_given(backend: Backend) {
    let app = TestApp::spawn(backend, console_config).await;
    add_user(&app, "otto", "operator").await;
    add_user(&app, "vera", "viewer").await;
    let api = Api::new(&app, "operator").await;
    let fw = upload_file(&api, "cp8841.loads", "14.2.1", "CISCO-8841-LOADS").await;
    for (mac, vendor, model, profile) in [
        ("001b54000041", "cisco", "cp-8841", None),
        ("0004f2000042", "polycom", "vvx400", Some("lab")),
    ] {
        if let Some(p) = profile {
            let (s, v) = api
                .call(
                    Method::PUT,
                    &format!("/api/v1/phone_profiles/{p}"),
                    Some(json!({"firmware_file": "lab/sip.ld", "firmware_version": "6.5.0"})),
                )
                .await;
            assert!(s == 200 || s == 201, "{v}");
        }
        let mut body = json!({"mac": mac, "vendor": vendor, "model": model});
        if let Some(p) = profile {
            body["profile"] = json!(p);
        }
        let (s, v) = api.call(Method::POST, "/api/v1/phones", Some(body)).await;
        assert_eq!(s, 201, "{v}");
    }

    let b = Browser::start(&format!("phone-models-{}", backend_name(backend))).await;
    login(&b, &app, "otto", PASSWORD).await;
    b.goto(&app.api_url("/phones")).await;
    b.click_css("#phone-models").await;
    let row = b.wait_text("#model-cisco-cp-8841", "cp-8841").await;
    assert!(row.contains("none"), "{row}");
    // A model that cannot be one is refused on the form, naming the field.
    b.exec(
        "document.getElementById('fw-vendor').value = 'cisco'; return 1;",
        vec![],
    )
    .await;
    b.type_into("#fw-model", "cp 8841").await;
    b.click_css("#save-model-firmware").await;
    let err = b.wait_text("#models-error", "Refused").await;
    assert!(err.contains("model"), "{err}");
    let model = b.find("#fw-model").await;
    b.clear(&model).await;
    b.exec(
        "document.getElementById('fw-vendor').value = 'cisco'; return 1;",
        vec![],
    )
    .await;
    b.type_into("#fw-model", "CP-8841").await;
    b.click_css("#save-model-firmware").await;
    b.wait_text(
        "#models-notice",
        "Firmware of cisco cp-8841 set: cp8841.loads version 14.2.1",
    )
    .await;
    let row = b.text(&b.find("#model-cisco-cp-8841").await).await;
    assert!(
        row.contains("cp8841.loads") && row.contains("14.2.1"),
        "{row}"
    );
    assert_eq!(b.exec(A11Y_AUDIT, vec![]).await, json!([]));
    b.screenshot("phone-models").await;
    let (_, list) = api
        .call(Method::GET, "/api/v1/phone_models/firmware", None)
        .await;
    assert_eq!(list["items"][0]["file_id"], fw.as_str(), "{list}");

    // The Cisco phone reports a version; its page shows that and the model's firmware.
    let url = api.get("/api/v1/phones/001b54000041/url").await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let o = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("{url}/SEP001B54000041.cnf.xml?fw=sip88xx.14-1-1"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.ends_with("200") && out.contains(&format!("/files/{fw}")),
        "{out}"
    );
    b.goto(&app.api_url("/phones/001b54000041")).await;
    b.wait_text("#phone-firmware", "sip88xx.14-1-1").await;
    assert_eq!(
        b.text(&b.find("#phone-firmware-given").await).await,
        "cp8841.loads version 14.2.1, from the model's firmware"
    );
    assert_eq!(b.exec(A11Y_AUDIT, vec![]).await, json!([]));
    b.screenshot("phone-firmware-given").await;
    // The Polycom phone's profile names its own file.
    b.goto(&app.api_url("/phones/0004f2000042")).await;
    let given = b.wait_text("#phone-firmware-given", "lab/sip.ld").await;
    assert!(
        given.starts_with("lab/sip.ld version 6.5.0, from profile lab"),
        "{given}"
    );
    assert_eq!(
        b.text(&b.find("#phone-firmware").await).await,
        "not reported yet"
    );

    // A viewer reads the page, without forms; her posts and a forged one are refused.
    let (s, vera) = Raw::login(&app, "vera", PASSWORD).await;
    assert_eq!(s, 303);
    let (s, page) = vera.get("/phone_models").await;
    assert_eq!(s, 200);
    assert!(page.contains("cp8841.loads") && page.contains("14.2.1"));
    assert!(!page.contains("model-firmware-form") && !page.contains("clear-cisco-cp-8841"));
    let csrf = vera.csrf().await;
    let clear = [("vendor", "cisco"), ("model", "cp-8841"), ("_csrf", &csrf)];
    assert_eq!(
        vera.post("/phone_models/firmware/delete", &clear, None)
            .await,
        403
    );
    let set = [
        ("vendor", "polycom"),
        ("model", "vvx400"),
        ("file_id", fw.as_str()),
        ("_csrf", &csrf),
    ];
    assert_eq!(vera.post("/phone_models/firmware", &set, None).await, 403);
    let (s, otto) = Raw::login(&app, "otto", PASSWORD).await;
    assert_eq!(s, 303);
    let forged = [
        ("vendor", "cisco"),
        ("model", "cp-8841"),
        ("_csrf", "forged"),
    ];
    assert_eq!(
        otto.post("/phone_models/firmware/delete", &forged, None)
            .await,
        403
    );
    let (_, list) = api
        .call(Method::GET, "/api/v1/phone_models/firmware", None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Clearing it: the phone is given nothing any more.
    b.goto(&app.api_url("/phone_models")).await;
    b.click_css("#clear-cisco-cp-8841").await;
    b.wait_text("#models-notice", "Firmware of cisco cp-8841 cleared")
        .await;
    let row = b.text(&b.find("#model-cisco-cp-8841").await).await;
    assert!(row.contains("none"), "{row}");
    b.goto(&app.api_url("/phones/001b54000041")).await;
    let given = b.wait_text("#phone-firmware-given", "none").await;
    assert!(given.starts_with("none"), "{given}");
    let admin = Api::new(&app, "admin").await;
    let audit = admin.get("/api/v1/audit?limit=100").await.to_string();
    assert!(
        audit.contains("phone_model.firmware_save")
            && audit.contains("phone_model.firmware_delete")
            && audit.contains("user:otto"),
        "{audit}"
    );
}
