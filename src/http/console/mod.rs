//! The operator web console: server-rendered HTML (askama templates in `templates/console/`,
//! checked at compile time) on the admin listener, at `/` (login at `/login`).
//!
//! - `session`: login, logout, password change, and the [`session::Ctx`] extractor that
//!   enforces the session, its expiry, the CSRF token and the role of every handler.
//! - `overview`, `devices`, `device`, `lists`, `presets`, `phones`, `users`, `campaigns`:
//!   the pages; every action calls the use case or domain function the JSON API calls, so
//!   it needs the same role and leaves the same audit entry (actor `user:<name>`).
//! - `charts`: SVG bar and line charts rendered on the server (pure functions).
//! - `assets`: htmx (vendored, with its licence), the stylesheet and the console's own
//!   script, embedded in the binary and served under content-hashed names with long caching.
//!
//! Every response carries a strict Content-Security-Policy: scripts, styles and images only
//! from this origin, no inline script or style, no framing. htmx is configured from a meta
//! tag (no eval, no injected indicator styles). Pages that change by themselves (device page,
//! task lists, bulk progress) poll a fragment every 2 s with `hx-trigger="every 2s"`.
//!
//! Navigation: [`NAV`] lists the top-level pages with the role each needs; a new page adds
//! one line there and a template that `{% extends "console/base.html" %}`.

mod assets;
mod campaigns;
mod charts;
mod device;
mod devices;
mod files;
mod lists;
mod overview;
mod phone_models;
mod phones;
mod presets;
pub mod session;
mod users;
mod view;

use std::net::IpAddr;
use std::sync::Mutex;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};

use crate::auth::ratelimit::{FailureLimiter, FailureLimiterConfig};
use crate::error::Error;
use crate::http::api::Role;
use crate::state::AppState;
use session::Session;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
                       object-src 'none'";

/// One entry of the navigation bar.
pub struct NavItem {
    /// Matches [`Layout::active`] of the pages below it.
    pub key: &'static str,
    pub label: &'static str,
    pub href: &'static str,
    pub role: Role,
}

/// The navigation bar, in order. Entries above the user's role are not shown (and their
/// handlers refuse the request anyway).
pub const NAV: &[NavItem] = &[
    NavItem {
        key: "overview",
        label: "Overview",
        href: "/",
        role: Role::Viewer,
    },
    NavItem {
        key: "devices",
        label: "Devices",
        href: "/devices",
        role: Role::Viewer,
    },
    NavItem {
        key: "tasks",
        label: "Tasks",
        href: "/tasks",
        role: Role::Viewer,
    },
    NavItem {
        key: "campaigns",
        label: "Campaigns",
        href: "/campaigns",
        role: Role::Viewer,
    },
    NavItem {
        key: "faults",
        label: "Faults",
        href: "/faults",
        role: Role::Viewer,
    },
    NavItem {
        key: "files",
        label: "Files",
        href: "/files",
        role: Role::Viewer,
    },
    NavItem {
        key: "presets",
        label: "Presets",
        href: "/presets",
        role: Role::Viewer,
    },
    NavItem {
        key: "phones",
        label: "Phones",
        href: "/phones",
        role: Role::Viewer,
    },
    NavItem {
        key: "lines",
        label: "Lines",
        href: "/lines",
        role: Role::Operator,
    },
    NavItem {
        key: "users",
        label: "Users",
        href: "/users",
        role: Role::Admin,
    },
    NavItem {
        key: "audit",
        label: "Audit",
        href: "/audit",
        role: Role::Admin,
    },
];

/// What every page's frame needs: who is logged in, the CSRF token for the meta tag, the
/// navigation and the asset URLs. Pages hold it as their `ctx` field.
pub struct Layout {
    pub user: Option<String>,
    pub role: Role,
    pub csrf: String,
    pub active: &'static str,
    pub nav: Vec<&'static NavItem>,
    pub css: &'static str,
    pub js: &'static str,
    pub htmx: &'static str,
}

impl Layout {
    pub fn new(session: Option<&Session>, active: &'static str) -> Layout {
        let role = session.map(|s| s.role).unwrap_or(Role::Viewer);
        Layout {
            user: session.map(|s| s.username.clone()),
            role,
            csrf: session.map(|s| s.csrf.clone()).unwrap_or_default(),
            active,
            nav: if session.is_some() {
                NAV.iter().filter(|n| role >= n.role).collect()
            } else {
                Vec::new()
            },
            css: assets::url(assets::Asset::Css),
            js: assets::url(assets::Asset::Js),
            htmx: assets::url(assets::Asset::Htmx),
        }
    }

    /// Whether action buttons (operator actions) are shown.
    pub fn can_operate(&self) -> bool {
        self.user.is_some() && self.role >= Role::Operator
    }

    pub fn is_admin(&self) -> bool {
        self.user.is_some() && self.role >= Role::Admin
    }

    pub fn role_name(&self) -> &'static str {
        self.role.as_str()
    }
}

/// Console-wide state besides [`AppState`]: the failed-login limiter (per process).
pub struct ConsoleState {
    limiter: Mutex<FailureLimiter>,
}

impl ConsoleState {
    pub fn new(cfg: &crate::config::ConsoleConfig) -> ConsoleState {
        ConsoleState {
            limiter: Mutex::new(FailureLimiter::new(FailureLimiterConfig {
                max_failures: cfg.login_max_failures.max(1),
                window_ms: 10 * 60 * 1000,
                block_ms: cfg.login_block_secs.saturating_mul(1000),
                capacity: 100_000,
            })),
        }
    }

    fn blocked(&self, ip: IpAddr, now: u64) -> Option<u64> {
        self.limiter.lock().ok()?.is_blocked(ip, now)
    }

    fn failed(&self, ip: IpAddr, username: &str, now: u64) -> Option<u64> {
        self.limiter.lock().ok()?.record_failure(ip, username, now)
    }

    fn succeeded(&self, ip: IpAddr, username: &str) {
        if let Ok(mut l) = self.limiter.lock() {
            l.record_success(ip, username);
        }
    }
}

/// Why a console request failed; rendered as an HTML page (or a fragment for htmx).
#[derive(Debug)]
pub enum ConsoleError {
    /// Send the browser elsewhere (303), e.g. to the login page.
    Redirect(String),
    Unauthorized(String),
    Forbidden(String),
    Domain(Error),
}

impl From<Error> for ConsoleError {
    fn from(e: Error) -> Self {
        ConsoleError::Domain(e)
    }
}

impl std::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsoleError::Redirect(to) => write!(f, "see {to}"),
            ConsoleError::Unauthorized(m) | ConsoleError::Forbidden(m) => f.write_str(m),
            ConsoleError::Domain(e) => e.fmt(f),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    ctx: Layout,
    status: u16,
    title: &'static str,
    message: String,
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::Redirect(_) => StatusCode::SEE_OTHER,
            ConsoleError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::Domain(e) => crate::http::error::classify(e).0,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (title, message) = match self {
            ConsoleError::Redirect(to) => {
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, to.as_str()))
                    .finish()
            }
            ConsoleError::Unauthorized(m) => ("Not logged in", m.clone()),
            ConsoleError::Forbidden(m) => ("Not allowed", m.clone()),
            ConsoleError::Domain(e @ Error::Internal { .. }) => {
                tracing::error!(error = %e.chain(), "internal error in the console");
                (
                    "Internal error",
                    "internal error; the server log has the details".to_string(),
                )
            }
            ConsoleError::Domain(Error::NotFound { what }) => {
                ("Not found", format!("{what} not found"))
            }
            ConsoleError::Domain(e @ Error::Unavailable { .. }) => {
                tracing::warn!(error = %e.chain(), "database unavailable in the console");
                (
                    "Database unavailable",
                    crate::http::error::UNAVAILABLE_MESSAGE.to_string(),
                )
            }
            ConsoleError::Domain(e) => ("Refused", e.to_string()),
        };
        let page = ErrorPage {
            ctx: Layout::new(None, "error"),
            status: status.as_u16(),
            title,
            message,
        };
        let mut res = render(status, &page).unwrap_or_else(|_| HttpResponse::new(status));
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::HeaderName::from_static("hx-redirect"),
                HeaderValue::from_static("/login?expired=1"),
            );
        }
        res
    }
}

/// Render a template into an HTML response.
pub fn render(status: StatusCode, t: &impl askama::Template) -> Result<HttpResponse, ConsoleError> {
    let body = t.render().map_err(Error::internal)?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body))
}

/// Security headers on every console response (pages, fragments, errors, assets).
async fn headers(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

async fn not_found() -> HttpResponse {
    ConsoleError::Domain(Error::not_found("this page")).error_response()
}

/// Register the console. Call after the API and the other fixed routes: it takes every
/// path they do not. `console` is created once per server (not per worker), so every
/// worker shares the failed-login limiter.
pub fn configure(cfg: &mut web::ServiceConfig, console: web::Data<ConsoleState>) {
    cfg.service(
        web::scope("")
            .app_data(console)
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .wrap(actix_web::middleware::from_fn(headers))
            .route("/static/{name}", web::get().to(assets::serve))
            .route("/login", web::get().to(session::login_form))
            .route("/login", web::post().to(session::login))
            .route("/logout", web::post().to(session::logout))
            .route("/account/password", web::get().to(session::password_form))
            .route(
                "/account/password",
                web::post().to(session::change_password),
            )
            .route("/", web::get().to(overview::page))
            .configure(devices::configure)
            .configure(device::configure)
            .configure(lists::configure)
            .configure(files::configure)
            .configure(presets::configure)
            .configure(phones::configure)
            .configure(phone_models::configure)
            .configure(users::configure)
            .configure(campaigns::configure)
            .default_service(web::to(not_found)),
    );
}

/// Background work of the console, every minute: forget expired sessions and the overview's
/// per-minute counters older than two days.
pub fn spawn_background(state: std::sync::Arc<AppState>) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = state.now();
            let c = &state.config.console;
            let idle =
                now - i64::try_from(c.session_idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            let old =
                now - i64::try_from(c.session_max_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            if let Err(e) = state
                .store
                .run(move |s| s.prune_console_sessions(idle, old))
                .await
            {
                tracing::warn!(error = %e, "pruning expired console sessions failed");
            }
            // The overview's per-minute counters: two days kept (the charts show one).
            let before = now - 2 * 86_400_000;
            if let Err(e) = state
                .store
                .run(move |s| s.prune_overview_counters(before))
                .await
            {
                tracing::warn!(error = %e, "pruning the overview's counters failed");
            }
        }
    });
}
