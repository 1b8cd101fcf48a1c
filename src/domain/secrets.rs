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
                SealedColumn::TaskArgs => crate::domain::tasks::reseal_args(&k, &stored)?,
            };
            if let Some(new) = new {
                if store.replace_sealed(col, &key, &stored, &new)? {
                    out.values += 1;
                }
            }
        }
    }
    store.put_setting(KEY_CHECK, &k.seal(purpose::KEY_CHECK, KEY_CHECK_TEXT)?)?;
    Ok(out)
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
