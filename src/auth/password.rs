//! Operator passwords (argon2id) and API tokens.
//!
//! Passwords are hashed with argon2id and the library's default cost
//! (19 MiB memory, 2 passes, 1 lane, as OWASP recommends), stored as PHC
//! strings (`$argon2id$v=19$m=19456,t=2,p=1$…`). Verification reads the cost
//! from the stored string, so raising the cost later keeps old hashes valid.
//!
//! API tokens are `fac_` followed by 32 random bytes in unpadded base64url.
//! With 256 bits of entropy a slow hash adds nothing, so tokens are stored
//! as their SHA-256 (hex) and looked up by that value.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// Prefix of every API token, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "fac_";

/// Hashes an operator password into a PHC string with argon2id and a random
/// salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::PasswordHashing(e.to_string()))
}

/// Checks an operator password against a stored PHC string.
///
/// Returns `Ok(false)` for a wrong password and an error only when the stored
/// hash itself cannot be used.
pub fn verify_password(password: &str, stored_phc: &str) -> Result<bool, AuthError> {
    let parsed =
        PasswordHash::new(stored_phc).map_err(|e| AuthError::InvalidPasswordHash(e.to_string()))?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(AuthError::InvalidPasswordHash(e.to_string())),
    }
}

/// Generates a new API token: `fac_` + 32 random bytes, base64url, unpadded
/// (47 characters in all). Show it once; store only [`hash_token`] of it.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The value to store for an API token: SHA-256 of the whole token, as 64
/// lower-case hex digits.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a presented token against a stored [`hash_token`] value in
/// constant time.
pub fn verify_token(token: &str, stored_hash_hex: &str) -> bool {
    constant_time_eq(
        hash_token(token).as_bytes(),
        stored_hash_hex.to_ascii_lowercase().as_bytes(),
    )
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let stored = hash_password("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert_eq!(verify_password("correct horse", &stored), Ok(true));
        assert_eq!(verify_password("correct horsE", &stored), Ok(false));
        // Salted: the same password hashes differently each time.
        assert_ne!(hash_password("correct horse").unwrap(), stored);
    }

    #[test]
    fn broken_stored_hash_is_an_error() {
        assert!(matches!(
            verify_password("x", "not a phc string"),
            Err(AuthError::InvalidPasswordHash(_))
        ));
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashable() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        let decoded = URL_SAFE_NO_PAD.decode(&a[TOKEN_PREFIX.len()..]).unwrap();
        assert_eq!(decoded.len(), 32);

        let stored = hash_token(&a);
        assert_eq!(stored.len(), 64);
        assert!(verify_token(&a, &stored));
        assert!(verify_token(&a, &stored.to_ascii_uppercase()));
        assert!(!verify_token(&b, &stored));
        // Known SHA-256 of "abc".
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
