//! Operating on tasks: create (with validation against what is known of the device), create
//! in bulk for every device matching a filter, cancel, and wait for completion.
//!
//! SetParameterValues is checked before anything is queued: against the device's stored tree
//! (a parameter the device reported as read-only is refused, and its reported type applies)
//! and against the TR-069 data models (type, range, enumeration, writability). Vendor
//! (`X_...`) and unknown parameters pass with the device-reported type.

use std::time::{Duration, Instant};

use crate::datamodel::{self, Registry, RootModel};
use crate::domain::params::ParamTree;
use crate::domain::services::TaskWatch;
use crate::domain::tasks::{self, SetValue, TaskSpec};
use crate::error::{Error, Result};
use crate::store::devices::DeviceRow;
use crate::store::search::Filter;
use crate::store::tasks::{NewTask, TaskRow, TaskUpdate};
use crate::store::Store;

/// A status filter as an operator typed it (API query, console, command line): `None` or
/// empty means every status; an unknown name is refused with the names that exist.
pub fn status_filter(status: Option<&str>) -> Result<Option<tasks::TaskStatus>> {
    let Some(s) = status.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    tasks::TaskStatus::parse(s).map(Some).ok_or_else(|| {
        let known = tasks::TaskStatus::ALL.map(tasks::TaskStatus::as_str);
        Error::invalid(
            "status",
            format!("unknown task status {s:?}; use one of {}", known.join(", ")),
        )
    })
}

/// Check a task kept as a template (by a scheduled job or a campaign) before it is stored:
/// its arguments, and that a Download's stored file exists. Errors name the field under
/// `action.task.`.
pub async fn check_template(store: &Store, task: &TaskSpec) -> Result<()> {
    task.check().map_err(|e| match e {
        Error::Invalid { field, message } => {
            Error::invalid(format!("action.task.{field}"), message)
        }
        other => other,
    })?;
    if let TaskSpec::Download {
        file_id: Some(fid), ..
    } = task
    {
        let f = fid.clone();
        if store.run(move |s| s.get_file(&f)).await?.is_none() {
            return Err(Error::invalid(
                "action.task.file_id",
                format!("no stored file has id {fid}; upload it with POST /api/v1/files first"),
            ));
        }
    }
    Ok(())
}

/// The device's known parameters: the stored tree with the newer Inform values on top.
pub async fn current_tree(store: &Store, device: &DeviceRow) -> Result<ParamTree> {
    let id = device.id.clone();
    let mut tree = store
        .run(move |s| crate::domain::params::read_tree(s, &id))
        .await?;
    if let Some(inf) = &device.inform_params {
        if let Ok(t) = ParamTree::decode(inf) {
            tree.overlay(&t);
        }
    }
    Ok(tree)
}

/// Check one SetParameterValues entry (`datamodel::check_set_value`); `tree` is what is
/// known of the device.
pub fn check_set_value(device: &DeviceRow, tree: &ParamTree, v: &SetValue) -> Result<()> {
    let entry = tree.get(&v.name);
    let reported = datamodel::Reported {
        object: entry.is_some_and(|e| e.object),
        writable: entry.and_then(|e| e.writable),
        xsd_type: entry.map(|e| &*e.xsd_type),
    };
    let detected = RootModel::parse(&device.root_model);
    let roots: &[RootModel] = match &detected {
        Some(m) => std::slice::from_ref(m),
        None => RootModel::candidates(&v.name),
    };
    datamodel::check_set_value(
        Registry::builtin().ok(),
        roots,
        &v.name,
        &v.value,
        v.xsd_type.as_deref(),
        reported,
    )
    .map_err(|e| Error::invalid(e.name, e.message))
}

/// Who asked and how long the task may wait for its device.
pub struct Origin<'a> {
    pub actor: &'a str,
    pub now: i64,
    pub expires_at: Option<i64>,
}

async fn check_file(store: &Store, spec: &TaskSpec) -> Result<()> {
    if let TaskSpec::Download {
        file_id: Some(fid), ..
    }
    | TaskSpec::ScheduleDownload {
        file_id: Some(fid), ..
    } = spec
    {
        let f = fid.clone();
        if store.run(move |s| s.get_file(&f)).await?.is_none() {
            return Err(Error::invalid(
                "file_id",
                format!("no stored file has id {fid}; upload it with POST /api/v1/files first"),
            ));
        }
    }
    Ok(())
}

fn new_task(device_id: &str, spec: &TaskSpec, args: &str, o: &Origin<'_>) -> NewTask {
    NewTask {
        device_id: device_id.to_string(),
        rpc: spec.rpc().to_string(),
        args: args.to_string(),
        status: tasks::TaskStatus::Pending,
        command_key: if spec.uses_key() {
            tasks::new_key()
        } else {
            String::new()
        },
        expires_at: o.expires_at,
        created_by: o.actor.to_string(),
        created_at: o.now,
        updated_at: o.now,
    }
}

/// Queue one task for a device after validating it.
pub async fn create(
    store: &Store,
    device_id: &str,
    spec: &TaskSpec,
    o: &Origin<'_>,
) -> Result<TaskRow> {
    spec.check()?;
    let id = device_id.to_string();
    let device = store
        .run(move |s| s.get_device(&id))
        .await?
        .ok_or_else(|| Error::not_found(format!("device {device_id}")))?;
    if let TaskSpec::SetParameterValues { values } = spec {
        let tree = current_tree(store, &device).await?;
        for v in values {
            check_set_value(&device, &tree, v)?;
        }
    }
    check_file(store, spec).await?;
    // Secrets (passwords, hidden parameters) are sealed before they reach the database.
    let args = tasks::seal_args(&store.keyring(), &serde_json::to_string(spec)?)?;
    let new = new_task(device_id, spec, &args, o);
    let (actor, now) = (o.actor.to_string(), o.now);
    let row = store
        .run(move |s| {
            let mut rows = s.insert_tasks(&[new])?;
            let row = rows
                .pop()
                .ok_or_else(|| Error::internal("task insert returned nothing"))?;
            s.audit(
                now,
                &actor,
                "task.create",
                &format!("task/{}", row.id),
                Some(&format!(
                    "{} on {}: {}",
                    row.rpc,
                    row.device_id,
                    tasks::redacted_args(&row.args)
                )),
            )?;
            Ok(row)
        })
        .await?;
    Ok(row)
}

/// Queue the same task for every device matching `filter` (at most `max` devices).
/// SetParameterValues values are checked against each device's data model.
pub async fn create_bulk(
    store: &Store,
    filter: &Filter,
    spec: &TaskSpec,
    o: &Origin<'_>,
    max: usize,
) -> Result<Vec<TaskRow>> {
    spec.check()?;
    check_file(store, spec).await?;
    let clear = serde_json::to_string(spec)?;
    let args = tasks::seal_args(&store.keyring(), &clear)?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let empty = ParamTree::new();
    loop {
        let f = filter.clone();
        let cur = cursor.clone();
        let page = 500.min(max.saturating_sub(out.len())) as i64;
        if page == 0 {
            break;
        }
        let devices = store
            .run(move |s| s.search_devices(&f, cur.as_deref(), page))
            .await?;
        let Some(last) = devices.last() else { break };
        cursor = Some(last.id.clone());
        let mut batch = Vec::with_capacity(devices.len());
        for d in &devices {
            if let TaskSpec::SetParameterValues { values } = spec {
                for v in values {
                    check_set_value(d, &empty, v)
                        .map_err(|e| Error::invalid("values", format!("device {}: {e}", d.id)))?;
                }
            }
            batch.push(new_task(&d.id, spec, &args, o));
        }
        let n = devices.len() as i64;
        let rows = store.run(move |s| s.insert_tasks(&batch)).await?;
        out.extend(rows);
        if n < page {
            break;
        }
    }
    let (actor, now, count) = (o.actor.to_string(), o.now, out.len());
    let detail = format!(
        "{} for {count} devices: {}",
        spec.rpc(),
        tasks::redacted_args(&clear)
    );
    store
        .run(move |s| s.audit(now, &actor, "task.create_bulk", "tasks", Some(&detail)))
        .await?;
    Ok(out)
}

/// Cancel a task that has not finished.
pub async fn cancel(
    store: &Store,
    watch: &TaskWatch,
    id: i64,
    actor: &str,
    now: i64,
) -> Result<TaskRow> {
    let update = TaskUpdate {
        status: Some(tasks::TaskStatus::Cancelled),
        finished_at: Some(Some(now)),
        updated_at: Some(now),
        ..TaskUpdate::default()
    };
    let actor = actor.to_string();
    let row = store
        .run(move |s| {
            match s.transition_task(
                id,
                &[tasks::TaskStatus::Pending, tasks::TaskStatus::Running],
                &update,
            )? {
                Some(row) => {
                    s.audit(
                        now,
                        &actor,
                        "task.cancel",
                        &format!("task/{id}"),
                        Some(&format!("{} on {}", row.rpc, row.device_id)),
                    )?;
                    Ok(row)
                }
                None => match s.get_task(id)? {
                    None => Err(Error::not_found(format!("task {id}"))),
                    Some(r) => Err(Error::Conflict(format!(
                        "task {id} is already {}; only pending or running tasks can be cancelled",
                        r.status
                    ))),
                },
            }
        })
        .await?;
    watch.notify(id);
    Ok(row)
}

/// Wait up to `timeout` for a task to finish; returns its latest state either way.
/// Finishing on this node wakes the waiter at once; otherwise it re-reads every second.
pub async fn wait(store: &Store, watch: &TaskWatch, id: i64, timeout: Duration) -> Result<TaskRow> {
    let deadline = Instant::now() + timeout;
    let handle = watch.subscribe(id);
    let result = async {
        loop {
            let notified = handle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let row = store
                .run(move |s| s.get_task(id))
                .await?
                .ok_or_else(|| Error::not_found(format!("task {id}")))?;
            let now = Instant::now();
            if row.status.is_final() || now >= deadline {
                return Ok(row);
            }
            let left = (deadline - now).min(Duration::from_secs(1));
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
    .await;
    watch.unsubscribe(id, handle);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn device(root: &str) -> DeviceRow {
        DeviceRow {
            id: "D".into(),
            oui: "O".into(),
            product_class: "P".into(),
            serial_number: "S".into(),
            manufacturer: String::new(),
            model_name: String::new(),
            software_version: String::new(),
            hardware_version: String::new(),
            root_model: root.into(),
            cwmp_version: String::new(),
            last_inform: None,
            last_boot: None,
            last_bootstrap: None,
            last_source_ip: String::new(),
            last_retry_count: 0,
            connection_request_url: String::new(),
            cr_username: None,
            cr_password: None,
            cwmp_username: None,
            cwmp_ha1: None,
            inform_params: None,
            discovered_at: None,
            work_epoch: 0,
            work_seen_epoch: 0,
            session_owner: None,
            session_expires: None,
            provisioned: 0,
            created_at: 0,
            updated_at: 0,
            search_sig: 0,
            preset_events: String::new(),
            params_delta: None,
        }
    }

    fn sv(name: &str, value: &str, t: Option<&str>) -> SetValue {
        SetValue {
            name: name.into(),
            value: value.into(),
            xsd_type: t.map(str::to_string),
        }
    }

    #[test]
    fn set_values_are_checked_against_model_and_device() {
        let d = device("InternetGatewayDevice:1");
        let empty = ParamTree::new();
        let interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
        assert!(check_set_value(&d, &empty, &sv(interval, "300", None)).is_ok());
        let e = check_set_value(&d, &empty, &sv(interval, "abc", None)).unwrap_err();
        assert!(e.to_string().contains(interval), "{e}");
        let e = check_set_value(
            &d,
            &empty,
            &sv("InternetGatewayDevice.DeviceInfo.SerialNumber", "x", None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("read-only"), "{e}");
        assert!(check_set_value(&d, &empty, &sv(interval, "300", Some("xsd:string"))).is_err());
        // Vendor parameters pass, checked only against the device-reported type.
        let mut tree = ParamTree::new();
        tree.set_value(
            "InternetGatewayDevice.X_ACME_Level",
            "3",
            "xsd:unsignedInt",
            1,
        );
        tree.set_info("InternetGatewayDevice.X_ACME_Level", true, 1);
        assert!(check_set_value(
            &d,
            &tree,
            &sv("InternetGatewayDevice.X_ACME_Level", "4", None)
        )
        .is_ok());
        assert!(check_set_value(
            &d,
            &tree,
            &sv("InternetGatewayDevice.X_ACME_Level", "-4", None)
        )
        .is_err());
        tree.set_info("InternetGatewayDevice.X_ACME_Ro", false, 1);
        assert!(
            check_set_value(&d, &tree, &sv("InternetGatewayDevice.X_ACME_Ro", "1", None)).is_err()
        );
    }
}
