//! The offline engines with their default models (Whisper tiny.en on
//! candle, SmolLM2-135M-Instruct on llama.cpp, espeak-ng), on this machine:
//!
//! 1. load time and resident memory with both models loaded (budget ≤ 600 MB);
//! 2. transcription real-time factor for utterances of 2 to 40 seconds;
//! 3. language model: time to first token (cold and with the conversation's
//!    prompt prefix cached), prompt reading and generation speed;
//! 4. the offline turn: end of a spoken one-sentence question → transcript →
//!    first sentence of the reply → first PCM chunk from espeak-ng
//!    (budget ≤ 2.0 s p50, stretch 1.5 s). The mixer and VAD hangover of a
//!    live session come on top; the replay harness measures those.
//!
//! Needs the models (`scripts/models.sh`) and espeak-ng; says what is
//! missing and exits otherwise. Run with `cargo bench --bench local_engines`.
#![cfg_attr(test, allow(dead_code))]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use glyphoxa_pipeline::campaign::VoiceSpec;
use glyphoxa_pipeline::providers::espeak::EspeakTts;
use glyphoxa_pipeline::providers::local::models::{self, SMOLLM2_135M, WHISPER_TINY_EN};
use glyphoxa_pipeline::providers::{
    CallPolicy, ChatMessage, ChatRequest, LanguageModel, LlmEvent, LocalLlm, LocalLlmConfig, LocalWhisper,
    LocalWhisperConfig, NoObserver, Role, SpeechToText, SttRequest, TextToSpeech, TtsRequest,
};
use glyphoxa_pipeline::splitter::SentenceSplitter;

const TURN_BUDGET: Duration = Duration::from_millis(2_000);
const TURN_STRETCH: Duration = Duration::from_millis(1_500);
const MEMORY_BUDGET_MB: f64 = 600.0;

const SYSTEM: &str = "You are Grimble, a grumpy dwarven innkeeper in the town of Saltmarsh. You are speaking aloud in a voice chat. Answer in at most two short sentences of plain speech, in the first person.";

const QUESTIONS: [&str; 8] = [
    "Grimble, how much is a room for the night?",
    "What do you serve for dinner tonight?",
    "Have you seen any strangers in town lately?",
    "Where can I find the blacksmith?",
    "Is the road to the harbour safe at night?",
    "Who owns the old mill by the river?",
    "Can you tell me about the lighthouse?",
    "Why is everyone in the tavern so quiet?",
];

fn resident_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `text` spoken by espeak-ng as 16 kHz mono (linear resampling is enough for timing).
fn speech(text: &str) -> Option<Vec<i16>> {
    let out = Command::new("espeak-ng")
        .args(["--stdout", "-v", "en-us", text])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // espeak-ng writes a 44-byte WAV header, 22050 Hz mono s16le.
    let data = out.stdout.get(44..)?;
    let input: Vec<i16> = data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let ratio = 22_050.0 / 16_000.0;
    let len = (input.len() as f64 / ratio) as usize;
    let mut pcm: Vec<i16> = (0..len)
        .map(|n| {
            let t = n as f64 * ratio;
            let i = t as usize;
            let f = t - i as f64;
            let a = input[i] as f64;
            let b = *input.get(i + 1).unwrap_or(&input[i]) as f64;
            (a + (b - a) * f) as i16
        })
        .collect();
    pcm.extend(vec![0i16; 4_000]);
    Some(pcm)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn percentile(mut values: Vec<Duration>, p: f64) -> Duration {
    values.sort();
    let at = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[at]
}

async fn transcribe(stt: &LocalWhisper, pcm: &[i16]) -> (String, Duration) {
    let started = Instant::now();
    let session = stt.open(SttRequest::default()).await.expect("session");
    let text = session.transcribe(pcm).await.expect("transcript").text;
    (text, started.elapsed())
}

/// Time to first token, tokens generated and generation time after the first token.
async fn generate(model: &LocalLlm, messages: Vec<ChatMessage>, max_tokens: u32) -> (Duration, u32, Duration, String) {
    let started = Instant::now();
    let request = ChatRequest {
        messages,
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..ChatRequest::default()
    };
    let mut stream = model.chat(request).await.expect("chat");
    let mut first = None;
    let mut text = String::new();
    let mut tokens = 0;
    while let Some(event) = stream.next().await {
        match event.expect("event") {
            LlmEvent::Text(t) => {
                first.get_or_insert(started.elapsed());
                text.push_str(&t);
            }
            LlmEvent::Usage(u) => tokens = u.completion_tokens,
            _ => {}
        }
    }
    let first = first.unwrap_or(started.elapsed());
    (first, tokens, started.elapsed() - first, text)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = match models::default_dir() {
        Ok(dir) => dir,
        Err(e) => return println!("local_engines: skipped: {e}"),
    };
    for package in [&WHISPER_TINY_EN, &SMOLLM2_135M] {
        if let Err(e) = models::check(&dir, package) {
            return println!("local_engines: skipped: {e}");
        }
    }
    if speech("test").is_none() {
        return println!("local_engines: skipped: espeak-ng is not installed");
    }
    let policy = CallPolicy {
        total_timeout: Duration::from_secs(120),
        ..CallPolicy::default()
    };
    let observer = Arc::new(NoObserver);
    println!("== local engines (2-core budgets from issue 9) ==");
    let base_mb = resident_mb();

    let started = Instant::now();
    let stt_config = LocalWhisperConfig::installed(&dir, &WHISPER_TINY_EN).expect("whisper config");
    let stt = LocalWhisper::load(&stt_config, policy.clone(), observer.clone()).expect("whisper");
    let stt_load = started.elapsed();
    let started = Instant::now();
    let llm_config = LocalLlmConfig::installed(&dir, &SMOLLM2_135M).expect("llm config");
    let llm = LocalLlm::load(&llm_config, policy.clone(), observer.clone()).expect("llm");
    let llm_load = started.elapsed();
    println!("load: whisper {stt_load:.2?}, llm {llm_load:.2?}");
    println!("  {}", stt.describe());
    println!("  {}", llm.describe());

    // -- transcription
    println!("-- transcription (Whisper tiny.en, candle, trimmed encoder window) --");
    let texts = [
        "Roll for initiative.",
        "Grimble, how much is a room for the night?",
        "We need to find the dragon before the village burns down tonight, so saddle the horses and bring the torches.",
        "The innkeeper poured a mug of ale for the tired travellers. Roll a perception check before you open the old wooden door. We need to find the dragon before the village burns down tonight, so saddle the horses and bring the torches.",
    ];
    let mut inputs: Vec<Vec<i16>> = texts.iter().filter_map(|t| speech(t)).collect();
    // A long one (> 30 s) to show chunking.
    if let Some(long) = speech(&texts[3].repeat(3)) {
        inputs.push(long);
    }
    let _ = transcribe(&stt, &inputs[0]).await; // warm-up
    for pcm in &inputs {
        let seconds = pcm.len() as f64 / 16_000.0;
        let runs = if seconds > 20.0 { 1 } else { 3 };
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(transcribe(&stt, pcm).await.1);
        }
        let t = median(times);
        println!(
            "  {seconds:5.1} s of speech: {:6.3} s  RTF {:.3}",
            t.as_secs_f64(),
            t.as_secs_f64() / seconds
        );
    }
    println!("  (measured before this engine: 3.3 s clip in ~0.85 s, RTF ~0.26, with the full 30 s window)");

    // -- language model
    println!("-- language model (SmolLM2-135M Q4_1, llama.cpp) --");
    let story = vec![
        ChatMessage::new(Role::System, SYSTEM),
        ChatMessage::new(Role::User, "Tell me a very long story about the history of your inn."),
    ];
    let _ = generate(&llm, story.clone(), 8).await; // warm-up
                                                    // A long NPC prompt (persona and campaign knowledge) that shares nothing with the slots' contents.
    let lore = "The harbour town of Saltmarsh lives from fishing and smuggling; the town council meets in the old lighthouse, and the smugglers hide their goods in the haunted house on the cliff. ";
    let cold = vec![
        ChatMessage::new(
            Role::System,
            format!(
                "You are Mirela, an elven scout who knows the coast well. What you know: {}",
                lore.repeat(12)
            ),
        ),
        ChatMessage::new(Role::User, "Where do the smugglers hide their goods?"),
    ];
    let before = llm.counters();
    let (ttft_cold, _, _, answer) = generate(&llm, cold.clone(), 40).await;
    let after = llm.counters();
    let read_cold = (after.prompt_tokens - before.prompt_tokens) - (after.reused_tokens - before.reused_tokens);
    // The same conversation one turn later: only the new turn is read.
    let mut next = cold;
    next.push(ChatMessage::new(Role::Assistant, answer.trim()));
    next.push(ChatMessage::new(Role::User, "And who meets in the lighthouse?"));
    let before = llm.counters();
    let (ttft_next, _, _, _) = generate(&llm, next, 1).await;
    let after = llm.counters();
    let read_next = (after.prompt_tokens - before.prompt_tokens) - (after.reused_tokens - before.reused_tokens);
    let total_next = after.prompt_tokens - before.prompt_tokens;
    let (_, tokens, gen_time, _) = generate(&llm, story.clone(), 160).await;
    let per_second = if gen_time.is_zero() {
        f64::NAN
    } else {
        tokens.saturating_sub(1) as f64 / gen_time.as_secs_f64()
    };
    println!(
        "  time to first token, cold prompt ({read_cold} tokens read): {:.0} ms  ≈ {:.0} prompt tokens/s",
        ttft_cold.as_secs_f64() * 1e3,
        read_cold as f64 / ttft_cold.as_secs_f64()
    );
    println!(
        "  time to first token, next turn of that conversation ({read_next} of {total_next} tokens read, the rest cached): {:.0} ms",
        ttft_next.as_secs_f64() * 1e3
    );
    println!("  generation: {tokens} tokens at {per_second:.0} tokens/s");
    println!("  (measured before this engine: ~500 tokens/s prompt, ~165 tokens/s generation)");

    let rss = resident_mb();
    println!(
        "-- resident memory with both models loaded and used: {rss:.0} MB (process before loading: {base_mb:.0} MB) — budget ≤ {MEMORY_BUDGET_MB:.0} MB: {}",
        if rss <= MEMORY_BUDGET_MB { "OK" } else { "OVER" }
    );

    // -- the offline turn
    println!("-- offline turn: speech end → transcript → first reply sentence → first espeak-ng PCM --");
    let tts = EspeakTts::new("espeak-ng", "en-us", policy.clone(), observer.clone());
    let mut conversation = vec![ChatMessage::new(Role::System, SYSTEM)];
    let mut turns = Vec::new();
    let mut parts = Vec::new();
    for question in QUESTIONS {
        let pcm = speech(question).expect("speech");
        let speech_end = Instant::now();
        let (heard, stt_took) = transcribe(&stt, &pcm).await;
        conversation.push(ChatMessage::new(Role::User, heard.clone()));
        let llm_started = Instant::now();
        let mut stream = llm
            .chat(ChatRequest {
                messages: conversation.clone(),
                max_tokens: Some(80),
                ..ChatRequest::default()
            })
            .await
            .expect("chat");
        // Read up to the first complete sentence; the rest of the reply keeps
        // coming (and sharing the CPU) while espeak-ng speaks that sentence, as in a turn.
        let mut splitter = SentenceSplitter::new(&["Grimble"]);
        let mut first_sentence = None;
        let mut reply = String::new();
        while let Some(event) = stream.next().await {
            if let LlmEvent::Text(t) = event.expect("event") {
                reply.push_str(&t);
                if let Some(sentence) = splitter.push(&t).into_iter().next() {
                    first_sentence = Some(sentence);
                    break;
                }
            }
        }
        let sentence_at = llm_started.elapsed();
        let rest = tokio::spawn(async move {
            let mut rest = String::new();
            while let Some(Ok(event)) = stream.next().await {
                if let LlmEvent::Text(t) = event {
                    rest.push_str(&t);
                }
            }
            rest
        });
        let sentence = first_sentence
            .or_else(|| splitter.finish())
            .unwrap_or_else(|| "Hm.".into());
        let mut audio = tts
            .synthesize(TtsRequest {
                text: sentence.clone(),
                voice: VoiceSpec::default(),
                deadline: None,
            })
            .await
            .expect("tts");
        let _first_chunk = audio.next().await;
        let turn = speech_end.elapsed();
        drop(audio);
        reply.push_str(&rest.await.unwrap_or_default());
        conversation.push(ChatMessage::new(Role::Assistant, reply.trim()));
        println!(
            "  {:5.0} ms  (stt {:4.0}, llm to first sentence {:4.0}, tts {:3.0})  {heard:?} → {sentence:?}",
            turn.as_secs_f64() * 1e3,
            stt_took.as_secs_f64() * 1e3,
            sentence_at.as_secs_f64() * 1e3,
            (turn - stt_took - sentence_at).as_secs_f64() * 1e3
        );
        turns.push(turn);
        parts.push((stt_took, sentence_at));
    }
    let p50 = percentile(turns.clone(), 0.5);
    let p90 = percentile(turns, 0.9);
    println!(
        "  offline turn p50 {:.0} ms, p90 {:.0} ms — budget ≤ {:.0} ms p50: {} (stretch {:.0} ms: {})",
        p50.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        TURN_BUDGET.as_secs_f64() * 1e3,
        if p50 <= TURN_BUDGET { "OK" } else { "OVER" },
        TURN_STRETCH.as_secs_f64() * 1e3,
        if p50 <= TURN_STRETCH { "OK" } else { "not yet" }
    );
    let counters = llm.counters();
    println!(
        "  KV cache: {} of {} prompt tokens reused over {} requests",
        counters.reused_tokens, counters.prompt_tokens, counters.requests
    );
}
