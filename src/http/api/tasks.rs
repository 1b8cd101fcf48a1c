//! `/api/v1/tasks...` and `/api/v1/faults`: task lists, bulk creation, one task (optionally
//! waiting for it), cancellation, and the faults devices returned.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::dto::{FaultDto, Page, TaskDto};
use super::{int_cursor, page_limit, Caller};
use crate::domain::taskops::{self, Origin};
use crate::domain::tasks::TaskSpec;
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Most devices one bulk request may address.
const MAX_BULK: usize = 100_000;

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
    let (dev, status) = (q.device_id.clone(), q.status.clone());
    let rows = state
        .store
        .run(move |s| s.find_tasks(dev.as_deref(), status.as_deref(), cursor, limit))
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
    let b = body.into_inner();
    if b.q.trim().is_empty() {
        return Err(Error::invalid(
            "q",
            "give a device query; to address every device say so explicitly: id LIKE \"*\"",
        )
        .into());
    }
    let filter = crate::domain::devices::parse_query(&b.q)?;
    let now = state.now();
    let expires_in = q.expires_in.unwrap_or(7 * 86_400).min(365 * 86_400);
    let origin = Origin {
        actor: &caller.actor,
        now,
        expires_at: Some(now + expires_in as i64 * 1000),
    };
    let rows = taskops::create_bulk(&state.store, &filter, &b.task, &origin, MAX_BULK).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    if q.connection_request {
        let devices: Vec<String> = rows.iter().map(|r| r.device_id.clone()).collect();
        let st: Arc<AppState> = state.clone().into_inner();
        let concurrency = st.config.api.connection_request_concurrency.max(1);
        actix_web::rt::spawn(async move {
            futures_util::stream::iter(devices)
                .for_each_concurrent(concurrency, |d| {
                    let st = st.clone();
                    async move {
                        if let Err(e) = st.services.connreq.request(&st.store, &d, st.now()).await {
                            tracing::warn!(device = %d, error = %e, "connection request failed");
                        }
                    }
                })
                .await;
        });
    }
    Ok(HttpResponse::Accepted().json(serde_json::json!({
        "count": ids.len(),
        "task_ids": ids,
        "truncated": ids.len() >= MAX_BULK,
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
    let id = id.into_inner();
    let row = match q.wait {
        Some(w) if w > 0 => {
            taskops::wait(
                &state.store,
                &state.services.task_watch,
                id,
                Duration::from_secs(w.min(300)),
            )
            .await?
        }
        _ => state
            .store
            .run(move |s| s.get_task(id))
            .await?
            .ok_or_else(|| Error::not_found(format!("task {id}")))?,
    };
    Ok(HttpResponse::Ok().json(TaskDto::from(&row)))
}

pub async fn cancel(state: web::Data<AppState>, caller: Caller, id: web::Path<i64>) -> ApiResult {
    let row = taskops::cancel(
        &state.store,
        &state.services.task_watch,
        id.into_inner(),
        &caller.actor,
        state.now(),
    )
    .await?;
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
