//! Provider clients against loopback fakes that speak the real protocols.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use glyphoxa_pipeline::campaign::VoiceSpec;
use glyphoxa_pipeline::providers::deepgram::DeepgramStt;
use glyphoxa_pipeline::providers::elevenlabs::{ElevenLabsSpeech, VoiceSettings};
use glyphoxa_pipeline::providers::fake::deepgram::{DeepgramScript, FakeDeepgram};
use glyphoxa_pipeline::providers::fake::openai::{
    chat_stream, pcm_stream, sse_done, sse_event, tone, tool_call_stream, transcription,
};
use glyphoxa_pipeline::providers::fake::{FakeHttpServer, Reply};
use glyphoxa_pipeline::providers::http::{http_client, CallContext};
use glyphoxa_pipeline::providers::openai::{OpenAiChat, OpenAiSpeech, OpenAiTranscription};
use glyphoxa_pipeline::providers::*;

fn policy() -> CallPolicy {
    CallPolicy {
        first_byte_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(5),
        max_attempts: 3,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
    }
}

fn context(stage: Stage, log: &Arc<CallLog>) -> CallContext {
    CallContext {
        provider: "openai",
        stage,
        policy: policy(),
        observer: log.clone(),
    }
}

async fn chat_client(server: &FakeHttpServer, log: &Arc<CallLog>) -> OpenAiChat {
    OpenAiChat::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        Some("sk-test".into()),
        "gpt-test",
        context(Stage::Llm, log),
    )
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "You are Grimble."),
            ChatMessage::new(Role::User, text),
        ],
        max_tokens: Some(50),
        ..ChatRequest::default()
    }
}

async fn collect(mut stream: LlmStream) -> Vec<Result<LlmEvent, ProviderError>> {
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn chat_streams_tokens_usage_and_finish() {
    let server = FakeHttpServer::start().await.unwrap();
    server.push(chat_stream(
        &["Ale", " is", " three", " copper."],
        Duration::from_millis(20),
        Duration::from_millis(5),
    ));
    let log = Arc::new(CallLog::default());
    let chat = chat_client(&server, &log).await;
    let events: Vec<LlmEvent> = collect(chat.chat(request("How much?")).await.unwrap())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Ale is three copper.");
    assert!(events.contains(&LlmEvent::Usage(Usage {
        prompt_tokens: 42,
        completion_tokens: 4
    })));
    assert_eq!(events.last(), Some(&LlmEvent::Finished(FinishReason::Stop)));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test"));
    let body = requests[0].json().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["messages"][1]["content"], "How much?");

    let records = log.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, CallOutcome::Ok);
    assert_eq!(records[0].units, 4, "four text tokens");
    assert!(records[0].first_byte.unwrap() >= Duration::from_millis(20));
}

#[tokio::test]
async fn chat_assembles_streamed_tool_call_arguments() {
    let server = FakeHttpServer::start().await.unwrap();
    server.push(tool_call_stream(
        "call_7",
        "roll_dice",
        &["{\"si", "des\": 2", "0, \"count\": 1}"],
    ));
    let log = Arc::new(CallLog::default());
    let events = collect(chat_client(&server, &log).await.chat(request("roll")).await.unwrap()).await;
    let events: Vec<LlmEvent> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events,
        [
            LlmEvent::ToolCall(ToolCall {
                id: "call_7".into(),
                name: "roll_dice".into(),
                arguments: "{\"sides\": 20, \"count\": 1}".into(),
            }),
            LlmEvent::Finished(FinishReason::ToolCalls),
        ]
    );
    let arguments: serde_json::Value = match &events[0] {
        LlmEvent::ToolCall(call) => serde_json::from_str(&call.arguments).unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(arguments["sides"], 20);
}

#[tokio::test]
async fn chat_retries_429_and_surfaces_500() {
    let server = FakeHttpServer::start().await.unwrap();
    server.push(Reply::error(429, "slow down"));
    server.push(chat_stream(&["ok"], Duration::ZERO, Duration::ZERO));
    let log = Arc::new(CallLog::default());
    let chat = chat_client(&server, &log).await;
    let events = collect(chat.chat(request("hi")).await.unwrap()).await;
    assert!(events.iter().all(Result::is_ok));
    assert_eq!(server.requests().len(), 2, "429 was retried");
    assert_eq!(log.records()[0].attempts, 2);

    server.push(Reply::error(500, "model crashed"));
    let err = match chat.chat(request("hi")).await {
        Ok(_) => panic!("500 accepted"),
        Err(err) => err,
    };
    assert!(matches!(err, ProviderError::Http { status: 500, .. }), "{err}");
    assert!(err.to_string().contains("model crashed"));
    assert_eq!(server.requests().len(), 3, "500 was not retried");

    server.set_fallback(Reply::error(429, "still slow"));
    let err = match chat.chat(request("hi")).await {
        Ok(_) => panic!("429 accepted"),
        Err(err) => err,
    };
    assert!(matches!(err, ProviderError::RateLimited { attempts: 3, .. }), "{err}");
}

#[tokio::test]
async fn chat_hang_times_out_within_the_configured_time() {
    let server = FakeHttpServer::start().await.unwrap();
    server.set_fallback(Reply::Hang);
    let log = Arc::new(CallLog::default());
    let chat = OpenAiChat::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        None,
        "m",
        CallContext {
            policy: CallPolicy {
                max_attempts: 1,
                ..policy()
            },
            ..context(Stage::Llm, &log)
        },
    );
    let started = Instant::now();
    let err = match chat.chat(request("hi")).await {
        Ok(_) => panic!("hang answered"),
        Err(err) => err,
    };
    let elapsed = started.elapsed();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(log.records()[0].outcome, CallOutcome::Failed("timeout".into()));
}

#[tokio::test]
async fn chat_stalling_mid_stream_times_out() {
    let server = FakeHttpServer::start().await.unwrap();
    server.push(
        Reply::stream(
            "text/event-stream",
            vec![sse_event(
                &serde_json::json!({"choices": [{"delta": {"content": "Hm"}}]}),
            )],
        )
        .then_hang(),
    );
    let log = Arc::new(CallLog::default());
    let events = collect(chat_client(&server, &log).await.chat(request("hi")).await.unwrap()).await;
    assert_eq!(events[0].as_ref().unwrap(), &LlmEvent::Text("Hm".into()));
    let err = events[1].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                what: "pause between chunks",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn chat_malformed_payloads_are_errors_not_panics() {
    let server = FakeHttpServer::start().await.unwrap();
    let log = Arc::new(CallLog::default());
    let chat = chat_client(&server, &log).await;
    for body in [
        b"data: {\"choices\": [{\"delta\": {\"content\": 5}}]}\n\n".to_vec(),
        b"data: not json\n\n".to_vec(),
        b"data: \xff\xfe\n\n".to_vec(),
        b"event: x\n\n".to_vec(), // ends without a reply
        [
            sse_event(&serde_json::json!({"error": {"message": "overloaded"}})),
            sse_done(),
        ]
        .concat(),
    ] {
        server.push(Reply::stream("text/event-stream", vec![body.clone()]));
        let events = collect(chat.chat(request("hi")).await.unwrap()).await;
        let last = events.last().unwrap();
        assert!(
            matches!(last, Err(ProviderError::Protocol { .. })),
            "{:?} gave {events:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn dropping_a_chat_stream_closes_the_connection() {
    let server = FakeHttpServer::start().await.unwrap();
    let tokens: Vec<String> = (0..100).map(|i| format!(" w{i}")).collect();
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    server.push(chat_stream(&tokens, Duration::ZERO, Duration::from_millis(20)));
    let log = Arc::new(CallLog::default());
    let mut stream = chat_client(&server, &log).await.chat(request("talk")).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first, LlmEvent::Text(" w0".into()));
    drop(stream);
    assert!(
        server.wait_for_hangups(1, Duration::from_secs(2)).await,
        "the fake saw the connection closed"
    );
    assert_eq!(log.records()[0].outcome, CallOutcome::Cancelled);
}

#[tokio::test]
async fn transcription_sends_wav_model_language_and_keyword_prompt() {
    let server = FakeHttpServer::start().await.unwrap();
    server.push(transcription(" Grimble, how much is the ale? "));
    let log = Arc::new(CallLog::default());
    let stt = OpenAiTranscription::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        Some("sk".into()),
        "whisper-1",
        context(Stage::Stt, &log),
    );
    let audio = tone(800, STT_SAMPLE_RATE);
    let session = stt
        .open(SttRequest {
            language: Some("en".into()),
            keywords: vec!["Grimble".into(), "Phandalin".into()],
            deadline: None,
        })
        .await
        .unwrap();
    let transcript = session.transcribe(&audio).await.unwrap();
    assert_eq!(transcript.text, "Grimble, how much is the ale?");

    let request = &server.requests()[0];
    assert_eq!(request.path, "/v1/audio/transcriptions");
    assert!(request
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data; boundary="));
    let body = request.text();
    for field in [
        "name=\"model\"\r\n\r\nwhisper-1",
        "name=\"language\"\r\n\r\nen",
        "name=\"prompt\"\r\n\r\nGrimble, Phandalin",
        "filename=\"utterance.wav\"",
        "RIFF",
    ] {
        assert!(body.contains(field), "multipart body lacks {field:?}");
    }
    // The WAV holds exactly the audio sent.
    let wav_start = request.body.windows(4).position(|w| w == b"RIFF").unwrap();
    let mut reader = hound::WavReader::new(&request.body[wav_start..]).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    assert_eq!(reader.samples::<i16>().count(), audio.len());
    assert_eq!(log.records()[0].outcome, CallOutcome::Ok);
}

#[tokio::test]
async fn transcription_errors_malformed_json_and_cancellation() {
    let server = FakeHttpServer::start().await.unwrap();
    let log = Arc::new(CallLog::default());
    let stt = OpenAiTranscription::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        None,
        "whisper-1",
        context(Stage::Stt, &log),
    );
    let audio = tone(300, STT_SAMPLE_RATE);

    server.push(Reply::error(500, "boom"));
    let err = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&audio)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Http { status: 500, .. }));

    server.push(Reply::json(&serde_json::json!({"txt": "wrong field"})));
    let err = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&audio)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Protocol { .. }), "{err}");

    server.push(Reply::error(429, "wait"));
    server.push(transcription("second try"));
    let transcript = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&audio)
        .await
        .unwrap();
    assert_eq!(transcript.text, "second try");

    server.push(Reply::Hang);
    let started = Instant::now();
    let err = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&audio)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    server.push(Reply::Hang);
    let hangups_before = server.hangups();
    let mut session = stt.open(SttRequest::default()).await.unwrap();
    session.send_audio(&audio).await.unwrap();
    session.finish_audio();
    tokio::time::sleep(Duration::from_millis(100)).await; // the request is in flight
    drop(session);
    assert!(
        server
            .wait_for_hangups(hangups_before + 1, Duration::from_secs(2))
            .await,
        "dropping the session closed the request"
    );
}

#[tokio::test]
async fn speech_streams_pcm_split_at_odd_bytes() {
    let server = FakeHttpServer::start().await.unwrap();
    let samples = tone(500, 24_000);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    // Chunks of 999 bytes split samples in half at every border.
    server.push(
        Reply::stream("audio/pcm", bytes.chunks(999).map(<[u8]>::to_vec).collect()).paced(Duration::from_millis(1)),
    );
    let log = Arc::new(CallLog::default());
    let tts = OpenAiSpeech::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        Some("sk".into()),
        "tts-1",
        "alloy",
        context(Stage::Tts, &log),
    );
    let mut stream = tts
        .synthesize(TtsRequest {
            text: "Welcome, traveller.".into(),
            voice: VoiceSpec {
                voice_id: Some("onyx".into()),
                speed: 1.1,
                ..VoiceSpec::default()
            },
            deadline: None,
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert_eq!((chunk.sample_rate, chunk.channels), (24_000, 1));
        got.extend(chunk.samples);
    }
    assert_eq!(got, samples);
    let body = server.requests()[0].json().unwrap();
    assert_eq!(server.requests()[0].path, "/v1/audio/speech");
    assert_eq!(body["response_format"], "pcm");
    assert_eq!(body["voice"], "onyx");
    assert_eq!(body["input"], "Welcome, traveller.");
    assert!((body["speed"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    assert_eq!(log.records()[0].units, samples.len() as u64);
}

#[tokio::test]
async fn speech_cancellation_and_hang() {
    let server = FakeHttpServer::start().await.unwrap();
    let log = Arc::new(CallLog::default());
    let tts = OpenAiSpeech::new(
        http_client(&policy()).unwrap(),
        &server.url("/v1").unwrap(),
        None,
        "tts-1",
        "alloy",
        context(Stage::Tts, &log),
    );
    let tts_request = || TtsRequest {
        text: "A long speech.".into(),
        voice: VoiceSpec::default(),
        deadline: None,
    };
    server.push(pcm_stream(
        &tone(3000, 24_000),
        2400,
        Duration::ZERO,
        Duration::from_millis(30),
    ));
    let mut stream = tts.synthesize(tts_request()).await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert!(server.wait_for_hangups(1, Duration::from_secs(2)).await);

    server.push(Reply::Hang);
    let started = Instant::now();
    let err = match tts.synthesize(tts_request()).await {
        Ok(_) => panic!("hang answered"),
        Err(err) => err,
    };
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let before = server.requests().len();
    server.push(Reply::error(429, "busy"));
    server.push(pcm_stream(&tone(50, 24_000), 600, Duration::ZERO, Duration::ZERO));
    let mut stream = tts.synthesize(tts_request()).await.unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    assert_eq!(server.requests().len(), before + 2, "429 retried once");

    server.push(Reply::error(500, "vocoder exploded"));
    let err = match tts.synthesize(tts_request()).await {
        Ok(_) => panic!("500 accepted"),
        Err(err) => err,
    };
    assert!(matches!(err, ProviderError::Http { status: 500, .. }) && err.to_string().contains("vocoder exploded"));
}

#[tokio::test]
async fn turn_deadline_bounds_the_call() {
    let server = FakeHttpServer::start().await.unwrap();
    server.set_fallback(Reply::Hang);
    let log = Arc::new(CallLog::default());
    let chat = chat_client(&server, &log).await;
    let started = Instant::now();
    let mut req = request("hi");
    req.deadline = Some(tokio::time::Instant::now() + Duration::from_millis(120));
    let err = match chat.chat(req).await {
        Ok(_) => panic!("hang answered"),
        Err(err) => err,
    };
    assert!(matches!(err, ProviderError::Timeout { .. }));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(350),
        "stopped at the turn's deadline, not the 400 ms first-byte limit: {elapsed:?}"
    );
}

fn elevenlabs(server: &FakeHttpServer, log: &Arc<CallLog>) -> ElevenLabsSpeech {
    ElevenLabsSpeech::new(
        http_client(&policy()).unwrap(),
        server.url("").unwrap(),
        "xi-key".into(),
        "eleven_flash_v2_5",
        "voice-default",
        VoiceSettings {
            stability: 0.3,
            ..VoiceSettings::default()
        },
        CallContext {
            provider: "elevenlabs",
            ..context(Stage::Tts, log)
        },
    )
    .unwrap()
}

#[tokio::test]
async fn elevenlabs_streams_pcm_with_voice_and_settings() {
    let server = FakeHttpServer::start().await.unwrap();
    let samples = tone(400, 24_000);
    server.push(pcm_stream(
        &samples,
        1201,
        Duration::from_millis(10),
        Duration::from_millis(2),
    ));
    let log = Arc::new(CallLog::default());
    let tts = elevenlabs(&server, &log);
    let mut stream = tts
        .synthesize(TtsRequest {
            text: "Hail, friend.".into(),
            voice: VoiceSpec {
                voice_id: Some("grimble-voice".into()),
                ..VoiceSpec::default()
            },
            deadline: None,
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend(chunk.unwrap().samples);
    }
    assert_eq!(got, samples);
    let request = &server.requests()[0];
    assert_eq!(
        request.path,
        "/v1/text-to-speech/grimble-voice/stream?output_format=pcm_24000"
    );
    assert_eq!(request.header("xi-api-key"), Some("xi-key"));
    let body = request.json().unwrap();
    assert_eq!(body["model_id"], "eleven_flash_v2_5");
    assert_eq!(body["text"], "Hail, friend.");
    assert!((body["voice_settings"]["stability"].as_f64().unwrap() - 0.3).abs() < 1e-6);
}

#[tokio::test]
async fn elevenlabs_errors_retries_and_cancellation() {
    let server = FakeHttpServer::start().await.unwrap();
    let log = Arc::new(CallLog::default());
    let tts = elevenlabs(&server, &log);
    let req = || TtsRequest {
        text: "x".into(),
        voice: VoiceSpec::default(),
        deadline: None,
    };
    server.push(Reply::error(401, "invalid api key"));
    let err = match tts.synthesize(req()).await {
        Ok(_) => panic!("401 accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, ProviderError::Http { status: 401, .. }));
    assert_eq!(
        server.requests()[0].path,
        "/v1/text-to-speech/voice-default/stream?output_format=pcm_24000"
    );

    server.push(Reply::error(429, "busy"));
    server.push(pcm_stream(&tone(100, 24_000), 480, Duration::ZERO, Duration::ZERO));
    let mut stream = tts.synthesize(req()).await.unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }

    server.push(pcm_stream(
        &tone(2000, 24_000),
        480,
        Duration::ZERO,
        Duration::from_millis(20),
    ));
    let mut stream = tts.synthesize(req()).await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert!(server.wait_for_hangups(1, Duration::from_secs(2)).await);
}

fn deepgram(fake: &FakeDeepgram, log: &Arc<CallLog>) -> DeepgramStt {
    DeepgramStt::new(fake.url().unwrap(), "dg-key".into(), "nova-2", policy(), log.clone()).unwrap()
}

#[tokio::test]
async fn deepgram_streams_audio_gets_partials_and_final() {
    let fake = FakeDeepgram::start(DeepgramScript {
        final_transcript: "Grimble, pour me an ale.".into(),
        interim: Some("Grimble pour".into()),
        ..DeepgramScript::default()
    })
    .await
    .unwrap();
    let log = Arc::new(CallLog::default());
    let stt = deepgram(&fake, &log);
    let mut session = stt
        .open(SttRequest {
            language: Some("en".into()),
            keywords: vec!["Grimble".into()],
            deadline: None,
        })
        .await
        .unwrap();
    let audio = tone(1000, STT_SAMPLE_RATE);
    for chunk in audio.chunks(320) {
        session.send_audio(chunk).await.unwrap();
    }
    // An interim result arrives while the audio is still open.
    let partial = tokio::time::timeout(Duration::from_secs(2), session.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        partial,
        TranscriptEvent::Partial(Transcript {
            text: "Grimble pour".into(),
            confidence: Some(0.93)
        })
    );
    session.finish_audio();
    let transcript = session.final_transcript().await.unwrap();
    assert_eq!(transcript.text, "Grimble, pour me an ale.");

    let sessions = fake.sessions();
    assert_eq!(sessions.len(), 1);
    let seen = &sessions[0];
    assert_eq!(seen.authorization.as_deref(), Some("Token dg-key"));
    assert!(seen.uri.starts_with("/v1/listen?"), "{}", seen.uri);
    for part in [
        "encoding=linear16",
        "sample_rate=16000",
        "interim_results=true",
        "keywords=Grimble%3A2",
        "language=en",
        "model=nova-2",
    ] {
        assert!(seen.uri.contains(part), "{} lacks {part}", seen.uri);
    }
    assert_eq!(seen.audio_bytes, audio.len() * 2);
    assert!(seen.finalized && seen.close_stream);
    assert_eq!(log.records()[0].outcome, CallOutcome::Ok);
}

#[tokio::test]
async fn deepgram_rejections_malformed_frames_hangs_and_cancellation() {
    let fake = FakeDeepgram::start(DeepgramScript {
        reject_status: Some(429),
        ..DeepgramScript::default()
    })
    .await
    .unwrap();
    let log = Arc::new(CallLog::default());
    let stt = deepgram(&fake, &log);
    let err = match stt.open(SttRequest::default()).await {
        Ok(_) => panic!("rejected upgrade accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, ProviderError::RateLimited { attempts: 3, .. }), "{err}");
    assert_eq!(fake.sessions().len(), 3, "429 on upgrade was retried");

    fake.set_script(DeepgramScript {
        reject_status: Some(401),
        ..DeepgramScript::default()
    });
    let err = match stt.open(SttRequest::default()).await {
        Ok(_) => panic!("401 accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, ProviderError::Http { status: 401, .. }), "{err}");

    fake.set_script(DeepgramScript {
        malformed: true,
        final_transcript: "x".into(),
        ..DeepgramScript::default()
    });
    let err = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&tone(200, 16_000))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Protocol { .. }), "{err}");

    fake.set_script(DeepgramScript {
        hang_after_finalize: true,
        ..DeepgramScript::default()
    });
    let started = Instant::now();
    let err = stt
        .open(SttRequest::default())
        .await
        .unwrap()
        .transcribe(&tone(200, 16_000))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProviderError::Timeout {
                what: "final transcript",
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    fake.set_script(DeepgramScript {
        final_transcript: "never heard".into(),
        ..DeepgramScript::default()
    });
    let hangups_before = fake.hangups();
    let mut session = stt.open(SttRequest::default()).await.unwrap();
    session.send_audio(&tone(100, 16_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(session);
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.hangups() == hangups_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.hangups(),
        hangups_before + 1,
        "dropping the session closed the WebSocket"
    );
}
