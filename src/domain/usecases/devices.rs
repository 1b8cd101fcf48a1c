//! Devices: provisioning (identity, CWMP credentials, tags), deletion, connection requests.

use serde::Deserialize;

use super::{audit_with, Actor, Ctx, Op, Target};
use crate::domain::connreq::{CrResult, Wake};
use crate::error::{Error, Result};
use crate::store::devices::{DeviceRow, ProvisionDevice};

/// What to create or change about a device (the body of `PUT /api/v1/devices/{id}`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInput {
    /// Identity; required for a new device, must match for an existing one.
    pub oui: Option<String>,
    pub product_class: Option<String>,
    pub serial_number: Option<String>,
    /// CWMP username/password the device must log in with (both or neither).
    pub cwmp_username: Option<String>,
    pub cwmp_password: Option<String>,
    /// `true` removes the device's own credentials (it then uses the default ones).
    #[serde(default)]
    pub clear_credentials: bool,
    /// Replaces the device's tags when given.
    pub tags: Option<Vec<String>>,
}

/// The credentials change an input asks for: `None` keeps them, `Some(None)` clears them.
type CredentialChange = Option<Option<(String, String)>>;

/// Check an input against the existing device (if any) and the id it is stored under.
fn plan(id: &str, existing: Option<&DeviceRow>, input: &ProvisionInput) -> Result<ProvisionDevice> {
    let (oui, pc, sn) = match existing {
        Some(d) => (
            d.oui.clone(),
            d.product_class.clone(),
            d.serial_number.clone(),
        ),
        None => match (&input.oui, &input.product_class, &input.serial_number) {
            (Some(o), pc, Some(s)) => (o.clone(), pc.clone().unwrap_or_default(), s.clone()),
            _ => {
                return Err(Error::invalid(
                    "body",
                    "a new device needs oui, product_class and serial_number",
                ))
            }
        },
    };
    for (given, known, field) in [
        (&input.oui, &oui, "oui"),
        (&input.product_class, &pc, "product_class"),
        (&input.serial_number, &sn, "serial_number"),
    ] {
        if given.as_ref().is_some_and(|g| g != known) {
            return Err(Error::invalid(
                field,
                format!("does not match the device ({known}); identity fields cannot change"),
            ));
        }
    }
    let expected = crate::cwmp::device_id(&oui, &pc, &sn);
    if expected != id {
        return Err(Error::invalid(
            "id",
            format!("the id of this device is {expected} (OUI-ProductClass-SerialNumber)"),
        ));
    }
    let creds: CredentialChange =
        match (
            &input.cwmp_username,
            &input.cwmp_password,
            input.clear_credentials,
        ) {
            (Some(u), Some(p), false) if !u.is_empty() && !p.is_empty() => {
                Some(Some((u.clone(), p.clone())))
            }
            (None, None, true) => Some(None),
            (None, None, false) => None,
            _ => return Err(Error::invalid(
                "cwmp_username",
                "give cwmp_username and cwmp_password together (non-empty), or clear_credentials",
            )),
        };
    if let Some(tags) = &input.tags {
        if tags.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(Error::invalid("tags", "tags are 1 to 64 characters"));
        }
    }
    Ok(ProvisionDevice {
        id: id.to_string(),
        oui,
        product_class: pc,
        serial_number: sn,
        cwmp_credentials: creds,
        tags: input.tags.clone(),
    })
}

/// The audit detail of a provisioning: what changed, never a password.
fn provision_detail(p: &ProvisionDevice) -> String {
    format!(
        "credentials: {}, tags: {}",
        match &p.cwmp_credentials {
            Some(Some((u, _))) => format!("set ({u})"),
            Some(None) => "cleared".into(),
            None => "unchanged".into(),
        },
        p.tags
            .as_ref()
            .map(|t| t.join(","))
            .unwrap_or_else(|| "unchanged".into())
    )
}

/// Create or update a device before or after its first contact. Returns the device and
/// whether it was created.
pub async fn provision(
    ctx: &Ctx<'_>,
    actor: &Actor,
    id: &str,
    input: &ProvisionInput,
) -> Result<(DeviceRow, bool)> {
    actor.require(Op::DeviceProvision)?;
    let existing = {
        let i = id.to_string();
        ctx.store.run(move |s| s.get_device(&i)).await?
    };
    let p = plan(id, existing.as_ref(), input)?;
    let old_user = existing.as_ref().and_then(|d| d.cwmp_username.clone());
    let new_user = p.cwmp_credentials.clone().flatten().map(|(u, _)| u);
    let realm = ctx.config.cwmp.realm.clone();
    let (now, who) = (ctx.now(), actor.name.clone());
    let row = ctx
        .store
        .run(move |s| {
            let ha1 = |u: &str, pw: &str| crate::auth::digest::ha1(u, &realm, pw);
            let row = s.provision_device(&p, Some(&ha1), now)?;
            let detail = provision_detail(&p);
            audit_with(
                s,
                now,
                &who,
                Op::DeviceProvision,
                &Target::Device(p.id.clone()),
                Some(&detail),
            )?;
            Ok(row)
        })
        .await?;
    for u in [old_user, new_user].into_iter().flatten() {
        ctx.hooks().credentials_changed(&u);
    }
    Ok((row, existing.is_none()))
}

/// Delete a device and everything stored about it.
pub async fn delete(ctx: &Ctx<'_>, actor: &Actor, id: &str) -> Result<()> {
    actor.require(Op::DeviceDelete)?;
    let (now, who, i) = (ctx.now(), actor.name.clone(), id.to_string());
    let (found, user) = ctx
        .store
        .run(move |s| {
            let user = s.get_device(&i)?.and_then(|d| d.cwmp_username);
            let found = s.delete_device(&i)?;
            if found {
                // What the device itself reported goes with it; what others report of it
                // stays (a gateway still listing it shows it as not managed).
                s.forget_gateway_reports(&i)?;
                audit_with(s, now, &who, Op::DeviceDelete, &Target::Device(i), None)?;
            }
            Ok((found, user))
        })
        .await?;
    if !found {
        return Err(Error::not_found(format!("device {id}")));
    }
    if let Some(u) = user {
        ctx.hooks().credentials_changed(&u);
    }
    Ok(())
}

/// Forget a device's CWMP credentials, its own and any issued to it (a factory-reset device
/// that lost them): the shared default credentials open it again, and it is issued new
/// ones at its next session (`domain::credentials`).
pub async fn reset_credentials(ctx: &Ctx<'_>, actor: &Actor, id: &str) -> Result<()> {
    actor.require(Op::DeviceCredentialsReset)?;
    let (now, who, i) = (ctx.now(), actor.name.clone(), id.to_string());
    let users = ctx
        .store
        .run(move |s| {
            let users = s.reset_cwmp_credentials(&i, now)?;
            if users.is_some() {
                audit_with(
                    s,
                    now,
                    &who,
                    Op::DeviceCredentialsReset,
                    &Target::Device(i),
                    Some("CWMP credentials forgotten; the shared ones open the device again"),
                )?;
            }
            Ok(users)
        })
        .await?;
    let Some(users) = users else {
        return Err(Error::not_found(format!("device {id}")));
    };
    for u in users {
        ctx.hooks().credentials_changed(&u);
    }
    Ok(())
}

/// Ask a device to start a session now; the outcome is recorded and returned.
pub async fn connection_request(ctx: &Ctx<'_>, actor: &Actor, id: &str) -> Result<CrResult> {
    connection_request_for(ctx, actor, id, Wake::Session).await
}

/// Ask a device for a session for `wake`: sent now, scheduled (never dropped), or joined to
/// the session in progress.
pub async fn connection_request_for(
    ctx: &Ctx<'_>,
    actor: &Actor,
    id: &str,
    wake: Wake,
) -> Result<CrResult> {
    actor.require(Op::DeviceConnectionRequest)?;
    let r = ctx
        .services
        .connreq
        .request_for(ctx.store, id, ctx.now(), wake)
        .await?;
    ctx.audit(
        actor,
        Op::DeviceConnectionRequest,
        Target::Device(id.to_string()),
        Some(format!("outcome={}", r.outcome)),
    )
    .await?;
    Ok(r)
}

/// Most devices one tag or untag addresses.
pub const MAX_TAG_DEVICES: usize = 1000;

/// What tagging did to one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOutcome {
    /// The tag was added (or removed).
    Changed,
    /// The device had the tag already (or did not have it).
    Unchanged,
    /// No such device.
    NoDevice,
}

/// A tag as provisioning accepts it: 1 to 64 characters, no control characters.
pub fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > 64 || tag.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            "tag",
            "a tag is 1 to 64 characters without control characters",
        ));
    }
    Ok(())
}

/// Add (`add`) or remove one tag on each of `ids` (at most [`MAX_TAG_DEVICES`]). Every
/// device whose tags changed gets its audit entry (`device.tag` / `device.untag` with
/// `tag=<tag>`) and its work epoch bumped, so presets selecting on tags converge.
pub async fn set_tag(
    ctx: &Ctx<'_>,
    actor: &Actor,
    ids: &[String],
    tag: &str,
    add: bool,
) -> Result<Vec<(String, TagOutcome)>> {
    let op = if add { Op::DeviceTag } else { Op::DeviceUntag };
    actor.require(op)?;
    let tag = tag.trim().to_string();
    check_tag(&tag)?;
    if ids.len() > MAX_TAG_DEVICES {
        return Err(Error::invalid(
            "ids",
            format!("at most {MAX_TAG_DEVICES} devices at once; narrow the query"),
        ));
    }
    let (now, who, ids) = (ctx.now(), actor.name.clone(), ids.to_vec());
    ctx.store
        .run(move |s| {
            let changed = s.set_tag(&ids, &tag, add)?;
            let detail = format!("tag={tag}");
            let mut out = Vec::with_capacity(ids.len());
            for (id, c) in ids.into_iter().zip(changed) {
                let outcome = match c {
                    None => TagOutcome::NoDevice,
                    Some(false) => TagOutcome::Unchanged,
                    Some(true) => {
                        audit_with(s, now, &who, op, &Target::Device(id.clone()), Some(&detail))?;
                        TagOutcome::Changed
                    }
                };
                out.push((id, outcome));
            }
            Ok(out)
        })
        .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input() -> ProvisionInput {
        ProvisionInput {
            oui: Some("00259E".into()),
            product_class: Some("HG8245".into()),
            serial_number: Some("X1".into()),
            ..ProvisionInput::default()
        }
    }

    #[test]
    fn a_new_device_needs_its_identity_and_the_matching_id() {
        let p = plan("00259E-HG8245-X1", None, &input()).expect("valid");
        assert_eq!(p.cwmp_credentials, None);
        let e = plan("00259E-HG8245-X2", None, &input()).unwrap_err();
        assert!(e.to_string().contains("00259E-HG8245-X1"), "{e}");
        let e = plan(
            "00259E-HG8245-X1",
            None,
            &ProvisionInput {
                serial_number: None,
                ..input()
            },
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
    }

    #[test]
    fn credentials_come_together_or_are_cleared() {
        let id = "00259E-HG8245-X1";
        let half = ProvisionInput {
            cwmp_username: Some("u".into()),
            ..input()
        };
        assert!(plan(id, None, &half).is_err());
        let both = ProvisionInput {
            cwmp_username: Some("u".into()),
            cwmp_password: Some("p".into()),
            ..input()
        };
        let p = plan(id, None, &both).expect("valid");
        assert_eq!(p.cwmp_credentials, Some(Some(("u".into(), "p".into()))));
        assert_eq!(
            provision_detail(&p),
            "credentials: set (u), tags: unchanged"
        );
        let clear = ProvisionInput {
            clear_credentials: true,
            tags: Some(vec!["lab".into(), "a".into()]),
            ..input()
        };
        let p = plan(id, None, &clear).expect("valid");
        assert_eq!(provision_detail(&p), "credentials: cleared, tags: lab,a");
        let bad_tag = ProvisionInput {
            tags: Some(vec![String::new()]),
            ..input()
        };
        assert!(plan(id, None, &bad_tag).is_err());
    }
}
