//! Offline chat with any GGUF language model through llama.cpp.
//!
//! One engine thread per loaded model owns the llama.cpp contexts; requests
//! queue for it over a channel and tokens stream back as they are sampled.
//! The prompt is the conversation formatted with the GGUF's own chat
//! template. Each context is a KV cache *slot* remembering the tokens it has
//! evaluated: a request goes to the slot sharing the longest prefix with its
//! prompt (the same NPC's conversation, one turn further), only the new
//! tokens are read, and the least recently used slot is recycled when all
//! are taken.
//!
//! The engine enforces the reply budget itself, because small models ramble:
//! stop sequences (never half-emitted), end-of-generation tokens, `max_tokens`,
//! and from three quarters of `max_tokens` on it ends the reply at the next
//! sentence end; if the hard limit comes first, the unfinished sentence is
//! dropped. Dropping the stream stops generation before the next token; the
//! call's deadline is checked at every token.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::Stream;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::models::{self, ModelPackage};
use super::LocalEngineError;
use crate::providers::error::ProviderError;
use crate::providers::llm::{ChatRequest, FinishReason, LanguageModel, LlmEvent, LlmStream, Role, Usage};
use crate::providers::metrics::{CallMeter, CallObserver, CallOutcome, Stage};
use crate::providers::policy::CallPolicy;

/// Provider name in logs, metrics and errors.
pub const PROVIDER: &str = "local-llm";

/// Tokens evaluated per llama.cpp batch while reading a prompt.
const PROMPT_BATCH: usize = 512;
/// Below this `max_tokens`, the reply is not cut at sentence ends.
const MIN_SENTENCE_BUDGET: u32 = 16;

/// How the local language model runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalLlmConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Context length in tokens (prompt + reply) of each KV cache slot.
    pub context_size: u32,
    /// CPU threads llama.cpp computes with.
    pub threads: usize,
    /// Conversations whose evaluated prompt is kept between turns.
    pub cache_slots: usize,
    /// Reply length when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// Sampling temperature when a request sets none (0 = always the likeliest token).
    pub temperature: f32,
    /// Seed of the sampler's random numbers.
    pub seed: u32,
    /// A chat template (a name llama.cpp knows, e.g. `chatml`, or a template
    /// text) replacing the one in the GGUF.
    pub chat_template: Option<String>,
}

impl LocalLlmConfig {
    /// Checks that the GGUF file is there and looks like one, without
    /// loading it (so a missing model is reported when the provider is
    /// built, not at the first turn).
    pub fn check(&self) -> Result<(), LocalEngineError> {
        let path = &self.model_path;
        if !path.is_file() {
            return Err(LocalEngineError::Config(format!(
                "{} does not exist: install the default model with `{}`, or set providers.llm.model to the path of a GGUF file",
                path.display(),
                models::INSTALL_COMMAND
            )));
        }
        check_gguf_magic(path)
    }

    /// Defaults for the GGUF at `model_path`.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            context_size: 2048,
            threads: super::cores(),
            cache_slots: 3,
            default_max_tokens: 200,
            temperature: 0.7,
            seed: 0x6c79_7068,
            chat_template: None,
        }
    }

    /// Defaults for the installed catalogue model `package` in `models_dir`;
    /// fails with the install command when it is missing or damaged.
    pub fn installed(models_dir: &Path, package: &'static ModelPackage) -> Result<Self, LocalEngineError> {
        models::check(models_dir, package)?;
        let file = package
            .files
            .iter()
            .find(|f| f.name.ends_with(".gguf"))
            .ok_or_else(|| LocalEngineError::Config(format!("model {} has no GGUF file", package.id)))?;
        Ok(Self::new(package.file(models_dir, file.name)))
    }
}

/// llama.cpp's process-wide backend: initialized once, never freed.
fn backend() -> Result<&'static LlamaBackend, LocalEngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs through tracing instead of writing to stderr.
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LocalEngineError::Llama {
            context: "initializing the backend".into(),
            message: e.clone(),
        })
}

/// A loaded model and the thread that runs it.
struct Engine {
    /// `None` once the engine is being dropped.
    jobs: Mutex<Option<std_mpsc::Sender<Job>>>,
    /// The engine thread, joined on drop: llama.cpp must not be computing
    /// while the process exits (its teardown would crash under it).
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    description: String,
    counters: Arc<Counters>,
}

/// What the engine has done so far, counted by its thread.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    reused_tokens: AtomicU64,
    generated_tokens: AtomicU64,
}

/// Totals of a [`LocalLlm`] engine since it was loaded (shared by every handle on the same model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LlmCounters {
    /// Requests served.
    pub requests: u64,
    /// Prompt tokens of those requests.
    pub prompt_tokens: u64,
    /// Prompt tokens found already evaluated in a KV cache slot (not read again).
    pub reused_tokens: u64,
    /// Tokens generated.
    pub generated_tokens: u64,
}

/// Engines already loaded, by model path and settings.
static LOADED: Mutex<Vec<(LocalLlmConfig, Weak<Engine>)>> = Mutex::new(Vec::new());

impl Engine {
    fn shared(config: &LocalLlmConfig) -> Result<Arc<Engine>, LocalEngineError> {
        let mut key = config.clone();
        key.model_path = config
            .model_path
            .canonicalize()
            .unwrap_or_else(|_| config.model_path.clone());
        let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded.retain(|(_, engine)| engine.strong_count() > 0);
        if let Some(engine) = loaded.iter().find(|(k, _)| *k == key).and_then(|(_, e)| e.upgrade()) {
            return Ok(engine);
        }
        let engine = Arc::new(Engine::start(&key)?);
        loaded.push((key, Arc::downgrade(&engine)));
        Ok(engine)
    }

    fn start(config: &LocalLlmConfig) -> Result<Engine, LocalEngineError> {
        config.check()?;
        let path = &config.model_path;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default()).map_err(|e| {
            LocalEngineError::Format {
                path: path.clone(),
                message: format!(
                    "llama.cpp cannot load this GGUF ({e}); it may be truncated or of an unsupported architecture"
                ),
            }
        })?;
        let template = match &config.chat_template {
            Some(t) => LlamaChatTemplate::new(t).map_err(LocalEngineError::llama("chat template"))?,
            None => model
                .chat_template(None)
                .or_else(|_| {
                    tracing::warn!(model = %path.display(), "the GGUF has no chat template; using chatml");
                    LlamaChatTemplate::new("chatml")
                })
                .map_err(LocalEngineError::llama("chat template"))?,
        };
        // Fail now, not at the first turn, when the template is not one llama.cpp can apply.
        let probe = [chat_message("system", "probe")?, chat_message("user", "probe")?];
        model
            .apply_chat_template(&template, &probe, true)
            .map_err(|e| LocalEngineError::Format {
                path: path.clone(),
                message: format!(
                    "llama.cpp cannot apply this model's chat template ({e}); set providers.llm.options.chat_template (e.g. chatml)"
                ),
            })?;
        let n_ctx_train = model.n_ctx_train();
        let context_size = config.context_size.clamp(256, n_ctx_train.max(256));
        let description = format!(
            "{} ({} M parameters, {} layers, context {} of {}, {} threads) from {}",
            model
                .meta_val_str("general.name")
                .unwrap_or_else(|_| "GGUF model".to_string()),
            model.n_params() / 1_000_000,
            model.n_layer(),
            context_size,
            n_ctx_train,
            config.threads.max(1),
            path.display()
        );
        let settings = Settings {
            context_size,
            threads: i32::try_from(config.threads.max(1)).unwrap_or(1),
            cache_slots: config.cache_slots.max(1),
            seed: config.seed,
        };
        let (jobs, queue) = std_mpsc::channel();
        let model = Arc::new(model);
        let counters = Arc::new(Counters::default());
        let engine_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("glyphoxa-llm".into())
            .spawn(move || serve(&model, &template, &settings, backend, &queue, &engine_counters))
            .map_err(|e| LocalEngineError::Config(format!("cannot start the language model thread: {e}")))?;
        Ok(Engine {
            jobs: Mutex::new(Some(jobs)),
            thread: Some(thread),
            path: path.clone(),
            description,
            counters,
        })
    }
}

impl Drop for Engine {
    /// Closes the queue (the thread finishes or skips what is queued:
    /// dropped streams cancel their jobs) and waits for the thread.
    fn drop(&mut self) {
        let jobs = match self.jobs.get_mut() {
            Ok(jobs) => jobs.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(jobs);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the language model thread panicked");
            }
        }
    }
}

/// A GGUF file starts with the bytes `GGUF`; anything else is not worth handing to llama.cpp.
fn check_gguf_magic(path: &Path) -> Result<(), LocalEngineError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    match read {
        Ok(()) if &magic == b"GGUF" => Ok(()),
        Ok(()) => Err(LocalEngineError::Format {
            path: path.to_path_buf(),
            message: "not a GGUF file (it does not start with \"GGUF\")".into(),
        }),
        Err(e) => Err(LocalEngineError::Format {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        }),
    }
}

fn chat_message(role: &str, content: &str) -> Result<LlamaChatMessage, LocalEngineError> {
    LlamaChatMessage::new(role.to_string(), content.replace('\0', "")).map_err(LocalEngineError::llama("chat message"))
}

/// What the engine thread needs besides the model.
struct Settings {
    context_size: u32,
    threads: i32,
    cache_slots: usize,
    seed: u32,
}

/// One request, as the engine thread receives it.
struct Job {
    messages: Vec<(&'static str, String)>,
    max_tokens: u32,
    temperature: f32,
    stop: Vec<String>,
    deadline: std::time::Instant,
    timeout: std::time::Duration,
    events: mpsc::Sender<Result<LlmEvent, ProviderError>>,
    cancel: Arc<AtomicBool>,
}

impl Job {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.events.is_closed()
    }

    fn timed_out(&self) -> Option<ProviderError> {
        (std::time::Instant::now() >= self.deadline).then_some(ProviderError::Timeout {
            provider: PROVIDER,
            after: self.timeout,
            what: "whole call",
        })
    }

    /// Sends an event; `false` when nobody listens any more.
    fn send(&self, event: Result<LlmEvent, ProviderError>) -> bool {
        self.events.blocking_send(event).is_ok()
    }
}

/// A context and the tokens its KV cache holds.
struct Slot<'m> {
    context: LlamaContext<'m>,
    tokens: Vec<LlamaToken>,
    last_used: u64,
}

/// The engine thread: serves jobs until every [`LocalLlm`] using it is gone.
fn serve(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    settings: &Settings,
    backend: &'static LlamaBackend,
    queue: &std_mpsc::Receiver<Job>,
    counters: &Counters,
) {
    let worker = Worker {
        model,
        template,
        settings,
        backend,
        counters,
    };
    let mut slots: Vec<Slot<'_>> = Vec::new();
    // The first context is made now, so the first turn does not pay for it.
    match new_context(model, backend, settings) {
        Ok(context) => slots.push(Slot {
            context,
            tokens: Vec::new(),
            last_used: 0,
        }),
        Err(error) => tracing::warn!(%error, "local llm: could not prepare a context"),
    }
    let mut clock = 0u64;
    while let Ok(job) = queue.recv() {
        if job.cancelled() {
            continue;
        }
        if let Some(timeout) = job.timed_out() {
            job.send(Err(timeout));
            continue;
        }
        clock += 1;
        if let Err(error) = run(worker, &mut slots, clock, &job) {
            job.send(Err(error));
        }
    }
}

fn failure(what: &str) -> impl FnOnce(String) -> ProviderError + '_ {
    move |message| ProviderError::protocol(PROVIDER, format!("{what}: {message}"))
}

/// Length of the common prefix of two token lists.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Picks the slot for `prompt`: the one continuing it (sharing at least half
/// of what it holds), else a new one while there is room, else the least recently used.
fn choose_slot(slots: &[Slot<'_>], prompt: &[LlamaToken], capacity: usize) -> Option<usize> {
    let continuing = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (i, common_prefix(&s.tokens, prompt), s.tokens.len()))
        .filter(|(_, common, held)| *common > 0 && common * 2 >= *held)
        .max_by_key(|(_, common, _)| *common)
        .map(|(i, _, _)| i);
    if continuing.is_some() {
        return continuing;
    }
    if let Some(empty) = slots.iter().position(|s| s.tokens.is_empty()) {
        return Some(empty);
    }
    if slots.len() < capacity {
        return None;
    }
    slots
        .iter()
        .enumerate()
        .min_by_key(|(_, s)| s.last_used)
        .map(|(i, _)| i)
}

fn new_context<'m>(
    model: &'m LlamaModel,
    backend: &'static LlamaBackend,
    settings: &Settings,
) -> Result<LlamaContext<'m>, ProviderError> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context_size))
        .with_n_batch(PROMPT_BATCH as u32)
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads);
    model
        .new_context(backend, params)
        .map_err(|e| failure("creating a context")(e.to_string()))
}

fn format_prompt(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[(&'static str, String)],
) -> Result<Vec<LlamaToken>, ProviderError> {
    let chat = messages
        .iter()
        .map(|(role, content)| chat_message(role, content))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProviderError::protocol(PROVIDER, e.to_string()))?;
    let prompt = model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| failure("applying the chat template")(e.to_string()))?;
    let vocab = model.vocab();
    // Templates that write the begin-of-sequence token themselves must not get a second one.
    let add_bos = vocab.should_add_bos() && {
        let bos = vocab.token_to_piece(vocab.bos(), true, None);
        bos.is_empty() || !prompt.as_bytes().starts_with(&bos)
    };
    Ok(vocab.tokenize(prompt.as_bytes(), add_bos, true))
}

/// Everything the engine thread shares between jobs, except the slots.
#[derive(Clone, Copy)]
struct Worker<'m> {
    model: &'m LlamaModel,
    template: &'m LlamaChatTemplate,
    settings: &'m Settings,
    backend: &'static LlamaBackend,
    counters: &'m Counters,
}

fn run<'m>(worker: Worker<'m>, slots: &mut Vec<Slot<'m>>, clock: u64, job: &Job) -> Result<(), ProviderError> {
    let Worker {
        model,
        template,
        settings,
        backend,
        counters,
    } = worker;
    let prompt = format_prompt(model, template, &job.messages)?;
    let n_ctx = settings.context_size as usize;
    if prompt.is_empty() {
        return Err(ProviderError::protocol(PROVIDER, "the prompt is empty"));
    }
    if prompt.len() + 8 > n_ctx {
        return Err(ProviderError::Config {
            provider: PROVIDER,
            message: format!(
                "the prompt has {} tokens but the context holds {n_ctx}: shorten the history or raise providers.llm.options.context_size",
                prompt.len()
            ),
        });
    }
    let room = u32::try_from(n_ctx - prompt.len()).unwrap_or(u32::MAX);
    let max_new = job.max_tokens.clamp(1, room);

    let index = match choose_slot(slots, &prompt, settings.cache_slots) {
        Some(i) => i,
        None => {
            let context = new_context(model, backend, settings)?;
            slots.push(Slot {
                context,
                tokens: Vec::new(),
                last_used: clock,
            });
            slots.len() - 1
        }
    };
    let slot = &mut slots[index];
    slot.last_used = clock;

    // Keep the shared prefix (at least the last prompt token is read again: its logits start the reply).
    let keep = common_prefix(&slot.tokens, &prompt).min(prompt.len() - 1);
    let kept = u32::try_from(keep).ok();
    if slot.context.kv_cache_seq_rm(0, kept, None).is_err() {
        slot.context.clear_kv_cache();
        slot.tokens.clear();
    } else {
        slot.tokens.truncate(keep);
    }
    let reused = slot.tokens.len();
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters.prompt_tokens.fetch_add(prompt.len() as u64, Ordering::Relaxed);
    counters.reused_tokens.fetch_add(reused as u64, Ordering::Relaxed);

    let mut batch = LlamaBatch::new(PROMPT_BATCH, 1);
    let mut logits_at = 0;
    for chunk in prompt[reused..].chunks(PROMPT_BATCH) {
        if job.cancelled() {
            return Ok(());
        }
        if let Some(timeout) = job.timed_out() {
            return Err(timeout);
        }
        batch.clear();
        let last_chunk = slot.tokens.len() + chunk.len() == prompt.len();
        for (i, &token) in chunk.iter().enumerate() {
            let position = i32::try_from(slot.tokens.len() + i).unwrap_or(i32::MAX);
            let wants_logits = last_chunk && i + 1 == chunk.len();
            batch
                .add(token, position, &[0], wants_logits)
                .map_err(|e| failure("building a batch")(e.to_string()))?;
        }
        if let Err(e) = slot.context.decode(&mut batch) {
            slot.context.clear_kv_cache();
            slot.tokens.clear();
            return Err(failure("reading the prompt")(e.to_string()));
        }
        slot.tokens.extend_from_slice(chunk);
        logits_at = i32::try_from(chunk.len() - 1).unwrap_or(0);
    }
    tracing::debug!(prompt = prompt.len(), reused, "local llm prompt read");

    let mut sampler = sampler(model, job.temperature, settings.seed.wrapping_add(clock as u32));
    let mut budget = ReplyBudget::new(job.stop.clone(), max_new);
    let mut bytes = Vec::new();
    let mut generated = 0u32;
    let vocab = model.vocab();
    let reason = loop {
        if job.cancelled() {
            return Ok(());
        }
        if let Some(timeout) = job.timed_out() {
            return Err(timeout);
        }
        let token = sampler.sample(&slot.context, logits_at);
        generated += 1;
        counters.generated_tokens.fetch_add(1, Ordering::Relaxed);
        if vocab.is_eog(token) {
            let rest = budget.finish();
            if !rest.is_empty() && !job.send(Ok(LlmEvent::Text(rest))) {
                return Ok(());
            }
            break FinishReason::Stop;
        }
        bytes.extend_from_slice(&vocab.token_to_piece(token, false, None));
        let piece = take_utf8(&mut bytes);
        let step = budget.push(&piece);
        if !step.emit.is_empty() && !job.send(Ok(LlmEvent::Text(step.emit))) {
            return Ok(());
        }
        if let Some(reason) = step.finish {
            break reason;
        }
        if generated >= max_new {
            budget.finish_at_limit();
            break FinishReason::Length;
        }
        batch.clear();
        let position = i32::try_from(slot.tokens.len()).unwrap_or(i32::MAX);
        batch
            .add(token, position, &[0], true)
            .map_err(|e| failure("building a batch")(e.to_string()))?;
        if let Err(e) = slot.context.decode(&mut batch) {
            slot.context.clear_kv_cache();
            slot.tokens.clear();
            return Err(failure("generating")(e.to_string()));
        }
        slot.tokens.push(token);
        logits_at = 0;
    };
    let usage = Usage {
        prompt_tokens: u32::try_from(prompt.len()).unwrap_or(u32::MAX),
        completion_tokens: generated,
    };
    if job.send(Ok(LlmEvent::Usage(usage))) {
        job.send(Ok(LlmEvent::Finished(reason)));
    }
    Ok(())
}

fn sampler(model: &LlamaModel, temperature: f32, seed: u32) -> LlamaSampler {
    let penalties = LlamaSampler::penalties(model.n_vocab(), 64, 1.1, 0.0, 0.0);
    if temperature.is_nan() || temperature <= 0.0 {
        return LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()]);
    }
    LlamaSampler::chain_simple([
        penalties,
        LlamaSampler::top_k(40),
        LlamaSampler::top_p(0.95, 1),
        LlamaSampler::min_p(0.05, 1),
        LlamaSampler::temp(temperature),
        LlamaSampler::dist(seed),
    ])
}

/// Takes the longest valid UTF-8 prefix out of `bytes` (a character may span tokens).
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let valid = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        // Invalid bytes (not just an unfinished character): replace them.
        Err(_) => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            bytes.clear();
            return text;
        }
    };
    let rest = bytes.split_off(valid);
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = rest;
    text
}

/// What one generated piece of text leads to.
#[derive(Debug, PartialEq)]
struct BudgetStep {
    /// Text to send now.
    emit: String,
    /// Whether (and why) generation ends here.
    finish: Option<FinishReason>,
}

/// Stop sequences and the reply budget over streamed text.
///
/// Text that might be the start of a stop sequence is held back until it is
/// clear; after the soft limit (three quarters of `max_tokens`) text is held
/// until a sentence ends, and the reply ends there.
struct ReplyBudget {
    stop: Vec<String>,
    pending: String,
    tokens: u32,
    soft_limit: u32,
}

impl ReplyBudget {
    fn new(stop: Vec<String>, max_tokens: u32) -> Self {
        let soft_limit = if max_tokens < MIN_SENTENCE_BUDGET {
            u32::MAX
        } else {
            max_tokens - max_tokens / 4
        };
        Self {
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
            tokens: 0,
            soft_limit,
        }
    }

    fn push(&mut self, piece: &str) -> BudgetStep {
        self.tokens += 1;
        self.pending.push_str(piece);
        if let Some(at) = self.stop.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            self.pending.truncate(at);
            return BudgetStep {
                emit: std::mem::take(&mut self.pending),
                finish: Some(FinishReason::Stop),
            };
        }
        if self.tokens >= self.soft_limit {
            if let Some(end) = sentence_end(&self.pending) {
                let mut emit = std::mem::take(&mut self.pending);
                emit.truncate(end);
                return BudgetStep {
                    emit,
                    finish: Some(FinishReason::Stop),
                };
            }
            return BudgetStep {
                emit: String::new(),
                finish: None,
            };
        }
        // Hold back only what may still become a stop sequence.
        let held = self
            .stop
            .iter()
            .map(|s| longest_suffix_prefix(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - held;
        let rest = self.pending.split_off(cut);
        BudgetStep {
            emit: std::mem::replace(&mut self.pending, rest),
            finish: None,
        }
    }

    /// The model ended by itself: everything held is part of the reply.
    fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// `max_tokens` ran out: an unfinished sentence is dropped.
    fn finish_at_limit(&mut self) {
        self.pending.clear();
    }
}

/// Byte length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

/// Where the first complete sentence of `text` ends (after its punctuation
/// and closing quotes), when the character after it is already known.
fn sentence_end(text: &str) -> Option<usize> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        if c == '\n' && chars.get(i + 1).is_some_and(|(_, n)| *n == '\n') && !text[..at].trim().is_empty() {
            return Some(at);
        }
        if !matches!(c, '.' | '!' | '?' | '…') {
            continue;
        }
        let mut j = i + 1;
        while chars
            .get(j)
            .is_some_and(|(_, n)| matches!(n, '"' | '\'' | '”' | '’' | ')' | '.' | '!' | '?'))
        {
            j += 1;
        }
        match chars.get(j) {
            Some((end, n)) if n.is_whitespace() => return Some(*end),
            _ => {}
        }
    }
    None
}

/// Offline chat with a GGUF model through llama.cpp.
#[derive(Clone)]
pub struct LocalLlm {
    engine: Arc<Engine>,
    default_max_tokens: u32,
    temperature: f32,
    policy: CallPolicy,
    observer: Arc<dyn CallObserver>,
}

impl std::fmt::Debug for LocalLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLlm")
            .field("model", &self.engine.description)
            .finish()
    }
}

impl LocalLlm {
    /// Loads the model (or reuses it when already loaded with the same
    /// settings) and starts its engine thread. Blocking.
    pub fn load(
        config: &LocalLlmConfig,
        policy: CallPolicy,
        observer: Arc<dyn CallObserver>,
    ) -> Result<Self, LocalEngineError> {
        Ok(Self {
            engine: Engine::shared(config)?,
            default_max_tokens: config.default_max_tokens.max(1),
            temperature: config.temperature,
            policy,
            observer,
        })
    }

    /// One line about the loaded model, for start-up logs.
    pub fn describe(&self) -> String {
        self.engine.description.clone()
    }

    /// The GGUF file in use.
    pub fn model_path(&self) -> &Path {
        &self.engine.path
    }

    /// What the engine has done since it was loaded.
    pub fn counters(&self) -> LlmCounters {
        let c = &self.engine.counters;
        LlmCounters {
            requests: c.requests.load(Ordering::Relaxed),
            prompt_tokens: c.prompt_tokens.load(Ordering::Relaxed),
            reused_tokens: c.reused_tokens.load(Ordering::Relaxed),
            generated_tokens: c.generated_tokens.load(Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl LanguageModel for LocalLlm {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    /// Evaluates the prompt into a KV cache slot (one token is sampled and dropped).
    async fn prepare(&self, mut request: ChatRequest) -> Result<(), ProviderError> {
        request.max_tokens = Some(1);
        let mut stream = self.chat(request).await?;
        while let Some(event) = futures_util::StreamExt::next(&mut stream).await {
            event?;
        }
        Ok(())
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        let mut meter = CallMeter::start(self.observer.clone(), PROVIDER, Stage::Llm);
        meter.attempt(1);
        if request.messages.is_empty() {
            let error = ProviderError::protocol(PROVIDER, "no messages to answer");
            meter.finish_with::<()>(&Err(error.clone()));
            return Err(error);
        }
        if !request.tools.is_empty() {
            tracing::debug!(tools = request.tools.len(), "the local model is not offered tools");
        }
        let messages = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::System => ("system", m.content.clone()),
                Role::User => ("user", m.content.clone()),
                Role::Assistant => ("assistant", m.content.clone()),
                Role::Tool => ("user", format!("(tool result) {}", m.content)),
            })
            .collect();
        let (events, receiver) = mpsc::channel(64);
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            messages,
            max_tokens: request.max_tokens.unwrap_or(self.default_max_tokens).max(1),
            temperature: request.temperature.unwrap_or(self.temperature),
            stop: request.stop,
            deadline: self.policy.call_deadline(request.deadline).into_std(),
            timeout: self.policy.total_timeout,
            events,
            cancel: cancel.clone(),
        };
        let sent = self
            .engine
            .jobs
            .lock()
            .map_err(|_| ())
            .and_then(|jobs| jobs.as_ref().ok_or(())?.send(job).map_err(|_| ()));
        if sent.is_err() {
            let error = ProviderError::Unavailable {
                provider: PROVIDER,
                message: "the language model thread has stopped".into(),
            };
            meter.finish_with::<()>(&Err(error.clone()));
            return Err(error);
        }
        Ok(Box::pin(ChatStream {
            events: receiver,
            cancel,
            meter,
            done: false,
        }))
    }
}

/// The reply as a stream; dropping it stops the engine at the next token.
struct ChatStream {
    events: mpsc::Receiver<Result<LlmEvent, ProviderError>>,
    cancel: Arc<AtomicBool>,
    meter: CallMeter,
    done: bool,
}

impl Stream for ChatStream {
    type Item = Result<LlmEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let item = match this.events.poll_recv(cx) {
            Poll::Ready(item) => item,
            Poll::Pending => return Poll::Pending,
        };
        match &item {
            Some(Ok(LlmEvent::Text(text))) => this.meter.received(text.len() as u64, 1),
            Some(Ok(LlmEvent::Finished(_))) => {
                this.meter.finish(CallOutcome::Ok);
                this.done = true;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                this.meter.finish(CallOutcome::Failed(error.outcome_label()));
                this.done = true;
            }
            None => {
                this.done = true;
                this.meter.finish(CallOutcome::Failed("protocol".into()));
                return Poll::Ready(Some(Err(ProviderError::protocol(
                    PROVIDER,
                    "the language model thread stopped mid-reply",
                ))));
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for ChatStream {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_budget(budget: &mut ReplyBudget, pieces: &[&str]) -> (String, Option<FinishReason>) {
        let mut out = String::new();
        for piece in pieces {
            let step = budget.push(piece);
            out.push_str(&step.emit);
            if step.finish.is_some() {
                return (out, step.finish);
            }
        }
        (out, None)
    }

    #[test]
    fn stop_sequences_are_never_half_emitted() {
        let mut budget = ReplyBudget::new(vec!["\nUser:".into()], 100);
        let step = budget.push("Hello there.");
        assert_eq!(step.emit, "Hello there.");
        let step = budget.push("\nUs");
        assert_eq!(step.emit, "", "held: may be the stop sequence");
        let step = budget.push("er: hi");
        assert_eq!(
            step,
            BudgetStep {
                emit: String::new(),
                finish: Some(FinishReason::Stop)
            }
        );

        let mut budget = ReplyBudget::new(vec!["\nUser:".into()], 100);
        let (text, finish) = run_budget(&mut budget, &["A\nUs", "ually fine."]);
        assert_eq!((text.as_str(), finish), ("A\nUsually fine.", None));
    }

    #[test]
    fn past_the_soft_limit_the_reply_ends_with_a_sentence() {
        // max 20 tokens → soft limit at 15.
        let mut budget = ReplyBudget::new(Vec::new(), 20);
        let mut pieces = vec!["word "; 14];
        pieces.extend(["and then", " some. More", " text"]);
        let (text, finish) = run_budget(&mut budget, &pieces);
        assert_eq!(finish, Some(FinishReason::Stop));
        assert!(text.ends_with("and then some."), "{text:?}");

        // The hard limit comes first: the unfinished sentence is dropped.
        let mut budget = ReplyBudget::new(Vec::new(), 20);
        let (text, _) = run_budget(&mut budget, &vec!["word "; 14]);
        let held = budget.push("never ending");
        assert_eq!(held.emit, "");
        budget.finish_at_limit();
        assert_eq!(budget.finish(), "");
        assert_eq!(text, "word ".repeat(14));
    }

    #[test]
    fn sentence_ends_need_the_following_character() {
        assert_eq!(sentence_end("Hello there."), None);
        assert_eq!(sentence_end("Hello there. Next"), Some(12));
        assert_eq!(sentence_end("\"Go!\" she said"), Some(5));
        assert_eq!(sentence_end("Version 3.5 is out"), None);
        assert_eq!(sentence_end("A list\n\nB"), Some(6));
    }

    #[test]
    fn utf8_split_across_tokens_is_joined() {
        let mut bytes = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut bytes), "");
        bytes.extend_from_slice(&"é".as_bytes()[1..]);
        assert_eq!(take_utf8(&mut bytes), "é");
        assert!(bytes.is_empty());
        let mut bad = vec![0xff, b'a'];
        assert_eq!(take_utf8(&mut bad), "\u{fffd}a");
    }

    #[test]
    fn longest_partial_stop_match() {
        assert_eq!(longest_suffix_prefix("abc\nUs", "\nUser:"), 3);
        assert_eq!(longest_suffix_prefix("abc", "\nUser:"), 0);
        assert_eq!(longest_suffix_prefix("x</", "</s>"), 2);
    }
}
