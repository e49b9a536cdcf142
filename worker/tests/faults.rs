//! Fault isolation on one worker: a hung provider fails only its turn, a
//! session whose pump task or engine thread dies leaves the other sessions
//! answering, and a stopped session sends no more heartbeats.
//!
//! Sessions run the real audio engine and brain with fake providers and a
//! transport the test cues (each cue plays a spoken clip in real time).
//! Waits poll with generous deadlines; nothing asserts on how fast a loaded
//! machine is.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use glyphoxa_audio::fixtures::espeak_16k as spoken;
use glyphoxa_audio::{OutputPacket, SessionControl, SpeakerId, INPUT_FRAME_SAMPLES};
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, ToneTts};
use glyphoxa_proto::v1;
use glyphoxa_proto::{ApiError, WorkerApi};
use glyphoxa_worker::fixtures::start_request;
use glyphoxa_worker::fixtures::RecordingGateway;
use glyphoxa_worker::runtime::Providers;
use glyphoxa_worker::service::{TransportFactory, Worker, WorkerSettings};
use glyphoxa_worker::transport::{TransportError, VoiceTransport};
use tokio::sync::mpsc;

/// The player's Discord user id in every session.
const PLAYER: u64 = 1001;
/// How long any awaited thing may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// What the test holds of one session's transport.
#[derive(Clone)]
struct Cue {
    /// Clips for the player to say, one after the other.
    say: mpsc::UnboundedSender<Vec<i16>>,
    /// The engine's control handle, once the transport has started.
    control: Arc<Mutex<Option<SessionControl>>>,
    /// When set, the next output frame panics inside the session's pump.
    break_pump: Arc<AtomicBool>,
    /// Output frames that carried audible audio.
    audible: Arc<AtomicU64>,
}

/// A transport whose one player says whatever the test cues, paced in real
/// time (silence in between: the engine's silence clock ends utterances).
struct CuedTransport {
    cue: Cue,
    clips: Option<mpsc::UnboundedReceiver<Vec<i16>>>,
    feeder: Option<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl VoiceTransport for CuedTransport {
    fn name(&self) -> &'static str {
        "cued"
    }

    fn wants_opus(&self) -> bool {
        false
    }

    async fn start(&mut self, control: SessionControl) -> Result<(), TransportError> {
        let mut input = control
            .attach_speaker(SpeakerId(PLAYER))
            .map_err(|e| TransportError::Connection(e.to_string()))?;
        *self.cue.control.lock().unwrap() = Some(control);
        let mut clips = self
            .clips
            .take()
            .ok_or_else(|| TransportError::Connection("started twice".into()))?;
        self.feeder = Some(tokio::spawn(async move {
            while let Some(clip) = clips.recv().await {
                let mut interval = tokio::time::interval(Duration::from_millis(20));
                for frame in clip.chunks_exact(INPUT_FRAME_SAMPLES) {
                    interval.tick().await;
                    let _ = input.push_frame(frame);
                }
            }
            // Keep the input attached until the session stops.
            std::future::pending::<()>().await;
        }));
        Ok(())
    }

    fn deliver(&mut self, packet: &OutputPacket) {
        if self.cue.break_pump.load(Ordering::Relaxed) {
            panic!("simulated transport failure (this panic is part of the test)");
        }
        self.cue
            .audible
            .fetch_add(u64::from(packet.audible()), Ordering::Relaxed);
    }

    async fn update_voice_server(&mut self, _: &str, _: &str, _: &str) -> Result<(), TransportError> {
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), TransportError> {
        if let Some(feeder) = self.feeder.take() {
            feeder.abort();
        }
        Ok(())
    }
}

/// Makes a cued transport per session and keeps the test's end of it.
#[derive(Default)]
struct Cues(Mutex<HashMap<String, Cue>>);

impl Cues {
    fn get(&self, session_id: &str) -> Cue {
        self.0.lock().unwrap()[session_id].clone()
    }
}

impl TransportFactory for Cues {
    fn create(&self, request: &v1::StartSessionRequest) -> Result<Box<dyn VoiceTransport>, ApiError> {
        let (say, clips) = mpsc::unbounded_channel();
        let cue = Cue {
            say,
            control: Arc::default(),
            break_pump: Arc::default(),
            audible: Arc::default(),
        };
        self.0.lock().unwrap().insert(request.session_id.clone(), cue.clone());
        Ok(Box::new(CuedTransport {
            cue,
            clips: Some(clips),
            feeder: None,
        }))
    }
}

/// The session's turns that went to an NPC, in order.
fn turns_of(gateway: &RecordingGateway, session_id: &str) -> Vec<v1::TurnResult> {
    gateway
        .events()
        .into_iter()
        .filter(|e| e.session_id == session_id)
        .filter_map(|e| match e.event {
            Some(v1::session_event::Event::Turn(turn)) if turn.outcome != v1::TurnOutcome::NoTarget as i32 => {
                Some(turn)
            }
            _ => None,
        })
        .collect()
}

/// The texts of the session's NPC lines.
fn npc_lines_of(gateway: &RecordingGateway, session_id: &str) -> Vec<String> {
    gateway
        .events()
        .into_iter()
        .filter(|e| e.session_id == session_id)
        .filter_map(|e| match e.event {
            Some(v1::session_event::Event::Transcript(line)) if !line.npc_id.is_empty() => Some(line.text),
            _ => None,
        })
        .collect()
}

/// A worker with shared fake providers, cued transports and a recording gateway.
struct Harness {
    worker: Arc<Worker>,
    cues: Arc<Cues>,
    gateway: Arc<RecordingGateway>,
    stt: Arc<ScriptedStt>,
    llm: Arc<ScriptedLlm>,
}

fn harness(settings: impl FnOnce(&mut WorkerSettings)) -> Harness {
    let stt = Arc::new(ScriptedStt::new(vec![], Duration::from_millis(20)));
    let llm = Arc::new(ScriptedLlm::new(
        vec![],
        Duration::from_millis(20),
        Duration::from_millis(5),
    ));
    let providers = Providers {
        stt: stt.clone(),
        llm: llm.clone(),
        tts: Arc::new(ToneTts::new(Duration::from_millis(10), 30)),
    };
    let mut worker_settings = WorkerSettings::new("worker-faults");
    settings(&mut worker_settings);
    let cues = Arc::new(Cues::default());
    let gateway = Arc::new(RecordingGateway::default());
    let worker = Worker::new(worker_settings, providers, cues.clone(), Some(gateway.clone()));
    Harness {
        worker,
        cues,
        gateway,
        stt,
        llm,
    }
}

impl Harness {
    async fn start(&self, session_id: &str) {
        self.worker.start_session(start_request(session_id)).await.unwrap();
    }

    async fn stop(&self, session_id: &str) -> v1::SessionStatus {
        let request = v1::StopSessionRequest {
            session_id: session_id.into(),
            reason: "test".into(),
        };
        tokio::time::timeout(PATIENCE, self.worker.stop_session(request))
            .await
            .expect("StopSession returns")
            .unwrap()
            .session
            .unwrap()
    }

    async fn status(&self, session_id: &str) -> v1::SessionStatus {
        let request = v1::GetStatusRequest {
            session_id: Some(session_id.into()),
        };
        self.worker.get_status(request).await.unwrap().sessions.remove(0)
    }

    /// The player says `clip` in `session_id`; STT will hear `heard`.
    fn say(&self, session_id: &str, clip: &[i16], heard: &str) {
        self.stt.push(Scripted::Answer(heard.into()));
        self.cues.get(session_id).say.send(clip.to_vec()).unwrap();
    }

    /// Waits (polling) until the session has had `count` turns that went to an NPC.
    async fn turns(&self, session_id: &str, count: usize) -> Vec<v1::TurnResult> {
        let gateway = self.gateway.clone();
        let id = session_id.to_string();
        eventually(&format!("{count} turn(s) in {session_id}"), || {
            let turns = turns_of(&gateway, &id);
            (turns.len() >= count).then_some(turns)
        })
        .await
    }
}

/// Polls `check` every 50 ms until it yields, or fails the test after [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_language_model_fails_only_its_turn_and_the_next_turn_is_answered() {
    // Short, so the hang fails soon; long enough for a short reply on a loaded machine.
    let h = harness(|settings| settings.brain.turn_timeout = Duration::from_secs(3));
    let question = spoken("Grimble, what do you have on tap?");
    h.start("s-hang").await;
    let cue = h.cues.get("s-hang");

    h.llm.push(Scripted::Hang);
    h.say("s-hang", &question, "Grimble, what do you have on tap?");
    let turns = h.turns("s-hang", 1).await;
    let audible_before = cue.audible.load(Ordering::Relaxed);
    assert_eq!(turns[0].outcome, v1::TurnOutcome::Failed as i32, "{turns:?}");
    assert_eq!(turns[0].npc_name, "Grimble");
    assert!(turns[0].error.contains("deadline"), "{:?}", turns[0].error);

    // The session goes on: the next question is answered.
    h.llm.push(Scripted::Answer("Aye, friend.".into()));
    h.say("s-hang", &question, "Grimble, are you still there?");
    let turns = h.turns("s-hang", 2).await;
    assert_eq!(turns[1].outcome, v1::TurnOutcome::Spoke as i32, "{turns:?}");
    assert_eq!(turns[1].npc_name, "Grimble");
    assert_eq!(npc_lines_of(&h.gateway, "s-hang"), ["Aye, friend."]);
    assert!(
        cue.audible.load(Ordering::Relaxed) > audible_before,
        "the answer was heard"
    );
    assert!(h.status("s-hang").await.error.is_empty());
    h.stop("s-hang").await;
}

/// Starts `s-ok` and `s-doomed`, breaks `s-doomed` with `kill`, and checks
/// that the worker notices while `s-ok` still answers.
async fn one_broken_session_leaves_the_other_answering(kill: impl FnOnce(&Cue)) {
    let h = harness(|_| {});
    let question = spoken("Grimble, what do you have on tap?");
    h.start("s-ok").await;
    h.start("s-doomed").await;
    assert!(h.status("s-doomed").await.error.is_empty());

    kill(&h.cues.get("s-doomed"));
    let id = "s-doomed";
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = h.status(id).await;
        if !status.error.is_empty() {
            assert!(status.error.contains("stopped"), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the worker never noticed {id} broke");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    h.llm.push(Scripted::Answer("Ale and mead, friend.".into()));
    h.say("s-ok", &question, "Grimble, what do you have on tap?");
    let turns = h.turns("s-ok", 1).await;
    assert_eq!(turns[0].outcome, v1::TurnOutcome::Spoke as i32, "{turns:?}");
    assert_eq!(npc_lines_of(&h.gateway, "s-ok"), ["Ale and mead, friend."]);
    assert!(h.cues.get("s-ok").audible.load(Ordering::Relaxed) > 0);
    let ok = h.status("s-ok").await;
    assert!(ok.error.is_empty(), "{ok:?}");
    assert_eq!(ok.state, v1::SessionState::Active as i32);

    // The broken session still stops cleanly; the healthy one too.
    let doomed = h.stop("s-doomed").await;
    assert_eq!(doomed.state, v1::SessionState::Ended as i32);
    let ok = h.stop("s-ok").await;
    assert_eq!(ok.state, v1::SessionState::Ended as i32);
    assert!(ok.error.is_empty(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_pump_task_panics_leaves_the_other_sessions_answering() {
    one_broken_session_leaves_the_other_answering(|doomed| doomed.break_pump.store(true, Ordering::Relaxed)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_engine_thread_ends_leaves_the_other_sessions_answering() {
    one_broken_session_leaves_the_other_answering(|doomed| {
        let control = doomed.control.lock().unwrap();
        control.as_ref().expect("the transport has started").shutdown().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_session_sends_no_more_heartbeats() {
    let every = Duration::from_millis(100);
    let h = harness(|settings| settings.heartbeat = every);
    h.start("s-stopped").await;
    h.start("s-running").await;
    let gateway = h.gateway.clone();
    eventually("heartbeats from both sessions", || {
        (gateway.heartbeats_of("s-stopped").len() >= 2 && gateway.heartbeats_of("s-running").len() >= 2).then_some(())
    })
    .await;

    h.stop("s-stopped").await;
    let stopped_at = Instant::now();
    let beats_at_stop = gateway.heartbeats_of("s-stopped").len();
    let running_at_stop = gateway.heartbeats_of("s-running").len();
    // Wait for more than two intervals of wall time *and* of heartbeats: the
    // running session's beats show that heartbeats were being sent meanwhile.
    eventually("the running session to keep beating", || {
        let running = gateway.heartbeats_of("s-running").len();
        (stopped_at.elapsed() > every * 3 && running >= running_at_stop + 3).then_some(())
    })
    .await;
    let beats = gateway.heartbeats_of("s-stopped");
    assert_eq!(beats.len(), beats_at_stop, "heartbeats after StopSession");
    assert!(beats.iter().all(|at| *at < stopped_at));
    h.stop("s-running").await;
}
