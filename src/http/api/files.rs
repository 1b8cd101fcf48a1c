//! `/api/v1/files...`: store files (the raw request body, streamed to disk and hashed),
//! list, inspect, fetch and delete them.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;

use super::dto::{FileDto, Page};
use super::{page_limit, Caller};
use crate::domain::files::{self, NewFileMeta};
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
    mut payload: web::Payload,
) -> ApiResult {
    let name = q.name.clone().unwrap_or_default();
    if name.is_empty() || name.len() > 256 || name.contains(['/', '\\']) {
        return Err(Error::invalid(
            "name",
            "give a file name (no slashes, at most 256 characters)",
        )
        .into());
    }
    let file_type = q
        .file_type
        .clone()
        .unwrap_or_else(|| "1 Firmware Upgrade Image".to_string());
    if file_type.len() > 64 {
        return Err(Error::invalid(
            "file_type",
            "at most 64 characters, e.g. \"1 Firmware Upgrade Image\"",
        )
        .into());
    }
    let version = q.version.clone().unwrap_or_default();
    let mut w = state.services.files.writer().await?;
    while let Some(chunk) = payload.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                w.abort().await;
                return Err(
                    Error::invalid("body", format!("the upload was interrupted: {e}")).into(),
                );
            }
        };
        if let Err(e) = w.write(&chunk).await {
            w.abort().await;
            return Err(e.into());
        }
    }
    let (id, size, sha) = w.finish(&state.services.files).await?;
    let now = state.now();
    let meta = NewFileMeta {
        name: name.clone(),
        file_type: file_type.clone(),
        version: version.clone(),
        device_id: None,
    };
    let row = files::register(&state.store, meta, id.clone(), size, sha.clone(), now).await?;
    let actor = caller.actor.clone();
    let detail = format!("{name} ({file_type}, {size} bytes, sha256 {sha})");
    state
        .store
        .run(move |s| {
            s.audit(
                now,
                &actor,
                "file.upload",
                &format!("file/{id}"),
                Some(&detail),
            )
        })
        .await?;
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
    let row = file_row(&state, &id).await?;
    let (i, actor, now) = (row.id.clone(), caller.actor.clone(), state.now());
    let detail = format!("{} ({} bytes)", row.name, row.size);
    state
        .store
        .run(move |s| {
            s.delete_file(&i)?;
            s.audit(
                now,
                &actor,
                "file.delete",
                &format!("file/{i}"),
                Some(&detail),
            )
        })
        .await?;
    state.services.files.remove(&row.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
