//! Request parsing that answers every failure with 400 (413 for an
//! oversized body) and `{"error"}`, instead of axum's 415/422 plain text.

use std::collections::BTreeMap;
use std::fmt;

use axum::body::Body;
use axum::extract::RawQuery;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

use super::HttpError;

/// Reads and parses a JSON body of at most `limit` bytes.
pub(super) async fn json<T: DeserializeOwned>(headers: &HeaderMap, body: Body, limit: usize) -> Result<T, HttpError> {
    let too_large = || {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    if let Some(kind) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let essence = kind.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(HttpError::bad_request(format!(
                "unsupported content type {essence:?}: send JSON with `Content-Type: application/json`"
            )));
        }
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.to_string().contains("length limit") {
            too_large()
        } else {
            HttpError::bad_request("the request body could not be read")
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            HttpError::bad_request(format!("malformed JSON: {e}"))
        }
        _ => HttpError::bad_request(format!("invalid request body: {e}")),
    })
}

/// Query parameters; any not in `allowed` is a 400.
pub(super) fn query(raw: RawQuery, allowed: &[&str]) -> Result<BTreeMap<String, String>, HttpError> {
    let Some(raw) = raw.0 else {
        return Ok(BTreeMap::new());
    };
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(&raw)?;
    let mut out = BTreeMap::new();
    for (key, value) in pairs {
        if !allowed.contains(&key.as_str()) {
            return Err(HttpError::bad_request(format!(
                "unknown query parameter {key:?}; expected {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(HttpError::bad_request(format!(
                "query parameter {key:?} is given twice"
            )));
        }
    }
    Ok(out)
}

/// Splits `a=b&c=d` with percent-decoding (`+` is a space).
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, HttpError> {
    let mut pairs = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> Result<String, HttpError> {
    let bad = || HttpError::bad_request("malformed query string");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A field of a PUT body: absent (keep), `null` (clear) or a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Patch<T> {
    /// Not in the body.
    #[default]
    Absent,
    /// Explicit `null`.
    Null,
    /// A value.
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(deserializer)? {
            Some(value) => Patch::Value(value),
            None => Patch::Null,
        })
    }
}

/// A secret string from a body (the bot token). A value of the wrong type is
/// refused without echoing it, and `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SecretInput(pub String);

impl fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretInput(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for SecretInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bot_token as a string")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<SecretInput, E> {
                Ok(SecretInput(value.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, value: String) -> Result<SecretInput, E> {
                Ok(SecretInput(value))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretInput, E> {
                Err(E::custom("bot_token must be a string"))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretInput, E> {
                Err(E::custom("bot_token must be a string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretInput, E> {
                Err(E::custom("bot_token must be a string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretInput, E> {
                Err(E::custom("bot_token must be a string"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretInput, A::Error> {
                Err(serde::de::Error::custom("bot_token must be a string"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<SecretInput, A::Error> {
                Err(serde::de::Error::custom("bot_token must be a string"))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}
