//! `/api/v1/files...`: store files (the raw request body, streamed to disk and hashed),
//! list, inspect, fetch and delete them.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::{FileDto, Page};
use super::{page_limit, Caller};
use crate::domain::usecases::{self, files::FileUpload};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::store::files::FileRow;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    file_type: Option<String>,
    version: Option<String>,
}

pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<UploadQuery>,
    payload: web::Payload,
) -> ApiResult {
    let q = q.into_inner();
    let upload = FileUpload {
        name: q.name.unwrap_or_default(),
        file_type: q.file_type,
        version: q.version,
    };
    let row = usecases::files::upload(&state.ctx(), &caller.as_actor(), &upload, payload).await?;
    Ok(HttpResponse::Created().json(FileDto::from(&row)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    device_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(state: web::Data<AppState>, q: web::Query<ListQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let (dev, cur) = (
        q.device_id.clone(),
        q.cursor.clone().filter(|c| !c.is_empty()),
    );
    let rows = state
        .store
        .run(move |s| s.find_files(dev.as_deref(), cur.as_deref(), limit))
        .await?;
    let items: Vec<FileDto> = rows.iter().map(FileDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |f| f.id.clone())))
}

async fn file_row(state: &AppState, id: &str) -> Result<FileRow, ApiError> {
    let i = id.to_string();
    state
        .store
        .run(move |s| s.get_file(&i))
        .await?
        .ok_or_else(|| ApiError(Error::not_found(format!("file {id}"))))
}

pub async fn get(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let row = file_row(&state, &id).await?;
    Ok(HttpResponse::Ok().json(FileDto::from(&row)))
}

pub async fn content(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let row = file_row(&state, &id).await?;
    Ok(crate::http::fileserver::serve_file(&req, &state, &row).await)
}

pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult {
    usecases::files::delete(&state.ctx(), &caller.as_actor(), &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
