//! `/api/v1/campaigns...`: create (or dry-run) a campaign, control it (start, pause, resume,
//! approve, abort, retry failed, clone, reverse), and follow it: progress per state, wave and
//! model, the device table (JSON or CSV), the timeline, and a server-sent event stream.
//! Every action is a function of `domain::campaigns`, which validates and audits it.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dto::Page;
use super::{int_cursor, page_limit, Caller};
use crate::domain::campaigns::{
    self, CampaignRow, CampaignSpec, DryRun, EventRow, MemberRow, Progress,
};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Debug, Serialize)]
pub struct CampaignDto {
    pub id: i64,
    pub name: String,
    pub state: String,
    /// Why it paused, completed or was aborted.
    pub reason: Option<String>,
    pub current_wave: i32,
    pub awaiting_approval: bool,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub spec: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRun>,
}

impl CampaignDto {
    fn new(r: &CampaignRow) -> CampaignDto {
        let mut spec: Value = serde_json::from_str(&r.spec).unwrap_or(Value::Null);
        crate::domain::tasks::redact_secrets(&mut spec);
        CampaignDto {
            id: r.id,
            name: r.name.clone(),
            state: r.state.clone(),
            reason: r.reason.clone(),
            current_wave: r.current_wave,
            awaiting_approval: r.awaiting_approval != 0,
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            spec,
            progress: None,
            dry_run: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemberDto {
    pub device_id: String,
    pub model: String,
    pub wave: i32,
    pub state: String,
    pub attempts: i32,
    pub task_id: Option<i64>,
    pub from_version: String,
    pub target_version: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
    /// Images of its upgrade path confirmed so far (intermediate images only).
    pub step: i32,
    /// Images on its upgrade path, the final one included (1 without intermediate images).
    pub steps: i32,
    /// The version the image it runs (or gets next) leads to.
    pub step_version: String,
    #[serde(skip)]
    seq: i32,
}

impl From<&MemberRow> for MemberDto {
    fn from(m: &MemberRow) -> Self {
        MemberDto {
            device_id: m.device_id.clone(),
            model: m.model.clone(),
            wave: m.wave,
            state: m.state.clone(),
            attempts: m.attempts,
            task_id: m.task_id,
            from_version: m.from_version.clone(),
            target_version: m.target_version.clone(),
            started_at: m.started_at,
            finished_at: m.finished_at,
            last_error: m.last_error.clone(),
            step: m.step,
            steps: m.steps,
            step_version: if m.step_version.is_empty() {
                m.target_version.clone()
            } else {
                m.step_version.clone()
            },
            seq: m.seq,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventDto {
    pub id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub kind: String,
    pub detail: String,
}

impl From<&EventRow> for EventDto {
    fn from(e: &EventRow) -> Self {
        EventDto {
            id: e.id,
            at: e.at,
            device_id: e.device_id.clone(),
            kind: e.kind.clone(),
            detail: e.detail.clone(),
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = campaigns::list(&state.store, cursor, limit).await?;
    let items: Vec<CampaignDto> = rows.iter().map(CampaignDto::new).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |c| c.id.to_string())))
}

#[derive(Deserialize)]
pub struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<CreateQuery>,
    body: web::Json<Value>,
) -> ApiResult {
    // Parsed here (not by the extractor) so a bad field is named in the 400.
    let spec: CampaignSpec = serde_json::from_value(body.into_inner())
        .map_err(|e| Error::invalid("body", format!("not a campaign: {e}")))?;
    // A phone campaign reads the firmware phones reported: their latest fetches first.
    crate::domain::phones::settle_fetch_log_quietly(&state.store, &state.services.phones).await;
    if q.dry_run {
        let dry = campaigns::dry_run(&state.store, &spec).await?;
        return Ok(HttpResponse::Ok().json(dry));
    }
    let (row, dry) = campaigns::create(&state.store, &caller.actor, state.now(), &spec).await?;
    let mut dto = CampaignDto::new(&row);
    dto.dry_run = Some(dry);
    Ok(HttpResponse::Created().json(dto))
}

fn id_of(path: &web::Path<String>) -> Result<i64, ApiError> {
    path.parse::<i64>()
        .map_err(|_| ApiError(Error::invalid("id", "a campaign id is a number")))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let id = id_of(&path)?;
    let row = campaigns::get(&state.store, id).await?;
    let mut dto = CampaignDto::new(&row);
    dto.progress = Some(campaigns::progress(&state.store, &row, state.now()).await?);
    Ok(HttpResponse::Ok().json(dto))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ControlBody {
    #[serde(default)]
    reason: String,
}

macro_rules! control {
    ($name:ident, $f:path) => {
        pub async fn $name(
            state: web::Data<AppState>,
            caller: Caller,
            path: web::Path<String>,
        ) -> ApiResult {
            let id = id_of(&path)?;
            crate::domain::phones::settle_fetch_log_quietly(&state.store, &state.services.phones)
                .await;
            let row = $f(&state.store, &caller.actor, state.now(), id).await?;
            Ok(HttpResponse::Ok().json(CampaignDto::new(&row)))
        }
    };
}

control!(start, campaigns::start);
control!(resume, campaigns::resume);
control!(approve, campaigns::approve);
control!(abort, campaigns::abort);
control!(retry_failed, campaigns::retry_failed);

pub async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: Option<web::Json<ControlBody>>,
) -> ApiResult {
    let id = id_of(&path)?;
    let reason = body.map(|b| b.into_inner().reason).unwrap_or_default();
    let row = campaigns::pause(&state.store, &caller.actor, state.now(), id, &reason).await?;
    Ok(HttpResponse::Ok().json(CampaignDto::new(&row)))
}

pub async fn replace_action(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> ApiResult {
    let id = id_of(&path)?;
    let action: campaigns::Action = serde_json::from_value(body.into_inner())
        .map_err(|e| Error::invalid("action", format!("not a campaign action: {e}")))?;
    let row =
        campaigns::replace_action(&state.store, &caller.actor, state.now(), id, action).await?;
    Ok(HttpResponse::Ok().json(CampaignDto::new(&row)))
}

pub async fn clone(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult {
    let id = id_of(&path)?;
    let row = campaigns::clone(&state.store, &caller.actor, state.now(), id).await?;
    Ok(HttpResponse::Created().json(CampaignDto::new(&row)))
}

pub async fn reverse(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult {
    let id = id_of(&path)?;
    let row = campaigns::reverse(&state.store, &caller.actor, state.now(), id).await?;
    Ok(HttpResponse::Created().json(CampaignDto::new(&row)))
}

#[derive(Deserialize)]
pub struct DevicesQuery {
    state: Option<String>,
    format: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn csv_field(s: &str) -> String {
    // Quote, and neutralise spreadsheet formulas.
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn devices(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<DevicesQuery>,
) -> ApiResult {
    let id = id_of(&path)?;
    let st = q.state.clone();
    if q.format.as_deref() == Some("csv") {
        let rows = campaigns::members(&state.store, id, st, None, 10_000_000).await?;
        let mut out = String::from(
            "device_id,model,wave,state,attempts,task_id,from_version,target_version,started_at,finished_at,last_error,step,steps,step_version\n",
        );
        for m in &rows {
            let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&m.device_id),
                csv_field(&m.model),
                m.wave,
                m.state,
                m.attempts,
                opt(m.task_id),
                csv_field(&m.from_version),
                csv_field(&m.target_version),
                opt(m.started_at),
                opt(m.finished_at),
                csv_field(m.last_error.as_deref().unwrap_or("")),
                m.step,
                m.steps,
                csv_field(if m.step_version.is_empty() {
                    &m.target_version
                } else {
                    &m.step_version
                })
            ));
        }
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"campaign-{id}.csv\""),
            ))
            .body(out));
    }
    let limit = page_limit(q.limit);
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i32>().map_err(|_| {
            ApiError(Error::invalid(
                "cursor",
                "pass next_cursor from the previous page",
            ))
        })?),
    };
    let rows = campaigns::members(&state.store, id, st, cursor, limit).await?;
    let items: Vec<MemberDto> = rows.iter().map(MemberDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |m| m.seq.to_string())))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    device_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<EventsQuery>,
) -> ApiResult {
    let id = id_of(&path)?;
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = campaigns::events(&state.store, id, q.device_id.clone(), cursor, limit).await?;
    let items: Vec<EventDto> = rows.iter().map(EventDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |e| e.id.to_string())))
}

/// Live progress as server-sent events: a `progress` event with the campaign and its counts
/// whenever they change (checked every second), until the campaign is final with nothing in
/// flight, or after an hour (clients reconnect).
pub async fn stream(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let id = id_of(&path)?;
    campaigns::get(&state.store, id).await?;
    let st = state.into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    let body = futures_util::stream::unfold(
        (st, String::new(), false, true),
        move |(st, last, done, first)| async move {
            if done {
                return None;
            }
            let mut quiet = 0;
            loop {
                if !first || quiet > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                if tokio::time::Instant::now() >= deadline {
                    return None;
                }
                let Ok(row) = campaigns::get(&st.store, id).await else {
                    return None;
                };
                let progress = campaigns::progress(&st.store, &row, st.now()).await.ok();
                let in_flight = progress
                    .as_ref()
                    .and_then(|p| p.totals.get(campaigns::IN_PROGRESS).copied())
                    .unwrap_or(0);
                let mut dto = CampaignDto::new(&row);
                dto.progress = progress;
                let json = serde_json::to_string(&dto).unwrap_or_default();
                let fin = matches!(
                    row.state.as_str(),
                    campaigns::COMPLETED | campaigns::ABORTED
                ) && in_flight == 0;
                if json != last || fin {
                    let chunk = web::Bytes::from(format!("event: progress\ndata: {json}\n\n"));
                    return Some((Ok::<_, actix_web::Error>(chunk), (st, json, fin, false)));
                }
                quiet += 1;
                if quiet >= 15 {
                    // A comment line keeps proxies from closing an idle stream.
                    return Some((
                        Ok(web::Bytes::from_static(b": keep-alive\n\n")),
                        (st, last, false, false),
                    ));
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body))
}
