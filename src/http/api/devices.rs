//! `/api/v1/devices...`: list and search, one device, pre-provisioning, parameters, the
//! device's tasks and sessions, connection requests.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{ConnReqDto, DeviceDto, Page, ParameterDto, SessionDto, TaskDto};
use super::{int_cursor, page_limit, Caller};
use crate::domain::taskops::{self, Origin};
use crate::domain::tasks::TaskSpec;
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::devices::{DeviceRow, ProvisionDevice};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionBody {
    oui: Option<String>,
    product_class: Option<String>,
    serial_number: Option<String>,
    /// CWMP username/password the device must log in with (both or neither).
    cwmp_username: Option<String>,
    cwmp_password: Option<String>,
    /// `true` removes the device's own credentials (it then uses the default ones).
    #[serde(default)]
    clear_credentials: bool,
    /// Replaces the device's tags when given.
    tags: Option<Vec<String>>,
}

pub async fn put(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<ProvisionBody>,
) -> ApiResult {
    let id = id.into_inner();
    let b = body.into_inner();
    let existing = {
        let i = id.clone();
        state.store.run(move |s| s.get_device(&i)).await?
    };
    let (oui, pc, sn) = match &existing {
        Some(d) => (
            d.oui.clone(),
            d.product_class.clone(),
            d.serial_number.clone(),
        ),
        None => match (&b.oui, &b.product_class, &b.serial_number) {
            (Some(o), pc, Some(s)) => (o.clone(), pc.clone().unwrap_or_default(), s.clone()),
            _ => {
                return Err(Error::invalid(
                    "body",
                    "a new device needs oui, product_class and serial_number",
                )
                .into())
            }
        },
    };
    for (given, known, field) in [
        (&b.oui, &oui, "oui"),
        (&b.product_class, &pc, "product_class"),
        (&b.serial_number, &sn, "serial_number"),
    ] {
        if given.as_ref().is_some_and(|g| g != known) {
            return Err(Error::invalid(
                field,
                format!("does not match the device ({known}); identity fields cannot change"),
            )
            .into());
        }
    }
    let expected = crate::cwmp::device_id(&oui, &pc, &sn);
    if expected != id {
        return Err(Error::invalid(
            "id",
            format!("the id of this device is {expected} (OUI-ProductClass-SerialNumber)"),
        )
        .into());
    }
    let creds =
        match (&b.cwmp_username, &b.cwmp_password, b.clear_credentials) {
            (Some(u), Some(p), false) if !u.is_empty() && !p.is_empty() => {
                Some(Some((u.clone(), p.clone())))
            }
            (None, None, true) => Some(None),
            (None, None, false) => None,
            _ => return Err(Error::invalid(
                "cwmp_username",
                "give cwmp_username and cwmp_password together (non-empty), or clear_credentials",
            )
            .into()),
        };
    if let Some(tags) = &b.tags {
        if tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(Error::invalid("tags", "tags are 1 to 64 characters").into());
        }
    }
    let old_user = existing.as_ref().and_then(|d| d.cwmp_username.clone());
    let new_user = creds.clone().flatten().map(|(u, _)| u);
    let p = ProvisionDevice {
        id: id.clone(),
        oui,
        product_class: pc,
        serial_number: sn,
        cwmp_credentials: creds,
        tags: b.tags.clone(),
    };
    let config = state.config.clone();
    let now = state.now();
    let actor = caller.actor.clone();
    let row = state
        .store
        .run(move |s| {
            let ha1 = |u: &str, pw: &str| crate::http::cwmp::auth::device_ha1(&config, u, pw);
            let row = s.provision_device(&p, Some(&ha1), now)?;
            let detail = format!(
                "credentials: {}, tags: {}",
                match &p.cwmp_credentials {
                    Some(Some((u, _))) => format!("set ({u})"),
                    Some(None) => "cleared".into(),
                    None => "unchanged".into(),
                },
                p.tags
                    .as_ref()
                    .map(|t| t.join(","))
                    .unwrap_or_else(|| "unchanged".into())
            );
            s.audit(
                now,
                &actor,
                "device.provision",
                &format!("device/{}", p.id),
                Some(&detail),
            )?;
            Ok(row)
        })
        .await?;
    for u in [old_user, new_user].into_iter().flatten() {
        state.cwmp.auth.invalidate(&u);
    }
    let mut v = dtos(&state, vec![row]).await?;
    let status = if existing.is_some() {
        actix_web::http::StatusCode::OK
    } else {
        actix_web::http::StatusCode::CREATED
    };
    Ok(HttpResponse::build(status).json(v.pop()))
}

pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult {
    let id = id.into_inner();
    let now = state.now();
    let (i, actor) = (id.clone(), caller.actor.clone());
    let (found, user) = state
        .store
        .run(move |s| {
            let user = s.get_device(&i)?.and_then(|d| d.cwmp_username);
            let found = s.delete_device(&i)?;
            if found {
                s.audit(now, &actor, "device.delete", &format!("device/{i}"), None)?;
            }
            Ok((found, user))
        })
        .await?;
    if !found {
        return Err(Error::not_found(format!("device {id}")).into());
    }
    if let Some(u) = user {
        state.cwmp.auth.invalidate(&u);
    }
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
            xsd_type: e.xsd_type.clone(),
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
    let status = q.status.clone();
    let rows = state
        .store
        .run(move |s| s.find_tasks(Some(&id), status.as_deref(), cursor, limit))
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

/// Default lifetime of a task that has not run: a week.
const DEFAULT_EXPIRY_SECS: u64 = 7 * 86_400;

pub async fn create_task(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    q: web::Query<CreateQuery>,
    body: web::Json<TaskSpec>,
) -> ApiResult {
    let id = id.into_inner();
    let spec = body.into_inner();
    let now = state.now();
    let expires_in = q
        .expires_in
        .unwrap_or(DEFAULT_EXPIRY_SECS)
        .min(365 * 86_400);
    let origin = Origin {
        actor: &caller.actor,
        now,
        expires_at: Some(now + expires_in as i64 * 1000),
    };
    let row = taskops::create(&state.store, &id, &spec, &origin).await?;
    let cr = if q.connection_request {
        Some(
            state
                .services
                .connreq
                .request(&state.store, &id, state.now())
                .await?,
        )
    } else {
        None
    };
    let row = match q.wait {
        Some(w) if w > 0 => {
            taskops::wait(
                &state.store,
                &state.services.task_watch,
                row.id,
                Duration::from_secs(w.min(300)),
            )
            .await?
        }
        _ => row,
    };
    let mut dto = TaskDto::from(&row);
    dto.connection_request = cr.as_ref().map(ConnReqDto::from);
    let status = if taskops::is_final(&row.status) {
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

pub async fn connection_request(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let r = state
        .services
        .connreq
        .request(&state.store, &id, state.now())
        .await?;
    Ok(HttpResponse::Ok().json(ConnReqDto::from(&r)))
}

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
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
