//! What can go wrong when calling a speech or language provider.

use std::time::Duration;

/// An error from a provider call, with the provider's name for context.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The provider is not configured well enough to be called (missing key or URL).
    #[error("{provider}: {message}")]
    Config {
        /// Provider name, e.g. `openai`.
        provider: &'static str,
        /// What is missing and how to supply it.
        message: String,
    },
    /// The provider cannot run on this machine (e.g. espeak-ng not installed).
    #[error("{provider} is unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: &'static str,
        /// Why, and how to fix it.
        message: String,
    },
    /// No connection could be made, or it broke before an answer.
    #[error("{provider}: connection failed: {message}")]
    Connect {
        /// Provider name.
        provider: &'static str,
        /// The transport's error.
        message: String,
    },
    /// The call took longer than allowed.
    #[error("{provider}: no answer within {after:?} ({what})")]
    Timeout {
        /// Provider name.
        provider: &'static str,
        /// The limit that was hit.
        after: Duration,
        /// Which limit: first byte, whole call, or the turn's deadline.
        what: &'static str,
    },
    /// The provider kept answering 429 until retries ran out.
    #[error("{provider}: rate limited (HTTP 429) after {attempts} attempts")]
    RateLimited {
        /// Provider name.
        provider: &'static str,
        /// How many requests were made.
        attempts: u32,
    },
    /// The provider answered with an HTTP error status.
    #[error("{provider}: HTTP {status}: {body}")]
    Http {
        /// Provider name.
        provider: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (the provider's explanation).
        body: String,
    },
    /// The provider's answer did not follow its protocol.
    #[error("{provider}: malformed response: {message}")]
    Protocol {
        /// Provider name.
        provider: &'static str,
        /// What was wrong with it.
        message: String,
    },
}

impl ProviderError {
    /// Whether calling again may succeed (rate limits, connection drops, 502/503/504).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Connect { .. } | ProviderError::RateLimited { .. } => true,
            ProviderError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The provider this error came from.
    pub fn provider(&self) -> &'static str {
        match self {
            ProviderError::Config { provider, .. }
            | ProviderError::Unavailable { provider, .. }
            | ProviderError::Connect { provider, .. }
            | ProviderError::Timeout { provider, .. }
            | ProviderError::RateLimited { provider, .. }
            | ProviderError::Http { provider, .. }
            | ProviderError::Protocol { provider, .. } => provider,
        }
    }

    /// A short label for metrics (`timeout`, `http_500`, ...).
    pub fn outcome_label(&self) -> String {
        match self {
            ProviderError::Config { .. } => "config".into(),
            ProviderError::Unavailable { .. } => "unavailable".into(),
            ProviderError::Connect { .. } => "connect".into(),
            ProviderError::Timeout { .. } => "timeout".into(),
            ProviderError::RateLimited { .. } => "rate_limited".into(),
            ProviderError::Http { status, .. } => format!("http_{status}"),
            ProviderError::Protocol { .. } => "protocol".into(),
        }
    }

    /// Builds a [`ProviderError::Protocol`].
    pub fn protocol(provider: &'static str, message: impl Into<String>) -> Self {
        ProviderError::Protocol {
            provider,
            message: message.into(),
        }
    }

    /// Converts a reqwest error, keeping timeouts apart from connection failures.
    pub(crate) fn from_reqwest(provider: &'static str, error: &reqwest::Error) -> Self {
        ProviderError::Connect {
            provider,
            message: error_chain(error),
        }
    }
}

/// The error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
