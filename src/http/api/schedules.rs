//! `/api/v1/schedules...`: scheduled jobs (a task or a config backup for the devices a query
//! matches, at each time of a cron expression in a time zone), and a device's config
//! backups: list, diff of two, restore. Every action is a function of `domain::schedules`,
//! which validates and audits it.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dto::{FileDto, Page, TaskDto};
use super::{int_cursor, page_limit, Caller};
use crate::domain::schedules::{self, ScheduleRow, ScheduleSpec};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Debug, Serialize)]
pub struct ScheduleDto {
    pub id: i64,
    pub name: String,
    pub enabled: bool,
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    pub last_result: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub spec: Value,
}

impl From<&ScheduleRow> for ScheduleDto {
    fn from(r: &ScheduleRow) -> Self {
        let mut spec: Value = serde_json::from_str(&r.spec).unwrap_or(Value::Null);
        crate::domain::tasks::redact_secrets(&mut spec);
        ScheduleDto {
            id: r.id,
            name: r.name.clone(),
            enabled: r.enabled != 0,
            next_fire_at: r.next_fire_at,
            last_fire_at: r.last_fire_at,
            last_result: r.last_result.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            spec,
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

fn spec_from(body: Value) -> Result<ScheduleSpec, ApiError> {
    // Parsed here (not by the extractor) so a bad field is named in the 400.
    serde_json::from_value(body)
        .map_err(|e| ApiError(Error::invalid("body", format!("not a schedule: {e}"))))
}

fn id_of(path: &web::Path<String>) -> Result<i64, ApiError> {
    path.parse::<i64>()
        .map_err(|_| ApiError(Error::invalid("id", "a schedule id is a number")))
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let rows = schedules::list(&state.store, int_cursor(&q.cursor)?, limit).await?;
    let items: Vec<ScheduleDto> = rows.iter().map(ScheduleDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |s| s.id.to_string())))
}

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<Value>,
) -> ApiResult {
    let spec = spec_from(body.into_inner())?;
    let row = schedules::create(&state.store, &caller.actor, state.now(), &spec).await?;
    Ok(HttpResponse::Created().json(ScheduleDto::from(&row)))
}

pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let row = schedules::get(&state.store, id_of(&path)?).await?;
    Ok(HttpResponse::Ok().json(ScheduleDto::from(&row)))
}

pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> ApiResult {
    let id = id_of(&path)?;
    let spec = spec_from(body.into_inner())?;
    let row = schedules::update(&state.store, &caller.actor, state.now(), id, &spec).await?;
    Ok(HttpResponse::Ok().json(ScheduleDto::from(&row)))
}

pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> ApiResult {
    schedules::delete(&state.store, &caller.actor, state.now(), id_of(&path)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn backups(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> ApiResult {
    let limit = page_limit(q.limit);
    let rows = schedules::backups(&state.store, &path, limit).await?;
    let items: Vec<FileDto> = rows.iter().map(FileDto::from).collect();
    // Newest first and at most `limit`: one page.
    Ok(HttpResponse::Ok().json(Page::new(items, i64::MAX, |f| f.id.clone())))
}

#[derive(Deserialize)]
pub struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Serialize)]
struct DiffDto {
    from: String,
    to: String,
    identical: bool,
    /// Unified diff, 3 lines of context.
    diff: String,
}

pub async fn diff(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<DiffQuery>,
) -> ApiResult {
    let q = q.into_inner();
    let from = q
        .from
        .ok_or_else(|| Error::invalid("from", "give the id of the older backup"))?;
    let to =
        q.to.ok_or_else(|| Error::invalid("to", "give the id of the newer backup"))?;
    let d = schedules::diff(&state.store, &state.services, &path, &from, &to).await?;
    Ok(HttpResponse::Ok().json(DiffDto {
        from,
        to,
        identical: d.is_empty(),
        diff: d,
    }))
}

#[derive(Deserialize)]
pub struct RestoreQuery {
    #[serde(default)]
    connection_request: bool,
}

pub async fn restore(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    q: web::Query<RestoreQuery>,
) -> ApiResult {
    let (device, file) = path.into_inner();
    let now = state.now();
    let task = schedules::restore(&state.store, &caller.actor, now, &device, &file, None).await?;
    if q.connection_request {
        if let Err(e) = state
            .services
            .connreq
            .request(&state.store, &device, now)
            .await
        {
            tracing::debug!(device = %device, error = %e, "connection request failed");
        }
    }
    Ok(HttpResponse::Created().json(TaskDto::from(&task)))
}
