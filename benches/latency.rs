//! Latency harness: generated speech through the full worker runtime (real
//! audio engine on its realtime clock, NPC brain, loopback transport) with
//! fake providers at fixed latencies, and control RPCs over loopback gRPC.
//!
//! Reports per turn and as p50/p99, each next to its budget (worker issue):
//! (a) the pipeline's own work: VAD end-of-speech decision → first TTS audio
//!     in the mixer, minus the time the provider calls took (the injected
//!     latency and the timer's rounding, measured per call)        ≤ 5 ms p99
//! (b) output delay: first TTS audio in the mixer → its first frame out
//!                                                          ≤ 20 ms + 2 ms p99
//! (c) speech end → first frame with "best published" provider latencies
//!     (STT 250, LLM first token 160, TTS first byte 75 ms)
//!                                     ≤ hangover + 485 ms + 150 ms p50
//! (d) MuteNPC / ListNPCs round trip over loopback gRPC          ≤ 1 ms p99
//!     (that a cut is silent from the next frame is asserted by the audio
//!     engine's tests)
//! plus resident memory per active session (≤ 20 MB).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::{Stream, StreamExt as _};
use glyphoxa_audio::fixtures::espeak_16k as espeak;
use glyphoxa_pipeline::providers::{
    ChatRequest, LanguageModel, LlmStream, PcmStream, ProviderError, SpeechToText, SttRequest, SttSession,
    TextToSpeech, TranscriptEvent, TtsRequest,
};
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use glyphoxa_proto::v1;
use glyphoxa_proto::{ApiError, ClientConfig, GrpcWorkerClient, WorkerApi};
use glyphoxa_worker::fixtures::start_request as request;
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::{TransportFactory, Worker, WorkerSettings};
use glyphoxa_worker::transport::loopback::{LoopbackOutput, LoopbackSpeaker, LoopbackTransport};
use glyphoxa_worker::transport::VoiceTransport;

const STT_MS: u64 = 250;
const LLM_FIRST_TOKEN_MS: u64 = 160;
const TTS_FIRST_BYTE_MS: u64 = 75;
const HANGOVER_MS: f64 = 300.0;
const TURNS: usize = 8;
const SESSIONS_FOR_MEMORY: usize = 8;

/// `TURNS` questions to Grimble, 4 s apart.
fn scene() -> Vec<i16> {
    let question = espeak("Grimble, what do you have on tap tonight?");
    let mut samples = vec![0; 16_000 / 2];
    for _ in 0..TURNS {
        samples.extend(&question);
        samples.extend(std::iter::repeat_n(0, 16_000 * 4));
    }
    samples
}

struct Transports {
    speech: Vec<i16>,
    outputs: std::sync::Mutex<Vec<Arc<std::sync::Mutex<LoopbackOutput>>>>,
}

impl TransportFactory for Transports {
    fn create(&self, _request: &v1::StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
        let transport = LoopbackTransport::new(
            vec![LoopbackSpeaker {
                id: 1001,
                samples: self.speech.clone(),
            }],
            None,
        );
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.push(transport.output());
        }
        Ok(Box::new(transport))
    }
}

/// A gateway that forwards turn results to the harness.
struct Turns(tokio::sync::mpsc::UnboundedSender<v1::TurnResult>);

#[async_trait]
impl glyphoxa_proto::GatewayApi for Turns {
    async fn report_state(&self, _r: v1::ReportStateRequest) -> Result<v1::ReportStateResponse, ApiError> {
        Ok(v1::ReportStateResponse {})
    }
    async fn heartbeat(&self, _r: v1::HeartbeatRequest) -> Result<v1::HeartbeatResponse, ApiError> {
        Ok(v1::HeartbeatResponse {
            state: v1::SessionState::Active as i32,
        })
    }
    async fn report_events(
        &self,
        mut events: glyphoxa_proto::SessionEventStream,
    ) -> Result<v1::ReportEventsResponse, ApiError> {
        use futures_util::StreamExt;
        while let Some(Ok(event)) = events.next().await {
            if let Some(v1::session_event::Event::Turn(turn)) = event.event {
                let _ = self.0.send(turn);
            }
        }
        Ok(v1::ReportEventsResponse::default())
    }
}

/// How long each provider call really took (injected latency plus the
/// timer's rounding), in call order: (a) subtracts these, not the nominal
/// figures, so it holds only the pipeline's own time.
#[derive(Default)]
struct ProviderTimes {
    /// End of the utterance's audio → final transcript.
    stt: Mutex<Vec<f64>>,
    /// `chat` → first event.
    llm: Mutex<Vec<f64>>,
    /// `synthesize` → first chunk.
    tts: Mutex<Vec<f64>>,
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn record(log: &Mutex<Vec<f64>>, ms: f64) {
    if let Ok(mut log) = log.lock() {
        log.push(ms);
    }
}

/// A stream that records when its first item arrives.
fn timing_first<S: Stream + Send + Unpin + 'static>(
    stream: S,
    start: Instant,
    times: Arc<ProviderTimes>,
    log: fn(&ProviderTimes) -> &Mutex<Vec<f64>>,
) -> impl Stream<Item = S::Item> {
    let mut first = true;
    stream.inspect(move |_| {
        if std::mem::take(&mut first) {
            record(log(&times), ms_since(start));
        }
    })
}

struct Timed<P> {
    inner: P,
    times: Arc<ProviderTimes>,
}

#[async_trait]
impl SpeechToText for Timed<ScriptedStt> {
    fn name(&self) -> &'static str {
        "timed-stt"
    }

    async fn open(&self, request: SttRequest) -> Result<SttSession, ProviderError> {
        let mut inner = self.inner.open(request).await?;
        let times = Arc::clone(&self.times);
        Ok(SttSession::spawn("timed-stt", move |mut audio, events| async move {
            while let Some(chunk) = audio.recv().await {
                if inner.send_audio(&chunk).await.is_err() {
                    break;
                }
            }
            inner.finish_audio();
            let start = Instant::now();
            while let Some(event) = inner.next_event().await {
                if matches!(event, Ok(TranscriptEvent::Final(_))) {
                    record(&times.stt, ms_since(start));
                }
                if events.send(event).await.is_err() {
                    break;
                }
            }
        }))
    }
}

#[async_trait]
impl LanguageModel for Timed<ScriptedLlm> {
    fn name(&self) -> &'static str {
        "timed-llm"
    }

    async fn chat(&self, request: ChatRequest) -> Result<LlmStream, ProviderError> {
        let start = Instant::now();
        let stream = self.inner.chat(request).await?;
        Ok(timing_first(stream, start, Arc::clone(&self.times), |t| &t.llm).boxed())
    }
}

#[async_trait]
impl TextToSpeech for Timed<ToneTts> {
    fn name(&self) -> &'static str {
        "timed-tts"
    }

    async fn synthesize(&self, request: TtsRequest) -> Result<PcmStream, ProviderError> {
        let start = Instant::now();
        let stream = self.inner.synthesize(request).await?;
        Ok(timing_first(stream, start, Arc::clone(&self.times), |t| &t.tts).boxed())
    }
}

fn providers(times: &Arc<ProviderTimes>) -> Providers {
    // The first sentence is one token, and the rest of the reply follows at
    // once: no model streaming time is hidden in (a).
    let reply = "Aye. Ale and mead, three copper.";
    Providers {
        stt: Arc::new(Timed {
            inner: ScriptedStt::new(
                (0..64)
                    .map(|_| Scripted::Answer("Grimble, what do you have on tap tonight?".into()))
                    .collect(),
                Duration::from_millis(STT_MS),
            ),
            times: Arc::clone(times),
        }),
        llm: Arc::new(Timed {
            inner: ScriptedLlm::new(
                (0..64).map(|_| Scripted::Answer(reply.into())).collect(),
                Duration::from_millis(LLM_FIRST_TOKEN_MS),
                Duration::ZERO,
            ),
            times: Arc::clone(times),
        }),
        tts: Arc::new(Timed {
            inner: ToneTts::new(Duration::from_millis(TTS_FIRST_BYTE_MS), 30),
            times: Arc::clone(times),
        }),
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "OK"
    } else {
        "OVER BUDGET"
    }
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1_048_576.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test harness probes
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (turn_tx, mut turn_rx) = tokio::sync::mpsc::unbounded_channel();
        let transports = Arc::new(Transports {
            speech: scene(),
            outputs: std::sync::Mutex::new(Vec::new()),
        });
        let times = Arc::new(ProviderTimes::default());
        let worker = Worker::new(WorkerSettings::new("bench"), providers(&times), transports.clone(), Some(Arc::new(Turns(turn_tx))));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let api: Arc<dyn WorkerApi> = worker.clone();
        tokio::spawn(glyphoxa_proto::server::serve_worker(api, listener, std::future::pending()));
        let client = GrpcWorkerClient::connect(&address, ClientConfig::with_deadline(Duration::from_secs(5))).await.expect("client");
        client.start_session(request("latency")).await.expect("session starts");

        println!("latency harness: {TURNS} turns, injected STT {STT_MS} ms, LLM first token {LLM_FIRST_TOKEN_MS} ms, TTS first byte {TTS_FIRST_BYTE_MS} ms, hangover {HANGOVER_MS} ms");
        println!("{:>4} {:>10} {:>10} {:>12} {:>10}", "turn", "own (a)", "out (b)", "total (c)", "vad");
        let injected = (STT_MS + LLM_FIRST_TOKEN_MS + TTS_FIRST_BYTE_MS) as f64;
        let (mut own, mut out, mut total, mut vad) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(TURNS as u64 * 5 + 20);
        while own.len() < TURNS && Instant::now() < deadline {
            let Ok(Some(turn)) = tokio::time::timeout(Duration::from_secs(10), turn_rx.recv()).await else { break };
            if turn.outcome != v1::TurnOutcome::Spoke as i32 {
                continue;
            }
            let Some(l) = turn.latencies else { continue };
            let (Some(v), Some(audio), Some(frame)) = (l.vad_end_of_speech_ms, l.tts_first_audio_ms, l.first_frame_out_ms) else { continue };
            // What this turn's calls really took: the turns are 4 s apart, so
            // the latest call of each kind is this turn's.
            let last = |log: &Mutex<Vec<f64>>| log.lock().ok().and_then(|l| l.last().copied()).unwrap_or(f64::NAN);
            let provided = last(&times.stt) + last(&times.llm) + last(&times.tts);
            let a = (audio - v) - provided;
            let b = frame - audio;
            own.push(a);
            out.push(b);
            total.push(frame);
            vad.push(v);
            println!("{:>4} {:>8.2}ms {:>8.2}ms {:>10.1}ms {:>8.0}ms", own.len(), a, b, frame, v);
        }
        let c_budget = HANGOVER_MS + injected + 150.0;
        println!(
            "(a) pipeline's own work   p50 {:>7.2} ms  p99 {:>7.2} ms   budget ≤ 5 ms p99         {}",
            percentile(&own, 0.5),
            percentile(&own, 0.99),
            verdict(percentile(&own, 0.99) <= 5.0)
        );
        println!(
            "(b) output delay          p50 {:>7.2} ms  p99 {:>7.2} ms   budget ≤ 22 ms p99        {}",
            percentile(&out, 0.5),
            percentile(&out, 0.99),
            verdict(percentile(&out, 0.99) <= 22.0)
        );
        println!(
            "(c) speech end → frame    p50 {:>7.1} ms  p99 {:>7.1} ms   budget ≤ {c_budget:.0} ms p50      {}",
            percentile(&total, 0.5),
            percentile(&total, 0.99),
            verdict(percentile(&total, 0.5) <= c_budget)
        );
        println!("    VAD detection delay   mean {:>6.1} ms (part of (c); tune with audio.vad.hangover_ms)", vad.iter().sum::<f64>() / vad.len().max(1) as f64);

        // (d) control RPCs over loopback gRPC.
        let mut rpc = Vec::new();
        for i in 0..400 {
            let started = Instant::now();
            if i % 2 == 0 {
                client.list_npcs(v1::ListNpcsRequest { session_id: "latency".into() }).await.expect("list");
            } else {
                client
                    .mute_npc(v1::MuteNpcRequest {
                        session_id: "latency".into(),
                        name: "Elara".into(),
                    })
                    .await
                    .expect("mute");
            }
            rpc.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "(d) MuteNPC/ListNPCs RPC  p50 {:>7.3} ms  p99 {:>7.3} ms   budget ≤ 1 ms p99         {}",
            percentile(&rpc, 0.5),
            percentile(&rpc, 0.99),
            verdict(percentile(&rpc, 0.99) <= 1.0)
        );
        let _ = client.stop_session(v1::StopSessionRequest { session_id: "latency".into(), reason: "done".into() }).await;

        // Memory: resident size per active session (no local models loaded).
        let before = rss_mb();
        let silent = Arc::new(Transports {
            speech: vec![0; 16_000],
            outputs: std::sync::Mutex::new(Vec::new()),
        });
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let idle = Worker::new(WorkerSettings::new("memory"), providers(&Arc::default()), silent, Some(Arc::new(Turns(tx))));
        for i in 0..SESSIONS_FOR_MEMORY {
            idle.start_session(request(&format!("m{i}"))).await.expect("session");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_session = (rss_mb() - before) / SESSIONS_FOR_MEMORY as f64;
        println!(
            "memory: {per_session:.1} MB resident per active session ({SESSIONS_FOR_MEMORY} sessions)   budget ≤ 20 MB   {}",
            verdict(per_session <= 20.0)
        );
        idle.stop_all("bench done").await;
    });
}
