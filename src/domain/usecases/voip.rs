//! VoIP lines (assign, delete, CSV import) and presets (create, replace, delete).

use super::{Actor, Ctx, Op, Target};
use crate::domain::connreq::CrResult;
use crate::domain::lines::{self, ImportReport, LineInput, LineView};
use crate::domain::presets::{self, PresetInput, PresetView};
use crate::error::{Error, Result};

/// Largest CSV file an import takes.
pub const MAX_CSV_BYTES: usize = 16 * 1024 * 1024;
/// Most devices one preset save sends connection requests to.
pub const MAX_PRESET_CR: i64 = 100_000;

/// Assign (or replace) the SIP account of line `line`; with `connection_request` the device
/// is asked for a session at once.
pub async fn assign_line(
    ctx: &Ctx<'_>,
    actor: &Actor,
    device_id: &str,
    line: i32,
    input: LineInput,
    connection_request: bool,
) -> Result<(LineView, Option<CrResult>)> {
    actor.require(Op::LineAssign)?;
    let password = if input.password.is_some() {
        "set"
    } else {
        "unchanged"
    };
    let account = serde_json::to_string(&input.account)?;
    let view = lines::assign(ctx.store, device_id, line, input, ctx.now()).await?;
    ctx.audit(
        actor,
        Op::LineAssign,
        Target::Line(device_id.to_string(), line),
        Some(format!("{account}, password {password}")),
    )
    .await?;
    let cr = if connection_request {
        Some(super::devices::connection_request(ctx, actor, device_id).await?)
    } else {
        None
    };
    Ok((view, cr))
}

/// Remove the account of line `line`.
pub async fn delete_line(ctx: &Ctx<'_>, actor: &Actor, device_id: &str, line: i32) -> Result<()> {
    actor.require(Op::LineDelete)?;
    lines::delete(ctx.store, device_id, line).await?;
    ctx.audit(
        actor,
        Op::LineDelete,
        Target::Line(device_id.to_string(), line),
        None,
    )
    .await
}

/// Import accounts from CSV text; bad rows are reported and skipped whole. A dry run checks
/// every row, stores nothing and writes no audit entry.
pub async fn import_lines(
    ctx: &Ctx<'_>,
    actor: &Actor,
    csv: &[u8],
    dry_run: bool,
) -> Result<ImportReport> {
    actor.require(Op::LineImport)?;
    let text = super::csv_text(csv, MAX_CSV_BYTES)?;
    let report = lines::import_csv(ctx.store, text, dry_run, ctx.now()).await?;
    if !dry_run {
        let detail = format!(
            "{} lines imported, {} rows rejected",
            report.imported, report.rejected
        );
        ctx.audit(actor, Op::LineImport, Target::Lines, Some(detail))
            .await?;
    }
    Ok(report)
}

/// How a preset is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveMode {
    /// Only a new preset (a name that exists is a conflict).
    Create,
    /// Create or replace the preset named in the path; the body may repeat the name.
    Put,
}

/// A preset saved: the stored preset, whether it was created, and to how many devices a
/// connection request goes (when asked for).
#[derive(Debug, Clone)]
pub struct SavedPreset {
    pub preset: PresetView,
    pub created: bool,
    pub connection_requests: Option<usize>,
}

/// Create or replace a preset. With `Put`, `name` is the preset's name (from the path): the
/// input's name must be empty or equal to it. With `connection_request`, the devices the
/// filter may select are asked for a session in the background.
pub async fn save_preset(
    ctx: &Ctx<'_>,
    actor: &Actor,
    mode: SaveMode,
    name: Option<&str>,
    mut input: PresetInput,
    connection_request: bool,
) -> Result<SavedPreset> {
    // The role of both is the same; which action is audited depends on what existed.
    actor.require(Op::PresetCreate)?;
    actor.require(Op::PresetUpdate)?;
    if let Some(name) = name {
        if input.name.trim().is_empty() {
            input.name = name.to_string();
        } else if input.name.trim() != name {
            return Err(Error::invalid(
                "name",
                format!(
                    "{:?} differs from the name in the path ({name:?}); presets cannot be renamed",
                    input.name
                ),
            ));
        }
    }
    if mode == SaveMode::Create {
        let n = input.name.trim().to_string();
        if ctx.store.run(move |s| s.get_preset(&n)).await?.is_some() {
            let n = input.name.trim();
            return Err(Error::Conflict(format!(
                "preset {n} exists; PUT /api/v1/presets/{n} replaces it"
            )));
        }
    }
    let filter = input.filter.clone();
    let (view, created) = presets::put(ctx.store, input, ctx.now()).await?;
    let op = if created {
        Op::PresetCreate
    } else {
        Op::PresetUpdate
    };
    let detail = format!(
        "revision {}, priority {}, filter {:?}",
        view.revision, view.priority, view.filter
    );
    ctx.audit(actor, op, Target::Preset(view.name.clone()), Some(detail))
        .await?;
    let connection_requests = if connection_request {
        let f = presets::parse_filter(&filter)?;
        let ids = ctx
            .store
            .run(move |s| s.search_device_ids(&f, None, MAX_PRESET_CR))
            .await?;
        let count = ids.len();
        if count > 0 {
            ctx.hooks().wake(ids);
        }
        Some(count)
    } else {
        None
    };
    Ok(SavedPreset {
        preset: view,
        created,
        connection_requests,
    })
}

/// Delete a preset (values it set stay on the devices).
pub async fn delete_preset(ctx: &Ctx<'_>, actor: &Actor, name: &str) -> Result<()> {
    actor.require(Op::PresetDelete)?;
    presets::delete(ctx.store, name).await?;
    ctx.audit(
        actor,
        Op::PresetDelete,
        Target::Preset(name.to_string()),
        None,
    )
    .await
}
