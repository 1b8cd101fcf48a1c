//! Phones that fetch configuration files: create, change, delete, import from CSV, profiles,
//! activation codes and "re-provision now" (SIP NOTIFY check-sync). Their lines are the
//! device's lines: the line use cases of `voip` on the phone's device id, with the CSV
//! checks shared through `csv_text`.

use super::{Actor, Ctx, Op, Target};
use crate::domain::phones::{self, PhoneImportReport, PhoneInput, PhoneView, ProfileView};
use crate::error::{Error, Result};
use crate::phones::{Mac, Settings};

/// Largest CSV file a phone import takes.
pub const MAX_CSV_BYTES: usize = 4 * 1024 * 1024;

fn detail(input: &PhoneInput) -> String {
    format!(
        "vendor {}, model {}, profile {}, file password {}, digest {}",
        input.vendor,
        input.model,
        input.profile.as_deref().unwrap_or("-"),
        match input.file_password.as_deref() {
            None => "unchanged",
            Some("") => "cleared",
            Some(_) => "set",
        },
        match input.digest_user.as_deref() {
            None => "unchanged".to_string(),
            Some("") => "removed".to_string(),
            Some(u) => format!("user {u}, password set"),
        }
    )
}

/// Give a phone a new one-time activation code (shown once; any earlier code stops
/// working). The audit entry never holds the code.
pub async fn activation_code(
    ctx: &Ctx<'_>,
    actor: &Actor,
    mac: &str,
) -> Result<phones::ActivationCode> {
    actor.require(Op::PhoneActivationCode)?;
    let mac = phones::parse_mac("mac", mac)?;
    let code =
        phones::new_activation_code(ctx.store, ctx.config, &ctx.services.phones, mac, ctx.now())
            .await?;
    ctx.audit(
        actor,
        Op::PhoneActivationCode,
        Target::Phone(mac.lower()),
        Some(format!("valid until {}", code.expires_at)),
    )
    .await?;
    Ok(code)
}

/// Create a phone (409 when its MAC exists).
pub async fn create(ctx: &Ctx<'_>, actor: &Actor, input: PhoneInput) -> Result<PhoneView> {
    actor.require(Op::PhoneCreate)?;
    let mac = phones::parse_mac("mac", input.mac.as_deref().unwrap_or(""))?;
    let d = detail(&input);
    let (view, _) = phones::save(ctx.store, mac, input, true, false, ctx.now()).await?;
    ctx.services.phones.invalidate(&view.mac);
    ctx.audit(
        actor,
        Op::PhoneCreate,
        Target::Phone(view.mac.clone()),
        Some(d),
    )
    .await?;
    Ok(view)
}

/// Create or replace the phone of `mac`; returns it and whether it was created.
pub async fn put(
    ctx: &Ctx<'_>,
    actor: &Actor,
    mac: &str,
    input: PhoneInput,
) -> Result<(PhoneView, bool)> {
    actor.require(Op::PhoneUpdate)?;
    let mac = phones::parse_mac("mac", mac)?;
    if let Some(m) = input.mac.as_deref() {
        if phones::parse_mac("mac", m)? != mac {
            return Err(Error::invalid("mac", "differs from the MAC in the path"));
        }
    }
    let d = detail(&input);
    let (view, created) = phones::save(ctx.store, mac, input, false, false, ctx.now()).await?;
    ctx.services.phones.invalidate(&view.mac);
    ctx.audit(
        actor,
        Op::PhoneUpdate,
        Target::Phone(view.mac.clone()),
        Some(d),
    )
    .await?;
    Ok((view, created))
}

/// Delete a phone with its lines, uploads and fetch log.
pub async fn delete(ctx: &Ctx<'_>, actor: &Actor, mac: &str) -> Result<()> {
    actor.require(Op::PhoneDelete)?;
    let mac = phones::parse_mac("mac", mac)?;
    // Fetches still waiting go first, so the phone's log goes with it.
    phones::settle_fetch_log(ctx.store, &ctx.services.phones).await?;
    phones::delete(ctx.store, mac).await?;
    ctx.services.phones.invalidate(&mac.lower());
    ctx.audit(actor, Op::PhoneDelete, Target::Phone(mac.lower()), None)
        .await
}

/// Import phones from CSV (`mac,vendor,model[,profile][,tags]`).
pub async fn import(
    ctx: &Ctx<'_>,
    actor: &Actor,
    csv: &[u8],
    dry_run: bool,
) -> Result<PhoneImportReport> {
    actor.require(Op::PhoneImport)?;
    let text = super::csv_text(csv, MAX_CSV_BYTES)?;
    let report = phones::import_csv(ctx.store, text, dry_run, ctx.now()).await?;
    if !dry_run {
        ctx.services.phones.invalidate_all();
        ctx.audit(
            actor,
            Op::PhoneImport,
            Target::Phones,
            Some(format!(
                "{} phones imported, {} rows rejected",
                report.imported, report.rejected
            )),
        )
        .await?;
    }
    Ok(report)
}

/// Create or replace a profile.
pub async fn put_profile(
    ctx: &Ctx<'_>,
    actor: &Actor,
    name: &str,
    settings: Settings,
) -> Result<(ProfileView, bool)> {
    actor.require(Op::PhoneProfileSave)?;
    let (view, created) = phones::put_profile(ctx.store, name, settings, ctx.now()).await?;
    ctx.audit(
        actor,
        Op::PhoneProfileSave,
        Target::PhoneProfile(name.to_string()),
        None,
    )
    .await?;
    Ok((view, created))
}

pub async fn delete_profile(ctx: &Ctx<'_>, actor: &Actor, name: &str) -> Result<()> {
    actor.require(Op::PhoneProfileDelete)?;
    phones::delete_profile(ctx.store, name).await?;
    ctx.audit(
        actor,
        Op::PhoneProfileDelete,
        Target::PhoneProfile(name.to_string()),
        None,
    )
    .await
}

/// Give a model's phones a firmware file of the file store.
pub async fn put_model_firmware(
    ctx: &Ctx<'_>,
    actor: &Actor,
    vendor: &str,
    model: &str,
    input: phones::ModelFirmwareInput,
) -> Result<(phones::ModelFirmwareView, bool)> {
    actor.require(Op::PhoneModelFirmwareSave)?;
    let (view, created) =
        phones::put_model_firmware(ctx.store, vendor, model, input, ctx.now()).await?;
    ctx.audit(
        actor,
        Op::PhoneModelFirmwareSave,
        Target::PhoneModel(format!("{}/{}", view.vendor, view.model)),
        Some(format!("file {}, version {}", view.file_id, view.version)),
    )
    .await?;
    Ok((view, created))
}

pub async fn delete_model_firmware(
    ctx: &Ctx<'_>,
    actor: &Actor,
    vendor: &str,
    model: &str,
) -> Result<()> {
    actor.require(Op::PhoneModelFirmwareDelete)?;
    phones::delete_model_firmware(ctx.store, vendor, model).await?;
    ctx.audit(
        actor,
        Op::PhoneModelFirmwareDelete,
        Target::PhoneModel(format!(
            "{}/{}",
            vendor.to_ascii_lowercase(),
            model.to_ascii_lowercase()
        )),
        None,
    )
    .await
}

/// Send SIP NOTIFY check-sync to the phone (its contact, else the source of its last fetch
/// on port 5060), checked against the connection-request target policy.
pub async fn resync(
    ctx: &Ctx<'_>,
    actor: &Actor,
    mac: &str,
    reboot: bool,
) -> Result<phones::ResyncResult> {
    actor.require(Op::PhoneResync)?;
    let mac: Mac = phones::parse_mac("mac", mac)?;
    // The phone's contact defaults to the source of its last fetch, maybe still waiting.
    phones::settle_fetch_log(ctx.store, &ctx.services.phones).await?;
    let result = phones::resync(
        ctx.store,
        &ctx.services.connreq_policy,
        mac,
        reboot,
        std::time::Duration::from_millis(ctx.config.api.connection_request_timeout_ms),
    )
    .await?;
    ctx.audit(
        actor,
        Op::PhoneResync,
        Target::Phone(mac.lower()),
        Some(format!("to {}: {}", result.target, result.outcome)),
    )
    .await?;
    Ok(result)
}
