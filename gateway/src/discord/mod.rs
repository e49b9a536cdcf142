//! Discord: the per-tenant bots (serenity adapter), voice join and
//! credential capture, command (un)registration; and, for tests, a loopback
//! fake Discord that speaks the real REST and gateway protocols.
//!
//! - [`manager::SerenityBots`]: the gateway's [`crate::bots::BotManager`],
//!   one supervised bot per tenant (reconnects with backoff, updates,
//!   unregistering on delete);
//! - [`bot::GatewayBot`]: one bot — REST client, router, DM-role check,
//!   guilds — and its serenity event handler;
//! - [`voice::VoiceLink`]: the voice-state cache and the
//!   [`crate::commands::VoiceConnector`] (opcode 4, credential capture);
//! - [`wire`]: our reply model to Discord's JSON and serenity's
//!   interactions to our model; [`responder::HttpResponder`] sends replies;
//! - [`attachments::HttpAttachments`]: attachment downloads with a size cap;
//! - [`dashboard::SessionDashboards`]: the live session dashboard message
//!   (posted on `/session start`, edited while it runs, finalised on stop).
//!
//! Every bot's REST calls go to [`DiscordSettings::api_url`] when it is set
//! (`GLYPHOXA_DISCORD_API_URL`, SPEC §9), and its gateway WebSocket to the
//! address that API's `/gateway` answers with.

pub mod attachments;
pub mod bot;
pub mod dashboard;
pub mod manager;
pub mod responder;
pub mod voice;
pub mod wire;

#[cfg(feature = "fakes")]
pub mod fake;

use std::time::Duration;

pub use attachments::HttpAttachments;
pub use bot::GatewayBot;
pub use dashboard::SessionDashboards;
pub use manager::{Backoff, SerenityBots};
pub use voice::VoiceLink;

/// The environment variable naming the Discord API origin.
pub const API_URL_ENV: &str = "GLYPHOXA_DISCORD_API_URL";

/// How the bots reach Discord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordSettings {
    /// The origin replacing `https://discord.com` for every REST call (a
    /// proxy, or a fake Discord in tests); `None` = Discord itself. The
    /// gateway WebSocket address comes from this API's `/gateway` answer.
    pub api_url: Option<String>,
    /// How long a voice join waits for Discord's voice events.
    pub join_timeout: Duration,
    /// Pauses between reconnect attempts.
    pub backoff: Backoff,
    /// How long one REST call may take.
    pub request_timeout: Duration,
    /// The text channel of the live session dashboard
    /// (`discord.dashboard_channel_id`, full mode); `None` = the channel
    /// where `/session start` was used.
    pub dashboard_channel_id: Option<String>,
    /// How often the dashboard is edited while the session runs.
    pub dashboard_interval: Duration,
}

/// How often the live dashboard is refreshed by default (issue 10).
pub const DEFAULT_DASHBOARD_INTERVAL: Duration = Duration::from_secs(10);

impl Default for DiscordSettings {
    fn default() -> Self {
        Self {
            api_url: None,
            join_timeout: voice::DEFAULT_JOIN_TIMEOUT,
            backoff: Backoff::default(),
            request_timeout: Duration::from_secs(15),
            dashboard_channel_id: None,
            dashboard_interval: DEFAULT_DASHBOARD_INTERVAL,
        }
    }
}

impl DiscordSettings {
    /// Defaults, with the API origin from `GLYPHOXA_DISCORD_API_URL` when
    /// it is set and not blank.
    pub fn from_env() -> Self {
        Self {
            api_url: std::env::var(API_URL_ENV)
                .ok()
                .map(|url| url.trim().to_string())
                .filter(|url| !url.is_empty()),
            ..Self::default()
        }
    }

    /// With the dashboard in text channel `channel_id` rather than where
    /// `/session start` was used.
    pub fn with_dashboard_channel(mut self, channel_id: impl Into<String>) -> Self {
        self.dashboard_channel_id = Some(channel_id.into());
        self
    }

    /// With the API origin `api_url`.
    pub fn with_api_url(mut self, api_url: impl Into<String>) -> Self {
        self.api_url = Some(api_url.into());
        self
    }
}
