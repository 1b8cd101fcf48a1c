//! Secrets at rest: the keys, and sealing values with AES-256-GCM.
//!
//! Connection-request passwords, VoIP line passwords, the secrets inside task arguments (and
//! inside the tasks scheduled jobs and campaigns keep in their specification), preset values
//! that are secrets and saved mid-session state are stored sealed: `enc1:<key id>:<base64(nonce ‖ ciphertext)>`,
//! where the key id is the first 8 hex digits of SHA-256 of the key, the nonce is 96 random
//! bits, and the associated data names what the value is (`devices.cr_password`, ...), so a
//! sealed value cannot be moved to another column and still open.
//!
//! The [`Keyring`] holds the current key (which seals) and previous keys (which still open,
//! so a rotation can re-encrypt at its pace). It comes from `secrets.key` (+
//! `secrets.previous_keys`) or from the key file `secrets.key_file`: one hex key per line,
//! the first current, created with mode 0600 at first start when neither exists. Keys are
//! never logged and never shown by `Debug`.
//!
//! A stored value without the `enc1:` prefix is clear text written before encryption
//! existed: it opens as is, and `ferroacs secrets reencrypt` (run at every start too)
//! seals it.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::SecretsConfig;
use crate::error::{Error, Result};

/// Prefix of a sealed value.
pub const PREFIX: &str = "enc1:";

/// What a sealed value is: the associated data of the AEAD.
pub mod purpose {
    pub const CR_PASSWORD: &str = "devices.cr_password";
    pub const LINE_PASSWORD: &str = "voip_lines.password";
    pub const TASK_ARG: &str = "tasks.args";
    pub const SAVED_SESSION: &str = "cwmp_sessions.state";
    pub const ISSUED_HA1: &str = "issued_credentials.ha1";
    pub const KEY_CHECK: &str = "settings.secrets_key_check";
    pub const PHONE_TOKEN: &str = "phones.token";
    pub const PHONE_FILE_PASSWORD: &str = "phones.file_password";
    pub const STUN_PASSWORD: &str = "device_stun.password";
    pub const PHONE_DIGEST_PASSWORD: &str = "phones.digest_password";
    pub const PRESET_SPEC: &str = "presets.spec";
    pub const DEVICE_HA1: &str = "devices.cwmp_ha1";
    pub const SCHEDULE_SPEC: &str = "schedules.spec";
    pub const CAMPAIGN_SPEC: &str = "campaigns.spec";
}

struct Key {
    id: String,
    cipher: Aes256Gcm,
    hex: String,
}

/// The current key and the previous ones.
#[derive(Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn parse_key(hex_key: &str, origin: &str) -> Result<Key> {
    let hex_key = hex_key.trim();
    let bytes = hex::decode(hex_key)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            Error::invalid(
                origin,
                "a key must be 64 hex digits (32 random bytes), e.g. from `openssl rand -hex 32`",
            )
        })?;
    let cipher = Aes256Gcm::new_from_slice(&bytes)
        .map_err(|_| Error::invalid(origin, "a key must be 32 bytes"))?;
    Ok(Key {
        id: hex::encode(&Sha256::digest(&bytes)[..4]),
        cipher,
        hex: hex_key.to_ascii_lowercase(),
    })
}

/// A new random key, as hex.
pub fn generate_key() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    hex::encode(b)
}

impl Keyring {
    /// A keyring from hex keys, the first current.
    pub fn from_hex(keys: &[String], origin: &str) -> Result<Keyring> {
        let keys = keys
            .iter()
            .map(|k| parse_key(k, origin))
            .collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::invalid(origin, "no key"));
        }
        Ok(Keyring { keys })
    }

    /// The keyring the configuration names: `secrets.key` (+ `previous_keys`), else the key
    /// file, created (mode 0600, a fresh random key) when `create` and it does not exist.
    pub fn load(cfg: &SecretsConfig, create: bool) -> Result<Keyring> {
        if let Some(k) = &cfg.key {
            let mut keys = vec![k.expose().to_string()];
            if let Some(prev) = &cfg.previous_keys {
                keys.extend(
                    prev.expose()
                        .split([',', ' ', '\n'])
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_string),
                );
            }
            return Keyring::from_hex(&keys, "secrets.key");
        }
        let path = &cfg.key_file;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                warn_if_readable_by_others(path);
                let keys: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                Keyring::from_hex(&keys, "secrets.key_file")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = generate_key();
                write_key_file(path, std::slice::from_ref(&key), true)?;
                tracing::info!(
                    file = %path.display(),
                    "created a new key for secrets at rest; keep a copy: without it stored passwords cannot be read"
                );
                Keyring::from_hex(&[key], "secrets.key_file")
            }
            Err(e) => Err(Error::invalid(
                "secrets.key_file",
                format!(
                    "cannot read {}: {e} (set secrets.key_file, or secrets.key / FERROACS_SECRETS_KEY)",
                    path.display()
                ),
            )),
        }
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        self.keys.first().map_or("", |k| k.id.as_str())
    }

    /// The keys as hex, current first (for rewriting the key file).
    pub fn hex_keys(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.hex.clone()).collect()
    }

    /// Seal `plain` for `purpose` with the current key.
    pub fn seal(&self, purpose: &str, plain: &str) -> Result<String> {
        let key = self.keys.first().ok_or_else(|| {
            Error::internal("no key for secrets at rest is loaded (secrets.key_file)")
        })?;
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let ct = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("encryption failed"))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(format!(
            "{PREFIX}{}:{}",
            key.id,
            STANDARD_NO_PAD.encode(blob)
        ))
    }

    /// Open a stored value: sealed values with whichever key sealed them; clear text (from
    /// before encryption) as is.
    pub fn open(&self, purpose: &str, stored: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let (id, b64) = rest
            .split_once(':')
            .ok_or_else(|| Error::internal(format!("malformed sealed value in {purpose}")))?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| {
            Error::internal(format!(
                "a value in {purpose} was sealed with key {id}, which is not configured \
                 (secrets.key_file / secrets.previous_keys)"
            ))
        })?;
        let blob = STANDARD_NO_PAD
            .decode(b64)
            .map_err(|_| Error::internal(format!("malformed sealed value in {purpose}")))?;
        if blob.len() < 12 {
            return Err(Error::internal(format!(
                "malformed sealed value in {purpose}"
            )));
        }
        let (nonce, ct) = blob.split_at(12);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::internal(format!("a sealed value in {purpose} does not authenticate"))
            })?;
        String::from_utf8(plain).map_err(|_| Error::internal("sealed value is not UTF-8"))
    }

    /// Whether `stored` is sealed with the current key (else `reencrypt` rewrites it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.current_id())
    }

    /// Re-seal a stored value (clear or sealed with any known key) under the current key;
    /// `None` when it already is.
    pub fn reseal(&self, purpose: &str, stored: &str) -> Result<Option<String>> {
        if self.is_current(stored) {
            return Ok(None);
        }
        let plain = self.open(purpose, stored)?;
        self.seal(purpose, &plain).map(Some)
    }
}

/// Whether a stored value is sealed (any key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Write the key file (mode 0600), replacing it atomically. `create_new`: fail if it exists.
pub fn write_key_file(path: &Path, keys: &[String], create_new: bool) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::invalid(
            "secrets.key_file",
            format!("cannot write {}: {e}", path.display()),
        )
    };
    let mut text = String::from(
        "# ferroacs keys for secrets at rest, one per line, the first current. Keep it secret and backed up.\n",
    );
    for k in keys {
        text.push_str(k);
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    if create_new && path.exists() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the key file is readable by other users; chmod 600 it"
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_rotate() {
        let old = Keyring::from_hex(&[generate_key()], "t").unwrap();
        let sealed = old.seal(purpose::CR_PASSWORD, "hunter2").unwrap();
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hunter2"));
        assert_eq!(old.open(purpose::CR_PASSWORD, &sealed).unwrap(), "hunter2");
        // Two seals of one value differ (random nonce).
        assert_ne!(sealed, old.seal(purpose::CR_PASSWORD, "hunter2").unwrap());
        // Bound to its purpose.
        assert!(old.open(purpose::LINE_PASSWORD, &sealed).is_err());
        // Clear text from before encryption opens as is.
        assert_eq!(old.open(purpose::CR_PASSWORD, "legacy").unwrap(), "legacy");
        // Rotation: the new key seals, the old one still opens.
        let both = Keyring::from_hex(&[generate_key(), old.hex_keys()[0].clone()], "t").unwrap();
        let resealed = both.reseal(purpose::CR_PASSWORD, &sealed).unwrap().unwrap();
        assert!(both.is_current(&resealed) && !both.is_current(&sealed));
        assert_eq!(both.reseal(purpose::CR_PASSWORD, &resealed).unwrap(), None);
        assert!(old.open(purpose::CR_PASSWORD, &resealed).is_err());
        // A tampered value does not open.
        let mut bad = resealed.clone();
        bad.pop();
        bad.push(if resealed.ends_with('A') { 'B' } else { 'A' });
        assert!(both.open(purpose::CR_PASSWORD, &bad).is_err());
        assert!(!format!("{both:?}").contains(&both.hex_keys()[0]));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SecretsConfig {
            key_file: dir.path().join("k"),
            ..SecretsConfig::default()
        };
        assert!(Keyring::load(&cfg, false).is_err());
        let a = Keyring::load(&cfg, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cfg.key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = Keyring::load(&cfg, true).unwrap();
        assert_eq!(a.current_id(), b.current_id());
        assert!(Keyring::from_hex(&["abcd".into()], "secrets.key")
            .unwrap_err()
            .to_string()
            .contains("64 hex"));
    }
}
