//! `/api/v1/devices/{id}/lines...`, `/api/v1/lines/import`, `/api/v1/presets...` and
//! `/api/v1/devices/{id}/presets`: VoIP lines (passwords are write-only: accepted, never
//! returned, never logged), CSV import with a report per bad row, presets, and what presets
//! did on a device. Every change is audited; `connection_request=true` asks the device(s)
//! to start a session at once instead of at their next Inform.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::dto::{ConnReqDto, DevicePresetsDto, ImportReportDto, LineDto, PresetDto};
use super::Caller;
use crate::domain::lines::{self, LineInput};
use crate::domain::presets::{self, PresetInput};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

/// Largest CSV file `POST /lines/import` takes.
const MAX_CSV_BYTES: usize = 16 * 1024 * 1024;
/// Most devices one preset save sends connection requests to.
const MAX_PRESET_CR: i64 = 100_000;

#[derive(Deserialize)]
pub struct CrQuery {
    #[serde(default)]
    connection_request: bool,
}

fn page<T: serde::Serialize>(items: Vec<T>) -> serde_json::Value {
    serde_json::json!({ "items": items, "next_cursor": null })
}

pub async fn list_lines(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let views = lines::list(&state.store, &id).await?;
    let items: Vec<LineDto> = views.iter().map(LineDto::from).collect();
    Ok(HttpResponse::Ok().json(page(items)))
}

pub async fn get_line(state: web::Data<AppState>, path: web::Path<(String, i32)>) -> ApiResult {
    let (id, n) = path.into_inner();
    let view = lines::get(&state.store, &id, n).await?;
    Ok(HttpResponse::Ok().json(LineDto::from(&view)))
}

pub async fn put_line(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i32)>,
    q: web::Query<CrQuery>,
    body: web::Json<LineInput>,
) -> ApiResult {
    let (id, n) = path.into_inner();
    let input = body.into_inner();
    let password = if input.password.is_some() {
        "set"
    } else {
        "unchanged"
    };
    let account = serde_json::to_string(&input.account).map_err(Error::from)?;
    let now = state.now();
    let view = lines::assign(&state.store, &id, n, input, now).await?;
    let detail = format!("{account}, password {password}");
    audit(
        &state,
        &caller,
        "line.assign",
        format!("device/{id}/line/{n}"),
        detail,
    )
    .await?;
    let mut dto = LineDto::from(&view);
    if q.connection_request {
        let r = state
            .services
            .connreq
            .request(&state.store, &id, state.now())
            .await?;
        dto.connection_request = Some(ConnReqDto::from(&r));
    }
    Ok(HttpResponse::Ok().json(dto))
}

pub async fn delete_line(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i32)>,
) -> ApiResult {
    let (id, n) = path.into_inner();
    lines::delete(&state.store, &id, n).await?;
    let target = format!("device/{id}/line/{n}");
    audit(&state, &caller, "line.delete", target, String::new()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    dry_run: bool,
}

pub async fn import_lines(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ImportQuery>,
    mut payload: web::Payload,
) -> ApiResult {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| Error::invalid("body", format!("the upload was interrupted: {e}")))?;
        if body.len() + chunk.len() > MAX_CSV_BYTES {
            return Err(Error::invalid(
                "csv",
                format!(
                    "the file is larger than {} MiB; split it",
                    MAX_CSV_BYTES >> 20
                ),
            )
            .into());
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body)
        .map_err(|e| Error::invalid("csv", format!("the file is not UTF-8 text: {e}")))?;
    let report = lines::import_csv(&state.store, &text, q.dry_run, state.now()).await?;
    if !q.dry_run {
        let detail = format!(
            "{} lines imported, {} rows rejected",
            report.imported, report.rejected
        );
        audit(&state, &caller, "line.import", "lines".into(), detail).await?;
    }
    Ok(HttpResponse::Ok().json(ImportReportDto::new(&report, q.dry_run)))
}

pub async fn list_presets(state: web::Data<AppState>) -> ApiResult {
    let views = presets::list(&state.store).await?;
    let items: Vec<PresetDto> = views.iter().map(PresetDto::from).collect();
    Ok(HttpResponse::Ok().json(page(items)))
}

pub async fn get_preset(state: web::Data<AppState>, name: web::Path<String>) -> ApiResult {
    let view = presets::get(&state.store, &name).await?;
    Ok(HttpResponse::Ok().json(PresetDto::from(&view)))
}

pub async fn create_preset(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<CrQuery>,
    body: web::Json<PresetInput>,
) -> ApiResult {
    let input = body.into_inner();
    let name = input.name.trim().to_string();
    let n = name.clone();
    if state.store.run(move |s| s.get_preset(&n)).await?.is_some() {
        return Err(Error::Conflict(format!(
            "preset {name} exists; PUT /api/v1/presets/{name} replaces it"
        ))
        .into());
    }
    save_preset(state, caller, input, q.connection_request).await
}

pub async fn put_preset(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    q: web::Query<CrQuery>,
    body: web::Json<PresetInput>,
) -> ApiResult {
    let name = name.into_inner();
    let mut input = body.into_inner();
    if input.name.trim().is_empty() {
        input.name = name.clone();
    } else if input.name.trim() != name {
        return Err(Error::invalid(
            "name",
            format!(
                "{:?} differs from the name in the path ({name:?}); presets cannot be renamed",
                input.name
            ),
        )
        .into());
    }
    save_preset(state, caller, input, q.connection_request).await
}

async fn save_preset(
    state: web::Data<AppState>,
    caller: Caller,
    input: PresetInput,
    connection_request: bool,
) -> ApiResult {
    let filter = input.filter.clone();
    let (view, created) = presets::put(&state.store, input, state.now()).await?;
    let action = if created {
        "preset.create"
    } else {
        "preset.update"
    };
    let detail = format!(
        "revision {}, priority {}, filter {:?}",
        view.revision, view.priority, view.filter
    );
    audit(
        &state,
        &caller,
        action,
        format!("preset/{}", view.name),
        detail,
    )
    .await?;
    let mut dto = PresetDto::from(&view);
    if connection_request {
        dto.connection_requests = Some(request_matching(&state, &filter).await?);
    }
    let status = if created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(dto))
}

/// Send connection requests (in the background) to the devices the search selects for a
/// preset filter; returns how many.
async fn request_matching(state: &web::Data<AppState>, filter: &str) -> Result<usize, ApiError> {
    let f = presets::parse_filter(filter)?;
    let ids = state
        .store
        .run(move |s| s.search_device_ids(&f, None, MAX_PRESET_CR))
        .await?;
    let count = ids.len();
    let st: Arc<AppState> = state.clone().into_inner();
    let concurrency = st.config.api.connection_request_concurrency.max(1);
    actix_web::rt::spawn(async move {
        futures_util::stream::iter(ids)
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
    Ok(count)
}

pub async fn delete_preset(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    let name = name.into_inner();
    presets::delete(&state.store, &name).await?;
    audit(
        &state,
        &caller,
        "preset.delete",
        format!("preset/{name}"),
        String::new(),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn device_presets(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let report = presets::device_report(&state.store, &id).await?;
    let current = presets::list(&state.store).await?;
    Ok(HttpResponse::Ok().json(DevicePresetsDto::new(report, &current)))
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
    target: String,
    detail: String,
) -> Result<(), ApiError> {
    let (now, actor) = (state.now(), caller.actor.clone());
    state
        .store
        .run(move |s| {
            let d = (!detail.is_empty()).then_some(detail.as_str());
            s.audit(now, &actor, action, &target, d)
        })
        .await?;
    Ok(())
}
