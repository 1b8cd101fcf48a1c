//! The admin API over real HTTP, driving the CPE simulator: tasks for every RPC end to end,
//! connection requests, files and the file server, search, auth, crash safety.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::battery;
use crate::cpe::{start_cr_listener, CrHandle, Device, Root};
use crate::support::{Backend, TestApp};

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn new(app: &TestApp, role: &str) -> Api {
        let token = ferroacs::auth::password::generate_token();
        let (store, hash, name) = (
            app.store(),
            ferroacs::auth::password::hash_token(&token),
            format!("test-{role}"),
        );
        let role = role.to_string();
        tokio::task::spawn_blocking(move || store.insert_token(&name, &hash, &role, 1).unwrap())
            .await
            .unwrap();
        Api {
            base: format!("http://{}", app.api_addr()),
            token,
            http: app.http(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Create a device before its first contact (`PUT /api/v1/devices/{id}`, 201); its id.
    pub async fn provision(&self, oui: &str, product_class: &str, serial: &str) -> String {
        let id = ferroacs::cwmp::device_id(oui, product_class, serial);
        let (s, v) = self
            .call(
                Method::PUT,
                &format!("/api/v1/devices/{id}"),
                Some(json!({"oui": oui, "product_class": product_class, "serial_number": serial})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        id
    }

    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }
}

fn fast_config(c: &mut ferroacs::config::Config) {
    c.api.connection_request_min_interval_ms = 0;
}

/// A bootstrapped synthetic device with a connection-request listener.
pub async fn online_device(app: &TestApp, serial: &str) -> (Device, CrHandle, String) {
    let mut dev = Device::synthetic(Root::Device2, serial, 120)
        .with_acs_credentials("cpe", "cpe-secret")
        .with_cwmp_version("1.4");
    let (_, cr) = start_cr_listener(&mut dev).await.unwrap();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    (dev, cr, id)
}

/// Create a task with a connection request, let the device run its session (and
/// `extra` more sessions), and return the finished task.
pub async fn run_task(
    api: &Api,
    app: &TestApp,
    dev: &mut Device,
    cr: &mut CrHandle,
    id: &str,
    spec: Value,
    extra: usize,
) -> Value {
    let path = format!("/api/v1/devices/{id}/tasks?connection_request=true&wait=30");
    let a = api.clone();
    let s2 = spec.clone();
    let h = tokio::spawn(async move { a.call(Method::POST, &path, Some(s2)).await });
    cr.wait(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no connection request for {spec}"));
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    for _ in 0..extra {
        let rep = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(rep.ended_cleanly(), "{rep:?}");
    }
    let (status, task) = h.await.unwrap();
    assert!(status == 200 || status == 202, "{spec} -> {status} {task}");
    assert_eq!(task["connection_request"]["outcome"], "ok", "{task}");
    task
}

battery!(
    every_endpoint_needs_a_token_and_the_right_role,
    identity_learnt_by_discovery_is_listed_and_searchable,
    parameter_rpcs_end_to_end,
    device_rpcs_end_to_end,
    transfers_end_to_end,
    connection_request_outcomes,
    search_provisioning_bulk_and_audit,
    crash_mid_session_completes_exactly_once,
    searches_on_common_and_rare_values_agree,
    last_inform_filters_and_identity_changes,
);

async fn every_endpoint_needs_a_token_and_the_right_role(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let operator = Api::new(&app, "operator").await;
    let admin = Api::new(&app, "admin").await;
    let anon = reqwest::Client::new();
    let base = format!("http://{}", app.api_addr());
    let routes = ferroacs::http::api::ROUTES;
    assert!(routes.len() >= 25);
    for r in routes {
        let path = format!("/api/v1{}", r.path)
            .replace("{id}", "999999")
            .replace("{n}", "1")
            .replace("{name}", "nobody")
            .replace("{username}", "nobody");
        let method = Method::from_bytes(r.method.to_uppercase().as_bytes()).unwrap();
        let res = anon
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{} {path} without a token", r.method);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let res = anon
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth("fac_not-a-real-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{} {path} with a bad token", r.method);
        use ferroacs::http::api::Role;
        let low = match r.role {
            Role::Viewer => None,
            Role::Operator => Some(&viewer),
            Role::Admin => Some(&operator),
        };
        if let Some(low) = low {
            let (s, v) = low.call(method.clone(), &path, None).await;
            assert_eq!(s, 403, "{} {path} with a lower role: {v}", r.method);
            assert_eq!(v["error"]["code"], "forbidden");
        }
        // The route is registered: the router does not answer "no_route".
        let (s, v) = admin.call(method, &path, None).await;
        assert_ne!(
            v["error"]["code"], "no_route",
            "{} {path}: {s} {v}",
            r.method
        );
        assert_ne!(s, 405, "{} {path}", r.method);
    }
    // The served OpenAPI document lists exactly the routes of the router.
    let doc = viewer.get("/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.0.3");
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (m, _) in ops.as_object().unwrap() {
            documented += 1;
            assert!(
                routes
                    .iter()
                    .any(|r| r.method == m && format!("/api/v1{}", r.path) == *path),
                "{m} {path} documented but not routed"
            );
        }
    }
    assert_eq!(documented, routes.len());
    let (s, v) = admin.call(Method::GET, "/api/v1/nothing-here", None).await;
    assert_eq!((s, v["error"]["code"].clone()), (404, json!("no_route")));
    let who = viewer.get("/api/v1/whoami").await;
    assert_eq!(who["role"], "viewer");
}

async fn parameter_rpcs_end_to_end(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        fast_config(c);
        c.cwmp.gpv_batch_size = 8;
    })
    .await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "PRM0001").await;

    // Validation before anything is queued: type and writability, naming the parameter.
    let interval = "Device.ManagementServer.PeriodicInformInterval";
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "SetParameterValues", "values": [{"name": interval, "value": "soon"}]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(interval),
        "{v}"
    );
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "SetParameterValues", "values": [{"name": "Device.DeviceInfo.SerialNumber", "value": "X"}]})),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Device.DeviceInfo.SerialNumber"));
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "Nope"})),
        )
        .await;
    assert_eq!(s, 400, "{v}");

    // SetParameterValues.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": interval, "value": "1234"}]}),
        0,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(dev.periodic_interval(), Some(Duration::from_secs(1234)));
    let p = api
        .get(&format!(
            "/api/v1/devices/{id}/parameters?prefix={interval}"
        ))
        .await;
    assert_eq!(p["items"][0]["value"], "1234", "{p}");
    assert_eq!(p["items"][0]["type"], "xsd:unsignedInt", "{p}");

    // GetParameterValues, batched: more names than gpv_batch_size.
    let names: Vec<String> = dev
        .model
        .keys()
        .filter(|k| k.starts_with("Device.DeviceInfo.") && !k.ends_with('.'))
        .cloned()
        .collect();
    assert!(names.len() > 8);
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetParameterValues", "names": names}),
        0,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    let vals = t["result"]["values"].as_array().unwrap();
    assert_eq!(vals.len(), names.len(), "{t}");
    assert!(vals
        .iter()
        .any(|v| v["name"] == "Device.DeviceInfo.SoftwareVersion" && v["value"] == "1.0.0"));

    // GetParameterNames.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetParameterNames", "path": "Device.ManagementServer.", "next_level": true}),
        0,
    )
    .await;
    let names = t["result"]["names"].as_array().unwrap();
    assert!(
        names
            .iter()
            .any(|n| n["name"] == interval && n["writable"] == true),
        "{t}"
    );

    // SetParameterAttributes then GetParameterAttributes; attributes land in the store.
    let t = run_task(&api, &app, &mut dev, &mut cr, &id,
        json!({"rpc": "SetParameterAttributes", "attributes": [{"name": "Device.DeviceInfo.SoftwareVersion", "notification": 2}]}), 0).await;
    assert_eq!(t["status"], "done", "{t}");
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetParameterAttributes", "names": ["Device.DeviceInfo.SoftwareVersion"]}),
        0,
    )
    .await;
    assert_eq!(t["result"]["attributes"][0]["notification"], 2, "{t}");
    let p = api
        .get(&format!(
            "/api/v1/devices/{id}/parameters?prefix=Device.DeviceInfo.SoftwareVersion"
        ))
        .await;
    assert_eq!(p["items"][0]["notification"], 2, "{p}");

    // AddObject and DeleteObject: instance numbers and removed subtrees in the store.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "AddObject", "object": "Device.IP.Interface."}),
        0,
    )
    .await;
    let n = t["result"]["instance_number"].as_u64().unwrap();
    let obj = format!("Device.IP.Interface.{n}.");
    assert!(dev.model.contains_key(&obj));
    let p = api
        .get(&format!("/api/v1/devices/{id}/parameters?prefix={obj}"))
        .await;
    assert!(!p["items"].as_array().unwrap().is_empty(), "{p}");
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "DeleteObject", "object": obj}),
        0,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    assert!(!dev.model.contains_key(&obj));
    let p = api
        .get(&format!("/api/v1/devices/{id}/parameters?prefix={obj}"))
        .await;
    assert!(p["items"].as_array().unwrap().is_empty(), "{p}");

    // A fault: recorded with code and string; 9005 is permanent (no retry).
    dev.faults
        .rpc_faults
        .push(("GetParameterValues".into(), 9005));
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetParameterValues", "names": ["Device.Nope."]}),
        0,
    )
    .await;
    assert_eq!(t["status"], "fault", "{t}");
    assert_eq!(t["fault"]["code"], 9005, "{t}");
    dev.faults.rpc_faults.clear();
    let f = api.get(&format!("/api/v1/faults?device_id={id}")).await;
    assert!(
        f["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == 9005),
        "{f}"
    );
    let tasks = api
        .get(&format!("/api/v1/devices/{id}/tasks?limit=3"))
        .await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 3);
    let next = tasks["next_cursor"].as_str().unwrap();
    let more = api
        .get(&format!(
            "/api/v1/devices/{id}/tasks?limit=100&cursor={next}"
        ))
        .await;
    // Eight tasks in all: three on the first page, five on the second, and no third.
    assert_eq!(more["items"].as_array().unwrap().len(), 5, "{more}");
    assert!(more["next_cursor"].is_null());
    // Session-log rows are written in batches, shortly after each session: write them now.
    app.flush_session_logs().await;
    let sessions = api.get(&format!("/api/v1/devices/{id}/sessions")).await;
    assert!(
        sessions["items"].as_array().unwrap().len() >= 8,
        "{sessions}"
    );
    assert!(sessions["items"][0]["rpcs"].is_array());
}

async fn device_rpcs_end_to_end(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "DEV0001").await;

    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetRPCMethods"}),
        0,
    )
    .await;
    let methods = t["result"]["methods"].as_array().unwrap();
    assert!(methods.iter().any(|m| m == "ChangeDUState"), "{t}");

    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "ScheduleInform", "delay_seconds": 0}),
        0,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");

    // Reboot completes only when the device comes back with M Reboot.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Reboot"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(dev.state.reboots, 1);
    // A CPE that reports the reboot with `1 BOOT` alone (no `M Reboot`): done as well, and
    // rebooted once.
    dev.behavior.omit_m_reboot = true;
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Reboot"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    let by = t["result"]["confirmed_by"]
        .as_array()
        .expect("confirmed_by");
    assert!(
        by.contains(&json!("1 BOOT")) && !by.contains(&json!("M Reboot")),
        "{t}"
    );
    assert_eq!(dev.state.reboots, 2);
    dev.behavior.omit_m_reboot = false;

    // ChangeDUState completes with DUStateChangeComplete.
    let t = run_task(&api, &app, &mut dev, &mut cr, &id,
        json!({"rpc": "ChangeDUState", "operations": [{"op": "install", "url": "http://example.net/du.ipk"}]}), 1).await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(dev.state.deployment_units.len(), 1);

    // FactoryReset completes with 0 BOOTSTRAP.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "FactoryReset"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    assert_eq!(dev.state.factory_resets, 1);

    // Cancel a pending task: it is never sent.
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "Reboot"})),
        )
        .await;
    assert_eq!(s, 202);
    let tid = t["id"].as_i64().unwrap();
    let (s, t) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!((s, t["status"].clone()), (200, json!("cancelled")));
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{tid}"), None)
        .await;
    assert_eq!(s, 409);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(!rep.acs_rpcs().contains(&"Reboot"), "{:?}", rep.acs_rpcs());
}

async fn transfers_end_to_end(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "XFR0001").await;

    let firmware: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let res = app
        .http()
        .post(format!("http://{}/api/v1/files?name=fw.bin&file_type=1%20Firmware%20Upgrade%20Image&version=2.0", app.api_addr()))
        .bearer_auth(&api.token)
        .body(firmware.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let file: Value = res.json().await.unwrap();
    assert_eq!(file["size"], firmware.len());
    use sha2::Digest;
    assert_eq!(file["sha256"], hex::encode(sha2::Sha256::digest(&firmware)));
    let fid = file["id"].as_str().unwrap().to_string();

    // Download: the exact bytes reach the device, TransferComplete finishes the task.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    let got = dev.state.downloads.last().unwrap();
    assert_eq!(got.bytes, firmware);
    let url = got.url.clone();

    // The file server: signed links only, Range, ETag.
    let http = app.http();
    let res = http
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &firmware[10..20]);
    let res = http
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let unsigned = url.split('?').next().unwrap().to_string();
    assert_eq!(http.get(&unsigned).send().await.unwrap().status(), 403);
    let tampered = url.replace("d=", "d=X");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);

    // ScheduleDownload.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "ScheduleDownload", "file_id": fid, "file_type": "1 Firmware Upgrade Image",
               "windows": [{"start": 0, "end": 60}]}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");

    // Download failure reported in TransferComplete: 9010.
    dev.behavior.download_fault = Some(9010);
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "fault", "{t}");
    assert_eq!(t["fault"]["code"], 9010, "{t}");
    dev.behavior.download_fault = None;

    // Upload lands in the file store, attached to the device.
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "Upload", "file_type": "1 Vendor Configuration File"}),
        1,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    let files = api.get(&format!("/api/v1/files?device_id={id}")).await;
    let up = &files["items"][0];
    assert_eq!(
        up["sha256"],
        hex::encode(sha2::Sha256::digest(&dev.behavior.upload_content)),
        "{files}"
    );
    assert_eq!(up["file_type"], "1 Vendor Configuration File");
    let res = http
        .get(format!(
            "http://{}{}",
            app.api_addr(),
            up["url"].as_str().unwrap()
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.bytes().await.unwrap().as_ref(),
        dev.behavior.upload_content.as_slice()
    );

    // CancelTransfer of a delayed download, GetQueuedTransfers in between.
    dev.behavior.honor_delays = true;
    let t = run_task(&api, &app, &mut dev, &mut cr, &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image", "delay_seconds": 3600}), 0).await
        .clone();
    let _ = t;
    let (_, list) = api
        .call(
            Method::GET,
            &format!("/api/v1/devices/{id}/tasks?status=running"),
            None,
        )
        .await;
    let running = &list["items"][0];
    assert_eq!(running["rpc"], "Download", "{list}");
    let key = running["command_key"].as_str().unwrap().to_string();
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "GetAllQueuedTransfers"}),
        0,
    )
    .await;
    assert_eq!(t["result"]["transfers"][0]["command_key"], key, "{t}");
    let t = run_task(
        &api,
        &app,
        &mut dev,
        &mut cr,
        &id,
        json!({"rpc": "CancelTransfer", "command_key": key}),
        0,
    )
    .await;
    assert_eq!(t["status"], "done", "{t}");
    assert!(dev.state.queued_transfers.is_empty());

    // Deleting the file makes it unavailable.
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/files/{fid}"), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
}

async fn connection_request_outcomes(b: Backend) {
    let app = TestApp::spawn(b, |c| c.api.connection_request_min_interval_ms = 60_000).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = online_device(&app, "CRQ0001").await;
    let (s, r) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/connection_request"),
            None,
        )
        .await;
    assert_eq!((s, r["outcome"].clone()), (200, json!("ok")), "{r}");
    assert!(cr.wait(Duration::from_secs(5)).await.is_some());
    let d = api.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(d["connection_request"]["outcome"], "ok", "{d}");
    // Per-device interval: the second request is kept for later, not refused.
    let (_, r) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/connection_request"),
            None,
        )
        .await;
    assert_eq!(r["state"], "scheduled", "{r}");
    assert!(
        r["scheduled_at"].as_i64().unwrap() > d["connection_request"]["at"].as_i64().unwrap(),
        "{r}"
    );

    // Wrong credentials on the device: auth_failed. Unreachable listener: unreachable.
    let app2 = TestApp::spawn(b, fast_config).await;
    let api2 = Api::new(&app2, "operator").await;
    let (mut dev2, cr2, id2) = online_device(&app2, "CRQ0002").await;
    dev2.set_cr_credentials(crate::cpe::Credentials::new("someone", "else"));
    let (_, r) = api2
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id2}/connection_request"),
            None,
        )
        .await;
    assert_eq!(r["outcome"], "auth_failed", "{r}");
    let cr2_addr = cr2.listener.local_addr();
    drop(cr2);
    // The listener's task is aborted, its socket closed once the task is dropped.
    crate::support::wait_until(
        Duration::from_secs(5),
        "the device's connection-request port closed",
        || async {
            match tokio::net::TcpStream::connect(cr2_addr).await {
                Ok(_) => Err("still accepting"),
                Err(_) => Ok(()),
            }
        },
    )
    .await;
    let (_, r) = api2
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id2}/connection_request"),
            None,
        )
        .await;
    assert!(
        r["outcome"] == "unreachable" || r["outcome"] == "timeout",
        "{r}"
    );
    let d = api2.get(&format!("/api/v1/devices/{id2}")).await;
    assert_eq!(d["connection_request"]["outcome"], r["outcome"]);
    let _ = &mut dev;
}

/// The BM632w does not send DeviceInfo.ModelName (nor HardwareVersion) in its Inform: the
/// values discovery reads fill the device's identity, which the list and the query see.
async fn identity_learnt_by_discovery_is_listed_and_searchable(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev = crate::cwmp::sample_device("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
    let report = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );

    let q = |s: &str| format!("/api/v1/devices?q={}", urlencode(s));
    let hit = viewer.get(&q(r#"model = "BM632w""#)).await;
    let items = hit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{hit}");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["model_name"], "BM632w");
    assert_eq!(items[0]["hardware_version"], "40501");
    assert_eq!(items[0]["manufacturer"], "Huawei Technologies Co., Ltd.");
    let one = viewer.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(one["model_name"], "BM632w", "{one}");
    assert!(viewer.get(&q(r#"model = "BM632" "#)).await["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // A later periodic session (no ModelName in its Inform) keeps the learnt value.
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let hit = viewer.get(&q("model LIKE \"BM6*\"")).await;
    assert_eq!(hit["items"].as_array().unwrap().len(), 1, "{hit}");
}

/// A condition matched by most devices is tested per device, a rare one drives the query from
/// its few matches (see `store::search`): both forms, and their negations, find the same
/// devices as a plain reading of the data.
async fn searches_on_common_and_rare_values_agree(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev =
        Device::synthetic(Root::Igd, "DENSE-T", 20).with_acs_credentials("cpe", "cpe-secret");
    assert!(dev
        .run_session(&app.cwmp_url(), &[])
        .await
        .unwrap()
        .ended_cleanly());
    let template = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    let store = app.store();
    let t = template.clone();
    let ids: Vec<String> = tokio::task::spawn_blocking(move || {
        let copies: Vec<(String, String)> = (0..700)
            .map(|i| (format!("DENSE-{i:04}"), format!("SN{i:04}")))
            .collect();
        store.clone_device(&t, &copies, 0).unwrap();
        // One copy reports another version; 600 copies carry the tag "bulk".
        store
            .write_search_values(
                "DENSE-0123",
                &[("DeviceInfo.SoftwareVersion".into(), "9.9.9".into())],
                1,
                false,
            )
            .unwrap();
        let tagged: Vec<String> = copies.iter().take(600).map(|c| c.0.clone()).collect();
        store.set_tag(&tagged, "bulk", true).unwrap();
        copies.into_iter().map(|c| c.0).collect()
    })
    .await
    .unwrap();
    let store = app.store();
    let t = template.clone();
    let values = tokio::task::spawn_blocking(move || store.search_values_of(&t).unwrap())
        .await
        .unwrap();
    let version = values
        .iter()
        .find(|(n, _)| n == "DeviceInfo.SoftwareVersion")
        .map(|(_, v)| v.clone())
        .expect("the simulator reports DeviceInfo.SoftwareVersion");
    let all = |q: String| {
        let viewer = &viewer;
        async move {
            let mut out = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/api/v1/devices?limit=200&q={}", urlencode(&q));
                if let Some(c) = &cursor {
                    path.push_str(&format!("&cursor={}", urlencode(c)));
                }
                let page = viewer.get(&path).await;
                for item in page["items"].as_array().unwrap() {
                    out.push(item["id"].as_str().unwrap().to_string());
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => return out,
                }
            }
        }
    };
    let mut expect_common: Vec<String> =
        ids.iter().filter(|i| *i != "DENSE-0123").cloned().collect();
    expect_common.push(template.clone());
    expect_common.sort();
    let common = all(format!(r#"DeviceInfo.SoftwareVersion = "{version}""#)).await;
    assert_eq!(common, expect_common);
    assert_eq!(
        all(r#"DeviceInfo.SoftwareVersion = "9.9.9""#.into()).await,
        vec!["DENSE-0123".to_string()]
    );
    assert_eq!(
        all(format!(r#"DeviceInfo.SoftwareVersion <> "{version}""#)).await,
        vec!["DENSE-0123".to_string()]
    );
    let untagged = all(r#"tag <> "bulk""#.into()).await;
    let mut expect_untagged: Vec<String> = ids[600..].to_vec();
    expect_untagged.push(template.clone());
    expect_untagged.sort();
    assert_eq!(untagged, expect_untagged);
    let both = all(format!(
        r#"tag = "bulk" AND DeviceInfo.SoftwareVersion = "{version}""#
    ))
    .await;
    assert_eq!(both.len(), 599, "{both:?}");
    assert!(!both.contains(&"DENSE-0123".to_string()));
    let store = app.store();
    let counts = tokio::task::spawn_blocking(move || {
        let f = |q: &str| ferroacs::domain::devices::parse_query(q).unwrap();
        (
            store
                .count_matching_devices(&f(r#"tag = "bulk""#), 10_000)
                .unwrap(),
            store
                .count_matching_devices(&f(r#"tag = "bulk""#), 100)
                .unwrap(),
            store
                .count_matching_devices(&f(r#"tag <> "bulk""#), 10_000)
                .unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(counts, (600, 100, 101));
}

async fn search_provisioning_bulk_and_audit(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let op = Api::new(&app, "operator").await;
    let admin = Api::new(&app, "admin").await;
    let viewer = Api::new(&app, "viewer").await;

    // Pre-provision a device before first contact, with its own credentials and tags.
    let id = ferroacs::cwmp::device_id("02AC50", "SimGW", "SRCH0001");
    let (s, d) = op
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{id}"),
            Some(json!({
                "oui": "02AC50", "product_class": "SimGW", "serial_number": "SRCH0001",
                "cwmp_username": "srch1", "cwmp_password": "own-secret-1", "tags": ["lab", "floor2"]
            })),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    assert_eq!(d["has_own_credentials"], true);
    let (s, _) = viewer
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{id}"),
            Some(json!({"tags": []})),
        )
        .await;
    assert_eq!(s, 403);
    let mut dev = Device::synthetic(Root::Device2, "SRCH0001", 80)
        .with_acs_credentials("srch1", "own-secret-1")
        .with_cwmp_version("1.4");
    assert!(dev
        .run_session(&app.cwmp_url(), &[])
        .await
        .unwrap()
        .ended_cleanly());
    for serial in ["SRCH0002", "SRCH0003"] {
        let mut d = Device::synthetic(Root::Device2, serial, 80)
            .with_acs_credentials("cpe", "cpe-secret")
            .with_cwmp_version("1.4");
        assert!(d
            .run_session(&app.cwmp_url(), &[])
            .await
            .unwrap()
            .ended_cleanly());
    }

    let q = |s: &str| format!("/api/v1/devices?q={}", urlencode(s));
    let all = viewer.get(&q("")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    let hit = viewer
        .get(&q(
            r#"DeviceInfo.SoftwareVersion = "1.0.0" AND tag = "lab""#,
        ))
        .await;
    let ids: Vec<&str> = hit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "{hit}");
    let full = viewer
        .get(&q("Device.DeviceInfo.SoftwareVersion = 1.0.0"))
        .await;
    assert_eq!(full["items"].as_array().unwrap().len(), 3);
    let none = viewer.get(&q("DeviceInfo.SoftwareVersion = 9.9")).await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let not_lab = viewer.get(&q("NOT tag = lab AND serial LIKE SRCH*")).await;
    assert_eq!(not_lab["items"].as_array().unwrap().len(), 2);
    let (s, e) = viewer.call(Method::GET, &q("colour = red"), None).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{e}"
    );
    // Cursor pagination.
    let p1 = viewer.get("/api/v1/devices?limit=2").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let c = p1["next_cursor"].as_str().unwrap();
    let p2 = viewer
        .get(&format!("/api/v1/devices?limit=2&cursor={}", urlencode(c)))
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 1);
    assert!(p2["next_cursor"].is_null());

    // Bulk: the same task for every matching device.
    let (s, r) = op
        .call(
            Method::POST,
            "/api/v1/tasks",
            Some(json!({
                "q": "serial LIKE \"SRCH*\" AND NOT tag = lab",
                "task": {"rpc": "GetParameterValues", "names": ["Device.DeviceInfo.UpTime"]}
            })),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["count"], 2);
    let pending = viewer.get("/api/v1/tasks?status=pending").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);

    // Audit: who did what, admins only.
    let (s, _) = op.call(Method::GET, "/api/v1/audit", None).await;
    assert_eq!(s, 403);
    let (s, tok) = admin
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "oss", "role": "viewer"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = admin
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{}", tok["id"]),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let audit = admin.get("/api/v1/audit").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    for a in [
        "device.provision",
        "task.create_bulk",
        "token.create",
        "token.revoke",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["actor"].as_str().unwrap().starts_with("token:")));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn crash_mid_session_completes_exactly_once(b: Backend) {
    let mut app = TestApp::spawn(b, fast_config).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "CRSH0001").await;
    let before = dev
        .model
        .keys()
        .filter(|k| {
            k.starts_with("Device.IP.Interface.") && k.matches('.').count() == 4 && k.ends_with('.')
        })
        .count();
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "AddObject", "object": "Device.IP.Interface."})),
        )
        .await;
    assert_eq!(s, 202, "{t}");
    let tid = t["id"].as_i64().unwrap();
    // Message 3 is the AddObjectResponse: the device executes AddObject, then the server dies.
    dev.faults.pause_before_message = Some((3, Duration::from_millis(1500)));
    let url = app.cwmp_url();
    let session = dev.run_session(&url, &[("2 PERIODIC", "")]);
    let kill = async {
        // Kept: the kill must fall inside the device's 1.5 s pause (a real-clock window,
        // after the device executed AddObject, before it answers), and no event marks it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.stop(false).await;
    };
    let (r, ()) = tokio::join!(session, kill);
    assert!(r.is_err(), "the session cannot finish with the server gone");
    let app = app.restart().await;
    let api = Api::new(&app, "operator").await;
    let t = api.get(&format!("/api/v1/tasks/{tid}")).await;
    assert_eq!(t["status"], "running", "{t}");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly());
    assert!(
        !rep.acs_rpcs().contains(&"AddObject"),
        "not sent twice: {:?}",
        rep.acs_rpcs()
    );
    let t = api.get(&format!("/api/v1/tasks/{tid}?wait=5")).await;
    assert_eq!(t["status"], "done", "{t}");
    let after = dev
        .model
        .keys()
        .filter(|k| {
            k.starts_with("Device.IP.Interface.") && k.matches('.').count() == 4 && k.ends_with('.')
        })
        .count();
    assert_eq!(after, before + 1, "exactly one instance created");
}

/// The CLI acts on the same database: `task create` (with a connection request and a wait),
/// `task list`, `device list --query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_task_create_runs_on_the_device() {
    let app = TestApp::spawn(Backend::Sqlite, fast_config).await;
    let (mut dev, mut cr, id) = online_device(&app, "CLI0001").await;
    let run = |args: Vec<String>| {
        let url = app.db.url.clone();
        let dir = app.files_dir.path().to_path_buf();
        let key = app.db.key.clone();
        std::thread::spawn(move || {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferroacs"));
            for (k, _) in std::env::vars() {
                if k.starts_with("FERROACS_") {
                    c.env_remove(k);
                }
            }
            let out = c
                .current_dir(&dir)
                .env("FERROACS_DATABASE_URL", url)
                .env("FERROACS_FILES_DIR", dir.join("files"))
                // The simulated device listens on loopback.
                .env(
                    "FERROACS_API_CONNECTION_REQUEST_ALLOW_NETWORKS",
                    "127.0.0.1",
                )
                .env("FERROACS_SECRETS_KEY", key)
                .args(&args)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let h = run(vec![
        "task".into(),
        "create".into(),
        id.clone(),
        r#"{"rpc":"GetRPCMethods"}"#.into(),
        "--connection-request".into(),
        "--wait".into(),
        "20".into(),
    ]);
    cr.wait(Duration::from_secs(15))
        .await
        .expect("the CLI sent a connection request");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(
        rep.acs_rpcs().contains(&"GetRPCMethods"),
        "{:?}",
        rep.acs_rpcs()
    );
    let (ok, out, err) = tokio::task::spawn_blocking(move || h.join().unwrap())
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("connection request: ok"), "{out}");
    assert!(out.contains("\"status\": \"done\""), "{out}");
    let (ok, out, err) = run(vec!["task".into(), "list".into()]).join().unwrap();
    assert!(
        ok && out.contains("GetRPCMethods") && out.contains("done"),
        "{out}{err}"
    );
    let (ok, out, _) = run(vec![
        "device".into(),
        "list".into(),
        "--query".into(),
        "serial = CLI0001".into(),
    ])
    .join()
    .unwrap();
    assert!(ok && out.contains(&id), "{out}");
    let (ok, _, err) = run(vec![
        "task".into(),
        "create".into(),
        id,
        "{\"rpc\":\"Nope\"}".into(),
    ])
    .join()
    .unwrap();
    assert!(!ok && err.contains("GetParameterValues"), "{err}");
}

/// Filters on `last_inform` (written on the sort index's expression) never match a device
/// that has not informed; a periodic Inform reporting another software version updates the
/// identity, the search and the per-version counters (an Inform with an unchanged identity
/// takes a shorter statement that leaves those columns alone).
async fn last_inform_filters_and_identity_changes(b: Backend) {
    let app = TestApp::spawn(b, fast_config).await;
    let op = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let waiting = op.provision("02AC50", "SimGW", "LIWAIT01").await;
    let mut dev =
        Device::synthetic(Root::Igd, "LIDEV001", 20).with_acs_credentials("cpe", "cpe-secret");
    let report = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    let one = viewer.get(&format!("/api/v1/devices/{id}")).await;
    let seen = one["last_inform"]
        .as_i64()
        .expect("an informed device has last_inform");
    let ids = |v: Value| -> Vec<String> {
        let mut out: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    };
    let q = |s: String| format!("/api/v1/devices?q={}", urlencode(&s));
    for (cond, hit) in [
        (format!("last_inform >= {seen}"), true),
        (format!("last_inform = {seen}"), true),
        (format!("last_inform < {}", seen + 1), true),
        (format!("last_inform < {seen}"), false),
        (format!("last_inform > {seen}"), false),
        ("last_inform != 0".to_string(), true),
        ("last_inform < 99999999999999".to_string(), true),
    ] {
        let got = ids(viewer.get(&q(cond.clone())).await);
        let want = if hit { vec![id.clone()] } else { vec![] };
        assert_eq!(
            got, want,
            "{cond}: the never-informed {waiting} must not match"
        );
    }
    let store = app.store();
    let counts = tokio::task::spawn_blocking(move || store.device_counts(seen + 1).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (counts.total, counts.overdue, counts.never_informed),
        (2, 1, 1)
    );

    // A firmware change reported by a periodic Inform reaches the identity and the counters.
    let sw = dev.path("DeviceInfo.SoftwareVersion");
    let before = dev.get(&sw).unwrap().to_string();
    dev.set_value(&sw, "LI-9.9.9");
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let one = viewer.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(one["software_version"], "LI-9.9.9", "{one}");
    assert!(one["last_inform"].as_i64().unwrap() >= seen);
    assert_eq!(
        ids(viewer
            .get(&q("software_version = \"LI-9.9.9\"".into()))
            .await),
        vec![id.clone()]
    );
    assert!(ids(viewer
        .get(&q(format!("software_version = \"{before}\"")))
        .await)
    .is_empty());
    let store = app.store();
    let versions = tokio::task::spawn_blocking(move || store.versions_by_product_class().unwrap())
        .await
        .unwrap();
    assert!(
        versions.iter().any(|v| v.1 == "LI-9.9.9" && v.2 == 1),
        "{versions:?}"
    );
    assert!(!versions.iter().any(|v| v.1 == before), "{versions:?}");

    // And an unchanged identity keeps it: a second periodic session changes nothing of it.
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    let again = viewer.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(again["software_version"], "LI-9.9.9");
    assert_eq!(again["manufacturer"], one["manufacturer"]);
    assert_eq!(again["model_name"], one["model_name"]);

    // The last-inform order follows the latest Inform (read from the narrow copy the
    // triggers keep), pages continue after the cursor, and a deleted device leaves it.
    let last = again["last_inform"].as_i64().unwrap();
    let got = ids(viewer.get(&q(format!("last_inform >= {last}"))).await);
    assert_eq!(got, vec![id.clone()]);
    let third = op.provision("02AC50", "SimGW", "LIWAIT03").await;
    let store = app.store();
    let (filter, sort) = (
        ferroacs::store::search::Filter::All,
        ferroacs::store::search::Sort::LastInform,
    );
    let (newest, oldest, after) = tokio::task::spawn_blocking(move || {
        let newest = store
            .search_device_ids_sorted(&filter, None, 10, sort, true)
            .unwrap();
        let oldest = store
            .search_device_ids_sorted(&filter, None, 10, sort, false)
            .unwrap();
        let after = store
            .search_device_ids_sorted(&filter, Some(&oldest[0]), 10, sort, false)
            .unwrap();
        (newest, oldest, after)
    })
    .await
    .unwrap();
    let mut never = [waiting.clone(), third.clone()];
    never.sort();
    assert_eq!(newest, vec![id.clone(), never[1].clone(), never[0].clone()]);
    assert_eq!(oldest, vec![never[0].clone(), never[1].clone(), id.clone()]);
    assert_eq!(after, vec![never[1].clone(), id.clone()]);
    let (s, d) = op
        .call(Method::DELETE, &format!("/api/v1/devices/{third}"), None)
        .await;
    assert_eq!(s, 204, "{d}");
    let store = app.store();
    let counts = tokio::task::spawn_blocking(move || store.device_counts(0).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (counts.total, counts.overdue, counts.never_informed),
        (2, 0, 1)
    );
}
