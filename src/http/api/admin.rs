//! Administration: API tokens, operator accounts, the audit log, the effective settings, and
//! who the caller is.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{AuditDto, Page, TokenDto, UserDto};
use super::{int_cursor, page_limit, Caller, Role};
use crate::domain::usecases::admin;
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list_tokens(state: web::Data<AppState>, q: web::Query<PageQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = state.store.run(|s| s.list_tokens()).await?;
    let items: Vec<TokenDto> = rows
        .iter()
        .filter(|t| cursor.is_none_or(|c| t.id > c))
        .take(limit as usize)
        .map(TokenDto::from)
        .collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |t| t.id.to_string())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: String,
}

pub async fn create_token(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewToken>,
) -> ApiResult {
    let b = body.into_inner();
    let role = Role::from_input("role", &b.role)?;
    let t = admin::create_token(&state.ctx(), &caller.as_actor(), &b.name, role).await?;
    let mut v = serde_json::to_value(TokenDto::from(&t.row)).map_err(Error::from)?;
    v["token"] = serde_json::Value::String(t.secret);
    Ok(HttpResponse::Created().json(v))
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> ApiResult {
    admin::revoke_token(&state.ctx(), &caller.as_actor(), id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn list_users(state: web::Data<AppState>, q: web::Query<PageQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = state.store.run(|s| s.list_users()).await?;
    let items: Vec<UserDto> = rows
        .iter()
        .filter(|u| cursor.is_none_or(|c| u.id > c))
        .take(limit as usize)
        .map(UserDto::from)
        .collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |u| u.id.to_string())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: String,
}

pub async fn create_user(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewUser>,
) -> ApiResult {
    let b = body.into_inner();
    let role = Role::from_input("role", &b.role)?;
    let row = admin::create_user(
        &state.ctx(),
        &caller.as_actor(),
        &b.username,
        &b.password,
        role,
    )
    .await?;
    Ok(HttpResponse::Created().json(UserDto::from(&row)))
}

pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    admin::delete_user(&state.ctx(), &caller.as_actor(), &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    password: String,
}

pub async fn set_password(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: web::Json<NewPassword>,
) -> ApiResult {
    admin::set_user_password(&state.ctx(), &caller.as_actor(), &name, &body.password).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn audit(state: web::Data<AppState>, q: web::Query<PageQuery>) -> ApiResult {
    let limit = page_limit(q.limit);
    let cursor = int_cursor(&q.cursor)?;
    let rows = state
        .store
        .run(move |s| s.list_audit(cursor, limit))
        .await?;
    let items: Vec<AuditDto> = rows.iter().map(AuditDto::from).collect();
    Ok(HttpResponse::Ok().json(Page::new(items, limit, |a| a.id.to_string())))
}

pub async fn settings(state: web::Data<AppState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "config_toml": state.config.redacted_toml(),
        "database": state.store.backend_name(),
        "node": state.node_id,
    })))
}

pub async fn whoami(caller: Caller) -> ApiResult {
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "actor": caller.actor,
        "role": caller.role.as_str(),
    })))
}

pub async fn disable_user(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    admin::set_user_disabled(&state.ctx(), &caller.as_actor(), &name, true).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn enable_user(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    admin::set_user_disabled(&state.ctx(), &caller.as_actor(), &name, false).await?;
    Ok(HttpResponse::NoContent().finish())
}
