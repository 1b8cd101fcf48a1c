//! Users and API tokens (admins only): create and delete accounts, set a password (which
//! ends that user's console sessions), create a token (its secret shown once, never
//! stored) and revoke one. Every action is the use case the API calls.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::session::{urlencode, Admin, Ctx};
use super::view::{ago, utc};
use super::{render, ConsoleError, Layout};
use crate::domain::usecases::{self, Role};
use crate::error::Error;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/users", web::get().to(page))
        .route("/users/create", web::post().to(create_user))
        .route("/users/{name}/password", web::post().to(set_password))
        .route("/users/{name}/delete", web::post().to(delete_user))
        .route("/users/{name}/disable", web::post().to(disable_user))
        .route("/users/{name}/enable", web::post().to(enable_user))
        .route("/tokens/create", web::post().to(create_token))
        .route("/tokens/{id}/revoke", web::post().to(revoke_token));
}

pub struct UserItem {
    pub name: String,
    pub href: String,
    pub role: String,
    pub created: String,
    pub me: bool,
    pub disabled: bool,
}

pub struct TokenItem {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created: String,
    pub last_used: String,
    /// `live` or `revoked <when>`
    pub state: String,
    pub live: bool,
}

#[derive(askama::Template)]
#[template(path = "console/users.html")]
struct UsersPage {
    ctx: Layout,
    users: Vec<UserItem>,
    tokens: Vec<TokenItem>,
    roles: &'static [&'static str],
    notice: Option<String>,
    error: Option<String>,
    /// A token just created: its name and secret, shown this once.
    secret: Option<(String, String)>,
}

const ROLES: &[&str] = &["viewer", "operator", "admin"];

async fn build(
    ctx: Layout,
    state: &AppState,
    notice: Option<String>,
    error: Option<String>,
    secret: Option<(String, String)>,
) -> Result<UsersPage, ConsoleError> {
    let now = state.now();
    let (users, tokens) = state
        .store
        .run(|s| Ok((s.list_users()?, s.list_tokens()?)))
        .await?;
    let me = ctx.user.clone().unwrap_or_default();
    Ok(UsersPage {
        users: users
            .into_iter()
            .map(|u| UserItem {
                href: format!("/users/{}", urlencode(&u.username)),
                me: u.username == me,
                disabled: usecases::admin::is_disabled(&u),
                name: u.username,
                role: u.role,
                created: utc(u.created_at),
            })
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenItem {
                id: t.id,
                name: t.name,
                role: t.role,
                created: utc(t.created_at),
                last_used: t
                    .last_used_at
                    .map(|at| ago(now, Some(at)))
                    .unwrap_or_else(|| "never".into()),
                state: match t.revoked_at {
                    Some(at) => format!("revoked {}", ago(now, Some(at))),
                    None => "live".into(),
                },
                live: t.revoked_at.is_none(),
            })
            .collect(),
        roles: ROLES,
        ctx,
        notice,
        error,
        secret,
    })
}

async fn page(ctx: Ctx<Admin>, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    render(
        StatusCode::OK,
        &build(ctx.layout("users"), &state, None, None, None).await?,
    )
}

/// The page again, with what the action did (or why it was refused: 422).
async fn outcome(
    ctx: &Ctx<Admin>,
    state: &AppState,
    result: Result<String, Error>,
    secret: Option<(String, String)>,
) -> Result<HttpResponse, ConsoleError> {
    match result {
        Ok(notice) => render(
            StatusCode::OK,
            &build(ctx.layout("users"), state, Some(notice), None, secret).await?,
        ),
        Err(e @ (Error::Invalid { .. } | Error::Conflict(_) | Error::NotFound { .. })) => render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &build(ctx.layout("users"), state, None, Some(e.to_string()), None).await?,
        ),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    role: String,
}

async fn create_user(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: NewUser = ctx.form()?;
    let result = async {
        let role = Role::from_input("role", &f.role)?;
        let u = usecases::admin::create_user(
            &state.ctx(),
            &ctx.as_actor(),
            f.username.trim(),
            &f.password,
            role,
        )
        .await?;
        Ok(format!(
            "User {} created with the {} role.",
            u.username, u.role
        ))
    }
    .await;
    outcome(&ctx, &state, result, None).await
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn set_password(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let f: NewPassword = ctx.form()?;
    let name = name.into_inner();
    let result =
        usecases::admin::set_user_password(&state.ctx(), &ctx.as_actor(), &name, &f.password)
            .await
            .map(|()| format!("Password of {name} set; their console sessions ended."));
    outcome(&ctx, &state, result, None).await
}

async fn delete_user(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let name = name.into_inner();
    if name == ctx.session.username {
        return outcome(
            &ctx,
            &state,
            Err(Error::invalid(
                "username",
                "you cannot delete your own account; ask another admin",
            )),
            None,
        )
        .await;
    }
    let result = usecases::admin::delete_user(&state.ctx(), &ctx.as_actor(), &name)
        .await
        .map(|()| format!("User {name} deleted."));
    outcome(&ctx, &state, result, None).await
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
    role: String,
}

async fn create_token(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let f: NewToken = ctx.form()?;
    let mut secret = None;
    let result = async {
        let role = Role::from_input("role", &f.role)?;
        let t = usecases::admin::create_token(&state.ctx(), &ctx.as_actor(), f.name.trim(), role)
            .await?;
        secret = Some((t.row.name.clone(), t.secret));
        Ok(format!(
            "Token {} created with the {} role.",
            t.row.name, t.row.role
        ))
    }
    .await;
    outcome(&ctx, &state, result, secret).await
}

async fn revoke_token(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> Result<HttpResponse, ConsoleError> {
    let id = id.into_inner();
    let result = usecases::admin::revoke_token(&state.ctx(), &ctx.as_actor(), id)
        .await
        .map(|()| format!("Token {id} revoked."));
    outcome(&ctx, &state, result, None).await
}

async fn disable_user(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let name = name.into_inner();
    let result = usecases::admin::set_user_disabled(&state.ctx(), &ctx.as_actor(), &name, true)
        .await
        .map(|()| format!("User {name} disabled; their console sessions ended."));
    outcome(&ctx, &state, result, None).await
}

async fn enable_user(
    ctx: Ctx<Admin>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ConsoleError> {
    let name = name.into_inner();
    let result = usecases::admin::set_user_disabled(&state.ctx(), &ctx.as_actor(), &name, false)
        .await
        .map(|()| format!("User {name} enabled."));
    outcome(&ctx, &state, result, None).await
}
