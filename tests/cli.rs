//! The `glyphoxa` command line, run as a real process.

use std::path::Path;
use std::process::{Command, Output};

fn glyphoxa(args: &[&str], envs: &[(&str, &str)], dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_glyphoxa"));
    command.args(args).current_dir(dir);
    // Start from an environment without any GLYPHOXA_* or referenced variables.
    for (key, _) in std::env::vars() {
        if key.starts_with("GLYPHOXA_") || key.starts_with("DISCORD_") || key.ends_with("_API_KEY") {
            command.env_remove(key);
        }
    }
    command.envs(envs.iter().copied());
    command.output().expect("glyphoxa runs")
}

/// Waits for `child` to exit; kills it and fails the test if it has not within `limit`.
fn exit_within(mut child: std::process::Child, limit: std::time::Duration) -> Output {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", text(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Sends SIGTERM and expects a clean exit within 40 s; returns what the process logged.
fn terminate(child: std::process::Child) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = exit_within(child, std::time::Duration::from_secs(40));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    stderr
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn example_configs_pass_check_config_on_a_fresh_machine() {
    for example in ["examples/glyphoxa.yaml", "examples/gateway.yaml"] {
        let out = glyphoxa(&["check-config", "--config", example], &[], repo());
        assert!(out.status.success(), "{example}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains("# effective configuration of full mode from"),
            "{stdout}"
        );
        assert!(text(&out.stderr).contains("configuration OK"));
    }
    // The full-mode example points at the example campaign.
    let out = glyphoxa(&["check-config", "--config", "examples/glyphoxa.yaml"], &[], repo());
    assert!(
        text(&out.stdout).contains("campaign: \"Lost Mine\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn unknown_key_exits_non_zero_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "server:\n  log_level: info\nstorage:\n  path: x.db\n",
    )
    .unwrap();
    let out = glyphoxa(&["check-config", "--config", "bad.yaml"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("storage.path: unknown field `path`, expected one of url, max_connections (line 4, column 3)"),
        "{stderr}"
    );
}

#[test]
fn explicit_missing_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = glyphoxa(&["check-config", "--config", "missing.yaml"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read configuration file missing.yaml"));
}

#[test]
fn without_config_file_defaults_are_used_and_glyphoxa_yaml_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = glyphoxa(&["check-config"], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("defaults (no configuration file)"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("campaign: \"The Sleeping Giant\""), "{stdout}");
    assert!(stdout.contains("grpc_addr: 0.0.0.0:50052"), "{stdout}");
    assert!(
        stdout.contains("# providers.tts: not configured, using the offline `espeak` engine"),
        "{stdout}"
    );
    let out = glyphoxa(&["--mode", "worker", "check-config"], &[], dir.path());
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("grpc_addr: 0.0.0.0:50051") && stdout.contains("metrics_addr: 0.0.0.0:9091"),
        "{stdout}"
    );

    std::fs::write(
        dir.path().join("glyphoxa.yaml"),
        "audio:\n  vad:\n    hangover_ms: 450\n",
    )
    .unwrap();
    let out = glyphoxa(&["check-config"], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("from glyphoxa.yaml"), "{stdout}");
    assert!(stdout.contains("hangover_ms: 450"), "{stdout}");
}

#[test]
fn secrets_never_reach_the_output() {
    let out = glyphoxa(
        &["check-config", "--config", "examples/glyphoxa.yaml"],
        &[
            ("DISCORD_TOKEN", "MTIz.secret-token-value"),
            ("GLYPHOXA_ADMIN_KEY", "admin-key-value"),
        ],
        repo(),
    );
    assert!(out.status.success());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(
        !all.contains("secret-token-value") && !all.contains("admin-key-value"),
        "{all}"
    );
    assert!(all.contains("token: <redacted>"), "{all}");
}

#[test]
fn strict_check_reports_what_the_mode_needs() {
    let out = glyphoxa(
        &[
            "--mode",
            "gateway",
            "check-config",
            "--strict",
            "--config",
            "examples/gateway.yaml",
        ],
        &[],
        repo(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error: gateway mode: GLYPHOXA_ADMIN_KEY"),
        "{}",
        text(&out.stderr)
    );

    let out = glyphoxa(
        &[
            "--mode",
            "gateway",
            "check-config",
            "--strict",
            "--config",
            "examples/gateway.yaml",
        ],
        &[("GLYPHOXA_ADMIN_KEY", "k"), ("OPENAI_API_KEY", "sk")],
        repo(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_mode_without_what_it_needs_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = glyphoxa(&[], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("full mode cannot start"), "{stderr}");
    assert!(stderr.contains("discord.token"), "{stderr}");
}

#[test]
fn full_mode_start_up_problems_exit_2_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    // Remote providers that are never called: no local models needed.
    let base = "discord: { token: not-a-real-token.SECRET }\nproviders:\n  stt: { name: openai, base_url: \"http://127.0.0.1:9/v1\" }\n  llm: { name: openai, base_url: \"http://127.0.0.1:9/v1\" }\n";
    let cases = [
        (
            format!(
                "{base}storage: {{ url: \"sqlite://{}/missing/folder/g.db\" }}\n",
                dir.path().display()
            ),
            "storage.url",
        ),
        // Nothing listens on port 1: the pool gives up after its timeout.
        (
            format!("{base}storage: {{ url: \"postgres://glyphoxa:pw@127.0.0.1:1/glyphoxa\" }}\n"),
            "storage.url",
        ),
        (
            format!("{base}  tts: {{ name: espeak, options: {{ program: /nonexistent/espeak-ng }} }}\n"),
            "espeak-ng",
        ),
    ];
    for (yaml, named) in cases {
        std::fs::write(dir.path().join("glyphoxa.yaml"), &yaml).unwrap();
        let out = glyphoxa(&[], &[], dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains("error:") && stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("SECRET"), "the token is never shown: {stderr}");
        assert!(!stderr.contains(":pw@"), "nor the database password: {stderr}");
    }
}

#[test]
fn bad_campaign_file_fails_check_config_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("glyphoxa.yaml"), "campaign: c.yaml\n").unwrap();
    std::fs::write(
        dir.path().join("c.yaml"),
        "campaign: { name: X }\nentities:\n  - { name: Smaug, type: dragon }\n",
    )
    .unwrap();
    let out = glyphoxa(&["check-config"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("entities[0].type: unknown variant `dragon`"),
        "{stderr}"
    );
    assert!(stderr.contains("(line 3, column"), "{stderr}");
}

fn write_wav(path: &Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
}

fn segments_of(stdout: &[u8]) -> Vec<(u64, u64)> {
    let json: serde_json::Value = serde_json::from_slice(stdout).expect("stdout is one JSON object");
    json["segments"]
        .as_array()
        .expect("segments array")
        .iter()
        .map(|s| (s["start_ms"].as_u64().unwrap(), s["end_ms"].as_u64().unwrap()))
        .collect()
}

#[test]
fn audio_segments_prints_json_for_speech_and_silence() {
    let dir = tempfile::tempdir().unwrap();
    // Two spoken sentences with 1.5 s of silence between them, at espeak's own rate.
    let speech = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-w"])
        .arg(&speech)
        .arg("Welcome to the Sleeping Giant, traveller.")
        .status()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(status.success());
    let mut reader = hound::WavReader::open(&speech).unwrap();
    let rate = reader.spec().sample_rate;
    let sentence: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let mut two = sentence.clone();
    two.extend(std::iter::repeat_n(0, rate as usize * 3 / 2));
    two.extend(&sentence);
    two.extend(std::iter::repeat_n(0, rate as usize));
    let fixture = dir.path().join("two.wav");
    write_wav(&fixture, &two, rate);

    let out = glyphoxa(&["audio", "segments", "two.wav"], &[], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let segments = segments_of(&out.stdout);
    assert_eq!(segments.len(), 2, "{segments:?}");
    let gap_start = sentence.len() as u64 * 1000 / u64::from(rate);
    assert!(segments[0].1 > segments[0].0 && segments[0].1 < gap_start + 1500);
    assert!(
        text(&out.stderr).contains("mean detection delay"),
        "{}",
        text(&out.stderr)
    );

    // A longer hangover than the gap merges them.
    let out = glyphoxa(
        &["audio", "segments", "two.wav", "--vad-hangover-ms", "2000"],
        &[],
        dir.path(),
    );
    assert_eq!(segments_of(&out.stdout).len(), 1);

    write_wav(&dir.path().join("silence.wav"), &vec![0; 48_000], 16_000);
    let out = glyphoxa(&["audio", "segments", "silence.wav"], &[], dir.path());
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).trim(), "{\"segments\":[]}");
}

#[test]
fn audio_segments_rejects_bad_input_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.wav"), b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    for args in [
        vec!["audio", "segments", "junk.wav"],
        vec!["audio", "segments", "missing.wav"],
        vec!["audio", "segments", "junk.wav", "--vad-aggressiveness", "9"],
    ] {
        let out = glyphoxa(&args, &[], dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).starts_with("error:"), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("panicked"));
        assert!(out.stdout.is_empty(), "nothing on stdout on error");
    }
}

#[test]
fn worker_mode_serves_grpc_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("glyphoxa.yaml"),
        "worker: { transport: loopback, id: test-worker, capacity: 3 }\nproviders:\n  stt: { name: openai, base_url: \"http://127.0.0.1:9/v1\" }\n  llm: { name: openai, base_url: \"http://127.0.0.1:9/v1\" }\n",
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_glyphoxa"));
    command
        .args(["--mode", "worker"])
        .current_dir(dir.path())
        .env("GLYPHOXA_GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("GLYPHOXA_GATEWAY_ADDR")
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let config = glyphoxa_proto::ClientConfig::with_deadline(std::time::Duration::from_secs(2));
        for _ in 0..100 {
            if let Ok(client) = glyphoxa_proto::GrpcWorkerClient::connect(&format!("127.0.0.1:{port}"), config).await {
                use glyphoxa_proto::WorkerApi;
                if let Ok(status) = client
                    .get_status(glyphoxa_proto::v1::GetStatusRequest { session_id: None })
                    .await
                {
                    return Some(status);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    });
    let status = status.expect("the worker answered GetStatus");
    assert_eq!(status.worker_id, "test-worker");
    assert_eq!(status.load.unwrap().capacity, 3);
    let stderr = terminate(child);
    assert!(stderr.contains("worker stopped"), "{stderr}");
}

/// Speech from espeak-ng as raw samples at its own rate.
fn espeak(text: &str, dir: &Path) -> (Vec<i16>, u32) {
    let path = dir.join("espeak.wav");
    assert!(Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(text)
        .status()
        .unwrap()
        .success());
    let mut reader = hound::WavReader::open(&path).unwrap();
    let rate = reader.spec().sample_rate;
    (reader.samples::<i16>().map(Result::unwrap).collect(), rate)
}

#[test]
fn replay_prints_two_turns_and_writes_npc_audio() {
    use glyphoxa_pipeline::providers::fake::openai::{chat_stream, transcription};
    use glyphoxa_pipeline::providers::fake::FakeHttpServer;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(FakeHttpServer::start()).unwrap();
    let ms = std::time::Duration::from_millis;
    server.push(transcription("Grimble, what do you have on tap?"));
    server.push(chat_stream(
        &["Ale", " and", " mead.", " Three", " copper."],
        ms(120),
        ms(10),
    ));
    server.push(transcription("Elara, sing us a song."));
    server.push(chat_stream(&["Gladly!", " Gather", " round."], ms(120), ms(10)));

    let dir = tempfile::tempdir().unwrap();
    let (first, rate) = espeak("Grimble, what do you have on tap?", dir.path());
    let (second, _) = espeak("Elara, sing us a song.", dir.path());
    let mut scene = vec![0; rate as usize / 2];
    scene.extend(&first);
    scene.extend(std::iter::repeat_n(0, rate as usize * 4));
    scene.extend(&second);
    scene.extend(std::iter::repeat_n(0, rate as usize));
    write_wav(&dir.path().join("alice.wav"), &scene, rate);
    let base = server.url("/v1").unwrap();
    std::fs::write(
        dir.path().join("glyphoxa.yaml"),
        format!("providers:\n  stt: {{ name: openai, base_url: \"{base}\" }}\n  llm: {{ name: openai, base_url: \"{base}\" }}\n"),
    )
    .unwrap();
    // Deterministic by default: the virtual clock stands still while the
    // fake server answers, so the machine's speed changes nothing.
    let out = glyphoxa(
        &["replay", "alice.wav", "--out", "npcs.wav", "--report", "report.json"],
        &[],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("virtual clock"), "{}", text(&out.stderr));
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains(" alice ")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].contains("Grimble") && rows[0].contains("spoke"), "{stdout}");
    assert!(rows[1].contains("Elara") && rows[1].contains("spoke"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let turns = report["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    for turn in turns {
        for stage in [
            "vad_end_ms",
            "stt_final_ms",
            "llm_first_token_ms",
            "first_sentence_ms",
            "tts_first_audio_ms",
            "first_frame_ms",
        ] {
            assert!(turn["stages"][stage].as_f64().is_some(), "{stage} missing in {turn}");
        }
    }
    assert_eq!(turns[0]["reply"], "Ale and mead. Three copper.");
    assert_eq!(report["summary"]["spoke"], 2);
    // The model's 120 ms to its first token counts in the latencies.
    for turn in turns {
        let stage = |name: &str| turn["stages"][name].as_f64().unwrap();
        assert!(stage("llm_first_token_ms") - stage("stt_final_ms") >= 120.0, "{turn}");
    }

    let mut reader = hound::WavReader::open(dir.path().join("npcs.wav")).unwrap();
    assert_eq!((reader.spec().sample_rate, reader.spec().channels), (48_000, 2));
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(
        loud > 48_000,
        "the NPCs are audible in the output ({loud} loud samples)"
    );
    // The STT requests carried the utterances as WAV, in speech order.
    let requests = server.requests();
    assert_eq!(
        requests.iter().filter(|r| r.path == "/v1/audio/transcriptions").count(),
        2
    );
    drop(server);
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![format!("sqlite://{}", dir.path().join("glyphoxa.db").display())];
    match std::env::var("GLYPHOXA_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => urls.push(url),
        _ => eprintln!("PostgreSQL part skipped: GLYPHOXA_TEST_DATABASE_URL is not set"),
    }
    for url in urls {
        let out = glyphoxa(&["migrate"], &[("GLYPHOXA_DATABASE_URL", &url)], dir.path());
        assert!(out.status.success(), "{url}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("schema version"), "{}", text(&out.stdout));
        let again = glyphoxa(&["migrate"], &[("GLYPHOXA_DATABASE_URL", &url)], dir.path());
        assert!(again.status.success());
        assert!(
            text(&again.stdout).contains("0 migration(s) applied"),
            "{}",
            text(&again.stdout)
        );
    }
    let bad = glyphoxa(
        &["migrate"],
        &[("GLYPHOXA_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        text(&bad.stderr).starts_with("error: migrating postgres://nobody@127.0.0.1:1/none"),
        "{}",
        text(&bad.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET; returns the status code.
fn http_get(port: u16, path: &str, key: &str) -> Option<u16> {
    http_response(port, path, key).map(|(status, _)| status)
}

/// Status and body of a GET request.
fn http_response(port: u16, path: &str, key: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    // A server that stops answering fails the test instead of hanging it.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body).to_string();
    Some((status, body))
}

#[test]
fn gateway_mode_serves_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, grpc, health) = (free_port(), free_port(), free_port());
    // JSON logs (server.log_format) for a log collector.
    std::fs::write(
        dir.path().join("glyphoxa.yaml"),
        "server: { log_format: json }\nworkers: { addresses: [\"http://127.0.0.1:9\"] }\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_glyphoxa"))
        .args(["--mode", "gateway"])
        .current_dir(dir.path())
        .env("GLYPHOXA_ADMIN_KEY", "test-admin-key")
        .env(
            "GLYPHOXA_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("gw.db").display()),
        )
        .env("GLYPHOXA_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("GLYPHOXA_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("GLYPHOXA_METRICS_ADDR", format!("127.0.0.1:{health}"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..100 {
        status = http_get(admin, "/api/v1/tenants", "test-admin-key");
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, Some(200), "the admin API answers");
    // A refused request is logged from a runtime thread; the log line must
    // not stall the server (or its shutdown).
    assert_eq!(http_get(admin, "/api/v1/tenants", "wrong"), Some(403));
    assert_eq!(http_get(admin, "/api/v1/tenants", "test-admin-key"), Some(200));
    // Health, readiness (the only worker is unreachable) and metrics.
    assert_eq!(http_get(health, "/healthz", ""), Some(200));
    let (status, body) = http_response(health, "/readyz", "").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""name":"database","ready":true"#), "{body}");
    assert!(body.contains(r#""name":"workers","ready":false"#), "{body}");
    assert!(
        body.contains(r#""name":"bots","ready":true,"detail":"no tenant bots""#),
        "{body}"
    );
    let (status, body) = http_response(health, "/metrics", "").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("glyphoxa_gateway_live_sessions"), "{body}");
    assert!(body.contains(r#"glyphoxa_bots{state="connected"} 0"#), "{body}");
    let stderr = terminate(child);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}")))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .inspect(|line| assert!(line["level"].is_string() && line["timestamp"].is_string(), "{line}"))
        .filter_map(|line| line["fields"]["message"].as_str())
        .collect();
    assert!(messages.iter().any(|m| m.contains("wrong admin key")), "{stderr}");
    assert!(messages.contains(&"gateway stopped"), "{stderr}");
}

#[test]
fn gateway_mode_refuses_to_start_without_an_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("glyphoxa.yaml"),
        "workers: { addresses: [\"http://127.0.0.1:9\"] }\n",
    )
    .unwrap();
    let out = glyphoxa(&["--mode", "gateway"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("GLYPHOXA_ADMIN_KEY"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn models_list_shows_what_is_missing_and_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let out = glyphoxa(
        &["models", "list"],
        &[("GLYPHOXA_MODELS_DIR", models.to_str().unwrap())],
        dir.path(),
    );
    let listing = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{listing}");
    for id in ["whisper-tiny.en", "smollm2-135m-instruct", "whisper-base"] {
        let line = listing
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{listing}"));
        assert!(line.contains("not installed"), "{line}");
    }
    assert!(listing.contains("glyphoxa models install"), "{listing}");
}

#[test]
fn models_commands_reject_unknown_and_damaged_models() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let out = glyphoxa(
        &["models", "install", "gpt-17", "--dir", models.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("gpt-17") && err.contains("whisper-tiny.en"), "{err}");

    // A truncated weights file is reported as damaged, never used.
    let whisper = models.join("whisper-tiny.en");
    std::fs::create_dir_all(&whisper).unwrap();
    for file in ["model.bin", "config.json", "tokenizer.json"] {
        std::fs::write(whisper.join(file), b"not a model").unwrap();
    }
    let out = glyphoxa(
        &["models", "verify", "whisper-tiny.en", "--dir", models.to_str().unwrap()],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("model.bin"), "{}", text(&out.stderr));
    let out = glyphoxa(&["models", "list", "--dir", models.to_str().unwrap()], &[], dir.path());
    let listing = text(&out.stdout);
    let line = listing.lines().find(|l| l.starts_with("whisper-tiny.en")).unwrap();
    assert!(line.contains("DAMAGED"), "{line}");
}

/// The offline engines take both cores: their tests take turns.
static OFFLINE_ENGINES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The default offline models' directory, when they are installed; CI
/// (`GLYPHOXA_REQUIRE_MODELS=1`) fails instead of skipping without them.
fn offline_models() -> Option<std::path::PathBuf> {
    use glyphoxa_pipeline::providers::local::models;
    let found = models::default_dir().and_then(|dir| {
        models::defaults()
            .into_iter()
            .try_for_each(|package| models::check(&dir, package))
            .map(|()| dir)
    });
    match found {
        Ok(dir) => Some(dir),
        Err(e) if std::env::var("GLYPHOXA_REQUIRE_MODELS").is_ok_and(|v| v == "1") => {
            panic!("GLYPHOXA_REQUIRE_MODELS=1 but {e}")
        }
        Err(e) => {
            println!("skipped: {e}");
            None
        }
    }
}

#[test]
fn replay_runs_offline_with_the_local_engines_and_no_configuration() {
    let _turn = OFFLINE_ENGINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(models) = offline_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (question, rate) = espeak("Grimble, what do you have on tap tonight?", dir.path());
    let mut scene = vec![0; rate as usize / 2];
    scene.extend(&question);
    scene.extend(std::iter::repeat_n(0, rate as usize * 2));
    write_wav(&dir.path().join("player.wav"), &scene, rate);
    // No configuration at all: local Whisper, local llama.cpp, espeak-ng.
    let out = glyphoxa(
        &["replay", "player.wav", "--out", "npcs.wav", "--report", "report.json"],
        &[("GLYPHOXA_MODELS_DIR", models.to_str().unwrap())],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("offline"),
        "the zero-config engines are announced: {stderr}"
    );
    assert!(
        !stderr.contains("llama.cpp::"),
        "llama.cpp's loading chatter stays out of the log"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let turn = &report["turns"][0];
    let heard = turn["transcript"].as_str().unwrap().to_lowercase();
    assert!(
        heard.contains("what do you have") && heard.contains("tonight"),
        "{turn}"
    );
    // Address detection finds Grimble even when Whisper mishears the name.
    assert_eq!(turn["npc"], "Grimble", "{turn}");
    assert_eq!(turn["outcome"], "spoke", "{turn}");
    assert!(
        turn["reply"].as_str().unwrap().split_whitespace().count() >= 2,
        "{turn}"
    );
    let mut reader = hound::WavReader::open(dir.path().join("npcs.wav")).unwrap();
    let loud = reader
        .samples::<i16>()
        .map(Result::unwrap)
        .filter(|s| s.unsigned_abs() > 1000)
        .count();
    assert!(loud > 24_000, "the reply is audible ({loud} loud samples)");
}

#[test]
fn demo_plays_the_generated_scene_offline() {
    let _turn = OFFLINE_ENGINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(models) = offline_models() else { return };
    let dir = tempfile::tempdir().unwrap();
    // The default, deterministic pacing: however slowly the local engines
    // answer on a loaded machine, the scene plays out the same way.
    let out = glyphoxa(
        &["demo", "--out", "scene"],
        &[("GLYPHOXA_MODELS_DIR", models.to_str().unwrap())],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("virtual clock"), "{}", text(&out.stderr));
    let scene = dir.path().join("scene");
    for file in ["ana.wav", "bram.wav", "npcs.wav", "report.json"] {
        assert!(scene.join(file).is_file(), "{file} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scene.join("report.json")).unwrap()).unwrap();
    let turns = report["turns"].as_array().unwrap();
    let answered = |speaker: &str, npc: &str| {
        turns
            .iter()
            .any(|t| t["speaker"] == speaker && t["npc"] == npc && (t["outcome"] == "spoke" || t["outcome"] == "cut"))
    };
    assert!(answered("ana", "Grimble"), "{stdout}");
    assert!(answered("bram", "Elara"), "{stdout}");
    let mut reader = hound::WavReader::open(scene.join("npcs.wav")).unwrap();
    let loud = reader
        .samples::<i16>()
        .map(Result::unwrap)
        .filter(|s| s.unsigned_abs() > 1000)
        .count();
    assert!(loud > 96_000, "both NPCs are audible ({loud} loud samples)");
}
