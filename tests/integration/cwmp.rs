//! The CWMP endpoint against the in-repo CPE simulator: real sessions over HTTP.

use std::path::PathBuf;

use crate::battery;
use crate::cpe::{Device, Root};
use crate::support::{Backend, TestApp};

pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples")
}

pub fn sample_device(file: &str) -> Device {
    Device::from_csv(samples_dir().join(file))
        .unwrap()
        .with_acs_credentials("cpe", "cpe-secret")
}

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
                store.load_params(&id).unwrap(),
            )
        }
    })
    .await
    .unwrap();
    assert!(blob.base.is_some(), "the whole tree is stored");
    assert_eq!(row.root_model, "InternetGatewayDevice:1");
    assert!(row.discovered_at.is_some());
    assert!(
        row.cr_username.is_some(),
        "connection-request credentials given at bootstrap"
    );
    let tree =
        ferroacs::domain::params::ParamTree::stored(blob.base.as_deref(), blob.delta.as_deref());
    let values = tree.iter().filter(|(_, e)| e.value.is_some()).count();
    assert!(values >= n_params, "stored {values} values of {n_params}");
    // The device now holds the CR credentials ferroacs chose.
    assert_eq!(Some(dev.cr_credentials().username), row.cr_username);
    assert_eq!(
        dev.periodic_interval(),
        Some(std::time::Duration::from_secs(3600))
    );

    // Every envelope sent so far was kept for schema validation (done when the app drops).
    let sent = std::fs::read_dir(app.trace_dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("-out-")
        })
        .count();
    assert!(
        sent >= report.exchanges.len() - 1,
        "{sent} envelopes traced"
    );

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
        &ferroacs::cwmp::AcsRequest::Reboot(ferroacs::cwmp::Reboot {
            command_key: "k".into(),
        }),
    );
    std::fs::remove_file(dir.path().join("00000001-out-cwmp-1-0.xml")).unwrap();
    std::fs::write(dir.path().join("00000002-out-cwmp-1-0.xml"), good).unwrap();
    crate::support::validate_envelopes(dir.path());
}

#[allow(dead_code)]
fn _root() -> Root {
    Root::Igd
}

battery!(
    bootstrap_discovers_the_whole_tree_then_periodic_is_quiet,
    every_sample_inform_is_accepted,
    cookieless_and_reconnecting_cpes_complete_their_sessions,
    dropped_connection_resumes_with_the_cookie,
    concurrent_inform_is_refused_then_taken_over,
    wrong_password_is_refused_and_nothing_is_stored,
    bad_input_gets_clear_errors_and_the_server_stays_healthy,
    hold_requests_lets_the_acs_speak_first,
    version_negotiation_and_idle_timeout,
    a_second_node_refuses_a_concurrent_inform_and_resumes_a_dropped_session,
    overload_and_failed_logins_get_503_with_retry_after,
    cwmp_over_tls_accepts_basic_and_marks_the_cookie_secure,
    bootstrap_forgets_the_tree_but_keeps_configuration_and_tasks,
    tls_client_certificates_replace_http_authentication,
    a_periodic_session_costs_two_statements_whatever_the_tree_size,
    values_a_session_learns_go_to_a_small_delta_until_they_are_many,
    the_endpoint_answers_every_path_the_file_and_phone_routes_do_not_take,
    an_inform_with_the_cookie_of_an_unfinished_session_is_authenticated_once,
    a_stray_empty_post_outside_a_session_gets_204_without_a_challenge,
);

fn inform_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("inform-")
        })
        .collect();
    v.sort();
    assert!(
        v.len() >= 4,
        "sample Informs not found in {}",
        samples_dir().display()
    );
    v
}

async fn every_sample_inform_is_accepted(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let dev = Device::synthetic(Root::Igd, "X1", 20).with_acs_credentials("cpe", "cpe-secret");
    for file in inform_files() {
        let body = std::fs::read(&file).unwrap();
        let mut client = dev.http_client(&app.cwmp_url()).unwrap();
        let resp = client
            .post_raw(
                &body,
                &[
                    ("Content-Type", "text/xml; charset=utf-8"),
                    ("SOAPAction", ""),
                ],
            )
            .await
            .unwrap();
        let text = resp.body_text().to_string();
        assert_eq!(resp.status, 200, "{}: {text}", file.display());
        assert!(
            text.contains("InformResponse") && text.contains("<MaxEnvelopes>1</MaxEnvelopes>"),
            "{text}"
        );
        // The answer uses the namespace of the Inform.
        let sample = String::from_utf8_lossy(&body);
        let ns = if sample.contains("cwmp-1-0") {
            "urn:dslforum-org:cwmp-1-0"
        } else {
            "urn:dslforum-org:cwmp-1-"
        };
        assert!(text.contains(ns), "{text}");
        client.close();
    }
    let store = app.store();
    let ids: Vec<String> =
        tokio::task::spawn_blocking(move || store.list_devices(None, 100).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
    assert_eq!(ids.len(), inform_files().len(), "{ids:?}");
    assert!(ids.iter().any(|i| i.contains("202BC1-BM632w")), "{ids:?}");
}

async fn cookieless_and_reconnecting_cpes_complete_their_sessions(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    // Ignores cookies, keeps its connection.
    let mut dev =
        Device::synthetic(Root::Device2, "NOCOOKIE", 60).with_acs_credentials("cpe", "cpe-secret");
    dev.client.cookies = false;
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    assert!(r.acs_rpcs().contains(&"GetParameterNames"));
    assert_eq!(r.connections, 1);
    // HTTP/1.0 style: a new connection for every POST; the cookie carries the session.
    let mut dev =
        Device::synthetic(Root::Igd, "HTTP10", 60).with_acs_credentials("cpe", "cpe-secret");
    dev.client.keep_alive = false;
    dev.client.http10 = true;
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    assert!(r.connections > 3, "{} connections", r.connections);
    let store = app.store();
    let id = dev.identity.device_id();
    let tree = tokio::task::spawn_blocking(move || store.load_params(&id).unwrap())
        .await
        .unwrap();
    assert!(
        tree.base.is_some(),
        "discovery finished across reconnections"
    );
}

async fn dropped_connection_resumes_with_the_cookie(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev = sample_device("data_model_202BC1-BM632w-8KA8WA1151100043.csv");
    dev.faults.drop_after_message = Some(4);
    let closed = app.closed_connections();
    let err = dev.run_session(&app.cwmp_url(), &[]).await.unwrap_err();
    assert!(format!("{err}").to_lowercase().contains("drop"), "{err}");
    // As a real CPE, which tries again after a timeout: the server has seen the connection
    // close (and answered what it carried) before the message comes again. Sent at once,
    // the copy could overtake the original, and the two answers cross.
    app.wait_closed_connections(closed).await;
    let r = dev
        .resume_session(crate::cpe::ResumeMode::Resend)
        .await
        .unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    let store = app.store();
    let id = dev.identity.device_id();
    let (row, tree) = tokio::task::spawn_blocking(move || {
        (
            store.get_device(&id).unwrap().unwrap(),
            store.load_params(&id).unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(
        row.discovered_at.is_some(),
        "the resumed session finished discovery"
    );
    assert!(tree.base.is_some(), "the whole tree is stored");
    let tree =
        ferroacs::domain::params::ParamTree::stored(tree.base.as_deref(), tree.delta.as_deref());
    assert!(tree.len() > 900, "{} parameters", tree.len());
    assert!(row.session_owner.is_none(), "lock released");
}

async fn concurrent_inform_is_refused_then_taken_over(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut first =
        Device::synthetic(Root::Igd, "TWICE", 30).with_acs_credentials("cpe", "cpe-secret");
    let mut second =
        Device::synthetic(Root::Igd, "TWICE", 30).with_acs_credentials("cpe", "cpe-secret");
    let ev = first.inform_events(&[]);
    let inform = first.inform_envelope(&ev, "1");
    let mut c1 = first.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c1.post_soap(&inform).await.unwrap().status, 200);
    // The same device informs again on another connection while the first session is active.
    let ev2 = second.inform_events(&[]);
    let inform2 = second.inform_envelope(&ev2, "1");
    let mut c2 = second.http_client(&app.cwmp_url()).unwrap();
    let resp = c2.post_soap(&inform2).await.unwrap();
    assert_eq!(resp.status, 503, "{}", resp.body_text());
    assert!(resp.header("Retry-After").is_some());
    assert!(resp.body_text().contains("already in session"));
    // The first session is intact and goes on.
    let next = c1.post_empty().await.unwrap();
    assert_eq!(next.status, 200);
    assert!(
        next.body_text().contains("SetParameterValues"),
        "{}",
        next.body_text()
    );
    // The first CPE goes away (e.g. reboots); once the server has seen the connection
    // close, its new Inform takes over at once.
    let closed = app.closed_connections();
    c1.close();
    app.wait_closed_connections(closed).await;
    let r = second
        .run_session(&app.cwmp_url(), &[("1 BOOT", "")])
        .await
        .unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
}

async fn wrong_password_is_refused_and_nothing_is_stored(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev =
        Device::synthetic(Root::Igd, "BADPW", 10).with_acs_credentials("cpe", "not-the-password");
    let err = dev.run_session(&app.cwmp_url(), &[]).await.unwrap_err();
    assert!(
        matches!(err, crate::cpe::SimError::AuthFailed { .. }),
        "{err}"
    );
    let store = app.store();
    let n = tokio::task::spawn_blocking(move || store.count_devices().unwrap())
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing stored for an unauthenticated request");
    // Without credentials at all: a Digest challenge, never Basic over plain HTTP.
    let resp = app
        .http()
        .post(app.cwmp_url())
        .body(Device::synthetic(Root::Igd, "NOAUTH", 5).inform_envelope(&[], "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenges: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("Digest ") && c.contains("qop=\"auth\"")),
        "{challenges:?}"
    );
    assert!(
        !challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    // A device's own credentials do not open another device, and the default ones do not
    // open a device that has its own.
    let store = app.store();
    let realm = app.config.cwmp.realm.clone();
    tokio::task::spawn_blocking(move || {
        let mut own = Device::synthetic(Root::Igd, "OWN", 5);
        own.identity.serial_number = "OWN".into();
        let p = ferroacs::store::devices::ProvisionDevice {
            id: own.identity.device_id(),
            oui: own.identity.oui.clone(),
            product_class: own.identity.product_class.clone(),
            serial_number: "OWN".into(),
            cwmp_credentials: Some(Some(("own-user".into(), "own-pass".into()))),
            tags: None,
        };
        let ha1 = move |u: &str, pw: &str| ferroacs::auth::digest::ha1(u, &realm, pw);
        store.provision_device(&p, Some(&ha1), 1).unwrap();
    })
    .await
    .unwrap();
    let mut with_default =
        Device::synthetic(Root::Igd, "OWN", 5).with_acs_credentials("cpe", "cpe-secret");
    assert!(with_default
        .run_session(&app.cwmp_url(), &[])
        .await
        .is_err());
    let mut other =
        Device::synthetic(Root::Igd, "OTHER", 5).with_acs_credentials("own-user", "own-pass");
    assert!(other.run_session(&app.cwmp_url(), &[]).await.is_err());
    let mut right =
        Device::synthetic(Root::Igd, "OWN", 5).with_acs_credentials("own-user", "own-pass");
    let r = right.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly());
}

async fn bad_input_gets_clear_errors_and_the_server_stays_healthy(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.max_inform_bytes = 64 * 1024).await;
    let dev = Device::synthetic(Root::Igd, "FUZZ", 10).with_acs_credentials("cpe", "cpe-secret");
    let post = |body: Vec<u8>, headers: Vec<(&'static str, &'static str)>| {
        let mut c = dev.http_client(&app.cwmp_url()).unwrap();
        async move {
            let r = c.post_raw(&body, &headers).await.unwrap();
            (r.status, r.body_text().to_string())
        }
    };
    let xml = vec![("Content-Type", "text/xml")];
    let (s, t) = post(b"this is not xml at all".to_vec(), xml.clone()).await;
    assert_eq!(s, 400, "{t}");
    let mut inform = Device::synthetic(Root::Igd, "FUZZ", 10)
        .inform_envelope(&[], "1")
        .into_bytes();
    inform.truncate(inform.len() / 2);
    let (s, t) = post(inform, xml.clone()).await;
    assert_eq!(s, 400, "{t}");
    assert!(t.to_lowercase().contains("xml"), "{t}");
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>&lol3;</soap-env:Body></soap-env:Envelope>"#;
    let (s, t) = post(bomb.as_bytes().to_vec(), xml.clone()).await;
    assert_eq!(s, 400, "{t}");
    assert!(t.contains("DOCTYPE"), "{t}");
    let (s, _) = post(vec![b'<'; 200 * 1024], xml.clone()).await;
    assert_eq!(s, 413);
    let (s, t) = post(b"<a/>".to_vec(), vec![("Content-Encoding", "br")]).await;
    assert_eq!(s, 415, "{t}");
    // A gzip-compressed Inform is fine.
    let mut plain =
        Device::synthetic(Root::Igd, "GZIP", 10).with_acs_credentials("cpe", "cpe-secret");
    let ev = plain.inform_events(&[]);
    let inform = plain.inform_envelope(&ev, "7");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, inform.as_bytes()).unwrap();
    let (s, t) = post(
        gz.finish().unwrap(),
        vec![("Content-Type", "text/xml"), ("Content-Encoding", "gzip")],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    assert!(t.contains("InformResponse"));
    // GET is not CWMP.
    let resp = app.http().get(app.cwmp_url()).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    // Still healthy, and a normal session works.
    assert_eq!(
        app.http()
            .get(app.api_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let mut ok =
        Device::synthetic(Root::Igd, "AFTER", 10).with_acs_credentials("cpe", "cpe-secret");
    assert!(ok
        .run_session(&app.cwmp_url(), &[])
        .await
        .unwrap()
        .ended_cleanly());
}

async fn hold_requests_lets_the_acs_speak_first(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.hold_requests = true).await;
    let mut dev =
        Device::synthetic(Root::Device2, "HOLD", 30).with_acs_credentials("cpe", "cpe-secret");
    dev.queue_get_rpc_methods();
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    assert!(r.hold_requests, "InformResponse carried HoldRequests");
    // The CPE held its own request back: the ACS's requests went first.
    let sent: Vec<&str> = r.exchanges.iter().map(|e| e.sent.as_str()).collect();
    assert!(sent.iter().any(|s| s.ends_with("Response")), "{sent:?}");
    assert!(!sent.contains(&"GetRPCMethods"), "{sent:?}");
    // Without anything queued the ACS does not hold, and the CPE's request goes through.
    let r = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    assert!(!r.hold_requests, "{:?} {:?}", r.events, r.acs_rpcs());
    let sent: Vec<&str> = r.exchanges.iter().map(|e| e.sent.as_str()).collect();
    assert!(sent.contains(&"GetRPCMethods"), "{sent:?}");
}

async fn version_negotiation_and_idle_timeout(b: Backend) {
    let app = TestApp::spawn(b, |c| c.cwmp.session_timeout_secs = 1).await;
    let mut dev = Device::synthetic(Root::Device2, "V14", 20)
        .with_cwmp_version("1.4")
        .with_acs_credentials("cpe", "cpe-secret");
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly());
    assert_eq!(r.use_cwmp_version.as_deref(), Some("1.4"));
    // A CPE that goes silent mid-session: the session times out and the device is free again.
    let ev = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&ev, "9");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c.post_soap(&inform).await.unwrap().status, 200);
    // The reaper ends it after a second of silence; its log row is written within a second.
    let (row, logs) = crate::support::wait_until(
        std::time::Duration::from_secs(8),
        "the idle session reaped and logged",
        || async {
            let store = app.store();
            let id = dev.identity.device_id();
            let (row, logs) = tokio::task::spawn_blocking(move || {
                (
                    store.get_device(&id).unwrap().unwrap(),
                    store.list_session_logs(&id, None, 10).unwrap(),
                )
            })
            .await
            .unwrap();
            if logs.len() >= 2 {
                Ok((row, logs))
            } else {
                Err(logs)
            }
        },
    )
    .await;
    assert!(
        row.session_owner.is_none(),
        "lock released after the idle timeout"
    );
    assert_eq!(
        logs.first().map(|l| l.outcome.as_str()),
        Some("timeout"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.outcome == "completed" && l.events.contains("0 BOOTSTRAP")),
        "{logs:?}"
    );
}

async fn a_second_node_refuses_a_concurrent_inform_and_resumes_a_dropped_session(b: Backend) {
    let node_a = TestApp::spawn(b, |_| {}).await;
    let node_b = TestApp::spawn_on(node_a.db.clone(), |_| {}).await;
    let mut dev =
        Device::synthetic(Root::Igd, "MULTI", 40).with_acs_credentials("cpe", "cpe-secret");
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let mut on_a = dev.http_client(&node_a.cwmp_url()).unwrap();
    let resp = on_a.post_soap(&inform).await.unwrap();
    assert_eq!(resp.status, 200);
    let cookie = resp
        .header_values("set-cookie")
        .find(|c| c.starts_with("ferroacs_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("session cookie");
    // The same device on node B while node A holds its session: refused.
    let mut on_b = dev.http_client(&node_b.cwmp_url()).unwrap();
    let refused = on_b.post_soap(&inform).await.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body_text());
    on_b.close();
    // Node A asks its first question; the connection drops before the CPE answers.
    let spv = on_a.post_empty().await.unwrap();
    assert_eq!(spv.status, 200);
    let reply = dev.respond_to(&spv.body_text()).unwrap();
    let closed = node_a.closed_connections();
    on_a.close();
    // Node A saves the session when it sees the connection close.
    node_a.wait_closed_connections(closed).await;
    // The CPE continues on node B with its cookie: the session goes on where it was.
    let mut on_b = dev.http_client(&node_b.cwmp_url()).unwrap();
    let next = on_b
        .post_raw(
            reply.xml.as_bytes(),
            &[("Content-Type", "text/xml"), ("Cookie", &cookie)],
        )
        .await
        .unwrap();
    assert_eq!(next.status, 200, "{}", next.body_text());
    assert!(
        next.body_text().contains("GetParameterNames"),
        "{}",
        next.body_text()
    );
    // Node A no longer answers for it: it continues on node B only.
    let store = node_b.store();
    let id = dev.identity.device_id();
    let row = tokio::task::spawn_blocking(move || store.get_device(&id).unwrap().unwrap())
        .await
        .unwrap();
    assert!(
        row.cr_username.is_some(),
        "the answer given to node B was recorded"
    );
}

async fn overload_and_failed_logins_get_503_with_retry_after(b: Backend) {
    let app = TestApp::spawn(b, |c| {
        c.cwmp.max_sessions = 1;
        c.cwmp.max_auth_failures = 3;
    })
    .await;
    let mut one =
        Device::synthetic(Root::Igd, "BUSY1", 10).with_acs_credentials("cpe", "cpe-secret");
    let ev = one.inform_events(&[]);
    let inform = one.inform_envelope(&ev, "1");
    let mut c1 = one.http_client(&app.cwmp_url()).unwrap();
    assert_eq!(c1.post_soap(&inform).await.unwrap().status, 200);
    let mut two =
        Device::synthetic(Root::Igd, "BUSY2", 10).with_acs_credentials("cpe", "cpe-secret");
    let ev = two.inform_events(&[]);
    let inform2 = two.inform_envelope(&ev, "1");
    let mut c2 = two.http_client(&app.cwmp_url()).unwrap();
    let resp = c2.post_soap(&inform2).await.unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("Retry-After"), Some("60"));
    // The session in progress is not disturbed.
    assert_eq!(c1.post_empty().await.unwrap().status, 200);
    drop(c1);
    drop(app);
    // Failed logins from one address: after the limit the address is refused for a while.
    let app = TestApp::spawn(b, |c| c.cwmp.max_auth_failures = 3).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let mut bad = Device::synthetic(Root::Igd, "BRUTE", 5).with_acs_credentials("cpe", "guess");
        match bad.run_session(&app.cwmp_url(), &[]).await {
            Err(crate::cpe::SimError::UnexpectedStatus { status, .. }) => statuses.push(status),
            Err(crate::cpe::SimError::AuthFailed { .. }) => statuses.push(401),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 503), "{statuses:?}");
}

async fn cwmp_over_tls_accepts_basic_and_marks_the_cookie_secure(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (cert_path, key_path) = (dir.path().join("acs.crt"), dir.path().join("acs.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let app = TestApp::spawn(b, move |cfg| {
        cfg.cwmp.tls_cert = Some(c.clone());
        cfg.cwmp.tls_key = Some(k.clone());
        cfg.api.tls_cert = Some(c);
        cfg.api.tls_key = Some(k);
    })
    .await;
    ferroacs::app::install_crypto_provider();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = client
        .get(format!(
            "https://localhost:{}/healthz",
            app.api_addr().port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let mut dev = Device::synthetic(Root::Device2, "TLS1", 10);
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let url = format!("https://localhost:{}/acs", app.cwmp_addr().port());
    // Without credentials over TLS both schemes are offered.
    let resp = client.post(&url).body(inform.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let offered: Vec<String> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        offered.iter().any(|c| c.starts_with("Basic")),
        "{offered:?}"
    );
    // Basic over TLS is accepted.
    let resp = client
        .post(&url)
        .basic_auth("cpe", Some("cpe-secret"))
        .body(inform)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(resp.text().await.unwrap().contains("InformResponse"));
    // Plain HTTP is not spoken on the TLS port.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/", app.cwmp_addr().port()))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

async fn bootstrap_forgets_the_tree_but_keeps_configuration_and_tasks(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev = first_contact(&app, "RESET", 40).await;
    let id = dev.identity.device_id();
    let store = app.store();
    // Operator configuration: tags, and a task deferred to later.
    let task = tokio::task::spawn_blocking({
        let (store, id) = (store.clone(), id.clone());
        move || {
            let p = ferroacs::store::devices::ProvisionDevice {
                id: id.clone(),
                oui: String::new(),
                product_class: String::new(),
                serial_number: String::new(),
                cwmp_credentials: None,
                tags: Some(vec!["vip".into()]),
            };
            store.provision_device(&p, None, 1).unwrap();
            let t = store
                .insert_tasks(&[ferroacs::store::tasks::NewTask {
                    device_id: id.clone(),
                    rpc: "Reboot".into(),
                    args: r#"{"rpc":"Reboot"}"#.into(),
                    status: ferroacs::domain::tasks::TaskStatus::Pending,
                    command_key: "fa-later".into(),
                    expires_at: None,
                    created_by: "test".into(),
                    created_at: 1,
                    updated_at: 1,
                }])
                .unwrap();
            let update = ferroacs::store::tasks::TaskUpdate {
                not_before: Some(i64::MAX / 2),
                ..Default::default()
            };
            store
                .transition_task(
                    t[0].id,
                    &[ferroacs::domain::tasks::TaskStatus::Pending],
                    &update,
                )
                .unwrap();
            t[0].id
        }
    })
    .await
    .unwrap();
    // The device is reset and comes back with 0 BOOTSTRAP; one parameter is gone.
    dev.factory_reset();
    dev.model
        .remove("InternetGatewayDevice.DeviceInfo.ProvisioningCode");
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(
        r.events.iter().any(|e| e.code == "0 BOOTSTRAP"),
        "{:?}",
        r.events
    );
    assert!(
        r.acs_rpcs().contains(&"GetParameterNames"),
        "rediscovered: {:?}",
        r.acs_rpcs()
    );
    let (tree, tags, task) = tokio::task::spawn_blocking(move || {
        (
            {
                let parts = store.load_params(&id).unwrap();
                assert!(parts.base.is_some(), "the whole tree is stored");
                ferroacs::domain::params::ParamTree::stored(
                    parts.base.as_deref(),
                    parts.delta.as_deref(),
                )
            },
            store.tags_of(std::slice::from_ref(&id)).unwrap(),
            store.get_task(task).unwrap().unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(
        tree.get("InternetGatewayDevice.DeviceInfo.ProvisioningCode")
            .is_none(),
        "stale knowledge forgotten"
    );
    assert!(tree
        .get("InternetGatewayDevice.DeviceInfo.SoftwareVersion")
        .is_some());
    assert_eq!(tags.len(), 1, "tags kept");
    assert_eq!(
        task.status,
        ferroacs::domain::tasks::TaskStatus::Pending,
        "pending task kept"
    );
}

async fn tls_client_certificates_replace_http_authentication(b: Backend) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["cpe-0001".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("ca.pem"), ca.pem()).unwrap();
    std::fs::write(p("server.crt"), server.pem()).unwrap();
    std::fs::write(p("server.key"), server_key.serialize_pem()).unwrap();
    let (c, k, ca_file) = (p("server.crt"), p("server.key"), p("ca.pem"));
    let app = TestApp::spawn(b, move |cfg| {
        cfg.cwmp.tls_cert = Some(c);
        cfg.cwmp.tls_key = Some(k);
        cfg.cwmp.tls_client_ca = Some(ca_file);
    })
    .await;
    ferroacs::app::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .identity(identity)
        .build()
        .unwrap();
    let without = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let mut dev = Device::synthetic(Root::Igd, "CERT1", 10);
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let url = format!("https://localhost:{}/", app.cwmp_addr().port());
    // A verified client certificate authenticates the CPE: no HTTP challenge.
    let resp = with_cert
        .post(&url)
        .body(inform.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("InformResponse"));
    // Without a certificate the TLS handshake is refused.
    assert!(without.post(&url).body(inform).send().await.is_err());
}

async fn a_periodic_session_costs_two_statements_whatever_the_tree_size(b: Backend) {
    // The scheduler's lease and housekeeping are not part of a session.
    let app = TestApp::spawn(b, |c| c.scheduler.enabled = false).await;
    let store = app.store();
    for size in [20, 600] {
        let mut devs: Vec<Device> = (0..10)
            .map(|i| {
                Device::synthetic(Root::Igd, &format!("RT{size}-{i}"), size)
                    .with_acs_credentials("cpe", "cpe-secret")
            })
            .collect();
        // Bootstrap and discovery first; two periodic rounds so every device has checked its
        // work once and its searchable values are stored.
        for round in 0..3 {
            for d in devs.iter_mut() {
                let ev: &[(&str, &str)] = if round == 0 {
                    &[]
                } else {
                    &[("2 PERIODIC", "")]
                };
                assert!(d
                    .run_session(&app.cwmp_url(), ev)
                    .await
                    .unwrap()
                    .ended_cleanly());
            }
        }
        // The session-log rows of those sessions written now, not by the background writer
        // during the measurement.
        app.flush_session_logs().await;
        // Background work off the request path (the session-log writer about once a second)
        // lands in some sessions: for each device take its quietest of four sessions.
        let mut per_device = vec![u64::MAX; devs.len()];
        for _ in 0..4 {
            for (i, d) in devs.iter_mut().enumerate() {
                let before = store.statements_executed();
                let r = d
                    .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
                    .await
                    .unwrap();
                assert!(r.ended_cleanly() && r.acs_rpcs().is_empty(), "{r:?}");
                per_device[i] = per_device[i].min(store.statements_executed() - before);
            }
        }
        let quietest: u64 = per_device.iter().sum();
        // 2 per session; one more per session would show as 30.
        assert!(
            (20..=22).contains(&quietest),
            "{quietest} statements for 10 periodic sessions of {size}-parameter devices"
        );
    }
}

/// A TR-098 device of `params` parameters after its first session (bootstrap, discovery).
async fn first_contact(app: &TestApp, serial: &str, params: usize) -> Device {
    let mut dev =
        Device::synthetic(Root::Igd, serial, params).with_acs_credentials("cpe", "cpe-secret");
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    dev
}

/// What the store holds of a device's tree: the whole tree and the delta over it.
async fn tree_parts(app: &TestApp, id: &str) -> ferroacs::store::params::TreeParts {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || store.load_params(&id).unwrap())
        .await
        .unwrap()
}

/// Queue one task for a device, as the admin API does.
async fn queue_task(app: &TestApp, id: &str, spec: ferroacs::domain::tasks::TaskSpec) {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || {
        store
            .insert_tasks(&[ferroacs::store::tasks::NewTask {
                device_id: id,
                rpc: spec.rpc().to_string(),
                args: serde_json::to_string(&spec).unwrap(),
                status: ferroacs::domain::tasks::TaskStatus::Pending,
                command_key: ferroacs::domain::tasks::new_key(),
                expires_at: None,
                created_by: "test".into(),
                created_at: 1,
                updated_at: 1,
            }])
            .unwrap()
    })
    .await
    .unwrap();
}

async fn values_a_session_learns_go_to_a_small_delta_until_they_are_many(b: Backend) {
    use ferroacs::domain::params::ParamTree;
    use ferroacs::domain::tasks::{SetValue, TaskSpec};
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev = first_contact(&app, "DELTA", 120).await;
    let id = dev.identity.device_id();
    let discovered = tree_parts(&app, &id).await;
    assert!(discovered.base.is_some(), "discovery stores the whole tree");
    assert_eq!(discovered.delta, None, "and no delta");

    // One value set: the session stores it as a delta; the whole tree is left as it was.
    let code = "InternetGatewayDevice.DeviceInfo.ProvisioningCode";
    let set = |value: &str| TaskSpec::SetParameterValues {
        values: vec![SetValue {
            name: code.into(),
            value: value.into(),
            xsd_type: Some("xsd:string".into()),
        }],
    };
    queue_task(&app, &id, set("from-the-delta")).await;
    let r = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(
        r.ended_cleanly() && r.acs_rpcs() == ["SetParameterValues"],
        "{r:?}"
    );
    assert_eq!(dev.model[code].value, "from-the-delta");
    let after_set = tree_parts(&app, &id).await;
    assert_eq!(
        after_set.base, discovered.base,
        "the whole tree is not rewritten"
    );
    let delta = ParamTree::decode(after_set.delta.as_deref().expect("a delta")).unwrap();
    assert_eq!(
        delta.get(code).and_then(|e| e.value.as_deref()),
        Some("from-the-delta")
    );
    assert!(delta.len() < 5, "{} entries in the delta", delta.len());
    let tree = ParamTree::stored(after_set.base.as_deref(), after_set.delta.as_deref());
    assert_eq!(
        tree.get(code).and_then(|e| e.value.as_deref()),
        Some("from-the-delta")
    );
    assert_eq!(
        tree.len(),
        ParamTree::decode(discovered.base.as_deref().unwrap())
            .unwrap()
            .len()
    );

    // Many values read at once: the whole tree is written with them, the delta cleared, and
    // the value the delta held is in the whole tree.
    let names: Vec<String> = dev
        .model
        .iter()
        .filter(|(_, p)| !p.is_object)
        .map(|(n, _)| n.clone())
        .collect();
    assert!(names.len() > ferroacs::domain::params::MAX_DELTA_ENTRIES);
    dev.model.get_mut(code).unwrap().value = "changed-on-the-device".into();
    queue_task(&app, &id, TaskSpec::GetParameterValues { names }).await;
    let r = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(
        r.ended_cleanly() && r.acs_rpcs() == ["GetParameterValues"],
        "{r:?}"
    );
    let after_get = tree_parts(&app, &id).await;
    assert_eq!(
        after_get.delta, None,
        "the delta is folded into the whole tree"
    );
    assert_ne!(after_get.base, discovered.base);
    let whole = ParamTree::decode(after_get.base.as_deref().unwrap()).unwrap();
    assert_eq!(
        whole.get(code).and_then(|e| e.value.as_deref()),
        Some("changed-on-the-device")
    );

    // A delta again, then a factory reset: BOOTSTRAP forgets the delta with the tree.
    queue_task(&app, &id, set("before-the-reset")).await;
    assert!(dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap()
        .ended_cleanly());
    assert!(tree_parts(&app, &id).await.delta.is_some());
    let factory = ParamTree::decode(discovered.base.as_deref().unwrap())
        .unwrap()
        .get(code)
        .and_then(|e| e.value.clone())
        .expect("a factory value");
    queue_task(&app, &id, TaskSpec::FactoryReset {}).await;
    let r = dev
        .run_session(&app.cwmp_url(), &[("2 PERIODIC", "")])
        .await
        .unwrap();
    assert!(
        r.ended_cleanly() && r.acs_rpcs() == ["FactoryReset"],
        "{r:?}"
    );
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    assert!(
        r.events.iter().any(|e| e.code == "0 BOOTSTRAP"),
        "{:?}",
        r.events
    );
    let reset = tree_parts(&app, &id).await;
    assert_eq!(reset.delta, None);
    let tree = ParamTree::stored(reset.base.as_deref(), reset.delta.as_deref());
    assert_eq!(
        tree.get(code).and_then(|e| e.value.as_deref()),
        Some(factory.as_str()),
        "what the delta held is forgotten"
    );
    assert!(tree.len() > 100, "{} entries rediscovered", tree.len());
}

async fn the_endpoint_answers_every_path_the_file_and_phone_routes_do_not_take(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev =
        Device::synthetic(Root::Igd, "PATHS", 5).with_acs_credentials("cpe", "cpe-secret");
    let ev = dev.inform_events(&[]);
    let inform = dev.inform_envelope(&ev, "1");
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.cwmp_addr());
    // A CPE may be configured with any path: an Inform without credentials is challenged
    // there, including under the file server's and the phones' prefixes when no route of
    // theirs takes the request (another method, another number of segments).
    for path in [
        "/",
        "/acs",
        "/cwmp/x",
        "/files",
        "/files/",
        "/files/7",
        "/files/7/more",
        "/prov",
        "/prov/tok",
        "/prov/tok/f.cfg",
        "/uploads",
    ] {
        let r = http
            .post(format!("{base}{path}"))
            .header("content-type", "text/xml")
            .body(inform.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "POST {path}");
        assert!(
            r.headers().get("www-authenticate").is_some(),
            "POST {path}: a Digest challenge"
        );
    }
    // The routes themselves still take theirs: an unsigned download link and a phone
    // fetch with a token that names nothing are refused by them, not challenged.
    for path in ["/files/7", "/prov/no-such-token/f.cfg"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(
            r.headers().get("www-authenticate").is_none() && r.status().is_client_error(),
            "GET {path}: {}",
            r.status()
        );
    }
}

/// A CPE whose connection dropped after the InformResponse informs again on a new
/// connection, sending the cookie of the session still open (saved) and fresh Digest
/// credentials (the next nc on the nonce it has): one check of those credentials, not two
/// (the second would see the same nc as a replay).
async fn an_inform_with_the_cookie_of_an_unfinished_session_is_authenticated_once(b: Backend) {
    use std::sync::atomic::Ordering::Relaxed;
    let app = TestApp::spawn(b, |_| {}).await;
    let mut dev =
        Device::synthetic(Root::Igd, "REINFORM", 10).with_acs_credentials("cpe", "cpe-secret");
    // Known and settled: its periodic session is Inform, empty POST, 204.
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    let failures = || app.state().cwmp.auth.failures.load(Relaxed);
    let failed_before = failures();
    let id = dev.identity.device_id();
    let owner = |app: &TestApp| {
        let store = app.store();
        let id = id.clone();
        async move {
            tokio::task::spawn_blocking(move || store.get_device(&id).unwrap().unwrap())
                .await
                .unwrap()
                .session_owner
        }
    };

    let ev = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&ev, "1");
    let mut c = dev.http_client(&app.cwmp_url()).unwrap();
    let r = c.post_soap(&inform).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        r.body_text().contains("InformResponse"),
        "{}",
        r.body_text()
    );
    assert_eq!(c.challenges, 1);
    let old_cookie = c.jar.header_for("/").expect("session cookie");
    assert!(old_cookie.contains("ferroacs_session="), "{old_cookie}");
    // The connection drops before the CPE's empty POST: the session is saved, unfinished.
    let closed = app.closed_connections();
    c.close();
    app.wait_closed_connections(closed).await;
    assert!(owner(&app).await.is_some(), "the session is still open");

    // The CPE starts over: a new connection, the old cookie, the next nc on its nonce.
    let inform = dev.inform_envelope(&ev, "2");
    let r = c.post_soap(&inform).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        r.body_text().contains("InformResponse"),
        "{}",
        r.body_text()
    );
    assert_eq!(
        c.challenges, 1,
        "the fresh credentials were accepted at once"
    );
    assert_eq!(c.connections_opened, 2);
    assert_eq!(failures(), failed_before, "no failed login counted");
    let new_cookie = c.jar.header_for("/").expect("session cookie");
    assert_ne!(new_cookie, old_cookie, "a new session");
    // The new session goes on to its end.
    let end = c.post_empty().await.unwrap();
    assert_eq!(end.status, 204, "{}", end.body_text());
    assert!(owner(&app).await.is_none(), "lock released");
    assert_eq!(failures(), failed_before);
}

/// Send `req` on `s` and read the answer: the head, then `Content-Length` bytes of body
/// (none for a 204, which has no length).
async fn raw_exchange(s: &mut tokio::net::TcpStream, req: &[u8]) -> crate::security::RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
        };
        let mut r = crate::security::parse_response(&buf[..end]);
        r.body = buf[end..].to_vec();
        let len = match r.status {
            204 => 0,
            _ => r
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a Content-Length"),
        };
        while r.body.len() < len {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed within the body");
            r.body.extend_from_slice(&chunk[..n]);
        }
        r
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read)
        .await
        .expect("an answer")
}

/// An empty POST without a session is a CPE with nothing to say: 204 at once, without
/// credentials, and nothing stored, opened or set. A body that is not empty still needs
/// credentials.
async fn a_stray_empty_post_outside_a_session_gets_204_without_a_challenge(b: Backend) {
    use crate::cpe::http::{digest_ha1, digest_response, pick_challenge, Challenge};
    use std::sync::atomic::Ordering::Relaxed;
    let app = TestApp::spawn(b, |_| {}).await;
    let addr = app.cwmp_addr();
    let failures = || app.state().cwmp.auth.failures.load(Relaxed);
    let nothing_set = |r: &crate::security::RawResponse| {
        assert!(r.header("set-cookie").is_none(), "{:?}", r.headers);
        assert!(r.header("www-authenticate").is_none(), "{:?}", r.headers);
    };

    // A fresh connection: Content-Length 0, then an empty chunked body, without credentials.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = raw_exchange(
        &mut s,
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.headers);
    nothing_set(&r);
    let r = raw_exchange(
        &mut s,
        format!(
            "POST /acs HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.headers);
    nothing_set(&r);
    // Anything in the body, even white space, still needs credentials.
    let r = raw_exchange(
        &mut s,
        format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 2\r\n\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    drop(s);
    let store = app.store();
    assert_eq!(
        tokio::task::spawn_blocking(move || store.count_devices().unwrap())
            .await
            .unwrap(),
        0
    );
    assert_eq!(app.state().driver.live_count(), 0);
    assert_eq!(failures(), 0);

    // Right after a session's final 204, on the same connection.
    let mut dev =
        Device::synthetic(Root::Igd, "STRAY", 10).with_acs_credentials("cpe", "cpe-secret");
    let r = dev.run_session(&app.cwmp_url(), &[]).await.unwrap();
    assert!(r.ended_cleanly(), "{r:?}");
    let ev = dev.inform_events(&[("2 PERIODIC", "")]);
    let inform = dev.inform_envelope(&ev, "1");
    let post = |extra: &str, body: &str| {
        format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let soap = "Content-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction:\r\n";
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let r = raw_exchange(&mut s, &post(soap, &inform)).await;
    assert_eq!(r.status, 401);
    let challenge = pick_challenge(&crate::cpe::HttpResponse {
        status: r.status,
        headers: r.headers.clone(),
        ..Default::default()
    });
    let Some(Challenge::Digest(ch)) = challenge else {
        panic!("a Digest challenge: {:?}", r.headers)
    };
    // The device's own credentials, issued at its first session.
    let own = dev.http_client(&app.cwmp_url()).unwrap();
    let (user, pass) = (own.username.clone(), own.password.clone());
    let cnonce = "0123456789abcdef";
    let ha1 = digest_ha1(&user, &ch.realm, &pass, &ch.algorithm, &ch.nonce, cnonce);
    let response = digest_response(&ha1, &ch.nonce, Some(("00000001", cnonce)), "POST", "/");
    let mut authorization = format!(
        "Authorization: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"/\", algorithm={}, response=\"{response}\", qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
        ch.realm, ch.nonce, ch.algorithm
    );
    if let Some(o) = &ch.opaque {
        authorization.push_str(&format!(", opaque=\"{o}\""));
    }
    authorization.push_str("\r\n");
    let r = raw_exchange(&mut s, &post(&format!("{soap}{authorization}"), &inform)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cookie = r
        .header("set-cookie")
        .expect("session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("Cookie: {cookie}\r\n");
    // The CPE has nothing to say and the ACS nothing to ask: the session ends.
    let r = raw_exchange(&mut s, &post(&cookie, "")).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let failed_before = failures();
    // A trailing empty POST, with the old cookie and without it, without credentials.
    for extra in [cookie.as_str(), ""] {
        let r = raw_exchange(&mut s, &post(extra, "")).await;
        assert_eq!(r.status, 204, "{extra:?}: {:?}", r.headers);
        nothing_set(&r);
    }
    assert_eq!(app.state().driver.live_count(), 0);
    assert_eq!(failures(), failed_before);
}
