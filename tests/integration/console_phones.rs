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

battery!(phone_pages_list_detail_edit_and_resync);

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
