//! `/api/v1/devices/{id}/lines...`, `/api/v1/lines/import`, `/api/v1/presets...` and
//! `/api/v1/devices/{id}/presets`: VoIP lines (passwords are write-only: accepted, never
//! returned, never logged), CSV import with a report per bad row, presets, and what presets
//! did on a device. Every change is audited; `connection_request=true` asks the device(s)
//! to start a session at once instead of at their next Inform.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{ConnReqDto, DevicePresetsDto, ImportReportDto, LineDto, PresetDto};
use super::{read_csv_body, Caller, ImportQuery};
use crate::domain::lines::{self, LineInput};
use crate::domain::presets::{self, PresetInput};
use crate::domain::usecases::{
    self,
    voip::{SaveMode, MAX_CSV_BYTES},
};
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct CrQuery {
    #[serde(default)]
    connection_request: bool,
}

fn page<T: serde::Serialize>(items: Vec<T>) -> serde_json::Value {
    serde_json::json!({ "items": items, "next_cursor": null })
}

pub async fn list_lines(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    lines_of(&state, &id).await
}

/// The lines of a device (or of a phone's device) as a page.
pub(super) async fn lines_of(state: &AppState, device_id: &str) -> ApiResult {
    let views = lines::list(&state.store, device_id).await?;
    let items: Vec<LineDto> = views.iter().map(LineDto::from).collect();
    Ok(HttpResponse::Ok().json(page(items)))
}

/// Assign line `n` of a device (or of a phone's device) through the use case.
pub(super) async fn assign(
    state: &web::Data<AppState>,
    caller: &Caller,
    device_id: &str,
    n: i32,
    input: LineInput,
    connection_request: bool,
) -> ApiResult {
    let (view, cr) = usecases::voip::assign_line(
        &state.ctx(),
        &caller.as_actor(),
        device_id,
        n,
        input,
        connection_request,
    )
    .await?;
    let mut dto = LineDto::from(&view);
    dto.connection_request = cr.as_ref().map(ConnReqDto::from);
    Ok(HttpResponse::Ok().json(dto))
}

/// Remove line `n` of a device (or of a phone's device) through the use case.
pub(super) async fn remove(
    state: &web::Data<AppState>,
    caller: &Caller,
    device_id: &str,
    n: i32,
) -> ApiResult {
    usecases::voip::delete_line(&state.ctx(), &caller.as_actor(), device_id, n).await?;
    Ok(HttpResponse::NoContent().finish())
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
    assign(
        &state,
        &caller,
        &id,
        n,
        body.into_inner(),
        q.connection_request,
    )
    .await
}

pub async fn delete_line(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, i32)>,
) -> ApiResult {
    let (id, n) = path.into_inner();
    remove(&state, &caller, &id, n).await
}

pub async fn import_lines(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<ImportQuery>,
    payload: web::Payload,
) -> ApiResult {
    let body = read_csv_body(payload, MAX_CSV_BYTES).await?;
    let report =
        usecases::voip::import_lines(&state.ctx(), &caller.as_actor(), &body, q.dry_run).await?;
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
    save_preset(
        state,
        caller,
        SaveMode::Create,
        None,
        body.into_inner(),
        q.connection_request,
    )
    .await
}

pub async fn put_preset(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    q: web::Query<CrQuery>,
    body: web::Json<PresetInput>,
) -> ApiResult {
    save_preset(
        state,
        caller,
        SaveMode::Put,
        Some(&name),
        body.into_inner(),
        q.connection_request,
    )
    .await
}

async fn save_preset(
    state: web::Data<AppState>,
    caller: Caller,
    mode: SaveMode,
    name: Option<&str>,
    input: PresetInput,
    connection_request: bool,
) -> ApiResult {
    let saved = usecases::voip::save_preset(
        &state.ctx(),
        &caller.as_actor(),
        mode,
        name,
        input,
        connection_request,
    )
    .await?;
    let mut dto = PresetDto::from(&saved.preset);
    dto.connection_requests = saved.connection_requests;
    let status = if saved.created {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(dto))
}

pub async fn delete_preset(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    usecases::voip::delete_preset(&state.ctx(), &caller.as_actor(), &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn device_presets(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let report = presets::device_report(&state.store, &id).await?;
    let current = presets::list(&state.store).await?;
    Ok(HttpResponse::Ok().json(DevicePresetsDto::new(report, &current)))
}
