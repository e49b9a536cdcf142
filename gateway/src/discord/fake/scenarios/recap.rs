//! `/session recap` and `/session voice-recap`, with a summariser and a
//! narrator that count their calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use glyphoxa_pipeline::providers::{
    ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, PcmChunk, PcmStream, ProviderError, TextToSpeech,
    TtsRequest,
};

use super::{text_of, Table};
use crate::commands::recap::SETTLE_MS;
use crate::commands::RecapEngines;
use crate::discord::fake::fixtures::DEFAULT_USER_ID;
use crate::store::NewTranscriptLine;

/// What the summariser writes.
pub const SUMMARY: &str = "The party greeted the innkeeper and asked about the lost mine.";

/// A summariser that counts its calls and always writes [`SUMMARY`].
#[derive(Debug, Default)]
pub struct CountingSummarizer {
    calls: AtomicUsize,
}

impl CountingSummarizer {
    /// How often it was asked.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LanguageModel for CountingSummarizer {
    fn name(&self) -> &'static str {
        "counting-llm"
    }

    async fn chat(&self, _request: ChatRequest) -> Result<LlmStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut events: Vec<Result<LlmEvent, ProviderError>> = SUMMARY
            .split_inclusive(' ')
            .map(|word| Ok(LlmEvent::Text(word.to_string())))
            .collect();
        events.push(Ok(LlmEvent::Finished(FinishReason::Stop)));
        Ok(futures_util::stream::iter(events).boxed())
    }
}

/// A narrator that counts its calls and speaks a loud square wave, 2 ms of
/// 24 kHz mono per character.
#[derive(Debug, Default)]
pub struct CountingNarrator {
    calls: AtomicUsize,
}

impl CountingNarrator {
    /// How often it was asked.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TextToSpeech for CountingNarrator {
    fn name(&self) -> &'static str {
        "counting-narrator"
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let samples = request.text.chars().count().max(1) * 48;
        let wave: Vec<i16> = (0..samples).map(|i| if i % 24 < 12 { 4000 } else { -4000 }).collect();
        let chunk = PcmChunk {
            samples: wave,
            sample_rate: 24_000,
            channels: 1,
        };
        Ok(futures_util::stream::iter(vec![Ok(chunk)]).boxed())
    }
}

/// The recap engines of the recap scenario: build the table with
/// [`RecapDoubles::engines`], then run [`session_recap_and_voice_recap`]
/// with the same doubles.
#[derive(Debug, Clone, Default)]
pub struct RecapDoubles {
    /// The summariser.
    pub summarizer: Arc<CountingSummarizer>,
    /// The narrator.
    pub narrator: Arc<CountingNarrator>,
}

impl RecapDoubles {
    /// The engines the bot gets (narrator voice `bard`).
    pub fn engines(&self) -> RecapEngines {
        RecapEngines {
            summarizer: Some(Arc::clone(&self.summarizer) as Arc<dyn LanguageModel>),
            narrator: Some(Arc::clone(&self.narrator) as Arc<dyn TextToSpeech>),
            narrator_voice: "bard".into(),
        }
    }
}

/// A transcript line of the default user, 1.5 s long.
pub fn player_line(text: &str, start_ms: i64) -> NewTranscriptLine {
    NewTranscriptLine {
        speaker_id: DEFAULT_USER_ID.into(),
        speaker_name: "player".into(),
        npc_id: None,
        text: text.into(),
        start_ms,
        end_ms: start_ms + 1500,
        outcome: None,
        turn_id: None,
        puppet: false,
    }
}

/// Recap of an ended session (embed with facts and the summary), voice
/// recap refused without a live session, voice recap in the next session
/// (the saved summary, narrated into the voice channel), replayed from the
/// cache (neither engine asked again, the same narration), and a recap of
/// the live session so far. The table's bot must use `doubles.engines()`.
pub async fn session_recap_and_voice_recap(table: &dyn Table, doubles: &RecapDoubles) {
    let store = table.store();
    let text = table.text(table.command("session", Some("recap"), vec![]), 1).await;
    assert!(text.contains("nothing to recap"), "{text}");

    // A first session with a transcript.
    table.text(table.command("session", Some("start"), vec![]), 2).await;
    let first_session = table.live_session().await;
    let now = store.now_ms();
    for (text, at) in [("Hello, innkeeper!", 1_000), ("We seek the lost mine.", 5_000)] {
        store
            .append_transcript(&first_session, &player_line(text, now + at))
            .await
            .expect("the store answers");
    }
    let clock_moves = table.advance_clock(Duration::from_secs(60));
    table.text(table.command("session", Some("stop"), vec![]), 2).await;
    // A recap is saved (and its audio cached) only once its session has
    // settled: ended for a while, so late transcript lines cannot arrive.
    let settle = Duration::from_millis(SETTLE_MS.unsigned_abs()) + Duration::from_secs(1);
    if !table.advance_clock(settle) {
        tokio::time::sleep(settle).await;
    }
    let campaign = store
        .session(&first_session)
        .await
        .expect("the store answers")
        .and_then(|session| session.campaign_id)
        .expect("the session's campaign");
    let campaign = store
        .campaign(&campaign)
        .await
        .expect("the store answers")
        .expect("the campaign")
        .info
        .name;

    // /session recap: the embed with the facts and the summary of the transcript.
    let replies = table.bodies(table.command("session", Some("recap"), vec![]), 2).await;
    assert_eq!(replies[0]["type"], 5);
    let recap = &replies[1];
    assert_eq!(recap["embeds"][0]["title"], "Session Recap", "{recap}");
    let text = text_of(recap);
    let mut wanted = vec![
        SUMMARY,
        "Summarised by counting-llm",
        "⏹️ ended",
        "2 entries",
        campaign.as_str(),
        first_session.as_str(),
    ];
    if clock_moves {
        wanted.push("1 min 00 s");
    }
    for wanted in wanted {
        assert!(text.contains(wanted), "{wanted} missing in {text}");
    }

    // The voice recap needs a session to speak into.
    let text = table
        .text(table.command("session", Some("voice-recap"), vec![]), 1)
        .await;
    assert!(text.contains("No active session"), "{text}");

    // In the next session: the saved summary, narrated into the channel.
    table.text(table.command("session", Some("start"), vec![]), 2).await;
    let second_session = table.live_session().await;
    let replies = table
        .bodies(table.command("session", Some("voice-recap"), vec![]), 2)
        .await;
    assert_eq!(replies[0]["type"], 5);
    let embed = &replies[1]["embeds"][0];
    assert_eq!(embed["title"], "Previously, on your campaign…", "{embed}");
    let text = text_of(&replies[1]);
    assert!(
        text.contains(SUMMARY) && text.contains(first_session.as_str()),
        "the saved summary: {text}"
    );
    assert_eq!(doubles.summarizer.calls(), 1, "the saved recap");
    let heard = table.narrations(&second_session, 1).await;
    assert!(
        heard[0] >= Duration::from_millis(100),
        "the narration is heard: {heard:?}"
    );
    let narrated = doubles.narrator.calls();
    assert!(narrated >= 1);

    // Replayed: the cached text and audio, neither engine is asked again.
    let text = table
        .text(table.command("session", Some("voice-recap"), vec![]), 2)
        .await;
    assert!(text.contains("Previously, on your campaign"), "{text}");
    let heard = table.narrations(&second_session, 2).await;
    assert_eq!(doubles.narrator.calls(), narrated, "cached audio");
    assert_eq!(doubles.summarizer.calls(), 1, "cached text");
    let difference = heard[0].abs_diff(heard[1]);
    assert!(
        difference <= Duration::from_millis(40),
        "the same narration again: {heard:?}"
    );

    // /session recap during the live session recaps it (so far).
    let text = table.text(table.command("session", Some("recap"), vec![]), 2).await;
    assert!(
        text.contains(second_session.as_str()) && text.contains("still running"),
        "{text}"
    );
}
