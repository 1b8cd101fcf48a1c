//! Saved searches of the device list: private to the user who saved them, so any role may
//! keep its own; they change nothing on devices and are not audited.

use super::{Actor, Ctx};
use crate::error::{Error, Result};
use crate::store::saved_searches::SavedSearchRow;

/// Most searches one user keeps.
pub const MAX_SAVED: i64 = 50;
/// Longest saved query string.
pub const MAX_QUERY_LEN: usize = 4096;

async fn user_id(ctx: &Ctx<'_>, actor: &Actor) -> Result<i64> {
    let name = actor
        .username()
        .ok_or_else(|| Error::Forbidden("only a logged-in user saves searches".into()))?
        .to_string();
    ctx.store
        .run(move |s| s.user_by_name(&name))
        .await?
        .map(|u| u.id)
        .ok_or_else(|| Error::Forbidden("this account no longer exists".into()))
}

/// The actor's saved searches, by name.
pub async fn list(ctx: &Ctx<'_>, actor: &Actor) -> Result<Vec<SavedSearchRow>> {
    let uid = user_id(ctx, actor).await?;
    ctx.store
        .run(move |s| s.saved_searches(uid, MAX_SAVED))
        .await
}

/// Save the device list's query string under `name` (replacing a search of that name).
pub async fn save(ctx: &Ctx<'_>, actor: &Actor, name: &str, query: &str) -> Result<()> {
    let name = name.trim().to_string();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "give the search a name of 1 to 64 characters",
        ));
    }
    // A URL query string as the list writes it (percent-encoded): it becomes a link and a
    // redirect target below `/devices?`, so nothing else gets in.
    if query.len() > MAX_QUERY_LEN || !query.bytes().all(|b| b.is_ascii_graphic() && b != b'#') {
        return Err(Error::invalid(
            "query",
            format!("the device list's query string, at most {MAX_QUERY_LEN} characters"),
        ));
    }
    let uid = user_id(ctx, actor).await?;
    let (query, now) = (query.to_string(), ctx.now());
    ctx.store
        .run(move |s| {
            let exists = s
                .saved_searches(uid, MAX_SAVED)?
                .iter()
                .any(|r| r.name == name);
            if !exists && s.count_saved_searches(uid)? >= MAX_SAVED {
                return Err(Error::invalid(
                    "name",
                    format!("you keep {MAX_SAVED} searches already; delete one first"),
                ));
            }
            s.save_search(uid, &name, &query, now)
        })
        .await
}

/// Delete one of the actor's saved searches.
pub async fn delete(ctx: &Ctx<'_>, actor: &Actor, id: i64) -> Result<()> {
    let uid = user_id(ctx, actor).await?;
    if ctx
        .store
        .run(move |s| s.delete_saved_search(uid, id))
        .await?
    {
        Ok(())
    } else {
        Err(Error::not_found(format!("saved search {id}")))
    }
}
