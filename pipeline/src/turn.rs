//! One NPC turn: LLM stream → sentence splitter → TTS stream → mixer line,
//! sentence by sentence, then deliver-then-commit.
//!
//! TTS starts on the first complete sentence while the model keeps writing;
//! audio goes into one mixer line per turn as it arrives. When the line is
//! over, the mixer's report says how much was played, and only the text of
//! that audio counts as said (a cut reply keeps the words actually heard).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::campaign::VoiceSpec;
use crate::playback::{LineMonitor, LineReport, LineWriter, Playback, PlaybackError, Priority};
use crate::providers::{ChatMessage, ChatRequest, LanguageModel, LlmEvent, TextToSpeech, TtsRequest};
use crate::roster::NpcId;
use crate::splitter::{split_sentences, SentenceSplitter};

/// How long to wait for the mixer's report after a turn was cancelled.
const REPORT_GRACE: Duration = Duration::from_millis(250);

/// Where the words of a turn come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnSource {
    /// Ask the language model.
    Llm {
        /// The prompt.
        messages: Vec<ChatMessage>,
        /// Token limit of the reply.
        max_tokens: u32,
    },
    /// Speak exactly this text (puppet line, narration).
    Fixed(String),
}

/// Everything one turn needs to know.
#[derive(Debug, Clone)]
pub struct TurnPlan {
    /// Session-unique turn number.
    pub turn_id: u64,
    /// Who speaks; `None` for the narrator.
    pub npc: Option<NpcId>,
    /// Its voice.
    pub voice: VoiceSpec,
    /// What to say.
    pub source: TurnSource,
    /// Mixer priority.
    pub priority: Priority,
    /// Names whose `Name:` labels the splitter removes.
    pub labels: Vec<String>,
    /// Most sentences spoken (the model is stopped after them).
    pub max_sentences: usize,
    /// When the turn must be over.
    pub deadline: Option<Instant>,
}

/// The providers and mixer a turn uses.
#[derive(Clone)]
pub struct TurnServices {
    /// The language model.
    pub llm: Arc<dyn LanguageModel>,
    /// Speech synthesis.
    pub tts: Arc<dyn TextToSpeech>,
    /// The session's mixer.
    pub playback: Arc<dyn Playback>,
}

/// How a turn's own work ended (the orchestrator knows why it cancelled one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnEnd {
    /// Everything was played.
    Completed,
    /// Cancelled by the orchestrator (barge-in, mute, newer utterance).
    Cancelled,
    /// A provider or the mixer failed.
    Failed,
}

/// Stage times measured inside the turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnStageTimes {
    /// First model token.
    pub llm_first_token: Option<Instant>,
    /// First complete sentence.
    pub first_sentence: Option<Instant>,
    /// First TTS audio.
    pub tts_first_audio: Option<Instant>,
    /// First frame handed to the transport.
    pub first_frame: Option<Instant>,
}

/// What a turn did.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutput {
    /// How its work ended.
    pub end: TurnEnd,
    /// The text that was heard.
    pub heard: String,
    /// Every sentence the turn meant to say.
    pub planned: Vec<String>,
    /// Whether the mixer reported the line as cut.
    pub cut: bool,
    /// How much of the line's audio was played, in milliseconds.
    pub played_ms: f64,
    /// Stage times.
    pub times: TurnStageTimes,
    /// What failed, if anything.
    pub error: Option<String>,
}

/// A sentence's place in the line's audio.
#[derive(Debug, Clone)]
struct Span {
    text: String,
    start_ms: f64,
    end_ms: f64,
}

/// Runs one turn until it is over or `cancel` fires. `on_audible` is called
/// once, when the first frame of the turn's audio went out.
pub async fn run_turn(
    plan: TurnPlan,
    services: TurnServices,
    cancel: CancellationToken,
    on_audible: impl FnOnce(Instant) + Send + 'static,
) -> TurnOutput {
    let mut state = TurnState::default();
    let (sentence_tx, sentence_rx) = mpsc::channel::<(String, Instant)>(16);
    let first_token = Arc::new(OnceLock::new());
    let words = produce_sentences(&plan, services.llm.clone(), sentence_tx, first_token.clone());
    let speech = speak(&plan, &services, sentence_rx, &mut state, on_audible);
    let deadline = plan.deadline;
    let timed_out = async move {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let mut timeout_error = None;
    let outcome = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TurnEnd::Cancelled),
        _ = timed_out => {
            timeout_error = Some("the turn ran past its deadline (a provider did not answer in time)".to_string());
            Err(TurnEnd::Failed)
        }
        (words, spoken) = async { tokio::join!(words, speech) } => {
            match (words, spoken) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(error), _) | (_, Err(error)) => {
                    state.error = Some(error);
                    Err(TurnEnd::Failed)
                }
            }
        }
    };
    if timeout_error.is_some() {
        state.error = timeout_error;
    }
    state.times.llm_first_token = first_token.get().copied();
    state.finish(outcome).await
}

#[derive(Default)]
struct TurnState {
    spans: Vec<Span>,
    planned: Vec<String>,
    written_ms: f64,
    monitor_done: Option<tokio::sync::oneshot::Receiver<LineReport>>,
    first_frame_seen: Option<Arc<std::sync::Mutex<Option<Instant>>>>,
    times: TurnStageTimes,
    error: Option<String>,
}

impl TurnState {
    async fn finish(mut self, outcome: Result<(), TurnEnd>) -> TurnOutput {
        let end = match outcome {
            Ok(()) => TurnEnd::Completed,
            Err(end) => end,
        };
        let report = match self.monitor_done.take() {
            None => None,
            Some(done) if end == TurnEnd::Completed => done.await.ok(),
            Some(done) => tokio::time::timeout(REPORT_GRACE, done).await.ok().and_then(Result::ok),
        };
        if let Some(seen) = &self.first_frame_seen {
            self.times.first_frame = seen.lock().ok().and_then(|t| *t);
        }
        let (heard, cut, played_ms) = match report {
            Some(report) => (heard_text(&self.spans, report), report.cut, report.played_ms),
            None => (String::new(), end == TurnEnd::Cancelled, 0.0),
        };
        let end = if end == TurnEnd::Completed && cut {
            TurnEnd::Cancelled
        } else {
            end
        };
        let error = self.error.or_else(|| {
            (end == TurnEnd::Completed && self.planned.is_empty())
                .then(|| "the reply had no speakable text".to_string())
        });
        let end = if error.is_some() { TurnEnd::Failed } else { end };
        TurnOutput {
            end,
            heard,
            planned: self.planned,
            cut,
            played_ms,
            times: self.times,
            error,
        }
    }
}

/// The text covered by the played part of the line.
fn heard_text(spans: &[Span], report: LineReport) -> String {
    let played = report.played_ms + 1.0; // frame rounding
    let mut heard: Vec<String> = Vec::new();
    for span in spans {
        if span.end_ms <= played || (!report.cut && report.played_ms >= report.written_ms - 1.0) {
            heard.push(span.text.clone());
        } else if span.start_ms < played {
            let fraction = ((played - span.start_ms) / (span.end_ms - span.start_ms).max(1.0)).clamp(0.0, 1.0);
            let words: Vec<&str> = span.text.split_whitespace().collect();
            let count = ((words.len() as f64) * fraction).floor() as usize;
            if count > 0 {
                heard.push(words[..count].join(" "));
            }
            break;
        } else {
            break;
        }
    }
    heard.join(" ")
}

/// How much of an unspeakable reply its error shows.
const RAW_REPLY_SHOWN: usize = 120;

/// Produces the turn's sentences; stamps the first token's time into
/// `first_token` as soon as it arrives, so a cut or failed turn keeps it too.
async fn produce_sentences(
    plan: &TurnPlan,
    llm: Arc<dyn LanguageModel>,
    sentences: mpsc::Sender<(String, Instant)>,
    first_token: Arc<OnceLock<Instant>>,
) -> Result<(), String> {
    let max = plan.max_sentences.max(1);
    match &plan.source {
        TurnSource::Fixed(text) => {
            for sentence in split_sentences(text) {
                if sentences.send((sentence, Instant::now())).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        TurnSource::Llm { messages, max_tokens } => {
            let request = ChatRequest {
                messages: messages.clone(),
                max_tokens: Some(*max_tokens),
                deadline: plan.deadline,
                ..ChatRequest::default()
            };
            let labels: Vec<&str> = plan.labels.iter().map(String::as_str).collect();
            let mut splitter = SentenceSplitter::new(&labels);
            let mut stream = llm.chat(request).await.map_err(|e| e.to_string())?;
            let mut sent = 0;
            // The start of the raw reply, to say what was unspeakable about it.
            let mut raw = String::new();
            while let Some(event) = stream.next().await {
                match event.map_err(|e| e.to_string())? {
                    LlmEvent::Text(text) => {
                        let _ = first_token.set(Instant::now());
                        if raw.len() < RAW_REPLY_SHOWN {
                            raw.push_str(&text);
                        }
                        for sentence in splitter.push(&text) {
                            if sentences.send((sentence, Instant::now())).await.is_err() {
                                return Ok(());
                            }
                            sent += 1;
                            if sent >= max {
                                // The reply budget is spent: stop the model.
                                return Ok(());
                            }
                        }
                    }
                    LlmEvent::Finished(_) => break,
                    LlmEvent::ToolCall(_) | LlmEvent::Usage(_) => {}
                }
            }
            match splitter.finish() {
                Some(rest) => {
                    let _ = sentences.send((rest, Instant::now())).await;
                }
                None if sent == 0 => {
                    let shown: String = raw.trim().chars().take(RAW_REPLY_SHOWN).collect();
                    return Err(format!("the reply had no speakable text (the model wrote {shown:?})"));
                }
                None => {}
            }
            Ok(())
        }
    }
}

/// Synthesizes each sentence and writes it into the turn's mixer line.
async fn speak(
    plan: &TurnPlan,
    services: &TurnServices,
    mut sentences: mpsc::Receiver<(String, Instant)>,
    state: &mut TurnState,
    on_audible: impl FnOnce(Instant) + Send + 'static,
) -> Result<(), String> {
    let mut line: Option<(Box<dyn LineWriter>, u32, u16)> = None;
    let mut on_audible = Some(on_audible);
    let mut result = Ok(());
    'sentences: while let Some((sentence, at)) = sentences.recv().await {
        state.times.first_sentence.get_or_insert(at);
        state.planned.push(sentence.clone());
        let request = TtsRequest {
            text: sentence.clone(),
            voice: plan.voice.clone(),
            deadline: plan.deadline,
        };
        let mut audio = match services.tts.synthesize(request).await {
            Ok(audio) => audio,
            Err(error) => {
                result = Err(error.to_string());
                break;
            }
        };
        let start_ms = state.written_ms;
        while let Some(chunk) = audio.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    result = Err(error.to_string());
                    break 'sentences;
                }
            };
            state.times.tts_first_audio.get_or_insert_with(Instant::now);
            if line.is_none() {
                match services
                    .playback
                    .open_line(plan.npc.as_ref(), plan.priority, chunk.sample_rate, chunk.channels)
                {
                    Ok((writer, monitor)) => {
                        let LineMonitor { first_frame, done } = monitor;
                        state.monitor_done = Some(done);
                        let seen = Arc::new(std::sync::Mutex::new(None));
                        state.first_frame_seen = Some(seen.clone());
                        if let Some(callback) = on_audible.take() {
                            tokio::spawn(async move {
                                if let Ok(at) = first_frame.await {
                                    if let Ok(mut slot) = seen.lock() {
                                        *slot = Some(at);
                                    }
                                    callback(at);
                                }
                            });
                        }
                        line = Some((writer, chunk.sample_rate, chunk.channels));
                    }
                    Err(error) => {
                        result = Err(format!("cannot play the reply: {error}"));
                        break 'sentences;
                    }
                }
            }
            let Some((writer, rate, channels)) = line.as_mut() else {
                break 'sentences;
            };
            if chunk.sample_rate != *rate || chunk.channels != *channels {
                result = Err(format!(
                    "the voice changed format mid-reply ({} Hz × {} → {} Hz × {})",
                    rate, channels, chunk.sample_rate, chunk.channels
                ));
                break 'sentences;
            }
            match writer.write(&chunk.samples).await {
                Ok(()) => state.written_ms += chunk.duration_ms(),
                Err(PlaybackError::Cut) => break 'sentences,
                Err(error) => {
                    result = Err(format!("cannot play the reply: {error}"));
                    break 'sentences;
                }
            }
        }
        state.spans.push(Span {
            text: sentence,
            start_ms,
            end_ms: state.written_ms,
        });
    }
    drop(sentences);
    if let Some((writer, _, _)) = line {
        writer.finish();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans() -> Vec<Span> {
        vec![
            Span {
                text: "Welcome to the inn.".into(),
                start_ms: 0.0,
                end_ms: 1000.0,
            },
            Span {
                text: "Ale is three copper a mug.".into(),
                start_ms: 1000.0,
                end_ms: 2000.0,
            },
        ]
    }

    #[test]
    fn heard_text_follows_the_played_audio() {
        let full = LineReport {
            written_ms: 2000.0,
            played_ms: 2000.0,
            cut: false,
        };
        assert_eq!(
            heard_text(&spans(), full),
            "Welcome to the inn. Ale is three copper a mug."
        );
        let cut_mid_second = LineReport {
            written_ms: 2000.0,
            played_ms: 1500.0,
            cut: true,
        };
        assert_eq!(heard_text(&spans(), cut_mid_second), "Welcome to the inn. Ale is three");
        let cut_early = LineReport {
            written_ms: 2000.0,
            played_ms: 100.0,
            cut: true,
        };
        assert_eq!(heard_text(&spans(), cut_early), "");
        let nothing = LineReport {
            written_ms: 2000.0,
            played_ms: 0.0,
            cut: true,
        };
        assert_eq!(heard_text(&spans(), nothing), "");
    }
}
