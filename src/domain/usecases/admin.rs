//! API tokens and operator accounts.

use super::{audit_with, Actor, Ctx, Op, Role, Target};
use crate::error::{Error, Result};
use crate::store::users::{TokenRow, UserRow};

/// The filters of the audit log (read by admins).
pub use crate::store::audit::AuditFilter;

/// A disabled account's stored hash starts with this (as `!` in a Unix shadow file): no
/// password verifies against it, and enabling the account removes it again.
pub const DISABLED_PREFIX: &str = "!";

/// Whether the account with this stored password hash is disabled.
pub fn is_disabled(user: &UserRow) -> bool {
    user.password_hash.starts_with(DISABLED_PREFIX)
}

/// Shortest password accepted for an operator account.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A token just created; `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub row: TokenRow,
    pub secret: String,
}

fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::invalid(field, "1 to 64 characters"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(field, "no control characters"));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<()> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(Error::invalid(
            "password",
            format!("at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

async fn hash_password(password: &str) -> Result<String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || crate::auth::password::hash_password(&pw))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

/// Create an API token with `role`.
pub async fn create_token(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    role: Role,
) -> Result<CreatedToken> {
    actor.require(Op::TokenCreate)?;
    check_name("name", name)?;
    let secret = crate::auth::password::generate_token();
    let hash = crate::auth::password::hash_token(&secret);
    let (now, who, name) = (ctx.now(), actor.name.clone(), name.to_string());
    let row = ctx
        .store
        .run(move |s| {
            let row = s.insert_token(&name, &hash, role.as_str(), now)?;
            let detail = format!("name={} role={}", row.name, row.role);
            audit_with(
                s,
                now,
                &who,
                Op::TokenCreate,
                &Target::Token(row.id),
                Some(&detail),
            )?;
            Ok(row)
        })
        .await?;
    Ok(CreatedToken { row, secret })
}

/// Revoke a live token.
pub async fn revoke_token(ctx: &Ctx<'_>, actor: &Actor, id: i64) -> Result<()> {
    actor.require(Op::TokenRevoke)?;
    let (now, who) = (ctx.now(), actor.name.clone());
    let done = ctx
        .store
        .run(move |s| {
            let done = s.revoke_token(id, now)?;
            if done {
                audit_with(s, now, &who, Op::TokenRevoke, &Target::Token(id), None)?;
            }
            Ok(done)
        })
        .await?;
    if done {
        Ok(())
    } else {
        Err(Error::not_found(format!("live token {id}")))
    }
}

/// Create an operator account (password hashed with argon2id).
pub async fn create_user(
    ctx: &Ctx<'_>,
    actor: &Actor,
    username: &str,
    password: &str,
    role: Role,
) -> Result<UserRow> {
    actor.require(Op::UserCreate)?;
    check_name("username", username)?;
    check_password(password)?;
    let hash = hash_password(password).await?;
    let (now, who, username) = (ctx.now(), actor.name.clone(), username.to_string());
    ctx.store
        .run(move |s| {
            let row = s
                .insert_user(&username, &hash, role.as_str(), now)
                .map_err(|e| match e {
                    Error::Conflict(_) => {
                        Error::Conflict(format!("a user named {username} already exists"))
                    }
                    other => other,
                })?;
            let detail = format!("role={}", row.role);
            audit_with(
                s,
                now,
                &who,
                Op::UserCreate,
                &Target::User(row.username.clone()),
                Some(&detail),
            )?;
            Ok(row)
        })
        .await
}

/// Delete an operator account.
pub async fn delete_user(ctx: &Ctx<'_>, actor: &Actor, username: &str) -> Result<()> {
    actor.require(Op::UserDelete)?;
    let (now, who, n) = (ctx.now(), actor.name.clone(), username.to_string());
    let done = ctx
        .store
        .run(move |s| {
            let done = s.delete_user(&n)?;
            if done {
                audit_with(s, now, &who, Op::UserDelete, &Target::User(n), None)?;
            }
            Ok(done)
        })
        .await?;
    if done {
        Ok(())
    } else {
        Err(Error::not_found(format!("user {username}")))
    }
}

/// Change an account's password: an admin for anyone, every user for themself.
pub async fn set_user_password(
    ctx: &Ctx<'_>,
    actor: &Actor,
    username: &str,
    password: &str,
) -> Result<()> {
    if actor.username() != Some(username) {
        actor.require(Op::UserPassword)?;
    }
    check_password(password)?;
    let hash = hash_password(password).await?;
    let (now, who, n) = (ctx.now(), actor.name.clone(), username.to_string());
    let own = actor.username() == Some(username);
    let done = ctx
        .store
        .run(move |s| {
            // A disabled account stays disabled with its new password.
            let disabled = s.user_by_name(&n)?.as_ref().is_some_and(is_disabled);
            let hash = if disabled {
                format!("{DISABLED_PREFIX}{hash}")
            } else {
                hash
            };
            let done = s.set_user_password(&n, &hash)?;
            if done {
                // A password set by someone else ends the account's console sessions; who
                // changes their own keeps the session they do it from (the console ends
                // their other sessions).
                if !own {
                    if let Some(u) = s.user_by_name(&n)? {
                        s.delete_user_console_sessions(u.id, None)?;
                    }
                }
                audit_with(s, now, &who, Op::UserPassword, &Target::User(n), None)?;
            }
            Ok(done)
        })
        .await?;
    if done {
        Ok(())
    } else {
        Err(Error::not_found(format!("user {username}")))
    }
}

/// Disable an account (it can no longer log in; its console sessions end at once) or
/// enable it again with the password it had. Nobody disables their own account.
pub async fn set_user_disabled(
    ctx: &Ctx<'_>,
    actor: &Actor,
    username: &str,
    disabled: bool,
) -> Result<()> {
    let op = if disabled {
        Op::UserDisable
    } else {
        Op::UserEnable
    };
    actor.require(op)?;
    if disabled && actor.username() == Some(username) {
        return Err(Error::invalid(
            "username",
            "you cannot disable your own account; ask another admin",
        ));
    }
    let (now, who, n) = (ctx.now(), actor.name.clone(), username.to_string());
    ctx.store
        .run(move |s| {
            let user = s
                .user_by_name(&n)?
                .ok_or_else(|| Error::not_found(format!("user {n}")))?;
            if is_disabled(&user) == disabled {
                return Ok(());
            }
            let hash = if disabled {
                format!("{DISABLED_PREFIX}{}", user.password_hash)
            } else {
                user.password_hash
                    .trim_start_matches(DISABLED_PREFIX)
                    .to_string()
            };
            s.set_user_password(&n, &hash)?;
            if disabled {
                s.delete_user_console_sessions(user.id, None)?;
            }
            audit_with(s, now, &who, op, &Target::User(n), None)
        })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::domain::services::Services;
    use crate::domain::usecases::NoServer;
    use crate::store::Store;

    fn open() -> (tempfile::TempDir, Config, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.database.url = format!("sqlite://{}", dir.path().join("t.db").display());
        config.files.dir = dir.path().join("files");
        let store = Store::open(&config.database).unwrap();
        (dir, config, store)
    }

    #[tokio::test]
    async fn accounts_are_checked_and_audited_once() {
        let (_dir, config, store) = open();
        let services = Services::new(&config, &store, &[]).unwrap();
        let clock = || 1_000;
        let ctx = Ctx::new(&store, &config, &services, &clock, Arc::new(NoServer));
        let admin = Actor::cli();
        let e = create_user(&ctx, &admin, "alice", "short", Role::Viewer)
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("password:"), "{e}");
        create_user(&ctx, &admin, "alice", "long enough", Role::Viewer)
            .await
            .unwrap();
        let e = create_user(&ctx, &admin, "alice", "long enough", Role::Viewer)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "a user named alice already exists");

        // Everyone may change their own password, nobody but an admin another's.
        let alice = Actor::user("alice", Role::Viewer);
        set_user_password(&ctx, &alice, "alice", "another one")
            .await
            .unwrap();
        let bob = Actor::user("bob", Role::Operator);
        let e = set_user_password(&ctx, &bob, "alice", "hijacked!")
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        let e = create_token(&ctx, &bob, "t", Role::Admin)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
        let e = delete_user(&ctx, &admin, "nobody").await.unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");

        let audit = store.list_audit(None, 100).unwrap();
        let mut seen: Vec<(String, String, String, Option<String>)> = audit
            .into_iter()
            .map(|a| (a.actor, a.action, a.target, a.detail))
            .collect();
        seen.reverse();
        assert_eq!(
            seen,
            [
                (
                    "cli".to_string(),
                    "user.create".to_string(),
                    "user/alice".to_string(),
                    Some("role=viewer".to_string())
                ),
                (
                    "user:alice".into(),
                    "user.password".into(),
                    "user/alice".into(),
                    None
                ),
            ],
            "refused operations leave no entry"
        );
    }
}
