//! The offline engines with their real models: Whisper tiny.en on speech
//! generated with espeak-ng (and on the recorded clips in
//! `../shared/voice-clips` when that folder exists), SmolLM2 through
//! llama.cpp for streaming, stop sequences, budgets and cancellation.
//!
//! The models come from `scripts/models.sh` (run by `make setup`). A test
//! whose model is not installed says so and passes without running, unless
//! `GLYPHOXA_REQUIRE_MODELS=1` (set by CI), where a missing default model
//! fails it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use glyphoxa_pipeline::providers::local::models::{self, ModelPackage, SMOLLM2_135M, WHISPER_TINY_EN};
use glyphoxa_pipeline::providers::local::LlmCounters;
use glyphoxa_pipeline::providers::*;

// ---------------------------------------------------------------- helpers

/// The models directory when `package` is installed there; otherwise prints
/// why the test is skipped (or fails, when CI requires the default models).
fn installed(package: &'static ModelPackage) -> Option<PathBuf> {
    let found = models::default_dir().and_then(|dir| models::check(&dir, package).map(|()| dir));
    match found {
        Ok(dir) => Some(dir),
        Err(e) if package.default && std::env::var("GLYPHOXA_REQUIRE_MODELS").is_ok_and(|v| v == "1") => {
            panic!("GLYPHOXA_REQUIRE_MODELS=1 but {e}")
        }
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

fn policy() -> CallPolicy {
    CallPolicy {
        // Unoptimized builds of the tensor crates are slow; the deadline is not what is tested here.
        total_timeout: Duration::from_secs(900),
        ..CallPolicy::default()
    }
}

/// Whisper tests share one loaded model and its worker pool: they take turns,
/// so one test's timing does not include another's transcriptions.
static WHISPER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn whisper(dir: &Path, log: &Arc<CallLog>) -> LocalWhisper {
    let config = LocalWhisperConfig::installed(dir, &WHISPER_TINY_EN).unwrap();
    LocalWhisper::load(&config, policy(), log.clone()).unwrap()
}

/// Each test gets its own engine (a distinct seed makes a distinct engine),
/// so its counters and queue are its own when tests run in parallel.
fn llm(dir: &Path, log: &Arc<CallLog>, seed: u32) -> LocalLlm {
    let mut config = LocalLlmConfig::installed(dir, &SMOLLM2_135M).unwrap();
    config.seed = seed;
    LocalLlm::load(&config, policy(), log.clone()).unwrap()
}

/// Reads a 16-bit PCM WAV file as mono samples and its rate. Unknown chunks
/// are skipped, and a streamed file whose data size is unknown (espeak-ng's
/// `--stdout` writes 0xFFFFFFFF) runs to the end.
fn read_wav(bytes: &[u8]) -> (Vec<i16>, u32) {
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV file"
    );
    let (mut at, mut rate, mut channels) = (12, 0u32, 1usize);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = at + 8;
        if id == b"fmt " {
            channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]) as usize;
            rate = u32::from_le_bytes(bytes[body + 4..body + 8].try_into().unwrap());
            assert_eq!(
                u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]),
                16,
                "16-bit PCM expected"
            );
        } else if id == b"data" {
            let end = body.saturating_add(size).min(bytes.len());
            let samples: Vec<i16> = bytes[body..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            return (samples.chunks(channels.max(1)).map(|f| f[0]).collect(), rate);
        }
        at = body + size + (size & 1);
    }
    panic!("no data chunk");
}

/// Windowed-sinc resampling to 16 kHz.
fn resample_to_16k(input: &[i16], rate: u32) -> Vec<i16> {
    if rate == 16_000 {
        return input.to_vec();
    }
    let ratio = 16_000.0 / rate as f64;
    let cutoff = ratio.min(1.0) * 0.95;
    let half = 16isize;
    let out_len = (input.len() as f64 * ratio) as usize;
    (0..out_len)
        .map(|n| {
            let t = n as f64 / ratio;
            let centre = t.floor() as isize;
            let mut acc = 0.0;
            for k in centre - half..=centre + half {
                if k < 0 || k as usize >= input.len() {
                    continue;
                }
                let x = t - k as f64;
                let sinc = if x.abs() < 1e-9 {
                    cutoff
                } else {
                    (std::f64::consts::PI * cutoff * x).sin() / (std::f64::consts::PI * x)
                };
                let window = 0.5 + 0.5 * (std::f64::consts::PI * x / (half as f64 + 1.0)).cos();
                acc += input[k as usize] as f64 * sinc * window;
            }
            acc.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// `text` spoken by espeak-ng, at 16 kHz, with a little silence around it.
fn espeak(text: &str, voice: &str) -> Option<Vec<i16>> {
    let output = match Command::new("espeak-ng").args(["--stdout", "-v", voice, text]).output() {
        Ok(out) if out.status.success() => out.stdout,
        _ => {
            println!("skipped: espeak-ng is not installed (scripts/setup.sh installs it)");
            return None;
        }
    };
    let (samples, rate) = read_wav(&output);
    let mut pcm = vec![0i16; 3_200];
    pcm.extend(resample_to_16k(&samples, rate));
    pcm.extend(vec![0i16; 8_000]);
    Some(pcm)
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word error rate of `hypothesis` against `reference`.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            row.push(substitution.min(previous[j + 1] + 1).min(row[j] + 1));
        }
        previous = row;
    }
    previous[h.len()] as f64 / r.len().max(1) as f64
}

async fn transcribe(stt: &LocalWhisper, pcm: &[i16], keywords: &[&str]) -> (Transcript, Duration) {
    let request = SttRequest {
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        ..SttRequest::default()
    };
    let started = Instant::now();
    let session = stt.open(request).await.unwrap();
    let transcript = session.transcribe(pcm).await.unwrap();
    (transcript, started.elapsed())
}

// ---------------------------------------------------------------- speech to text

const SENTENCES: [&str; 4] = [
    "Roll a perception check before you open the old wooden door.",
    "We need to find the dragon before the village burns down tonight.",
    "The dragon is sleeping in the cave under the mountain.",
    "The wizard gave us a map of the northern forest.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_transcribes_generated_speech() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let log = Arc::new(CallLog::default());
    let stt = whisper(&dir, &log);
    println!("{}", stt.describe());
    let mut total = 0.0;
    for sentence in SENTENCES {
        let Some(pcm) = espeak(sentence, "en-us") else { return };
        let (transcript, took) = transcribe(&stt, &pcm, &[]).await;
        let error = wer(sentence, &transcript.text);
        let audio = pcm.len() as f64 / 16_000.0;
        println!(
            "espeak {audio:.1} s in {:.2} s (RTF {:.2}), WER {error:.2}: {:?} (confidence {:?})",
            took.as_secs_f64(),
            took.as_secs_f64() / audio,
            transcript.text,
            transcript.confidence
        );
        assert!(error <= 0.35, "{sentence:?} → {:?} (WER {error:.2})", transcript.text);
        total += error;
    }
    println!("mean WER on espeak-ng speech: {:.3}", total / SENTENCES.len() as f64);
    let records = log.records();
    assert_eq!(records.len(), SENTENCES.len());
    assert!(records
        .iter()
        .all(|r| r.outcome == CallOutcome::Ok && r.stage == Stage::Stt));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_keeps_long_utterances_whole() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let stt = whisper(&dir, &Arc::new(CallLog::default()));
    // About 40 seconds: more than one 30-second window.
    let text = [
        SENTENCES.join(" ").as_str(),
        "The blacksmith sells swords and shields near the market square.",
        "A cold wind blows from the sea and the ships stay in the harbour.",
        "The guards at the gate want to see your papers before you enter the city.",
        "Three goblins are hiding behind the trees next to the road.",
        "The old priest knows the way to the ruined temple in the hills.",
        "Everyone at the table should roll for initiative now.",
    ]
    .join(" ");
    let Some(pcm) = espeak(&text, "en-us") else { return };
    assert!(pcm.len() > 31 * 16_000, "{} samples", pcm.len());
    let (transcript, took) = transcribe(&stt, &pcm, &[]).await;
    let error = wer(&text, &transcript.text);
    println!(
        "{:.1} s utterance in {:.2} s, WER {error:.2}: {:?}",
        pcm.len() as f64 / 16_000.0,
        took.as_secs_f64(),
        transcript.text
    );
    assert!(error <= 0.35, "WER {error:.2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_transcribe_at_once() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let stt = whisper(&dir, &Arc::new(CallLog::default()));
    let (Some(a), Some(b)) = (espeak(SENTENCES[0], "en-us"), espeak(SENTENCES[1], "en-us")) else {
        return;
    };
    let (alone, alone_took) = transcribe(&stt, &a, &[]).await;
    let started = Instant::now();
    let ((ta, da), (tb, db)) = tokio::join!(transcribe(&stt, &a, &[]), transcribe(&stt, &b, &[]));
    let both = started.elapsed();
    println!(
        "alone {:.2} s; together {:.2} s and {:.2} s (wall {:.2} s)",
        alone_took.as_secs_f64(),
        da.as_secs_f64(),
        db.as_secs_f64(),
        both.as_secs_f64()
    );
    assert_eq!(
        ta.text, alone.text,
        "the same audio gives the same text when sharing the engine"
    );
    assert!(wer(SENTENCES[1], &tb.text) <= 0.35, "{:?}", tb.text);
    // Neither waits for more than the other's whole transcription (plus slack).
    assert!(
        both < alone_took * 4 + Duration::from_secs(2),
        "{both:?} vs {alone_took:?}"
    );
}

/// One runtime thread: were inference on it, the timer could not fire until the transcription ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_async_runtime_stays_responsive_during_inference() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let stt = whisper(&dir, &Arc::new(CallLog::default()));
    let Some(pcm) = espeak(SENTENCES[2], "en-us") else {
        return;
    };
    let started = Instant::now();
    let transcription = tokio::spawn(async move { transcribe(&stt, &pcm, &[]).await });
    // A timer on the same runtime keeps firing on time while Whisper works.
    let mut worst = Duration::ZERO;
    while !transcription.is_finished() {
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        worst = worst.max(asked.elapsed());
    }
    let took = started.elapsed();
    transcription.await.unwrap();
    println!("worst 10 ms timer during a {took:?} transcription: {worst:?}");
    assert!(
        worst < (took / 2).max(Duration::from_millis(200)),
        "{worst:?} of {took:?}"
    );
}

#[tokio::test]
async fn empty_audio_and_silence() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let stt = whisper(&dir, &Arc::new(CallLog::default()));
    let session = stt.open(SttRequest::default()).await.unwrap();
    let err = session.transcribe(&[]).await.unwrap_err();
    assert!(err.to_string().contains("empty utterance"), "{err}");
    let (silence, _) = transcribe(&stt, &vec![0i16; 16_000 * 2], &[]).await;
    println!("silence → {:?}", silence.text);
    assert!(words(&silence.text).len() <= 2, "{:?}", silence.text);
}

#[tokio::test]
async fn damaged_models_are_clear_errors() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("whisper");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(WHISPER_TINY_EN.file(&dir, name), copy.join(name)).unwrap();
    }
    let original = std::fs::read(WHISPER_TINY_EN.file(&dir, "model.bin")).unwrap();
    let log: Arc<dyn CallObserver> = Arc::new(NoObserver);

    // Truncated weights.
    std::fs::write(copy.join("model.bin"), &original[..original.len() / 2]).unwrap();
    let err = LocalWhisper::load(&LocalWhisperConfig::new(&copy), policy(), log.clone()).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // A tensor with the wrong shape (same size, dimensions swapped).
    let mut bytes = original.clone();
    let name = b"encoder/layer_0/ffn/linear_0/weight";
    let rank_at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 1;
    assert_eq!(bytes[rank_at], 2);
    let (rows, cols) = (rank_at + 1, rank_at + 5);
    let first: [u8; 4] = bytes[rows..rows + 4].try_into().unwrap();
    let second: [u8; 4] = bytes[cols..cols + 4].try_into().unwrap();
    bytes[rows..rows + 4].copy_from_slice(&second);
    bytes[cols..cols + 4].copy_from_slice(&first);
    std::fs::write(copy.join("model.bin"), &bytes).unwrap();
    let err = LocalWhisper::load(&LocalWhisperConfig::new(&copy), policy(), log.clone()).unwrap_err();
    println!("{err}");
    assert!(
        err.to_string()
            .contains("shape mismatch for model.encoder.layers.0.fc1.weight"),
        "{err}"
    );

    // Not a model at all, and a missing file.
    std::fs::write(copy.join("model.bin"), b"PK\x03\x04 not a model").unwrap();
    let err = LocalWhisper::load(&LocalWhisperConfig::new(&copy), policy(), log.clone()).unwrap_err();
    assert!(
        err.to_string().contains("not a usable CTranslate2 Whisper model"),
        "{err}"
    );
    std::fs::remove_file(copy.join("model.bin")).unwrap();
    let err = LocalWhisper::load(&LocalWhisperConfig::new(&copy), policy(), log.clone()).unwrap_err();
    assert!(err.to_string().contains("glyphoxa models install"), "{err}");

    // The store notices a damaged installed file and names the fix.
    let store = scratch.path().join("models");
    let installed_copy = WHISPER_TINY_EN.dir(&store);
    std::fs::create_dir_all(&installed_copy).unwrap();
    for file in WHISPER_TINY_EN.files {
        std::fs::copy(WHISPER_TINY_EN.file(&dir, file.name), installed_copy.join(file.name)).unwrap();
    }
    models::check(&store, &WHISPER_TINY_EN).unwrap();
    let mut flipped = original;
    flipped[1_000_000] ^= 0x55;
    std::fs::write(installed_copy.join("model.bin"), &flipped).unwrap();
    let err = models::check(&store, &WHISPER_TINY_EN).unwrap_err().to_string();
    assert!(err.contains("is damaged") && err.contains("sha256"), "{err}");
    assert!(err.contains("glyphoxa models install"), "{err}");

    // A GGUF that is not one.
    let fake = scratch.path().join("broken.gguf");
    std::fs::write(&fake, b"GGUF\x03\x00\x00\x00truncated").unwrap();
    let err = LocalLlm::load(&LocalLlmConfig::new(&fake), policy(), log.clone()).unwrap_err();
    assert!(err.to_string().contains("cannot load this GGUF"), "{err}");
    std::fs::write(&fake, b"hello").unwrap();
    let err = LocalLlm::load(&LocalLlmConfig::new(&fake), policy(), log).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

/// The English recorded clips and what is said in them.
const CLIPS: [(&str, &str); 5] = [
    ("hello-test", "Glyphoxa, roll a perception check for me."),
    ("bart-test", "Bart, what's the special tonight?"),
    (
        "two-utterance-test",
        "Glyphoxa, roll a perception check for me. Alright, roll initiative now.",
    ),
    (
        "ttrpg-intro-en",
        "Hey everyone, so let's start our session for today. Okay, Glyphoxa Butler, can you give us a quick intro what happened last session and what did we do, where did we leave the session? What's the current status?",
    ),
    ("silence-test", ""),
];

fn clips_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GLYPHOXA_VOICE_CLIPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/voice-clips"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: no voice clips at {} (evaluation data, not part of the repository)",
            dir.display()
        );
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_on_recorded_clips() {
    let Some(dir) = installed(&WHISPER_TINY_EN) else { return };
    let _turn = WHISPER_TURN.lock().await;
    let Some(clips) = clips_dir() else { return };
    let stt = whisper(&dir, &Arc::new(CallLog::default()));
    let mut scored = Vec::new();
    for (clip, script) in CLIPS {
        let path = clips.join(clip).join("audio.wav");
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{clip}: missing, skipped");
            continue;
        };
        let (samples, rate) = read_wav(&bytes);
        let mut pcm = resample_to_16k(&samples, rate);
        pcm.extend(vec![0i16; 10_240]); // the long clips end mid-speech
        let keywords = ["Glyphoxa", "Bart"];
        let (transcript, took) = transcribe(&stt, &pcm, &keywords).await;
        let seconds = pcm.len() as f64 / 16_000.0;
        if script.is_empty() {
            println!(
                "{clip}: {seconds:.1} s in {:.2} s → {:?}",
                took.as_secs_f64(),
                transcript.text
            );
            assert!(words(&transcript.text).len() <= 2, "silence → {:?}", transcript.text);
            continue;
        }
        let error = wer(script, &transcript.text);
        println!(
            "{clip}: {seconds:.1} s in {:.2} s (RTF {:.2}), WER {error:.2}: {:?}",
            took.as_secs_f64(),
            took.as_secs_f64() / seconds,
            transcript.text
        );
        scored.push((clip, error, words(script).len()));
    }
    let total_words: usize = scored.iter().map(|(_, _, n)| n).sum();
    let weighted: f64 = scored.iter().map(|(_, e, n)| e * *n as f64).sum::<f64>() / total_words.max(1) as f64;
    println!("WER over the English clips (word-weighted): {weighted:.3}");
    for (clip, error, _) in &scored {
        assert!(*error <= 0.5, "{clip}: WER {error:.2}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_base_transcribes_german_and_detects_the_language() {
    let Some(dir) = installed(&models::WHISPER_BASE) else {
        return;
    };
    let Some(clips) = clips_dir() else { return };
    let _turn = WHISPER_TURN.lock().await;
    let Ok(bytes) = std::fs::read(clips.join("ttrpg-intro-de/audio.wav")) else {
        return println!("skipped: no German clip");
    };
    let (samples, rate) = read_wav(&bytes);
    let mut pcm = resample_to_16k(&samples, rate);
    pcm.extend(vec![0i16; 10_240]);
    let script = "Hallo zusammen, dann lasst uns doch mal die heutige Session beginnen. Okay, Glyphoxa Butler, wiederhol doch einfach einmal bitte was letzte Session so passiert ist, was mach ne kurze Zusammenfassung und ja wo sind wir am Ende bei raus gekommen?";
    for language in [Some("de"), None] {
        let mut config = LocalWhisperConfig::installed(&dir, &models::WHISPER_BASE).unwrap();
        config.language = language.map(str::to_string);
        let stt = LocalWhisper::load(&config, policy(), Arc::new(NoObserver)).unwrap();
        let (transcript, took) = transcribe(&stt, &pcm, &["Glyphoxa"]).await;
        let error = wer(script, &transcript.text);
        println!(
            "whisper-base, language {language:?}: {:.1} s in {:.2} s, WER {error:.2}: {:?}",
            pcm.len() as f64 / 16_000.0,
            took.as_secs_f64(),
            transcript.text
        );
        assert!(error <= 0.6, "WER {error:.2}");
    }
    // An English-only model refuses a German session instead of transcribing nonsense.
    if let Some(dir) = installed(&WHISPER_TINY_EN) {
        let mut config = LocalWhisperConfig::installed(&dir, &WHISPER_TINY_EN).unwrap();
        config.language = Some("de".into());
        let err = LocalWhisper::load(&config, policy(), Arc::new(NoObserver)).unwrap_err();
        assert!(err.to_string().contains("English only"), "{err}");
    }
}

// ---------------------------------------------------------------- language model

fn npc_request(question: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(
                Role::System,
                "You are Grimble, a grumpy dwarven innkeeper in the town of Saltmarsh. Answer in at most two short sentences.",
            ),
            ChatMessage::new(Role::User, question),
        ],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..ChatRequest::default()
    }
}

struct Reply {
    text: String,
    pieces: usize,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    first_token: Option<Duration>,
}

async fn reply(model: &LocalLlm, request: ChatRequest) -> Reply {
    let started = Instant::now();
    let mut stream = model.chat(request).await.unwrap();
    let mut out = Reply {
        text: String::new(),
        pieces: 0,
        usage: None,
        finish: None,
        first_token: None,
    };
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            LlmEvent::Text(t) => {
                out.first_token.get_or_insert(started.elapsed());
                out.text.push_str(&t);
                out.pieces += 1;
            }
            LlmEvent::Usage(u) => out.usage = Some(u),
            LlmEvent::Finished(f) => out.finish = Some(f),
            LlmEvent::ToolCall(_) => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_streams_a_reply_token_by_token() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let log = Arc::new(CallLog::default());
    let model = llm(&dir, &log, 1);
    println!("{}", model.describe());
    let r = reply(&model, npc_request("How much is a room for the night?", 60)).await;
    println!(
        "{:?} ({} pieces, {:?}, first token {:?})",
        r.text, r.pieces, r.usage, r.first_token
    );
    assert!(r.pieces >= 3, "streamed in pieces: {}", r.pieces);
    assert!(words(&r.text).len() >= 2, "{:?}", r.text);
    assert!(
        !r.text.contains("<|im_end|>") && !r.text.contains("<|im_start|>"),
        "{:?}",
        r.text
    );
    let usage = r.usage.unwrap();
    assert!(usage.prompt_tokens > 20 && usage.completion_tokens >= 3, "{usage:?}");
    assert!(usage.completion_tokens <= 60);
    assert!(
        matches!(r.finish, Some(FinishReason::Stop | FinishReason::Length)),
        "{:?}",
        r.finish
    );
    let record = &log.records()[0];
    assert_eq!((record.stage, &record.outcome), (Stage::Llm, &CallOutcome::Ok));
    assert!(record.first_byte.is_some() && record.units >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_honours_stop_sequences_and_budgets() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let model = llm(&dir, &Arc::new(CallLog::default()), 2);

    let mut request = npc_request("Tell me about the town and its people.", 120);
    request.stop = vec![".".into()];
    let r = reply(&model, request).await;
    println!("stop at '.': {:?} {:?}", r.text, r.finish);
    assert!(!r.text.contains('.'), "{:?}", r.text);
    assert_eq!(r.finish, Some(FinishReason::Stop));

    let r = reply(&model, npc_request("Tell me a very long story about your life.", 6)).await;
    println!("6 tokens: {:?} {:?} {:?}", r.text, r.usage, r.finish);
    assert!(r.usage.unwrap().completion_tokens <= 6);

    // A budget big enough to apply the sentence rule: the reply ends with a whole sentence.
    let r = reply(
        &model,
        npc_request("Describe every room of your inn in great detail.", 40),
    )
    .await;
    println!("40 tokens: {:?} {:?} {:?}", r.text, r.usage, r.finish);
    assert!(r.usage.unwrap().completion_tokens <= 40);
    let trimmed = r.text.trim_end();
    assert!(
        trimmed.is_empty() || trimmed.ends_with(['.', '!', '?', '"', '\'', ')', '…']),
        "ends mid-sentence: {:?}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_generation() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let log = Arc::new(CallLog::default());
    let model = llm(&dir, &log, 3);
    let before: LlmCounters = model.counters();
    let mut stream = model
        .chat(npc_request(
            "Tell me a very long story about your life, with many details.",
            400,
        ))
        .await
        .unwrap();
    let mut pieces = 0;
    while let Some(event) = stream.next().await {
        if matches!(event.unwrap(), LlmEvent::Text(_)) {
            pieces += 1;
            if pieces == 3 {
                break;
            }
        }
    }
    drop(stream);
    // The engine is free again at once: the next request starts without waiting for 400 tokens.
    let started = Instant::now();
    let r = reply(&model, npc_request("Hello!", 20)).await;
    println!(
        "next reply's first token after {:?}; counters {:?} → {:?}",
        r.first_token,
        before,
        model.counters()
    );
    let generated = model.counters().generated_tokens - before.generated_tokens;
    assert!(
        generated < 3 + 5 + 20 + 2,
        "the dropped reply kept generating: {generated} tokens"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let records = log.records();
    assert_eq!(records[0].outcome, CallOutcome::Cancelled, "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_reuses_its_evaluated_prompt() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let model = llm(&dir, &Arc::new(CallLog::default()), 4);
    let mut request = npc_request("What do you serve for breakfast?", 30);
    let first = reply(&model, request.clone()).await;
    let before = model.counters();
    request
        .messages
        .push(ChatMessage::new(Role::Assistant, first.text.trim()));
    request.messages.push(ChatMessage::new(Role::User, "And for dinner?"));
    let second = reply(&model, request).await;
    let after = model.counters();
    let reused = after.reused_tokens - before.reused_tokens;
    let prompt = after.prompt_tokens - before.prompt_tokens;
    println!(
        "second turn: {reused} of {prompt} prompt tokens reused; first token {:?} vs {:?}",
        second.first_token, first.first_token
    );
    // The system prompt and the first question at least were not read again.
    assert!(reused >= 30, "reused {reused} of {prompt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_prompt_is_not_read_again_by_the_first_turn() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let model = llm(&dir, &Arc::new(CallLog::default()), 5);
    let request = npc_request("What do you serve for breakfast?", 30);
    let mut system_only = request.clone();
    system_only.messages.truncate(1);
    model.prepare(system_only).await.unwrap();
    let before = model.counters();
    reply(&model, request).await;
    let after = model.counters();
    let reused = after.reused_tokens - before.reused_tokens;
    let prompt = after.prompt_tokens - before.prompt_tokens;
    // The whole system prompt came from the cache; only the question was read.
    assert!(reused >= 25 && prompt - reused <= 25, "reused {reused} of {prompt}");
}

#[tokio::test]
async fn build_llm_and_stt_default_to_the_local_engines() {
    let (Some(dir), Some(_)) = (installed(&SMOLLM2_135M), installed(&WHISPER_TINY_EN)) else {
        return;
    };
    let env = ProviderEnv {
        policy: policy(),
        observer: Arc::new(NoObserver),
    };
    let llm = build_llm_with_models(None, &env, Some(&dir)).unwrap();
    let stt = build_stt_with_models(None, &env, Some(&dir)).unwrap();
    assert_eq!((llm.name(), stt.name()), ("local-llm", "local-whisper"));
}

// ---------------------------------------------------------------- model store

#[test]
fn setup_script_pins_the_same_models() {
    let script = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/models.sh")).unwrap();
    for package in models::CATALOG {
        assert!(script.contains(&format!("\"{}\"", package.id)), "{}", package.id);
        for wheel in package.wheels {
            for pinned in [wheel.package, wheel.version, wheel.file_name, wheel.sha256] {
                assert!(
                    script.contains(pinned),
                    "scripts/models.sh lacks {pinned} ({})",
                    package.id
                );
            }
        }
        for file in package.files {
            assert!(
                script.contains(file.sha256),
                "scripts/models.sh lacks {} of {}",
                file.name,
                package.id
            );
            assert!(script.contains(&file.size.to_string()), "size of {}", file.name);
            for (_, member) in file.parts {
                assert!(script.contains(member), "{member}");
            }
        }
    }
}

#[test]
fn installer_is_idempotent_and_replaces_damaged_files() {
    let Some(dir) = installed(&SMOLLM2_135M) else { return };
    let mut events = Vec::new();
    models::install(&dir, &[&SMOLLM2_135M], &mut |e| events.push(e.clone())).unwrap();
    assert_eq!(
        events,
        vec![models::InstallEvent::AlreadyInstalled { id: SMOLLM2_135M.id }]
    );

    // A damaged copy is downloaded again, checked and replaced.
    let scratch = tempfile::tempdir().unwrap();
    let target = SMOLLM2_135M.dir(scratch.path());
    std::fs::create_dir_all(&target).unwrap();
    let name = SMOLLM2_135M.files[0].name;
    std::fs::write(target.join(name), b"GGUF damaged").unwrap();
    let listing = models::list(scratch.path());
    println!(
        "{}",
        listing.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
    );
    let started = Instant::now();
    let mut events = Vec::new();
    match models::install(scratch.path(), &[&SMOLLM2_135M], &mut |e| {
        println!("{e}");
        events.push(e.clone())
    }) {
        Ok(()) => {}
        Err(e @ models::ModelError::Download { .. }) => {
            println!("skipped the download part: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    println!("downloaded and installed in {:.1?}", started.elapsed());
    assert!(
        matches!(events.last(), Some(models::InstallEvent::Installed { .. })),
        "{events:?}"
    );
    models::verify(scratch.path(), &SMOLLM2_135M).unwrap();
    // Nothing left behind but the model.
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from(SMOLLM2_135M.id)]);
}
