//! A state-changing RPC sent to a CPE whose answer never came back ("sent, unconfirmed")
//! must not run twice: the CPE accepted it, executed it and lost the connection before
//! answering. The simulator's ledger counts what it executed.

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{online_device, Api};
use crate::battery;
use crate::cpe::Device;
use crate::support::{Backend, TestApp};

fn executed(dev: &Device, rpc: &str) -> usize {
    dev.state.executed.iter().filter(|e| e.rpc == rpc).count()
}

async fn upload_firmware(app: &TestApp, api: &Api) -> String {
    let res = app
        .http()
        .post(format!(
            "http://{}/api/v1/files?name=fw.bin&file_type=1%20Firmware%20Upgrade%20Image",
            app.api_addr()
        ))
        .bearer_auth(&api.token)
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let file: Value = res.json().await.unwrap();
    file["id"].as_str().unwrap().to_string()
}

async fn queue(api: &Api, id: &str, spec: Value) -> i64 {
    let (s, t) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(spec),
        )
        .await;
    assert_eq!(s, 202, "{t}");
    t["id"].as_i64().unwrap()
}

async fn task(api: &Api, id: i64) -> Value {
    api.get(&format!("/api/v1/tasks/{id}")).await
}

async fn an_interrupted_download_runs_once(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0001").await;
    let fid = upload_firmware(&app, &api).await;

    // Accepted and carried out, its answer lost: the next Inform reports it
    // (M Download + TransferComplete) and nothing is sent again.
    let t = queue(
        &api,
        &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image"}),
    )
    .await;
    dev.faults.close_instead_of_answering = Some("Download".into());
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "Download"), 1);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(
        !rep.acs_rpcs().contains(&"Download"),
        "{:?}",
        rep.acs_rpcs()
    );
    assert_eq!(executed(&dev, "Download"), 1);
    assert_eq!(task(&api, t).await["status"], "done");

    // Accepted, not carried out yet (a delay): the ACS asks for the queued transfers and
    // finds it there.
    dev.behavior.honor_delays = true;
    let t = queue(
        &api,
        &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image",
               "delay_seconds": 3600}),
    )
    .await;
    dev.faults.close_instead_of_answering = Some("Download".into());
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "Download"), 2);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(rep.acs_rpcs(), ["GetAllQueuedTransfers"]);
    assert_eq!(executed(&dev, "Download"), 2);
    let v = task(&api, t).await;
    assert_eq!(v["status"], "running", "{v}");
}

async fn a_download_that_never_reached_the_device_is_sent_again(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0002").await;
    let fid = upload_firmware(&app, &api).await;
    let t = queue(
        &api,
        &id,
        json!({"rpc": "Download", "file_id": fid, "file_type": "1 Firmware Upgrade Image"}),
    )
    .await;
    // The empty POST goes out, the connection drops before the Download is read.
    dev.faults.drop_after_message = Some(2);
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "Download"), 0);
    // The ACS sent it (the task is running) before the device's next session.
    crate::support::wait_until(
        std::time::Duration::from_secs(5),
        "the task is running",
        || async {
            let status = task(&api, t).await["status"].clone();
            if status == "running" {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;
    // The device does not hold it: it is sent again, and runs once.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(rep.acs_rpcs(), ["GetAllQueuedTransfers", "Download"]);
    assert_eq!(executed(&dev, "Download"), 1);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(executed(&dev, "Download"), 1);
    assert_eq!(task(&api, t).await["status"], "done");
}

async fn an_interrupted_reboot_runs_once(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0003").await;
    let t = queue(&api, &id, json!({"rpc": "Reboot"})).await;
    dev.faults.close_instead_of_answering = Some("Reboot".into());
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "Reboot"), 1);
    // The device rebooted: its Inform carries M Reboot with the task's key.
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(!rep.acs_rpcs().contains(&"Reboot"), "{:?}", rep.acs_rpcs());
    assert_eq!(executed(&dev, "Reboot"), 1);
    assert_eq!(dev.state.reboots, 1);
    assert_eq!(task(&api, t).await["status"], "done");
}

/// The envelope carrying a Reboot never reaches the CPE (the connection drops before the
/// answer to its empty POST is read, as when the node serving it dies behind a balancer);
/// the CPE's client posts its empty POST again on a new connection. That empty POST says
/// the CPE never saw the request: it is sent again at once (not failed with 8801 and left
/// for a retry a minute later), and runs once.
async fn a_request_whose_envelope_was_lost_is_sent_again_at_once(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0004").await;
    let t = queue(&api, &id, json!({"rpc": "Reboot"})).await;
    // POST 2 is the empty POST after the InformResponse; its answer (the Reboot) is lost.
    dev.faults.drop_after_message = Some(2);
    let closed = app.closed_connections();
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "Reboot"), 0);
    // The server has seen the connection close before the CPE comes back.
    app.wait_closed_connections(closed).await;
    let rep = dev
        .resume_session(crate::cpe::ResumeMode::EmptyPost)
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(rep.acs_rpcs(), ["Reboot"]);
    assert_eq!(executed(&dev, "Reboot"), 1);
    let v = task(&api, t).await;
    assert!(v["fault"].is_null(), "no fault: {v}");
    // The reboot is confirmed by the next Inform (M Reboot), and nothing is sent twice.
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
    assert_eq!(executed(&dev, "Reboot"), 1);
    assert_eq!(task(&api, t).await["status"], "done");

    // A CPE that answers every request with an empty POST: the request goes once more,
    // then the second empty POST is its fault (8801) and the session ends.
    let t = queue(
        &api,
        &id,
        json!({"rpc": "GetParameterValues", "names": ["Device.DeviceInfo.UpTime"]}),
    )
    .await;
    let ev = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&ev, "9");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c.post_soap(&inform).await.unwrap().status, 200);
    let first = c.post_empty().await.unwrap();
    assert!(
        first.body_text().contains("GetParameterValues"),
        "{}",
        first.body_text()
    );
    let again = c.post_empty().await.unwrap();
    assert_eq!(
        again.body_text(),
        first.body_text(),
        "the same envelope again"
    );
    let end = c.post_empty().await.unwrap();
    assert_eq!(end.status, 204, "{}", end.body_text());
    let v = task(&api, t).await;
    assert_eq!(v["fault"]["code"], 8801, "{v}");
}

/// Two SetParameterValues in one session; the CPE executes the second and loses its link
/// before answering. The first is done (its value readable) before the second goes out, the
/// second is confirmed by the ParameterKey of the next Inform, and nothing runs twice.
async fn a_task_carried_out_is_done_before_the_next_one_is_sent(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0005").await;
    // The first contact's bootstrap settings are a SetParameterValues too.
    let before = executed(&dev, "SetParameterValues");
    let code = "Device.DeviceInfo.ProvisioningCode";
    let interval = "Device.ManagementServer.PeriodicInformInterval";
    let first = queue(
        &api,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": code, "value": "site-7"}]}),
    )
    .await;
    let second = queue(
        &api,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": interval, "value": "4321"}]}),
    )
    .await;
    // Both answered: both done.
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_ok(), "{r:?}");
    let done = task(&api, first).await;
    assert_eq!(done["status"], "done", "{done}");
    let p = api
        .get(&format!("/api/v1/devices/{id}/parameters?prefix={code}"))
        .await;
    assert_eq!(p["items"][0]["value"], "site-7", "{p}");
    assert_eq!(task(&api, second).await["status"], "done");
    assert_eq!(executed(&dev, "SetParameterValues"), before + 2);

    // Again, the second answer lost this time.
    let first = queue(
        &api,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": code, "value": "site-8"}]}),
    )
    .await;
    let second = queue(
        &api,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": interval, "value": "4322"}]}),
    )
    .await;
    dev.faults.close_instead_of_answering = Some("SetParameterValues".into());
    dev.faults.close_after_answering = 1;
    let r = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(executed(&dev, "SetParameterValues"), before + 4);
    // The first is done and readable while the second's outcome is unknown.
    let done = task(&api, first).await;
    assert_eq!(done["status"], "done", "{done}");
    let p = api
        .get(&format!("/api/v1/devices/{id}/parameters?prefix={code}"))
        .await;
    assert_eq!(p["items"][0]["value"], "site-8", "{p}");
    assert_eq!(task(&api, second).await["status"], "running");
    // The next Inform carries the second's ParameterKey: done, nothing sent again.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
    assert_eq!(executed(&dev, "SetParameterValues"), before + 4);
    assert_eq!(task(&api, second).await["status"], "done");
}

/// The first task of a session may move to `running` with the Inform, before it is sent,
/// when sending it again is harmless (a SetParameterValues, a read). A session cut right
/// after the InformResponse leaves it running, unsent: the next session sends it, once,
/// and it ends done. A Reboot first in line waits, pending, for its own request.
async fn a_task_started_with_the_inform_and_never_sent_is_sent_by_the_next_session(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = online_device(&app, "ONCE0006").await;
    let before = executed(&dev, "SetParameterValues");
    let code = "Device.DeviceInfo.ProvisioningCode";
    let inform_then_cut = |dev: &mut Device, msg: &str| {
        let ev = dev.inform_events(&[("2 PERIODIC", "")]);
        let inform = dev.inform_envelope(&ev, msg);
        let client = dev.http_client(&app.cwmp_url());
        async move {
            let mut c = client.unwrap();
            let r = c.post_soap(&inform).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body_text());
            assert!(
                r.body_text().contains("InformResponse"),
                "{}",
                r.body_text()
            );
            // The connection closes here: the device never asks for what comes next.
        }
    };

    // A Reboot first: not started with the Inform, nor the task behind it.
    let reboot = queue(&api, &id, json!({"rpc": "Reboot"})).await;
    let set = queue(
        &api,
        &id,
        json!({"rpc": "SetParameterValues", "values": [{"name": code, "value": "site-9"}]}),
    )
    .await;
    inform_then_cut(&mut dev, "a1").await;
    for t in [reboot, set] {
        let v = task(&api, t).await;
        assert_eq!(v["status"], "pending", "{v}");
    }
    let (s, _) = api
        .call(Method::DELETE, &format!("/api/v1/tasks/{reboot}"), None)
        .await;
    assert!((200..300).contains(&s), "cancel the Reboot: {s}");

    // The SetParameterValues is first now: running once the Inform is answered.
    inform_then_cut(&mut dev, "a2").await;
    let v = task(&api, set).await;
    assert_eq!(v["status"], "running", "{v}");
    assert!(!v["started_at"].is_null(), "{v}");
    assert_eq!(executed(&dev, "SetParameterValues"), before);

    // The next session sends it; it runs once and ends done.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(rep.acs_rpcs(), ["SetParameterValues"]);
    assert_eq!(executed(&dev, "SetParameterValues"), before + 1);
    assert_eq!(dev.model[code].value, "site-9");
    assert_eq!(task(&api, set).await["status"], "done");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
    assert_eq!(executed(&dev, "SetParameterValues"), before + 1);
}

battery!(
    a_request_whose_envelope_was_lost_is_sent_again_at_once,
    a_task_started_with_the_inform_and_never_sent_is_sent_by_the_next_session,
    an_interrupted_download_runs_once,
    a_download_that_never_reached_the_device_is_sent_again,
    an_interrupted_reboot_runs_once,
    a_task_carried_out_is_done_before_the_next_one_is_sent,
);
