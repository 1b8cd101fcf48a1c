//! Presets: the list, a form to create or edit one (its filter in the device query language,
//! priority, events and the desired state as JSON) with a live "matches N devices" preview
//! while the filter is typed, and delete. Saving and deleting go through the use cases the
//! API calls.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::session::{urlencode, Ctx, Operator, Viewer};
use super::view::ago;
use super::{render, ConsoleError, Layout};
use crate::domain::params::is_secret;
use crate::domain::presets::{self, PresetInput, PresetSpec, PresetView};
use crate::domain::usecases::{self, voip::SaveMode};
use crate::error::Error;
use crate::state::AppState;

/// The preview counts at most this many devices ("10000+").
const PREVIEW_CAP: i64 = 10_000;
/// Stands for a secret value in the edit form: saving it keeps the stored value.
const UNCHANGED: &str = "(unchanged)";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/presets", web::get().to(list))
        .route("/presets/preview", web::get().to(preview))
        .route("/presets/new", web::get().to(new_form))
        .route("/presets/save", web::post().to(save))
        .route("/presets/{name}", web::get().to(edit_form))
        .route("/presets/{name}/delete", web::post().to(delete));
}

pub struct PresetItem {
    pub name: String,
    pub href: String,
    pub filter: String,
    pub priority: i32,
    pub events: String,
    pub summary: String,
    pub revision: i64,
    pub updated: String,
}

#[derive(askama::Template)]
#[template(path = "console/presets.html")]
struct PresetsPage {
    ctx: Layout,
    presets: Vec<PresetItem>,
    notice: Option<String>,
}

fn summary(spec: &PresetSpec) -> String {
    let mut parts = Vec::new();
    if !spec.values.is_empty() {
        parts.push(format!("{} value(s)", spec.values.len()));
    }
    if !spec.lines.is_empty() {
        parts.push(format!("{} line(s)", spec.lines.len()));
    }
    if let Some(p) = &spec.periodic_inform {
        parts.push(match p.interval {
            Some(i) => format!("periodic inform every {i} s"),
            None => "periodic inform".into(),
        });
    }
    if let Some(f) = &spec.firmware {
        parts.push(format!("firmware {}", f.version));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

fn preset_href(name: &str) -> String {
    format!("/presets/{}", urlencode(name))
}

async fn list_page(
    ctx: Layout,
    state: &AppState,
    notice: Option<String>,
) -> Result<PresetsPage, ConsoleError> {
    let now = state.now();
    let rows = state.store.run(|s| s.list_presets()).await?;
    Ok(PresetsPage {
        ctx,
        presets: rows
            .iter()
            .map(PresetView::from_row)
            .map(|p| PresetItem {
                href: preset_href(&p.name),
                summary: summary(&p.spec),
                filter: p.filter.clone(),
                priority: p.priority,
                events: p.events.join(", "),
                revision: p.revision,
                updated: ago(now, Some(p.updated_at)),
                name: p.name,
            })
            .collect(),
        notice,
    })
}

async fn list(ctx: Ctx<Viewer>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::OK,
        &list_page(ctx.layout("presets"), &state, None).await?,
    )
}

#[derive(askama::Template)]
#[template(path = "console/preset_edit.html")]
struct EditPage {
    ctx: Layout,
    /// Editing an existing preset (its name cannot change).
    existing: bool,
    name: String,
    filter: String,
    priority: i32,
    events: String,
    spec: String,
    error: Option<String>,
    preview: Preview,
}

/// The spec as the form shows it: secret values replaced by [`UNCHANGED`].
fn spec_for_form(spec: &PresetSpec) -> String {
    let mut shown = spec.clone();
    for v in &mut shown.values {
        if is_secret(&v.name) && !v.value.is_empty() {
            v.value = UNCHANGED.into();
        }
    }
    serde_json::to_string_pretty(&shown).unwrap_or_else(|_| "{}".into())
}

async fn new_form(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let preview = preview_of(&state, "").await?;
    render(
        StatusCode::OK,
        &EditPage {
            ctx: ctx.layout("presets"),
            existing: false,
            name: String::new(),
            filter: String::new(),
            priority: 0,
            events: String::new(),
            spec: "{\n  \"values\": [\n    {\"name\": \"Device.ManagementServer.PeriodicInformInterval\", \"value\": \"3600\"}\n  ]\n}".into(),
            error: None,
            preview,
        },
    )
}

async fn edit_form(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let n = name.into_inner();
    let n2 = n.clone();
    let row = state
        .store
        .run(move |s| s.get_preset(&n2))
        .await?
        .ok_or_else(|| Error::not_found(format!("preset {n}")))?;
    let p = PresetView::from_row(&row);
    let preview = preview_of(&state, &p.filter).await?;
    render(
        StatusCode::OK,
        &EditPage {
            ctx: ctx.layout("presets"),
            existing: true,
            spec: spec_for_form(&p.spec),
            name: p.name,
            filter: p.filter,
            priority: p.priority,
            events: p.events.join(", "),
            error: None,
            preview,
        },
    )
}

#[derive(Deserialize)]
struct SaveForm {
    name: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    events: String,
    #[serde(default)]
    spec: String,
    #[serde(default)]
    existing: Option<String>,
    #[serde(default)]
    connection_request: Option<String>,
}

/// Build the preset from the form: the fields plus the JSON of what it sets. Secret values
/// left as [`UNCHANGED`] keep what is stored (the use case reads it: the console never
/// holds a stored secret).
fn input_of(f: &SaveForm) -> Result<PresetInput, Error> {
    let spec = if f.spec.trim().is_empty() {
        "{}"
    } else {
        f.spec.trim()
    };
    let mut v: serde_json::Value = serde_json::from_str(spec)
        .map_err(|e| Error::invalid("definition", format!("not JSON: {e}")))?;
    let Some(m) = v.as_object_mut() else {
        return Err(Error::invalid(
            "definition",
            "a JSON object, e.g. {\"values\": [{\"name\": \"…\", \"value\": \"…\"}]}",
        ));
    };
    if let Some(serde_json::Value::Array(values)) = m.get_mut("values") {
        for item in values.iter_mut() {
            if item.get("value").and_then(|x| x.as_str()) == Some(UNCHANGED) {
                item["value"] = serde_json::Value::String(presets::MASK.into());
            }
        }
    }
    let priority = match f.priority.trim() {
        "" => 0,
        p => p
            .parse::<i32>()
            .map_err(|_| Error::invalid("priority", "a whole number; higher wins"))?,
    };
    m.insert("name".into(), f.name.trim().into());
    m.insert("filter".into(), f.filter.trim().into());
    m.insert("priority".into(), priority.into());
    let events: Vec<serde_json::Value> = f
        .events
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| e.into())
        .collect();
    m.insert("events".into(), events.into());
    serde_json::from_value(v).map_err(|e| Error::invalid("definition", e.to_string()))
}

async fn save(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: SaveForm = ctx.form()?;
    let existing = f.existing.is_some();
    let result = match input_of(&f) {
        Ok(input) => {
            let (mode, name) = if existing {
                (SaveMode::Put, Some(f.name.trim()))
            } else {
                (SaveMode::Create, None)
            };
            usecases::voip::save_preset(
                &state.ctx(),
                &ctx.as_actor(),
                mode,
                name,
                input,
                f.connection_request.is_some(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(saved) => {
            let notice = format!(
                "Preset {} {} (revision {}).{}",
                saved.preset.name,
                if saved.created { "created" } else { "saved" },
                saved.preset.revision,
                saved
                    .connection_requests
                    .map(|n| format!(" Connection requests sent to {n} device(s)."))
                    .unwrap_or_default()
            );
            render(
                StatusCode::OK,
                &list_page(ctx.layout("presets"), &state, Some(notice)).await?,
            )
        }
        Err(e @ (Error::Invalid { .. } | Error::Conflict(_))) => {
            let preview = preview_of(&state, &f.filter).await?;
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &EditPage {
                    ctx: ctx.layout("presets"),
                    existing,
                    name: f.name.clone(),
                    filter: f.filter.clone(),
                    priority: f.priority.trim().parse().unwrap_or(0),
                    events: f.events.clone(),
                    spec: f.spec.clone(),
                    error: Some(e.to_string()),
                    preview,
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn delete(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let name = name.into_inner();
    usecases::voip::delete_preset(&state.ctx(), &ctx.as_actor(), &name).await?;
    render(
        StatusCode::OK,
        &list_page(
            ctx.layout("presets"),
            &state,
            Some(format!(
                "Preset {name} deleted; the values it set stay on the devices."
            )),
        )
        .await?,
    )
}

/// What the filter selects now, or why it does not parse.
#[derive(askama::Template)]
#[template(path = "console/preset_preview.html")]
pub struct Preview {
    pub count: Option<String>,
    pub error: Option<String>,
}

async fn preview_of(state: &AppState, filter: &str) -> Result<Preview, ConsoleError> {
    let f = match presets::parse_filter(filter) {
        Ok(f) => f,
        Err(Error::Invalid { message, .. }) => {
            return Ok(Preview {
                count: None,
                error: Some(message),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let n = state
        .store
        .run(move |s| s.count_matching_devices(&f, PREVIEW_CAP + 1))
        .await?;
    Ok(Preview {
        count: Some(if n > PREVIEW_CAP {
            format!("{PREVIEW_CAP}+")
        } else {
            n.to_string()
        }),
        error: None,
    })
}

#[derive(Deserialize)]
struct PreviewQuery {
    #[serde(default)]
    filter: String,
}

/// The live preview: polled by the form as the filter is typed.
async fn preview(
    _ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    q: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ConsoleError> {
    render(StatusCode::OK, &preview_of(&state, &q.filter).await?)
}
