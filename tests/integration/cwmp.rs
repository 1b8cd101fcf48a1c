//! The CWMP endpoint against the in-repo CPE simulator: real sessions over HTTP.

use std::path::PathBuf;

use crate::battery;
use crate::cpe::{Device, Root};
use crate::support::{Backend, TestApp};

pub fn samples_dir() -> PathBuf {
    std::env::var("FERROACS_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/samples"))
}

pub fn sample_device(file: &str) -> Device {
    Device::from_csv(samples_dir().join(file))
        .unwrap()
        .with_acs_credentials("cpe", "cpe-secret")
}

battery!(bootstrap_discovers_the_whole_tree_then_periodic_is_quiet);

async fn bootstrap_discovers_the_whole_tree_then_periodic_is_quiet(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev = sample_device("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
    let n_params = dev.model.keys().filter(|k| !k.ends_with('.')).count();
    let report = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    assert_eq!(report.final_status, 204);
    assert!(report.auth_challenges >= 1, "digest challenge expected");
    let rpcs = report.acs_rpcs();
    assert_eq!(
        rpcs.first().copied(),
        Some("SetParameterValues"),
        "{rpcs:?}"
    );
    assert!(rpcs.contains(&"GetParameterNames"), "{rpcs:?}");
    assert!(
        rpcs.iter().filter(|r| **r == "GetParameterValues").count() >= 2,
        "{rpcs:?}"
    );

    let store = app.store();
    let id = ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    );
    let (row, blob) = tokio::task::spawn_blocking({
        let id = id.clone();
        move || {
            (
                store.get_device(&id).unwrap().unwrap(),
                store.load_params(&id).unwrap().unwrap(),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(row.root_model, "InternetGatewayDevice:1");
    assert!(row.discovered_at.is_some());
    assert!(
        row.cr_username.is_some(),
        "connection-request credentials given at bootstrap"
    );
    let tree = ferroacs::domain::params::ParamTree::decode(&blob).unwrap();
    let values = tree.iter().filter(|(_, e)| e.value.is_some()).count();
    assert!(values >= n_params, "stored {values} values of {n_params}");
    // The device now holds the CR credentials ferroacs chose.
    assert_eq!(Some(dev.cr_credentials().username), row.cr_username);
    assert_eq!(
        dev.periodic_interval(),
        Some(std::time::Duration::from_secs(3600))
    );

    // Every envelope sent so far was kept for schema validation (done when the app drops).
    let sent = std::fs::read_dir(app.trace_dir.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("-out-")).count();
    assert!(sent >= report.exchanges.len() - 1, "{sent} envelopes traced");

    // A periodic session afterwards: Inform, empty POST, 204. Nothing else.
    let report = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(report.ended_cleanly(), "{report:?}");
    assert!(report.acs_rpcs().is_empty(), "{:?}", report.acs_rpcs());
}

#[test]
fn schema_validation_of_sent_envelopes_catches_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let bad = r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><soap-env:Body><cwmp:Reboot><Bogus/></cwmp:Reboot></soap-env:Body></soap-env:Envelope>"#;
    std::fs::write(dir.path().join("00000001-out-cwmp-1-0.xml"), bad).unwrap();
    let r = std::panic::catch_unwind(|| crate::support::validate_envelopes(dir.path()));
    assert!(r.is_err(), "an invalid envelope must fail validation");
    // A valid one passes.
    let good = ferroacs::cwmp::encode_request(
        ferroacs::cwmp::CwmpNs::V1_0,
        &ferroacs::cwmp::Header::with_id("1"),
        &ferroacs::cwmp::AcsRequest::Reboot(ferroacs::cwmp::Reboot { command_key: "k".into() }),
    );
    std::fs::remove_file(dir.path().join("00000001-out-cwmp-1-0.xml")).unwrap();
    std::fs::write(dir.path().join("00000002-out-cwmp-1-0.xml"), good).unwrap();
    crate::support::validate_envelopes(dir.path());
}

#[allow(dead_code)]
fn _root() -> Root {
    Root::Igd
}
