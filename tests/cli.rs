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
fn a_mode_not_yet_built_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = glyphoxa(&["--mode", "worker"], &[], dir.path());
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("worker mode is not available in this build yet"));
    assert!(!text(&out.stderr).contains("panicked"));
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
