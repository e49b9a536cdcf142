//! Tests of configuration loading.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Environment {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn error_of(text: &str) -> String {
    match Config::from_yaml(text, "glyphoxa.yaml", &Environment::new()) {
        Ok(_) => panic!("configuration accepted: {text}"),
        Err(error) => error.to_string(),
    }
}

fn parse(text: &str, vars: &[(&str, &str)]) -> Config {
    match Config::from_yaml(text, "glyphoxa.yaml", &env(vars)) {
        Ok(config) => config,
        Err(error) => panic!("configuration rejected: {error}"),
    }
}

#[test]
fn bad_configurations_have_exact_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "server:\n  log_level: info\n  colour: red\n",
            "server.colour: unknown field `colour`, expected one of log_level, log_format, grpc_addr, metrics_addr, admin_addr, admin_key, secret_key (line 3, column 3)",
        ),
        ("voice: {}\n", "voice: unknown field `voice`, expected one of server, discord, providers, audio, storage, campaign, worker, workers (line 1, column 1)"),
        (
            "providers:\n  llm:\n    name: openai\n    base_url: not a url\n",
            "providers.llm.base_url: \"not a url\" is not a URL: write it like http://host:port/path (line 4, column 15)",
        ),
        ("audio:\n  vad:\n    aggressiveness: 7\n", "audio.vad.aggressiveness: 7 is out of range: use 0 to 3 (line 3, column 21)"),
        ("audio:\n  vad:\n    hangover_ms: abc\n", "audio.vad.hangover_ms: \"abc\" is not a whole number: use 60 to 5000 (line 3, column 18)"),
        ("providers:\n  stt:\n    name: whisperx\n", "providers.stt.name: unknown stt provider \"whisperx\": use one of local, openai, deepgram"),
        ("providers:\n  tts:\n    base_url: http://x\n", "providers.tts: missing field `name` (line 3, column 5)"),
        (
            "server:\n  admin_addr: localhost\n",
            "server.admin_addr: \"localhost\" is not a listen address: use IP:PORT, e.g. 0.0.0.0:8081 or :8081 (line 2, column 15)",
        ),
        ("worker:\n  transport: carrier-pigeon\n", "worker.transport: unknown variant `carrier-pigeon`, expected one of discord, loopback (line 2, column 14)"),
        (
            "discord:\n  guild_id: my-guild\n",
            "discord.guild_id: \"my-guild\" is not a Discord id: copy it with Developer Mode on (right-click → Copy ID); it is a number like 123456789012345678 (line 2, column 13)",
        ),
        ("storage:\n  url: mysql://x\n", "storage.url: \"mysql://x\" is not a database URL: use sqlite://FILE or postgres://USER@HOST/DATABASE (line 2, column 8)"),
        ("audio:\n  mixer:\n    gap_min_ms: 500\n    gap_max_ms: 100\n", "audio.mixer: gap_min_ms (500) is larger than gap_max_ms (100)"),
        ("server: [1, 2]\n", "server: expected mapping start (line 1, column 9)"),
        (
            "server:\n  log_level: loud\n",
            "server.log_level: \"loud\" is not a log level: use one of off, error, warn, info, debug, trace (or TARGET=LEVEL, comma-separated) (line 2, column 14)",
        ),
        ("workers:\n  addresses: [\"ftp://w1\"]\n", "workers.addresses: \"ftp://w1\" is not a URL with scheme http or https (line 2, column 14)"),
    ];
    for (text, expected) in cases {
        assert_eq!(
            error_of(text),
            format!("invalid configuration in glyphoxa.yaml:\n  {expected}"),
            "for {text:?}"
        );
    }
}

#[test]
fn empty_file_is_all_defaults() {
    let config = parse("", &[]);
    assert_eq!(config.storage.url.expose(), DEFAULT_DATABASE_URL);
    assert_eq!(config.audio.vad.hangover_ms.get(), 300);
    assert_eq!(config.worker.transport, TransportKind::Discord);
    assert!(config.providers.stt.is_none() && config.providers.llm.is_none() && config.providers.tts.is_none());
    assert!(config.campaign.is_none());
}

#[test]
fn per_mode_default_addresses() {
    let config = Config::default();
    assert_eq!(config.grpc_addr(Mode::Worker).to_string(), "0.0.0.0:50051");
    assert_eq!(config.grpc_addr(Mode::Gateway).to_string(), "0.0.0.0:50052");
    assert_eq!(config.metrics_addr(Mode::Full).to_string(), "0.0.0.0:9090");
    assert_eq!(config.metrics_addr(Mode::Worker).to_string(), "0.0.0.0:9091");
    assert_eq!(config.admin_addr().to_string(), "0.0.0.0:8081");
}

#[test]
fn env_references_expand_and_unset_is_empty() {
    let text = "discord:\n  token: ${DISCORD_TOKEN}\n  guild_id: ${GUILD}\nproviders:\n  llm:\n    name: openai\n    base_url: \"http://${LLM_HOST}:11434/v1\"\n    api_key: ${UNSET_KEY}\n";
    let config = parse(text, &[("DISCORD_TOKEN", "abc.def"), ("LLM_HOST", "ollama")]);
    assert_eq!(config.discord.token.expose(), "abc.def");
    assert_eq!(config.discord.guild_id, None, "unset id expands to empty = not set");
    let llm = config.providers.llm.as_ref().unwrap();
    assert_eq!(llm.base_url.as_ref().unwrap().as_str(), "http://ollama:11434/v1");
    assert!(!llm.api_key.is_set());
}

#[test]
fn environment_overrides_file() {
    let mut config = parse(
        "server:\n  grpc_addr: 127.0.0.1:1000\nstorage:\n  url: sqlite://file.db\n",
        &[],
    );
    config
        .apply_environment(&env(&[
            ("GLYPHOXA_GRPC_ADDR", "127.0.0.1:2000"),
            ("GLYPHOXA_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
            ("GLYPHOXA_ADMIN_KEY", "k"),
            ("GLYPHOXA_GATEWAY_ADDR", "gateway:50052"),
            ("GLYPHOXA_DISCORD_API_URL", "http://127.0.0.1:3000"),
            ("GLYPHOXA_METRICS_ADDR", ""),
        ]))
        .unwrap();
    assert_eq!(config.grpc_addr(Mode::Worker).to_string(), "127.0.0.1:2000");
    assert_eq!(config.storage.url.expose(), "postgres://postgres@127.0.0.1:5432/test");
    assert_eq!(config.server.admin_key.expose(), "k");
    assert_eq!(
        config.worker.gateway_addr.as_ref().unwrap().as_str(),
        "http://gateway:50052"
    );
    assert_eq!(
        config.discord.api_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:3000"
    );
    assert_eq!(
        config.metrics_addr(Mode::Full).to_string(),
        "0.0.0.0:9090",
        "empty variable = not set"
    );
}

#[test]
fn bad_environment_values_are_named() {
    let mut config = Config::default();
    let err = config
        .apply_environment(&env(&[
            ("GLYPHOXA_GRPC_ADDR", "nowhere"),
            ("GLYPHOXA_DATABASE_URL", "redis://x"),
        ]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid configuration in environment:\n  GLYPHOXA_GRPC_ADDR: \"nowhere\" is not a listen address: use IP:PORT, e.g. 0.0.0.0:8081 or :8081\n  GLYPHOXA_DATABASE_URL: \"redis://x\" is not a database URL: use sqlite://FILE or postgres://USER@HOST/DATABASE"
    );
}

#[test]
fn secrets_are_redacted_when_printed() {
    let mut config = parse(
        "discord:\n  token: super-secret-token\nstorage:\n  url: postgres://u:pw-777@db/g\nproviders:\n  llm:\n    name: openai\n    api_key: sk-12345\n",
        &[],
    );
    config
        .apply_environment(&env(&[("GLYPHOXA_SECRET_KEY", "c2VjcmV0")]))
        .unwrap();
    let printed = config.to_redacted_yaml();
    let debugged = format!("{config:?}");
    for secret in ["super-secret-token", "sk-12345", "c2VjcmV0", "pw-777"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
        assert!(!debugged.contains(secret), "{secret} in Debug output");
    }
    assert!(printed.contains("<redacted>"));
    // The printed configuration reads back (secrets aside).
    let reread: Config = Config::from_yaml(&printed, "printed", &Environment::new()).unwrap();
    assert_eq!(reread.audio.vad.hangover_ms, config.audio.vad.hangover_ms);
}

#[test]
fn requirements_per_mode() {
    let config = Config::default();
    let full = config.requirements(Mode::Full);
    assert_eq!(full.len(), 1);
    assert!(full[0].starts_with("discord.token:"));
    let gateway = config.requirements(Mode::Gateway);
    assert!(gateway.iter().any(|m| m.starts_with("GLYPHOXA_ADMIN_KEY:")));
    assert!(gateway.iter().any(|m| m.starts_with("workers:")));
    assert!(
        config.requirements(Mode::Worker).is_empty(),
        "a worker runs standalone with defaults"
    );

    let config = parse(
        "discord: { token: t }\nproviders:\n  stt: { name: deepgram }\n  tts: { name: elevenlabs, api_key: k }\n  llm: { name: openai }\n",
        &[],
    );
    let missing = config.requirements(Mode::Full);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].starts_with("providers.stt.api_key: the deepgram provider needs an API key"));
    assert!(missing[1].starts_with("providers.llm: the openai provider needs `api_key`"));

    let local_server = parse(
        "providers:\n  llm: { name: openai, base_url: \"http://127.0.0.1:8080/v1\" }\n",
        &[],
    );
    assert!(
        local_server.requirements(Mode::Worker).is_empty(),
        "a local OpenAI-compatible server needs no key"
    );
}

#[test]
fn explicit_missing_file_is_an_error() {
    let err = LoadedConfig::load(Some(Path::new("does/not/exist.yaml")), &Environment::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with("cannot read configuration file does/not/exist.yaml:"),
        "{err}"
    );
}

#[test]
fn campaign_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("glyphoxa.yaml");
    std::fs::write(&file, "campaign: my-campaign.yaml\n").unwrap();
    std::fs::write(
        dir.path().join("my-campaign.yaml"),
        "campaign: { name: Mine }\nnpcs:\n  - { name: Bart, personality: A bard. }\n",
    )
    .unwrap();
    let loaded = LoadedConfig::load(Some(&file), &Environment::new()).unwrap();
    assert_eq!(
        loaded.config.campaign.as_deref(),
        Some(dir.path().join("my-campaign.yaml").as_path())
    );
    let campaign = loaded.config.load_campaign().unwrap();
    assert_eq!(campaign.campaign.name, "Mine");
}

#[test]
fn missing_campaign_file_is_reported() {
    let config = parse("campaign: nowhere/campaign.yaml\n", &[]);
    let err = config.load_campaign().unwrap_err().to_string();
    assert!(
        err.starts_with("campaign: cannot read campaign file nowhere/campaign.yaml"),
        "{err}"
    );
}

#[test]
fn no_campaign_means_the_bundled_example() {
    let campaign = Config::default().load_campaign().unwrap();
    assert!(campaign.npc("Grimble").is_some());
}

#[test]
fn numbers_from_environment_variables_are_accepted() {
    let config = parse("audio:\n  vad:\n    hangover_ms: ${HANGOVER}\n", &[("HANGOVER", "450")]);
    assert_eq!(config.audio.vad.hangover_ms.get(), 450);
}

#[test]
fn provider_entries_become_pipeline_specs() {
    let config = parse(
        "providers:\n  llm:\n    name: openai\n    base_url: http://127.0.0.1:11434/v1\n    model: llama3.2\n    options: { include_usage: false }\n  tts: { name: elevenlabs, api_key: \"${XI}\" }\n",
        &[("XI", "xi-secret")],
    );
    let llm = config.providers.llm.as_ref().unwrap().to_spec();
    assert_eq!(llm.base_url.unwrap().as_str(), "http://127.0.0.1:11434/v1");
    assert_eq!(llm.model.as_deref(), Some("llama3.2"));
    assert_eq!(llm.api_key, None);
    assert_eq!(llm.options["include_usage"], serde_json::Value::Bool(false));
    let tts = config.providers.tts.as_ref().unwrap().to_spec();
    assert_eq!(tts.api_key.as_deref(), Some("xi-secret"));
}
