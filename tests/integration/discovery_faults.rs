//! Discovery of a device whose reads fault: a GetParameterValues batch that names one
//! unreadable parameter is asked again in halves until that name is isolated and dropped,
//! the rest of the tree is learnt and the discovery completes (no rediscovery at the next
//! Inform); a device that faults every read ends its session after a bounded number of
//! extra requests and is not rediscovered at every Inform after that (it backs off).

use std::sync::Arc;

use crate::battery;
use crate::cpe::{Device, Root};
use crate::support::{Backend, TestApp, TestClock, TestDb};

const T0: i64 = 1_800_000_000_000;
const BATCH: usize = 128;

fn device(serial: &str) -> Device {
    Device::synthetic(Root::Device2, serial, 300).with_acs_credentials("cpe", "cpe-secret")
}

fn device_id(dev: &Device) -> String {
    ferroacs::cwmp::device_id(
        &dev.identity.oui,
        &dev.identity.product_class,
        &dev.identity.serial_number,
    )
}

/// The device's leaves in the order its GetParameterNamesResponse lists them.
fn leaves(dev: &Device) -> Vec<String> {
    dev.model
        .keys()
        .filter(|k| !k.ends_with('.'))
        .cloned()
        .collect()
}

async fn row(app: &TestApp, id: &str) -> ferroacs::store::devices::DeviceRow {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || store.get_device(&id).unwrap().unwrap())
        .await
        .unwrap()
}

async fn tree(app: &TestApp, id: &str) -> ferroacs::domain::params::ParamTree {
    let (store, id) = (app.store(), id.to_string());
    let parts = tokio::task::spawn_blocking(move || store.load_params(&id).unwrap())
        .await
        .unwrap();
    ferroacs::domain::params::ParamTree::stored(parts.base.as_deref(), parts.delta.as_deref())
}

async fn faults(app: &TestApp, id: &str) -> Vec<ferroacs::store::faults::FaultRow> {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || store.list_faults(Some(&id), None, 1000).unwrap())
        .await
        .unwrap()
}

async fn session_faults(app: &TestApp, id: &str) -> Vec<String> {
    app.flush_session_logs().await;
    let (store, id) = (app.store(), id.to_string());
    let rows = tokio::task::spawn_blocking(move || store.list_session_logs(&id, None, 1).unwrap())
        .await
        .unwrap();
    let first = rows.first().expect("a session-log row");
    serde_json::from_str(&first.faults).unwrap()
}

fn count(rpcs: &[&str], name: &str) -> usize {
    rpcs.iter().filter(|r| **r == name).count()
}

async fn a_read_fault_on_one_name_of_the_last_batch_drops_only_that_name(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.gpv_batch_size = BATCH).await;
    let mut dev = device("DISCF0001");
    let id = device_id(&dev);
    let all = leaves(&dev);
    let batches = all.len().div_ceil(BATCH);
    assert!(batches >= 2, "{} leaves", all.len());
    // A leaf of the last batch that the Inform does not carry.
    let last_start = (batches - 1) * BATCH;
    let forced = crate::cpe::model::forced_inform_names(&dev.model, dev.root);
    let bad = all[last_start..]
        .iter()
        .rev()
        .skip((all.len() - last_start) / 2)
        .find(|n| !forced.contains(n) && !ferroacs::datamodel::is_secret(n))
        .expect("a leaf in the last batch")
        .clone();
    dev.faults.gpv_fault_on = vec![(bad.clone(), 9005)];

    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let rpcs = rep.acs_rpcs();
    assert_eq!(count(&rpcs, "GetParameterNames"), 1, "{rpcs:?}");
    // The batch is halved down to the one name: two requests a level.
    let levels = BATCH.next_power_of_two().trailing_zeros() as usize;
    let gpvs = count(&rpcs, "GetParameterValues");
    assert!(
        gpvs > batches && gpvs <= batches + 2 * levels,
        "{gpvs} GetParameterValues for {batches} batches: {rpcs:?}"
    );

    // The tree holds every other parameter with its value, and the discovery completed.
    let d = row(&app, &id).await;
    assert!(d.discovered_at.is_some(), "discovery did not complete");
    let t = tree(&app, &id).await;
    let missing: Vec<&String> = all
        .iter()
        .filter(|n| **n != bad && t.get(n).and_then(|e| e.value.as_ref()).is_none())
        .collect();
    assert!(missing.is_empty(), "not learnt: {missing:?}");
    assert!(t.get(&bad).is_none(), "{bad} kept in the tree");

    // The unreadable name is reported once, not once per retry.
    let f = faults(&app, &id).await;
    let about: Vec<&String> = f
        .iter()
        .map(|f| &f.message)
        .filter(|m| m.contains(&bad))
        .collect();
    assert_eq!(about.len(), 1, "{f:?}");
    assert_eq!(f.len(), 1, "{f:?}");
    let logged = session_faults(&app, &id).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains(&bad), "{logged:?}");

    // The next periodic session rediscovers nothing.
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
}

async fn a_device_that_faults_every_read_ends_its_session_and_backs_off(b: Backend) {
    let clock = TestClock::new(T0);
    let db = Arc::new(
        tokio::task::spawn_blocking(move || TestDb::new(b))
            .await
            .unwrap(),
    );
    let app = TestApp::spawn_clocked(db, None, clock.as_clock(), |c| {
        c.cwmp.gpv_batch_size = BATCH;
    })
    .await;
    let mut dev = device("DISCF0002");
    let id = device_id(&dev);
    let batches = leaves(&dev).len().div_ceil(BATCH);
    dev.faults.rpc_faults = vec![("GetParameterValues".into(), 9002)];

    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let rpcs = rep.acs_rpcs();
    assert_eq!(count(&rpcs, "GetParameterNames"), 1, "{rpcs:?}");
    // Bounded: at most about one name isolated per batch (two requests a level).
    let levels = BATCH.next_power_of_two().trailing_zeros() as usize;
    let gpvs = count(&rpcs, "GetParameterValues");
    assert!(
        gpvs <= batches * (1 + 2 * levels),
        "{gpvs} GetParameterValues for {batches} batches"
    );
    let d = row(&app, &id).await;
    assert!(d.discovered_at.is_none(), "discovery cannot have completed");
    let f = faults(&app, &id).await;
    assert!(
        f.iter()
            .any(|f| f.message.starts_with("discovery incomplete")),
        "{f:?}"
    );
    // The session log says so once, not once per request.
    let logged = session_faults(&app, &id).await;
    assert!(logged.len() <= gpvs / 2, "{logged:?}");

    // The next periodic Inform, a minute later, does not start it all over again.
    clock.advance_ms(60_000);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());

    // Once the back-off has passed, discovery is tried again.
    clock.advance_ms(24 * 3_600_000);
    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert_eq!(
        count(&rep.acs_rpcs(), "GetParameterNames"),
        1,
        "{:?}",
        rep.acs_rpcs()
    );
}

async fn a_device_that_refuses_both_whole_tree_reads_backs_off(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev = device("DISCF0003");
    let id = device_id(&dev);
    dev.faults.rpc_faults = vec![
        ("GetParameterNames".into(), 9002),
        ("GetParameterValues".into(), 9002),
    ];

    let rep = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    let rpcs = rep.acs_rpcs();
    assert_eq!(count(&rpcs, "GetParameterNames"), 1, "{rpcs:?}");
    assert_eq!(count(&rpcs, "GetParameterValues"), 1, "{rpcs:?}");
    assert!(row(&app, &id).await.discovered_at.is_none());

    let rep = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(rep.ended_cleanly(), "{rep:?}");
    assert!(rep.acs_rpcs().is_empty(), "{:?}", rep.acs_rpcs());
}

battery!(
    a_read_fault_on_one_name_of_the_last_batch_drops_only_that_name,
    a_device_that_faults_every_read_ends_its_session_and_backs_off,
    a_device_that_refuses_both_whole_tree_reads_backs_off,
);
