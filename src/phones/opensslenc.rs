//! OpenSSL's `enc` file format, as `openssl enc -aes-256-cbc -k PASSWORD -md sha256|md5`
//! writes and reads it: `Salted__`, 8 bytes of salt, then AES-256-CBC with PKCS#7 padding.
//! Key and IV come from EVP_BytesToKey with one iteration: D1 = H(pw‖salt),
//! Di = H(Di-1‖pw‖salt), concatenated until 32 + 16 bytes are there (key, then IV). The salt
//! is an argument so the function stays pure; callers pass a random one.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha2::Digest;

use super::KeyDigest;

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

const MAGIC: &[u8; 8] = b"Salted__";

/// EVP_BytesToKey(AES-256-CBC, digest, salt, password, 1 iteration) → (key, iv).
pub fn bytes_to_key(password: &[u8], salt: &[u8; 8], digest: KeyDigest) -> ([u8; 32], [u8; 16]) {
    let mut out = Vec::with_capacity(64);
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < 48 {
        let mut input = prev.clone();
        input.extend_from_slice(password);
        input.extend_from_slice(salt);
        prev = match digest {
            KeyDigest::Md5 => md5::compute(&input).0.to_vec(),
            KeyDigest::Sha256 => sha2::Sha256::digest(&input).to_vec(),
        };
        out.extend_from_slice(&prev);
    }
    let mut key = [0u8; 32];
    let mut iv = [0u8; 16];
    key.copy_from_slice(&out[..32]);
    iv.copy_from_slice(&out[32..48]);
    (key, iv)
}

/// Encrypt `plain` into an OpenSSL `Salted__` file.
pub fn encrypt(plain: &[u8], password: &str, salt: [u8; 8], digest: KeyDigest) -> Vec<u8> {
    let (key, iv) = bytes_to_key(password.as_bytes(), &salt, digest);
    let ct = Enc::new(&key.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    let mut out = Vec::with_capacity(16 + ct.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&ct);
    out
}

/// Decrypt an OpenSSL `Salted__` file; `None` when it is not one or the password is wrong
/// (bad padding).
pub fn decrypt(file: &[u8], password: &str, digest: KeyDigest) -> Option<Vec<u8>> {
    if file.len() < 32 || &file[..8] != MAGIC {
        return None;
    }
    let mut salt = [0u8; 8];
    salt.copy_from_slice(&file[8..16]);
    let (key, iv) = bytes_to_key(password.as_bytes(), &salt, digest);
    Dec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&file[16..])
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_the_wrong_password() {
        for d in [KeyDigest::Sha256, KeyDigest::Md5] {
            let f = encrypt(b"<gs_provision/>", "pw", *b"12345678", d);
            assert_eq!(&f[..16], b"Salted__12345678");
            assert_eq!(f.len(), 32);
            assert_eq!(decrypt(&f, "pw", d).unwrap(), b"<gs_provision/>");
            assert_ne!(
                decrypt(&f, "px", d).as_deref(),
                Some(&b"<gs_provision/>"[..])
            );
        }
    }

    /// Known answers from `openssl enc -aes-256-cbc -k secret -S 0102030405060708 -P -md ...`.
    #[test]
    fn key_derivation_matches_openssl() {
        let salt = [1, 2, 3, 4, 5, 6, 7, 8];
        let (k, iv) = bytes_to_key(b"secret", &salt, KeyDigest::Md5);
        let (k2, iv2) = bytes_to_key(b"secret", &salt, KeyDigest::Sha256);
        let want = include_str!("../../tests/fixtures/phones/openssl-keys.txt");
        let got = format!(
            "md5 {} {}\nsha256 {} {}\n",
            hex::encode_upper(k),
            hex::encode_upper(iv),
            hex::encode_upper(k2),
            hex::encode_upper(iv2)
        );
        assert_eq!(got, want);
    }
}
