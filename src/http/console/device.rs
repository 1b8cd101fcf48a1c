//! The device page: summary, connection request, the parameter tree level by level (search,
//! inline edit through a SetParameterValues task with the data-model check, refresh of a
//! subtree, add/delete instances), tasks (create, cancel), faults, the session log, VoIP
//! lines, presets, uploaded files and tags. The summary and the task list poll every 2 s.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::devices::{device_href, interval_ms, liveness};
use super::session::{urlencode, Ctx, Operator, Viewer};
use super::view::{ago, utc, TaskView};
use super::{render, ConsoleError, Layout};
use crate::domain::params::{is_secret, ParamTree};
use crate::domain::taskops;
use crate::domain::tasks::{SetValue, TaskSpec};
use crate::domain::usecases::{self, devices::ProvisionInput, tasks::TaskOptions, Actor};
use crate::error::Error;
use crate::state::AppState;
use crate::store::devices::DeviceRow;

/// Most parameters one tree level or one search shows.
const MAX_ROWS: usize = 1000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices/{id}", web::get().to(page))
        .route("/devices/{id}/summary", web::get().to(summary))
        .route("/devices/{id}/params", web::get().to(params))
        .route("/devices/{id}/params/row", web::get().to(param_row))
        .route("/devices/{id}/params/set", web::post().to(set_param))
        .route("/devices/{id}/params/refresh", web::post().to(refresh))
        .route("/devices/{id}/objects/add", web::post().to(add_object))
        .route(
            "/devices/{id}/objects/delete",
            web::post().to(delete_object),
        )
        .route("/devices/{id}/tasks", web::get().to(tasks))
        .route("/devices/{id}/tasks", web::post().to(create_task))
        .route(
            "/devices/{id}/connection_request",
            web::post().to(connection_request),
        )
        .route("/tasks/{id}/cancel", web::post().to(cancel_task))
        .route("/devices/{id}/tags", web::post().to(edit_tags))
        .route("/devices/{id}/credentials", web::post().to(set_credentials))
        .route("/devices/{id}/lines/{n}", web::post().to(edit_line))
        .route(
            "/devices/{id}/uploads/{file}",
            web::get().to(download_upload),
        );
}

async fn device_row(state: &AppState, id: &str) -> Result<DeviceRow, ConsoleError> {
    let i = id.to_string();
    Ok(state
        .store
        .run(move |s| s.get_device(&i))
        .await?
        .ok_or_else(|| Error::not_found(format!("device {id}")))?)
}

pub struct Summary {
    pub id: String,
    pub href: String,
    pub items: Vec<(&'static str, String)>,
    pub status: &'static str,
    pub status_label: &'static str,
    pub in_session: bool,
    pub connreq: String,
    pub tags: Vec<String>,
}

async fn summary_of(state: &AppState, d: &DeviceRow) -> Result<Summary, ConsoleError> {
    let now = state.now();
    let ids = vec![d.id.clone()];
    let (tags, crs) = state
        .store
        .run(move |s| Ok((s.tags_of(&ids)?, s.connreqs_of(&ids)?)))
        .await?;
    let (status, status_label) = liveness(d, now, interval_ms(state));
    let in_session = d.session_owner.is_some() && d.session_expires.is_some_and(|e| e > now);
    let connreq = crs
        .get(&d.id)
        .map(|c| format!("{}: {} ({})", c.outcome, c.message, ago(now, Some(c.at))))
        .unwrap_or_else(|| "none sent yet".into());
    let items = vec![
        ("Manufacturer", d.manufacturer.clone()),
        ("OUI", d.oui.clone()),
        ("Product class", d.product_class.clone()),
        ("Serial number", d.serial_number.clone()),
        ("Model", d.model_name.clone()),
        ("Software version", d.software_version.clone()),
        ("Hardware version", d.hardware_version.clone()),
        ("Data model", d.root_model.clone()),
        ("CWMP version", d.cwmp_version.clone()),
        (
            "Last inform",
            match d.last_inform {
                Some(t) => format!("{} ({})", ago(now, Some(t)), utc(t)),
                None => "never".into(),
            },
        ),
        ("Last boot", ago(now, d.last_boot)),
        ("IP address", d.last_source_ip.clone()),
        ("ConnectionRequestURL", d.connection_request_url.clone()),
        (
            "Discovery",
            match d.discovered_at {
                Some(t) => format!("parameter tree read {}", ago(now, Some(t))),
                None => "not completed".into(),
            },
        ),
    ];
    Ok(Summary {
        id: d.id.clone(),
        href: device_href(&d.id),
        items,
        status,
        status_label,
        in_session,
        connreq,
        tags: tags.into_iter().map(|(_, t)| t).collect(),
    })
}

#[derive(askama::Template)]
#[template(path = "console/device.html")]
struct DevicePage {
    ctx: Layout,
    s: Summary,
    root: String,
    faults: Vec<(String, i32, String)>,
    sessions: Vec<SessionView>,
    lines: Vec<LineEdit>,
    tag_card: TagCard,
    cred: CredCard,
    /// (parameter, preset and revision, value, when)
    presets_applied: Vec<(String, String, String, String)>,
    /// (parameter, preset and revision, value, fault code and reason, when)
    presets_refused: Vec<(String, String, String, String, String)>,
    uploads: Vec<(String, String, String, String)>,
    rpcs: &'static [&'static str],
    /// TR-111: the gateway this device is behind, and the devices behind it.
    gateway: Option<LinkView>,
    behind: Vec<LinkView>,
    /// The device list searching for the devices behind this one.
    behind_search: String,
}

/// The other side of a device–gateway pair, as the device page shows it.
pub struct LinkView {
    pub id: String,
    /// The device's page when ferroacs manages it.
    pub href: Option<String>,
    pub how: &'static str,
    pub confirmed: bool,
    pub seen: String,
    pub host: String,
}

impl LinkView {
    fn of(l: &crate::domain::tr111::Link, now: i64) -> LinkView {
        LinkView {
            id: l.id.clone(),
            href: l.managed.then(|| device_href(&l.id)),
            how: l.source.label(),
            confirmed: l.source == crate::domain::tr111::LinkSource::Confirmed,
            seen: ago(now, Some(l.last_seen)),
            host: l.host.clone(),
        }
    }
}

pub struct SessionView {
    pub when: String,
    pub duration: String,
    pub events: String,
    pub rpcs: String,
    pub faults: String,
    pub outcome: String,
    pub ok: bool,
}

async fn page(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let s = summary_of(&state, &d).await?;
    let now = state.now();
    let i = d.id.clone();
    let (faults, sessions, lines, preset_state, uploads) = state
        .store
        .run(move |st| {
            Ok((
                st.list_faults(Some(&i), None, 20)?,
                st.list_session_logs(&i, None, 20)?,
                st.device_lines(&i)?,
                st.preset_state(&i)?,
                st.find_files(Some(&i), None, 50)?,
            ))
        })
        .await?;
    let assoc = crate::domain::tr111::association(&state.store, &d.id).await?;
    let preset_view = crate::domain::presets::DeviceState::decode(preset_state.as_ref());
    let next_line = lines.iter().map(|l| l.line).max().unwrap_or(0) + 1;
    let root = match d.root_model.as_str() {
        "InternetGatewayDevice:1" => "InternetGatewayDevice.",
        _ => "Device.",
    }
    .to_string();
    let page = DevicePage {
        ctx: ctx.layout("devices"),
        root,
        faults: faults
            .iter()
            .map(|f| (ago(now, Some(f.created_at)), f.code, f.message.clone()))
            .collect(),
        sessions: sessions
            .iter()
            .map(|x| SessionView {
                when: format!("{} ({})", utc(x.started_at), ago(now, Some(x.started_at))),
                duration: format!("{} ms", x.ended_at - x.started_at),
                events: x.events.clone(),
                rpcs: x.rpcs.clone(),
                faults: x.faults.clone(),
                outcome: x.outcome.clone(),
                ok: matches!(x.outcome.as_str(), "ok" | "done" | "completed"),
            })
            .collect(),
        lines: lines
            .iter()
            .map(|l| {
                LineEdit::of(
                    &d.id,
                    l.line,
                    &l.account,
                    &l.status,
                    l.device_status.as_deref(),
                    l.fault.as_deref(),
                )
            })
            .chain(std::iter::once(LineEdit::empty(&d.id, next_line)))
            .collect(),
        tag_card: TagCard {
            href: device_href(&d.id),
            tags: s.tags.clone(),
            error: None,
        },
        cred: CredCard {
            href: device_href(&d.id),
            username: d.cwmp_username.clone(),
            message: None,
            error: None,
        },
        presets_applied: preset_view
            .applied
            .iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    format!("{} (revision {})", a.preset, a.revision),
                    shown_value(name, &a.value),
                    ago(now, Some(a.at)),
                )
            })
            .collect(),
        presets_refused: preset_view
            .refused
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    format!("{} (revision {})", r.preset, r.revision),
                    shown_value(name, &r.value),
                    format!("{} {}", r.code, r.reason),
                    ago(now, Some(r.at)),
                )
            })
            .collect(),
        uploads: uploads
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    f.file_type.clone(),
                    ago(now, Some(f.created_at)),
                    format!("{}/uploads/{}", device_href(&d.id), urlencode(&f.id)),
                )
            })
            .collect(),
        rpcs: &crate::domain::tasks::TASK_RPCS,
        gateway: assoc.gateway.as_ref().map(|l| LinkView::of(l, now)),
        behind: assoc.behind.iter().map(|l| LinkView::of(l, now)).collect(),
        behind_search: format!(
            "/devices?q={}",
            urlencode(&format!(
                "gateway = \"{}\"",
                d.id.replace('\\', "\\\\").replace('"', "\\\"")
            ))
        ),
        s,
    };
    render(StatusCode::OK, &page)
}

#[derive(askama::Template)]
#[template(path = "console/device_summary.html")]
struct SummaryFragment {
    s: Summary,
}

async fn summary(
    _ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let s = summary_of(&state, &d).await?;
    render(StatusCode::OK, &SummaryFragment { s })
}

/// One parameter or object row of the tree.
#[derive(Clone)]
pub struct ParamView {
    pub name: String,
    /// The last segment (`Enable`, `1.`).
    pub label: String,
    pub value: String,
    pub xsd_type: String,
    pub object: bool,
    pub writable: bool,
    /// A multi-instance object's instance (`...Line.1.`): can be deleted.
    pub instance: bool,
    /// An element id derived from the name.
    pub dom_id: String,
    pub secret: bool,
}

fn dom_id(name: &str) -> String {
    let mut s = String::from("p-");
    for c in name.chars() {
        s.push(if c.is_ascii_alphanumeric() || c == '-' {
            c
        } else {
            '_'
        });
    }
    s
}

fn view_of(name: &str, e: &crate::domain::params::ParamEntry, prefix: &str) -> ParamView {
    let label = name.strip_prefix(prefix).unwrap_or(name).to_string();
    let secret = is_secret(name);
    let instance = e.object
        && name
            .trim_end_matches('.')
            .rsplit('.')
            .next()
            .is_some_and(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()));
    ParamView {
        name: name.to_string(),
        label,
        value: if secret {
            String::new()
        } else {
            e.value.clone().unwrap_or_default()
        },
        xsd_type: e.xsd_type.to_string(),
        object: e.object,
        writable: e.writable == Some(true),
        instance,
        dom_id: dom_id(name),
        secret,
    }
}

/// The direct children of `prefix` (an object path ending in `.`, or empty for the roots).
pub fn children(tree: &ParamTree, prefix: &str) -> Vec<ParamView> {
    let mut out = Vec::new();
    let mut seen_objects = std::collections::BTreeSet::new();
    for (name, e) in tree.iter() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        match rest.find('.') {
            // A leaf directly below.
            None => out.push(view_of(name, e, prefix)),
            // An object directly below (`X.`), or something deeper whose object row is missing.
            Some(i) => {
                let obj = format!("{prefix}{}", &rest[..=i]);
                if seen_objects.insert(obj.clone()) {
                    let entry =
                        tree.get(&obj)
                            .cloned()
                            .unwrap_or(crate::domain::params::ParamEntry {
                                object: true,
                                ..Default::default()
                            });
                    out.push(view_of(&obj, &entry, prefix));
                }
            }
        }
        if out.len() >= MAX_ROWS {
            break;
        }
    }
    out
}

/// Parameters whose name or value contains `needle` (case-insensitive).
pub fn search(tree: &ParamTree, needle: &str) -> Vec<ParamView> {
    let n = needle.to_lowercase();
    tree.iter()
        .filter(|(name, e)| {
            name.to_lowercase().contains(&n)
                || (!is_secret(name)
                    && e.value
                        .as_deref()
                        .is_some_and(|v| v.to_lowercase().contains(&n)))
        })
        .take(MAX_ROWS)
        .map(|(name, e)| view_of(name, e, ""))
        .collect()
}

/// A row of a tree level: an object (rendered by `param_rows.html`) or a leaf, rendered
/// beforehand by [`ParamRowFragment`] so a leaf looks the same in the tree and after an edit.
pub struct Item {
    pub p: ParamView,
    pub leaf_html: String,
}

#[derive(askama::Template)]
#[template(path = "console/param_rows.html")]
struct ParamRows {
    ctx: Layout,
    href: String,
    rows: Vec<Item>,
    empty: &'static str,
}

#[derive(Deserialize)]
struct ParamsQuery {
    prefix: Option<String>,
    search: Option<String>,
}

async fn params(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<ParamsQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let tree = taskops::current_tree(&state.store, &d).await?;
    let (rows, empty) = match q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(needle) => (
            search(&tree, needle),
            "No parameter name or value contains this.",
        ),
        None => (
            children(&tree, q.prefix.as_deref().unwrap_or("")),
            "Nothing known below this object yet: refresh it to read it from the device.",
        ),
    };
    let href = device_href(&d.id);
    let mut items = Vec::with_capacity(rows.len());
    for p in rows {
        let leaf_html = if p.object {
            String::new()
        } else {
            askama::Template::render(&ParamRowFragment {
                ctx: ctx.layout("devices"),
                href: href.clone(),
                p: p.clone(),
                error: None,
                task: None,
                entered: String::new(),
            })
            .map_err(Error::internal)?
        };
        items.push(Item { p, leaf_html });
    }
    render(
        StatusCode::OK,
        &ParamRows {
            ctx: ctx.layout("devices"),
            href,
            rows: items,
            empty,
        },
    )
}

#[derive(askama::Template)]
#[template(path = "console/param_row.html")]
struct ParamRowFragment {
    ctx: Layout,
    href: String,
    p: ParamView,
    error: Option<String>,
    task: Option<TaskView>,
    entered: String,
}

#[derive(Deserialize)]
struct RowQuery {
    name: String,
    task: Option<i64>,
}

async fn param_row(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<RowQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let tree = taskops::current_tree(&state.store, &d).await?;
    let entry = tree.get(&q.name).cloned().unwrap_or_default();
    let prefix = parent_of(&q.name);
    let mut task = None;
    if let Some(tid) = q.task {
        let t = state.store.run(move |s| s.get_task(tid)).await?;
        task = t
            .filter(|t| t.device_id == d.id)
            .map(|t| TaskView::new(&t, state.now()));
    }
    let error = task
        .as_ref()
        .filter(|t| !t.open && t.status != "done")
        .map(|t| format!("{} {}", t.status, t.outcome));
    render(
        StatusCode::OK,
        &ParamRowFragment {
            ctx: ctx.layout("devices"),
            href: device_href(&d.id),
            p: view_of(&q.name, &entry, &prefix),
            error,
            task: task.filter(|t| t.open),
            entered: String::new(),
        },
    )
}

fn parent_of(name: &str) -> String {
    let trimmed = name.trim_end_matches('.');
    match trimmed.rfind('.') {
        Some(i) => trimmed[..=i].to_string(),
        None => String::new(),
    }
}

/// Queue one task through the use case the API calls (same role check and audit entry),
/// then ask the device for a session in the background.
async fn queue(
    state: &web::Data<AppState>,
    actor: &Actor,
    device_id: &str,
    spec: &TaskSpec,
) -> Result<usecases::tasks::QueuedTask, Error> {
    let ctx = state.ctx();
    let q = usecases::tasks::create(&ctx, actor, device_id, spec, &TaskOptions::default()).await?;
    ctx.hooks().wake(vec![device_id.to_string()]);
    Ok(q)
}

#[derive(Deserialize)]
struct SetForm {
    name: String,
    value: String,
}

/// Inline edit: queue SetParameterValues (checked against the data model and what the
/// device reported) and ask the device for a session. A refused value is shown next to
/// the field; an accepted one shows its task until it finishes.
async fn set_param(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: SetForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let tree = taskops::current_tree(&state.store, &d).await?;
    let entry = tree.get(&f.name).cloned().unwrap_or_default();
    let mut p = view_of(&f.name, &entry, &parent_of(&f.name));
    let spec = TaskSpec::SetParameterValues {
        values: vec![SetValue {
            name: f.name.clone(),
            value: f.value.clone(),
            xsd_type: None,
        }],
    };
    let now = state.now();
    match queue(&state, &ctx.as_actor(), &d.id, &spec)
        .await
        .map(|q| q.task)
    {
        Ok(task) => render(
            StatusCode::OK,
            &ParamRowFragment {
                ctx: ctx.layout("devices"),
                href: device_href(&d.id),
                p,
                error: None,
                task: Some(TaskView::new(&task, now)),
                entered: String::new(),
            },
        ),
        Err(Error::Invalid { message, .. }) => {
            if !p.secret {
                p.value = entry.value.unwrap_or_default();
            }
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &ParamRowFragment {
                    ctx: ctx.layout("devices"),
                    href: device_href(&d.id),
                    p,
                    error: Some(message),
                    task: None,
                    entered: if is_secret(&f.name) {
                        String::new()
                    } else {
                        f.value
                    },
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct PathForm {
    path: String,
}

#[derive(askama::Template)]
#[template(path = "console/task_queued.html")]
struct TaskQueued {
    message: String,
    error: Option<String>,
}

async fn queue_one(
    ctx: &Ctx<Operator>,
    state: &web::Data<AppState>,
    device_id: &str,
    spec: TaskSpec,
    what: String,
) -> Result<HttpResponse, ConsoleError> {
    match queue(state, &ctx.as_actor(), device_id, &spec)
        .await
        .map(|q| q.task)
    {
        Ok(t) => render(
            StatusCode::OK,
            &TaskQueued {
                message: format!("{what}: task #{} queued, connection request sent.", t.id),
                error: None,
            },
        ),
        Err(Error::Invalid { message, .. }) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &TaskQueued {
                message: String::new(),
                error: Some(message),
            },
        ),
        Err(e) => Err(e.into()),
    }
}

async fn refresh(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: PathForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let spec = TaskSpec::GetParameterValues {
        names: vec![f.path.clone()],
    };
    queue_one(&ctx, &state, &d.id, spec, format!("Refresh {}", f.path)).await
}

async fn add_object(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: PathForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let spec = TaskSpec::AddObject {
        object: f.path.clone(),
    };
    queue_one(
        &ctx,
        &state,
        &d.id,
        spec,
        format!("Add an instance to {}", f.path),
    )
    .await
}

async fn delete_object(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: PathForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let spec = TaskSpec::DeleteObject {
        object: f.path.clone(),
    };
    queue_one(&ctx, &state, &d.id, spec, format!("Delete {}", f.path)).await
}

#[derive(askama::Template)]
#[template(path = "console/device_tasks.html")]
struct TasksFragment {
    ctx: Layout,
    href: String,
    tasks: Vec<TaskView>,
    open: bool,
}

async fn tasks(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let i = d.id.clone();
    let now = state.now();
    let rows = state
        .store
        .run(move |s| s.find_tasks(Some(&i), None, None, 25))
        .await?;
    let tasks: Vec<TaskView> = rows.iter().map(|t| TaskView::new(t, now)).collect();
    render(
        StatusCode::OK,
        &TasksFragment {
            ctx: ctx.layout("devices"),
            href: device_href(&d.id),
            open: tasks.iter().any(|t| t.open),
            tasks,
        },
    )
}

#[derive(Deserialize)]
struct TaskForm {
    rpc: String,
    #[serde(default)]
    args: String,
}

/// Any RPC: the form's arguments are the task's JSON (as the API's body, without `rpc`).
async fn create_task(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: TaskForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let args = if f.args.trim().is_empty() {
        "{}"
    } else {
        f.args.trim()
    };
    let mut v: serde_json::Value = match serde_json::from_str(args) {
        Ok(v) => v,
        Err(e) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &TaskQueued {
                    message: String::new(),
                    error: Some(format!("the arguments are not JSON: {e}")),
                },
            )
        }
    };
    match v.as_object_mut() {
        Some(m) => {
            m.insert("rpc".into(), serde_json::Value::String(f.rpc.clone()));
        }
        None => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &TaskQueued {
                    message: String::new(),
                    error: Some(
                        "the arguments must be a JSON object, e.g. {\"names\": [\"Device.\"]}"
                            .into(),
                    ),
                },
            )
        }
    }
    let spec: TaskSpec = match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => {
            return render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &TaskQueued {
                    message: String::new(),
                    error: Some(format!("{}: {e}", f.rpc)),
                },
            )
        }
    };
    queue_one(&ctx, &state, &d.id, spec, f.rpc.clone()).await
}

async fn cancel_task(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ConsoleError> {
    let row = usecases::tasks::cancel(&state.ctx(), &ctx.as_actor(), id.into_inner()).await?;
    render(
        StatusCode::OK,
        &TaskQueued {
            message: format!("Task #{} is {}.", row.id, row.status),
            error: None,
        },
    )
}

#[derive(askama::Template)]
#[template(path = "console/connreq_result.html")]
struct ConnReqResult {
    outcome: String,
    message: String,
    ok: bool,
}

async fn connection_request(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let d = device_row(&state, &id).await?;
    let r = usecases::devices::connection_request(&state.ctx(), &ctx.as_actor(), &d.id).await?;
    render(
        StatusCode::OK,
        &ConnReqResult {
            ok: r.outcome == "ok",
            outcome: r.outcome.to_string(),
            message: r.message,
        },
    )
}

/// A value as the page shows it: secrets never.
fn shown_value(name: &str, value: &str) -> String {
    if is_secret(name) && !value.is_empty() {
        "••••".into()
    } else {
        value.to_string()
    }
}

/// The tags card of the device page (a fragment htmx swaps after each change).
pub struct TagCard {
    pub href: String,
    pub tags: Vec<String>,
    pub error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/device_tags.html")]
struct TagsFragment {
    ctx: Layout,
    tag_card: TagCard,
}

#[derive(Deserialize)]
struct TagForm {
    tag: String,
    op: String,
}

fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("hx-request")
}

/// Back to the device page after a form posted without JavaScript.
fn back_to(href: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, href.to_string()))
        .finish()
}

/// Add or remove one tag (the use case the API's tag routes call).
async fn edit_tags(
    ctx: Ctx<Operator>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: TagForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let add = match f.op.as_str() {
        "add" => true,
        "remove" => false,
        other => return Err(Error::invalid("op", format!("add or remove, not {other:?}")).into()),
    };
    let ids = [d.id.clone()];
    let (status, error) =
        match usecases::devices::set_tag(&state.ctx(), &ctx.as_actor(), &ids, &f.tag, add).await {
            Ok(_) => (StatusCode::OK, None),
            Err(Error::Invalid { message, .. }) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Some(message))
            }
            Err(e) => return Err(e.into()),
        };
    if !is_htmx(&req) && error.is_none() {
        return Ok(back_to(&device_href(&d.id)));
    }
    let tags = state
        .store
        .run(move |s| s.tags_of(&ids))
        .await?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    render(
        status,
        &TagsFragment {
            ctx: ctx.layout("devices"),
            tag_card: TagCard {
                href: device_href(&d.id),
                tags,
                error,
            },
        },
    )
}

/// The CWMP credentials card: the user name the device logs in with (never a password).
pub struct CredCard {
    pub href: String,
    pub username: Option<String>,
    pub message: Option<String>,
    pub error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/device_credentials.html")]
struct CredFragment {
    ctx: Layout,
    cred: CredCard,
}

#[derive(Deserialize)]
struct CredForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    op: String,
}

/// Length of a generated CWMP password.
const ROTATED_PASSWORD_LEN: usize = 24;

/// Set the device's own CWMP credentials (write-only: the password is never shown again),
/// or clear them (the device then logs in with the default credentials). "Generate" makes
/// a random password for the given user name and shows it once, to configure the device.
async fn set_credentials(
    ctx: Ctx<Operator>,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: CredForm = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let mut input = ProvisionInput::default();
    let mut shown = None;
    match f.op.as_str() {
        "clear" => input.clear_credentials = true,
        "generate" => {
            let mut bytes = [0u8; ROTATED_PASSWORD_LEN];
            rand::fill(&mut bytes[..]);
            // Letters and digits only, so it can be typed into any device's web page.
            const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
            let pw: String = bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .collect();
            input.cwmp_username = Some(f.username.trim().to_string());
            input.cwmp_password = Some(pw.clone());
            shown = Some(pw);
        }
        _ => {
            input.cwmp_username = Some(f.username.trim().to_string());
            input.cwmp_password = Some(f.password.clone());
        }
    }
    let res = usecases::devices::provision(&state.ctx(), &ctx.as_actor(), &d.id, &input).await;
    let (status, cred) = match res {
        Ok((row, _)) => {
            if !is_htmx(&req) && shown.is_none() {
                return Ok(back_to(&device_href(&d.id)));
            }
            let message = match (&row.cwmp_username, shown) {
                (None, _) => "Cleared: the device logs in with the default credentials.".to_string(),
                (Some(u), Some(pw)) => format!(
                    "Set for user {u}. New password (shown this once; configure it on the device as ManagementServer.Password): {pw}"
                ),
                (Some(u), None) => format!("Set for user {u}; the password is stored and never shown."),
            };
            (
                StatusCode::OK,
                CredCard {
                    href: device_href(&d.id),
                    username: row.cwmp_username,
                    message: Some(message),
                    error: None,
                },
            )
        }
        Err(Error::Invalid { message, .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            CredCard {
                href: device_href(&d.id),
                username: d.cwmp_username.clone(),
                message: None,
                error: Some(message),
            },
        ),
        Err(e) => return Err(e.into()),
    };
    render(
        status,
        &CredFragment {
            ctx: ctx.layout("devices"),
            cred,
        },
    )
}

/// The fields of a line the console edits, in form order (name, label, numeric).
pub const LINE_FIELDS: &[(&str, &str, bool)] = &[
    ("sip_user", "SIP user", false),
    ("auth_user", "Auth user (default: SIP user)", false),
    ("display_name", "Display name", false),
    ("registrar", "Registrar", false),
    ("registrar_port", "Registrar port", true),
    ("proxy", "Proxy", false),
    ("proxy_port", "Proxy port", true),
    ("transport", "Transport (UDP, TCP, TLS)", false),
];

/// One VoIP line on the device page, with its edit form.
pub struct LineEdit {
    pub n: i32,
    pub action: String,
    pub user: String,
    pub status: String,
    pub device_status: String,
    pub fault: String,
    pub is_new: bool,
    /// (field, label, value, input id)
    pub fields: Vec<(&'static str, &'static str, String, String)>,
}

impl LineEdit {
    fn of(
        device: &str,
        n: i32,
        account: &str,
        status: &str,
        device_status: Option<&str>,
        fault: Option<&str>,
    ) -> LineEdit {
        let a: serde_json::Value = serde_json::from_str(account).unwrap_or_default();
        let get = |k: &str| match a.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        LineEdit {
            n,
            action: format!("{}/lines/{n}", device_href(device)),
            user: get("sip_user"),
            status: status.to_string(),
            device_status: device_status.unwrap_or("not read yet").to_string(),
            fault: fault.unwrap_or_default().to_string(),
            is_new: false,
            fields: LINE_FIELDS
                .iter()
                .map(|(k, l, _)| (*k, *l, get(k), format!("line{n}-{k}")))
                .collect(),
        }
    }

    fn empty(device: &str, n: i32) -> LineEdit {
        LineEdit {
            is_new: true,
            ..LineEdit::of(device, n, "{}", "", None, None)
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/task_queued.html")]
struct LineSaved {
    message: String,
    error: Option<String>,
}

/// Assign or edit a line's SIP account through the use case the API calls. Fields not on
/// the form are kept from the stored account; an empty password keeps the stored one.
async fn edit_line(
    ctx: Ctx<Operator>,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i32)>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, n) = path.into_inner();
    let form: Vec<(String, String)> = ctx.form()?;
    let d = device_row(&state, &id).await?;
    let i = d.id.clone();
    let stored = state
        .store
        .run(move |s| s.device_lines(&i))
        .await?
        .into_iter()
        .find(|l| l.line == n);
    let mut account = match stored.as_ref().map(|l| serde_json::from_str(&l.account)) {
        Some(Ok(serde_json::Value::Object(m))) => m,
        _ => serde_json::Map::new(),
    };
    let value_of = |k: &str| {
        form.iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.trim().to_string())
    };
    for (k, _, numeric) in LINE_FIELDS {
        match value_of(k) {
            None => {}
            Some(v) if v.is_empty() => {
                account.remove(*k);
            }
            Some(v) if *numeric => {
                let Ok(port) = v.parse::<u32>() else {
                    return line_error(format!("{k}: a port number, not {v:?}"));
                };
                account.insert(k.to_string(), port.into());
            }
            Some(v) => {
                account.insert(k.to_string(), v.into());
            }
        }
    }
    if let Some(pw) = value_of("password").filter(|p| !p.is_empty()) {
        account.insert("password".into(), pw.into());
    }
    let input: crate::domain::lines::LineInput =
        match serde_json::from_value(serde_json::Value::Object(account)) {
            Ok(i) => i,
            Err(e) => return line_error(e.to_string()),
        };
    let cr = value_of("connection_request").is_some();
    match usecases::voip::assign_line(&state.ctx(), &ctx.as_actor(), &d.id, n, input, cr).await {
        Ok(_) if !is_htmx(&req) => Ok(back_to(&device_href(&d.id))),
        Ok((view, _)) => render(
            StatusCode::OK,
            &LineSaved {
                message: format!(
                    "Line {n} saved (revision {}); the device gets it in its next session.",
                    view.revision
                ),
                error: None,
            },
        ),
        Err(Error::Invalid { field, message }) => line_error(format!("{field}: {message}")),
        Err(e) => Err(e.into()),
    }
}

fn line_error(message: String) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &LineSaved {
            message: String::new(),
            error: Some(message),
        },
    )
}

/// A file the device uploaded (a configuration backup, a log), as an attachment. An
/// operator's: configuration backups hold the device's passwords (Wi-Fi, PPP, SIP).
async fn download_upload(
    _ctx: Ctx<Operator>,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ConsoleError> {
    let (id, file) = path.into_inner();
    let f = file.clone();
    let row = state
        .store
        .run(move |s| s.get_file(&f))
        .await?
        .filter(|r| r.device_id.as_deref() == Some(id.as_str()))
        .ok_or_else(|| Error::not_found(format!("file {file} of device {id}")))?;
    let mut res = crate::http::fileserver::serve_file(&req, &state, &row).await;
    let name: String = row
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(v) =
        actix_web::http::header::HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        res.headers_mut()
            .insert(actix_web::http::header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::params::ParamEntry;

    #[test]
    fn tree_levels_show_direct_children_only() {
        let mut t = ParamTree::new();
        let leaf = |v: &str| ParamEntry {
            value: Some(v.into()),
            xsd_type: "xsd:string".into(),
            writable: Some(true),
            ..Default::default()
        };
        t.insert("Device.DeviceInfo.SerialNumber".into(), leaf("S1"));
        t.insert("Device.DeviceInfo.SoftwareVersion".into(), leaf("1.0"));
        t.insert("Device.Services.VoiceService.1.Enable".into(), leaf("true"));
        t.insert("Device.Users.User.1.Password".into(), leaf("secret"));
        let top: Vec<String> = children(&t, "").into_iter().map(|p| p.name).collect();
        assert_eq!(top, vec!["Device."]);
        let dev: Vec<String> = children(&t, "Device.")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            dev,
            vec!["Device.DeviceInfo.", "Device.Services.", "Device.Users."]
        );
        let vs = children(&t, "Device.Services.VoiceService.");
        assert_eq!(vs.len(), 1);
        assert!(vs[0].instance && vs[0].object);
        let found = search(&t, "secret");
        assert!(found.is_empty(), "secret values are not searchable");
        let pw = search(&t, "password");
        assert_eq!(pw.len(), 1);
        assert_eq!(pw[0].value, "", "secret values are never shown");
        assert_eq!(parent_of("Device.A.B"), "Device.A.");
        assert_eq!(parent_of("Device.A."), "Device.");
    }
}
