//! `/api/v1/devices...`: list and search, one device, pre-provisioning, parameters, the
//! device's tasks and sessions, connection requests.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{ConnReqDto, CredentialsDto, DeviceDto, Page, ParameterDto, SessionDto, TaskDto};
use super::{int_cursor, page_limit, Caller};
use crate::domain::taskops;
use crate::domain::tasks::TaskSpec;
use crate::domain::usecases::{self, devices::ProvisionInput, tasks::TaskOptions};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::devices::DeviceRow;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn dtos(state: &AppState, rows: Vec<DeviceRow>) -> Result<Vec<DeviceDto>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|d| d.id.clone()).collect();
    let (tags, crs) = state
        .store
        .run(move |s| Ok((s.tags_of(&ids)?, s.connreqs_of(&ids)?)))
        .await?;
    let mut by_dev: HashMap<String, Vec<String>> = HashMap::new();
    for (d, t) in tags {
        by_dev.entry(d).or_default().push(t);
    }
    let now = state.now();
    Ok(rows
        .iter()
        .map(|d| {
            DeviceDto::new(
                d,
                by_dev.remove(&d.id).unwrap_or_default(),
                crs.get(&d.id),
                now,
            )
        })
        .collect())
}

async fn device_row(state: &AppState, id: &str) -> Result<DeviceRow, ApiError> {
    let i = id.to_string();
    state
        .store
        .run(move |s| s.get_device(&i))
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("device {id}"))))
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let filter = crate::domain::devices::parse_query(q.q.as_deref().unwrap_or(""))?;
    let limit = page_limit(q.limit);
    let cursor = q.cursor.clone().filter(|c| !c.is_empty());
    let rows = state
        .store
        .run(move |s| s.search_devices(&filter, cursor.as_deref(), limit))
        .await?;
    let items = dtos(&state, rows).await?;
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |d| d.id.clone())))
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let row = device_row(&state, &id).await?;
    let mut v = dtos(&state, vec![row]).await?;
    Ok(HttpResponse::Ok().json(v.pop()))
}

pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<ProvisionInput>,
) -> ApiResult {
    let (row, created) =
        usecases::devices::provision(&state.ctx(), &caller.as_actor(), &id, &body).await?;
    let mut v = dtos(&state, vec![row]).await?;
    let status = if created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(v.pop()))
}

pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult {
    usecases::devices::delete(&state.ctx(), &caller.as_actor(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct ParamQuery {
    prefix: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn parameters(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<ParamQuery>,
) -> ApiResult {
    let device = device_row(&state, &id).await?;
    let tree = taskops::current_tree(&state.store, &device).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let prefix = q.prefix.clone().unwrap_or_default();
    let cursor = q.cursor.clone().unwrap_or_default();
    let mut items: Vec<ParameterDto> = tree
        .iter()
        .filter(|(n, _)| {
            n.starts_with(&prefix) && (cursor.is_empty() || n.as_str() > cursor.as_str())
        })
        .map(|(n, e)| ParameterDto {
            name: n.clone(),
            value: if crate::domain::params::is_secret(n) {
                e.value.as_ref().map(|_| String::new())
            } else {
                e.value.clone()
            },
            xsd_type: e.xsd_type.to_string(),
            writable: e.writable,
            object: e.object,
            notification: e.notification,
            access_list: e.access_list.clone(),
            updated_at: e.updated_at,
        })
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items.truncate(limit as usize);
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |p| p.name.clone())))
}

#[derive(Deserialize)]
pub struct TasksQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn tasks(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<TasksQuery>,
) -> ApiResult {
    let id = id.into_inner();
    device_row(&state, &id).await?;
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let status = taskops::status_filter(q.status.as_deref())?;
    let rows = state
        .store
        .run(move |s| s.find_tasks(Some(&id), status, cursor, limit))
        .await?;
    let items: Vec<TaskDto> = rows.iter().map(TaskDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |t| t.id.to_string())))
}

#[derive(Deserialize)]
pub struct CreateQuery {
    #[serde(default)]
    connection_request: bool,
    /// Seconds to wait for the task to finish (at most 300).
    wait: Option<u64>,
    /// Seconds after which a task not yet run is given up.
    expires_in: Option<u64>,
}

pub async fn create_task(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    q: web::Query<CreateQuery>,
    body: web::Json<TaskSpec>,
) -> ApiResult {
    let opts = TaskOptions {
        connection_request: q.connection_request,
        wait: q.wait.map(Duration::from_secs),
        expires_in: q.expires_in,
    };
    let queued =
        usecases::tasks::create(&state.ctx(), &caller.as_actor(), &id, &body, &opts).await?;
    let row = queued.task;
    let mut dto = TaskDto::from(&row);
    dto.connection_request = queued.connection_request.as_ref().map(ConnReqDto::from);
    let status = if row.status.is_final() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::ACCEPTED
    };
    Ok(HttpResponse::build(status)
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("{}/tasks/{}", super::PREFIX, row.id),
        ))
        .json(dto))
}

pub async fn connection_request(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult {
    let r = usecases::devices::connection_request(&state.ctx(), &caller.as_actor(), &id).await?;
    Ok(HttpResponse::Ok().json(ConnReqDto::from(&r)))
}

async fn tag(
    state: &web::Data<AppState>,
    caller: &Caller,
    id: &str,
    tag: &str,
    add: bool,
) -> ApiResult {
    let ids = [id.to_string()];
    let out = usecases::devices::set_tag(&state.ctx(), &caller.as_actor(), &ids, tag, add).await?;
    match out.first().map(|(_, o)| *o) {
        Some(usecases::devices::TagOutcome::NoDevice) | None => {
            Err(ApiError(Error::not_found(format!("device {id}"))))
        }
        Some(_) => Ok(HttpResponse::NoContent().finish()),
    }
}

pub async fn add_tag(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (id, t) = path.into_inner();
    tag(&state, &caller, &id, &t, true).await
}

pub async fn remove_tag(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> ApiResult {
    let (id, t) = path.into_inner();
    tag(&state, &caller, &id, &t, false).await
}

/// The state of the device's CWMP credentials (own, issued, given up, shared).
pub async fn credentials(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    match crate::domain::credentials::status(&state.store, &id).await? {
        Some(s) => Ok(HttpResponse::Ok().json(CredentialsDto::from(s))),
        None => Err(Error::not_found(format!("device {id}")).into()),
    }
}

/// Forget the device's CWMP credentials (a factory-reset device is admitted again).
pub async fn reset_credentials(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult {
    usecases::devices::reset_credentials(&state.ctx(), &caller.as_actor(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn reachability(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let now = (state.clock)();
    let r = state
        .services
        .connreq
        .reachability(&state.store, &id, now)
        .await?;
    let mut dto = super::dto::ReachabilityDto::from(&r);
    if r.routes.is_empty() {
        // Not reachable itself: say which gateway it is behind, for the operator to reach
        // (or check) that one.
        let a = crate::domain::tr111::association(&state.store, &id).await?;
        dto.behind_gateway = a.gateway.as_ref().map(super::dto::GatewayLinkDto::from);
    }
    Ok(HttpResponse::Ok().json(dto))
}

/// The device's place in the device–gateway association (TR-111 Part 1): the gateway it is
/// behind and the devices behind it.
pub async fn gateway(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    device_row(&state, &id).await?;
    let a = crate::domain::tr111::association(&state.store, &id).await?;
    Ok(HttpResponse::Ok().json(super::dto::GatewayAssociationDto::from(&a)))
}

pub async fn sessions(
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> ApiResult {
    let id = id.into_inner();
    device_row(&state, &id).await?;
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = state
        .store
        .run(move |s| s.list_session_logs(&id, cursor, limit))
        .await?;
    let items: Vec<SessionDto> = rows.iter().map(SessionDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |s| s.id.to_string())))
}
