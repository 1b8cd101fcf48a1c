//! VoIP lines and presets through the admin API, against the CPE simulator: a line assigned
//! with a connection request reaches the device at once and its status is read back; CSV
//! import reports bad rows and stores none of them; presets created, changed and deleted
//! over HTTP converge the devices they match (and only those); passwords never come back.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{online_device, Api};
use crate::battery;
use crate::cpe::start_cr_listener;
use crate::support::{Backend, TestApp};
use crate::voip::{dev_id, issue2_device};

const SECRET: &str = "pw-alice-Xq81-secret";

battery!(
    line_via_api_reaches_the_device_at_once,
    csv_import_via_api_reports_bad_rows,
    presets_via_api_converge_matching_devices,
);

fn fast_config(c: &mut ferroacs::config::Config) {
    c.api.connection_request_min_interval_ms = 0;
}

async fn post_csv(api: &Api, path: &str, csv: &str) -> (u16, Value) {
    let res = api
        .http
        .post(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// GET a path as text, asserting 200.
async fn get_text(api: &Api, path: &str) -> String {
    let res = api
        .http
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    res.text().await.unwrap()
}

async fn audit_actions(admin: &Api) -> Vec<(String, String, String)> {
    let a = admin.get("/api/v1/audit?limit=1000").await;
    a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["target"].as_str().unwrap_or_default().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn line_via_api_reaches_the_device_at_once(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let admin = Api::new(&app, "admin").await;
    let mut dev = issue2_device("VAPI0001");
    let (_, mut cr) = start_cr_listener(&mut dev).await.unwrap();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = dev_id(&dev);
    let line = format!("/api/v1/devices/{id}/lines/2");
    let account = json!({
        "sip_user": "alice",
        "password": SECRET,
        "directory_number": "+4930123456",
        "registrar": "sip.example.net",
        "registrar_port": 5070,
        "transport": "UDP",
    });

    // Input errors name the field and what it takes; nothing is stored.
    let mut bad = account.clone();
    bad["registrar_port"] = json!("five");
    let (s, v) = operator.call(Method::PUT, &line, Some(bad)).await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("registrar_port") && msg.contains("u32"),
        "{msg}"
    );
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{id}/lines/0"),
            Some(account.clone()),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with("line:"),
        "{v}"
    );
    let (s, _) = operator
        .call(
            Method::PUT,
            "/api/v1/devices/NO-SUCH-DEVICE/lines/1",
            Some(account.clone()),
        )
        .await;
    assert_eq!(s, 404);
    let (s, v) = viewer.call(Method::GET, &line, None).await;
    assert_eq!((s, v["error"]["code"].clone()), (404, json!("not_found")));

    // Assign with a connection request: the device is asked at once.
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("{line}?connection_request=true"),
            Some(account.clone()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    assert_eq!(v["pending"], true, "{v}");
    assert_eq!(v["password_set"], true, "{v}");
    assert_eq!(v["account"]["sip_user"], "alice", "{v}");
    assert_eq!(v["connection_request"]["outcome"], "ok", "{v}");
    assert!(!v.to_string().contains(SECRET), "{v}");
    assert!(
        cr.wait(Duration::from_secs(10)).await.is_some(),
        "the device got no connection request"
    );
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(
        rep.acs_rpcs().contains(&"SetParameterValues"),
        "{:?}",
        rep.acs_rpcs()
    );
    let client = "Device.Services.VoiceService.1.SIP.Client.2.";
    assert_eq!(dev.get(&format!("{client}AuthUserName")), Some("alice"));
    assert_eq!(dev.get(&format!("{client}AuthPassword")), Some(SECRET));
    assert_eq!(
        dev.get("Device.Services.VoiceService.1.SIP.Network.1.RegistrarServer"),
        Some("sip.example.net")
    );

    // Read back: applied, mapped, status read from the device.
    let v = viewer.get(&line).await;
    assert_eq!(v["pending"], false, "{v}");
    assert_eq!(v["applied_revision"], v["revision"], "{v}");
    assert_ne!(v["status"], "pending", "{v}");
    assert_ne!(v["status"], "fault", "{v}");
    assert_eq!(v["layout"], "tr104_issue2", "{v}");
    let status_path = format!("{client}Status");
    assert_eq!(v["status_path"], json!(status_path), "{v}");
    assert!(v["status_at"].is_i64(), "status read back: {v}");
    assert!(v["unmapped"].is_array(), "{v}");
    assert!(v["fault"].is_null(), "{v}");

    // The device registers; its next session reads the status back.
    dev.set_value(&status_path, "Up");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("1 BOOT", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let v = viewer.get(&line).await;
    assert_eq!(v["status"], "registered", "{v}");
    assert_eq!(v["device_status"], "Up", "{v}");
    let list = viewer.get(&format!("/api/v1/devices/{id}/lines")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["line"], 2);

    // The password never comes back, from any read.
    let params = viewer
        .get(&format!(
            "/api/v1/devices/{id}/parameters?prefix={client}&limit=100000"
        ))
        .await;
    assert!(
        params["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == json!(format!("{client}AuthPassword"))),
        "the password parameter is known: {params}"
    );
    for path in [
        format!("/api/v1/devices/{id}/lines"),
        line.clone(),
        format!("/api/v1/devices/{id}"),
        format!("/api/v1/devices/{id}/parameters?limit=100000"),
        format!("/api/v1/devices/{id}/sessions"),
        format!("/api/v1/devices/{id}/tasks"),
        format!("/api/v1/devices/{id}/presets"),
        "/api/v1/faults".to_string(),
        "/api/v1/tasks".to_string(),
        "/api/v1/audit?limit=1000".to_string(),
    ] {
        let text = get_text(&admin, &path).await;
        assert!(!text.contains(SECRET), "GET {path} shows the password");
        assert!(
            !text.contains("Xq81"),
            "GET {path} shows part of the password"
        );
    }

    // Replacing without a password keeps the stored one.
    let mut again = account.clone();
    again.as_object_mut().unwrap().remove("password");
    again["display_name"] = json!("Front desk");
    let (s, v) = operator.call(Method::PUT, &line, Some(again)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["password_set"], true, "{v}");
    assert_eq!(v["pending"], true, "{v}");

    // Delete.
    let (s, _) = operator.call(Method::DELETE, &line, None).await;
    assert_eq!(s, 204);
    let (s, _) = viewer.call(Method::GET, &line, None).await;
    assert_eq!(s, 404);
    let (s, _) = operator.call(Method::DELETE, &line, None).await;
    assert_eq!(s, 404);

    let audit = audit_actions(&admin).await;
    let target = format!("device/{id}/line/2");
    let assigns: Vec<_> = audit
        .iter()
        .filter(|(a, t, _)| a == "line.assign" && *t == target)
        .collect();
    assert_eq!(assigns.len(), 2, "{audit:?}");
    assert!(
        assigns.iter().any(|(_, _, d)| d.contains("password set")),
        "{audit:?}"
    );
    assert!(
        assigns
            .iter()
            .any(|(_, _, d)| d.contains("password unchanged")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|(a, t, _)| a == "line.delete" && *t == target),
        "{audit:?}"
    );
}

async fn provision(api: &Api, serial: &str) -> String {
    api.provision("00AA11", "ATA2", serial).await
}

async fn csv_import_via_api_reports_bad_rows(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let admin = Api::new(&app, "admin").await;
    let a = provision(&operator, "IMP0001").await;
    let c = provision(&operator, "IMP0002").await;
    let csv = format!(
        "device_id,line,password,sip_user,registrar,registrar_port\n\
         {a},1,{SECRET},alice,sip.example.net,5060\n\
         {a},2,pw2,bob,sip.example.net,abc\n\
         {c},1,pw3,carol,sip.example.net,5060\n\
         NO-SUCH-DEVICE,1,pw4,dave,sip.example.net,5060\n\
         {c},99,pw5,erin,sip.example.net,5060\n\
         {a},1,pw6,alice2,sip.example.net,5060\n"
    );

    // Dry run: the report, nothing stored.
    let (s, r) = post_csv(&operator, "/api/v1/lines/import?dry_run=true", &csv).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["imported"], 2, "{r}");
    let rejected = r["rejected"].as_array().unwrap();
    let by_line: Vec<(i64, &str)> = rejected
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        by_line,
        vec![
            (3, "registrar_port"),
            (5, "device_id"),
            (6, "line"),
            (7, "line")
        ],
        "{r}"
    );
    for e in rejected {
        assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    }
    let lines_of = |id: String| {
        let api = operator.clone();
        async move {
            let v = api.get(&format!("/api/v1/devices/{id}/lines")).await;
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["line"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert!(lines_of(a.clone()).await.is_empty());
    assert!(lines_of(c.clone()).await.is_empty());

    // For real: the good rows, whole; none of the bad ones.
    let (s, r) = post_csv(&operator, "/api/v1/lines/import", &csv).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["imported"], 2, "{r}");
    assert_eq!(r["rejected"].as_array().unwrap().len(), 4, "{r}");
    assert!(!r.to_string().contains(SECRET));
    assert_eq!(lines_of(a.clone()).await, vec![1]);
    assert_eq!(lines_of(c.clone()).await, vec![1]);
    let l = operator.get(&format!("/api/v1/devices/{a}/lines/1")).await;
    assert_eq!(l["account"]["sip_user"], "alice", "{l}");
    assert_eq!(l["password_set"], true);
    assert!(!l.to_string().contains(SECRET));

    // A bad header refuses the whole file, naming the column.
    let (s, r) = post_csv(
        &operator,
        "/api/v1/lines/import",
        "device_id,line,colour\nX,1,red\n",
    )
    .await;
    assert_eq!(s, 400, "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("colour"),
        "{r}"
    );
    let (s, _) = post_csv(&operator, "/api/v1/lines/import", "").await;
    assert_eq!(s, 400);

    let audit = audit_actions(&admin).await;
    let imports: Vec<_> = audit.iter().filter(|e| e.0 == "line.import").collect();
    assert_eq!(imports.len(), 1, "dry runs are not audited: {audit:?}");
    assert!(imports[0].2.contains("2 lines imported"), "{audit:?}");
}

async fn presets_via_api_converge_matching_devices(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let admin = Api::new(&app, "admin").await;
    let (mut gold, mut gold_cr, gold_id) = online_device(&app, "PAPI0001").await;
    let (mut plain, mut plain_cr, plain_id) = online_device(&app, "PAPI0002").await;
    let (s, v) = operator
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{gold_id}"),
            Some(json!({"tags": ["gold"]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let code = "Device.DeviceInfo.ProvisioningCode";
    let interval = "Device.ManagementServer.PeriodicInformInterval";

    // Wrong types are refused, naming the parameter and the type it takes.
    let (s, v) = operator
        .call(
            Method::POST,
            "/api/v1/presets",
            Some(json!({"name": "bad", "values": [{"name": interval, "value": "often"}]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (400, json!("invalid")),
        "{v}"
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(interval) && msg.contains("unsignedInt"),
        "{msg}"
    );
    let (s, v) = operator
        .call(
            Method::POST,
            "/api/v1/presets",
            Some(json!({"name": "bad", "filter": "colour = red", "values": [{"name": code, "value": "x"}]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("filter:"),
        "{v}"
    );
    let (s, v) = operator
        .call(
            Method::POST,
            "/api/v1/presets",
            Some(json!({"name": "bad", "values": [{"name": interval, "value": "60", "type": "xsd:string"}]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("xsd:unsignedInt"),
        "{v}"
    );
    assert!(viewer.get("/api/v1/presets").await["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Create: only the devices the filter selects get new work.
    let preset = json!({
        "name": "gold",
        "filter": "tag = gold AND model LIKE \"*\"",
        "priority": 5,
        "events": ["periodic"],
        "values": [{"name": code, "value": "gold-1"}],
        "periodic_inform": {"interval": 600}
    });
    let (s, v) = operator
        .call(Method::POST, "/api/v1/presets", Some(preset.clone()))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "gold");
    let rev1 = v["revision"].as_i64().unwrap();
    let (s, v) = operator
        .call(Method::POST, "/api/v1/presets", Some(preset.clone()))
        .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (409, json!("conflict")),
        "{v}"
    );
    let store = app.store();
    let (g, p) = (gold_id.clone(), plain_id.clone());
    let (g_row, p_row) = tokio::task::spawn_blocking(move || {
        (
            store.get_device(&g).unwrap().unwrap(),
            store.get_device(&p).unwrap().unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(g_row.has_new_work(), "the matching device has new work");
    assert!(!p_row.has_new_work(), "the other device was left alone");
    let listed = viewer.get("/api/v1/presets").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    let got = viewer.get("/api/v1/presets/gold").await;
    assert_eq!(got["filter"], preset["filter"]);
    assert_eq!(got["values"][0]["value"], "gold-1");
    assert_eq!(got["periodic_inform"]["interval"], 600);

    for d in [&mut gold, &mut plain] {
        let rep = d
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(rep.ended_cleanly(), "{rep:?}");
    }
    assert_eq!(gold.get(code), Some("gold-1"));
    assert_eq!(gold.get(interval), Some("600"));
    assert_ne!(plain.get(code), Some("gold-1"));
    assert_ne!(plain.get(interval), Some("600"));

    let r = viewer
        .get(&format!("/api/v1/devices/{gold_id}/presets"))
        .await;
    assert_eq!(r["applied"][code]["preset"], "gold", "{r}");
    assert_eq!(r["applied"][code]["value"], "gold-1", "{r}");
    assert_eq!(r["applied"][interval]["value"], "600", "{r}");
    assert_eq!(
        r["converged"],
        json!([{"name": "gold", "converged_revision": rev1, "current_revision": rev1, "up_to_date": true}]),
        "{r}"
    );
    assert_eq!(r["events"], json!(["periodic"]), "{r}");
    let r = viewer
        .get(&format!("/api/v1/devices/{plain_id}/presets"))
        .await;
    assert_eq!(r["applied"], json!({}), "{r}");

    // Change it with a connection request: the matching device converges at once.
    let mut changed = preset.clone();
    changed["values"][0]["value"] = json!("gold-2");
    changed.as_object_mut().unwrap().remove("name");
    let (s, v) = operator
        .call(
            Method::PUT,
            "/api/v1/presets/gold?connection_request=true",
            Some(changed.clone()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["connection_requests"], 1, "{v}");
    let rev2 = v["revision"].as_i64().unwrap();
    assert!(rev2 > rev1);
    assert!(
        gold_cr.wait(Duration::from_secs(10)).await.is_some(),
        "no connection request to the matching device"
    );
    let rep = gold
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(gold.get(code), Some("gold-2"));
    assert!(
        plain_cr.wait(Duration::from_millis(300)).await.is_none(),
        "the other device was asked too"
    );
    let r = viewer
        .get(&format!("/api/v1/devices/{gold_id}/presets"))
        .await;
    assert_eq!(r["converged"][0]["converged_revision"], rev2, "{r}");
    assert_eq!(r["converged"][0]["up_to_date"], true, "{r}");

    let mut renamed = changed.clone();
    renamed["name"] = json!("silver");
    let (s, v) = operator
        .call(Method::PUT, "/api/v1/presets/gold", Some(renamed))
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = operator
        .call(
            Method::PUT,
            "/api/v1/presets/base",
            Some(json!({"periodic_inform": {"interval": 900}})),
        )
        .await;
    assert_eq!(s, 201, "PUT creates: {v}");

    // Delete.
    for name in ["gold", "base"] {
        let (s, _) = operator
            .call(Method::DELETE, &format!("/api/v1/presets/{name}"), None)
            .await;
        assert_eq!(s, 204);
    }
    let (s, _) = viewer.call(Method::GET, "/api/v1/presets/gold", None).await;
    assert_eq!(s, 404);
    let (s, _) = operator
        .call(Method::DELETE, "/api/v1/presets/gold", None)
        .await;
    assert_eq!(s, 404);

    let audit = audit_actions(&admin).await;
    for action in ["preset.create", "preset.update", "preset.delete"] {
        assert!(
            audit
                .iter()
                .any(|(a, t, _)| a == action && t == "preset/gold"),
            "{action}: {audit:?}"
        );
    }
}
