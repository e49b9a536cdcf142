//! `/session recap` and `/session voice-recap` (SPEC §2): what happened in a
//! session, as an embed for the DM and as a "previously, on your campaign…"
//! narration played into the voice channel.
//!
//! Which session:
//! - `/session recap`: the given id → the guild's live session → its most
//!   recent session;
//! - `/session voice-recap`: needs a live session to speak into, and recaps
//!   the given id or the guild's most recent *ended* session.
//!
//! A given id must name a session of this guild (other guilds of the tenant
//! and, by the store's scoping, other tenants' sessions are "unknown").
//!
//! The text is a summary written by the recap language model from a bounded
//! slice of the transcript. Without a model, or when it fails or runs out of
//! time, the recap is the raw timestamped transcript and the footer says
//! why. Summaries of ended sessions are saved with their narrated audio, so
//! a replay calls neither the model nor the voice again; live sessions are
//! summarised afresh every time and never saved. Transcript fallbacks are
//! never saved either, so a summariser configured later is used.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use glyphoxa_pipeline::campaign::VoiceSpec;
use glyphoxa_pipeline::providers::{ChatMessage, ChatRequest, LanguageModel, LlmEvent, Role, TextToSpeech, TtsRequest};
use glyphoxa_pipeline::splitter::split_sentences;
use glyphoxa_proto::v1::{AudioPriority, PlayAudioHeader, PlayAudioResponse};
use glyphoxa_proto::{ApiError, PcmStream};

use super::reply::{Choice, Embed, Message, MAX_CHOICES};
use super::{
    guild_of, human_duration, live_session, matches_partial, CommandContext, CommandError, CommandResult, Interaction,
    Reply, SessionInfo,
};
use crate::ids::{DiscordId, SessionId};
use crate::store::{RecapAudio, Session, SessionState, TranscriptEntry, TurnOutcome};
use crate::workers::WorkerError;

/// The option naming the session to recap.
pub(crate) const SESSION_OPTION: &str = "session_id";
/// Title of the `/session recap` embed.
pub(crate) const RECAP_TITLE: &str = "Session Recap";
/// Title of the `/session voice-recap` embed.
pub(crate) const VOICE_RECAP_TITLE: &str = "Previously, on your campaign…";
/// Label of the narration's PlayAudio stream (worker logs and metrics).
const PLAYBACK_LABEL: &str = "voice-recap";

/// Most transcript entries read for one recap.
const TRANSCRIPT_READ_LIMIT: u32 = 10_000;
/// Most transcript entries shown when the recap is the raw transcript (the
/// latest read are shown, and the footer says which).
const SHOWN_ENTRIES: usize = 300;
/// Most transcript characters given to the summariser; a longer transcript
/// keeps its opening quarter and its latest three quarters.
const PROMPT_CHARS: usize = 16_000;
/// Most tokens of a summary.
const SUMMARY_MAX_TOKENS: u32 = 700;
/// How long the summariser may take.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(60);
/// Characters of transcript narrated when no summary could be written.
const SPOKEN_FALLBACK_CHARS: usize = 1_500;
/// Characters per narrator request (whole sentences are grouped up to it).
const TTS_PIECE_CHARS: usize = 600;
/// How long synthesising the whole narration may take.
const NARRATION_TIMEOUT: Duration = Duration::from_secs(180);
/// Silence between narrated pieces, ms.
const PAUSE_MS: u32 = 250;
/// Largest narration kept (about 11 minutes of 48 kHz stereo).
const MAX_AUDIO_BYTES: usize = 128 * 1024 * 1024;
/// Audio per PlayAudio chunk, ms.
const CHUNK_MS: u32 = 100;
/// Sample rates the worker's mixer accepts (SPEC §5, worker.proto).
const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// A session's recap is saved only once it has been over this long, since a
/// worker may flush its last transcript lines just after the stop.
pub(crate) const SETTLE_MS: i64 = 10_000;
/// Sessions looked at for the autocomplete.
const AUTOCOMPLETE_SCAN: u32 = 200;
/// Longest autocomplete label Discord accepts.
const MAX_CHOICE_NAME: usize = 100;
/// Longest NPC field value before the list is shortened.
const MAX_NPC_FIELD: usize = 1_000;
/// Embed colour of a text recap.
const RECAP_COLOR: u32 = 0x34_98_db;
/// Embed colour of a narrated recap.
const VOICE_COLOR: u32 = 0x9b_59_b6;

/// A session as both the controller (campaign name, duration, worker) and
/// the store (campaign id, activation and end times) know it.
struct Target {
    info: SessionInfo,
    record: Session,
}

impl Target {
    /// Transcript times are shown relative to this (activation, else request).
    fn origin_ms(&self) -> i64 {
        self.record.activated_at.unwrap_or(self.record.started_at)
    }

    /// Whether a recap written at `at_ms` covers everything the session
    /// will ever record: it had ended, and a while before `at_ms`.
    fn settled_at(&self, at_ms: i64) -> bool {
        self.record.state == SessionState::Ended
            && self
                .record
                .ended_at
                .is_some_and(|ended| at_ms >= ended.saturating_add(SETTLE_MS))
    }
}

/// Where a recap's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// Saved by an earlier recap of the ended session.
    Saved,
    /// Written now by the summariser.
    Summary {
        /// The model's provider name.
        model: &'static str,
        /// The transcript had to be shortened for the prompt.
        shortened: bool,
    },
    /// The transcript itself; says why.
    Transcript {
        /// Why there is no summary.
        why: String,
        /// Position (1-based) of the first entry in the text.
        first: usize,
        /// Position of the last entry in the text.
        last: usize,
        /// Entries the session has.
        total: usize,
    },
    /// The session recorded no transcript.
    Empty,
}

/// A recap ready to show (and maybe narrate).
struct RecapText {
    text: String,
    origin: Origin,
    /// Stored in the recap cache, so audio can be cached with it.
    saved: bool,
    /// Narrated audio from the cache.
    audio: Option<RecapAudio>,
}

/// How a transcript fallback is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// `[mm:ss] Speaker: text`, the latest [`SHOWN_ENTRIES`] lines.
    Display,
    /// `Speaker: text`, the latest [`SPOKEN_FALLBACK_CHARS`] characters.
    Spoken,
}

/// `/session recap [session_id]`: an embed with the session's facts and a
/// summary (or the raw transcript) as its description, split over several
/// embeds and messages when long.
pub(crate) async fn recap(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let guild = guild_of(interaction)?;
    let info = match interaction.string(SESSION_OPTION) {
        Some(text) => given_session(ctx, guild, text).await?,
        None => match ctx.sessions.info(guild).await? {
            Some(live) => live,
            None => ctx.sessions.latest(guild, false).await?.ok_or_else(|| {
                CommandError::Refused(
                    "No session has been played in this server yet, so there is nothing to recap. \
                     Start one with `/session start`."
                        .into(),
                )
            })?,
        },
    };
    let target = target(ctx, info).await?;
    reply.defer(true).await?;

    let count = ctx.store().transcript_count(&target.info.id).await?;
    let (npc_title, npc_list) = npc_field(ctx, &target).await;
    let recap = recap_text(ctx, &target, count, Fallback::Display).await?;

    let session = &target.info;
    let mut embed = Embed::titled(RECAP_TITLE)
        .description(recap.text.clone())
        .field("Campaign", campaign_name(session), true)
        .field("Status", status(session.state), true)
        .field("Duration", human_duration(session.duration_ms), true)
        .field("Started by", format!("<@{}>", session.started_by), true)
        .field("Channel", format!("<#{}>", session.channel_id), true)
        .field("Transcript", entries(count), true)
        .field(
            "Session",
            format!(
                "`{}` · started <t:{}:f>",
                session.id,
                session.started_at.div_euclid(1000)
            ),
            false,
        )
        .field(npc_title, npc_list, false)
        .footer(footer(&recap.origin, target.record.state != SessionState::Ended));
    embed.color = Some(RECAP_COLOR);
    reply.send(Message::embed(embed)).await?;
    Ok(())
}

/// `/session voice-recap [session_id]`: narrates the recap of the given or
/// the most recent ended session into the live session's voice channel, at
/// narrator priority, and shows its text.
pub(crate) async fn voice_recap(ctx: &CommandContext, interaction: &Interaction, reply: &mut Reply) -> CommandResult {
    let guild = guild_of(interaction)?;
    let live = live_session(ctx, interaction).await?;
    let Some(narrator) = ctx.recaps.narrator.clone() else {
        return Err(CommandError::Refused(
            "No narrator voice is configured, so I cannot read a recap aloud. Ask whoever runs Glyphoxa to \
             configure a text-to-speech provider for recaps; `/session recap` still shows the recap as text."
                .into(),
        ));
    };
    let Some(worker) = live.worker.clone() else {
        return Err(CommandError::Refused(
            "The session is still starting; try again in a moment.".into(),
        ));
    };
    let previous = match interaction.string(SESSION_OPTION) {
        Some(text) => Some(finished(given_session(ctx, guild, text).await?)?),
        None => ctx.sessions.latest(guild, true).await?,
    };
    let Some(info) = previous else {
        return Err(CommandError::Refused(
            "There is no earlier session in this server to recap yet.".into(),
        ));
    };
    let target = target(ctx, info).await?;
    let saved = ctx
        .store()
        .recap(&target.info.id)
        .await?
        .filter(|saved| target.settled_at(saved.updated_at));
    let count = ctx.store().transcript_count(&target.info.id).await?;
    if saved.is_none() && count == 0 {
        return Err(CommandError::Refused(format!(
            "Session `{}` recorded no transcript, so there is nothing to recap.",
            target.info.id
        )));
    }
    reply.defer(true).await?;

    let recap = match saved {
        Some(saved) => RecapText {
            text: saved.text,
            origin: Origin::Saved,
            saved: true,
            audio: saved.audio,
        },
        None => recap_text(ctx, &target, count, Fallback::Spoken).await?,
    };
    let audio = match recap.audio.clone() {
        Some(audio) => audio,
        None => {
            let audio = narrate(narrator.as_ref(), &ctx.recaps.narrator_voice, &recap.text)
                .await
                .map_err(|why| CommandError::Failed(format!("The narrator could not read the recap: {why}")))?;
            if recap.saved {
                match ctx.store().save_recap_audio(&target.info.id, &audio).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(session = %target.info.id, "the recap vanished before its audio was cached")
                    }
                    Err(error) => tracing::warn!(session = %target.info.id, %error, "cannot cache the recap audio"),
                }
            }
            audio
        }
    };

    let mut embed = Embed::titled(VOICE_RECAP_TITLE)
        .description(recap.text.clone())
        .field("Campaign", campaign_name(&target.info), true)
        .field("Recapped session", format!("`{}`", target.info.id), true)
        .field("Narrated in", format!("<#{}>", live.channel_id), true)
        .footer(format!(
            "🔊 {} of narration. {}",
            human_duration(audio_ms(&audio)),
            footer(&recap.origin, false)
        ));
    embed.color = Some(VOICE_COLOR);
    reply.send(Message::embed(embed)).await?;

    let played = play(ctx, &worker, &live.id, &audio).await?;
    if played.interrupted {
        let played_ms = i64::try_from(played.played_ms).unwrap_or(i64::MAX);
        reply
            .send(Message::text(format!(
                "⏹️ The narration was interrupted after {}.",
                human_duration(played_ms)
            )))
            .await?;
    }
    Ok(())
}

/// Autocomplete of `session_id`: this guild's sessions, newest first (live
/// ones on top; only ended ones for the voice recap), labelled with their
/// date, campaign, state and length; the value is the session id.
pub(crate) async fn complete(ctx: &CommandContext, interaction: &Interaction) -> Vec<Choice> {
    let Some(guild) = interaction.guild_id.as_ref() else {
        return Vec::new();
    };
    let partial = interaction.string(SESSION_OPTION).unwrap_or_default();
    let ended_only = interaction.subcommand.as_deref() == Some("voice-recap");
    let store = ctx.store();
    let sessions = match store.sessions(AUTOCOMPLETE_SCAN).await {
        Ok(sessions) => sessions,
        Err(error) => {
            tracing::warn!(tenant = %ctx.tenant, %error, "cannot list sessions for the recap autocomplete");
            return Vec::new();
        }
    };
    let campaigns: HashMap<String, String> = match store.campaigns().await {
        Ok(campaigns) => campaigns.into_iter().map(|c| (c.id.to_string(), c.info.name)).collect(),
        Err(error) => {
            tracing::warn!(tenant = %ctx.tenant, %error, "cannot list campaigns for the recap autocomplete");
            HashMap::new()
        }
    };
    let now = ctx.now_ms();
    sessions
        .into_iter()
        .filter(|session| &session.guild_id == guild && !(ended_only && session.is_live()))
        .map(|session| {
            let campaign = session
                .campaign_id
                .as_ref()
                .and_then(|id| campaigns.get(id.as_str()))
                .map_or("no campaign", String::as_str);
            let name = shorten(
                &format!(
                    "{} · {campaign} · {} · {}",
                    utc_minute(session.started_at),
                    session.state,
                    human_duration(session.duration_ms(now))
                ),
                MAX_CHOICE_NAME,
            );
            Choice {
                name,
                value: session.id.to_string(),
            }
        })
        .filter(|choice| matches_partial(&choice.name, partial) || matches_partial(&choice.value, partial))
        .take(MAX_CHOICES)
        .collect()
}

/// The session `text` names, if it is one of this guild's.
async fn given_session(ctx: &CommandContext, guild: &DiscordId, text: &str) -> Result<SessionInfo, CommandError> {
    let unknown = || {
        CommandError::Refused(format!(
            "I know no session `{}` in this server. Pick one from the list, or leave `{SESSION_OPTION}` empty.",
            shorten(&text.replace('`', ""), 80)
        ))
    };
    let id = SessionId::parse(text).map_err(|_| unknown())?;
    match ctx.sessions.session(&id).await? {
        Some(info) if &info.guild_id == guild => Ok(info),
        _ => Err(unknown()),
    }
}

/// `info` if the session has ended; a voice recap tells a finished story.
fn finished(info: SessionInfo) -> Result<SessionInfo, CommandError> {
    if info.state == SessionState::Ended {
        return Ok(info);
    }
    Err(CommandError::Refused(format!(
        "Session `{}` is still running; a voice recap tells the story of a finished session. \
         Use `/session recap` for the session so far.",
        info.id
    )))
}

/// Joins the controller's view of a session with its stored record.
async fn target(ctx: &CommandContext, info: SessionInfo) -> Result<Target, CommandError> {
    let record = ctx
        .store()
        .session(&info.id)
        .await?
        .ok_or_else(|| CommandError::Refused(format!("Session `{}` no longer exists.", info.id)))?;
    Ok(Target { info, record })
}

/// The recap of `target`: the saved one (ended sessions), else a fresh
/// summary (saved when the session has settled), else the transcript.
async fn recap_text(
    ctx: &CommandContext,
    target: &Target,
    count: i64,
    fallback: Fallback,
) -> Result<RecapText, CommandError> {
    let store = ctx.store();
    let id = &target.info.id;
    if target.record.state == SessionState::Ended {
        if let Some(saved) = store.recap(id).await? {
            if target.settled_at(saved.updated_at) {
                return Ok(RecapText {
                    text: saved.text,
                    origin: Origin::Saved,
                    saved: true,
                    audio: saved.audio,
                });
            }
        }
    }
    if count == 0 {
        return Ok(RecapText {
            text: "Nothing was said in this session: no transcript entries were recorded.".into(),
            origin: Origin::Empty,
            saved: false,
            audio: None,
        });
    }
    let transcript = store.transcript(id, TRANSCRIPT_READ_LIMIT).await?;
    let total = usize::try_from(count).unwrap_or(usize::MAX).max(transcript.len());
    let origin_ms = target.origin_ms();
    let why = match &ctx.recaps.summarizer {
        None => "No summariser is configured, so this is the transcript.".to_string(),
        Some(model) => {
            let lines: Vec<String> = transcript.iter().map(|e| timestamped(e, origin_ms)).collect();
            let (prompt, shortened) = prompt_transcript(&lines, PROMPT_CHARS);
            let shortened = shortened || total > transcript.len();
            match summarize(model.as_ref(), target.info.campaign.as_deref(), &prompt).await {
                Ok(text) => {
                    let saved = target.settled_at(ctx.now_ms()) && save(ctx, id, &text).await;
                    return Ok(RecapText {
                        text,
                        origin: Origin::Summary {
                            model: model.name(),
                            shortened,
                        },
                        saved,
                        audio: None,
                    });
                }
                Err(why) => {
                    tracing::warn!(session = %id, model = model.name(), error = %why, "recap summary failed");
                    format!("The summariser failed ({why}), so this is the transcript.")
                }
            }
        }
    };
    let (text, shown) = match fallback {
        Fallback::Display => {
            let start = transcript.len().saturating_sub(SHOWN_ENTRIES);
            let lines: Vec<String> = transcript[start..].iter().map(|e| timestamped(e, origin_ms)).collect();
            (lines.join("\n"), lines.len())
        }
        Fallback::Spoken => spoken_tail(&transcript, SPOKEN_FALLBACK_CHARS),
    };
    Ok(RecapText {
        text,
        origin: Origin::Transcript {
            why,
            first: transcript.len() + 1 - shown.max(1),
            last: transcript.len(),
            total,
        },
        saved: false,
        audio: None,
    })
}

/// Saves a summary; a failure only costs the cache, so it is logged.
async fn save(ctx: &CommandContext, id: &SessionId, text: &str) -> bool {
    match ctx.store().save_recap(id, text).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(session = %id, %error, "cannot save the recap");
            false
        }
    }
}

/// `[mm:ss] Speaker: text` (`[h:mm:ss]` past an hour), relative to `origin_ms`.
fn timestamped(entry: &TranscriptEntry, origin_ms: i64) -> String {
    let line = &entry.line;
    let secs = (line.start_ms - origin_ms).max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let stamp = if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m:02}:{s:02}")
    };
    let cut = if line.outcome == Some(TurnOutcome::Cut) {
        " (cut off)"
    } else {
        ""
    };
    format!("[{stamp}] {}: {}{cut}", speaker(entry), line.text.trim())
}

/// The speaker's display name, else their id.
fn speaker(entry: &TranscriptEntry) -> &str {
    let name = entry.line.speaker_name.trim();
    if name.is_empty() {
        &entry.line.speaker_id
    } else {
        name
    }
}

/// The latest transcript lines as `Speaker: text`, at most `budget`
/// characters (at least one line); returns the text and the lines in it.
fn spoken_tail(transcript: &[TranscriptEntry], budget: usize) -> (String, usize) {
    let mut lines: Vec<String> = Vec::new();
    let mut used = 0;
    for entry in transcript.iter().rev() {
        let line = format!("{}: {}", speaker(entry), entry.line.text.trim());
        let length = line.chars().count() + 1;
        if !lines.is_empty() && used + length > budget {
            break;
        }
        used += length;
        lines.push(line);
    }
    lines.reverse();
    let shown = lines.len();
    (lines.join("\n"), shown)
}

/// The transcript lines for the prompt within `budget` characters: all of
/// them, or the opening quarter and the latest three quarters with a marker
/// between. Returns whether lines were left out.
fn prompt_transcript(lines: &[String], budget: usize) -> (String, bool) {
    let total: usize = lines.iter().map(|l| l.chars().count() + 1).sum();
    if total <= budget {
        return (lines.join("\n"), false);
    }
    let take = |budget: usize, lines: &mut dyn Iterator<Item = &String>| {
        let mut used = 0;
        let mut taken = Vec::new();
        for line in lines {
            let length = line.chars().count() + 1;
            if used + length > budget {
                break;
            }
            used += length;
            taken.push(line.clone());
        }
        taken
    };
    let head = take(budget / 4, &mut lines.iter());
    let mut tail = take(budget - budget / 4, &mut lines[head.len()..].iter().rev());
    tail.reverse();
    let skipped = lines.len() - head.len() - tail.len();
    let mut parts = head;
    parts.push(format!("[… {skipped} lines left out …]"));
    parts.extend(tail);
    (parts.join("\n"), true)
}

/// Asks `model` for a "previously on…" recap of `transcript`.
async fn summarize(model: &dyn LanguageModel, campaign: Option<&str>, transcript: &str) -> Result<String, String> {
    let campaign = campaign.map_or_else(String::new, |name| format!(" \"{name}\""));
    let system = format!(
        "You narrate the tabletop roleplaying campaign{campaign}. From the session transcript you are given, \
         write the recap that opens the next game night, like the \"previously on…\" of a TV series: past tense, \
         one to three short paragraphs, under 250 words, vivid but faithful. Stay inside the story: never mention \
         players, dice, the transcript, Discord or that you are an AI. Use only what happened in the transcript and \
         invent nothing. End on the question or danger the session left open. Plain prose: no headings, no lists."
    );
    let request = ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, system),
            ChatMessage::new(Role::User, format!("Session transcript:\n{transcript}")),
        ],
        max_tokens: Some(SUMMARY_MAX_TOKENS),
        temperature: Some(0.7),
        deadline: Some(tokio::time::Instant::now() + SUMMARY_TIMEOUT),
        ..ChatRequest::default()
    };
    let write = async {
        let mut stream = model.chat(request).await.map_err(|e| e.to_string())?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            match event.map_err(|e| e.to_string())? {
                LlmEvent::Text(piece) => text.push_str(&piece),
                LlmEvent::Finished(_) => break,
                LlmEvent::ToolCall(_) | LlmEvent::Usage(_) => {}
            }
        }
        Ok::<_, String>(text)
    };
    let text = tokio::time::timeout(SUMMARY_TIMEOUT, write)
        .await
        .map_err(|_| format!("no answer within {} s", SUMMARY_TIMEOUT.as_secs()))??;
    let text = text.trim();
    if text.is_empty() {
        return Err("the model wrote nothing".into());
    }
    Ok(text.to_string())
}

/// The text in narrator requests: whole sentences grouped up to
/// [`TTS_PIECE_CHARS`], never across a line break.
fn speech_pieces(text: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut current = String::new();
        for sentence in split_sentences(line) {
            let sentence = sentence.trim();
            if sentence.is_empty() {
                continue;
            }
            if !current.is_empty() && current.chars().count() + 1 + sentence.chars().count() > TTS_PIECE_CHARS {
                pieces.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(sentence);
        }
        if !current.is_empty() {
            pieces.push(current);
        }
    }
    pieces
}

/// Synthesises `text` with the narrator into one PCM clip, a short pause
/// between pieces.
async fn narrate(tts: &dyn TextToSpeech, voice_id: &str, text: &str) -> Result<RecapAudio, String> {
    let voice = VoiceSpec {
        voice_id: Some(voice_id.trim().to_string()).filter(|v| !v.is_empty()),
        ..VoiceSpec::default()
    };
    let deadline = tokio::time::Instant::now() + NARRATION_TIMEOUT;
    let work = async {
        let mut pcm: Vec<u8> = Vec::new();
        let mut format: Option<(u32, u16)> = None;
        for piece in speech_pieces(text) {
            let request = TtsRequest {
                text: piece,
                voice: voice.clone(),
                deadline: Some(deadline),
            };
            let mut stream = tts.synthesize(request).await.map_err(|e| e.to_string())?;
            if let Some((rate, channels)) = format {
                let pause = (rate * PAUSE_MS / 1000) as usize * usize::from(channels) * 2;
                pcm.resize(pcm.len() + pause, 0);
            }
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                if chunk.samples.is_empty() {
                    continue;
                }
                let this = (chunk.sample_rate, chunk.channels);
                match format {
                    None => format = Some(this),
                    Some(first) if first != this => {
                        return Err(format!(
                            "the voice changed format mid-recap ({} Hz × {} → {} Hz × {})",
                            first.0, first.1, this.0, this.1
                        ))
                    }
                    Some(_) => {}
                }
                if pcm.len() + chunk.samples.len() * 2 > MAX_AUDIO_BYTES {
                    return Err("the narration is too long to play".into());
                }
                pcm.extend(chunk.samples.iter().flat_map(|s| s.to_le_bytes()));
            }
        }
        let (sample_rate, channels) = format.ok_or("the narrator produced no audio")?;
        if !SAMPLE_RATES.contains(&sample_rate) || !(1..=2).contains(&channels) {
            return Err(format!(
                "the narrator speaks {sample_rate} Hz × {channels} channels; the mixer takes 8–48 kHz mono or stereo"
            ));
        }
        Ok(RecapAudio {
            pcm,
            sample_rate,
            channels,
        })
    };
    tokio::time::timeout(NARRATION_TIMEOUT, work)
        .await
        .map_err(|_| format!("no complete narration within {} s", NARRATION_TIMEOUT.as_secs()))?
}

/// Plays `audio` through the mixer of `session` on `worker` at narrator
/// priority, in [`CHUNK_MS`] chunks; returns when playback ended.
async fn play(
    ctx: &CommandContext,
    worker: &str,
    session: &SessionId,
    audio: &RecapAudio,
) -> Result<PlayAudioResponse, WorkerError> {
    let frame = 2 * usize::from(audio.channels.max(1));
    let per_chunk = (audio.sample_rate * CHUNK_MS / 1000).max(1) as usize * frame;
    let whole = audio.pcm.len() / frame * frame;
    let chunks: Vec<Result<Vec<u8>, ApiError>> = audio.pcm[..whole]
        .chunks(per_chunk)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let header = PlayAudioHeader {
        session_id: session.to_string(),
        sample_rate: audio.sample_rate,
        channels: u32::from(audio.channels),
        priority: AudioPriority::Narrator as i32,
        label: PLAYBACK_LABEL.into(),
    };
    let stream: PcmStream = Box::pin(futures_util::stream::iter(chunks));
    ctx.workers.play_audio(worker, header, stream).await
}

/// Length of `audio` in ms.
fn audio_ms(audio: &RecapAudio) -> i64 {
    let frames = audio.pcm.len() / (2 * usize::from(audio.channels.max(1)));
    i64::try_from(frames).unwrap_or(i64::MAX).saturating_mul(1000) / i64::from(audio.sample_rate.max(1))
}

/// The NPC field: the live roster with 🔊/🔇 from the worker, or for an
/// ended session the campaign's current roster (its mute states are gone).
async fn npc_field(ctx: &CommandContext, target: &Target) -> (String, String) {
    let id = &target.info.id;
    if target.record.state != SessionState::Ended {
        let Some(worker) = target.info.worker.as_deref() else {
            return ("NPCs".into(), "The session is still starting.".into());
        };
        return match ctx.workers.list_npcs(worker, id.as_str()).await {
            Ok(npcs) => (
                "NPCs".into(),
                bounded_list(
                    npcs.iter()
                        .map(|npc| format!("{} {}", if npc.muted { "🔇" } else { "🔊" }, npc.name))
                        .collect(),
                    "This session has no NPCs.",
                ),
            ),
            Err(error) => {
                tracing::warn!(session = %id, %error, "cannot list the NPCs for a recap");
                ("NPCs".into(), "Unavailable: the voice worker did not answer.".into())
            }
        };
    }
    let title = "NPCs (campaign roster)".to_string();
    let Some(campaign) = &target.record.campaign_id else {
        return (title, "The session's campaign is gone.".into());
    };
    match ctx.store().npcs(campaign).await {
        Ok(npcs) => (
            title,
            bounded_list(
                npcs.into_iter().map(|npc| format!("• {}", npc.npc.name)).collect(),
                "The campaign has no NPCs.",
            ),
        ),
        Err(error) => {
            tracing::warn!(session = %id, %error, "cannot read the campaign's NPCs for a recap");
            (title, "Unavailable: the campaign database did not answer.".into())
        }
    }
}

/// One item a line; `empty` for none; shortened to fit a field, saying how
/// many were left out.
fn bounded_list(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let total = items.len();
    let mut text = String::new();
    for (index, item) in items.iter().enumerate() {
        let more = format!("\n… and {} more", total - index);
        if text.chars().count() + item.chars().count() + 1 + more.chars().count() > MAX_NPC_FIELD {
            text.push_str(&more);
            break;
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(item);
    }
    text
}

/// The session's campaign name for a field.
fn campaign_name(session: &SessionInfo) -> String {
    session.campaign.clone().unwrap_or_else(|| "(none)".into())
}

/// The session state with an icon.
fn status(state: SessionState) -> &'static str {
    match state {
        SessionState::Active => "🟢 active",
        SessionState::Pending => "⏳ starting",
        SessionState::Ended => "⏹️ ended",
    }
}

/// "1 entry" / "N entries".
fn entries(count: i64) -> String {
    if count == 1 {
        "1 entry".into()
    } else {
        format!("{count} entries")
    }
}

/// What the footer says about where the text came from.
fn footer(origin: &Origin, live: bool) -> String {
    let mut text = match origin {
        Origin::Saved => "Saved summary.".to_string(),
        Origin::Summary { model, shortened } => {
            let mut text = format!("Summarised by {model}.");
            if *shortened {
                text.push_str(" The transcript was long; part of its middle was left out of the summary.");
            }
            text
        }
        Origin::Transcript {
            why,
            first,
            last,
            total,
        } => {
            let shown = last + 1 - first;
            if shown >= *total {
                why.clone()
            } else if last == total {
                format!("{why} Showing the latest {shown} of {total} entries.")
            } else {
                format!("{why} Showing entries {first}–{last} of {total}; the rest is too long to read at once.")
            }
        }
        Origin::Empty => "No transcript entries were recorded.".to_string(),
    };
    if live {
        text.push_str(" The session is still running; this covers it so far.");
    }
    text
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc_minute(unix_ms: i64) -> String {
    let stamp = crate::time::rfc3339(unix_ms);
    match (stamp.get(..10), stamp.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => stamp,
    }
}

/// At most `limit` characters, with `…` when cut.
fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use futures_util::StreamExt as _;
    use glyphoxa_pipeline::campaign::Campaign;
    use glyphoxa_pipeline::providers::{FinishReason, LlmStream, PcmChunk, ProviderError};

    use super::*;
    use crate::commands::interaction::OptionValue;
    use crate::commands::reply::{InitialResponse, MAX_DESCRIPTION_CHARS};
    use crate::commands::responder::Sent;
    use crate::commands::testing::*;
    use crate::commands::RecapEngines;
    use crate::commands::StopCause;
    use crate::ids::CampaignId;
    use crate::store::NewTranscriptLine;
    use crate::time::Clock as _;

    /// A summariser that counts its calls and answers `reply` (or fails).
    struct CountingLlm {
        reply: Option<String>,
        calls: AtomicUsize,
        prompts: Mutex<Vec<String>>,
    }

    impl CountingLlm {
        fn answering(text: &str) -> Arc<Self> {
            Arc::new(Self {
                reply: Some(text.to_string()),
                calls: AtomicUsize::new(0),
                prompts: Mutex::new(Vec::new()),
            })
        }
        fn failing() -> Arc<Self> {
            Arc::new(Self {
                reply: None,
                calls: AtomicUsize::new(0),
                prompts: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn last_prompt(&self) -> String {
            self.prompts.lock().unwrap().last().cloned().unwrap_or_default()
        }
    }

    #[async_trait]
    impl LanguageModel for CountingLlm {
        fn name(&self) -> &'static str {
            "counting-llm"
        }
        async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let prompt: Vec<String> = request.messages.iter().map(|m| m.content.clone()).collect();
            self.prompts.lock().unwrap().push(prompt.join("\n"));
            let Some(reply) = &self.reply else {
                return Err(ProviderError::Http {
                    provider: "counting-llm",
                    status: 503,
                    body: "overloaded".into(),
                });
            };
            let mut events: Vec<Result<LlmEvent, ProviderError>> = reply
                .split_inclusive(' ')
                .map(|word| Ok(LlmEvent::Text(word.to_string())))
                .collect();
            events.push(Ok(LlmEvent::Finished(FinishReason::Stop)));
            Ok(futures_util::stream::iter(events).boxed())
        }
    }

    /// A narrator that counts its calls and speaks 10 ms of 24 kHz mono per
    /// character, in 20 ms chunks.
    #[derive(Default)]
    struct CountingTts {
        calls: AtomicUsize,
        voices: Mutex<Vec<Option<String>>>,
    }

    impl CountingTts {
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl TextToSpeech for CountingTts {
        fn name(&self) -> &'static str {
            "counting-tts"
        }
        async fn synthesize(
            &self,
            request: TtsRequest,
        ) -> Result<glyphoxa_pipeline::providers::PcmStream, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.voices.lock().unwrap().push(request.voice.voice_id.clone());
            let samples = request.text.chars().count() * 240;
            let chunks: Vec<Result<PcmChunk, ProviderError>> = (0..samples.div_ceil(480))
                .map(|i| {
                    Ok(PcmChunk {
                        samples: vec![100; 480.min(samples - i * 480)],
                        sample_rate: 24_000,
                        channels: 1,
                    })
                })
                .collect();
            Ok(futures_util::stream::iter(chunks).boxed())
        }
    }

    /// Gives the bench's commands these recap engines (narrator voice "bard").
    fn engines(bench: &mut Bench, llm: Option<Arc<CountingLlm>>, tts: Option<Arc<CountingTts>>) {
        let recaps = RecapEngines {
            summarizer: llm.map(|l| l as Arc<dyn LanguageModel>),
            narrator: tts.map(|t| t as Arc<dyn TextToSpeech>),
            narrator_voice: "bard".into(),
        };
        bench.ctx = bench.ctx.clone().with_recaps(recaps);
    }

    /// A player's transcript line.
    fn line(speaker: &str, text: &str, start_ms: i64) -> NewTranscriptLine {
        NewTranscriptLine {
            speaker_id: PLAYER.into(),
            speaker_name: speaker.into(),
            npc_id: None,
            text: text.into(),
            start_ms,
            end_ms: start_ms + 1_000,
            outcome: None,
            turn_id: None,
            puppet: false,
        }
    }

    /// Starts a session in `guild` and records `lines` at seconds after its start.
    async fn begin(bench: &Bench, guild: &str, lines: &[(&str, &str, i64)]) -> SessionId {
        let info = bench
            .ctx
            .sessions
            .start(&id(guild), &id(VOICE_CHANNEL), &id(DM))
            .await
            .expect("session starts");
        let store = bench.ctx.store();
        for (speaker, text, at) in lines {
            store
                .append_transcript(&info.id, &line(speaker, text, bench.clock.now_ms() + at * 1000))
                .await
                .unwrap();
        }
        info.id
    }

    /// Ends the guild's session ten minutes in, then lets it settle.
    async fn end(bench: &Bench, guild: &str) {
        bench.clock.advance(Duration::from_secs(600));
        bench
            .ctx
            .sessions
            .stop(&id(guild), StopCause::Command(&id(DM)))
            .await
            .expect("session stops");
        bench.clock.advance(Duration::from_secs(60));
    }

    /// Plays a whole session with `lines` in the bench's guild.
    async fn played(bench: &Bench, lines: &[(&str, &str, i64)]) -> SessionId {
        let session = begin(bench, GUILD, lines).await;
        end(bench, GUILD).await;
        session
    }

    /// `/session recap`, with `session_id` if given.
    fn recap_of(session: Option<&str>) -> Interaction {
        let interaction = command("session", Some("recap"));
        match session {
            Some(text) => interaction.with_option(SESSION_OPTION, OptionValue::String(text.into())),
            None => interaction,
        }
    }

    /// `/session voice-recap`, with `session_id` if given.
    fn voice_recap_of(session: Option<&str>) -> Interaction {
        let interaction = command("session", Some("voice-recap"));
        match session {
            Some(text) => interaction.with_option(SESSION_OPTION, OptionValue::String(text.into())),
            None => interaction,
        }
    }

    /// The text of a refusal, which must be the one immediate message.
    fn refusal(sent: &[Sent]) -> String {
        match sent {
            [Sent::Initial(InitialResponse::Message(m))] => m.content.clone(),
            other => panic!("expected one immediate message, got {other:?}"),
        }
    }

    /// Everything a deferred answer sent, joined.
    fn deferred(sent: &[Sent]) -> String {
        assert_eq!(
            sent[0],
            Sent::Initial(InitialResponse::Defer { ephemeral: true }),
            "{sent:?}"
        );
        assert!(matches!(sent.get(1), Some(Sent::EditOriginal(_))), "{sent:?}");
        sent[1..].iter().map(Sent::text).collect::<Vec<_>>().join("\n")
    }

    /// Every embed sent, in order.
    fn embeds(sent: &[Sent]) -> Vec<Embed> {
        sent.iter()
            .filter_map(|s| match s {
                Sent::EditOriginal(m) | Sent::FollowUp(m) => Some(m.embeds.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[tokio::test]
    async fn the_recapped_session_is_the_given_then_the_live_then_the_latest() {
        let bench = Bench::new().await;
        let sent = bench.run(recap_of(None)).await;
        assert!(refusal(&sent).contains("No session has been played"), "{sent:?}");

        let first = played(&bench, &[("Pip", "We enter the crypt.", 5)]).await;
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(
            text.contains(first.as_str()) && text.contains("We enter the crypt."),
            "{text}"
        );
        assert!(text.contains("⏹️ ended"), "{text}");

        let live = begin(&bench, GUILD, &[("Grimble", "Welcome back, friends.", 3)]).await;
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(text.contains(live.as_str()) && text.contains("Welcome back"), "{text}");
        assert!(text.contains("🟢 active") && !text.contains("crypt"), "{text}");
        assert!(text.contains("still running"), "{text}");

        let text = deferred(&bench.run(recap_of(Some(first.as_str()))).await);
        assert!(text.contains(first.as_str()) && text.contains("crypt"), "{text}");

        end(&bench, GUILD).await;
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(text.contains(live.as_str()) && text.contains("⏹️ ended"), "{text}");

        // Unknown ids, malformed ones and other guilds' sessions are refused at once.
        let elsewhere = begin(&bench, "101", &[("Pip", "Secret plans.", 1)]).await;
        end(&bench, "101").await;
        let random = SessionId::random();
        for given in ["nope/`x`", random.as_str(), elsewhere.as_str()] {
            let sent = bench.run(recap_of(Some(given))).await;
            assert!(refusal(&sent).contains("I know no session"), "{given}: {sent:?}");
        }
        let outside = Interaction::command("session", Some("recap"), dm());
        assert!(refusal(&bench.run(outside).await).contains("only works in a server"));
    }

    #[tokio::test]
    async fn without_a_summariser_the_recap_is_the_timestamped_transcript() {
        let bench = Bench::new().await;
        let session = begin(&bench, GUILD, &[("Pip", "We enter the crypt.", 5)]).await;
        let mut cut = line("Grimble", "Turn back, you fools", bench.clock.now_ms() + 70_000);
        cut.outcome = Some(TurnOutcome::Cut);
        bench.ctx.store().append_transcript(&session, &cut).await.unwrap();
        end(&bench, GUILD).await;

        let sent = bench.run(recap_of(None)).await;
        let text = deferred(&sent);
        let embed = &embeds(&sent)[0];
        assert_eq!(embed.title, RECAP_TITLE);
        assert_eq!(
            embed.description,
            "[00:05] Pip: We enter the crypt.\n[01:10] Grimble: Turn back, you fools (cut off)"
        );
        for expected in [
            "Campaign: Default campaign",
            "Status: ⏹️ ended",
            "Duration: 10 min 00 s",
            &format!("Started by: <@{DM}>"),
            &format!("Channel: <#{VOICE_CHANNEL}>"),
            "Transcript: 2 entries",
            "NPCs (campaign roster): The campaign has no NPCs.",
            "No summariser is configured",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        assert!(
            bench.ctx.store().recap(&session).await.unwrap().is_none(),
            "fallbacks are not saved"
        );

        // A failing summariser falls back too, and says so.
        let mut bench = bench;
        let llm = CountingLlm::failing();
        engines(&mut bench, Some(llm.clone()), None);
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(text.contains("[00:05] Pip: We enter the crypt."), "{text}");
        assert!(
            text.contains("The summariser failed (") && text.contains("overloaded"),
            "{text}"
        );
        assert_eq!(llm.calls(), 1);
    }

    #[tokio::test]
    async fn a_summary_is_used_and_saved_once_the_session_ended() {
        let mut bench = Bench::new().await;
        let llm = CountingLlm::answering("Previously, the heroes braved the crypt beneath Phandalin.");
        engines(&mut bench, Some(llm.clone()), None);
        let session = played(
            &bench,
            &[
                ("Pip", "We enter the crypt.", 5),
                ("Mira", "It smells of old bones.", 9),
            ],
        )
        .await;

        let sent = bench.run(recap_of(None)).await;
        let text = deferred(&sent);
        assert_eq!(
            embeds(&sent)[0].description,
            "Previously, the heroes braved the crypt beneath Phandalin."
        );
        assert!(text.contains("Summarised by counting-llm."), "{text}");
        let prompt = llm.last_prompt();
        assert!(
            prompt.contains("Default campaign") && prompt.contains("previously on"),
            "{prompt}"
        );
        assert!(
            prompt.contains("[00:05] Pip: We enter the crypt.\n[00:09] Mira: It smells of old bones."),
            "{prompt}"
        );
        assert_eq!(llm.calls(), 1);
        let saved = bench.ctx.store().recap(&session).await.unwrap().expect("saved");
        assert!(saved.text.contains("braved the crypt"));

        // Again: the saved summary, no model call.
        let text = deferred(&bench.run(recap_of(Some(session.as_str()))).await);
        assert!(
            text.contains("braved the crypt") && text.contains("Saved summary."),
            "{text}"
        );
        assert_eq!(llm.calls(), 1);

        // A live session is summarised every time and never saved.
        let live = begin(&bench, GUILD, &[("Pip", "Onwards!", 2)]).await;
        deferred(&bench.run(recap_of(None)).await);
        deferred(&bench.run(recap_of(None)).await);
        assert_eq!(llm.calls(), 3);
        assert!(bench.ctx.store().recap(&live).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_recap_right_after_the_stop_is_not_saved_yet() {
        let mut bench = Bench::new().await;
        let llm = CountingLlm::answering("The crypt awaited.");
        engines(&mut bench, Some(llm.clone()), None);
        let session = begin(&bench, GUILD, &[("Pip", "We enter the crypt.", 5)]).await;
        bench
            .ctx
            .sessions
            .stop(&id(GUILD), StopCause::Command(&id(DM)))
            .await
            .unwrap();
        deferred(&bench.run(recap_of(None)).await);
        assert!(bench.ctx.store().recap(&session).await.unwrap().is_none());
        bench.clock.advance(Duration::from_secs(30));
        deferred(&bench.run(recap_of(None)).await);
        assert!(bench.ctx.store().recap(&session).await.unwrap().is_some());
        assert_eq!(llm.calls(), 2);
    }

    #[tokio::test]
    async fn a_long_recap_is_split_over_several_embeds_and_messages() {
        let bench = Bench::new().await;
        let lines: Vec<(String, i64)> = (0..150)
            .map(|i| (format!("line {i}: {}", "the party argues about the map. ".repeat(3)), i))
            .collect();
        let borrowed: Vec<(&str, &str, i64)> = lines.iter().map(|(t, i)| ("Pip", t.as_str(), *i)).collect();
        played(&bench, &borrowed).await;

        let sent = bench.run(recap_of(None)).await;
        deferred(&sent);
        assert!(
            sent.iter().filter(|s| matches!(s, Sent::FollowUp(_))).count() >= 1,
            "{}",
            sent.len()
        );
        let all = embeds(&sent);
        assert!(all.len() >= 4, "{}", all.len());
        assert_eq!(all[0].title, RECAP_TITLE);
        assert_eq!(all[1].title, format!("{RECAP_TITLE} (continued)"));
        assert!(all
            .iter()
            .all(|e| e.description.chars().count() <= MAX_DESCRIPTION_CHARS));
        let joined: String = all.iter().map(|e| e.description.clone()).collect::<Vec<_>>().join("\n");
        assert!(joined.contains("[00:00] Pip: line 0:") && joined.contains("[02:29] Pip: line 149:"));
        assert!(all.last().unwrap().footer.as_deref().unwrap().contains("No summariser"));
    }

    #[tokio::test]
    async fn a_live_recap_lists_the_npcs_from_the_worker() {
        let bench = Bench::new().await;
        let yaml = "campaign: { name: \"Lost Mine\" }\nnpcs:\n  - { name: Grimble, personality: \"Grumpy.\" }\n  - { name: Mira, personality: \"Cheerful.\" }\n";
        let campaign = Campaign::from_yaml(yaml, "lost-mine.yaml").unwrap();
        let campaign_id = CampaignId::from_name("Lost Mine");
        let store = bench.ctx.store();
        store.import_campaign(&campaign_id, &campaign).await.unwrap();
        store.set_active_campaign(Some(&campaign_id)).await.unwrap();
        let session = begin(&bench, GUILD, &[]).await;
        let info = bench.ctx.sessions.info(&id(GUILD)).await.unwrap().unwrap();
        let worker = info.worker.clone().unwrap();
        bench
            .ctx
            .workers
            .mute_npc(&worker, session.as_str(), "Grimble")
            .await
            .unwrap();

        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(text.contains("NPCs: 🔇 Grimble\n🔊 Mira"), "{text}");
        assert!(
            text.contains("Campaign: Lost Mine") && text.contains("Transcript: 0 entries"),
            "{text}"
        );
        assert!(text.contains("Nothing was said in this session"), "{text}");

        // A worker that does not answer does not sink the recap.
        bench.worker.fail_all(Some(ApiError::Unavailable("restarting".into())));
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(
            text.contains("NPCs: Unavailable: the voice worker did not answer."),
            "{text}"
        );
        bench.worker.fail_all(None);

        end(&bench, GUILD).await;
        let text = deferred(&bench.run(recap_of(None)).await);
        assert!(text.contains("NPCs (campaign roster): • Grimble\n• Mira"), "{text}");
    }

    #[tokio::test]
    async fn voice_recap_refuses_at_once_what_it_cannot_do() {
        let mut bench = Bench::new().await;
        let sent = bench.run(voice_recap_of(None)).await;
        assert!(refusal(&sent).contains("No active session"), "{sent:?}");

        let silent = played(&bench, &[]).await;
        let live = begin(&bench, GUILD, &[]).await;
        let sent = bench.run(voice_recap_of(None)).await;
        assert!(refusal(&sent).contains("No narrator voice is configured"), "{sent:?}");

        engines(&mut bench, None, Some(Arc::new(CountingTts::default())));
        let sent = bench.run(voice_recap_of(None)).await;
        assert!(refusal(&sent).contains("recorded no transcript"), "{sent:?}");
        let sent = bench.run(voice_recap_of(Some(live.as_str()))).await;
        assert!(refusal(&sent).contains("is still running"), "{sent:?}");
        let sent = bench.run(voice_recap_of(Some("unknown"))).await;
        assert!(refusal(&sent).contains("I know no session"), "{sent:?}");
        let _ = silent;

        // Only the live session exists: nothing earlier to recap.
        let mut fresh = Bench::new().await;
        engines(&mut fresh, None, Some(Arc::new(CountingTts::default())));
        begin(&fresh, GUILD, &[]).await;
        let sent = fresh.run(voice_recap_of(None)).await;
        assert!(refusal(&sent).contains("no earlier session"), "{sent:?}");
        assert!(fresh.worker.calls().iter().all(|c| !c.starts_with("PlayAudio")));
    }

    #[tokio::test]
    async fn voice_recap_narrates_at_narrator_priority_and_replays_from_the_cache() {
        let mut bench = Bench::new().await;
        let llm = CountingLlm::answering("Previously, the heroes braved the crypt. Something stirred below.");
        let tts = Arc::new(CountingTts::default());
        engines(&mut bench, Some(llm.clone()), Some(tts.clone()));
        let previous = played(&bench, &[("Pip", "We enter the crypt.", 5)]).await;
        let live = begin(&bench, GUILD, &[("Pip", "Where were we?", 1)]).await;

        let sent = bench.run(voice_recap_of(None)).await;
        let text = deferred(&sent);
        let embed = &embeds(&sent)[0];
        assert_eq!(embed.title, VOICE_RECAP_TITLE);
        assert_eq!(
            embed.description,
            "Previously, the heroes braved the crypt. Something stirred below."
        );
        assert!(
            text.contains(previous.as_str()) && text.contains(&format!("<#{VOICE_CHANNEL}>")),
            "{text}"
        );
        assert!(text.contains("of narration"), "{text}");
        assert_eq!(llm.calls(), 1);
        let narrated = tts.calls();
        assert!(narrated >= 1);
        assert!(tts.voices.lock().unwrap().iter().all(|v| v.as_deref() == Some("bard")));

        {
            let plays = bench.worker.plays();
            assert_eq!(plays.len(), 1);
            let (header, sizes) = (&plays[0].header, &plays[0].chunk_sizes);
            assert_eq!(header.session_id, live.as_str(), "played into the live session");
            assert_eq!(header.priority, AudioPriority::Narrator as i32);
            assert_eq!(header.label, "voice-recap");
            assert_eq!((header.sample_rate, header.channels), (24_000, 1));
            assert!(sizes.len() > 1);
            assert!(sizes[..sizes.len() - 1].iter().all(|&s| s == 4_800), "100 ms chunks");
            assert!(sizes.iter().all(|&s| s <= 4_800 && s % 2 == 0));
        }
        assert!(bench.worker.calls().contains(&format!("PlayAudio({live})")));
        let saved = bench.ctx.store().recap(&previous).await.unwrap().expect("saved");
        assert!(saved
            .audio
            .is_some_and(|a| a.sample_rate == 24_000 && !a.pcm.is_empty()));

        // The replay calls neither the model nor the voice.
        let text = deferred(&bench.run(voice_recap_of(Some(previous.as_str()))).await);
        assert!(text.contains("Saved summary."), "{text}");
        assert_eq!(llm.calls(), 1);
        assert_eq!(tts.calls(), narrated);
        assert_eq!(bench.worker.plays().len(), 2);

        // The text recap reuses the same summary.
        let text = deferred(&bench.run(recap_of(Some(previous.as_str()))).await);
        assert!(
            text.contains("Something stirred below.") && text.contains("Saved summary."),
            "{text}"
        );
        assert_eq!(llm.calls(), 1);
    }

    #[tokio::test]
    async fn without_a_summary_the_transcript_is_narrated_but_not_cached() {
        let mut bench = Bench::new().await;
        let tts = Arc::new(CountingTts::default());
        engines(&mut bench, None, Some(tts.clone()));
        let previous = played(
            &bench,
            &[("Pip", "We enter the crypt.", 5), ("Grimble", "Turn back!", 8)],
        )
        .await;
        begin(&bench, GUILD, &[]).await;

        let sent = bench.run(voice_recap_of(None)).await;
        assert_eq!(
            embeds(&sent)[0].description,
            "Pip: We enter the crypt.\nGrimble: Turn back!"
        );
        assert!(deferred(&sent).contains("No summariser is configured"));
        assert_eq!(tts.calls(), 2, "one request per line");
        assert!(bench.ctx.store().recap(&previous).await.unwrap().is_none());
        deferred(&bench.run(voice_recap_of(None)).await);
        assert_eq!(tts.calls(), 4);
    }

    #[tokio::test]
    async fn a_failing_worker_or_narrator_is_reported_clearly() {
        let mut bench = Bench::new().await;
        let tts = Arc::new(CountingTts::default());
        engines(
            &mut bench,
            Some(CountingLlm::answering("The crypt awaited.")),
            Some(tts),
        );
        played(&bench, &[("Pip", "We enter the crypt.", 5)]).await;
        begin(&bench, GUILD, &[]).await;
        bench
            .worker
            .fail_all(Some(ApiError::Unavailable("connection refused".into())));
        let text = deferred(&bench.run(voice_recap_of(None)).await);
        assert!(text.contains("Voice service unavailable"), "{text}");

        /// A narrator that always fails.
        struct Hoarse;
        #[async_trait]
        impl TextToSpeech for Hoarse {
            fn name(&self) -> &'static str {
                "hoarse"
            }
            async fn synthesize(
                &self,
                _: TtsRequest,
            ) -> Result<glyphoxa_pipeline::providers::PcmStream, ProviderError> {
                Err(ProviderError::Http {
                    provider: "hoarse",
                    status: 500,
                    body: "no voice today".into(),
                })
            }
        }
        // A narrator that fails is named as the culprit.
        let mut bench = Bench::new().await;
        engines(&mut bench, Some(CountingLlm::answering("The crypt awaited.")), None);
        let mut recaps = bench.ctx.recaps.clone();
        recaps.narrator = Some(Arc::new(Hoarse));
        bench.ctx = bench.ctx.clone().with_recaps(recaps);
        played(&bench, &[("Pip", "We enter the crypt.", 5)]).await;
        begin(&bench, GUILD, &[]).await;
        let text = deferred(&bench.run(voice_recap_of(None)).await);
        assert!(
            text.contains("The narrator could not read the recap") && text.contains("no voice today"),
            "{text}"
        );
        assert!(bench.worker.calls().iter().all(|c| !c.starts_with("PlayAudio")));
    }

    #[tokio::test]
    async fn autocomplete_offers_this_guilds_sessions_newest_first() {
        let bench = Bench::new().await;
        let first = played(&bench, &[]).await;
        let second = played(&bench, &[]).await;
        begin(&bench, "101", &[]).await;
        end(&bench, "101").await;
        let live = begin(&bench, GUILD, &[]).await;

        let complete = |sub: &str, partial: &str| {
            Interaction::autocomplete("session", Some(sub), SESSION_OPTION, partial, dm())
                .in_guild(id(GUILD), id(TEXT_CHANNEL))
        };
        let choices = |sent: Vec<Sent>| match sent.as_slice() {
            [Sent::Initial(InitialResponse::Choices(choices))] => choices.clone(),
            other => panic!("{other:?}"),
        };
        let all = choices(bench.run(complete("recap", "")).await);
        let values: Vec<&str> = all.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, [live.as_str(), second.as_str(), first.as_str()]);
        assert!(
            all[1].name.contains("2025-03-10") && all[1].name.contains("Default campaign"),
            "{all:?}"
        );
        assert!(all[1].name.contains("ended · 10 min 00 s"), "{all:?}");
        assert!(all.iter().all(|c| c.name.chars().count() <= MAX_CHOICE_NAME));

        let ended = choices(bench.run(complete("voice-recap", "")).await);
        let values: Vec<&str> = ended.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(values, [second.as_str(), first.as_str()]);

        let by_id = choices(bench.run(complete("recap", &first.as_str()[..8])).await);
        assert_eq!(by_id.len(), 1);
        assert_eq!(by_id[0].value, first.as_str());
    }

    #[test]
    fn long_transcripts_keep_their_opening_and_their_end_for_the_prompt() {
        let lines: Vec<String> = (0..100).map(|i| format!("[00:{i:02}] Pip: line {i}")).collect();
        let (all, shortened) = prompt_transcript(&lines, 10_000);
        assert!(!shortened && all == lines.join("\n"));
        let (short, shortened) = prompt_transcript(&lines, 400);
        assert!(shortened && short.chars().count() <= 440, "{short}");
        assert!(short.starts_with("[00:00] Pip: line 0\n"), "{short}");
        assert!(
            short.ends_with("line 99") && short.contains("lines left out"),
            "{short}"
        );
    }

    #[test]
    fn the_footer_says_which_part_of_the_transcript_is_shown() {
        let shown = |first, last, total| {
            let origin = Origin::Transcript {
                why: "Why.".into(),
                first,
                last,
                total,
            };
            footer(&origin, false)
        };
        assert_eq!(shown(1, 5, 5), "Why.");
        assert_eq!(shown(6, 10, 10), "Why. Showing the latest 5 of 10 entries.");
        assert!(shown(9_701, 10_000, 12_000).contains("Showing entries 9701–10000 of 12000"));
        assert!(footer(&Origin::Saved, true).ends_with("this covers it so far."));
    }

    #[test]
    fn speech_is_grouped_into_whole_sentences_per_line() {
        let text = format!("{}\n\nThe end.", "A short sentence. ".repeat(60));
        let pieces = speech_pieces(&text);
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.chars().count() <= TTS_PIECE_CHARS));
        assert_eq!(pieces.last().map(String::as_str), Some("The end."));
    }
}
