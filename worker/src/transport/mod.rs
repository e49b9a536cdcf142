//! Voice transports: how a session's audio gets in and out.
//!
//! A transport feeds each speaker's 16 kHz mono frames into the engine
//! (through [`glyphoxa_audio::SpeakerInput`]s it attaches) and takes every
//! 20 ms output frame the engine produces. The loopback transport reads and
//! writes WAV files (tests, benches, replay); the Discord transport speaks
//! voice through songbird's driver.

pub mod discord;
pub mod loopback;

use async_trait::async_trait;
use glyphoxa_audio::{OutputPacket, SessionControl};

/// Why a transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The voice connection could not be made or was lost.
    #[error("voice connection failed: {0}")]
    Connection(String),
    /// The voice credentials are missing or malformed (nothing was contacted).
    #[error("voice credentials missing or invalid: {0}")]
    Credentials(String),
    /// Audio input or output could not be read or written.
    #[error("audio i/o failed: {0}")]
    Io(String),
}

/// How a session's audio reaches the players and back.
#[async_trait]
pub trait VoiceTransport: Send {
    /// A short name for logs (`loopback`, `discord`).
    fn name(&self) -> &'static str;

    /// Whether output frames should carry Opus (else PCM is enough).
    fn wants_opus(&self) -> bool;

    /// Connects and starts feeding speaker audio into the engine.
    async fn start(&mut self, control: SessionControl) -> Result<(), TransportError>;

    /// Takes one output frame (called every 20 ms by the session's pump; must not block).
    fn deliver(&mut self, packet: &OutputPacket);

    /// Moves the voice connection to a new server (Discord's VOICE_SERVER_UPDATE).
    async fn update_voice_server(
        &mut self,
        token: &str,
        endpoint: &str,
        voice_session_id: &str,
    ) -> Result<(), TransportError>;

    /// Whether all scripted input has been delivered (loopback); a live
    /// connection never ends by itself.
    fn input_finished(&self) -> bool {
        false
    }

    /// Disconnects and flushes output.
    async fn stop(&mut self) -> Result<(), TransportError>;
}
