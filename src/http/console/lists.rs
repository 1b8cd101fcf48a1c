//! Lists across devices: tasks (filter by status and device; polled every 2 s), faults
//! (filter by device and code) and, for admins, the audit log (filter by actor and
//! action). Pages follow the id downwards (newest first) with a cursor.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::devices::device_href;
use super::session::{urlencode, Admin, Ctx, Viewer};
use super::view::{ago, utc, TaskView};
use super::{render, ConsoleError, Layout};
use crate::state::AppState;

const PAGE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks", web::get().to(tasks))
        .route("/tasks/rows", web::get().to(task_rows))
        .route("/faults", web::get().to(faults))
        .route("/audit", web::get().to(audit));
}

#[derive(Deserialize)]
struct TaskQuery {
    status: Option<String>,
    device_id: Option<String>,
    cursor: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "console/tasks.html")]
struct TasksPage {
    ctx: Layout,
    status: String,
    device_id: String,
    statuses: &'static [&'static str],
    rows: TaskRows,
}

#[derive(askama::Template)]
#[template(path = "console/task_rows.html")]
struct TaskRows {
    tasks: Vec<(TaskView, String)>,
    poll: String,
    next: Option<String>,
}

fn filtered(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
}

async fn load_tasks(state: &AppState, q: &TaskQuery) -> Result<TaskRows, ConsoleError> {
    let (status, dev, cursor) = (filtered(&q.status), filtered(&q.device_id), q.cursor);
    let (s2, d2) = (status.clone(), dev.clone());
    let rows = state
        .store
        .run(move |s| s.find_tasks(d2.as_deref(), s2.as_deref(), cursor, PAGE))
        .await?;
    let now = state.now();
    let base = format!(
        "status={}&device_id={}",
        urlencode(status.as_deref().unwrap_or("")),
        urlencode(dev.as_deref().unwrap_or(""))
    );
    let next = (rows.len() as i64 == PAGE)
        .then(|| {
            rows.last()
                .map(|t| format!("/tasks?{base}&cursor={}", t.id))
        })
        .flatten();
    let mut poll = format!("/tasks/rows?{base}");
    if let Some(c) = cursor {
        poll.push_str(&format!("&cursor={c}"));
    }
    Ok(TaskRows {
        tasks: rows
            .iter()
            .map(|t| (TaskView::new(t, now), device_href(&t.device_id)))
            .collect(),
        poll,
        next,
    })
}

async fn tasks(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<TaskQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let rows = load_tasks(&state, &q).await?;
    render(
        StatusCode::OK,
        &TasksPage {
            ctx: ctx.layout("tasks"),
            status: q.status.clone().unwrap_or_default(),
            device_id: q.device_id.clone().unwrap_or_default(),
            statuses: &crate::domain::tasks::STATUSES,
            rows,
        },
    )
}

async fn task_rows(
    _ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<TaskQuery>,
) -> Result<HttpResponse, ConsoleError> {
    render(StatusCode::OK, &load_tasks(&state, &q).await?)
}

#[derive(Deserialize)]
struct FaultQuery {
    device_id: Option<String>,
    code: Option<String>,
    cursor: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "console/faults.html")]
struct FaultsPage {
    ctx: Layout,
    device_id: String,
    code: String,
    rows: Vec<(i64, String, String, i32, String, String)>,
    next: Option<String>,
}

async fn faults(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<FaultQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let dev = filtered(&q.device_id);
    let code: Option<i32> = filtered(&q.code).and_then(|c| c.parse().ok());
    let (d2, cursor) = (dev.clone(), q.cursor);
    let now = state.now();
    // Filtering by code reads pages of the device's (or every) fault list: bounded to a few
    // pages, so a rare code on a huge table shows what the pages held and a next link.
    let mut out = Vec::new();
    let mut cur = cursor;
    let mut last_seen = None;
    for _ in 0..10 {
        let d3 = d2.clone();
        let rows = state
            .store
            .run(move |s| s.list_faults(d3.as_deref(), cur, PAGE))
            .await?;
        let n = rows.len() as i64;
        for f in rows {
            last_seen = Some(f.id);
            if code.is_none_or(|c| c == f.code) && (out.len() as i64) < PAGE {
                out.push((
                    f.id,
                    format!("{} ({})", ago(now, Some(f.created_at)), utc(f.created_at)),
                    f.device_id.clone(),
                    f.code,
                    f.message.clone(),
                    device_href(&f.device_id),
                ));
            }
        }
        cur = last_seen;
        if n < PAGE || out.len() as i64 >= PAGE {
            break;
        }
    }
    let next = last_seen
        .filter(|_| out.len() as i64 >= PAGE || code.is_some())
        .map(|id| {
            format!(
                "/faults?device_id={}&code={}&cursor={id}",
                urlencode(dev.as_deref().unwrap_or("")),
                urlencode(q.code.as_deref().unwrap_or(""))
            )
        });
    render(
        StatusCode::OK,
        &FaultsPage {
            ctx: ctx.layout("faults"),
            device_id: q.device_id.clone().unwrap_or_default(),
            code: q.code.clone().unwrap_or_default(),
            rows: out,
            next,
        },
    )
}

#[derive(Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    cursor: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    ctx: Layout,
    actor: String,
    action: String,
    rows: Vec<(String, String, String, String, String)>,
    next: Option<String>,
}

async fn audit(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let actor = filtered(&q.actor);
    let action = filtered(&q.action);
    let mut out = Vec::new();
    let mut cur = q.cursor;
    let mut last = None;
    for _ in 0..10 {
        let c = cur;
        let rows = state.store.run(move |s| s.list_audit(c, PAGE)).await?;
        let n = rows.len() as i64;
        for r in rows {
            last = Some(r.id);
            let keep = actor.as_deref().is_none_or(|a| r.actor.contains(a))
                && action.as_deref().is_none_or(|a| r.action.starts_with(a));
            if keep && (out.len() as i64) < PAGE {
                out.push((
                    utc(r.at),
                    r.actor,
                    r.action,
                    r.target,
                    r.detail.unwrap_or_default(),
                ));
            }
        }
        cur = last;
        if n < PAGE || out.len() as i64 >= PAGE {
            break;
        }
    }
    let next = last
        .filter(|_| out.len() as i64 >= PAGE || actor.is_some() || action.is_some())
        .map(|id| {
            format!(
                "/audit?actor={}&action={}&cursor={id}",
                urlencode(actor.as_deref().unwrap_or("")),
                urlencode(action.as_deref().unwrap_or(""))
            )
        });
    render(
        StatusCode::OK,
        &AuditPage {
            ctx: ctx.layout("audit"),
            actor: q.actor.clone().unwrap_or_default(),
            action: q.action.clone().unwrap_or_default(),
            rows: out,
            next,
        },
    )
}
