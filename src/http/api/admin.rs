//! Administration: API tokens, operator accounts, the audit log, the effective settings, and
//! who the caller is.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::{AuditDto, Page, TokenDto, UserDto};
use super::{int_cursor, page_limit, Caller, Role};
use crate::error::Error;
use crate::http::error::ApiError;
use crate::state::AppState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

fn role_of(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| ApiError(Error::invalid("role", "one of viewer, operator, admin")))
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
    let role = role_of(&b.role)?;
    if b.name.is_empty() || b.name.len() > 64 {
        return Err(Error::invalid("name", "1 to 64 characters").into());
    }
    let token = crate::auth::password::generate_token();
    let hash = crate::auth::password::hash_token(&token);
    let (now, actor) = (state.now(), caller.actor.clone());
    let row = state
        .store
        .run(move |s| {
            let row = s.insert_token(&b.name, &hash, role.as_str(), now)?;
            s.audit(
                now,
                &actor,
                "token.create",
                &format!("token/{}", row.id),
                Some(&format!("name={} role={}", row.name, row.role)),
            )?;
            Ok(row)
        })
        .await?;
    let mut v = serde_json::to_value(TokenDto::from(&row)).map_err(Error::from)?;
    v["token"] = serde_json::Value::String(token);
    Ok(HttpResponse::Created().json(v))
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<i64>,
) -> ApiResult {
    let id = id.into_inner();
    let (now, actor) = (state.now(), caller.actor.clone());
    let done = state
        .store
        .run(move |s| {
            let done = s.revoke_token(id, now)?;
            if done {
                s.audit(now, &actor, "token.revoke", &format!("token/{id}"), None)?;
            }
            Ok(done)
        })
        .await?;
    if !done {
        return Err(Error::not_found(format!("live token {id}")).into());
    }
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
    let role = role_of(&b.role)?;
    if b.username.is_empty() || b.username.len() > 64 {
        return Err(Error::invalid("username", "1 to 64 characters").into());
    }
    if b.password.len() < 8 {
        return Err(Error::invalid("password", "at least 8 characters").into());
    }
    let pw = b.password.clone();
    let hash = tokio::task::spawn_blocking(move || crate::auth::password::hash_password(&pw))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)?;
    let (now, actor) = (state.now(), caller.actor.clone());
    let row = state
        .store
        .run(move |s| {
            let row = s.insert_user(&b.username, &hash, role.as_str(), now)?;
            s.audit(
                now,
                &actor,
                "user.create",
                &format!("user/{}", row.username),
                Some(&format!("role={}", row.role)),
            )?;
            Ok(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(UserDto::from(&row)))
}

pub async fn delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> ApiResult {
    let name = name.into_inner();
    let (now, actor, n) = (state.now(), caller.actor.clone(), name.clone());
    let done = state
        .store
        .run(move |s| {
            let done = s.delete_user(&n)?;
            if done {
                s.audit(now, &actor, "user.delete", &format!("user/{n}"), None)?;
            }
            Ok(done)
        })
        .await?;
    if !done {
        return Err(Error::not_found(format!("user {name}")).into());
    }
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
