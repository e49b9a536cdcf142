//! The per-session orchestrator: roster and mute state, the floor (one NPC
//! turn at a time), coalescing, barge-in, DM voice commands, puppet lines,
//! knowledge updates, and the transcript.
//!
//! It runs as one task per session and is driven by messages: speech events
//! from the audio engine, control requests (the slash commands), and the
//! progress of its own STT and turn tasks. Nothing here touches audio
//! samples beyond handing utterances to STT and replies to the mixer.
//!
//! Policies (SPEC §7):
//! - utterances are transcribed in speech order and handled in that order;
//! - a second utterance of the same player to the same NPC within the
//!   coalesce window joins the running turn (one reply to both), as long
//!   as the NPC is not yet audible;
//! - a newer addressed utterance makes a turn that is still thinking yield;
//!   while an NPC is audible, the next turn waits for the floor;
//! - a player who keeps voicing for the confirm window while an NPC is
//!   audible cuts it (barge-in); shorter overlaps do not;
//! - muted NPCs never answer; muting cuts their speech and drops their queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::address::{Address, AddressBook, AddressState, NoTarget};
use crate::campaign::CampaignInfo;
use crate::knowledge::{Knowledge, KnownEntity};
use crate::npc::{NpcAgent, PromptContext, RecentLine};
use crate::playback::{Playback, Priority};
use crate::providers::{
    ChatMessage, ChatRequest, LanguageModel, ProviderError, SpeechToText, Stage, SttRequest, TextToSpeech,
};
use crate::roster::{Npc, NpcId, Roster};
use crate::timing::{TurnOutcome, TurnResult, TurnTimings};
use crate::transcript::{EntryKind, TranscriptEntry, TranscriptSink};
use crate::turn::{run_turn, TurnEnd, TurnOutput, TurnPlan, TurnServices, TurnSource};
use crate::voice_command::{self, VoiceCommand};

/// Tuning of one session's brain.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The voice session's id.
    pub session_id: String,
    /// The DM's user id: only their speech is parsed for voice commands.
    pub dm_user_id: Option<String>,
    /// The campaign.
    pub campaign: CampaignInfo,
    /// How long an addressed NPC stays the default listener.
    pub continuation: Duration,
    /// Utterances closer than this to the same NPC are one.
    pub coalesce: Duration,
    /// How long a player must keep talking over an NPC to cut it; `None` = never.
    pub barge_in_confirm: Option<Duration>,
    /// Most sentences per reply.
    pub max_sentences: usize,
    /// Token limit per reply.
    pub max_tokens: u32,
    /// How long a turn may take in all.
    pub turn_timeout: Duration,
    /// Spoken language for STT, if known.
    pub language: Option<String>,
    /// Most entities in a prompt.
    pub knowledge_limit: usize,
}

impl SessionSettings {
    /// Defaults from SPEC §7 for `session_id`.
    pub fn new(session_id: impl Into<String>, campaign: CampaignInfo) -> Self {
        Self {
            session_id: session_id.into(),
            dm_user_id: None,
            campaign,
            continuation: Duration::from_secs(30),
            coalesce: Duration::from_millis(600),
            barge_in_confirm: Some(Duration::from_millis(250)),
            max_sentences: 3,
            max_tokens: 160,
            turn_timeout: Duration::from_secs(20),
            language: None,
            knowledge_limit: 12,
        }
    }
}

/// The providers, mixer and transcript store of a session.
#[derive(Clone)]
pub struct SessionServices {
    /// Speech to text.
    pub stt: Arc<dyn SpeechToText>,
    /// The language model.
    pub llm: Arc<dyn LanguageModel>,
    /// Speech synthesis.
    pub tts: Arc<dyn TextToSpeech>,
    /// The mixer.
    pub playback: Arc<dyn Playback>,
    /// Where transcript lines go.
    pub transcript: Arc<dyn TranscriptSink>,
}

/// Speech events from the audio engine.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechInput {
    /// A speaker started talking (after the VAD's onset frames).
    Started {
        /// Speaker id (Discord user id).
        speaker: String,
        /// When.
        at: Instant,
    },
    /// Provisional: the speaker paused (may resume).
    VoicingStopped {
        /// Speaker id.
        speaker: String,
        /// When.
        at: Instant,
    },
    /// Provisional: the speaker resumed within the hangover.
    VoicingResumed {
        /// Speaker id.
        speaker: String,
        /// When.
        at: Instant,
    },
    /// An utterance ended.
    Ended {
        /// Speaker id.
        speaker: String,
        /// 16 kHz mono audio of the utterance (pre-roll included).
        audio: Vec<i16>,
        /// When the voice started.
        voice_start: Instant,
        /// When the voice actually stopped.
        voice_end: Instant,
        /// When the VAD decided the utterance was over.
        decided_at: Instant,
    },
}

/// An NPC as listed by `/npc list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpcStatus {
    /// Its id.
    pub id: NpcId,
    /// Its name.
    pub name: String,
    /// Whether it is muted.
    pub muted: bool,
}

/// Why a control request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No NPC has that name.
    #[error("no NPC named {0:?} in this session")]
    UnknownNpc(String),
    /// The request makes no sense now.
    #[error("{0}")]
    Invalid(String),
    /// The session is over.
    #[error("the session has ended")]
    Ended,
}

/// What the orchestrator reports as it happens (for the gateway and metrics).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A transcript line was written.
    Transcript(TranscriptEntry),
    /// A turn ended.
    Turn(TurnResult),
    /// An NPC was muted or unmuted.
    NpcState(NpcStatus),
}

enum Control {
    List(oneshot::Sender<Vec<NpcStatus>>),
    SetMuted(String, bool, oneshot::Sender<Result<bool, ControlError>>),
    SetAllMuted(bool, oneshot::Sender<usize>),
    Speak(String, String, oneshot::Sender<Result<(), ControlError>>),
    Puppet(Option<String>, oneshot::Sender<Result<(), ControlError>>),
    Knowledge(Vec<KnownEntity>, Vec<String>, oneshot::Sender<usize>),
    SpeakerName(String, String),
    Keywords(oneshot::Sender<Vec<String>>),
    Idle(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

enum Input {
    Speech(SpeechInput),
    Control(Control),
    Transcribed {
        seq: u64,
        result: Result<String, String>,
        at: Instant,
    },
    Audible {
        turn_id: u64,
        at: Instant,
    },
    TurnDone {
        turn_id: u64,
        output: TurnOutput,
    },
    BargeIn {
        speaker: String,
        generation: u64,
    },
}

/// A handle to a running session brain. Cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    tx: mpsc::UnboundedSender<Input>,
}

impl SessionHandle {
    fn send(&self, input: Input) -> Result<(), ControlError> {
        self.tx.send(input).map_err(|_| ControlError::Ended)
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Result<T, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Control(make(reply)))?;
        answer.await.map_err(|_| ControlError::Ended)
    }

    /// Delivers a speech event from the audio engine.
    pub fn speech(&self, event: SpeechInput) -> Result<(), ControlError> {
        self.send(Input::Speech(event))
    }

    /// The roster with mute states.
    pub async fn list(&self) -> Result<Vec<NpcStatus>, ControlError> {
        self.ask(Control::List).await
    }

    /// Mutes (`true`) or unmutes an NPC by name; `Ok(changed)`.
    pub async fn set_muted(&self, name: &str, muted: bool) -> Result<bool, ControlError> {
        self.ask(|reply| Control::SetMuted(name.to_string(), muted, reply))
            .await?
    }

    /// Mutes or unmutes every NPC; returns how many changed.
    pub async fn set_all_muted(&self, muted: bool) -> Result<usize, ControlError> {
        self.ask(|reply| Control::SetAllMuted(muted, reply)).await
    }

    /// Puppet: the NPC says exactly `text` (TTS only), when it has the floor.
    pub async fn speak(&self, name: &str, text: &str) -> Result<(), ControlError> {
        self.ask(|reply| Control::Speak(name.to_string(), text.to_string(), reply))
            .await?
    }

    /// Sets (or clears, with `None`) the DM's puppet override for address detection.
    pub async fn set_puppet(&self, name: Option<&str>) -> Result<(), ControlError> {
        self.ask(|reply| Control::Puppet(name.map(str::to_string), reply))
            .await?
    }

    /// Adds or replaces entities and removes others by id; returns the entity count.
    pub async fn update_knowledge(
        &self,
        upserted: Vec<KnownEntity>,
        removed: Vec<String>,
    ) -> Result<usize, ControlError> {
        self.ask(|reply| Control::Knowledge(upserted, removed, reply)).await
    }

    /// Names a speaker for transcripts and prompts.
    pub fn set_speaker_name(&self, speaker: &str, name: &str) -> Result<(), ControlError> {
        self.send(Input::Control(Control::SpeakerName(
            speaker.to_string(),
            name.to_string(),
        )))
    }

    /// The keyword hints STT currently receives.
    pub async fn keywords(&self) -> Result<Vec<String>, ControlError> {
        self.ask(Control::Keywords).await
    }

    /// Waits until every utterance so far is transcribed and every turn has finished.
    pub async fn idle(&self) -> Result<(), ControlError> {
        self.ask(Control::Idle).await
    }

    /// Stops the session: cancels the running turn, lets it report, ends the task.
    pub async fn stop(&self) -> Result<(), ControlError> {
        self.ask(Control::Stop).await
    }
}

/// Starts a session brain. Returns its handle, the stream of what happens,
/// and the task (which ends after [`SessionHandle::stop`]).
///
/// The task and everything it spawns run in the caller's current span (the
/// worker's `session` span); each turn runs in a `turn` span of its own
/// (`session_id`, `turn_id`, `speaker`, `npc`), so log lines of a turn carry
/// its ids.
pub fn spawn_session(
    settings: SessionSettings,
    roster: Roster,
    knowledge: Knowledge,
    services: SessionServices,
) -> (SessionHandle, mpsc::UnboundedReceiver<SessionEvent>, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let book = AddressBook::new(&roster, settings.continuation);
    let agents = roster
        .npcs()
        .iter()
        .map(|npc| (npc.id.clone(), NpcAgent::new(npc.id.clone(), npc.definition.clone())))
        .collect();
    let orchestrator = Orchestrator {
        settings,
        services,
        roster,
        book,
        agents,
        knowledge,
        address: AddressState::default(),
        recent: VecDeque::new(),
        speaker_names: HashMap::new(),
        epoch: (SystemTime::now(), Instant::now()),
        next_seq: 0,
        next_to_handle: 0,
        transcribed: BTreeMap::new(),
        utterances: HashMap::new(),
        next_turn: 0,
        current: None,
        queue: VecDeque::new(),
        voicing: HashMap::new(),
        voicing_since: HashMap::new(),
        held: HashMap::new(),
        idle_waiters: Vec::new(),
        quiet: Arc::new(AtomicBool::new(true)),
        stopping: None,
        self_tx: tx.clone(),
        events: events_tx,
    };
    let task = tokio::spawn(orchestrator.run(rx).in_current_span());
    (SessionHandle { tx }, events_rx, task)
}

/// What is known about an utterance while it is transcribed.
struct Utterance {
    speaker: String,
    voice_start: Instant,
    voice_end: Instant,
    decided_at: Instant,
}

/// The first part of an utterance whose speaker went on talking.
struct HeldSegment {
    text: String,
    voice_start: Instant,
}

/// A turn waiting for (or holding) the floor.
#[derive(Clone)]
struct TurnRequest {
    speaker_id: String,
    speaker_name: String,
    npc: NpcId,
    /// What the player said (empty for puppet lines).
    text: String,
    /// Puppet text, spoken verbatim.
    fixed: Option<String>,
    voice_start: Option<Instant>,
    voice_end: Option<Instant>,
    timings: TurnTimings,
}

struct Running {
    turn_id: u64,
    request: TurnRequest,
    cancel: CancellationToken,
    /// Why the orchestrator cancelled it (`None` = it was not cancelled).
    cancel_reason: Option<CancelReason>,
    audible: bool,
    first_frame: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelReason {
    Cut,
    Yielded,
    Coalesced,
}

struct Orchestrator {
    settings: SessionSettings,
    services: SessionServices,
    roster: Roster,
    book: AddressBook,
    agents: HashMap<NpcId, NpcAgent>,
    knowledge: Knowledge,
    address: AddressState,
    recent: VecDeque<RecentLine>,
    speaker_names: HashMap<String, String>,
    /// Wall-clock time of the session's start and the matching monotonic instant.
    epoch: (SystemTime, Instant),
    next_seq: u64,
    next_to_handle: u64,
    transcribed: BTreeMap<u64, (Result<String, String>, Instant)>,
    utterances: HashMap<u64, Utterance>,
    next_turn: u64,
    current: Option<Running>,
    queue: VecDeque<TurnRequest>,
    /// Per speaker: a generation counter that changes whenever voicing stops.
    voicing: HashMap<String, (u64, bool)>,
    /// Per speaker: when their current voicing began (cleared when it ends).
    voicing_since: HashMap<String, Instant>,
    /// Per speaker: a transcribed segment waiting for the rest of the utterance.
    held: HashMap<String, HeldSegment>,
    idle_waiters: Vec<oneshot::Sender<()>>,
    /// Nobody speaks and no utterance or turn is in progress: background
    /// work (preparing prompts) may use the machine.
    quiet: Arc<AtomicBool>,
    stopping: Option<oneshot::Sender<()>>,
    self_tx: mpsc::UnboundedSender<Input>,
    events: mpsc::UnboundedSender<SessionEvent>,
}

const RECENT_KEPT: usize = 40;

impl Orchestrator {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        self.prepare_prompts();
        while let Some(input) = rx.recv().await {
            match input {
                Input::Speech(event) => self.on_speech(event),
                Input::Control(control) => self.on_control(control).await,
                Input::Transcribed { seq, result, at } => {
                    self.transcribed.insert(seq, (result, at));
                    while let Some((result, at)) = self.transcribed.remove(&self.next_to_handle) {
                        let seq = self.next_to_handle;
                        self.next_to_handle += 1;
                        self.on_transcribed(seq, result, at).await;
                    }
                }
                Input::Audible { turn_id, at } => {
                    if let Some(running) = self.current.as_mut().filter(|r| r.turn_id == turn_id) {
                        running.audible = true;
                        running.first_frame = Some(at);
                        // Players already talking when the NPC became audible.
                        let voicing: Vec<(String, u64)> = self
                            .voicing
                            .iter()
                            .filter(|(_, (_, on))| *on)
                            .map(|(s, (g, _))| (s.clone(), *g))
                            .collect();
                        for (speaker, generation) in voicing {
                            self.arm_barge_in(speaker, generation);
                        }
                    }
                }
                Input::TurnDone { turn_id, output } => self.on_turn_done(turn_id, output).await,
                Input::BargeIn { speaker, generation } => self.on_barge_in(&speaker, generation),
            }
            self.check_idle();
            let quiet = self.is_idle() && self.voicing_since.is_empty() && self.utterances.is_empty();
            self.quiet.store(quiet, Ordering::Relaxed);
            if self.stopping.is_some() && self.current.is_none() {
                break;
            }
        }
        if let Some(done) = self.stopping.take() {
            let _ = done.send(());
        }
    }

    fn is_idle(&self) -> bool {
        self.current.is_none() && self.queue.is_empty() && self.next_to_handle == self.next_seq
    }

    fn check_idle(&mut self) {
        if self.is_idle() {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn wall_clock(&self, at: Instant) -> SystemTime {
        self.epoch.0 + at.saturating_duration_since(self.epoch.1)
    }

    fn speaker_name(&self, speaker: &str) -> String {
        self.speaker_names
            .get(speaker)
            .cloned()
            .unwrap_or_else(|| speaker.to_string())
    }

    fn is_dm(&self, speaker: &str) -> bool {
        self.settings.dm_user_id.as_deref() == Some(speaker)
    }

    fn emit(&self, event: SessionEvent) {
        let _ = self.events.send(event);
    }

    // ---- speech ----

    fn on_speech(&mut self, event: SpeechInput) {
        match event {
            SpeechInput::Started { speaker, at } => {
                self.voicing_since.insert(speaker.clone(), at);
                self.voicing_started(speaker);
            }
            SpeechInput::VoicingResumed { speaker, .. } => self.voicing_started(speaker),
            SpeechInput::VoicingStopped { speaker, .. } => self.voicing_stopped(&speaker),
            SpeechInput::Ended {
                speaker,
                audio,
                voice_start,
                voice_end,
                decided_at,
            } => {
                self.voicing_stopped(&speaker);
                self.voicing_since.remove(&speaker);
                self.transcribe(speaker, audio, voice_start, voice_end, decided_at);
            }
        }
    }

    fn voicing_started(&mut self, speaker: String) {
        let entry = self.voicing.entry(speaker.clone()).or_insert((0, false));
        entry.0 += 1;
        entry.1 = true;
        let generation = entry.0;
        if self.current.as_ref().is_some_and(|r| r.audible) {
            self.arm_barge_in(speaker, generation);
        }
    }

    /// After the confirm window, checks whether `speaker` is still voicing over the NPC.
    fn arm_barge_in(&self, speaker: String, generation: u64) {
        let Some(confirm) = self.settings.barge_in_confirm else {
            return;
        };
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(confirm).await;
            let _ = tx.send(Input::BargeIn { speaker, generation });
        });
    }

    fn voicing_stopped(&mut self, speaker: &str) {
        if let Some(entry) = self.voicing.get_mut(speaker) {
            entry.0 += 1;
            entry.1 = false;
        }
    }

    fn on_barge_in(&mut self, speaker: &str, generation: u64) {
        let still_voicing = self.voicing.get(speaker).is_some_and(|(g, on)| *g == generation && *on);
        let Some(running) = self.current.as_mut() else { return };
        if !still_voicing || !running.audible || running.cancel_reason.is_some() {
            return;
        }
        tracing::debug!(session = %self.settings.session_id, speaker, npc = %running.request.npc, "barge-in");
        running.cancel_reason = Some(CancelReason::Cut);
        self.services.playback.cut_npc(&running.request.npc);
        running.cancel.cancel();
    }

    fn transcribe(
        &mut self,
        speaker: String,
        audio: Vec<i16>,
        voice_start: Instant,
        voice_end: Instant,
        decided_at: Instant,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.utterances.insert(
            seq,
            Utterance {
                speaker,
                voice_start,
                voice_end,
                decided_at,
            },
        );
        let request = SttRequest {
            language: self.settings.language.clone(),
            keywords: self.keywords(),
            deadline: Some(Instant::now() + self.settings.turn_timeout),
        };
        let stt = self.services.stt.clone();
        let tx = self.self_tx.clone();
        let limit = self.settings.turn_timeout;
        let task = async move {
            let transcribe = async {
                match stt.open(request).await {
                    Ok(session) => session.transcribe(&audio).await.map(|t| t.text),
                    Err(error) => Err(error),
                }
            };
            // A provider that ignores the deadline must not hold up every
            // later utterance of the session (they are handled in order).
            let result = tokio::time::timeout(limit, transcribe).await.unwrap_or_else(|_| {
                Err(ProviderError::Timeout {
                    provider: stt.name(),
                    after: limit,
                    what: "the utterance's deadline",
                })
            });
            if result.is_err() {
                crate::metrics::record_provider_error(Stage::Stt, stt.name());
            }
            let _ = tx.send(Input::Transcribed {
                seq,
                result: result.map_err(|e| e.to_string()),
                at: Instant::now(),
            });
        };
        tokio::spawn(task.in_current_span());
    }

    fn keywords(&self) -> Vec<String> {
        self.knowledge.keywords(&self.roster.names(), 100)
    }

    /// Whether `speaker` went on talking within the coalesce window after
    /// `voice_end` (already in STT, or voicing now).
    fn continues(&self, seq: u64, speaker: &str, voice_end: Instant) -> bool {
        let close =
            |start: Instant| start >= voice_end && start.saturating_duration_since(voice_end) <= self.settings.coalesce;
        let in_stt = self
            .utterances
            .iter()
            .any(|(later, u)| *later > seq && u.speaker == speaker && close(u.voice_start));
        in_stt || self.voicing_since.get(speaker).is_some_and(|since| close(*since))
    }

    async fn on_transcribed(&mut self, seq: u64, result: Result<String, String>, stt_at: Instant) {
        let Some(mut utterance) = self.utterances.remove(&seq) else {
            return;
        };
        let speaker_name = self.speaker_name(&utterance.speaker);
        let timings = TurnTimings {
            speech_end: Some(utterance.voice_end),
            vad_end: Some(utterance.decided_at),
            stt_final: Some(stt_at),
            ..TurnTimings::default()
        };
        let text = match result {
            Ok(text) => {
                let text = text.trim().to_string();
                // The rest of an utterance whose first part is held: join them.
                let text = match self.held.remove(&utterance.speaker) {
                    Some(held) => {
                        utterance.voice_start = held.voice_start;
                        format!("{} {text}", held.text).trim().to_string()
                    }
                    None => text,
                };
                if !text.is_empty() && self.continues(seq, &utterance.speaker, utterance.voice_end) {
                    // The speaker is still talking: wait for the rest before answering.
                    self.held.insert(
                        utterance.speaker.clone(),
                        HeldSegment {
                            text,
                            voice_start: utterance.voice_start,
                        },
                    );
                    return;
                }
                text
            }
            Err(error) => {
                tracing::warn!(session = %self.settings.session_id, %error, "transcription failed");
                self.finish_without_npc(
                    &utterance.speaker,
                    &speaker_name,
                    String::new(),
                    TurnOutcome::Failed,
                    timings,
                    Some(error),
                );
                return;
            }
        };
        if !text.is_empty() {
            let entry = TranscriptEntry {
                session_id: self.settings.session_id.clone(),
                speaker_id: utterance.speaker.clone(),
                speaker_name: speaker_name.clone(),
                npc_id: None,
                text: text.clone(),
                started_at: self.wall_clock(utterance.voice_start),
                ended_at: self.wall_clock(utterance.voice_end),
                kind: EntryKind::Utterance,
            };
            self.write_transcript(entry).await;
            self.remember(RecentLine {
                speaker: speaker_name.clone(),
                npc: None,
                text: text.clone(),
            });
        }
        if self.is_dm(&utterance.speaker) {
            if let Some(command) = voice_command::parse(&text, &self.book) {
                self.run_voice_command(command);
                return;
            }
        }
        let roster = &self.roster;
        let muted = |id: &NpcId| roster.get(id).is_some_and(|npc| npc.muted);
        let decision = self.book.decide(&text, &muted, &self.address, utterance.voice_end);
        let npc = match decision {
            Address::Npc { id, .. } => id,
            Address::Nobody(why) => {
                let error = (why == NoTarget::Muted).then(|| "the NPC addressed is muted".to_string());
                self.finish_without_npc(
                    &utterance.speaker,
                    &speaker_name,
                    text,
                    TurnOutcome::NoTarget,
                    timings,
                    error,
                );
                return;
            }
        };
        self.address.last = Some((npc.clone(), utterance.voice_end));
        let request = TurnRequest {
            speaker_id: utterance.speaker,
            speaker_name,
            npc,
            text,
            fixed: None,
            voice_start: Some(utterance.voice_start),
            voice_end: Some(utterance.voice_end),
            timings,
        };
        self.request_turn(request);
    }

    fn finish_without_npc(
        &self,
        speaker: &str,
        speaker_name: &str,
        transcript: String,
        outcome: TurnOutcome,
        timings: TurnTimings,
        error: Option<String>,
    ) {
        self.emit(SessionEvent::Turn(TurnResult {
            turn_id: 0,
            speaker_id: speaker.to_string(),
            speaker_name: speaker_name.to_string(),
            transcript,
            npc: None,
            reply_heard: String::new(),
            played_ms: 0.0,
            outcome,
            timings,
            error,
        }));
    }

    // ---- the floor ----

    fn request_turn(&mut self, mut request: TurnRequest) {
        if let Some(running) = self.current.as_mut() {
            let thinking = !running.audible && running.cancel_reason.is_none();
            let same = running.request.npc == request.npc && running.request.speaker_id == request.speaker_id;
            let close = match (running.request.voice_end, request.voice_start) {
                (Some(end), Some(start)) => start.saturating_duration_since(end) <= self.settings.coalesce,
                _ => false,
            };
            if thinking && same && close && running.request.fixed.is_none() && request.fixed.is_none() {
                // One utterance in two VAD segments: answer both at once.
                request.text = format!("{} {}", running.request.text, request.text);
                request.voice_start = running.request.voice_start;
                running.cancel_reason = Some(CancelReason::Coalesced);
                running.cancel.cancel();
                self.queue.push_front(request);
                return;
            }
            if thinking && request.fixed.is_none() {
                // The players moved on before the NPC spoke.
                running.cancel_reason = Some(CancelReason::Yielded);
                running.cancel.cancel();
                self.drop_queued_player_turns();
                self.queue.push_front(request);
                return;
            }
            if request.fixed.is_none() {
                self.drop_queued_player_turns();
            }
            self.queue.push_back(request);
            return;
        }
        self.queue.push_back(request);
        self.start_next();
    }

    fn drop_queued_player_turns(&mut self) {
        let (players, puppets): (Vec<TurnRequest>, Vec<TurnRequest>) =
            self.queue.drain(..).partition(|r| r.fixed.is_none());
        self.queue.extend(puppets);
        for request in players {
            self.emit_unstarted(request, TurnOutcome::Yielded);
        }
    }

    fn emit_unstarted(&self, request: TurnRequest, outcome: TurnOutcome) {
        self.emit(SessionEvent::Turn(TurnResult {
            turn_id: 0,
            speaker_id: request.speaker_id,
            speaker_name: request.speaker_name,
            transcript: request.text,
            npc: Some(request.npc),
            reply_heard: String::new(),
            played_ms: 0.0,
            outcome,
            timings: request.timings,
            error: None,
        }));
    }

    fn start_next(&mut self) {
        if self.current.is_some() || self.stopping.is_some() {
            return;
        }
        while let Some(request) = self.queue.pop_front() {
            if self.roster.get(&request.npc).is_some_and(|npc| npc.muted) {
                self.emit_unstarted(request, TurnOutcome::Yielded);
                continue;
            }
            self.start_turn(request);
            return;
        }
    }

    /// The prompt of `npc` for a turn answering `utterance` (speaker name and
    /// text), or without it: the part of the prompt that is known ahead.
    fn npc_messages(&self, npc: &Npc, utterance: Option<(&str, &str)>) -> Vec<ChatMessage> {
        let text = utterance.map_or("", |(_, text)| text);
        let context_text = format!(
            "{} {}",
            self.recent
                .iter()
                .rev()
                .take(6)
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            text
        );
        let entities = self
            .knowledge
            .relevant(&npc.definition.name, &context_text, self.settings.knowledge_limit);
        let others: Vec<&str> = self
            .roster
            .names()
            .into_iter()
            .filter(|n| *n != npc.definition.name)
            .collect();
        let recent: Vec<RecentLine> = self.recent.iter().cloned().collect();
        let context = PromptContext {
            campaign: &self.settings.campaign,
            others: &others,
            knowledge: &entities,
            recent: &recent,
            max_sentences: self.settings.max_sentences,
        };
        match (self.agents.get(&npc.id), utterance) {
            (Some(agent), Some((speaker, text))) => agent.messages(&context, speaker, text),
            (Some(agent), None) => agent.known_messages(&context),
            (None, _) => Vec::new(),
        }
    }

    /// Lets the language model read each NPC's prompt ahead of its first
    /// turn (engines with a prompt cache answer sooner; others ignore it),
    /// one at a time and only while the table is quiet, so that preparing
    /// never delays a real turn by more than the prompt being read.
    fn prepare_prompts(&self) {
        let prompts: Vec<Vec<ChatMessage>> = self
            .roster
            .npcs()
            .iter()
            .map(|npc| self.npc_messages(npc, None))
            .filter(|messages| !messages.is_empty())
            .collect();
        let llm = self.services.llm.clone();
        let quiet = self.quiet.clone();
        let task = async move {
            for messages in prompts {
                while !quiet.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let request = ChatRequest {
                    messages,
                    ..ChatRequest::default()
                };
                if let Err(error) = llm.prepare(request).await {
                    tracing::debug!(%error, "preparing an NPC prompt failed");
                }
            }
        };
        tokio::spawn(task.in_current_span());
    }

    fn start_turn(&mut self, request: TurnRequest) {
        self.next_turn += 1;
        let turn_id = self.next_turn;
        let Some(npc) = self.roster.get(&request.npc).cloned() else {
            return;
        };
        let source = match &request.fixed {
            Some(text) => TurnSource::Fixed(text.clone()),
            None => {
                let messages = self.npc_messages(&npc, Some((&request.speaker_name, &request.text)));
                TurnSource::Llm {
                    messages,
                    max_tokens: self.settings.max_tokens,
                }
            }
        };
        let plan = TurnPlan {
            turn_id,
            npc: Some(npc.id.clone()),
            voice: npc.definition.voice.clone(),
            source,
            priority: Priority::Npc,
            // Small models echo the chat's name labels ("Alice: …"): the
            // NPCs' and the players' names are stripped from replies.
            labels: self
                .roster
                .names()
                .iter()
                .map(|n| n.to_string())
                .chain(self.speaker_names.values().cloned())
                .collect(),
            max_sentences: if request.fixed.is_some() {
                usize::MAX
            } else {
                self.settings.max_sentences
            },
            deadline: Some(Instant::now() + self.settings.turn_timeout),
        };
        let services = TurnServices {
            llm: crate::metrics::watch_llm(&self.services.llm),
            tts: crate::metrics::watch_tts(&self.services.tts),
            playback: self.services.playback.clone(),
        };
        let cancel = CancellationToken::new();
        let tx = self.self_tx.clone();
        let audible_tx = self.self_tx.clone();
        let token = cancel.clone();
        // Error level, so that the ids stay on warnings when info is filtered out.
        let span = tracing::error_span!(
            "turn",
            session_id = %self.settings.session_id,
            turn_id,
            speaker = %request.speaker_id,
            npc = %npc.definition.name,
        );
        let task = async move {
            let output = run_turn(plan, services, token, move |at| {
                let _ = audible_tx.send(Input::Audible { turn_id, at });
            })
            .await;
            let _ = tx.send(Input::TurnDone { turn_id, output });
        };
        tokio::spawn(task.instrument(span));
        self.current = Some(Running {
            turn_id,
            request,
            cancel,
            cancel_reason: None,
            audible: false,
            first_frame: None,
        });
    }

    async fn on_turn_done(&mut self, turn_id: u64, output: TurnOutput) {
        let Some(running) = self.current.take_if(|r| r.turn_id == turn_id) else {
            return;
        };
        let request = running.request;
        let outcome = match (output.end, running.cancel_reason) {
            (_, Some(CancelReason::Coalesced)) => None,
            (TurnEnd::Completed, _) => Some(TurnOutcome::Spoke),
            (TurnEnd::Failed, _) => Some(TurnOutcome::Failed),
            (TurnEnd::Cancelled, Some(CancelReason::Yielded)) if output.heard.is_empty() => Some(TurnOutcome::Yielded),
            (TurnEnd::Cancelled, _) => Some(TurnOutcome::Cut),
        };
        let heard = output.heard.clone();
        let npc_name = self
            .roster
            .get(&request.npc)
            .map(|n| n.definition.name.clone())
            .unwrap_or_default();
        if let Some(outcome) = outcome {
            let cut = outcome == TurnOutcome::Cut || (outcome == TurnOutcome::Failed && output.cut);
            if request.fixed.is_none() {
                if let Some(agent) = self.agents.get_mut(&request.npc) {
                    if outcome != TurnOutcome::Yielded {
                        agent.commit(&request.speaker_name, &request.text, &heard, cut);
                    }
                }
            }
            if !heard.is_empty() {
                let started = running
                    .first_frame
                    .or(output.times.first_frame)
                    .unwrap_or_else(Instant::now);
                let entry = TranscriptEntry {
                    session_id: self.settings.session_id.clone(),
                    speaker_id: request.npc.to_string(),
                    speaker_name: npc_name.clone(),
                    npc_id: Some(request.npc.clone()),
                    text: heard.clone(),
                    started_at: self.wall_clock(started),
                    ended_at: self.wall_clock(Instant::now()),
                    kind: if cut { EntryKind::Cut } else { EntryKind::Spoke },
                };
                self.write_transcript(entry).await;
                self.remember(RecentLine {
                    speaker: npc_name,
                    npc: Some(request.npc.clone()),
                    text: heard.clone(),
                });
            }
            let mut timings = request.timings;
            timings.llm_first_token = output.times.llm_first_token;
            timings.first_sentence = output.times.first_sentence;
            timings.tts_first_audio = output.times.tts_first_audio;
            // A frame cannot go out before its audio existed; a tick that ran
            // late is stamped with its deadline, so keep the order.
            timings.first_frame = running
                .first_frame
                .or(output.times.first_frame)
                .map(|at| timings.tts_first_audio.map_or(at, |audio| at.max(audio)));
            self.emit(SessionEvent::Turn(TurnResult {
                turn_id,
                speaker_id: request.speaker_id,
                speaker_name: request.speaker_name,
                transcript: request.text,
                npc: Some(request.npc),
                reply_heard: heard,
                played_ms: output.played_ms,
                outcome,
                timings,
                error: output.error,
            }));
        }
        self.start_next();
    }

    fn remember(&mut self, line: RecentLine) {
        self.recent.push_back(line);
        while self.recent.len() > RECENT_KEPT {
            self.recent.pop_front();
        }
    }

    async fn write_transcript(&self, entry: TranscriptEntry) {
        if let Err(error) = self.services.transcript.append(&entry).await {
            tracing::warn!(session = %self.settings.session_id, %error, "transcript line not stored");
        }
        self.emit(SessionEvent::Transcript(entry));
    }

    // ---- control ----

    fn resolve(&self, name: &str) -> Result<NpcId, ControlError> {
        self.roster
            .by_name(name)
            .map(|npc| npc.id.clone())
            .ok_or_else(|| ControlError::UnknownNpc(name.trim().to_string()))
    }

    fn mute(&mut self, id: &NpcId, muted: bool) -> bool {
        let changed = self.roster.set_muted(id, muted).unwrap_or(false);
        if muted {
            self.services.playback.cut_npc(id);
            if let Some(running) = self.current.as_mut().filter(|r| &r.request.npc == id) {
                if running.cancel_reason.is_none() {
                    running.cancel_reason = Some(CancelReason::Cut);
                }
                running.cancel.cancel();
            }
            let (dropped, kept): (Vec<TurnRequest>, Vec<TurnRequest>) =
                self.queue.drain(..).partition(|r| &r.npc == id);
            self.queue.extend(kept);
            for request in dropped {
                self.emit_unstarted(request, TurnOutcome::Yielded);
            }
        }
        if changed {
            if let Some(npc) = self.roster.get(id) {
                self.emit(SessionEvent::NpcState(NpcStatus {
                    id: npc.id.clone(),
                    name: npc.definition.name.clone(),
                    muted,
                }));
            }
        }
        changed
    }

    fn set_all_muted(&mut self, muted: bool) -> usize {
        let ids: Vec<NpcId> = self.roster.npcs().iter().map(|n| n.id.clone()).collect();
        let mut changed = 0;
        for id in ids {
            changed += usize::from(self.mute(&id, muted));
        }
        if muted {
            self.services.playback.cut_all();
        }
        changed
    }

    fn speak(&mut self, id: NpcId, text: String) -> Result<(), ControlError> {
        if text.trim().is_empty() {
            return Err(ControlError::Invalid("there is nothing to say".into()));
        }
        let npc = self
            .roster
            .get(&id)
            .ok_or_else(|| ControlError::UnknownNpc(id.to_string()))?;
        if npc.muted {
            return Err(ControlError::Invalid(format!(
                "{} is muted; unmute it first",
                npc.definition.name
            )));
        }
        let dm = self.settings.dm_user_id.clone().unwrap_or_else(|| "dm".into());
        let request = TurnRequest {
            speaker_name: self.speaker_name(&dm),
            speaker_id: dm,
            npc: id,
            text: String::new(),
            fixed: Some(text.trim().to_string()),
            voice_start: None,
            voice_end: None,
            timings: TurnTimings::default(),
        };
        self.request_turn(request);
        Ok(())
    }

    fn run_voice_command(&mut self, command: VoiceCommand) {
        match command {
            VoiceCommand::Mute(id) => {
                self.mute(&id, true);
            }
            VoiceCommand::Unmute(id) => {
                self.mute(&id, false);
            }
            VoiceCommand::MuteAll => {
                self.set_all_muted(true);
            }
            VoiceCommand::UnmuteAll => {
                self.set_all_muted(false);
            }
            VoiceCommand::Speak(id, text) => {
                if let Err(error) = self.speak(id, text) {
                    tracing::info!(session = %self.settings.session_id, %error, "voice command refused");
                }
            }
        }
    }

    async fn on_control(&mut self, control: Control) {
        match control {
            Control::List(reply) => {
                let list = self
                    .roster
                    .npcs()
                    .iter()
                    .map(|npc| NpcStatus {
                        id: npc.id.clone(),
                        name: npc.definition.name.clone(),
                        muted: npc.muted,
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Control::SetMuted(name, muted, reply) => {
                let result = self.resolve(&name).map(|id| self.mute(&id, muted));
                let _ = reply.send(result);
            }
            Control::SetAllMuted(muted, reply) => {
                let _ = reply.send(self.set_all_muted(muted));
            }
            Control::Speak(name, text, reply) => {
                let result = self.resolve(&name).and_then(|id| self.speak(id, text));
                let _ = reply.send(result);
            }
            Control::Puppet(name, reply) => {
                let result = match name {
                    None => {
                        self.address.puppet = None;
                        Ok(())
                    }
                    Some(name) => self.resolve(&name).map(|id| self.address.puppet = Some(id)),
                };
                let _ = reply.send(result);
            }
            Control::Knowledge(upserted, removed, reply) => {
                self.knowledge.upsert(upserted);
                self.knowledge.remove(&removed);
                let _ = reply.send(self.knowledge.entries().len());
            }
            Control::SpeakerName(speaker, name) => {
                self.speaker_names.insert(speaker, name);
            }
            Control::Keywords(reply) => {
                let _ = reply.send(self.keywords());
            }
            Control::Idle(reply) => self.idle_waiters.push(reply),
            Control::Stop(reply) => {
                self.stopping = Some(reply);
                self.queue.clear();
                if let Some(running) = self.current.as_mut() {
                    if running.cancel_reason.is_none() {
                        running.cancel_reason = Some(CancelReason::Cut);
                    }
                    self.services.playback.cut_npc(&running.request.npc);
                    running.cancel.cancel();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Mutex, PoisonError};

    use super::*;
    use crate::campaign::Campaign;
    use crate::testing::{Scripted, ScriptedLlm, ScriptedStt, SimulatedPlayback, ToneTts};
    use crate::transcript::MemoryTranscript;

    /// Every log line of this test binary (one global subscriber: a scoped
    /// one can lose lines to callsites first hit by a concurrent test).
    fn captured_logs() -> &'static Mutex<Vec<u8>> {
        static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
        static INSTALL: std::sync::Once = std::sync::Once::new();
        struct Capture;
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                LOGS.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| Capture)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        });
        &LOGS
    }

    fn start(
        session_id: &str,
        settings: impl FnOnce(&mut SessionSettings),
        stt: Arc<ScriptedStt>,
        llm: Arc<ScriptedLlm>,
    ) -> (
        SessionHandle,
        mpsc::UnboundedReceiver<SessionEvent>,
        Arc<SimulatedPlayback>,
    ) {
        let campaign = Campaign::example();
        let mut session = SessionSettings::new(session_id, campaign.campaign.clone());
        settings(&mut session);
        let playback = SimulatedPlayback::start(400.0);
        let (handle, events, _task) = spawn_session(
            session,
            Roster::from_definitions(&campaign.npcs),
            Knowledge::from_entities(&campaign.entities),
            SessionServices {
                stt,
                llm,
                tts: Arc::new(ToneTts::new(Duration::from_millis(20), 20)),
                playback: playback.clone(),
                transcript: Arc::new(MemoryTranscript::default()),
            },
        );
        (handle, events, playback)
    }

    /// `speaker` said something 600 ms long that has just ended.
    fn utterance(handle: &SessionHandle, speaker: &str) {
        let now = Instant::now();
        handle
            .speech(SpeechInput::Ended {
                speaker: speaker.into(),
                audio: vec![0; 9_600],
                voice_start: now - Duration::from_millis(900),
                voice_end: now - Duration::from_millis(300),
                decided_at: now,
            })
            .unwrap();
    }

    fn turns(events: &mut mpsc::UnboundedReceiver<SessionEvent>) -> Vec<TurnResult> {
        let mut turns = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let SessionEvent::Turn(turn) = event {
                turns.push(turn);
            }
        }
        turns
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_line_inside_a_turn_carries_the_session_and_turn_ids() {
        let logs = captured_logs();
        let stt = Arc::new(ScriptedStt::new(
            vec![Scripted::Answer("Grimble, a drink please".into())],
            Duration::from_millis(50),
        ));
        let llm = Arc::new(ScriptedLlm::new(
            vec![Scripted::Fail("model overloaded".into())],
            Duration::from_millis(50),
            Duration::from_millis(10),
        ));
        let (handle, mut events, _playback) = start("s-turn-span", |_| {}, stt, llm);
        utterance(&handle, "alice");
        handle.idle().await.unwrap();
        let turns = turns(&mut events);
        assert_eq!(turns.len(), 1, "{turns:?}");
        assert_eq!(turns[0].outcome, TurnOutcome::Failed);
        assert_eq!(turns[0].turn_id, 1);
        // The provider's failure is logged from inside the turn: the line names the turn.
        let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
        let line = text
            .lines()
            .find(|line| line.contains("provider call failed") && line.contains("model overloaded"))
            .unwrap_or_else(|| panic!("no provider failure logged in:\n{text}"));
        for field in [
            "turn{",
            "session_id=s-turn-span",
            "turn_id=1",
            "speaker=alice",
            "npc=Grimble",
        ] {
            assert!(line.contains(field), "{field:?} missing from {line:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_transcription_fails_at_the_deadline_and_the_next_utterance_is_answered() {
        let stt = Arc::new(ScriptedStt::new(
            vec![Scripted::Hang, Scripted::Answer("Grimble, are you there?".into())],
            Duration::from_millis(50),
        ));
        let llm = Arc::new(ScriptedLlm::new(
            vec![Scripted::Answer("Aye.".into())],
            Duration::from_millis(50),
            Duration::from_millis(10),
        ));
        let (handle, mut events, _playback) = start(
            "s-stt-hang",
            |settings| settings.turn_timeout = Duration::from_secs(2),
            stt,
            llm,
        );
        utterance(&handle, "alice");
        tokio::time::sleep(Duration::from_secs(2)).await;
        utterance(&handle, "alice");
        tokio::time::timeout(Duration::from_secs(60), handle.idle())
            .await
            .expect("a hung transcription holds up the session")
            .unwrap();
        let turns = turns(&mut events);
        assert_eq!(turns.len(), 2, "{turns:?}");
        assert_eq!(turns[0].outcome, TurnOutcome::Failed);
        assert!(
            turns[0].error.as_deref().is_some_and(|e| e.contains("deadline")),
            "{:?}",
            turns[0].error
        );
        assert_eq!(turns[1].outcome, TurnOutcome::Spoke, "{:?}", turns[1]);
        assert_eq!(turns[1].reply_heard, "Aye.");
    }
}
