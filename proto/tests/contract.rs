//! Checks of the .proto sources themselves: layout, naming, every RPC of
//! SPEC §5 present, and a comment on every service, RPC, message, field,
//! oneof, enum and enum value.

use std::fs;
use std::path::PathBuf;

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("glyphoxa").join("v1")
}

fn proto_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(proto_dir())
        .expect("proto/glyphoxa/v1 exists")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).expect("readable proto"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn files_are_snake_case_in_package_glyphoxa_v1() {
    let files = proto_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["common.proto", "gateway.proto", "worker.proto"]);
    for (name, text) in &files {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'),
            "{name} is not snake_case"
        );
        assert!(text.contains("syntax = \"proto3\";"), "{name}: proto3");
        assert!(text.contains("\npackage glyphoxa.v1;\n"), "{name}: package");
        for line in text.lines().filter(|l| l.starts_with("import ")) {
            assert!(
                line.starts_with("import \"glyphoxa/v1/"),
                "{name}: import must be rooted at proto/: {line}"
            );
        }
    }
}

/// Whether a (trimmed) line declares something that needs a comment.
fn is_declaration(line: &str) -> bool {
    ["message ", "enum ", "service ", "rpc ", "oneof "]
        .iter()
        .any(|kw| line.starts_with(kw))
        || (line.contains(" = ") && line.ends_with(';') && !line.starts_with("syntax"))
}

#[test]
fn every_declaration_has_a_comment() {
    let mut missing = Vec::new();
    let mut declarations = 0;
    for (name, text) in proto_files() {
        let mut previous = "";
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if is_declaration(line) {
                declarations += 1;
                if !previous.starts_with("//") {
                    missing.push(format!("{name}:{}: {line}", number + 1));
                }
            }
            previous = line;
        }
    }
    assert!(declarations > 150, "parsed only {declarations} declarations");
    assert!(missing.is_empty(), "uncommented:\n{}", missing.join("\n"));
}

#[test]
fn every_spec_rpc_exists() {
    let worker = fs::read_to_string(proto_dir().join("worker.proto")).unwrap();
    let gateway = fs::read_to_string(proto_dir().join("gateway.proto")).unwrap();
    assert!(worker.contains("service SessionWorkerService {"));
    assert!(gateway.contains("service SessionGatewayService {"));
    for rpc in [
        "StartSession(StartSessionRequest)",
        "StopSession(StopSessionRequest)",
        "GetStatus(GetStatusRequest)",
        "UpdateVoiceServer(UpdateVoiceServerRequest)",
        "UpdateKnowledge(UpdateKnowledgeRequest)",
        "ListNPCs(ListNpcsRequest)",
        "MuteNPC(MuteNpcRequest)",
        "UnmuteNPC(UnmuteNpcRequest)",
        "SpeakNPC(SpeakNpcRequest)",
        "MuteAllNPCs(MuteAllNpcsRequest)",
        "UnmuteAllNPCs(UnmuteAllNpcsRequest)",
        "PlayAudio(stream PlayAudioRequest)",
    ] {
        assert!(worker.contains(&format!("rpc {rpc}")), "missing rpc {rpc}");
    }
    for rpc in [
        "ReportState(ReportStateRequest)",
        "Heartbeat(HeartbeatRequest)",
        "ReportEvents(stream SessionEvent)",
    ] {
        assert!(gateway.contains(&format!("rpc {rpc}")), "missing rpc {rpc}");
    }
}

#[test]
fn generated_services_have_the_contract_names() {
    use glyphoxa_proto::v1::{
        session_gateway_service_server::SERVICE_NAME as GATEWAY, session_worker_service_server::SERVICE_NAME as WORKER,
    };
    assert_eq!(WORKER, "glyphoxa.v1.SessionWorkerService");
    assert_eq!(GATEWAY, "glyphoxa.v1.SessionGatewayService");
}
