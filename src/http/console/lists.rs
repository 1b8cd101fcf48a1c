//! Lists across devices: tasks (filter by status and device; polled every 2 s), faults
//! (filter by device, code and time; clear what the filter selects) and, for admins, the
//! audit log (filter by actor, action and time). Pages follow the id downwards (newest
//! first) with a cursor; every filter is part of the bounded query.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::devices::device_href;
use super::session::{urlencode, Admin, Ctx, Operator, Viewer};
use super::view::{ago, utc, TaskView};
use super::{render, ConsoleError, Layout};
use crate::domain::usecases;
use crate::domain::usecases::admin::AuditFilter;
use crate::domain::usecases::faults::FaultFilter;
use crate::error::Error;
use crate::state::AppState;

const PAGE: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/tasks", web::get().to(tasks))
        .route("/tasks/rows", web::get().to(task_rows))
        .route("/faults", web::get().to(faults))
        .route("/faults/clear", web::post().to(clear_faults))
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
    statuses: Vec<&'static str>,
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
    let s2 = crate::domain::taskops::status_filter(status.as_deref())?;
    let d2 = dev.clone();
    let rows = state
        .store
        .run(move |s| s.find_tasks(d2.as_deref(), s2, cursor, PAGE))
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
            statuses: crate::domain::tasks::TaskStatus::ALL
                .map(crate::domain::tasks::TaskStatus::as_str)
                .to_vec(),
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
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
}

/// A time from a `datetime-local` field, read as UTC.
fn parse_time(field: &str, s: &Option<String>) -> Result<Option<i64>, Error> {
    let Some(s) = filtered(s) else {
        return Ok(None);
    };
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(&s, f).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .map(|t| Some(t.and_utc().timestamp_millis()))
    .ok_or_else(|| Error::invalid(field, "a time as YYYY-MM-DD HH:MM (UTC)"))
}

impl FaultQuery {
    fn filter(&self) -> Result<FaultFilter, Error> {
        let code = match filtered(&self.code) {
            None => None,
            Some(c) => Some(
                c.parse::<i32>()
                    .map_err(|_| Error::invalid("code", "a fault code is a number, e.g. 9002"))?,
            ),
        };
        Ok(FaultFilter {
            device_id: filtered(&self.device_id),
            code,
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
        })
    }

    fn query_string(&self) -> String {
        format!(
            "device_id={}&code={}&since={}&until={}",
            urlencode(self.device_id.as_deref().unwrap_or("")),
            urlencode(self.code.as_deref().unwrap_or("")),
            urlencode(self.since.as_deref().unwrap_or("")),
            urlencode(self.until.as_deref().unwrap_or("")),
        )
    }
}

#[derive(askama::Template)]
#[template(path = "console/faults.html")]
struct FaultsPage {
    ctx: Layout,
    device_id: String,
    code: String,
    since: String,
    until: String,
    error: Option<String>,
    notice: Option<String>,
    rows: Vec<(i64, String, String, i32, String, String)>,
    next: Option<String>,
}

async fn faults_page(
    ctx: Layout,
    state: &AppState,
    q: &FaultQuery,
    notice: Option<String>,
) -> Result<FaultsPage, ConsoleError> {
    let now = state.now();
    let (filter, error) = match q.filter() {
        Ok(f) => (Some(f), None),
        Err(Error::Invalid { field, message }) => (None, Some(format!("{field}: {message}"))),
        Err(e) => return Err(e.into()),
    };
    let mut rows = Vec::new();
    if let Some(f) = filter {
        let cursor = q.cursor;
        rows = state
            .store
            .run(move |s| s.find_faults(&f, cursor, PAGE))
            .await?;
    }
    let next = (rows.len() as i64 == PAGE)
        .then(|| {
            rows.last()
                .map(|f| format!("/faults?{}&cursor={}", q.query_string(), f.id))
        })
        .flatten();
    Ok(FaultsPage {
        ctx,
        device_id: q.device_id.clone().unwrap_or_default(),
        code: q.code.clone().unwrap_or_default(),
        since: q.since.clone().unwrap_or_default(),
        until: q.until.clone().unwrap_or_default(),
        error,
        notice,
        rows: rows
            .iter()
            .map(|f| {
                (
                    f.id,
                    format!("{} ({})", ago(now, Some(f.created_at)), utc(f.created_at)),
                    f.device_id.clone(),
                    f.code,
                    f.message.clone(),
                    device_href(&f.device_id),
                )
            })
            .collect(),
        next,
    })
}

async fn faults(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<FaultQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let page = faults_page(ctx.layout("faults"), &state, &q, None).await?;
    render(StatusCode::OK, &page)
}

/// Clear the faults the filter selects (the form repeats the filter of the list).
async fn clear_faults(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let q: FaultQuery = ctx.form()?;
    let filter = q.filter()?;
    let n = usecases::faults::clear(&state.ctx(), &ctx.as_actor(), &filter).await?;
    let q = FaultQuery { cursor: None, ..q };
    let page = faults_page(
        ctx.layout("faults"),
        &state,
        &q,
        Some(format!("{n} fault(s) cleared ({}).", filter.describe())),
    )
    .await?;
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<i64>,
}

#[derive(askama::Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    ctx: Layout,
    actor: String,
    action: String,
    since: String,
    until: String,
    error: Option<String>,
    rows: Vec<(String, String, String, String, String)>,
    next: Option<String>,
}

async fn audit(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let times = parse_time("since", &q.since).and_then(|s| Ok((s, parse_time("until", &q.until)?)));
    let (mut rows, mut error) = (Vec::new(), None);
    match times {
        Ok((since, until)) => {
            let filter = AuditFilter {
                actor: filtered(&q.actor),
                action: filtered(&q.action),
                since,
                until,
            };
            let cursor = q.cursor;
            rows = state
                .store
                .run(move |s| s.find_audit(&filter, cursor, PAGE))
                .await?;
        }
        Err(Error::Invalid { field, message }) => error = Some(format!("{field}: {message}")),
        Err(e) => return Err(e.into()),
    }
    let next = (rows.len() as i64 == PAGE)
        .then(|| {
            rows.last().map(|r| {
                format!(
                    "/audit?actor={}&action={}&since={}&until={}&cursor={}",
                    urlencode(q.actor.as_deref().unwrap_or("")),
                    urlencode(q.action.as_deref().unwrap_or("")),
                    urlencode(q.since.as_deref().unwrap_or("")),
                    urlencode(q.until.as_deref().unwrap_or("")),
                    r.id
                )
            })
        })
        .flatten();
    render(
        StatusCode::OK,
        &AuditPage {
            ctx: ctx.layout("audit"),
            actor: q.actor.clone().unwrap_or_default(),
            action: q.action.clone().unwrap_or_default(),
            since: q.since.clone().unwrap_or_default(),
            until: q.until.clone().unwrap_or_default(),
            error,
            rows: rows
                .into_iter()
                .map(|r| {
                    (
                        utc(r.at),
                        r.actor,
                        r.action,
                        r.target,
                        r.detail.unwrap_or_default(),
                    )
                })
                .collect(),
            next,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_are_utc_and_errors_name_the_field() {
        let t = |s: &str| parse_time("since", &Some(s.to_string()));
        assert_eq!(t("1970-01-01T00:01").ok(), Some(Some(60_000)));
        assert_eq!(t("1970-01-02").ok(), Some(Some(86_400_000)));
        assert_eq!(t(" ").ok(), Some(None));
        assert_eq!(parse_time("since", &None).ok(), Some(None));
        let e = t("yesterday")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("since:"), "{e}");
        let q = FaultQuery {
            device_id: Some(" ".into()),
            code: Some("90x".into()),
            since: None,
            until: None,
            cursor: None,
        };
        assert!(q.filter().is_err());
    }
}
