//! The NPC brain end to end with fake providers and a simulated mixer, on
//! tokio's paused clock (deterministic timing).

use std::sync::Arc;
use std::time::Duration;

use glyphoxa_pipeline::campaign::Campaign;
use glyphoxa_pipeline::knowledge::{Knowledge, KnownEntity};
use glyphoxa_pipeline::orchestrator::{
    spawn_session, SessionEvent, SessionHandle, SessionServices, SessionSettings, SpeechInput,
};
use glyphoxa_pipeline::providers::Role;
use glyphoxa_pipeline::roster::{NpcId, Roster};
use glyphoxa_pipeline::testing::{Scripted, ScriptedLlm, ScriptedStt, SimulatedPlayback, ToneTts};
use glyphoxa_pipeline::timing::{TurnOutcome, TurnResult};
use glyphoxa_pipeline::transcript::{EntryKind, MemoryTranscript};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{sleep, Instant};

const STT_LATENCY: Duration = Duration::from_millis(200);
const TTS_LATENCY: Duration = Duration::from_millis(60);
/// The VAD's hangover in these tests: an utterance ends this long after the voice.
const HANGOVER: Duration = Duration::from_millis(300);

struct Harness {
    session: SessionHandle,
    events: UnboundedReceiver<SessionEvent>,
    stt: Arc<ScriptedStt>,
    llm: Arc<ScriptedLlm>,
    tts: Arc<ToneTts>,
    playback: Arc<SimulatedPlayback>,
    transcript: Arc<MemoryTranscript>,
    /// Events other than turns, in order.
    others: Vec<SessionEvent>,
}

fn answer(text: &str) -> Scripted<String> {
    Scripted::Answer(text.to_string())
}

fn harness(llm_first_token: Duration) -> Harness {
    let campaign = Campaign::example();
    let stt = Arc::new(ScriptedStt::new(vec![], STT_LATENCY));
    let llm = Arc::new(ScriptedLlm::new(vec![], llm_first_token, Duration::from_millis(30)));
    let tts = Arc::new(ToneTts::new(TTS_LATENCY, 60));
    let playback = SimulatedPlayback::start(400.0);
    let transcript = Arc::new(MemoryTranscript::default());
    let mut settings = SessionSettings::new("s-1", campaign.campaign.clone());
    settings.dm_user_id = Some("dm".into());
    let (session, events, _task) = spawn_session(
        settings,
        Roster::from_definitions(&campaign.npcs),
        Knowledge::from_entities(&campaign.entities),
        SessionServices {
            stt: stt.clone(),
            llm: llm.clone(),
            tts: tts.clone(),
            playback: playback.clone(),
            transcript: transcript.clone(),
        },
    );
    session.set_speaker_name("alice", "Alice").unwrap();
    session.set_speaker_name("bob", "Bob").unwrap();
    session.set_speaker_name("dm", "The DM").unwrap();
    Harness {
        session,
        events,
        stt,
        llm,
        tts,
        playback,
        transcript,
        others: Vec::new(),
    }
}

impl Harness {
    /// `speaker` talks for `ms`, then the VAD decides after the hangover; the
    /// STT fake will transcribe it as `text`.
    async fn say(&self, speaker: &str, text: &str, ms: u64) -> Instant {
        self.stt.push(answer(text));
        let start = Instant::now();
        self.session
            .speech(SpeechInput::Started {
                speaker: speaker.into(),
                at: start,
            })
            .unwrap();
        sleep(Duration::from_millis(ms)).await;
        let voice_end = Instant::now();
        self.session
            .speech(SpeechInput::VoicingStopped {
                speaker: speaker.into(),
                at: voice_end,
            })
            .unwrap();
        sleep(HANGOVER).await;
        self.session
            .speech(SpeechInput::Ended {
                speaker: speaker.into(),
                audio: vec![0; (ms * 16) as usize],
                voice_start: start,
                voice_end,
                decided_at: Instant::now(),
            })
            .unwrap();
        voice_end
    }

    async fn turns(&mut self) -> Vec<TurnResult> {
        self.session.idle().await.unwrap();
        let mut turns = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match event {
                SessionEvent::Turn(turn) => turns.push(turn),
                other => self.others.push(other),
            }
        }
        turns
    }

    /// Waits for every turn to finish and for the coalesce window to pass,
    /// so the next utterance is a new one.
    async fn pause(&mut self) -> Vec<TurnResult> {
        let turns = self.turns().await;
        sleep(Duration::from_millis(700)).await;
        turns
    }
}

fn grimble() -> NpcId {
    NpcId::from_name("Grimble")
}

#[tokio::test(start_paused = true)]
async fn reply_streams_sentence_by_sentence_and_commits_what_was_heard() {
    let mut h = harness(Duration::from_millis(150));
    let reply = "Welcome to the Sleeping Giant. Ale is three copper. Mead costs five, and it is worth every coin.";
    h.llm.push(answer(reply));
    let voice_end = h.say("alice", "Grimble, what do you have on tap?", 1200).await;
    let turns = h.turns().await;
    assert_eq!(turns.len(), 1, "{turns:?}");
    let turn = &turns[0];
    assert_eq!(turn.outcome, TurnOutcome::Spoke);
    assert_eq!(turn.npc, Some(grimble()));
    assert_eq!(turn.reply_heard, reply);
    assert_eq!(turn.transcript, "Grimble, what do you have on tap?");

    // TTS started on the first sentence while the model was still writing.
    let t = turn.timings;
    let words = reply.split_whitespace().count() as u32;
    let llm_done = t.llm_first_token.unwrap() + Duration::from_millis(30) * (words - 1);
    assert!(t.tts_first_audio.unwrap() < llm_done, "TTS waited for the whole reply");
    assert_eq!(h.tts.requests()[0].text, "Welcome to the Sleeping Giant.");
    assert_eq!(h.tts.requests().len(), 3);
    // Every stage is stamped, in order.
    assert_eq!(t.speech_end, Some(voice_end));
    let stages = [
        t.speech_end,
        t.vad_end,
        t.stt_final,
        t.llm_first_token,
        t.first_sentence,
        t.tts_first_audio,
        t.first_frame,
    ];
    assert!(stages.iter().all(Option::is_some), "{t:?}");
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    assert_eq!(t.latencies().vad_ms, Some(HANGOVER.as_millis() as f64));
    assert_eq!(t.latencies().stt_ms, Some(STT_LATENCY.as_millis() as f64));
    assert!(
        t.latencies().first_frame_ms.unwrap() <= 20.0,
        "first audio waits at most one tick"
    );

    // The prompt carried Grimble's persona and the player's words.
    let request = &h.llm.requests()[0];
    assert_eq!(request.messages[0].role, Role::System);
    assert!(request.messages[0].content.contains("You are Grimble"));
    assert_eq!(
        request.messages.last().unwrap().content,
        "Alice: Grimble, what do you have on tap?"
    );

    // Transcript: the player's line, then the NPC's line as heard.
    let entries = h.transcript.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].kind, entries[0].speaker_name.as_str()),
        (EntryKind::Utterance, "Alice")
    );
    assert_eq!((entries[1].kind, entries[1].text.as_str()), (EntryKind::Spoke, reply));
    assert_eq!(entries[1].npc_id, Some(grimble()));
}

#[tokio::test(start_paused = true)]
async fn each_npcs_prompt_is_prepared_when_the_session_starts() {
    let mut h = harness(Duration::from_millis(100));
    h.turns().await;
    let prepared = h.llm.prepared();
    assert_eq!(prepared.len(), 3, "one per NPC of the example campaign");
    for (request, name) in prepared.iter().zip(["Grimble", "Elara", "Chronicler"]) {
        assert_eq!(request.messages.len(), 1, "the system prompt alone");
        assert!(request.messages[0].content.contains(&format!("You are {name}")));
    }
    // A turn's prompt starts with the prepared system prompt's persona part.
    h.llm.push(answer("Ale."));
    h.say("alice", "Grimble, what do you have on tap?", 1000).await;
    h.turns().await;
    let asked = &h.llm.requests()[0].messages[0].content;
    let persona = prepared[0].messages[0].content.lines().next().unwrap();
    assert!(asked.starts_with(persona), "{asked}");
}

#[tokio::test(start_paused = true)]
async fn prompts_are_not_prepared_while_a_player_speaks() {
    let mut h = harness(Duration::from_millis(100));
    h.session
        .speech(SpeechInput::Started {
            speaker: "alice".into(),
            at: Instant::now(),
        })
        .unwrap();
    sleep(Duration::from_millis(800)).await;
    assert!(h.llm.prepared().is_empty(), "prepared while Alice spoke");
    h.session
        .speech(SpeechInput::VoicingStopped {
            speaker: "alice".into(),
            at: Instant::now(),
        })
        .unwrap();
    h.stt.push(answer("mhm"));
    h.session
        .speech(SpeechInput::Ended {
            speaker: "alice".into(),
            audio: vec![0; 16_000],
            voice_start: Instant::now() - Duration::from_millis(800),
            voice_end: Instant::now(),
            decided_at: Instant::now(),
        })
        .unwrap();
    h.turns().await;
    sleep(Duration::from_millis(500)).await;
    assert_eq!(h.llm.prepared().len(), 3, "prepared once the table was quiet");
}

#[tokio::test(start_paused = true)]
async fn a_reply_of_stage_directions_only_fails_and_says_what_the_model_wrote() {
    let mut h = harness(Duration::from_millis(100));
    h.llm.push(answer("*nods silently*"));
    h.say("alice", "Grimble, what do you have on tap?", 1000).await;
    let turns = h.turns().await;
    assert_eq!(turns[0].outcome, TurnOutcome::Failed);
    let error = turns[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no speakable text") && error.contains("*nods silently*"),
        "{error}"
    );
    assert!(h.tts.requests().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_players_name_label_echoed_by_the_model_is_not_spoken() {
    let mut h = harness(Duration::from_millis(100));
    h.llm.push(answer("Bob: Ale is three copper."));
    h.say("alice", "Grimble, what do you have on tap?", 1000).await;
    let turns = h.turns().await;
    assert_eq!(turns[0].reply_heard, "Ale is three copper.");
    assert_eq!(h.tts.requests()[0].text, "Ale is three copper.");
}

#[tokio::test(start_paused = true)]
async fn barge_in_after_the_confirm_window_cuts_and_commits_only_the_heard_text() {
    let mut h = harness(Duration::from_millis(100));
    let reply =
        "Listen well, for this tale is long. The mine was lost a century ago. Nobody who went looking came back.";
    h.llm.push(answer(reply));
    h.say("alice", "Grimble, tell me about the mine", 1000).await;
    // Wait until Grimble is audible, then let him talk for a while.
    while !h.playback.is_audible(&grimble()) {
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(1500)).await;
    let interrupt_at = Instant::now();
    h.llm.push(answer("Fine, fine."));
    h.say("bob", "Grimble, stop, we get it", 900).await;
    let turns = h.turns().await;
    let cut = &turns[0];
    assert_eq!(cut.outcome, TurnOutcome::Cut);
    assert!(!cut.reply_heard.is_empty());
    // A cut turn keeps every stage it reached, the model's first token too.
    let t = cut.timings;
    assert!(t.llm_first_token.is_some() && t.first_frame.is_some(), "{t:?}");
    assert!(
        reply.starts_with(&cut.reply_heard) && cut.reply_heard.len() < reply.len(),
        "{:?}",
        cut.reply_heard
    );
    // Cut within one frame of the confirm window.
    let (cut_at, whom) = h.playback.cuts()[0].clone();
    assert_eq!(whom, Some(grimble()));
    let confirm = interrupt_at + Duration::from_millis(250);
    assert!(
        cut_at >= confirm && cut_at - confirm <= Duration::from_millis(20),
        "cut {:?} after confirm",
        cut_at - confirm
    );
    // Nothing of Grimble is heard after the cut until his next reply.
    let after_cut = h
        .playback
        .frames()
        .into_iter()
        .filter(|f| f.at > cut_at && f.at < cut_at + Duration::from_millis(400));
    assert!(after_cut.into_iter().all(|f| f.owner.is_none()));
    // The transcript and the history hold the cut text, marked as cut.
    let npc_lines: Vec<_> = h
        .transcript
        .entries()
        .into_iter()
        .filter(|e| e.npc_id.is_some())
        .collect();
    assert_eq!(
        (npc_lines[0].kind, npc_lines[0].text.as_str()),
        (EntryKind::Cut, cut.reply_heard.as_str())
    );
    let second_prompt = &h.llm.requests()[1].messages;
    assert!(second_prompt
        .iter()
        .any(|m| m.role == Role::Assistant && m.content.ends_with('—')));
    assert_eq!(
        turns[1].outcome,
        TurnOutcome::Spoke,
        "Bob's utterance got its own answer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_short_overlap_does_not_cut() {
    let mut h = harness(Duration::from_millis(100));
    let reply = "Three copper for the ale. Five for the mead.";
    h.llm.push(answer(reply));
    h.say("alice", "Grimble, prices?", 800).await;
    while !h.playback.is_audible(&grimble()) {
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(300)).await;
    h.say("bob", "mhm", 150).await;
    let turns = h.turns().await;
    assert!(h.playback.cuts().is_empty());
    let grimble_turn = turns.iter().find(|t| t.npc.is_some()).unwrap();
    assert_eq!(grimble_turn.outcome, TurnOutcome::Spoke);
    assert_eq!(grimble_turn.reply_heard, reply);
    let backchannel = turns.iter().find(|t| t.transcript == "mhm").unwrap();
    assert_eq!(backchannel.outcome, TurnOutcome::NoTarget);
}

#[tokio::test(start_paused = true)]
async fn two_segments_of_one_utterance_make_one_turn() {
    // The player pauses 400 ms (longer than the hangover, shorter than the
    // coalesce window) and is talking again before the first part is handled.
    let mut h = harness(Duration::from_millis(300));
    h.llm.push(answer("Ale, mead and goat milk."));
    h.say("alice", "Grimble,", 500).await;
    sleep(Duration::from_millis(100)).await;
    h.say("alice", "what's on tap tonight?", 900).await;
    let turns = h.turns().await;
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].transcript, "Grimble, what's on tap tonight?");
    assert_eq!(turns[0].reply_heard, "Ale, mead and goat milk.");
    assert_eq!(h.llm.requests().len(), 1);
    assert_eq!(
        h.llm.requests()[0].messages.last().unwrap().content,
        "Alice: Grimble, what's on tap tonight?"
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_segment_joins_a_turn_that_is_still_thinking() {
    // The first part is already being answered (the model is slow) when the
    // second part arrives: the running turn is replaced by one for both.
    let mut h = harness(Duration::from_millis(1500));
    h.llm.push(answer("Never mind."));
    h.llm.push(answer("Ale, mead and goat milk."));
    h.say("alice", "Grimble,", 500).await;
    sleep(Duration::from_millis(250)).await; // the turn has started; the model thinks
    h.say("alice", "what's on tap?", 200).await;
    let turns = h.turns().await;
    assert_eq!(turns.len(), 1, "{turns:?}");
    assert_eq!(turns[0].transcript, "Grimble, what's on tap?");
    assert_eq!(turns[0].reply_heard, "Ale, mead and goat milk.");
    assert_eq!(h.llm.requests().len(), 2, "the first request was cancelled");
    assert!(h
        .playback
        .frames()
        .iter()
        .all(|f| f.owner.is_none() || turns[0].timings.first_frame.is_some_and(|t| f.at >= t)));
}

#[tokio::test(start_paused = true)]
async fn a_provider_error_fails_only_that_turn() {
    let mut h = harness(Duration::from_millis(100));
    h.llm.push(Scripted::Fail("model overloaded".into()));
    h.say("alice", "Grimble, hello", 600).await;
    let mut turns = h.pause().await;
    h.llm.push(answer("Hello yourself."));
    h.say("alice", "Grimble, hello again", 600).await;
    turns.extend(h.turns().await);
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].outcome, TurnOutcome::Failed);
    assert!(turns[0].error.as_deref().unwrap().contains("model overloaded"));
    assert_eq!(turns[1].outcome, TurnOutcome::Spoke);
    assert_eq!(turns[1].reply_heard, "Hello yourself.");

    // A TTS failure and a hung model fail their turns too.
    h.tts.fail_on("cursed");
    h.pause().await;
    h.llm.push(answer("This sentence is cursed."));
    h.say("alice", "Grimble, say something", 600).await;
    let mut turns = h.pause().await;
    h.llm.push(Scripted::Hang);
    h.say("alice", "Grimble?", 400).await;
    turns.extend(h.pause().await); // the turn runs into its deadline
    h.llm.push(answer("Still here."));
    h.say("alice", "Grimble, you there?", 400).await;
    turns.extend(h.turns().await);
    let outcomes: Vec<_> = turns.iter().map(|t| t.outcome).collect();
    assert_eq!(
        outcomes,
        [TurnOutcome::Failed, TurnOutcome::Failed, TurnOutcome::Spoke],
        "{turns:?}"
    );
    assert!(
        turns[1].error.as_deref().unwrap().contains("deadline"),
        "{:?}",
        turns[1].error
    );
}

#[tokio::test(start_paused = true)]
async fn mute_cuts_within_a_frame_and_controls_report_counts() {
    let mut h = harness(Duration::from_millis(100));
    h.llm.push(answer(
        "Let me tell you a very long story about my grandfather and his beard.",
    ));
    h.say("alice", "Grimble, a story please", 600).await;
    while !h.playback.is_audible(&grimble()) {
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(500)).await;
    let muted_at = Instant::now();
    assert_eq!(h.session.set_muted("grimble", true).await, Ok(true));
    assert_eq!(h.session.set_muted("GRIMBLE", true).await, Ok(false), "already muted");
    let turns = h.turns().await;
    let first_silent = h
        .playback
        .frames()
        .into_iter()
        .find(|f| f.at >= muted_at)
        .map(|f| f.owner);
    assert_eq!(first_silent, Some(None), "the next frame after the mute is silent");
    assert_eq!(turns[0].outcome, TurnOutcome::Cut);
    assert!(h.session.set_muted("Nobody", true).await.is_err());

    // Muted NPCs never answer.
    h.pause().await;
    h.say("alice", "Grimble, are you there?", 500).await;
    let turns = h.turns().await;
    assert_eq!(turns[0].outcome, TurnOutcome::NoTarget);
    assert_eq!(h.llm.requests().len(), 1);

    let list = h.session.list().await.unwrap();
    assert_eq!(list.iter().filter(|n| n.muted).count(), 1);
    assert_eq!(h.session.set_all_muted(true).await, Ok(list.len() - 1));
    assert_eq!(h.session.set_all_muted(false).await, Ok(list.len()));
    assert_eq!(h.session.set_all_muted(false).await, Ok(0));
    h.turns().await;
    let changes: Vec<_> = h
        .others
        .iter()
        .filter_map(|e| match e {
            SessionEvent::NpcState(state) => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1 + (list.len() - 1) + list.len());
}

#[tokio::test(start_paused = true)]
async fn puppet_lines_use_tts_only_and_are_transcribed() {
    let mut h = harness(Duration::from_millis(100));
    h.session
        .speak("Elara", "Gather round, friends! A song.")
        .await
        .unwrap();
    let turns = h.turns().await;
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].outcome, TurnOutcome::Spoke);
    assert_eq!(turns[0].reply_heard, "Gather round, friends! A song.");
    assert!(h.llm.requests().is_empty(), "a puppet line needs no model");
    assert_eq!(h.tts.requests().len(), 2);
    let line = &h.transcript.entries()[0];
    assert_eq!((line.kind, line.speaker_name.as_str()), (EntryKind::Spoke, "Elara"));
    assert!(h.session.speak("Nobody", "hi").await.is_err());
    assert!(h.session.speak("Elara", "  ").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn dm_voice_commands_come_from_the_dm_only() {
    let mut h = harness(Duration::from_millis(100));
    h.say("dm", "Mute Grimble.", 700).await;
    let turns = h.turns().await;
    assert!(turns.is_empty(), "a command is not a turn: {turns:?}");
    assert!(h
        .session
        .list()
        .await
        .unwrap()
        .iter()
        .any(|n| n.name == "Grimble" && n.muted));
    h.say("dm", "Everyone continue.", 700).await;
    h.turns().await;
    assert!(h.session.list().await.unwrap().iter().all(|n| !n.muted));

    h.llm.push(answer("Mute? Me? Never."));
    h.say("alice", "Mute Grimble", 600).await;
    let turns = h.turns().await;
    assert_eq!(
        turns[0].npc,
        Some(grimble()),
        "a player's 'mute Grimble' is speech to Grimble"
    );

    h.say("dm", "Elara, say The candles flicker.", 900).await;
    let turns = h.turns().await;
    assert_eq!(turns[0].reply_heard, "The candles flicker.");
    assert_eq!(h.llm.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn continuation_and_expiry() {
    let mut h = harness(Duration::from_millis(50));
    h.llm.push(answer("Aye."));
    h.llm.push(answer("Aye again."));
    h.say("alice", "Elara, sing!", 500).await;
    let mut turns = h.pause().await;
    h.say("alice", "and another one", 500).await;
    turns.extend(h.turns().await);
    assert_eq!(turns[1].npc, Some(NpcId::from_name("Elara")));
    sleep(Duration::from_secs(31)).await;
    h.say("alice", "and another one", 500).await;
    let turns = h.turns().await;
    assert_eq!(turns[0].outcome, TurnOutcome::NoTarget);
}

#[tokio::test(start_paused = true)]
async fn knowledge_updates_reach_prompts_and_stt_hints() {
    let mut h = harness(Duration::from_millis(50));
    let dragon = glyphoxa_pipeline::campaign::Entity {
        name: "Venomfang".into(),
        kind: glyphoxa_pipeline::campaign::EntityKind::Npc,
        description: "A green dragon lairing in Thundertree.".into(),
        tags: vec![],
        properties: Default::default(),
        relationships: vec![],
    };
    let count = h
        .session
        .update_knowledge(
            vec![KnownEntity {
                id: "e-42".into(),
                entity: dragon,
            }],
            vec!["item:dwarven ale".into()],
        )
        .await
        .unwrap();
    assert_eq!(count, Campaign::example().entities.len());
    assert!(h.session.keywords().await.unwrap().contains(&"Venomfang".to_string()));
    h.llm.push(answer("A dragon, they say."));
    h.say("alice", "Grimble, have you heard of Venomfang?", 800).await;
    h.turns().await;
    let system = &h.llm.requests()[0].messages[0].content;
    assert!(system.contains("Venomfang (npc): A green dragon"), "{system}");
    assert!(!system.contains("Dwarven Ale"));
    let (stt_request, samples) = &h.stt.requests()[0];
    assert!(stt_request.keywords.contains(&"Grimble".to_string()));
    assert!(stt_request.keywords.contains(&"Venomfang".to_string()));
    assert_eq!(*samples, 800 * 16);
}

#[tokio::test(start_paused = true)]
async fn stop_cuts_the_running_turn_and_ends_the_session() {
    let mut h = harness(Duration::from_millis(50));
    h.llm
        .push(answer("A long long long long long long long long long long story."));
    h.say("alice", "Grimble, story", 500).await;
    while !h.playback.is_audible(&grimble()) {
        sleep(Duration::from_millis(10)).await;
    }
    h.session.stop().await.unwrap();
    let mut outcomes = Vec::new();
    while let Some(event) = h.events.recv().await {
        if let SessionEvent::Turn(turn) = event {
            outcomes.push(turn.outcome);
        }
    }
    assert_eq!(outcomes, [TurnOutcome::Cut]);
    assert!(h.session.list().await.is_err(), "the session is over");
}

#[tokio::test(start_paused = true)]
async fn recap_uses_the_model_and_falls_back_to_the_transcript() {
    use glyphoxa_pipeline::recap::{recap, RecapSource};
    let mut h = harness(Duration::from_millis(50));
    h.llm.push(answer("Three copper."));
    h.say("alice", "Grimble, how much is the ale?", 800).await;
    h.turns().await;
    let entries = h.transcript.entries();
    let campaign = Campaign::example().campaign;

    h.llm.push(answer(
        "Last time, Alice asked Grimble about ale. What will she order next?",
    ));
    let written = recap(Some(h.llm.as_ref()), &campaign, &entries, None).await;
    assert_eq!(written.source, RecapSource::Llm);
    assert!(written.text.starts_with("Last time"));

    h.llm.push(Scripted::Fail("down".into()));
    let fallback = recap(Some(h.llm.as_ref()), &campaign, &entries, None).await;
    assert_eq!(fallback.source, RecapSource::Transcript);
    assert!(fallback.text.contains("Alice: Grimble, how much is the ale?"));
    assert!(fallback.text.contains("Grimble: Three copper."));
    assert_eq!(recap(None, &campaign, &entries, None).await, fallback);
}
