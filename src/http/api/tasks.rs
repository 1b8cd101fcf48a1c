//! `/api/v1/tasks...` and `/api/v1/faults`: task lists, bulk creation, one task (optionally
//! waiting for it), cancellation, and the faults devices returned.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{ConnReqDto, FaultDto, Page, TaskDto};
use super::{int_cursor, page_limit, Caller};
use crate::domain::taskops;
use crate::domain::tasks::TaskSpec;
use crate::domain::usecases::{self, tasks::TaskOptions};
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct ListQuery {
    device_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let status = taskops::status_filter(q.status.as_deref())?;
    let dev = q.device_id.clone();
    let rows = state
        .store
        .run(move |s| s.find_tasks(dev.as_deref(), status, cursor, limit))
        .await?;
    let items: Vec<TaskDto> = rows.iter().map(TaskDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |t| t.id.to_string())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    /// Device query (as `q` of GET /devices); `id LIKE "*"` addresses every device.
    q: String,
    task: TaskSpec,
}

#[derive(Deserialize)]
pub struct BulkQuery {
    #[serde(default)]
    connection_request: bool,
    expires_in: Option<u64>,
}

pub async fn create_bulk(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<BulkQuery>,
    body: web::Json<BulkBody>,
) -> ApiResult {
    let opts = TaskOptions {
        connection_request: q.connection_request,
        wait: None,
        expires_in: q.expires_in,
    };
    let r =
        usecases::tasks::create_bulk(&state.ctx(), &caller.as_actor(), &body.q, &body.task, &opts)
            .await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "count": r.task_ids.len(),
        "task_ids": r.task_ids,
        "truncated": r.truncated,
    })))
}

#[derive(Deserialize)]
pub struct GetQuery {
    wait: Option<u64>,
}

pub async fn get(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    q: web::Query<GetQuery>,
) -> ApiResult {
    let v = usecases::tasks::get(
        &state.ctx(),
        id.into_inner(),
        q.wait.map(Duration::from_secs),
    )
    .await?;
    let mut dto = TaskDto::from(&v.task);
    dto.connection_request = v.connection_request.as_ref().map(ConnReqDto::from);
    Ok(HttpResponse::Ok().json(dto))
}

pub async fn cancel(state: web::Data<AppState>, caller: Caller, id: web::Path<i64>) -> ApiResult {
    let row = usecases::tasks::cancel(&state.ctx(), &caller.as_actor(), id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(TaskDto::from(&row)))
}

#[derive(Deserialize)]
pub struct FaultQuery {
    device_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn faults(state: web::Data<AppState>, q: web::Query<FaultQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let dev = q.device_id.clone();
    let rows = state
        .store
        .run(move |s| s.list_faults(dev.as_deref(), cursor, limit))
        .await?;
    let items: Vec<FaultDto> = rows.iter().map(FaultDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |f| f.id.to_string())))
}

#[derive(Deserialize)]
pub struct ClearFaultsQuery {
    device_id: Option<String>,
    code: Option<i32>,
    since: Option<i64>,
    until: Option<i64>,
}

pub async fn clear_faults(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ClearFaultsQuery>,
) -> ApiResult {
    let filter = usecases::faults::FaultFilter {
        device_id: q.device_id.clone().filter(|d| !d.is_empty()),
        code: q.code,
        since: q.since,
        until: q.until,
    };
    let n = usecases::faults::clear(&state.ctx(), &caller.as_actor(), &filter).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "cleared": n })))
}
