//! Files and VoIP lines: upload a file with a progress bar (the browser sends the raw file,
//! streamed to the file store and hashed as the API does), list and delete files; import
//! SIP accounts from CSV with a dry run that reports every bad row by line and field.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::session::{Ctx, Operator, Viewer};
use super::view::ago;
use super::{render, ConsoleError, Layout};
use crate::domain::lines;
use crate::domain::usecases;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/files", web::get().to(page))
        .route("/files/rows", web::get().to(rows))
        .route("/files/upload", web::post().to(upload))
        .route("/files/{id}/delete", web::post().to(delete))
        .route("/lines", web::get().to(lines_page))
        .route("/lines/import", web::post().to(import));
}

pub struct FileView {
    pub id: String,
    pub name: String,
    pub file_type: String,
    pub version: String,
    pub size: i64,
    pub sha256: String,
    pub created: String,
    pub device: String,
}

#[derive(askama::Template)]
#[template(path = "console/file_rows.html")]
struct FileRows {
    ctx: Layout,
    files: Vec<FileView>,
}

#[derive(askama::Template)]
#[template(path = "console/files.html")]
struct FilesPage {
    ctx: Layout,
    rows: FileRows,
}

async fn file_rows(ctx: Layout, state: &AppState) -> Result<FileRows, ConsoleError> {
    let now = state.now();
    let files = state
        .store
        .run(|s| s.list_files(None, 200))
        .await?
        .into_iter()
        .map(|f| FileView {
            created: ago(now, Some(f.created_at)),
            device: f.device_id.clone().unwrap_or_default(),
            id: f.id,
            name: f.name,
            file_type: f.file_type,
            version: f.version,
            size: f.size,
            sha256: f.sha256,
        })
        .collect();
    Ok(FileRows { ctx, files })
}

async fn page(ctx: Ctx<Viewer>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    let rows = file_rows(ctx.layout("files"), &state).await?;
    render(
        StatusCode::OK,
        &FilesPage {
            ctx: ctx.layout("files"),
            rows,
        },
    )
}

async fn rows(ctx: Ctx<Viewer>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::OK,
        &file_rows(ctx.layout("files"), &state).await?,
    )
}

#[derive(Deserialize)]
struct UploadQuery {
    name: Option<String>,
    file_type: Option<String>,
    version: Option<String>,
}

/// The raw file in the body (sent by `console.js` with upload progress), streamed to disk.
async fn upload(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    q: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ConsoleError> {
    let upload = usecases::files::FileUpload {
        name: q.name.clone().unwrap_or_default(),
        file_type: q.file_type.clone().filter(|t| !t.is_empty()),
        version: q.version.clone(),
    };
    let row = usecases::files::upload(&state.ctx(), &ctx.as_actor(), &upload, payload).await?;
    let (name, size, sha) = (row.name, row.size, row.sha256);
    Ok(HttpResponse::Created()
        .content_type("text/plain; charset=utf-8")
        .body(format!("stored {name}: {size} bytes, sha256 {sha}")))
}

async fn delete(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    usecases::files::delete(&state.ctx(), &ctx.as_actor(), &id).await?;
    render(
        StatusCode::OK,
        &file_rows(ctx.layout("files"), &state).await?,
    )
}

#[derive(askama::Template)]
#[template(path = "console/lines.html")]
struct LinesPage {
    ctx: Layout,
    columns: String,
    count: i64,
}

async fn lines_page(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let count = state.store.run(|s| s.count_lines()).await?;
    render(
        StatusCode::OK,
        &LinesPage {
            ctx: ctx.layout("lines"),
            columns: lines::csv_columns().join(","),
            count,
        },
    )
}

#[derive(askama::Template)]
#[template(path = "console/import_report.html")]
struct ImportReportView {
    dry_run: bool,
    imported: usize,
    rejected: usize,
    errors: Vec<(usize, String, String, String, String)>,
}

#[derive(Deserialize)]
struct ImportForm {
    csv: String,
    #[serde(default)]
    dry_run: Option<String>,
}

async fn import(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: ImportForm = ctx.form()?;
    let dry_run = f.dry_run.is_some();
    let report =
        usecases::voip::import_lines(&state.ctx(), &ctx.as_actor(), f.csv.as_bytes(), dry_run)
            .await?;
    render(
        StatusCode::OK,
        &ImportReportView {
            dry_run,
            imported: report.imported,
            rejected: report.rejected,
            errors: report
                .errors
                .iter()
                .map(|e| {
                    (
                        e.row,
                        e.device_id.clone().unwrap_or_default(),
                        e.line.map(|l| l.to_string()).unwrap_or_default(),
                        e.field.clone(),
                        e.message.clone(),
                    )
                })
                .collect(),
        },
    )
}
