//! `/feedback`: the modal, clamped ratings, refusals and the stored rows.

use super::{modal_inputs, Table, PLAYER_ID};
use crate::discord::fake::InteractionFixture;

/// `/feedback` before any session (refused), during one (a player without
/// the DM role gets the modal; ratings out of range are clamped, "3/5"
/// reads as 3, a rating that is no number is refused naming the field) and
/// after it (rates the last session). The table's tenant must have a DM role.
pub async fn feedback_modal_and_average(table: &dyn Table) {
    assert!(table.dm_role().is_some(), "the feedback scenario needs a DM role");
    let player = |interaction: InteractionFixture| interaction.by_user(PLAYER_ID, "pip").with_roles(Vec::new());

    // No session yet.
    let text = table.text(player(table.command("feedback", None, vec![])), 1).await;
    assert!(text.contains("no session in this server"), "{text}");

    let text = table.text(table.command("session", Some("start"), vec![]), 2).await;
    assert!(text.contains("Session started"), "{text}");
    let session = table.live_session().await;

    // Anyone (no DM role) gets the modal: four ratings and a comment.
    let modal = table.first(player(table.command("feedback", None, vec![]))).await;
    assert_eq!(modal["type"], 9, "{modal}");
    let custom_id = modal["data"]["custom_id"].as_str().unwrap_or_default().to_string();
    assert_eq!(custom_id, format!("feedback:{session}"));
    let inputs: Vec<String> = modal_inputs(&modal).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        inputs,
        [
            "voice_latency",
            "npc_personality",
            "memory_accuracy",
            "dm_workflow",
            "comment"
        ]
    );

    // Submitted with one rating out of range (clamped) and one as "3/5".
    let form = table.submit(
        &custom_id,
        &[
            ("voice_latency", "5"),
            ("npc_personality", "4"),
            ("memory_accuracy", "9"),
            ("dm_workflow", "3/5"),
            ("comment", "Grimble was great."),
        ],
    );
    let text = table.text(player(form), 1).await;
    assert!(text.contains("Average: **4.3** / 5"), "{text}");
    assert!(text.contains("memory accuracy 5"), "clamped: {text}");
    let stored = table.store().feedback(Some(&session)).await.expect("the store answers");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_id.as_str(), PLAYER_ID);
    assert_eq!(stored[0].comment, "Grimble was great.");
    let r = stored[0].ratings;
    assert_eq!(
        (r.voice_latency, r.npc_personality, r.memory_accuracy, r.dm_workflow),
        (5, 4, 5, 3)
    );

    // A rating that is no number is refused, naming the field; nothing changes.
    let bad = table.submit(
        &custom_id,
        &[
            ("voice_latency", "great"),
            ("npc_personality", "4"),
            ("memory_accuracy", "4"),
            ("dm_workflow", "4"),
        ],
    );
    let text = table.text(player(bad), 1).await;
    assert!(text.contains("Voice latency must be a number"), "{text}");
    let stored = table.store().feedback(Some(&session)).await.expect("the store answers");
    assert_eq!(stored.len(), 1, "the refused form stored nothing");

    // After the session: feedback still rates the last one.
    table.text(table.command("session", Some("stop"), vec![]), 2).await;
    let modal = table.first(table.command("feedback", None, vec![])).await;
    assert_eq!(modal["data"]["custom_id"], format!("feedback:{session}"));
}
