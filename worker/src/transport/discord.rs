//! The Discord voice transport: songbird 0.6 as a *driver only*.
//!
//! The process that owns the bot's Discord gateway connection joins the voice
//! channel and captures the credentials (voice session id, token, endpoint);
//! this transport opens the voice connection itself with songbird's
//! [`Driver`]. DAVE end-to-end encryption needs nothing from us: songbird 0.6
//! offers it in every Identify and sets it up whenever the voice server
//! selects it.
//!
//! - **Receive**: songbird decodes every speaker's Opus straight to 16 kHz
//!   mono (its `DecodeConfig`) and fires a `VoiceTick` every 20 ms. A
//!   `SpeakerMap` maps each SSRC to its Discord user (learned from
//!   `SpeakingStateUpdate`) and pushes the PCM into that user's
//!   [`SpeakerInput`] ring; users are attached on their first audio and
//!   detached when they leave the channel.
//! - **Send**: [`VoiceTransport::deliver`] copies each 20 ms output frame
//!   into a bounded lock-free `OutputQueue` (the oldest frame goes when it is
//!   full: latency stays bounded). One songbird track reads it as raw 48 kHz
//!   stereo PCM and songbird encodes it, once. A `SpeechGate` plays that track
//!   while the engine's output is audible and pauses it after a short
//!   hangover; songbird then sends its five Opus silence frames and stops
//!   sending until the next line. (Songbird raises the Speaking flag when
//!   the track is attached and keeps it while the track exists: the flag is
//!   not toggled per line, the packets are.)
//!
//! Everything around the driver calls is plain code and unit-tested here;
//! the driver itself needs a real Discord voice server.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::{NonZeroU64, NonZeroU8};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use crossbeam_queue::ArrayQueue;
use glyphoxa_audio::{
    AudioError, OutputPacket, SessionControl, SpeakerId, SpeakerInput, OUTPUT_CHANNELS, OUTPUT_FRAME_SAMPLES,
    OUTPUT_SAMPLE_RATE,
};
use glyphoxa_proto::v1::StartSessionRequest;
use songbird::driver::retry::{Retry, Strategy};
use songbird::driver::{Channels, DecodeConfig, DecodeMode, DisposalThread, SampleRate};
use songbird::id::{ChannelId, GuildId, UserId};
use songbird::input::core::io::MediaSource;
use songbird::input::{Input, RawAdapter};
use songbird::tracks::{Track, TrackHandle};
use songbird::{Config, ConnectionInfo, CoreEvent, Driver, Event, EventContext, EventHandler};

use super::{TransportError, VoiceTransport};

/// Output frames the send queue holds (120 ms): room for the pump's bursts
/// and clock drift between the engine's tick and songbird's mixer.
const OUTPUT_QUEUE_FRAMES: usize = 6;

/// Inaudible frames after which the output track pauses. At least the queue's
/// capacity, so a pause never strands audible audio in the queue.
const HANGOVER_FRAMES: u32 = OUTPUT_QUEUE_FRAMES as u32;

/// Bytes of one output frame as songbird's raw input reads it (f32 LE).
const FRAME_BYTES: usize = OUTPUT_FRAME_SAMPLES * std::mem::size_of::<f32>();

/// Voice frames (20 ms each) after which a refused speaker is tried again
/// (a speaker slot may have been freed meanwhile).
const REATTACH_AFTER_FRAMES: u32 = 50;

/// Speakers and SSRCs a session expects; the maps grow past it only in
/// unusually crowded channels.
const EXPECTED_SPEAKERS: usize = 32;

/// Tuning of the Discord voice connection.
#[derive(Debug, Clone)]
pub struct DiscordVoiceSettings {
    /// Longest wait for one connection attempt (voice WebSocket handshake,
    /// IP discovery, encryption and DAVE setup).
    pub attempt_timeout: Duration,
    /// Retries after a failed attempt (songbird always retries at least once).
    pub retries: u8,
    /// Wait between two attempts.
    pub retry_wait: Duration,
    /// Received packets songbird buffers per speaker before decoding (20 ms
    /// each): absorbs network jitter and reordering, adds as much latency.
    pub playout_buffer_frames: NonZeroU8,
    /// The mixer scheduler the drivers run on. `None`: songbird's
    /// process-wide one, whose task lives on the tokio runtime that first
    /// used it — right for a process with one runtime; tests that each run
    /// their own runtime give every driver a scheduler of its own.
    pub scheduler: Option<songbird::driver::Scheduler>,
}

impl Default for DiscordVoiceSettings {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            retries: 2,
            retry_wait: Duration::from_millis(500),
            // 3 packets (60 ms): songbird's default of 5 (100 ms) delays every reply.
            playout_buffer_frames: NonZeroU8::MIN.saturating_add(2),
            scheduler: None,
        }
    }
}

impl DiscordVoiceSettings {
    /// Retries as songbird counts them: `retry_limit: None` would retry forever.
    fn retry(&self) -> Retry {
        Retry {
            strategy: Strategy::Every(self.retry_wait.into()),
            retry_limit: Some(NonZeroU8::new(self.retries).unwrap_or(NonZeroU8::MIN)),
        }
    }

    /// The longest a connect can take, every attempt and wait included.
    pub fn connect_deadline(&self) -> Duration {
        let attempts = u32::from(self.retries.max(1)) + 1;
        self.attempt_timeout * attempts + self.retry_wait * (attempts - 1) + Duration::from_millis(500)
    }

    /// The songbird driver configuration of one session.
    fn driver_config(&self) -> Config {
        let config = match &self.scheduler {
            Some(scheduler) => Config::default().scheduler(scheduler.clone()),
            None => Config::default(),
        };
        config
            .decode_mode(DecodeMode::Decode(DecodeConfig::new(
                Channels::Mono,
                SampleRate::Hz16000,
            )))
            .playout_buffer_length(self.playout_buffer_frames)
            .driver_timeout(Some(self.attempt_timeout))
            .driver_retry(self.retry())
            // Our engine's i16 output is always within [-1, 1) as f32.
            .use_softclip(false)
            .disposer(disposer())
    }
}

/// One disposal thread for every session's driver (songbird spawns one per
/// driver otherwise).
fn disposer() -> DisposalThread {
    static DISPOSER: OnceLock<DisposalThread> = OnceLock::new();
    DISPOSER.get_or_init(DisposalThread::run).clone()
}

/// Where and as whom the bot joins: the validated voice credentials of one
/// session. Its `Debug` and `Display` never show the token.
#[derive(Clone, PartialEq, Eq)]
pub struct VoiceTarget {
    guild: NonZeroU64,
    channel: NonZeroU64,
    bot: NonZeroU64,
    session_id: String,
    token: String,
    endpoint: String,
}

impl fmt::Debug for VoiceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VoiceTarget")
            .field("guild", &self.guild)
            .field("channel", &self.channel)
            .field("bot", &self.bot)
            .field("endpoint", &self.endpoint)
            .field("token", &"<secret>")
            .finish_non_exhaustive()
    }
}

impl fmt::Display for VoiceTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "voice channel {} of guild {} at {}",
            self.channel, self.guild, self.endpoint
        )
    }
}

impl VoiceTarget {
    /// Validates a StartSession request's guild, channel and voice
    /// credentials. Contacts nothing.
    pub fn from_request(request: &StartSessionRequest) -> Result<Self, TransportError> {
        let Some(voice) = request.voice.as_ref() else {
            return Err(TransportError::Credentials(
                "StartSession carries no `voice` credentials (bot_user_id, session_id, token, endpoint): the \
                 gateway-owning process must join the voice channel first; without Discord, run workers with \
                 `worker: { transport: loopback }`"
                    .into(),
            ));
        };
        let session_id = voice.session_id.trim();
        if session_id.is_empty() {
            return Err(TransportError::Credentials(
                "voice.session_id is empty (it comes from the bot's VOICE_STATE_UPDATE)".into(),
            ));
        }
        Ok(Self {
            guild: snowflake("guild_id", &request.guild_id)?,
            channel: snowflake("channel_id", &request.channel_id)?,
            bot: snowflake("voice.bot_user_id", &voice.bot_user_id)?,
            session_id: session_id.to_owned(),
            token: token(&voice.token)?,
            endpoint: endpoint(&voice.endpoint)?,
        })
    }

    /// The same target on a new voice server (VOICE_SERVER_UPDATE); an empty
    /// `session_id` keeps the current one.
    pub fn with_server(&self, token_: &str, endpoint_: &str, session_id: &str) -> Result<Self, TransportError> {
        let session_id = session_id.trim();
        Ok(Self {
            token: token(token_)?,
            endpoint: endpoint(endpoint_)?,
            session_id: if session_id.is_empty() {
                self.session_id.clone()
            } else {
                session_id.to_owned()
            },
            ..self.clone()
        })
    }

    /// The bot's own Discord user id.
    pub fn bot_user_id(&self) -> u64 {
        self.bot.get()
    }

    /// The voice server endpoint, `host[:port]` without scheme.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What songbird's driver connects with.
    fn connection_info(&self) -> ConnectionInfo {
        ConnectionInfo {
            channel_id: ChannelId(self.channel),
            endpoint: self.endpoint.clone(),
            guild_id: GuildId(self.guild),
            session_id: self.session_id.clone(),
            token: self.token.clone(),
            user_id: UserId(self.bot),
        }
    }
}

/// A Discord id ("snowflake"): a non-zero decimal u64.
fn snowflake(field: &str, value: &str) -> Result<NonZeroU64, TransportError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(TransportError::Credentials(format!(
            "{field} is empty: the Discord voice transport needs it"
        )));
    }
    value
        .parse::<u64>()
        .ok()
        .and_then(NonZeroU64::new)
        .ok_or_else(|| TransportError::Credentials(format!("{field} {value:?} is not a Discord id")))
}

/// A voice token: present (its value never appears in errors or logs).
fn token(value: &str) -> Result<String, TransportError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(TransportError::Credentials(
            "the voice token is empty (it comes from VOICE_SERVER_UPDATE)".into(),
        ));
    }
    Ok(value.to_owned())
}

/// A voice server endpoint as songbird wants it: `host[:port]`, no scheme
/// (a leading `wss://` and trailing `/` are tolerated and removed).
fn endpoint(value: &str) -> Result<String, TransportError> {
    let trimmed = value.trim();
    let host = trimmed.strip_prefix("wss://").unwrap_or(trimmed).trim_end_matches('/');
    if host.is_empty() {
        return Err(TransportError::Credentials(
            "the voice endpoint is empty (it comes from VOICE_SERVER_UPDATE; a null endpoint means the voice \
             server is being reallocated: wait for the next update)"
                .into(),
        ));
    }
    if host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '@')) {
        return Err(TransportError::Credentials(format!(
            "the voice endpoint {trimmed:?} is not a host[:port]"
        )));
    }
    Ok(host.to_owned())
}

/// One frame of mixed output: 20 ms of 48 kHz interleaved stereo.
type PcmFrame = [i16; OUTPUT_FRAME_SAMPLES];

/// The bounded lock-free queue between [`VoiceTransport::deliver`] (the
/// session's pump) and songbird's mixer thread. Pushing never blocks: a full
/// queue drops its *oldest* frame, so a stalled reader costs at most the
/// queue's length in latency, never more; an empty queue reads as silence.
#[derive(Debug)]
struct OutputQueue {
    frames: ArrayQueue<PcmFrame>,
    /// Frames dropped because the queue was full.
    dropped: AtomicU64,
    /// Frames the reader wanted while the queue was empty.
    underruns: AtomicU64,
}

impl OutputQueue {
    fn new(capacity: usize) -> Self {
        Self {
            frames: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
        }
    }

    /// Queues one frame (shorter input is padded with silence, longer cut),
    /// dropping the oldest queued frame if full. Never blocks or allocates.
    fn push(&self, pcm: &[i16]) {
        let mut frame: PcmFrame = [0; OUTPUT_FRAME_SAMPLES];
        let n = pcm.len().min(OUTPUT_FRAME_SAMPLES);
        frame[..n].copy_from_slice(&pcm[..n]);
        if self.frames.force_push(frame).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The oldest queued frame.
    fn pop(&self) -> Option<PcmFrame> {
        self.frames.pop()
    }

    /// Drops every queued frame; returns how many there were.
    fn clear(&self) -> usize {
        let mut n = 0;
        while self.frames.pop().is_some() {
            n += 1;
        }
        n
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.frames.len()
    }
}

/// Songbird's view of the [`OutputQueue`]: an endless raw PCM stream of f32
/// little-endian samples (what [`RawAdapter`] carries). Reads never block: an
/// empty queue reads as one frame of silence.
struct QueueSource {
    queue: Arc<OutputQueue>,
    /// The current frame converted to f32 LE bytes.
    bytes: Box<[u8; FRAME_BYTES]>,
    /// Read position in `bytes`.
    pos: usize,
}

impl QueueSource {
    fn new(queue: Arc<OutputQueue>) -> Self {
        Self {
            queue,
            bytes: Box::new([0; FRAME_BYTES]),
            pos: FRAME_BYTES,
        }
    }

    /// Loads the next frame (or silence) into `bytes`.
    fn next_frame(&mut self) {
        match self.queue.pop() {
            Some(frame) => pcm_to_f32_le(&frame, &mut self.bytes[..]),
            None => {
                self.queue.underruns.fetch_add(1, Ordering::Relaxed);
                self.bytes.fill(0);
            }
        }
        self.pos = 0;
    }
}

impl Read for QueueSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= FRAME_BYTES {
            self.next_frame();
        }
        let n = buf.len().min(FRAME_BYTES - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Seek for QueueSource {
    fn seek(&mut self, _pos: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a live voice stream cannot seek",
        ))
    }
}

impl MediaSource for QueueSource {
    fn is_seekable(&self) -> bool {
        false
    }

    fn byte_len(&self) -> Option<u64> {
        None
    }
}

/// Converts i16 samples to f32 little-endian bytes in [-1, 1) (`out` holds
/// four bytes per sample; extra samples or bytes are ignored).
fn pcm_to_f32_le(pcm: &[i16], out: &mut [u8]) {
    for (sample, bytes) in pcm.iter().zip(out.chunks_exact_mut(4)) {
        bytes.copy_from_slice(&(f32::from(*sample) / 32_768.0).to_le_bytes());
    }
}

/// What to do with one output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateStep {
    /// Not speaking: drop the frame.
    Quiet,
    /// Speech starts: clear stale frames, queue this one, play the track.
    Start,
    /// Speaking: queue the frame.
    Continue,
    /// The hangover ran out: queue the frame and pause the track (songbird
    /// sends its silence frames and stops sending).
    End,
}

/// Decides when the bot is speaking from the engine's `audible` flags.
#[derive(Debug)]
struct SpeechGate {
    hangover: u32,
    /// Inaudible frames in a row while speaking; `None` while quiet.
    quiet_run: Option<u32>,
}

impl SpeechGate {
    fn new(hangover: u32) -> Self {
        Self {
            hangover: hangover.max(1),
            quiet_run: None,
        }
    }

    fn step(&mut self, audible: bool) -> GateStep {
        match (self.quiet_run, audible) {
            (None, false) => GateStep::Quiet,
            (None, true) => {
                self.quiet_run = Some(0);
                GateStep::Start
            }
            (Some(_), true) => {
                self.quiet_run = Some(0);
                GateStep::Continue
            }
            (Some(run), false) => {
                let run = run + 1;
                if run >= self.hangover {
                    self.quiet_run = None;
                    GateStep::End
                } else {
                    self.quiet_run = Some(run);
                    GateStep::Continue
                }
            }
        }
    }

    fn speaking(&self) -> bool {
        self.quiet_run.is_some()
    }
}

/// A Discord user's place in the engine.
enum Speaker {
    /// Audio goes here.
    Attached(SpeakerInput),
    /// The engine refused the speaker (no free slot); tried again after
    /// `retry_in` more voice frames.
    Refused { retry_in: u32 },
}

/// Counters of the receive side.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ReceiveCounts {
    /// Voice frames pushed into a speaker's ring.
    pushed: u64,
    /// Voice frames from SSRCs no SpeakingStateUpdate has named yet.
    unmapped: u64,
    /// Voice frames lost: ring full, speaker refused or engine stopped.
    dropped: u64,
}

/// SSRC → Discord user → the engine's [`SpeakerInput`]. Driven by songbird's
/// events (on its event task; every call returns at once, and pushing audio
/// neither allocates nor blocks).
struct SpeakerMap {
    control: SessionControl,
    bot: u64,
    users: HashMap<u32, u64>,
    speakers: HashMap<u64, Speaker>,
    counts: ReceiveCounts,
}

impl SpeakerMap {
    fn new(control: SessionControl, bot: u64) -> Self {
        Self {
            control,
            bot,
            users: HashMap::with_capacity(EXPECTED_SPEAKERS),
            speakers: HashMap::with_capacity(EXPECTED_SPEAKERS),
            counts: ReceiveCounts::default(),
        }
    }

    /// A SpeakingStateUpdate named the user behind an SSRC.
    fn map_ssrc(&mut self, ssrc: u32, user: u64) {
        self.users.insert(ssrc, user);
    }

    /// One tick of decoded 16 kHz mono audio from an SSRC.
    fn voice(&mut self, ssrc: u32, pcm: &[i16]) {
        if pcm.is_empty() {
            return;
        }
        let Some(&user) = self.users.get(&ssrc) else {
            self.counts.unmapped += 1;
            return;
        };
        if user == self.bot {
            return;
        }
        let speaker = match self.speakers.entry(user) {
            Entry::Occupied(entry) => {
                let speaker = entry.into_mut();
                if let Speaker::Refused { retry_in } = speaker {
                    match retry_in.checked_sub(1) {
                        Some(left) => *retry_in = left,
                        None => *speaker = attach(&self.control, user),
                    }
                }
                speaker
            }
            Entry::Vacant(entry) => entry.insert(attach(&self.control, user)),
        };
        match speaker {
            Speaker::Attached(input) => match input.push_samples(pcm) {
                Ok(_) => self.counts.pushed += 1,
                Err(_) => self.counts.dropped += 1,
            },
            Speaker::Refused { .. } => self.counts.dropped += 1,
        }
    }

    /// A user left the voice channel: detach them (an open utterance ends).
    fn user_left(&mut self, user: u64) {
        self.users.retain(|_, u| *u != user);
        if self.speakers.remove(&user).is_some() {
            tracing::debug!(user, "speaker left the voice channel");
        }
    }

    /// Forgets every SSRC (they belong to one voice server connection);
    /// speakers stay attached.
    fn forget_ssrcs(&mut self) {
        self.users.clear();
    }

    /// Forgets everything and detaches every speaker.
    fn reset(&mut self) {
        self.users.clear();
        self.speakers.clear();
    }

    #[cfg(test)]
    fn attached(&self) -> usize {
        self.speakers
            .values()
            .filter(|s| matches!(s, Speaker::Attached(_)))
            .count()
    }
}

/// Claims an engine speaker slot for a user.
fn attach(control: &SessionControl, user: u64) -> Speaker {
    match control.attach_speaker(SpeakerId(user)) {
        Ok(input) => {
            tracing::debug!(user, "speaker attached");
            Speaker::Attached(input)
        }
        Err(error) => {
            if !matches!(error, AudioError::EngineStopped) {
                tracing::warn!(user, %error, "cannot listen to this speaker");
            }
            Speaker::Refused {
                retry_in: REATTACH_AFTER_FRAMES,
            }
        }
    }
}

/// Locks the speaker map (only songbird's event task and `stop` take it, so
/// it is never contended for long; a poisoned lock is still usable).
fn lock(speakers: &Mutex<SpeakerMap>) -> MutexGuard<'_, SpeakerMap> {
    speakers.lock().unwrap_or_else(|e| e.into_inner())
}

/// Songbird's global events of one session, fed to its [`SpeakerMap`].
#[derive(Clone)]
struct VoiceEvents {
    speakers: Arc<Mutex<SpeakerMap>>,
    /// For logs: "voice channel … of guild … at …" (no secrets).
    label: Arc<str>,
}

impl VoiceEvents {
    /// The core events this handler takes.
    const EVENTS: [CoreEvent; 5] = [
        CoreEvent::SpeakingStateUpdate,
        CoreEvent::VoiceTick,
        CoreEvent::ClientDisconnect,
        CoreEvent::DriverReconnect,
        CoreEvent::DriverDisconnect,
    ];
}

#[async_trait]
impl EventHandler for VoiceEvents {
    async fn act(&self, ctx: &EventContext<'_>) -> Option<Event> {
        match ctx {
            EventContext::VoiceTick(tick) => {
                let mut speakers = lock(&self.speakers);
                for (ssrc, data) in &tick.speaking {
                    if let Some(pcm) = data.decoded_voice.as_deref() {
                        speakers.voice(*ssrc, pcm);
                    }
                }
            }
            EventContext::SpeakingStateUpdate(speaking) => {
                if let Some(user) = speaking.user_id {
                    lock(&self.speakers).map_ssrc(speaking.ssrc, user.0);
                }
            }
            EventContext::ClientDisconnect(left) => lock(&self.speakers).user_left(left.user_id.0),
            EventContext::DriverReconnect(_) => {
                tracing::info!(voice = %self.label, "Discord voice connection resumed");
            }
            EventContext::DriverDisconnect(lost) => {
                // The connection is gone (songbird gave up reconnecting, or
                // Discord closed it): detach everyone; a new connection
                // (UpdateVoiceServer) brings new SSRCs.
                lock(&self.speakers).reset();
                tracing::warn!(
                    voice = %self.label,
                    kind = ?lost.kind,
                    reason = ?lost.reason,
                    "Discord voice connection lost"
                );
            }
            _ => {}
        }
        None
    }
}

/// Voice through Discord: songbird's driver, connected with the credentials
/// the gateway-owning process captured.
pub struct DiscordTransport {
    target: VoiceTarget,
    settings: DiscordVoiceSettings,
    driver: Option<Driver>,
    speakers: Option<Arc<Mutex<SpeakerMap>>>,
    output: Arc<OutputQueue>,
    gate: SpeechGate,
    track: Option<TrackHandle>,
}

impl fmt::Debug for DiscordTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordTransport")
            .field("target", &self.target)
            .field("connected", &self.driver.is_some())
            .field("speaking", &self.gate.speaking())
            .finish_non_exhaustive()
    }
}

impl DiscordTransport {
    /// A transport for `target`; nothing is contacted before
    /// [`VoiceTransport::start`].
    pub fn new(target: VoiceTarget, settings: DiscordVoiceSettings) -> Self {
        Self {
            target,
            settings,
            driver: None,
            speakers: None,
            output: Arc::new(OutputQueue::new(OUTPUT_QUEUE_FRAMES)),
            gate: SpeechGate::new(HANGOVER_FRAMES),
            track: None,
        }
    }

    /// A transport for the session `request` starts: validates its voice
    /// credentials (a clear [`TransportError::Credentials`] when they are
    /// missing) without contacting anything.
    pub fn from_request(request: &StartSessionRequest, settings: DiscordVoiceSettings) -> Result<Self, TransportError> {
        Ok(Self::new(VoiceTarget::from_request(request)?, settings))
    }

    /// Where this transport connects.
    pub fn target(&self) -> &VoiceTarget {
        &self.target
    }

    /// Output frames dropped because songbird fell behind, and frames it
    /// read while nothing was queued (played as silence).
    pub fn output_counters(&self) -> (u64, u64) {
        (
            self.output.dropped.load(Ordering::Relaxed),
            self.output.underruns.load(Ordering::Relaxed),
        )
    }

    /// Adds the output track to the driver (paused unless `playing`).
    fn add_track(&mut self, playing: bool) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        let source = RawAdapter::new(
            QueueSource::new(Arc::clone(&self.output)),
            OUTPUT_SAMPLE_RATE,
            OUTPUT_CHANNELS as u32,
        );
        let track = Track::new(Input::from(source));
        self.track = Some(driver.play(if playing { track.play() } else { track.pause() }));
    }

    /// Plays the output track (re-adding it if songbird dropped it).
    fn play(&mut self) {
        let playing = self.track.as_ref().is_some_and(|track| track.play().is_ok());
        if !playing {
            self.add_track(true);
        }
    }

    /// Pauses the output track: songbird sends five silence frames, then
    /// nothing until the next `play`.
    fn pause(&mut self) {
        if let Some(track) = &self.track {
            let _ = track.pause();
        }
    }
}

/// Connects (or moves) `driver` to `target`, all of songbird's attempts
/// bounded by the settings' deadline.
async fn connect(
    driver: &mut Driver,
    target: &VoiceTarget,
    settings: &DiscordVoiceSettings,
) -> Result<(), TransportError> {
    let deadline = settings.connect_deadline();
    match tokio::time::timeout(deadline, driver.connect(target.connection_info())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(TransportError::Connection(format!("cannot join the {target}: {error}"))),
        Err(_) => {
            driver.leave();
            Err(TransportError::Connection(format!(
                "cannot join the {target}: no connection within {deadline:?}"
            )))
        }
    }
}

#[async_trait]
impl VoiceTransport for DiscordTransport {
    fn name(&self) -> &'static str {
        "discord"
    }

    /// PCM: songbird encodes our single track itself, once. Its Opus
    /// passthrough would need the engine's packets wrapped in a container
    /// symphonia demuxes (DCA, Ogg), a custom demuxer for no saving: one
    /// encode either way, in the engine instead of in songbird.
    fn wants_opus(&self) -> bool {
        false
    }

    async fn start(&mut self, control: SessionControl) -> Result<(), TransportError> {
        let speakers = Arc::new(Mutex::new(SpeakerMap::new(control, self.target.bot_user_id())));
        let events = VoiceEvents {
            speakers: Arc::clone(&speakers),
            label: self.target.to_string().into(),
        };
        let mut driver = Driver::new(self.settings.driver_config());
        for event in VoiceEvents::EVENTS {
            driver.add_global_event(Event::Core(event), events.clone());
        }
        tracing::info!(voice = %self.target, "joining the Discord voice channel");
        // On failure the driver is dropped here, which stops its tasks.
        connect(&mut driver, &self.target, &self.settings).await?;
        tracing::info!(voice = %self.target, "Discord voice connected");
        self.driver = Some(driver);
        self.speakers = Some(speakers);
        self.add_track(false);
        Ok(())
    }

    fn deliver(&mut self, packet: &OutputPacket) {
        if self.driver.is_none() {
            return;
        }
        match self.gate.step(packet.audible()) {
            GateStep::Quiet => {}
            GateStep::Start => {
                self.output.clear();
                self.output.push(packet.pcm());
                self.play();
            }
            GateStep::Continue => self.output.push(packet.pcm()),
            GateStep::End => {
                self.output.push(packet.pcm());
                self.pause();
            }
        }
    }

    async fn update_voice_server(
        &mut self,
        token: &str,
        endpoint: &str,
        voice_session_id: &str,
    ) -> Result<(), TransportError> {
        let target = self.target.with_server(token, endpoint, voice_session_id)?;
        let moved = target != self.target;
        self.target = target;
        let Some(driver) = self.driver.as_mut() else {
            // Not started yet: `start` connects to the new server.
            return Ok(());
        };
        if moved {
            // SSRCs belong to one voice server connection; the new server
            // names its speakers again.
            if let Some(speakers) = &self.speakers {
                lock(speakers).forget_ssrcs();
            }
            tracing::info!(voice = %self.target, "moving to a new Discord voice server");
        }
        // Unchanged credentials are fine: songbird only reconnects when they
        // changed or the connection is down.
        connect(driver, &self.target, &self.settings).await
    }

    async fn stop(&mut self) -> Result<(), TransportError> {
        if let Some(track) = self.track.take() {
            let _ = track.stop();
        }
        if let Some(mut driver) = self.driver.take() {
            driver.leave();
            tracing::info!(voice = %self.target, "left the Discord voice channel");
        }
        if let Some(speakers) = self.speakers.take() {
            lock(&speakers).reset();
        }
        self.output.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glyphoxa_audio::{EngineSettings, NullSink, SessionCore, INPUT_FRAME_SAMPLES};
    use glyphoxa_proto::v1::VoiceCredentials;
    use songbird::input::codecs::{get_codec_registry, get_probe};
    use songbird::input::LiveInput;
    use symphonia::core::audio::{AudioBufferRef, Signal};

    fn request() -> StartSessionRequest {
        StartSessionRequest {
            session_id: "s1".into(),
            guild_id: "111".into(),
            channel_id: "222".into(),
            voice: Some(VoiceCredentials {
                bot_user_id: "333".into(),
                session_id: "voice-session".into(),
                token: "very-secret-token".into(),
                endpoint: "eu-west1.discord.media:443".into(),
            }),
            ..Default::default()
        }
    }

    fn credentials_error(result: Result<VoiceTarget, TransportError>) -> String {
        match result {
            Err(TransportError::Credentials(message)) => message,
            other => panic!("expected a credentials error, got {other:?}"),
        }
    }

    #[test]
    fn valid_credentials_make_a_target() {
        let target = VoiceTarget::from_request(&request()).expect("valid");
        assert_eq!(target.bot_user_id(), 333);
        assert_eq!(target.endpoint(), "eu-west1.discord.media:443");
        let info = target.connection_info();
        assert_eq!(info.guild_id.0.get(), 111);
        assert_eq!(info.channel_id.0.get(), 222);
        assert_eq!(info.session_id, "voice-session");
        assert_eq!(info.token, "very-secret-token");
    }

    #[test]
    fn missing_or_bad_credentials_are_refused_before_connecting() {
        let mut no_voice = request();
        no_voice.voice = None;
        let message = credentials_error(VoiceTarget::from_request(&no_voice));
        assert!(message.contains("no `voice` credentials"), "{message}");
        assert!(message.contains("loopback"), "{message}");

        type Spoil = fn(&mut StartSessionRequest);
        let cases: [(Spoil, &str); 7] = [
            (|r| r.guild_id.clear(), "guild_id is empty"),
            (
                |r| r.channel_id = "general".into(),
                "channel_id \"general\" is not a Discord id",
            ),
            (
                |r| r.voice.as_mut().unwrap().bot_user_id = "0".into(),
                "bot_user_id \"0\"",
            ),
            (|r| r.voice.as_mut().unwrap().session_id.clear(), "session_id is empty"),
            (|r| r.voice.as_mut().unwrap().token = "  ".into(), "token is empty"),
            (|r| r.voice.as_mut().unwrap().endpoint.clear(), "endpoint is empty"),
            (
                |r| r.voice.as_mut().unwrap().endpoint = "https://x/y".into(),
                "not a host[:port]",
            ),
        ];
        for (spoil, expected) in cases {
            let mut bad = request();
            spoil(&mut bad);
            let message = credentials_error(VoiceTarget::from_request(&bad));
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains("very-secret-token"));
        }
        // The transport refuses them the same way, without a runtime or a connection.
        let mut no_voice = request();
        no_voice.voice = None;
        assert!(matches!(
            DiscordTransport::from_request(&no_voice, DiscordVoiceSettings::default()),
            Err(TransportError::Credentials(_))
        ));
    }

    #[test]
    fn endpoints_lose_scheme_and_trailing_slash() {
        assert_eq!(
            endpoint("wss://host.discord.media:443/").ok().as_deref(),
            Some("host.discord.media:443")
        );
        assert_eq!(endpoint(" host ").ok().as_deref(), Some("host"));
        assert!(endpoint("wss://").is_err());
        assert!(endpoint("a b").is_err());
    }

    #[test]
    fn the_token_never_shows() {
        let target = VoiceTarget::from_request(&request()).expect("valid");
        let shown = format!("{target} {target:?} {:?}", target.connection_info());
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("voice channel 222 of guild 111 at eu-west1.discord.media:443"));
        let transport = DiscordTransport::new(target, DiscordVoiceSettings::default());
        assert!(!format!("{transport:?}").contains("very-secret-token"));
    }

    #[test]
    fn a_new_voice_server_keeps_the_channel() {
        let target = VoiceTarget::from_request(&request()).expect("valid");
        let moved = target
            .with_server("new-token", "wss://us-east2.discord.media", "")
            .expect("valid");
        let info = moved.connection_info();
        assert_eq!(info.token, "new-token");
        assert_eq!(info.endpoint, "us-east2.discord.media");
        assert_eq!(info.session_id, "voice-session");
        assert_eq!(info.channel_id.0.get(), 222);
        let renamed = target.with_server("t", "e", "new-session").expect("valid");
        assert_eq!(renamed.connection_info().session_id, "new-session");
        assert!(matches!(
            target.with_server("", "e", ""),
            Err(TransportError::Credentials(_))
        ));
        assert!(matches!(
            target.with_server("t", "", ""),
            Err(TransportError::Credentials(_))
        ));
    }

    #[test]
    fn settings_bound_songbirds_retries() {
        let settings = DiscordVoiceSettings {
            attempt_timeout: Duration::from_secs(1),
            retries: 0,
            retry_wait: Duration::from_millis(100),
            ..DiscordVoiceSettings::default()
        };
        // songbird cannot be told "no retry" (None means forever): one it is.
        assert_eq!(settings.retry().retry_limit, NonZeroU8::new(1));
        assert_eq!(settings.connect_deadline(), Duration::from_millis(2_600));
        assert!(DiscordVoiceSettings::default().connect_deadline() >= Duration::from_secs(30));
    }

    fn frame(value: i16) -> Vec<i16> {
        vec![value; OUTPUT_FRAME_SAMPLES]
    }

    #[test]
    fn the_output_queue_is_bounded_and_drops_the_oldest() {
        let queue = OutputQueue::new(3);
        for value in 1..=5 {
            queue.push(&frame(value));
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 2);
        let firsts: Vec<i16> = std::iter::from_fn(|| queue.pop()).map(|f| f[0]).collect();
        assert_eq!(firsts, [3, 4, 5]);
        // Short frames are padded with silence, long ones cut.
        queue.push(&[7; 10]);
        let padded = queue.pop().expect("queued");
        assert_eq!((padded[9], padded[10]), (7, 0));
        queue.push(&[1; OUTPUT_FRAME_SAMPLES + 5]);
        queue.push(&frame(2));
        assert_eq!(queue.clear(), 2);
        assert!(queue.pop().is_none());
    }

    #[test]
    fn the_output_queue_never_blocks_a_fast_producer() {
        let queue = Arc::new(OutputQueue::new(OUTPUT_QUEUE_FRAMES));
        let reader = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut last = 0;
                let mut read = 0;
                while last < 10_000 {
                    if let Some(frame) = queue.pop() {
                        assert!(i32::from(frame[0]) > last, "frames stay in order");
                        last = i32::from(frame[0]);
                        read += 1;
                    }
                }
                read
            })
        };
        let started = std::time::Instant::now();
        for value in 1..=10_000 {
            queue.push(&frame(value));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // The last frame always survives (the oldest go first).
        let read = reader.join().expect("reader");
        assert_eq!(read + queue.dropped.load(Ordering::Relaxed), 10_000);
    }

    #[test]
    fn pcm_converts_to_f32_le() {
        let mut out = [0u8; 16];
        pcm_to_f32_le(&[0, 16_384, -32_768, 32_767], &mut out);
        let values: Vec<f32> = out
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(values[..3], [0.0, 0.5, -1.0]);
        assert!(values[3] < 1.0 && values[3] > 0.9999);
    }

    #[test]
    fn the_source_reads_frames_in_any_chunking_and_silence_when_empty() {
        let queue = Arc::new(OutputQueue::new(4));
        let mut first = frame(0);
        first[0] = 16_384;
        first[OUTPUT_FRAME_SAMPLES - 1] = -16_384;
        queue.push(&first);
        let mut source = QueueSource::new(Arc::clone(&queue));
        let mut bytes = vec![0u8; FRAME_BYTES];
        let mut filled = 0;
        // Odd-sized reads (as symphonia's read-ahead makes them).
        while filled < FRAME_BYTES {
            let end = (filled + 1_001).min(FRAME_BYTES);
            filled += source.read(&mut bytes[filled..end]).expect("read");
        }
        assert_eq!(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]), 0.5);
        let last = &bytes[FRAME_BYTES - 4..];
        assert_eq!(f32::from_le_bytes([last[0], last[1], last[2], last[3]]), -0.5);
        // Nothing queued: a whole frame of silence, never a block or an end.
        let n = source.read(&mut bytes).expect("read");
        assert_eq!(n, FRAME_BYTES);
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(queue.underruns.load(Ordering::Relaxed), 1);
        assert!(source.seek(SeekFrom::Start(0)).is_err());
        assert!(!source.is_seekable());
    }

    /// The path songbird's mixer takes: probe the raw stream, decode it with
    /// symphonia's PCM codec (missing unless the `pcm` feature is on).
    #[test]
    fn songbird_decodes_the_output_track() {
        let queue = Arc::new(OutputQueue::new(4));
        let mut pcm = frame(0);
        for (i, sample) in pcm.iter_mut().enumerate() {
            *sample = (i as i16 % 200) * 100;
        }
        queue.push(&pcm);
        let source = RawAdapter::new(QueueSource::new(Arc::clone(&queue)), OUTPUT_SAMPLE_RATE, 2);
        let Input::Live(live, _) = Input::from(source) else {
            panic!("a raw adapter makes a live input");
        };
        let LiveInput::Parsed(mut parsed) = live.promote(get_codec_registry(), get_probe()).expect("probe") else {
            panic!("promote parses");
        };
        let mut decoded = Vec::new();
        while decoded.len() < OUTPUT_FRAME_SAMPLES {
            let packet = parsed.format.next_packet().expect("packet");
            match parsed.decoder.decode(&packet).expect("decode") {
                AudioBufferRef::F32(buffer) => {
                    assert_eq!(buffer.spec().rate, OUTPUT_SAMPLE_RATE);
                    assert_eq!(buffer.spec().channels.count(), 2);
                    for i in 0..buffer.frames() {
                        decoded.push(buffer.chan(0)[i]);
                        decoded.push(buffer.chan(1)[i]);
                    }
                }
                _ => panic!("raw PCM decodes to f32"),
            }
        }
        for (i, (&got, &want)) in decoded.iter().zip(&pcm).enumerate() {
            assert!((got - f32::from(want) / 32_768.0).abs() < 1e-6, "sample {i}");
        }
    }

    #[test]
    fn the_gate_plays_on_audio_and_pauses_after_the_hangover() {
        let mut gate = SpeechGate::new(3);
        assert_eq!(gate.step(false), GateStep::Quiet);
        assert_eq!(gate.step(true), GateStep::Start);
        assert_eq!(gate.step(true), GateStep::Continue);
        assert_eq!(gate.step(false), GateStep::Continue);
        assert_eq!(gate.step(false), GateStep::Continue);
        // A short gap does not end the speech.
        assert_eq!(gate.step(true), GateStep::Continue);
        assert_eq!(gate.step(false), GateStep::Continue);
        assert_eq!(gate.step(false), GateStep::Continue);
        assert_eq!(gate.step(false), GateStep::End);
        assert!(!gate.speaking());
        assert_eq!(gate.step(false), GateStep::Quiet);
        assert_eq!(gate.step(true), GateStep::Start);
    }

    /// With a stalled reader, the pause leaves only inaudible frames queued:
    /// the hangover is at least the queue's length.
    #[test]
    fn a_pause_never_strands_audible_frames() {
        let queue = OutputQueue::new(OUTPUT_QUEUE_FRAMES);
        let mut gate = SpeechGate::new(HANGOVER_FRAMES);
        let mut flags = vec![true; 10];
        flags.extend([false; HANGOVER_FRAMES as usize]);
        let mut ended = false;
        for audible in flags {
            match gate.step(audible) {
                GateStep::Quiet => {}
                GateStep::Start => {
                    queue.clear();
                    queue.push(&frame(i16::from(audible)));
                }
                GateStep::Continue => queue.push(&frame(i16::from(audible))),
                GateStep::End => {
                    queue.push(&frame(i16::from(audible)));
                    ended = true;
                }
            }
        }
        assert!(ended);
        assert!(std::iter::from_fn(|| queue.pop()).all(|f| f[0] == 0));
    }

    fn engine(max_speakers: usize) -> (SessionCore, SessionControl) {
        let settings = EngineSettings {
            max_speakers,
            ..EngineSettings::default()
        };
        let (core, handles) = SessionCore::new(&settings, Box::new(NullSink)).expect("engine");
        (core, handles.control)
    }

    const VOICE: [i16; INPUT_FRAME_SAMPLES] = [100; INPUT_FRAME_SAMPLES];

    #[test]
    fn ssrcs_map_to_speakers_that_attach_on_first_audio() {
        let (mut core, control) = engine(4);
        let mut map = SpeakerMap::new(control.clone(), 333);
        map.voice(1, &VOICE);
        assert_eq!(map.counts.unmapped, 1, "no SpeakingStateUpdate yet");
        assert_eq!(map.attached(), 0);
        map.map_ssrc(1, 10);
        map.map_ssrc(2, 20);
        map.map_ssrc(3, 333);
        assert_eq!(map.attached(), 0, "speakers attach on their first audio");
        map.voice(1, &VOICE);
        map.voice(2, &VOICE);
        map.voice(3, &VOICE);
        map.voice(1, &[]);
        assert_eq!(map.attached(), 2, "the bot never hears itself");
        assert_eq!(map.counts.pushed, 2);
        assert!(matches!(
            control.attach_speaker(SpeakerId(10)),
            Err(AudioError::SpeakerAlreadyAttached(_))
        ));
        core.tick();
        assert_eq!(control.stats().input_frames, 2);
        // A new SSRC for a known user feeds the same speaker.
        map.map_ssrc(4, 10);
        map.voice(4, &VOICE);
        assert_eq!(map.attached(), 2);
    }

    #[test]
    fn a_user_who_leaves_is_detached() {
        let (mut core, control) = engine(4);
        let mut map = SpeakerMap::new(control.clone(), 333);
        map.map_ssrc(1, 10);
        map.map_ssrc(5, 10);
        map.map_ssrc(2, 20);
        map.voice(1, &VOICE);
        map.voice(2, &VOICE);
        map.user_left(10);
        core.tick();
        assert_eq!(map.attached(), 1);
        assert!(control.attach_speaker(SpeakerId(10)).is_ok(), "the slot is free again");
        map.voice(5, &VOICE);
        assert_eq!(map.counts.unmapped, 1, "the leaver's SSRCs are forgotten");
        map.forget_ssrcs();
        map.voice(2, &VOICE);
        assert_eq!(map.counts.unmapped, 2);
        assert_eq!(map.attached(), 1, "forgetting SSRCs keeps speakers");
        map.reset();
        assert_eq!(map.attached(), 0);
        assert!(control.attach_speaker(SpeakerId(20)).is_ok());
    }

    #[test]
    fn a_refused_speaker_is_retried_later() {
        let (mut core, control) = engine(1);
        let mut map = SpeakerMap::new(control, 333);
        map.map_ssrc(1, 10);
        map.map_ssrc(2, 20);
        map.voice(1, &VOICE);
        map.voice(2, &VOICE);
        assert_eq!(map.attached(), 1, "one slot");
        assert_eq!(map.counts.dropped, 1);
        map.user_left(10);
        core.tick();
        for _ in 0..REATTACH_AFTER_FRAMES {
            map.voice(2, &VOICE);
        }
        assert_eq!(map.attached(), 0, "not retried on every frame");
        map.voice(2, &VOICE);
        assert_eq!(map.attached(), 1);
        assert_eq!(map.counts.pushed, 2);
    }

    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        address.to_string()
    }

    /// Short attempts, and a scheduler on this test's runtime (songbird's
    /// process-wide one dies with the first test's runtime).
    fn fast_settings() -> DiscordVoiceSettings {
        DiscordVoiceSettings {
            attempt_timeout: Duration::from_millis(500),
            retries: 1,
            retry_wait: Duration::from_millis(50),
            scheduler: Some(songbird::driver::Scheduler::new(Default::default())),
            ..DiscordVoiceSettings::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_endpoint_fails_fast_with_a_clear_error() {
        let mut request = request();
        let endpoint = closed_port();
        request.voice.as_mut().expect("voice").endpoint = endpoint.clone();
        let mut transport = DiscordTransport::from_request(&request, fast_settings()).expect("valid");
        let (_core, control) = engine(2);
        let started = std::time::Instant::now();
        let error = transport.start(control).await.expect_err("nothing listens there");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let TransportError::Connection(message) = &error else {
            panic!("expected a connection error, got {error:?}");
        };
        assert!(
            message.contains(&format!("cannot join the voice channel 222 of guild 111 at {endpoint}")),
            "{message}"
        );
        assert!(!message.contains("very-secret-token"), "{message}");
        assert!(transport.driver.is_none());
        // Stopping a transport that never connected is fine.
        transport.stop().await.expect("stop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_endpoint_times_out() {
        // Accepts TCP, never answers the TLS handshake (whose first byte it
        // records: songbird's rustls set-up works in this build).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = listener.local_addr().expect("address").to_string();
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let holder = tokio::spawn({
            let first_bytes = Arc::clone(&first_bytes);
            async move {
                let mut held = Vec::new();
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut byte = [0u8; 1];
                    if tokio::io::AsyncReadExt::read_exact(&mut socket, &mut byte)
                        .await
                        .is_ok()
                    {
                        first_bytes.lock().expect("lock").push(byte[0]);
                    }
                    held.push(socket);
                }
            }
        });
        let mut request = request();
        request.voice.as_mut().expect("voice").endpoint = endpoint;
        // Attempts long enough for songbird to reach the listener on a
        // loaded machine.
        let settings = DiscordVoiceSettings {
            attempt_timeout: Duration::from_millis(1500),
            ..fast_settings()
        };
        let deadline = settings.connect_deadline();
        let mut transport = DiscordTransport::from_request(&request, settings).expect("valid");
        let (_core, control) = engine(2);
        // It gives up by itself (how soon is the deadline's business, not a
        // unit test's on a loaded machine); the outer limit only catches a hang.
        let error = tokio::time::timeout(deadline + Duration::from_secs(30), transport.start(control))
            .await
            .expect("the connection attempt gives up instead of hanging")
            .expect_err("nobody answers");
        assert!(matches!(error, TransportError::Connection(_)), "{error:?}");
        // songbird's own attempt timeout, or (on a loaded machine) our deadline first.
        let said = error.to_string();
        assert!(
            said.contains("timed out") || said.contains("no connection within"),
            "{error}"
        );
        holder.abort();
        let first_bytes = first_bytes.lock().expect("lock").clone();
        assert!(!first_bytes.is_empty(), "songbird never reached the listener");
        assert!(
            first_bytes.iter().all(|&b| b == 0x16),
            "a TLS handshake record: {first_bytes:?}"
        );
    }

    #[tokio::test]
    async fn updating_the_server_before_start_only_changes_the_target() {
        let mut transport = DiscordTransport::from_request(&request(), DiscordVoiceSettings::default()).expect("valid");
        transport
            .update_voice_server("new-token", "us-east2.discord.media", "")
            .await
            .expect("no connection yet");
        assert_eq!(transport.target().endpoint(), "us-east2.discord.media");
        assert!(matches!(
            transport.update_voice_server("", "x", "").await,
            Err(TransportError::Credentials(_))
        ));
        assert_eq!(transport.name(), "discord");
        assert!(!transport.wants_opus());
    }
}
