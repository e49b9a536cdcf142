//! Validated value types used by the configuration sections.
//!
//! Each type checks its value while the YAML is read, so a bad value is
//! reported with its key path and line (`server.admin_addr: ...`).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret (token, API key): never printed, never logged.
///
/// Serialises as `<redacted>` when set and as an empty string when unset, so
/// `check-config` shows whether it is there without showing it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for handing it to the service that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether a (non-blank) value is set.
    pub fn is_set(&self) -> bool {
        !self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() {
            "Secret(<redacted>)"
        } else {
            "Secret(<unset>)"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.is_set() { "<redacted>" } else { "" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Secret(String::deserialize(deserializer)?.trim().to_string()))
    }
}

/// A listen address: `0.0.0.0:8081`, `[::]:8081`, or `:8081` for all IPv4 interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let full = if s.starts_with(':') {
            format!("0.0.0.0{s}")
        } else {
            s.to_string()
        };
        full.parse::<SocketAddr>()
            .map(ListenAddr)
            .map_err(|_| format!("{s:?} is not a listen address: use IP:PORT, e.g. 0.0.0.0:8081 or :8081"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A URL with one of the schemes a field accepts (checked by [`Endpoint::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(url::Url);

impl Endpoint {
    /// Parses `text` as a URL whose scheme is one of `schemes`. Text without
    /// a scheme (`gateway:50052`) gets the first scheme.
    pub fn parse(text: &str, schemes: &[&str]) -> Result<Self, String> {
        let text = text.trim();
        let first = schemes.first().copied().unwrap_or("http");
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("{first}://{text}")
        };
        let not_a_url = || format!("{text:?} is not a URL: write it like {first}://host:port/path");
        if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(not_a_url());
        }
        let url = url::Url::parse(&with_scheme).map_err(|_| not_a_url())?;
        if !schemes.contains(&url.scheme()) {
            return Err(format!("{text:?} is not a URL with scheme {}", schemes.join(" or ")));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{text:?} is not a URL: it names no host"));
        }
        Ok(Self(url))
    }

    /// The URL.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The URL as text, without a trailing slash on a bare origin.
    pub fn as_str(&self) -> &str {
        let s = self.0.as_str();
        if self.0.path() == "/" && self.0.query().is_none() {
            s.trim_end_matches('/')
        } else {
            s
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An HTTP(S) URL, e.g. a provider's `base_url` or the Discord API origin.
/// An empty value (e.g. an unset `${VAR}`) means "not set".
pub fn http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Endpoint>, D::Error> {
    optional_endpoint(deserializer, &["http", "https"])
}

/// A gRPC endpoint (`http://host:port`, `https://...` or plain `host:port`).
/// An empty value means "not set".
pub fn grpc_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Endpoint>, D::Error> {
    optional_endpoint(deserializer, &["http", "https"])
}

fn optional_endpoint<'de, D: Deserializer<'de>>(
    deserializer: D,
    schemes: &[&str],
) -> Result<Option<Endpoint>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(None);
    }
    Endpoint::parse(&text, schemes).map(Some).map_err(D::Error::custom)
}

/// A list of gRPC endpoints.
pub fn grpc_urls<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Endpoint>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .filter(|text| !text.trim().is_empty())
        .map(|text| Endpoint::parse(text, &["http", "https"]).map_err(D::Error::custom))
        .collect()
}

/// A Discord id (guild, channel, role, user): a snowflake written as a string
/// of digits. An empty value means "not set".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DiscordId(String);

impl DiscordId {
    /// Checks that `text` is a Discord snowflake.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a Discord id: copy it with Developer Mode on (right-click → Copy ID); it is a number like 123456789012345678"
            ))
        }
    }

    /// The id as the string Discord's APIs use.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads an optional [`DiscordId`]; numbers and strings are both accepted.
pub fn discord_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DiscordId>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(DiscordId(n.to_string()))),
        Some(Raw::Text(text)) if text.trim().is_empty() => Ok(None),
        Some(Raw::Text(text)) => DiscordId::parse(&text).map(Some).map_err(D::Error::custom),
    }
}

/// A database URL: `sqlite://FILE` / `sqlite::memory:` or
/// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. Printed with the
/// password redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks that `text` names a database Glyphoxa can use.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let ok = text.starts_with("sqlite:")
            || ((text.starts_with("postgres://") || text.starts_with("postgresql://"))
                && url::Url::parse(text).is_ok());
        if ok {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a database URL: use sqlite://FILE or postgres://USER@HOST/DATABASE"
            ))
        }
    }

    /// The embedded SQLite database used when none is configured.
    pub fn default_sqlite() -> Self {
        Self(super::DEFAULT_DATABASE_URL.to_string())
    }

    /// The URL with its password, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `<redacted>`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("<redacted>"));
                url.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            // An unset `${GLYPHOXA_DATABASE_URL}` means "the default database".
            return Ok(Self::default_sqlite());
        }
        DatabaseUrl::parse(&text).map_err(D::Error::custom)
    }
}

/// The log levels a filter may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a log filter: comma-separated `LEVEL` or `TARGET=LEVEL` parts,
/// e.g. `info` or `glyphoxa=debug,warn`.
pub fn log_filter<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok("info".into());
    }
    for part in text.split(',').map(str::trim) {
        let level = part.rsplit_once('=').map_or(part, |(_, level)| level);
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(D::Error::custom(format!(
                "{part:?} is not a log level: use one of {} (or TARGET=LEVEL, comma-separated)",
                LOG_LEVELS.join(", ")
            )));
        }
    }
    Ok(text.to_string())
}

/// A whole number that must lie in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: u32, const MAX: u32>(u32);

impl<const MIN: u32, const MAX: u32> Bounded<MIN, MAX> {
    /// A value known to be in range (for defaults); out-of-range values are clamped.
    pub const fn new(value: u32) -> Self {
        Self(if value < MIN {
            MIN
        } else if value > MAX {
            MAX
        } else {
            value
        })
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<const MIN: u32, const MAX: u32>;

        impl<const MIN: u32, const MAX: u32> BoundedVisitor<MIN, MAX> {
            fn check<E: serde::de::Error>(value: i128) -> Result<Bounded<MIN, MAX>, E> {
                if (i128::from(MIN)..=i128::from(MAX)).contains(&value) {
                    Ok(Bounded(value as u32))
                } else {
                    Err(E::custom(format!("{value} is out of range: use {MIN} to {MAX}")))
                }
            }
        }

        impl<const MIN: u32, const MAX: u32> serde::de::Visitor<'_> for BoundedVisitor<MIN, MAX> {
            type Value = Bounded<MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number from {MIN} to {MAX}")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Self::check(i128::from(value))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Self::check(i128::from(value))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                // `${VAR}` expansions arrive as text.
                match value.trim().parse::<i128>() {
                    Ok(number) => Self::check(number),
                    Err(_) => Err(E::custom(format!(
                        "{value:?} is not a whole number: use {MIN} to {MAX}"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(BoundedVisitor::<MIN, MAX>)
    }
}

/// Deserialises a listen address, accepting the forms of [`ListenAddr`].
pub fn listen_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ListenAddr>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(D::Error::custom)
}

impl Serialize for ListenAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
        assert!(!Secret::new("  ").is_set());
    }

    #[test]
    fn listen_addr_forms() {
        assert_eq!(":8081".parse::<ListenAddr>().unwrap().to_string(), "0.0.0.0:8081");
        assert_eq!("127.0.0.1:9".parse::<ListenAddr>().unwrap().to_string(), "127.0.0.1:9");
        assert_eq!("[::]:50051".parse::<ListenAddr>().unwrap().to_string(), "[::]:50051");
        assert!("localhost".parse::<ListenAddr>().is_err());
        assert!("0.0.0.0:99999".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn endpoint_adds_scheme_and_checks_it() {
        assert_eq!(
            Endpoint::parse("gateway:50052", &["http", "https"]).unwrap().as_str(),
            "http://gateway:50052"
        );
        assert_eq!(
            Endpoint::parse("https://api.example.com/v1", &["http", "https"])
                .unwrap()
                .as_str(),
            "https://api.example.com/v1"
        );
        assert!(Endpoint::parse("ftp://x", &["http", "https"])
            .unwrap_err()
            .contains("scheme http or https"));
        assert!(Endpoint::parse("http://", &["http"]).is_err());
        assert!(Endpoint::parse("not a url", &["http"]).is_err());
    }

    #[test]
    fn discord_id_is_digits() {
        assert!(DiscordId::parse("123456789012345678").is_ok());
        assert!(DiscordId::parse("12ab").is_err());
        assert!(DiscordId::parse("123456789012345678901").is_err());
    }

    #[test]
    fn database_url_hides_password() {
        let url = DatabaseUrl::parse("postgres://glyph:pa55word@db:5432/glyphoxa").unwrap();
        assert_eq!(url.redacted(), "postgres://glyph:%3Credacted%3E@db:5432/glyphoxa");
        assert!(!format!("{url:?}").contains("pa55word"));
        assert_eq!(url.expose(), "postgres://glyph:pa55word@db:5432/glyphoxa");
        assert!(DatabaseUrl::parse("sqlite://glyphoxa.db").is_ok());
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("postgres://[bad").is_err());
    }

    #[test]
    fn bounded_clamps_defaults() {
        assert_eq!(Bounded::<1, 3>::new(9).get(), 3);
        assert_eq!(Bounded::<1, 3>::new(0).get(), 1);
        assert_eq!(Bounded::<1, 3>::new(2).get(), 2);
    }
}
