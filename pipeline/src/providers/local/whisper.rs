//! Offline speech to text: OpenAI's Whisper on candle, from a CTranslate2
//! model directory (`model.bin`, `config.json`, `tokenizer.json`).
//!
//! A session buffers its utterance (Whisper is a batch model) and then
//! queues for one of the engine's `workers` slots — a fair FIFO semaphore —
//! before its inference runs on a tokio blocking thread. The async threads
//! only wait. Dropping the session cancels queued work and stops running
//! work at its next decoding step.
//!
//! Utterances longer than 30 seconds are cut at their quietest moment near
//! the 30-second mark and transcribed chunk by chunk, each conditioned on
//! the previous chunk's text. Short utterances use a proportionally shorter
//! encoder window (whisper.cpp's `audio_ctx`), so a 3-second question costs a
//! fraction of a 30-second window. Greedy decoding with Whisper's token
//! suppression, a no-speech check and a repetition guard.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::model::{AudioEncoder, Whisper};
use candle_transformers::models::whisper::{self as whisper_model, audio, Config};
use tokenizers::Tokenizer;
use tokio::sync::Semaphore;

use super::ct2::Ct2File;
use super::decoder::{Decoder, DecoderState};
use super::models::{self, ModelPackage};
use super::{first_line, mel, LocalEngineError};
use crate::providers::error::ProviderError;
use crate::providers::metrics::{CallMeter, CallObserver, Stage};
use crate::providers::policy::CallPolicy;
use crate::providers::stt::{SpeechToText, SttRequest, SttSession, Transcript, STT_SAMPLE_RATE};

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "local-whisper";

const SAMPLE_RATE: usize = STT_SAMPLE_RATE as usize;
/// Whisper's window: 30 seconds.
const CHUNK_SAMPLES: usize = whisper_model::N_SAMPLES;
/// Mel frames in a 30-second window.
const WINDOW_FRAMES: usize = whisper_model::N_FRAMES;
/// Where a long utterance may be cut: the quietest 100 ms in its last 10 seconds before 30 s.
const CUT_SEARCH_SAMPLES: usize = 10 * SAMPLE_RATE;
const CUT_FRAME_SAMPLES: usize = SAMPLE_RATE / 10;
/// No-speech check: a segment whose no-speech probability is above this and
/// whose average log-probability is below [`LOGPROB_THRESHOLD`] is dropped.
const NO_SPEECH_THRESHOLD: f32 = 0.6;
const LOGPROB_THRESHOLD: f32 = -1.0;
/// Above this no-speech probability a segment is dropped whatever its text
/// (Whisper tends to hear "you" in silence and noise).
const NO_SPEECH_SURE: f32 = 0.8;
/// A chunk whose loudest sample stays below this (about -60 dBFS) is silence: not transcribed.
const SILENCE_PEAK: f32 = 0.001;

/// How the local Whisper engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalWhisperConfig {
    /// Directory with the CTranslate2 `model.bin`, `config.json` and `tokenizer.json`.
    pub model_dir: PathBuf,
    /// Language (ISO 639-1) when a request names none; `None` = English for
    /// English-only models, detected for multilingual ones.
    pub language: Option<String>,
    /// Most utterances transcribed at the same time (the rest wait their turn).
    pub workers: usize,
    /// Encode only as much of the 30-second window as the utterance needs
    /// (plus a second of silence, at least [`LocalWhisperConfig::min_window_seconds`]).
    pub trim_window: bool,
    /// Smallest encoder window when trimming, in seconds.
    pub min_window_seconds: f32,
    /// Give the request's keywords (NPC and place names) to Whisper as its prompt.
    pub keyword_prompt: bool,
}

impl LocalWhisperConfig {
    /// Checks that the model's files are there, without reading them (so
    /// a missing model is reported when the provider is built, not at the
    /// first utterance).
    pub fn check(&self) -> Result<(), LocalEngineError> {
        model_file(&self.model_dir, "model.bin")?;
        model_file(&self.model_dir, "tokenizer.json")?;
        Ok(())
    }

    /// Defaults for the model in `model_dir`: one worker per two cores, trimmed windows, keyword prompts.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            language: None,
            workers: (super::cores() / 2).clamp(1, 4),
            trim_window: true,
            min_window_seconds: 6.0,
            keyword_prompt: true,
        }
    }

    /// Defaults for the installed catalogue model `package` in `models_dir`;
    /// fails with the install command when it is missing or damaged.
    pub fn installed(models_dir: &Path, package: &'static ModelPackage) -> Result<Self, LocalEngineError> {
        models::check(models_dir, package)?;
        Ok(Self::new(package.dir(models_dir)))
    }
}

/// Special token ids.
#[derive(Debug, Clone, Copy)]
struct Specials {
    sot: u32,
    eot: u32,
    transcribe: Option<u32>,
    no_timestamps: u32,
    sot_prev: Option<u32>,
    no_speech: Option<u32>,
}

/// A loaded model, shared by every engine and session that uses its files.
struct Model {
    dir: PathBuf,
    /// candle's encoder. Weights live in reference-counted tensors: a clone
    /// per utterance shares them.
    encoder: AudioEncoder,
    /// The decoder with a key/value cache.
    decoder: Decoder,
    config: Config,
    tokenizer: Tokenizer,
    filters: Vec<f32>,
    specials: Specials,
    /// Added to the logits at every step: 0, or -inf for suppressed tokens.
    suppress: Tensor,
    /// Added at the first step too (blank and end of text).
    suppress_begin: Tensor,
    /// Language tokens of a multilingual model, `(code, id)`.
    languages: Vec<(String, u32)>,
    /// The fair queue in front of the inference threads.
    pool: Arc<Semaphore>,
    workers: usize,
}

/// Models already in memory, by directory.
static LOADED: Mutex<Vec<(PathBuf, Weak<Model>)>> = Mutex::new(Vec::new());

impl Model {
    fn shared(config: &LocalWhisperConfig) -> Result<Arc<Model>, LocalEngineError> {
        let key = config
            .model_dir
            .canonicalize()
            .unwrap_or_else(|_| config.model_dir.clone());
        let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded.retain(|(_, model)| model.strong_count() > 0);
        if let Some(model) = loaded
            .iter()
            .find(|(dir, _)| *dir == key)
            .and_then(|(_, m)| m.upgrade())
        {
            return Ok(model);
        }
        let model = Arc::new(Model::load(&key, config.workers.max(1))?);
        loaded.push((key, Arc::downgrade(&model)));
        Ok(model)
    }

    fn load(dir: &Path, workers: usize) -> Result<Model, LocalEngineError> {
        let bin = model_file(dir, "model.bin")?;
        let tokenizer_path = model_file(dir, "tokenizer.json")?;
        let extras = read_ct2_config(dir)?;

        let file = Ct2File::open(&bin)?;
        let config = file
            .whisper_config(extras.suppress_ids.clone())
            .map_err(|message| LocalEngineError::Format {
                path: bin.clone(),
                message,
            })?;
        let tensors = file.candle_tensors(&config)?;
        drop(file);
        let not_whisper = |source: candle_core::Error| LocalEngineError::Format {
            path: bin.clone(),
            message: format!("the tensors do not form a Whisper model: {}", first_line(&source)),
        };
        let decoder =
            Decoder::new(&tensors, config.decoder_layers, config.decoder_attention_heads).map_err(not_whisper)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let encoder = Whisper::load(&vb, config.clone()).map_err(not_whisper)?.encoder;

        let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| LocalEngineError::Format {
            path: tokenizer_path.clone(),
            message: format!("not a usable tokenizer: {e}"),
        })?;
        let token = |text: &str| tokenizer.token_to_id(text);
        let required = |text: &str| {
            token(text).ok_or_else(|| LocalEngineError::Format {
                path: tokenizer_path.clone(),
                message: format!("the tokenizer has no {text} token"),
            })
        };
        let specials = Specials {
            sot: required(whisper_model::SOT_TOKEN)?,
            eot: required(whisper_model::EOT_TOKEN)?,
            transcribe: token(whisper_model::TRANSCRIBE_TOKEN),
            no_timestamps: required(whisper_model::NO_TIMESTAMPS_TOKEN)?,
            sot_prev: token("<|startofprev|>"),
            no_speech: whisper_model::NO_SPEECH_TOKENS.iter().find_map(|t| token(t)),
        };
        let vocab = config.vocab_size;
        if specials.no_timestamps as usize >= vocab || specials.sot as usize >= vocab {
            return Err(LocalEngineError::Format {
                path: tokenizer_path,
                message: format!("the tokenizer's special tokens lie beyond the model's {vocab} tokens"),
            });
        }
        let multilingual = !extras.lang_ids.is_empty() && vocab > 51_864;
        let languages = if multilingual {
            extras
                .lang_ids
                .iter()
                .filter_map(|&id| {
                    let text = tokenizer.id_to_token(id)?;
                    let code = text.strip_prefix("<|")?.strip_suffix("|>")?.to_string();
                    Some((code, id))
                })
                .collect()
        } else {
            Vec::new()
        };

        // Everything after end-of-text is a control or timestamp token: never transcribed.
        let mut suppress = vec![0f32; vocab];
        for (id, slot) in suppress.iter_mut().enumerate() {
            if id > specials.eot as usize {
                *slot = f32::NEG_INFINITY;
            }
        }
        for &id in &config.suppress_tokens {
            if let Some(slot) = suppress.get_mut(id as usize) {
                *slot = f32::NEG_INFINITY;
            }
        }
        let mut begin = vec![0f32; vocab];
        for &id in extras.suppress_ids_begin.iter().chain([&specials.eot]) {
            if let Some(slot) = begin.get_mut(id as usize) {
                *slot = f32::NEG_INFINITY;
            }
        }
        let tensor = |values: Vec<f32>| {
            Tensor::from_vec(values, vocab, &Device::Cpu).map_err(LocalEngineError::tensor("suppression mask"))
        };
        Ok(Model {
            dir: dir.to_path_buf(),
            filters: mel::filters(SAMPLE_RATE, whisper_model::N_FFT, config.num_mel_bins),
            encoder,
            decoder,
            tokenizer,
            specials,
            suppress: tensor(suppress)?,
            suppress_begin: tensor(begin)?,
            languages,
            pool: Arc::new(Semaphore::new(workers)),
            workers,
            config,
        })
    }

    fn multilingual(&self) -> bool {
        !self.languages.is_empty()
    }
}

/// What `config.json` of a CTranslate2 Whisper conversion adds to the weights.
#[derive(Debug, Default, serde::Deserialize)]
struct Ct2Extras {
    #[serde(default)]
    lang_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
}

fn read_ct2_config(dir: &Path) -> Result<Ct2Extras, LocalEngineError> {
    let path = dir.join("config.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| LocalEngineError::Format {
            path,
            message: format!("not a CTranslate2 Whisper config: {e}"),
        }),
        // Optional: without it, no symbol suppression and no language list.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ct2Extras::default()),
        Err(e) => Err(LocalEngineError::Format {
            path,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// Offline Whisper speech recognition.
#[derive(Clone)]
pub struct LocalWhisper {
    model: Arc<Model>,
    language: Option<String>,
    trim_window: bool,
    min_window_frames: usize,
    keyword_prompt: bool,
    policy: CallPolicy,
    observer: Arc<dyn CallObserver>,
}

impl std::fmt::Debug for LocalWhisper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWhisper").field("model", &self.describe()).finish()
    }
}

impl LocalWhisper {
    /// Loads the model (or reuses it when already in memory). Blocking: takes
    /// about half a second for tiny.en.
    pub fn load(
        config: &LocalWhisperConfig,
        policy: CallPolicy,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, LocalEngineError> {
        let model = Model::shared(config)?;
        let language = config.language.as_deref().map(normalize_language);
        if let Some(language) = &language {
            check_language(&model, language)?;
        }
        Ok(Self {
            model,
            language,
            trim_window: config.trim_window,
            min_window_frames: ((config.min_window_seconds.clamp(1.0, 30.0) * 100.0) as usize).next_multiple_of(2),
            keyword_prompt: config.keyword_prompt,
            policy,
            observer,
        })
    }

    /// One line about the loaded model, for start-up logs.
    pub fn describe(&self) -> String {
        let c = &self.model.config;
        format!(
            "Whisper {} ({}, {} encoder + {} decoder layers, width {}, {} worker{}) from {}",
            match c.d_model {
                384 => "tiny",
                512 => "base",
                768 => "small",
                1024 => "medium",
                _ => "model",
            },
            if self.model.multilingual() {
                "multilingual"
            } else {
                "English only"
            },
            c.encoder_layers,
            c.decoder_layers,
            c.d_model,
            self.model.workers,
            if self.model.workers == 1 { "" } else { "s" },
            self.model.dir.display()
        )
    }

    /// Transcribes a whole utterance (16 kHz mono): waits for a free worker,
    /// runs on a blocking thread, and stops early when the returned future is dropped.
    pub async fn transcribe_pcm(&self, pcm: Vec<i16>, request: SttRequest) -> Result<Transcript, ProviderError> {
        let mut meter = CallMeter::start(self.observer.clone(), PROVIDER, Stage::Stt);
        meter.attempt(1);
        let result = self.run(pcm, request).await;
        if let Ok(transcript) = &result {
            meter.received(transcript.text.len() as u64, 1);
        }
        meter.finish_with(&result);
        result
    }

    async fn run(&self, pcm: Vec<i16>, request: SttRequest) -> Result<Transcript, ProviderError> {
        if pcm.is_empty() {
            return Err(ProviderError::protocol(
                PROVIDER,
                "empty utterance: no audio samples to transcribe",
            ));
        }
        let deadline = self.policy.call_deadline(request.deadline);
        let permit = tokio::time::timeout_at(deadline, self.model.pool.clone().acquire_owned())
            .await
            .map_err(|_| ProviderError::Timeout {
                provider: PROVIDER,
                after: self.policy.total_timeout,
                what: "waiting for a free transcription worker",
            })?
            .map_err(|_| ProviderError::protocol(PROVIDER, "the transcription pool was closed"))?;
        let language = match request.language.as_deref().map(normalize_language) {
            Some(language) => Some(language),
            None => self.language.clone(),
        };
        if !self.model.multilingual() && language.as_deref().is_some_and(|l| l != "en") {
            tracing::warn!(
                language = language.as_deref().unwrap_or_default(),
                "the local Whisper model is English only; transcribing as English (install whisper-base for other languages)"
            );
        }
        let job = Job {
            model: self.model.clone(),
            language,
            prompt: if self.keyword_prompt {
                request.keywords.join(", ")
            } else {
                String::new()
            },
            trim_window: self.trim_window,
            min_window_frames: self.min_window_frames,
            deadline: deadline.into_std(),
            timeout: self.policy.total_timeout,
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let _stop_on_drop = CancelOnDrop(cancel.clone());
        let task = tokio::task::spawn_blocking(move || {
            // The permit travels with the work: the slot frees when inference really ends.
            let _permit = permit;
            job.transcribe(&pcm, &cancel)
        });
        task.await
            .map_err(|e| ProviderError::protocol(PROVIDER, format!("the transcription thread failed: {e}")))?
    }
}

/// Sets the flag when dropped: the blocking work stops at its next step.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait]
impl SpeechToText for LocalWhisper {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let engine = self.clone();
        Ok(SttSession::batch(PROVIDER, move |pcm| async move {
            engine.transcribe_pcm(pcm, request).await
        }))
    }
}

/// `dir/name`, or the error telling how to install the model.
fn model_file(dir: &Path, name: &str) -> Result<PathBuf, LocalEngineError> {
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(LocalEngineError::Config(format!(
            "{} is missing: install the model with `{}`, or point providers.stt.options.model_dir at a CTranslate2 Whisper directory",
            path.display(),
            models::INSTALL_COMMAND
        )))
    }
}

/// `de-DE`, `DE`, `de_de` → `de`.
fn normalize_language(language: &str) -> String {
    language
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn check_language(model: &Model, language: &str) -> Result<(), LocalEngineError> {
    if model.multilingual() {
        if model.languages.iter().any(|(code, _)| code == language) {
            return Ok(());
        }
        return Err(LocalEngineError::Config(format!(
            "Whisper does not know the language {language:?} (use an ISO 639-1 code such as en, de, fr)"
        )));
    }
    if language != "en" {
        return Err(LocalEngineError::Config(format!(
            "the Whisper model in {} understands English only; for {language:?} install the multilingual model (`{} {}`) and set providers.stt.model: {}",
            model.dir.display(),
            models::INSTALL_COMMAND,
            models::WHISPER_BASE.id,
            models::WHISPER_BASE.id
        )));
    }
    Ok(())
}

/// One utterance's work on a blocking thread.
struct Job {
    model: Arc<Model>,
    language: Option<String>,
    prompt: String,
    trim_window: bool,
    min_window_frames: usize,
    deadline: std::time::Instant,
    timeout: std::time::Duration,
}

/// A decoded chunk.
struct Segment {
    tokens: Vec<u32>,
    avg_logprob: f32,
    no_speech_prob: f32,
}

impl Job {
    fn transcribe(&self, pcm: &[i16], cancel: &AtomicBool) -> Result<Transcript, ProviderError> {
        let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let failed = |what: &str| {
            let what = what.to_string();
            move |e: candle_core::Error| ProviderError::protocol(PROVIDER, format!("{what}: {}", first_line(&e)))
        };
        let model = &self.model;
        let mut encoder = model.encoder.clone();
        let mut prompt = if self.prompt.trim().is_empty() {
            Vec::new()
        } else {
            model
                .tokenizer
                .encode(format!(" {}", self.prompt.trim()), false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        };
        let mut language_token = None;
        let mut texts = Vec::new();
        let mut logprobs = Vec::new();
        for range in chunks(&samples) {
            self.check(cancel)?;
            let chunk = &samples[range];
            if chunk.iter().all(|s| s.abs() < SILENCE_PEAK) {
                continue;
            }
            let mel = audio::pcm_to_mel(&model.config, chunk, &model.filters);
            let n_mels = model.config.num_mel_bins;
            let frames_total = mel.len() / n_mels;
            let mel =
                Tensor::from_vec(mel, (1, n_mels, frames_total), &Device::Cpu).map_err(failed("mel spectrogram"))?;
            let needed = chunk.len() / whisper_model::HOP_LENGTH + 100;
            let frames = if self.trim_window {
                needed
                    .max(self.min_window_frames)
                    .next_multiple_of(2)
                    .min(WINDOW_FRAMES)
            } else {
                WINDOW_FRAMES
            }
            .min(frames_total);
            let mel = mel.narrow(2, 0, frames).map_err(failed("mel window"))?;
            let features = encoder.forward(&mel, true).map_err(failed("encoder"))?;
            self.check(cancel)?;
            if model.multilingual() && language_token.is_none() {
                language_token = Some(match &self.language {
                    Some(code) => model
                        .languages
                        .iter()
                        .find(|(c, _)| c == code)
                        .map(|(_, id)| *id)
                        .ok_or_else(|| ProviderError::Config {
                            provider: PROVIDER,
                            message: format!("Whisper does not know the language {code:?}"),
                        })?,
                    None => self.detect_language(&features).map_err(failed("language detection"))?,
                });
            }
            let seconds = chunk.len() as f32 / SAMPLE_RATE as f32;
            // Speech runs at 3 to 6 tokens a second: a bound proportional to the audio
            // keeps a hallucinating decoder from running on.
            let max_new = ((seconds * 10.0) as usize + 10).min(model.config.max_target_positions / 2);
            let segment = self
                .decode(
                    &features,
                    &prompt,
                    language_token,
                    max_new,
                    (seconds * 4.0) as usize + 4,
                    cancel,
                )
                .map_err(|e| match e {
                    DecodeError::Stopped(error) => error,
                    DecodeError::Tensor(e) => failed("decoder")(e),
                })?;
            tracing::debug!(
                no_speech = segment.no_speech_prob,
                avg_logprob = segment.avg_logprob,
                tokens = segment.tokens.len(),
                "whisper segment"
            );
            let no_speech = segment.no_speech_prob > NO_SPEECH_SURE
                || (segment.no_speech_prob > NO_SPEECH_THRESHOLD && segment.avg_logprob < LOGPROB_THRESHOLD);
            if no_speech {
                continue;
            }
            let text = model
                .tokenizer
                .decode(&segment.tokens, true)
                .map_err(|e| ProviderError::protocol(PROVIDER, format!("cannot decode tokens: {e}")))?;
            let text = text.trim().to_string();
            if !text.is_empty() {
                texts.push(text);
                logprobs.push(segment.avg_logprob);
            }
            // The next chunk continues this one's text.
            prompt = segment.tokens;
        }
        let confidence = if logprobs.is_empty() {
            None
        } else {
            Some(
                (logprobs.iter().sum::<f32>() / logprobs.len() as f32)
                    .exp()
                    .clamp(0.0, 1.0),
            )
        };
        Ok(Transcript {
            text: texts.join(" "),
            confidence,
        })
    }

    fn check(&self, cancel: &AtomicBool) -> Result<(), ProviderError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(ProviderError::protocol(PROVIDER, "cancelled"));
        }
        if std::time::Instant::now() >= self.deadline {
            return Err(ProviderError::Timeout {
                provider: PROVIDER,
                after: self.timeout,
                what: "whole call",
            });
        }
        Ok(())
    }

    /// The most likely language token after start-of-transcript.
    fn detect_language(&self, features: &Tensor) -> candle_core::Result<u32> {
        let model = &self.model;
        let mut state = model.decoder.start(features)?;
        let hidden = model.decoder.step(&mut state, &[model.specials.sot])?;
        let logits = model.decoder.logits(&hidden, 0)?;
        let ids: Vec<u32> = model.languages.iter().map(|(_, id)| *id).collect();
        let picked = logits.index_select(&Tensor::new(ids.as_slice(), &Device::Cpu)?, 0)?;
        let best = picked.argmax(D::Minus1)?.to_scalar::<u32>()? as usize;
        ids.get(best)
            .copied()
            .ok_or_else(|| candle_core::Error::Msg("the model lists no languages".into()))
    }

    fn decode(
        &self,
        features: &Tensor,
        prompt: &[u32],
        language: Option<u32>,
        max_new: usize,
        plausible: usize,
        cancel: &AtomicBool,
    ) -> Result<Segment, DecodeError> {
        let model = &self.model;
        let decoder = &model.decoder;
        let s = model.specials;
        let n_ctx = decoder.context();
        let mut tokens = Vec::with_capacity(n_ctx);
        if let (Some(prev), false) = (s.sot_prev, prompt.is_empty()) {
            let keep = prompt.len().min(n_ctx / 2 - 1);
            tokens.push(prev);
            tokens.extend_from_slice(&prompt[prompt.len() - keep..]);
        }
        let sot_index = tokens.len();
        tokens.push(s.sot);
        if let Some(language) = language {
            tokens.push(language);
            tokens.extend(s.transcribe);
        }
        tokens.push(s.no_timestamps);
        let begin = tokens.len();
        let mut state: DecoderState = decoder.start(features)?;
        let mut sum_logprob = 0f32;
        let mut no_speech_prob = 0f32;
        let mut input = tokens.clone();
        for step in 0..max_new {
            self.check(cancel).map_err(DecodeError::Stopped)?;
            let hidden = decoder.step(&mut state, &input)?;
            if step == 0 {
                if let Some(no_speech) = s.no_speech {
                    let at_sot = decoder.logits(&hidden, sot_index)?;
                    let probs = candle_nn::ops::softmax_last_dim(&at_sot)?;
                    no_speech_prob = probs.i(no_speech as usize)?.to_scalar::<f32>()?;
                }
            }
            let logits = decoder.logits(&hidden, input.len() - 1)?;
            let mut logits = (logits + &model.suppress)?;
            if step == 0 {
                logits = (logits + &model.suppress_begin)?;
            }
            let next = logits.argmax(D::Minus1)?.to_scalar::<u32>()?;
            let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            sum_logprob += logprobs.i(next as usize)?.to_scalar::<f32>()?;
            if next == s.eot {
                break;
            }
            tokens.push(next);
            // A phrase said twice is a loop once the text outruns the audio.
            let phrase_times = if tokens.len() - begin > plausible { 2 } else { 3 };
            if let Some(cut) = repetition(&tokens[begin..], phrase_times) {
                tokens.truncate(begin + cut);
                break;
            }
            if state.position() + 1 >= n_ctx {
                break;
            }
            input = vec![next];
        }
        let generated = tokens.split_off(begin);
        Ok(Segment {
            avg_logprob: sum_logprob / (generated.len() + 1) as f32,
            tokens: generated,
            no_speech_prob,
        })
    }
}

enum DecodeError {
    Stopped(ProviderError),
    Tensor(candle_core::Error),
}

impl From<candle_core::Error> for DecodeError {
    fn from(e: candle_core::Error) -> Self {
        DecodeError::Tensor(e)
    }
}

/// A decoding loop at the end of `tokens`: a short run of 2–7 tokens four
/// times in a row, or a phrase of 8 or more tokens `phrase_times` times.
/// Returns where to cut (after the first occurrence).
fn repetition(tokens: &[u32], phrase_times: usize) -> Option<usize> {
    let n = tokens.len();
    (2..=n / 2).find_map(|k| {
        let times = if k < 8 { 4 } else { phrase_times.max(2) };
        if n < times * k {
            return None;
        }
        let tail = &tokens[n - times * k..];
        let first = &tail[..k];
        tail.chunks(k).all(|c| c == first).then_some(n - (times - 1) * k)
    })
}

/// Splits an utterance into windows of at most 30 seconds, cutting each at
/// the quietest 100 ms of its last 10 seconds.
fn chunks(samples: &[f32]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while samples.len() - start > CHUNK_SAMPLES {
        let search_from = start + CHUNK_SAMPLES - CUT_SEARCH_SAMPLES;
        let mut best = (f32::INFINITY, start + CHUNK_SAMPLES);
        let mut at = search_from;
        while at + CUT_FRAME_SAMPLES <= start + CHUNK_SAMPLES {
            let energy: f32 = samples[at..at + CUT_FRAME_SAMPLES].iter().map(|s| s * s).sum();
            if energy < best.0 {
                best = (energy, at + CUT_FRAME_SAMPLES / 2);
            }
            at += CUT_FRAME_SAMPLES / 2;
        }
        out.push(start..best.1);
        start = best.1;
    }
    out.push(start..samples.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_utterances_are_cut_in_quiet_places() {
        // 70 s of tone with a silent gap at 27 s and at 52 s.
        let mut samples: Vec<f32> = (0..70 * SAMPLE_RATE).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        for gap in [27, 52] {
            samples[gap * SAMPLE_RATE..gap * SAMPLE_RATE + SAMPLE_RATE / 5].fill(0.0);
        }
        let ranges = chunks(&samples);
        assert_eq!(ranges.len(), 3, "{ranges:?}");
        for r in &ranges {
            assert!(r.len() <= CHUNK_SAMPLES);
        }
        assert!(
            (ranges[0].end as f32 / SAMPLE_RATE as f32 - 27.1).abs() < 0.15,
            "{ranges:?}"
        );
        assert_eq!(ranges[2].end, samples.len());
        assert_eq!(chunks(&samples[..SAMPLE_RATE]), vec![0..SAMPLE_RATE]);
    }

    #[test]
    fn repetition_loops_are_cut() {
        assert_eq!(repetition(&[1, 2, 3, 4, 5], 2), None);
        assert_eq!(repetition(&[9, 1, 2, 1, 2, 1, 2, 1, 2], 2), Some(3));
        assert_eq!(repetition(&[7, 7, 7, 7], 2), None, "single tokens may repeat");
        assert_eq!(repetition(&[1, 2, 1, 2, 1, 2], 2), None, "three times is speech");
        let phrase: Vec<u32> = (10..20).collect();
        let twice = [&[5][..], &phrase, &phrase].concat();
        assert_eq!(repetition(&twice, 2), Some(11));
        assert_eq!(
            repetition(&twice, 3),
            None,
            "a phrase said twice within the audio's length"
        );
    }

    #[test]
    fn languages_are_normalized() {
        assert_eq!(normalize_language("de-DE"), "de");
        assert_eq!(normalize_language(" EN_us "), "en");
    }
}
