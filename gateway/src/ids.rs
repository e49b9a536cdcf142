//! Validated identifiers: tenants, campaigns, sessions and Discord ids.
//!
//! Each type checks its text when it is built, so a value that reached a
//! store or a worker is known to be well-formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a piece of text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct InvalidId {
    /// What kind of id was expected, e.g. "tenant id".
    pub kind: &'static str,
    /// The rejected text (never a secret).
    pub value: String,
    /// The rule it breaks, phrased as what to do.
    pub rule: &'static str,
}

fn invalid(kind: &'static str, value: &str, rule: &'static str) -> InvalidId {
    // Overlong input is shortened so an error message stays readable.
    let mut shown: String = value.chars().take(80).collect();
    if value.chars().count() > 80 {
        shown.push('…');
    }
    InvalidId {
        kind,
        value: shown,
        rule,
    }
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it.
            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                $check(text)?;
                Ok(Self(text.to_string()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// A tenant id: `^[a-z][a-z0-9_]{0,62}$` (SPEC §4).
    TenantId,
    "tenant id",
    check_tenant_id
);

string_id!(
    /// A campaign id, unique per tenant: `^[a-z0-9][a-z0-9_-]{0,63}$`. Build
    /// one from a display name with [`CampaignId::from_name`].
    CampaignId,
    "campaign id",
    check_campaign_id
);

string_id!(
    /// A session id: 1 to 64 characters of `A-Z a-z 0-9 _ -`. New sessions
    /// get a random UUID ([`SessionId::random`]).
    SessionId,
    "session id",
    check_session_id
);

string_id!(
    /// A Discord snowflake (guild, channel, role or user id): 1 to 20 decimal
    /// digits, kept as a string (SPEC §2).
    DiscordId,
    "Discord id",
    check_discord_id
);

fn check_tenant_id(text: &str) -> Result<(), InvalidId> {
    let rule = "use 1 to 63 characters: a lower-case letter, then lower-case letters, digits or '_'";
    let mut chars = text.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && text.len() <= 63 {
        Ok(())
    } else {
        Err(invalid("tenant id", text, rule))
    }
}

fn check_campaign_id(text: &str) -> Result<(), InvalidId> {
    let rule = "use 1 to 64 characters: lower-case letters, digits, '_' or '-', starting with a letter or digit";
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && text.len() <= 64 {
        Ok(())
    } else {
        Err(invalid("campaign id", text, rule))
    }
}

fn check_session_id(text: &str) -> Result<(), InvalidId> {
    let ok =
        !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "session id",
            text,
            "use 1 to 64 characters of letters, digits, '_' or '-'",
        ))
    }
}

fn check_discord_id(text: &str) -> Result<(), InvalidId> {
    if !text.is_empty() && text.len() <= 20 && text.chars().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(
            "Discord id",
            text,
            "use the numeric id as a string of 1 to 20 digits, e.g. \"123456789012345678\"",
        ))
    }
}

impl SessionId {
    /// A new random session id (a UUID v4).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

impl CampaignId {
    /// The campaign a tenant gets when it has none (SPEC §2).
    pub fn default_campaign() -> Self {
        Self("default".to_string())
    }

    /// An id derived from a display name: lower-case ASCII letters and
    /// digits, other runs of characters as one `-`. A name without any ASCII
    /// letter or digit gets a random id.
    pub fn from_name(name: &str) -> Self {
        let mut slug = String::new();
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
            if slug.len() >= 64 {
                break;
            }
        }
        let slug = slug.trim_end_matches('-').to_string();
        if slug.is_empty() {
            let random = uuid::Uuid::new_v4().simple().to_string();
            return Self(format!("c{}", &random[..12]));
        }
        Self(slug)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_pattern() {
        for ok in ["a", "acme", "acme_2", &format!("a{}", "b".repeat(62))] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1acme",
            "Acme",
            "ac-me",
            "_a",
            "a b",
            &format!("a{}", "b".repeat(63)),
            "é",
        ] {
            let err = TenantId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "tenant id", "{bad}");
        }
    }

    #[test]
    fn campaign_slug() {
        assert_eq!(
            CampaignId::from_name("Lost Mine of Phandelver!").as_str(),
            "lost-mine-of-phandelver"
        );
        assert_eq!(CampaignId::from_name("  --X--  ").as_str(), "x");
        let random = CampaignId::from_name("ÄÖÜ");
        assert!(CampaignId::parse(random.as_str()).is_ok());
        assert!(CampaignId::parse(CampaignId::from_name(&"a".repeat(200)).as_str()).is_ok());
    }

    #[test]
    fn discord_and_session_ids() {
        assert!(DiscordId::parse("123456789012345678").is_ok());
        assert!(DiscordId::parse("12a").is_err());
        assert!(DiscordId::parse("").is_err());
        assert!(DiscordId::parse(&"1".repeat(21)).is_err());
        assert!(SessionId::parse(SessionId::random().as_str()).is_ok());
        assert!(SessionId::parse("a/b").is_err());
    }

    #[test]
    fn deserialize_validates() {
        let err = serde_json::from_str::<TenantId>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid tenant id"), "{err}");
        let ok: TenantId = serde_json::from_str("\"good\"").unwrap();
        assert_eq!(ok.as_str(), "good");
    }
}
