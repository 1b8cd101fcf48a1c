//! A device that refuses part of its first-contact (bootstrap) SetParameterValues: the rest
//! is sent again in the same session without what the fault names, so its connection-request
//! credentials still get set (and stored, only once it accepted them); booleans it refuses as
//! words go again as digits (or as digits from the start with `cwmp.boolean_literal`); the
//! issued CWMP credentials are given up only when the device refuses them.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::api::Api;
use crate::battery;
use crate::cpe::{start_cr_listener, CrHandle, Device, Root};
use crate::support::{Backend, TestApp};

const SHARED: (&str, &str) = ("cpe", "cpe-secret");

/// A device logging in with the shared credentials, with a connection-request listener.
async fn device(serial: &str) -> (Device, CrHandle, String) {
    let mut dev =
        Device::synthetic(Root::Device2, serial, 40).with_acs_credentials(SHARED.0, SHARED.1);
    let (_, cr) = start_cr_listener(&mut dev).await.unwrap();
    let id = dev.identity.device_id();
    (dev, cr, id)
}

async fn credentials(api: &Api, id: &str) -> Value {
    api.get(&format!("/api/v1/devices/{id}/credentials")).await
}

/// The connection-request username stored for the device.
async fn stored_cr_username(app: &TestApp, id: &str) -> Option<String> {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || store.get_device(&id).unwrap().unwrap().cr_username)
        .await
        .unwrap()
}

/// The device holds the connection-request credentials ferroacs stored, and a connection
/// request reaches it.
async fn reachable(app: &TestApp, api: &Api, dev: &Device, cr: &mut CrHandle, id: &str) {
    assert_eq!(
        stored_cr_username(app, id).await,
        Some(dev.cr_credentials().username),
        "connection-request credentials stored"
    );
    let (s, r) = api
        .call(
            Method::POST,
            &format!("/api/v1/devices/{id}/connection_request"),
            None,
        )
        .await;
    assert_eq!((s, r["outcome"].as_str()), (200, Some("ok")), "{r}");
    assert!(cr.wait(Duration::from_secs(5)).await.is_some());
}

fn spvs(rep: &crate::cpe::SessionReport) -> usize {
    rep.acs_rpcs()
        .iter()
        .filter(|m| **m == "SetParameterValues")
        .count()
}

fn was_set(rep: &crate::cpe::SessionReport, name: &str) -> bool {
    rep.params_set.iter().any(|(n, _)| n == name)
}

/// A CPE that accepts only 1/0 (9007 on "true"): the bootstrap write goes again without
/// PeriodicInformEnable, which then goes alone as a digit; the connection-request and the
/// issued credentials are set on the way.
async fn word_booleans_refused_are_sent_again_as_digits(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = device("BOOL0001").await;
    dev.behavior.digit_booleans = true;
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let enable = dev.ms("PeriodicInformEnable");
    assert!(was_set(&rep, &enable), "{:?}", rep.params_set);
    assert!(
        was_set(&rep, &dev.ms("ConnectionRequestUsername")),
        "{:?}",
        rep.params_set
    );
    assert!(was_set(&rep, &dev.ms("Password")), "{:?}", rep.params_set);
    // The first write, what was left of it, the boolean as a digit.
    assert_eq!(spvs(&rep), 3, "{:?}", rep.acs_rpcs());
    reachable(&app, &operator, &dev, &mut cr, &id).await;
    assert_eq!(credentials(&operator, &id).await["state"], "issued");
    // The issued credentials then become its own.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(credentials(&operator, &id).await["state"], "own");
}

/// With `cwmp.boolean_literal = "digit"` the bootstrap write carries 1/0 from the start.
async fn digit_literal_booleans_go_out_as_digits(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.cwmp.boolean_literal = ferroacs::config::BooleanLiteral::Digit;
    })
    .await;
    let operator = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = device("BOOL0002").await;
    dev.behavior.digit_booleans = true;
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(spvs(&rep), 1, "{:?}", rep.acs_rpcs());
    assert!(
        was_set(&rep, &dev.ms("PeriodicInformEnable")),
        "{:?}",
        rep.params_set
    );
    reachable(&app, &operator, &dev, &mut cr, &id).await;
    assert_eq!(credentials(&operator, &id).await["state"], "issued");
}

/// A fault naming only PeriodicInformEnable (whatever its form) is no refusal of the issued
/// credentials: they and the connection-request credentials go again without it.
async fn a_fault_naming_another_parameter_keeps_the_issued_credentials(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = device("BOOL0003").await;
    let enable = dev.ms("PeriodicInformEnable");
    dev.faults.spv_fault_on = vec![(enable.clone(), 9007)];
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(!was_set(&rep, &enable), "{:?}", rep.params_set);
    assert!(
        was_set(&rep, &dev.ms("PeriodicInformInterval")),
        "{:?}",
        rep.params_set
    );
    assert!(was_set(&rep, &dev.ms("Password")), "{:?}", rep.params_set);
    // Bounded: the first write, the rest, the boolean once as a digit (refused again).
    assert_eq!(spvs(&rep), 3, "{:?}", rep.acs_rpcs());
    let c = credentials(&operator, &id).await;
    assert_eq!(c["state"], "issued", "{c}");
    reachable(&app, &operator, &dev, &mut cr, &id).await;
    let rep = dev
        .run_session(&app.cwmp_url(), &[("6 CONNECTION REQUEST", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(credentials(&operator, &id).await["state"], "own");
}

/// A device that refuses the issued Username/Password gives them up as before, and still
/// gets its connection-request credentials; a fault naming nothing gives them up only when
/// it repeats.
async fn a_device_refusing_the_issued_credentials_gives_them_up(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let (mut dev, mut cr, id) = device("BOOL0004").await;
    dev.faults.spv_fault_on = vec![(dev.ms("Username"), 9008), (dev.ms("Password"), 9008)];
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(spvs(&rep), 2, "{:?}", rep.acs_rpcs());
    let c = credentials(&operator, &id).await;
    assert_eq!(c["state"], "gave_up", "{c}");
    assert!(c["reason"].as_str().unwrap().contains("9008"), "{c}");
    assert!(
        was_set(&rep, &dev.ms("PeriodicInformEnable")),
        "{:?}",
        rep.params_set
    );
    reachable(&app, &operator, &dev, &mut cr, &id).await;

    // Every SetParameterValues refused with a bare 9008: sent once more, then given up.
    let (mut dev, _cr, id) = device("BOOL0005").await;
    dev.faults.rpc_faults = vec![("SetParameterValues".into(), 9008)];
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(spvs(&rep), 2, "{:?}", rep.acs_rpcs());
    let c = credentials(&operator, &id).await;
    assert_eq!(c["state"], "gave_up", "{c}");
    assert_eq!(stored_cr_username(&app, &id).await, None);
}

/// A transient fault (9002 internal error) is sent again once and is no refusal: the
/// credentials are issued again at the next session.
async fn a_transient_fault_is_no_refusal(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let operator = Api::new(&app, "operator").await;
    let (mut dev, _cr, id) = device("BOOL0006").await;
    dev.faults.rpc_faults = vec![("SetParameterValues".into(), 9002)];
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(spvs(&rep), 2, "{:?}", rep.acs_rpcs());
    let c = credentials(&operator, &id).await;
    assert_eq!(c["state"], "issued", "{c}");
    assert_eq!(stored_cr_username(&app, &id).await, None);
    dev.faults.rpc_faults.clear();
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(was_set(&rep, &dev.ms("Password")), "{:?}", rep.params_set);
    let c = credentials(&operator, &id).await;
    assert_eq!(
        (c["state"].as_str(), c["attempts"].as_i64()),
        (Some("issued"), Some(2)),
        "{c}"
    );
}

/// STUNEnable (given after the discovery) refused as a word goes again as a digit, and the
/// STUN credentials are stored once the device accepted them.
async fn stun_enable_refused_as_a_word_goes_again_as_a_digit(b: Backend) {
    let app = TestApp::spawn(b, |c| c.stun.listen = Some("127.0.0.1:0".into())).await;
    let (dev, _cr, id) = device("BOOL0007").await;
    let mut dev = dev.with_stun();
    dev.behavior.digit_booleans = true;
    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let stun: Vec<&str> = rep
        .params_set
        .iter()
        .filter(|(n, _)| n.ends_with("STUNEnable"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(stun, ["true"], "{:?}", rep.params_set);
    let id2 = id.clone();
    let row = app.store().run(move |s| s.stun_of(&id2)).await.unwrap();
    assert!(row.is_some(), "STUN credentials stored");
    assert!(stored_cr_username(&app, &id).await.is_some());
}

battery!(
    stun_enable_refused_as_a_word_goes_again_as_a_digit,
    word_booleans_refused_are_sent_again_as_digits,
    digit_literal_booleans_go_out_as_digits,
    a_fault_naming_another_parameter_keeps_the_issued_credentials,
    a_device_refusing_the_issued_credentials_gives_them_up,
    a_transient_fault_is_no_refusal,
);
