//! Firmware per phone model: every model a phone has (or that has firmware) with the
//! firmware file and version its phones are given; operators set or clear it, viewers
//! read. The forms call the use cases of `PUT`/`DELETE /api/v1/phone_models/{vendor}/{model}/firmware`
//! (same role check, same audit entry).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::session::{Ctx, Operator, Viewer};
use super::view::utc;
use super::{render, ConsoleError, Layout};
use crate::domain::phones::{self, ModelFirmwareInput};
use crate::domain::usecases;
use crate::error::Error;
use crate::phones::Vendor;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/phone_models", web::get().to(page))
        .route("/phone_models/firmware", web::post().to(save))
        .route("/phone_models/firmware/delete", web::post().to(delete));
}

pub struct ModelItem {
    pub vendor: String,
    pub model: String,
    pub phones: i64,
    /// The file's name (or its id when the file was deleted), empty without firmware.
    pub file: String,
    pub file_missing: bool,
    pub version: String,
    pub updated: String,
}

/// A file of the file store the form offers.
pub struct FileChoice {
    pub id: String,
    pub label: String,
}

#[derive(askama::Template)]
#[template(path = "console/phone_models.html")]
struct ModelsPage {
    ctx: Layout,
    models: Vec<ModelItem>,
    files: Vec<FileChoice>,
    vendors: Vec<&'static str>,
    form: FirmwareForm,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
pub struct FirmwareForm {
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub file_id: String,
    #[serde(default)]
    pub version: String,
}

async fn models_page(
    ctx: Layout,
    state: &AppState,
    form: FirmwareForm,
    notice: Option<String>,
    error: Option<String>,
) -> Result<ModelsPage, ConsoleError> {
    let models = phones::model_overview(&state.store)
        .await?
        .into_iter()
        .map(|m| {
            let (file, file_missing, version, updated) = match &m.firmware {
                Some(f) => (
                    f.file_name.clone().unwrap_or_else(|| f.file_id.clone()),
                    f.file_name.is_none(),
                    f.version.clone(),
                    utc(f.updated_at),
                ),
                None => (String::new(), false, String::new(), String::new()),
            };
            ModelItem {
                vendor: m.vendor,
                model: m.model,
                phones: m.phones,
                file,
                file_missing,
                version,
                updated,
            }
        })
        .collect();
    let files = if ctx.can_operate() {
        state
            .store
            .run(|s| s.list_files(None, 200))
            .await?
            .into_iter()
            .map(|f| FileChoice {
                label: if f.version.is_empty() {
                    f.name.clone()
                } else {
                    format!("{} ({})", f.name, f.version)
                },
                id: f.id,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ModelsPage {
        ctx,
        models,
        files,
        vendors: Vendor::ALL.iter().map(|v| v.as_str()).collect(),
        form,
        notice,
        error,
    })
}

async fn page(ctx: Ctx<Viewer>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    let p = models_page(
        ctx.layout("phones"),
        &state,
        FirmwareForm {
            vendor: "polycom".into(),
            ..FirmwareForm::default()
        },
        None,
        None,
    )
    .await?;
    render(StatusCode::OK, &p)
}

async fn save(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: FirmwareForm = ctx.form()?;
    let input = ModelFirmwareInput {
        file_id: f.file_id.trim().to_string(),
        version: Some(f.version.trim().to_string()).filter(|v| !v.is_empty()),
    };
    let r = usecases::phones::put_model_firmware(
        &state.ctx(),
        &ctx.as_actor(),
        &f.vendor,
        &f.model,
        input,
    )
    .await;
    let (status, p) = match r {
        Ok((v, _)) => {
            let notice = format!(
                "Firmware of {} {} set: {} version {}.",
                v.vendor,
                v.model,
                v.file_name.as_deref().unwrap_or(&v.file_id),
                v.version
            );
            let form = FirmwareForm {
                vendor: v.vendor,
                ..FirmwareForm::default()
            };
            (
                StatusCode::OK,
                models_page(ctx.layout("phones"), &state, form, Some(notice), None).await?,
            )
        }
        Err(e @ Error::Invalid { .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            models_page(ctx.layout("phones"), &state, f, None, Some(e.to_string())).await?,
        ),
        Err(e) => return Err(e.into()),
    };
    render(status, &p)
}

async fn delete(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: FirmwareForm = ctx.form()?;
    let r =
        usecases::phones::delete_model_firmware(&state.ctx(), &ctx.as_actor(), &f.vendor, &f.model)
            .await;
    let form = FirmwareForm {
        vendor: "polycom".into(),
        ..FirmwareForm::default()
    };
    let (status, p) = match r {
        Ok(()) => (
            StatusCode::OK,
            models_page(
                ctx.layout("phones"),
                &state,
                form,
                Some(format!(
                    "Firmware of {} {} cleared: its phones get their profile's or defaults.",
                    f.vendor, f.model
                )),
                None,
            )
            .await?,
        ),
        Err(e @ (Error::Invalid { .. } | Error::NotFound { .. })) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            models_page(
                ctx.layout("phones"),
                &state,
                form,
                None,
                Some(e.to_string()),
            )
            .await?,
        ),
        Err(e) => return Err(e.into()),
    };
    render(status, &p)
}
