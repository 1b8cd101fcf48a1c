//! Task status as stored: every status round-trips through the text column as the same
//! lower-case name the API shows; a name this version does not know (a newer version wrote
//! it, or a hand edit) is an error naming the task, never a panic; status filters refuse
//! unknown names.

use reqwest::Method;
use serde_json::Value;

use crate::api::Api;
use crate::battery;
use crate::support::{Backend, TestApp};
use ferroacs::domain::tasks::TaskStatus;
use ferroacs::store::tasks::{NewTask, TaskUpdate};

battery!(
    every_status_round_trips_as_its_lower_case_name,
    an_unknown_stored_status_names_the_task_and_spares_the_rest,
    status_filters_refuse_unknown_names,
);

/// A provisioned device with `n` pending tasks; returns their ids.
async fn device_with_tasks(app: &TestApp, id: &str, n: usize) -> Vec<i64> {
    let (store, id) = (app.store(), id.to_string());
    tokio::task::spawn_blocking(move || {
        let p = ferroacs::store::devices::ProvisionDevice {
            id: id.clone(),
            oui: String::new(),
            product_class: String::new(),
            serial_number: String::new(),
            cwmp_credentials: None,
            tags: None,
        };
        store.provision_device(&p, None, 1).unwrap();
        let task = NewTask {
            device_id: id,
            rpc: "Reboot".into(),
            args: r#"{"rpc":"Reboot"}"#.into(),
            status: TaskStatus::Pending,
            command_key: "status-test".into(),
            expires_at: None,
            created_by: "test".into(),
            created_at: 1,
            updated_at: 1,
        };
        let rows = store.insert_tasks(&vec![task; n]).unwrap();
        rows.iter().map(|r| r.id).collect()
    })
    .await
    .unwrap()
}

/// Runs one SQL statement on the test's database, as an operator's hand edit would.
async fn execute(app: &TestApp, sql: String) {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let (url, backend) = (app.db.url.clone(), app.db.backend);
    tokio::task::spawn_blocking(move || match backend {
        Backend::Sqlite => {
            let path = url.strip_prefix("sqlite://").unwrap_or(&url);
            let mut c = diesel::SqliteConnection::establish(path).unwrap();
            c.batch_execute("PRAGMA busy_timeout = 5000").unwrap();
            c.batch_execute(&sql).unwrap();
        }
        Backend::Postgres => {
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            c.batch_execute(&sql).unwrap();
        }
    })
    .await
    .unwrap();
}

async fn metrics(app: &TestApp) -> String {
    let r = app
        .http()
        .get(app.api_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn every_status_round_trips_as_its_lower_case_name(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "viewer").await;
    let ids = device_with_tasks(&app, "STATUS-RT", TaskStatus::ALL.len()).await;
    let store = app.store();
    for (&id, st) in ids.iter().zip(TaskStatus::ALL) {
        let store = store.clone();
        let row = tokio::task::spawn_blocking(move || {
            let update = TaskUpdate {
                status: Some(st),
                ..TaskUpdate::default()
            };
            store
                .transition_task(id, &[TaskStatus::Pending], &update)
                .unwrap()
                .expect("a pending task moves to any status")
        })
        .await
        .unwrap();
        assert_eq!(row.status, st);
    }
    for (&id, st) in ids.iter().zip(TaskStatus::ALL) {
        // The API and the status filter show the stored lower-case name.
        let t = api.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(t["status"], st.as_str(), "{t}");
        let page = api
            .get(&format!("/api/v1/tasks?device_id=STATUS-RT&status={st}"))
            .await;
        let items: Vec<i64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        assert_eq!(items, [id], "{page}");
    }
    // And the column holds exactly those names (what older versions and scripts read).
    let store2 = store.clone();
    let counts = tokio::task::spawn_blocking(move || store2.count_tasks_by_status().unwrap())
        .await
        .unwrap();
    assert_eq!(counts.len(), TaskStatus::ALL.len(), "{counts:?}");
    let page = metrics(&app).await;
    for st in TaskStatus::ALL {
        assert!(
            page.contains(&format!("ferroacs_tasks{{status=\"{st}\"}} 1")),
            "{page}"
        );
    }
}

async fn an_unknown_stored_status_names_the_task_and_spares_the_rest(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "viewer").await;
    let ids = device_with_tasks(&app, "STATUS-BAD", 2).await;
    let (good, bad) = (ids[0], ids[1]);
    execute(
        &app,
        format!("UPDATE tasks SET status = 'paused' WHERE id = {bad}"),
    )
    .await;

    // Reading the row is an error that names the task and the value, and says what to do.
    let store = app.store();
    let err = tokio::task::spawn_blocking(move || store.get_task(bad))
        .await
        .unwrap()
        .expect_err("an unknown status is not read as some status");
    let chain = err.chain();
    assert!(
        chain.contains(&format!("task {bad} has status \"paused\"")),
        "{chain}"
    );
    assert!(chain.contains("pending, running, done"), "{chain}");

    // The API answers 500 with the fixed message (details in the log), and keeps serving.
    let (s, body) = api
        .call(Method::GET, &format!("/api/v1/tasks/{bad}"), None)
        .await;
    assert_eq!(s, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert!(!body.to_string().contains("paused"), "{body}");
    let t = api.get(&format!("/api/v1/tasks/{good}")).await;
    assert_eq!(t["status"], "pending", "{t}");
    let health = app
        .http()
        .get(app.api_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // /metrics still says the database is up, and counts the known statuses.
    let page = metrics(&app).await;
    assert!(page.contains("ferroacs_database_up 1"), "{page}");
    assert!(
        page.contains("ferroacs_tasks{status=\"pending\"} 1"),
        "{page}"
    );
    assert!(!page.contains("status=\"paused\""), "{page}");
}

async fn status_filters_refuse_unknown_names(b: Backend) {
    let app = TestApp::spawn(b, |_| {}).await;
    let api = Api::new(&app, "viewer").await;
    device_with_tasks(&app, "STATUS-F", 1).await;
    for bad in ["bogus", "PENDING", "Done", "pending'--", "%00"] {
        for path in [
            format!("/api/v1/tasks?status={bad}"),
            format!("/api/v1/devices/STATUS-F/tasks?status={bad}"),
        ] {
            let (s, body): (u16, Value) = api.call(Method::GET, &path, None).await;
            assert_eq!(s, 400, "{path}: {body}");
            let msg = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                msg.contains("unknown task status") && msg.contains("pending, running"),
                "{path}: {body}"
            );
        }
    }
    // An empty filter is no filter.
    let page = api.get("/api/v1/tasks?status=").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}
