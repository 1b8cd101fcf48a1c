//! Phones that fetch configuration files: the list (search by MAC, vendor or model), a
//! phone's page (record, lines, last fetch, firmware, fetch log) and the operator actions on
//! it — create, edit, re-provision now (SIP NOTIFY check-sync), a one-time activation code.
//! Every action calls the use case the API calls (same role check, same audit entry).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::session::{urlencode, Ctx, Operator, Viewer};
use super::view::{ago, utc};
use super::{render, ConsoleError, Layout};
use crate::domain::lines;
use crate::domain::phones::{self, FetchView, PhoneInput, PhoneView};
use crate::domain::usecases;
use crate::error::Error;
use crate::phones::Vendor;
use crate::state::AppState;

/// Phones on one page of the list.
const PAGE: i64 = 100;
/// Fetches shown on a phone's page.
const FETCHES: i64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/phones", web::get().to(list))
        .route("/phones/new", web::get().to(new_form))
        .route("/phones/save", web::post().to(save))
        .route("/phones/{mac}", web::get().to(detail))
        .route("/phones/{mac}/resync", web::post().to(resync))
        .route("/phones/{mac}/activation_code", web::post().to(activate));
}

pub struct PhoneItem {
    pub mac: String,
    pub href: String,
    pub vendor: String,
    pub model: String,
    pub profile: String,
    pub last_seen: String,
    pub source: String,
    pub firmware: String,
    pub last_file: String,
}

#[derive(askama::Template)]
#[template(path = "console/phones.html")]
struct PhonesPage {
    ctx: Layout,
    q: String,
    phones: Vec<PhoneItem>,
    next: Option<String>,
}

fn phone_href(mac: &str) -> String {
    format!("/phones/{}", urlencode(mac))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: Option<String>,
}

async fn list(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ConsoleError> {
    let now = state.now();
    let q = query.q.trim().to_string();
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let views = phones::search(&state.store, &q, query.cursor.clone(), PAGE).await?;
    let next = (views.len() as i64 == PAGE).then(|| {
        let last = views.last().map(|p| p.mac.clone()).unwrap_or_default();
        format!("/phones?q={}&cursor={}", urlencode(&q), urlencode(&last))
    });
    let phones = views
        .iter()
        .map(|p| PhoneItem {
            href: phone_href(&p.mac),
            mac: p.mac.clone(),
            vendor: p.vendor.clone(),
            model: p.model.clone(),
            profile: p.profile.clone().unwrap_or_default(),
            last_seen: ago(now, p.last_seen),
            source: p.last_source.clone().unwrap_or_default(),
            firmware: p.firmware.clone().unwrap_or_default(),
            last_file: p.last_file.clone().unwrap_or_default(),
        })
        .collect();
    render(
        StatusCode::OK,
        &PhonesPage {
            ctx: ctx.layout("phones"),
            q,
            phones,
            next,
        },
    )
}

/// The create/edit form's fields.
pub struct FormValues {
    pub mac: String,
    pub vendor: String,
    pub model: String,
    pub profile: String,
    pub contact: String,
    pub digest_user: String,
    pub tags: String,
}

pub struct LineItem {
    pub line: i32,
    pub user: String,
    pub registrar: String,
    pub display_name: String,
    pub password_set: bool,
    pub enabled: bool,
}

pub struct FetchItem {
    pub at: String,
    pub file: String,
    pub source: String,
    pub protocol: String,
    pub status: i32,
    pub firmware: String,
    pub user_agent: String,
}

impl FetchItem {
    fn of(f: &FetchView) -> FetchItem {
        FetchItem {
            at: utc(f.at),
            file: f.file.clone(),
            source: f.source.clone(),
            protocol: f.protocol.clone(),
            status: f.status,
            firmware: f.firmware.clone().unwrap_or_default(),
            user_agent: f.user_agent.clone(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/phone.html")]
struct PhonePage {
    ctx: Layout,
    /// None on the "new phone" form.
    phone: Option<PhoneView>,
    href: String,
    form: FormValues,
    vendors: Vec<&'static str>,
    last_seen: String,
    lines: Vec<LineItem>,
    fetches: Vec<FetchItem>,
    /// The firmware the phone's files name and where it comes from (empty on "new").
    firmware: FirmwareItem,
    notice: Option<String>,
    error: Option<String>,
}

/// The firmware a phone is given, for its page.
#[derive(Default)]
pub struct FirmwareItem {
    /// "model", "profile", "phone", "defaults" or "none".
    pub source: String,
    pub file: String,
    pub version: String,
}

impl FirmwareItem {
    fn of(a: &phones::AppliedFirmware) -> FirmwareItem {
        FirmwareItem {
            source: a.source.clone(),
            file: a.file.clone().unwrap_or_default(),
            version: a.version.clone().unwrap_or_default(),
        }
    }

    /// Where the firmware comes from, in words.
    pub fn origin(&self, profile: &Option<String>) -> String {
        match self.source.as_str() {
            "model" => "the model's firmware".into(),
            "profile" => format!("profile {}", profile.as_deref().unwrap_or("(none)")),
            "phone" => "this phone's own settings".into(),
            "defaults" => "the model's defaults".into(),
            _ => "none".into(),
        }
    }
}

fn vendors() -> Vec<&'static str> {
    Vendor::ALL.iter().map(|v| v.as_str()).collect()
}

fn form_of(p: &PhoneView, tags: String) -> FormValues {
    FormValues {
        mac: p.mac.clone(),
        vendor: p.vendor.clone(),
        model: p.model.clone(),
        profile: p.profile.clone().unwrap_or_default(),
        contact: p.contact.clone().unwrap_or_default(),
        digest_user: p.digest_user.clone().unwrap_or_default(),
        tags,
    }
}

async fn new_form(ctx: Ctx<Operator>) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::OK,
        &PhonePage {
            ctx: ctx.layout("phones"),
            phone: None,
            href: String::new(),
            form: FormValues {
                mac: String::new(),
                vendor: "polycom".into(),
                model: String::new(),
                profile: String::new(),
                contact: String::new(),
                digest_user: String::new(),
                tags: String::new(),
            },
            vendors: vendors(),
            last_seen: String::new(),
            lines: Vec::new(),
            fetches: Vec::new(),
            firmware: FirmwareItem::default(),
            notice: None,
            error: None,
        },
    )
}

/// A phone's page, with a notice or an error of the action that led to it.
async fn phone_page(
    ctx: Layout,
    state: &AppState,
    mac: &str,
    notice: Option<String>,
    error: Option<String>,
    form: Option<FormValues>,
) -> Result<PhonePage, ConsoleError> {
    let m = phones::parse_mac("mac", mac)?;
    phones::settle_fetch_log(&state.store, &state.services.phones).await?;
    let view = phones::get(&state.store, m).await?;
    let line_views = lines::list(&state.store, &view.device_id).await?;
    let fetches = phones::fetches(&state.store, m, FETCHES).await?;
    let tags = phones::tags(&state.store, m).await?.join(", ");
    let firmware = FirmwareItem::of(&phones::applied_firmware(&state.store, &view).await?);
    Ok(PhonePage {
        firmware,
        ctx,
        href: phone_href(&view.mac),
        form: form.unwrap_or_else(|| form_of(&view, tags)),
        vendors: vendors(),
        last_seen: match view.last_seen {
            Some(at) => format!("{} ({})", ago(state.now(), Some(at)), utc(at)),
            None => "never".into(),
        },
        lines: line_views
            .iter()
            .map(|l| LineItem {
                line: l.line,
                user: l.account.sip_user.clone().unwrap_or_default(),
                registrar: l.account.registrar.clone().unwrap_or_default(),
                display_name: l.account.display_name.clone().unwrap_or_default(),
                password_set: l.password_set,
                enabled: l.account.enabled,
            })
            .collect(),
        fetches: fetches.iter().map(FetchItem::of).collect(),
        phone: Some(view),
        notice,
        error,
    })
}

async fn detail(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
    mac: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let page = phone_page(ctx.layout("phones"), &state, &mac, None, None, None).await?;
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
struct SaveForm {
    #[serde(default)]
    mac: String,
    #[serde(default)]
    vendor: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    profile: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    digest_user: String,
    #[serde(default)]
    digest_password: String,
    #[serde(default)]
    existing: Option<String>,
}

impl SaveForm {
    fn values(&self) -> FormValues {
        FormValues {
            mac: self.mac.clone(),
            vendor: self.vendor.clone(),
            model: self.model.clone(),
            profile: self.profile.clone(),
            contact: self.contact.clone(),
            digest_user: self.digest_user.clone(),
            tags: self.tags.clone(),
        }
    }

    /// The API body this form stands for. On an edit, an empty Digest password keeps the
    /// stored credentials (the form never shows them); a new password needs the user.
    fn input(&self, existing: Option<&PhoneView>) -> PhoneInput {
        let user = self.digest_user.trim();
        let (digest_user, digest_password) = match (user, self.digest_password.as_str()) {
            ("", _) => (
                existing
                    .and_then(|p| p.digest_user.as_ref())
                    .map(|_| String::new()),
                None,
            ),
            (u, "") if existing.and_then(|p| p.digest_user.as_deref()) == Some(u) => (None, None),
            (u, pw) => (Some(u.to_string()), Some(pw.to_string())),
        };
        PhoneInput {
            mac: Some(self.mac.trim().to_string()),
            vendor: self.vendor.trim().to_string(),
            model: self.model.trim().to_string(),
            profile: Some(self.profile.trim().to_string()).filter(|p| !p.is_empty()),
            settings: None,
            tags: Some(
                self.tags
                    .split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect(),
            ),
            file_password: None,
            contact: Some(self.contact.trim().to_string()),
            digest_user,
            digest_password,
        }
    }
}

async fn save(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: SaveForm = ctx.form()?;
    let existing = if f.existing.is_some() {
        let m = phones::parse_mac("mac", &f.mac)?;
        Some(phones::get(&state.store, m).await?)
    } else {
        None
    };
    let input = f.input(existing.as_ref());
    let actor = ctx.as_actor();
    let result = match &existing {
        Some(p) => usecases::phones::put(&state.ctx(), &actor, &p.mac, input)
            .await
            .map(|(v, _)| v),
        None => usecases::phones::create(&state.ctx(), &actor, input).await,
    };
    match result {
        Ok(view) => {
            let notice = format!(
                "Phone {} {}.",
                view.mac,
                if existing.is_some() {
                    "saved"
                } else {
                    "created"
                }
            );
            let page = phone_page(
                ctx.layout("phones"),
                &state,
                &view.mac,
                Some(notice),
                None,
                None,
            )
            .await?;
            render(StatusCode::OK, &page)
        }
        Err(e @ (Error::Invalid { .. } | Error::Conflict(_))) => match existing {
            Some(p) => {
                let page = phone_page(
                    ctx.layout("phones"),
                    &state,
                    &p.mac,
                    None,
                    Some(e.to_string()),
                    Some(f.values()),
                )
                .await?;
                render(StatusCode::UNPROCESSABLE_ENTITY, &page)
            }
            None => render(
                StatusCode::UNPROCESSABLE_ENTITY,
                &PhonePage {
                    ctx: ctx.layout("phones"),
                    phone: None,
                    href: String::new(),
                    form: f.values(),
                    vendors: vendors(),
                    last_seen: String::new(),
                    lines: Vec::new(),
                    fetches: Vec::new(),
                    firmware: FirmwareItem::default(),
                    notice: None,
                    error: Some(e.to_string()),
                },
            ),
        },
        Err(e) => Err(e.into()),
    }
}

async fn resync(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    mac: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let (notice, error) =
        match usecases::phones::resync(&state.ctx(), &ctx.as_actor(), &mac, false).await {
            Ok(r) => (
                Some(match r.status {
                    Some(s) => format!("NOTIFY check-sync sent to {}: answered {s}.", r.target),
                    None if r.outcome == "refused" => format!(
                        "NOTIFY check-sync to {} refused by the connection-request target policy.",
                        r.target
                    ),
                    None => format!("NOTIFY check-sync sent to {}: no answer.", r.target),
                }),
                None,
            ),
            Err(e @ Error::Invalid { .. }) => (None, Some(e.to_string())),
            Err(e) => return Err(e.into()),
        };
    let page = phone_page(ctx.layout("phones"), &state, &mac, notice, error, None).await?;
    render(StatusCode::OK, &page)
}

async fn activate(
    ctx: Ctx<Operator>,
    state: web::Data<AppState>,
    mac: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let code = usecases::phones::activation_code(&state.ctx(), &ctx.as_actor(), &mac).await?;
    let mut notice = format!(
        "Activation code {} (shown once; usable until {}): {}",
        code.code,
        utc(code.expires_at),
        code.url
    );
    if let (Some(g), Some(u)) = (&code.gigaset_code, &code.gigaset_url) {
        notice.push_str(&format!(
            "; on a Gigaset base type {g} (append #<Digest password> when it has Digest credentials): {u}"
        ));
    }
    let page = phone_page(ctx.layout("phones"), &state, &mac, Some(notice), None, None).await?;
    render(StatusCode::OK, &page)
}
