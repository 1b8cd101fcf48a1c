//! Console sessions: login, logout, password change, and the [`Ctx`] extractor every console
//! handler takes, which is where authentication, expiry, CSRF and roles are enforced.
//!
//! Order of the checks in [`Ctx`] (each failure stops the request):
//! 1. the session cookie names a stored session (only its SHA-256 is stored), else the
//!    browser is sent to `/login` (a GET) or gets 401 (anything else);
//! 2. the session is neither idle longer than `console.session_idle_secs` nor older than
//!    `console.session_max_secs` (an expired session is deleted);
//! 3. a state-changing method (anything but GET/HEAD) carries the session's CSRF token, in
//!    the `X-CSRF-Token` header (htmx, scripts) or the `_csrf` form field (plain forms), else
//!    403 — before the role check, so a forged request learns nothing;
//! 4. the user's role is at least the one the handler's type names (`Ctx<Operator>`), else
//!    403. The role is read from the users table on every request, so a demoted or deleted
//!    user loses access at once.
//!
//! The CSRF token is HMAC-SHA256(session token, "csrf"): tied to the session, never stored,
//! and unknowable from the database (which holds only the hash of the session token).

use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{render, ConsoleError, ConsoleState, Layout};
use crate::auth::password;
use crate::domain::usecases;
use crate::error::Error;
use crate::http::api::Role;
use crate::state::AppState;

/// Name of the session cookie.
pub const COOKIE: &str = "ferroacs_session";
/// Largest urlencoded form the console accepts.
const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Write `last_seen_at` at most this often per session.
const TOUCH_EVERY_MS: i64 = 30_000;

/// A logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf: String,
}

impl Session {
    /// The actor recorded in the audit log (`user:<name>`; API tokens are `token:<name>`).
    pub fn actor(&self) -> String {
        format!("user:{}", self.username)
    }
}

/// The role a handler needs, as a type: `Ctx<Viewer>`, `Ctx<Operator>`, `Ctx<Admin>`.
pub trait Need {
    const ROLE: Role;
}
pub struct Viewer;
pub struct Operator;
pub struct Admin;
impl Need for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl Need for Operator {
    const ROLE: Role = Role::Operator;
}
impl Need for Admin {
    const ROLE: Role = Role::Admin;
}

/// An authenticated, authorised console request. For urlencoded bodies the extractor reads
/// the body (to find `_csrf`); handlers get the fields with [`Ctx::form`].
pub struct Ctx<N: Need> {
    pub session: Session,
    body: web::Bytes,
    _need: PhantomData<N>,
}

impl<N: Need> Ctx<N> {
    /// The request's urlencoded form.
    pub fn form<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConsoleError> {
        serde_urlencoded::from_bytes(&self.body)
            .map_err(|e| ConsoleError::Domain(Error::invalid("form", e.to_string())))
    }

    pub fn layout(&self, active: &'static str) -> Layout {
        Layout::new(Some(&self.session), active)
    }

    pub fn actor(&self) -> String {
        self.session.actor()
    }

    /// The logged-in user as the use cases see them (`user:<name>` with the session's role).
    pub fn as_actor(&self) -> crate::domain::usecases::Actor {
        crate::domain::usecases::Actor::user(&self.session.username, self.session.role)
    }
}

/// HMAC-SHA256(session token, "csrf"), base64url.
pub fn csrf_for(token: &str) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(token.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(b"csrf");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Why a stored session is no longer valid, if it is not.
pub fn expired(
    created_at: i64,
    last_seen_at: i64,
    now: i64,
    idle_secs: u64,
    max_secs: u64,
) -> Option<&'static str> {
    let idle = i64::try_from(idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let max = i64::try_from(max_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    if now.saturating_sub(created_at) > max {
        Some("your session reached its maximum age; log in again")
    } else if now.saturating_sub(last_seen_at) > idle {
        Some("your session ended after a period without activity; log in again")
    } else {
        None
    }
}

fn is_safe(m: &Method) -> bool {
    m == Method::GET || m == Method::HEAD
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Where an unauthenticated request is sent.
fn to_login(req: &HttpRequest, why: Option<&str>) -> ConsoleError {
    if !is_safe(req.method()) {
        return ConsoleError::Unauthorized(
            why.unwrap_or("log in first (your session may have ended)")
                .to_string(),
        );
    }
    let mut next = req.path().to_string();
    if let Some(q) = req.uri().query() {
        next.push('?');
        next.push_str(q);
    }
    let mut target = format!("/login?next={}", urlencode(&next));
    if why.is_some() {
        target.push_str("&expired=1");
    }
    ConsoleError::Redirect(target)
}

pub fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl<N: Need + 'static> FromRequest for Ctx<N> {
    type Error = ConsoleError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self, ConsoleError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        let payload = if is_form(&req) && !is_safe(req.method()) {
            Some(payload.take())
        } else {
            None
        };
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| ConsoleError::Domain(Error::internal("no state")))?;
            let Some(token) = req.cookie(COOKIE).map(|c| c.value().to_string()) else {
                return Err(to_login(&req, None));
            };
            if token.is_empty() || token.len() > 128 {
                return Err(to_login(&req, None));
            }
            let hash = password::hash_token(&token);
            let h = hash.clone();
            let found = state.store.run(move |s| s.console_session(&h)).await?;
            let Some((row, user)) = found else {
                return Err(to_login(&req, Some("expired")));
            };
            if usecases::admin::is_disabled(&user) {
                let h = hash.clone();
                let _ = state.store.run(move |s| s.delete_console_session(&h)).await;
                return Err(to_login(&req, Some("expired")));
            }
            let now = state.now();
            let cfg = &state.config.console;
            if let Some(_why) = expired(
                row.created_at,
                row.last_seen_at,
                now,
                cfg.session_idle_secs,
                cfg.session_max_secs,
            ) {
                let h = hash.clone();
                let _ = state.store.run(move |s| s.delete_console_session(&h)).await;
                return Err(to_login(&req, Some("expired")));
            }
            let csrf = csrf_for(&token);
            let mut body = web::Bytes::new();
            if !is_safe(req.method()) {
                if let Some(mut pl) = payload {
                    let mut buf = web::BytesMut::new();
                    while let Some(chunk) = pl.next().await {
                        let chunk = chunk.map_err(|e| {
                            ConsoleError::Domain(Error::invalid("body", e.to_string()))
                        })?;
                        if buf.len() + chunk.len() > MAX_FORM_BYTES {
                            return Err(ConsoleError::Domain(Error::invalid(
                                "body",
                                "the form is larger than 1 MiB",
                            )));
                        }
                        buf.extend_from_slice(&chunk);
                    }
                    body = buf.freeze();
                }
                let header_token = req
                    .headers()
                    .get("x-csrf-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let given = match header_token {
                    Some(t) => Some(t),
                    None => serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
                        .ok()
                        .and_then(|v| v.into_iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v)),
                };
                let ok = given
                    .as_deref()
                    .is_some_and(|g| password::constant_time_eq(g.as_bytes(), csrf.as_bytes()));
                if !ok {
                    return Err(ConsoleError::Forbidden(
                        "the form's security token is missing or wrong; reload the page and try again"
                            .into(),
                    ));
                }
            }
            let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
            if role < N::ROLE {
                return Err(ConsoleError::Forbidden(format!(
                    "this needs the {} role; you are {}",
                    N::ROLE.as_str(),
                    role.as_str()
                )));
            }
            if now - row.last_seen_at > TOUCH_EVERY_MS {
                let id = row.id;
                let _ = state
                    .store
                    .run(move |s| s.touch_console_session(id, now))
                    .await;
            }
            let session = Session {
                id: row.id,
                user_id: user.id,
                username: user.username,
                role,
                csrf,
            };
            req.extensions_mut().insert(session.clone());
            Ok(Ctx {
                session,
                body,
                _need: PhantomData,
            })
        })
    }
}

fn session_cookie(state: &AppState, value: String, max_age: Option<i64>) -> Cookie<'static> {
    let mut c = Cookie::build(COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.api.tls_cert.is_some() && state.config.api.tls_key.is_some())
        .finish();
    if let Some(secs) = max_age {
        c.set_max_age(actix_web::cookie::time::Duration::seconds(secs));
    }
    c
}

fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

#[derive(askama::Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    ctx: Layout,
    next: String,
    username: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
    logged_out: Option<String>,
}

/// Only local paths may be a post-login target (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn login_form(q: web::Query<LoginQuery>) -> Result<HttpResponse, ConsoleError> {
    let notice = if q.expired.is_some() {
        Some("Your session ended; log in again.".to_string())
    } else if q.logged_out.is_some() {
        Some("You are logged out.".to_string())
    } else {
        None
    };
    render(
        StatusCode::OK,
        &LoginPage {
            ctx: Layout::new(None, "login"),
            next: safe_next(q.next.as_deref()),
            username: String::new(),
            error: None,
            notice,
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// A valid argon2id hash of a random password: unknown users cost the same as known ones.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| password::hash_password(&password::generate_token()).unwrap_or_default())
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: web::Data<ConsoleState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, ConsoleError> {
    let f = form.into_inner();
    let ip = peer_ip(&req);
    let now = state.now();
    let now_u = u64::try_from(now).unwrap_or(0);
    let next = safe_next(f.next.as_deref());
    let page = |status: StatusCode, error: String| {
        render(
            status,
            &LoginPage {
                ctx: Layout::new(None, "login"),
                next: next.clone(),
                username: f.username.clone(),
                error: Some(error),
                notice: None,
            },
        )
    };
    if let Some(secs) = console.blocked(ip, now_u) {
        let mins = secs.div_ceil(60).max(1);
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed logins from your address. Try again in {mins} minute(s)."),
        );
    }
    let name = f.username.trim().to_string();
    let user = if name.is_empty() || name.len() > 64 {
        None
    } else {
        let n = name.clone();
        state.store.run(move |s| s.user_by_name(&n)).await?
    };
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_string());
    let pw = f.password.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify_password(&pw, &stored))
        .await
        .map_err(Error::internal)?
        .unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        let blocked = console.failed(ip, &name, now_u);
        tracing::warn!(source = %ip, username = %name, "console login refused");
        return match blocked {
            Some(secs) => {
                let mins = secs.div_ceil(60).max(1);
                page(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed logins from your address. Try again in {mins} minute(s)."
                    ),
                )
            }
            None => page(
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.".to_string(),
            ),
        };
    };
    console.succeeded(ip, &name);
    let token = password::generate_token();
    let (hash, uid, ip_s) = (password::hash_token(&token), user.id, ip.to_string());
    let actor = format!("user:{}", user.username);
    state
        .store
        .run(move |s| {
            s.insert_console_session(&hash, uid, now, &ip_s)?;
            s.audit(
                now,
                &actor,
                "console.login",
                &actor,
                Some(&format!("from {ip_s}")),
            )
        })
        .await?;
    let max = i64::try_from(state.config.console.session_max_secs).unwrap_or(i64::MAX);
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .cookie(session_cookie(&state, token, Some(max)))
        .finish())
}

pub async fn logout(
    req: HttpRequest,
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let token = req
        .cookie(COOKIE)
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let hash = password::hash_token(&token);
    let (now, actor) = (state.now(), ctx.actor());
    state
        .store
        .run(move |s| {
            s.delete_console_session(&hash)?;
            s.audit(now, &actor, "console.logout", &actor, None)
        })
        .await?;
    let mut gone = session_cookie(&state, String::new(), Some(0));
    gone.make_removal();
    let mut res = HttpResponse::SeeOther();
    res.insert_header((header::LOCATION, "/login?logged_out=1"))
        .insert_header(("HX-Redirect", "/login?logged_out=1"))
        .cookie(gone);
    Ok(res.finish())
}

#[derive(askama::Template)]
#[template(path = "console/password.html")]
struct PasswordPage {
    ctx: Layout,
    error: Option<String>,
    done: bool,
}

pub async fn password_form(ctx: Ctx<Viewer>) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::OK,
        &PasswordPage {
            ctx: ctx.layout("account"),
            error: None,
            done: false,
        },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// Shortest password the console accepts (as `ferroacs user add`).
const MIN_PASSWORD: usize = usecases::admin::MIN_PASSWORD_LEN;

pub async fn change_password(
    ctx: Ctx<Viewer>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: PasswordForm = ctx.form()?;
    let fail = |msg: &str| {
        render(
            StatusCode::BAD_REQUEST,
            &PasswordPage {
                ctx: ctx.layout("account"),
                error: Some(msg.to_string()),
                done: false,
            },
        )
    };
    if f.new != f.confirm {
        return fail("The new password and its confirmation differ.");
    }
    if f.new.chars().count() < MIN_PASSWORD {
        return fail("The new password needs at least 8 characters.");
    }
    let name = ctx.session.username.clone();
    let user = state
        .store
        .run(move |s| s.user_by_name(&name))
        .await?
        .ok_or_else(|| ConsoleError::Unauthorized("your account no longer exists".into()))?;
    let (cur, stored) = (f.current.clone(), user.password_hash.clone());
    let verified = tokio::task::spawn_blocking(move || password::verify_password(&cur, &stored))
        .await
        .map_err(Error::internal)?
        .unwrap_or(false);
    if !verified {
        return fail("The current password is wrong.");
    }
    usecases::admin::set_user_password(&state.ctx(), &ctx.as_actor(), &user.username, &f.new)
        .await?;
    // Other sessions of this user end: a changed password locks out whoever else had it.
    let (uid, sid) = (user.id, ctx.session.id);
    state
        .store
        .run(move |s| s.delete_user_console_sessions(uid, Some(sid)))
        .await?;
    render(
        StatusCode::OK,
        &PasswordPage {
            ctx: ctx.layout("account"),
            error: None,
            done: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let min = 60_000;
        assert_eq!(expired(0, 0, 29 * min, 1800, 43_200), None);
        assert!(expired(0, 0, 31 * min, 1800, 43_200).is_some());
        // Active all the time, but older than the absolute limit.
        assert!(expired(0, 12 * 60 * min, 12 * 60 * min + 1, 1800, 43_200).is_some());
        assert_eq!(
            expired(0, 11 * 60 * min, 11 * 60 * min + 1, 1800, 43_200),
            None
        );
    }

    #[test]
    fn csrf_token_is_tied_to_the_session_token() {
        let a = csrf_for("fac_one");
        assert_eq!(a, csrf_for("fac_one"));
        assert_ne!(a, csrf_for("fac_two"));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn only_local_paths_are_login_targets() {
        assert_eq!(safe_next(Some("/devices?q=x")), "/devices?q=x");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
