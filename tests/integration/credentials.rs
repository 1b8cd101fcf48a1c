//! Trust on first use: a device that logs in with the shared default credentials is issued
//! its own in its bootstrap settings; once it has used them, the shared ones no longer open
//! its DeviceId. Devices that ignore or refuse the change keep working; an operator's reset
//! re-admits a factory-reset device; the issued password is shown to no one.

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::Api;
use crate::battery;
use crate::cpe::{Device, Root};
use crate::support::{Backend, TestApp};

const SHARED: (&str, &str) = ("cpe", "cpe-secret");

fn device(serial: &str) -> Device {
    Device::synthetic(Root::Device2, serial, 40).with_acs_credentials(SHARED.0, SHARED.1)
}

async fn credentials(api: &Api, id: &str) -> Value {
    api.get(&format!("/api/v1/devices/{id}/credentials")).await
}

async fn refused_shared(app: &TestApp) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find(|l| l.starts_with("ferroacs_cwmp_refused_total{reason=\"shared_credentials\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shared_credentials counter in:\n{text}"))
}

async fn first_contact_issues_credentials_and_the_next_session_uses_them(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let admin = Api::new(&app, "admin").await;
    let mut dev = device("TOFU0001");
    let id = dev.identity.device_id();

    // First contact: the password goes out in the bootstrap SetParameterValues, with the
    // other bootstrap settings, and no task appears.
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let spvs = rep
        .acs_rpcs()
        .iter()
        .filter(|m| **m == "SetParameterValues")
        .count();
    assert_eq!(spvs, 1, "{:?}", rep.acs_rpcs());
    let set: Vec<&str> = rep.params_set.iter().map(|(n, _)| n.as_str()).collect();
    for leaf in [
        "Username",
        "Password",
        "PeriodicInformInterval",
        "ConnectionRequestPassword",
    ] {
        assert!(
            set.contains(&dev.ms(leaf).as_str()),
            "{leaf} not in {set:?}"
        );
    }
    let issued = dev.get(&dev.ms("Password")).unwrap().to_string();
    assert!(issued.len() >= 32 && issued != SHARED.1, "{issued}");
    // The shared username says nothing about the device: it got its own too.
    let own_name = ferroacs::cwmp::cpe_username(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    assert_eq!(dev.get(&dev.ms("Username")), Some(own_name.as_str()));
    let tasks = viewer.get(&format!("/api/v1/devices/{id}/tasks")).await;
    assert_eq!(tasks["items"].as_array().unwrap().len(), 0, "{tasks}");
    let c = credentials(&viewer, &id).await;
    assert_eq!(c["state"], "issued", "{c}");
    assert_eq!(c["attempts"], 1, "{c}");

    // The next session uses the issued ones: from then on they are its own.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
    let c = credentials(&viewer, &id).await;
    assert_eq!(c["state"], "own", "{c}");
    assert_eq!(c["issued"], true, "{c}");
    let d = viewer.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(d["has_own_credentials"], true, "{d}");

    // Work for the device: a secret the impostor must not receive.
    let secret = "Cr-Secret-For-The-Real-One";
    let (s, task) = operator
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/tasks"),
            Some(json!({"rpc": "SetParameterValues", "values": [
                {"name": dev.ms("ConnectionRequestPassword"), "value": secret}
            ]})),
        )
        .await;
    assert_eq!(s, 202, "{task}");

    // An impostor with the shared credentials and the device's id: 401, nothing received,
    // whichever username it gives; counted and explained.
    let before = refused_shared(&app).await;
    for user in [SHARED.0, own_name.as_str()] {
        let mut impostor = device("TOFU0001").with_acs_credentials(user, SHARED.1);
        let r = impostor.run_session(&app.cwmp_url(), &[]).await;
        assert!(r.is_err(), "{user}: {r:?}");
        assert_ne!(
            impostor.get(&dev.ms("ConnectionRequestPassword")),
            Some(secret)
        );
    }
    assert!(refused_shared(&app).await > before);
    let t = viewer.get(&format!("/api/v1/tasks/{}", task["id"])).await;
    assert_eq!(t["status"], "pending", "{t}");

    // The real device still gets its work.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(dev.get(&dev.ms("ConnectionRequestPassword")), Some(secret));
    let t = viewer.get(&format!("/api/v1/tasks/{}", task["id"])).await;
    assert_eq!(t["status"], "done", "{t}");

    // The issued password is shown to no one.
    let mut seen = Vec::new();
    for api in [&viewer, &admin] {
        for path in [
            format!("/api/v1/devices/{id}"),
            format!("/api/v1/devices/{id}/credentials"),
            format!("/api/v1/devices/{id}/parameters?limit=1000"),
            format!("/api/v1/devices/{id}/tasks"),
            format!("/api/v1/devices/{id}/sessions"),
            "/api/v1/audit".to_string(),
            "/api/v1/faults".to_string(),
        ] {
            let (s, v) = api.call(Method::GET, &path, None).await;
            if s == 200 && v.to_string().contains(&issued) {
                seen.push(path);
            }
        }
    }
    assert!(seen.is_empty(), "issued password shown by {seen:?}");
}

async fn a_device_that_ignores_the_change_keeps_working(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev = device("TOFU0002");
    dev.faults.ignore_acs_credential_changes = true;
    let id = dev.identity.device_id();
    let max = ferroacs::domain::credentials::MAX_ATTEMPTS as usize;
    for n in 1..=max {
        let rep = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(rep.ended_cleanly(), "session {n}: {rep:?}");
        assert!(
            rep.params_set.iter().any(|(p, _)| *p == dev.ms("Password")),
            "session {n}: {:?}",
            rep.params_set
        );
        let c = credentials(&viewer, &id).await;
        assert_eq!(c["state"], "issued", "{c}");
    }
    // Issued and ignored MAX_ATTEMPTS times: ferroacs stops asking and records why.
    for _ in 0..2 {
        let rep = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(rep.ended_cleanly(), "{rep:?}");
        assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
    }
    let c = credentials(&viewer, &id).await;
    assert_eq!(c["state"], "gave_up", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("ignored"), "{c}");
}

async fn a_device_that_refuses_the_password_keeps_its_bootstrap_settings(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev = device("TOFU0003");
    dev.faults.rpc_faults = vec![("SetParameterValues".into(), 9008)];
    let id = dev.identity.device_id();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    // The bootstrap request was sent again without the credentials.
    let spvs = rep
        .acs_rpcs()
        .iter()
        .filter(|m| **m == "SetParameterValues")
        .count();
    assert_eq!(spvs, 2, "{:?}", rep.acs_rpcs());
    let c = credentials(&viewer, &id).await;
    assert_eq!(c["state"], "gave_up", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("9008"), "{c}");
    // The shared credentials keep working, and nothing is issued again.
    dev.faults.rpc_faults.clear();
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
}

async fn an_operator_reset_readmits_a_factory_reset_device(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    let admin = Api::new(&app, "admin").await;
    let mut dev = device("TOFU0004");
    let id = dev.identity.device_id();
    for events in [&[][..], &[("2 PERIODIC", "")][..]] {
        let rep = dev.run_session(&app.cwmp_url(), events).await.unwrap();
        assert!(rep.ended_cleanly(), "{rep:?}");
    }
    assert_eq!(credentials(&viewer, &id).await["state"], "own");

    // Factory reset: the device is back to the shared credentials and locked out.
    dev.factory_reset();
    assert!(dev.run_session(&app.cwmp_url(), &[]).await.is_err());

    // A viewer may not reset; an operator may, and it is audited.
    let path = format!("/api/v1/devices/{id}/credentials");
    let (s, _) = viewer.call(Method::DELETE, &path, None).await;
    assert_eq!(s, 403);
    let (s, v) = operator.call(Method::DELETE, &path, None).await;
    assert_eq!(s, 204, "{v}");
    let (s, _) = operator
        .call(
            Method::DELETE,
            "/api/v1/devices/NO-SUCH-DEVICE/credentials",
            None,
        )
        .await;
    assert_eq!(s, 404);
    let audit = admin.get("/api/v1/audit").await;
    assert!(
        audit.to_string().contains("device.credentials_reset"),
        "{audit}"
    );
    assert_eq!(credentials(&viewer, &id).await["state"], "shared");

    // Admitted again with the shared credentials, issued new ones, which it then uses.
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(credentials(&viewer, &id).await["state"], "issued");
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(credentials(&viewer, &id).await["state"], "own");
}

/// A FactoryReset ferroacs sent needs no operator: the device comes back with `0 BOOTSTRAP`
/// and the shared password while the task is unconfirmed, is admitted, and is issued new
/// credentials; also when it logs in with its own name (the password alone was issued), which
/// names a device with credentials of its own.
async fn a_factory_reset_ferroacs_ordered_needs_no_reset(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let viewer = Api::new(&app, "viewer").await;
    for (serial, own_name) in [("TOFU0006", false), ("TOFU0007", true)] {
        let mut dev = device(serial);
        if own_name {
            let name = ferroacs::cwmp::cpe_username(
                &dev.identity.oui,
                &dev.identity.product_class,
                &dev.identity.serial_number,
            );
            dev = dev.with_acs_credentials(&name, SHARED.1);
        }
        let id = dev.identity.device_id();
        for events in [&[][..], &[("2 PERIODIC", "")][..]] {
            let rep = dev.run_session(&app.cwmp_url(), events).await.unwrap();
            assert!(rep.ended_cleanly(), "{serial}: {rep:?}");
        }
        assert_eq!(credentials(&viewer, &id).await["state"], "own", "{serial}");

        let (s, task) = operator
            .call(
                Method::POST,
                &format!("/api/v1/devices/{id}/tasks"),
                Some(json!({"rpc": "FactoryReset"})),
            )
            .await;
        assert_eq!(s, 202, "{task}");
        let rep = dev
            .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
            .await
            .unwrap();
        assert!(rep.acs_rpcs().contains(&"FactoryReset"), "{rep:?}");

        // Back with the shared password and 0 BOOTSTRAP: admitted, the reset confirmed,
        // new credentials issued and then used.
        let rep = dev.run_session(&app.cwmp_url(), &[]).await;
        let rep = rep.unwrap_or_else(|e| panic!("{serial}: refused after the reset: {e:?}"));
        assert!(rep.ended_cleanly(), "{serial}: {rep:?}");
        let t = viewer.get(&format!("/api/v1/tasks/{}", task["id"])).await;
        assert_eq!(t["status"], "done", "{serial}: {t}");
        assert_eq!(
            credentials(&viewer, &id).await["state"],
            "issued",
            "{serial}"
        );
        let rep = dev
            .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
            .await
            .unwrap();
        assert!(rep.ended_cleanly(), "{serial}: {rep:?}");
        assert_eq!(credentials(&viewer, &id).await["state"], "own", "{serial}");

        // Without an ordered FactoryReset the shared password opens it no more.
        let mut impostor = device(serial);
        assert!(impostor.run_session(&app.cwmp_url(), &[]).await.is_err());
    }
}

async fn switched_off_the_shared_credentials_always_open_a_device(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.issue_credentials = false).await;
    let viewer = Api::new(&app, "viewer").await;
    let mut dev = device("TOFU0005");
    let id = dev.identity.device_id();
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(
        !rep.params_set.iter().any(|(p, _)| *p == dev.ms("Password")),
        "{:?}",
        rep.params_set
    );
    let mut again = device("TOFU0005");
    let rep = again
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(credentials(&viewer, &id).await["state"], "shared");
}

battery!(
    first_contact_issues_credentials_and_the_next_session_uses_them,
    a_device_that_ignores_the_change_keeps_working,
    a_device_that_refuses_the_password_keeps_its_bootstrap_settings,
    an_operator_reset_readmits_a_factory_reset_device,
    a_factory_reset_ferroacs_ordered_needs_no_reset,
    switched_off_the_shared_credentials_always_open_a_device,
);
