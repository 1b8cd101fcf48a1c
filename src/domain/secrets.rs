//! Secrets at rest across the database: checking that the configured key is the one the
//! database was sealed with, and re-sealing everything under the current key (after a key
//! rotation, and for clear-text rows written before encryption existed).

use crate::error::{Error, Result};
use crate::secrets::{purpose, Keyring};
use crate::store::sealed::SealedColumn;
use crate::store::Store;

const KEY_CHECK: &str = "secrets_key_check";
const KEY_CHECK_TEXT: &str = "ferroacs";

/// Refuse a keyring that cannot open what the database holds: the first use of a database
/// records a value sealed with the current key, and every later start must open it (with
/// the current key or a previous one).
pub fn check_key(store: &Store) -> Result<()> {
    let k = store.keyring();
    let sealed = k.seal(purpose::KEY_CHECK, KEY_CHECK_TEXT)?;
    let stored = store.setting_or_init(KEY_CHECK, || sealed)?;
    match k.open(purpose::KEY_CHECK, &stored) {
        Ok(t) if t == KEY_CHECK_TEXT => Ok(()),
        _ => Err(Error::invalid(
            "secrets.key_file",
            "the database's secrets were sealed with another key: configure the key file (or \
             secrets.key) every other node of this database uses; a lost key means the stored \
             connection-request and line passwords must be set again",
        )),
    }
}

/// What [`reencrypt`] rewrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub values: usize,
}

/// Re-seal every secret under the current key. Idempotent; rows a running node rewrites
/// meanwhile are left to it.
pub fn reencrypt(store: &Store) -> Result<Resealed> {
    let k = store.keyring();
    let mut out = Resealed::default();
    for col in SealedColumn::ALL {
        for (key, stored) in store.sealed_candidates(col, k.current_id())? {
            let new = match col {
                SealedColumn::CrPassword => k.reseal(purpose::CR_PASSWORD, &stored)?,
                SealedColumn::LinePassword => k.reseal(purpose::LINE_PASSWORD, &stored)?,
                SealedColumn::SavedSession => k.reseal(purpose::SAVED_SESSION, &stored)?,
                SealedColumn::PhoneToken => k.reseal(purpose::PHONE_TOKEN, &stored)?,
                SealedColumn::StunPassword => k.reseal(purpose::STUN_PASSWORD, &stored)?,
                SealedColumn::PhoneFilePassword => {
                    k.reseal(purpose::PHONE_FILE_PASSWORD, &stored)?
                }
                SealedColumn::IssuedHa1 => k.reseal(purpose::ISSUED_HA1, &stored)?,
                SealedColumn::PhoneDigestPassword => {
                    k.reseal(purpose::PHONE_DIGEST_PASSWORD, &stored)?
                }
                SealedColumn::DeviceHa1 => k.reseal(purpose::DEVICE_HA1, &stored)?,
                SealedColumn::TaskArgs => crate::domain::tasks::reseal_args(&k, &stored)?,
                SealedColumn::PresetSpec => {
                    crate::domain::tasks::reseal_json(&k, purpose::PRESET_SPEC, &stored)?
                }
                SealedColumn::ScheduleSpec => {
                    crate::domain::tasks::reseal_json(&k, purpose::SCHEDULE_SPEC, &stored)?
                }
                SealedColumn::CampaignSpec => {
                    crate::domain::tasks::reseal_json(&k, purpose::CAMPAIGN_SPEC, &stored)?
                }
            };
            if let Some(new) = new {
                if store.replace_sealed(col, &key, &stored, &new)? {
                    out.values += 1;
                }
            }
        }
    }
    store.put_setting(KEY_CHECK, &k.seal(purpose::KEY_CHECK, KEY_CHECK_TEXT)?)?;
    out.values += mask_preset_states(store)?;
    Ok(out)
}

/// Marks that every row of `device_preset_state` keeps secret values masked.
const PRESET_STATE_MASKED: &str = "preset_state_secrets_masked";

/// What presets did on devices keeps secret values masked (`domain::presets::kept`); rows
/// written before that kept them in clear. Rewrite those, once per database: each row only
/// if no session rewrote it meanwhile, so two nodes starting at once do the same work
/// twice at worst and never undo a session's write. Returns the rows rewritten.
fn mask_preset_states(store: &Store) -> Result<usize> {
    if store.setting(PRESET_STATE_MASKED)?.is_some() {
        return Ok(0);
    }
    let mut after = String::new();
    let mut rewritten = 0;
    loop {
        let page = store.preset_states_page(&after, 1000)?;
        let Some(last) = page.last() else { break };
        after = last.0.clone();
        for (device_id, applied, refused) in &page {
            let old = crate::store::presets::PresetState {
                applied: applied.clone(),
                refused: refused.clone(),
            };
            let mut st = crate::domain::presets::DeviceState::decode(Some(&old));
            if !st.mask() {
                continue;
            }
            let new = st.encode();
            if store.replace_preset_state(
                device_id,
                (applied, refused),
                (&new.applied, &new.refused),
            )? {
                rewritten += 1;
            }
        }
    }
    store.put_setting(PRESET_STATE_MASKED, "1")?;
    Ok(rewritten)
}

/// Load the configured keyring into `store`, check it against the database and seal what
/// is not sealed under the current key yet. `create`: create the key file if missing.
pub fn init(store: &Store, cfg: &crate::config::SecretsConfig, create: bool) -> Result<()> {
    store.set_keyring(Keyring::load(cfg, create)?);
    check_key(store)?;
    let r = reencrypt(store)?;
    if r.values > 0 {
        tracing::info!(values = r.values, "sealed secrets under the current key");
    }
    Ok(())
}
