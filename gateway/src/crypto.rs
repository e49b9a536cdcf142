//! Secrets of the control plane: bot tokens encrypted at rest
//! ([`TokenCipher`], AES-256-GCM with a key from `GLYPHOXA_SECRET_KEY`) and
//! the admin key compared in constant time ([`AdminKey`]).

use std::fmt;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

use crate::ids::TenantId;

/// A Discord bot token in memory. Never printed: `Debug` shows
/// `BotToken(<redacted>)` and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself; only for handing it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// A bot token as stored: a format byte, a 96-bit nonce and the AES-GCM
/// ciphertext with its tag. Only [`TokenCipher`] makes or opens one.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken(Vec<u8>);

impl EncryptedToken {
    /// Wraps bytes read from the database.
    pub fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptedToken({} bytes)", self.0.len())
    }
}

/// Why a secret could not be set up or opened. Messages never contain the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `GLYPHOXA_SECRET_KEY` is not valid base64.
    #[error("GLYPHOXA_SECRET_KEY is not valid base64: generate one with `openssl rand -base64 32`")]
    KeyNotBase64,
    /// `GLYPHOXA_SECRET_KEY` does not decode to 32 bytes.
    #[error("GLYPHOXA_SECRET_KEY must decode to 32 bytes, not {0}: generate one with `openssl rand -base64 32`")]
    KeyLength(usize),
    /// A stored token could not be decrypted: another key, another tenant's
    /// row, or corrupt data.
    #[error("the stored bot token of tenant {0} cannot be decrypted with the configured GLYPHOXA_SECRET_KEY (was the key changed?); set the token again")]
    Undecryptable(String),
    /// Encryption failed (cannot happen with a valid key; reported, not panicked).
    #[error("encrypting the bot token failed")]
    Encrypt,
    /// The admin key is empty.
    #[error("the admin API needs a key: set GLYPHOXA_ADMIN_KEY (or server.admin_key) to a long random string")]
    NoAdminKey,
}

const TOKEN_FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Encrypts and decrypts bot tokens with AES-256-GCM. The tenant id is bound
/// as associated data, so a ciphertext copied to another tenant's row does
/// not open.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(<key redacted>)")
    }
}

impl TokenCipher {
    /// A cipher from `GLYPHOXA_SECRET_KEY`: 32 bytes, base64 (standard or
    /// URL-safe alphabet, padding optional).
    pub fn from_base64(key: &str) -> Result<Self, SecretError> {
        let key = key.trim();
        let bytes = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ]
        .iter()
        .find_map(|engine| engine.decode(key).ok())
        .ok_or(SecretError::KeyNotBase64)?;
        Self::from_bytes(&bytes)
    }

    /// A cipher from 32 raw key bytes.
    pub fn from_bytes(key: &[u8]) -> Result<Self, SecretError> {
        if key.len() != 32 {
            return Err(SecretError::KeyLength(key.len()));
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        })
    }

    /// Encrypts `token` for `tenant` with a fresh random nonce.
    pub fn encrypt(&self, tenant: &TenantId, token: &BotToken) -> Result<EncryptedToken, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: tenant.as_str().as_bytes(),
                },
            )
            .map_err(|_| SecretError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(TOKEN_FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(EncryptedToken(out))
    }

    /// Decrypts a token stored for `tenant`.
    pub fn decrypt(&self, tenant: &TenantId, stored: &EncryptedToken) -> Result<BotToken, SecretError> {
        let undecryptable = || SecretError::Undecryptable(tenant.to_string());
        let bytes = stored.as_bytes();
        if bytes.len() < 1 + NONCE_LEN + 16 || bytes[0] != TOKEN_FORMAT_V1 {
            return Err(undecryptable());
        }
        let (nonce, sealed) = bytes[1..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: tenant.as_str().as_bytes(),
                },
            )
            .map_err(|_| undecryptable())?;
        String::from_utf8(plain).map(BotToken).map_err(|_| undecryptable())
    }
}

/// The admin API key. [`AdminKey::verify`] takes the same time whatever the
/// candidate's content or length: both sides are reduced to a GMAC tag under
/// a random per-process key and the tags are compared in constant time.
pub struct AdminKey {
    mac: Aes256Gcm,
    expected: [u8; 16],
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

impl AdminKey {
    /// Wraps the configured key; an empty or blank key is refused (the API
    /// must not start without one).
    pub fn new(key: &str) -> Result<Self, SecretError> {
        if key.trim().is_empty() {
            return Err(SecretError::NoAdminKey);
        }
        let mut mac_key = [0u8; 32];
        rand::rng().fill_bytes(&mut mac_key);
        let mac = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&mac_key));
        let expected = tag(&mac, key.as_bytes()).ok_or(SecretError::Encrypt)?;
        Ok(Self { mac, expected })
    }

    /// Whether `candidate` is the key, compared in constant time.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        match tag(&self.mac, candidate) {
            Some(tag) => bool::from(tag.ct_eq(&self.expected)),
            None => false,
        }
    }
}

/// GMAC of `data` (AES-GCM over an empty message with `data` as associated
/// data). The tag never leaves the process.
fn tag(mac: &Aes256Gcm, data: &[u8]) -> Option<[u8; 16]> {
    let nonce = [0u8; NONCE_LEN];
    let mut empty: [u8; 0] = [];
    let tag = mac
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), data, &mut empty)
        .ok()?;
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_slice());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn token_round_trip_bound_to_tenant() {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let cipher = TokenCipher::from_base64(&key).unwrap();
        let token = BotToken::new("MTIz.secret.token");
        let sealed = cipher.encrypt(&tenant("acme"), &token).unwrap();
        assert!(!sealed.as_bytes().windows(6).any(|w| w == b"secret"));
        assert_eq!(cipher.decrypt(&tenant("acme"), &sealed).unwrap(), token);
        assert!(matches!(
            cipher.decrypt(&tenant("other"), &sealed),
            Err(SecretError::Undecryptable(_))
        ));
        let other = TokenCipher::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.decrypt(&tenant("acme"), &sealed).is_err());
        assert!(cipher
            .decrypt(&tenant("acme"), &EncryptedToken::from_stored(vec![1, 2, 3]))
            .is_err());
        assert_eq!(format!("{token:?}"), "BotToken(<redacted>)");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(TokenCipher::from_base64("!!!").unwrap_err(), SecretError::KeyNotBase64);
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        assert_eq!(
            TokenCipher::from_base64(&short).unwrap_err(),
            SecretError::KeyLength(16)
        );
        assert!(AdminKey::new("  ").is_err());
    }

    #[test]
    fn admin_key_verifies() {
        let key = AdminKey::new("s3cret-admin-key").unwrap();
        assert!(key.verify(b"s3cret-admin-key"));
        assert!(!key.verify(b"s3cret-admin-kez"));
        assert!(!key.verify(b""));
        assert!(!key.verify(&[0u8; 4096]));
        assert_eq!(format!("{key:?}"), "AdminKey(<redacted>)");
    }
}
