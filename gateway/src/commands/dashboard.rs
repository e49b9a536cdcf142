//! The live session dashboard (issue 10 item 4; SPEC §8) without Discord
//! types: the [`SessionObserver`] the session handlers notify, the figures
//! of a session ([`DashboardSnapshot`], read by [`DashboardSource`]), the
//! per-stage latency percentiles over its turn results ([`stage_stats`]) and
//! the embed showing them ([`dashboard_embed`]).
//!
//! The serenity side (posting the public message, editing it every few
//! seconds, finalising it) is [`crate::discord::dashboard`].

use std::sync::Arc;
use std::time::Duration;

use super::reply::Embed;
use super::{human_duration, SessionInfo};
use crate::ids::{DiscordId, SessionId};
use crate::store::{SessionState, TenantStore, TurnOutcome, TurnRecord};
use crate::workers::WorkerClient;

/// Learns when sessions start and stop through the slash commands (or the
/// bot being removed from voice). Implementations must return at once:
/// anything slow (Discord calls) runs in tasks of their own, and their
/// failures are theirs to log; they never affect the session.
pub trait SessionObserver: Send + Sync {
    /// `session` was started by a command run in `command_channel` (the
    /// text channel of the interaction, when known).
    fn started(&self, session: &SessionInfo, command_channel: Option<&DiscordId>);

    /// `session` has ended.
    fn stopped(&self, session: &SessionInfo);
}

/// The most turn results one dashboard refresh reads (the first ones of the
/// session); a game night has a few hundred.
pub const MAX_DASHBOARD_TURNS: u32 = 20_000;

/// The latency stages of a turn result, in pipeline order: the key in
/// [`TurnRecord::latencies`] and the label shown. Every stage is measured
/// from the end of the player's speech, so the last one is the turn latency.
pub const STAGES: [(&str, &str); 6] = [
    ("vad_end_of_speech_ms", "VAD end of speech"),
    ("stt_final_ms", "STT final"),
    ("llm_first_token_ms", "LLM first token"),
    ("first_sentence_ms", "First sentence"),
    ("tts_first_audio_ms", "TTS first audio"),
    ("first_frame_out_ms", "Total (first frame)"),
];

/// Embed colours by state.
const LIVE: u32 = 0x2e_cc_71;
const STARTING: u32 = 0xf1_c4_0f;
const ENDED: u32 = 0x95_a5_a6;
const OFFLINE: u32 = 0xe6_7e_22;

/// The `p`-th percentile (0–100) of ascending `sorted` values by the
/// nearest-rank method (always one of the values); `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil();
    // `rank` is within 0..=n, so the conversion cannot truncate.
    let index = (rank as usize).clamp(1, n) - 1;
    sorted.get(index).copied()
}

/// p50 and p95 of one latency stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStats {
    /// The key in [`TurnRecord::latencies`].
    pub stage: &'static str,
    /// The label shown.
    pub label: &'static str,
    /// How many turns reached the stage.
    pub count: usize,
    /// Median, ms.
    pub p50: Option<f64>,
    /// 95th percentile, ms.
    pub p95: Option<f64>,
}

/// p50/p95 of every stage in [`STAGES`] over `turns` (every outcome
/// counts; a turn counts for the stages it reached).
pub fn stage_stats(turns: &[TurnRecord]) -> Vec<StageStats> {
    STAGES
        .iter()
        .map(|&(stage, label)| {
            let mut values: Vec<f64> = turns
                .iter()
                .filter_map(|turn| turn.latencies.get(stage).copied())
                .filter(|value| value.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            StageStats {
                stage,
                label,
                count: values.len(),
                p50: percentile(&values, 50.0),
                p95: percentile(&values, 95.0),
            }
        })
        .collect()
}

/// A session's NPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NpcCounts {
    /// How many.
    pub total: usize,
    /// How many are muted.
    pub muted: usize,
}

/// A session's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardSnapshot {
    /// The session.
    pub session_id: SessionId,
    /// Its campaign's name (`None`: none, or gone).
    pub campaign: Option<String>,
    /// Its state.
    pub state: SessionState,
    /// How long it has run (or ran), ms.
    pub duration_ms: i64,
    /// Its NPCs, as the worker last reported them (`None`: not known).
    pub npcs: Option<NpcCounts>,
    /// Transcript entries (player utterances and NPC lines).
    pub utterances: i64,
    /// NPC turns.
    pub turns: usize,
    /// Failed turns (a provider failed).
    pub errors: usize,
    /// Per-stage latency percentiles.
    pub stages: Vec<StageStats>,
    /// Why it ended, once ended.
    pub end_reason: Option<String>,
    /// The error that ended or troubled it.
    pub error: Option<String>,
    /// When these figures were read, unix ms.
    pub at_ms: i64,
}

impl DashboardSnapshot {
    /// Figures from `session` alone (no turns or transcript known yet), at
    /// `now_ms`: what the dashboard shows when the store cannot be read.
    pub fn from_info(session: &SessionInfo, now_ms: i64) -> Self {
        Self {
            session_id: session.id.clone(),
            campaign: session.campaign.clone(),
            state: session.state,
            duration_ms: session.duration_ms,
            npcs: None,
            utterances: 0,
            turns: 0,
            errors: 0,
            stages: stage_stats(&[]),
            end_reason: None,
            error: None,
            at_ms: now_ms,
        }
    }

    /// These figures with `turns` counted in.
    pub fn with_turns(mut self, turns: &[TurnRecord]) -> Self {
        self.turns = turns.len();
        self.errors = turns.iter().filter(|t| t.outcome == TurnOutcome::Failed).count();
        self.stages = stage_stats(turns);
        self
    }
}

/// Reads a session's figures: the tenant's store (session, campaign,
/// transcript, turn results) and, while it runs, its worker (NPC roster).
#[derive(Clone)]
pub struct DashboardSource {
    store: TenantStore,
    workers: Arc<dyn WorkerClient>,
}

impl std::fmt::Debug for DashboardSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardSource")
            .field("tenant", self.store.tenant_id())
            .finish()
    }
}

impl DashboardSource {
    /// Figures from `store` (one tenant's) and `workers`.
    pub fn new(store: TenantStore, workers: Arc<dyn WorkerClient>) -> Self {
        Self { store, workers }
    }

    /// Now, unix ms, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.store.now_ms()
    }

    /// The figures of `session` now. NPC counts come from the worker while
    /// the session runs; when it cannot say (or the session has ended),
    /// `last_npcs` is kept. Fails (with what could not be read) only when
    /// the store does.
    pub async fn snapshot(
        &self,
        session: &SessionId,
        last_npcs: Option<NpcCounts>,
    ) -> Result<DashboardSnapshot, String> {
        let stored = self
            .store
            .session(session)
            .await
            .map_err(|e| format!("reading session {session}: {e}"))?
            .ok_or_else(|| format!("session {session} is not in the store"))?;
        let campaign = match &stored.campaign_id {
            Some(id) => self
                .store
                .campaign(id)
                .await
                .map_err(|e| format!("reading the campaign of session {session}: {e}"))?
                .map(|campaign| campaign.info.name),
            None => None,
        };
        let utterances = self
            .store
            .transcript_count(session)
            .await
            .map_err(|e| format!("counting the transcript of session {session}: {e}"))?;
        let turns = self
            .store
            .turn_results(session, MAX_DASHBOARD_TURNS)
            .await
            .map_err(|e| format!("reading the turn results of session {session}: {e}"))?;
        let npcs = match stored.worker_addr.as_deref() {
            Some(worker) if stored.is_live() => match self.workers.list_npcs(worker, session.as_str()).await {
                Ok(npcs) => Some(NpcCounts {
                    total: npcs.len(),
                    muted: npcs.iter().filter(|npc| npc.muted).count(),
                }),
                Err(error) => {
                    tracing::debug!(session_id = %session, %error, "the dashboard cannot list the session's NPCs");
                    last_npcs
                }
            },
            _ => last_npcs,
        };
        let now = self.store.now_ms();
        let snapshot = DashboardSnapshot {
            session_id: stored.id.clone(),
            campaign,
            state: stored.state,
            duration_ms: stored.duration_ms(now),
            npcs,
            utterances,
            turns: 0,
            errors: 0,
            stages: Vec::new(),
            end_reason: stored.end_reason.clone(),
            error: stored.error.clone(),
            at_ms: now,
        };
        Ok(snapshot.with_turns(&turns))
    }
}

/// What the dashboard message is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashboardPhase {
    /// Refreshed every `every`.
    Live {
        /// The refresh interval.
        every: Duration,
    },
    /// The session ended: final figures, no further edits.
    Final,
    /// The bot went offline while the session may still run: no further
    /// edits.
    Offline,
}

/// `HH:MM:SS UTC`.
fn utc_time(unix_ms: i64) -> String {
    let stamp = crate::time::rfc3339(unix_ms);
    match stamp.get(11..19) {
        Some(time) => format!("{time} UTC"),
        None => stamp,
    }
}

/// A latency for the table: `850 ms`, `12.3 s`, or `—`.
fn latency(ms: Option<f64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 10_000.0 => format!("{ms:.0} ms"),
        Some(ms) => format!("{:.1} s", ms / 1000.0),
    }
}

/// The stage table in a code block (fits an embed field: ≤ 1024).
fn latency_table(stages: &[StageStats]) -> String {
    let mut table = String::from("```\nstage                    p50       p95     n\n");
    for stage in stages {
        table.push_str(&format!(
            "{:<20} {:>9} {:>9} {:>5}\n",
            stage.label,
            latency(stage.p50),
            latency(stage.p95),
            stage.count
        ));
    }
    table.push_str("```");
    table
}

/// At most `limit` characters, with `…` when cut.
fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The dashboard embed for `snapshot` in `phase` (an ended session is shown
/// as final whatever the phase).
pub fn dashboard_embed(snapshot: &DashboardSnapshot, phase: DashboardPhase) -> Embed {
    let ended = snapshot.state == SessionState::Ended;
    let phase = if ended { DashboardPhase::Final } else { phase };
    let (title, status, color) = match (phase, snapshot.state) {
        (DashboardPhase::Final, _) => ("📊 Session ended", "⏹️ ended", ENDED),
        (DashboardPhase::Offline, _) => ("📊 Session dashboard (offline)", "⏸️ dashboard offline", OFFLINE),
        (DashboardPhase::Live { .. }, SessionState::Pending) => ("📊 Live session", "⏳ starting", STARTING),
        (DashboardPhase::Live { .. }, _) => ("📊 Live session", "🟢 live", LIVE),
    };
    let npcs = match snapshot.npcs {
        Some(NpcCounts { total, muted }) => format!("{total} ({muted} muted)"),
        None => "—".into(),
    };
    let mut embed = Embed::titled(title)
        .field("Campaign", snapshot.campaign.as_deref().unwrap_or("(none)"), true)
        .field("Status", status, true)
        .field("Duration", human_duration(snapshot.duration_ms), true)
        .field("Session", format!("`{}`", snapshot.session_id), false)
        .field("NPCs", npcs, true)
        .field("Utterances", snapshot.utterances.to_string(), true)
        .field("Turns", snapshot.turns.to_string(), true)
        .field("Errors", snapshot.errors.to_string(), true)
        .field("Latency since end of speech", latency_table(&snapshot.stages), false);
    if ended {
        if let Some(reason) = snapshot.end_reason.as_deref().filter(|r| !r.is_empty()) {
            embed = embed.field("Ended", shorten(reason, 200), false);
        }
    }
    if let Some(error) = snapshot.error.as_deref().filter(|e| !e.is_empty()) {
        embed = embed.field("Session error", shorten(error, 500), false);
    }
    let at = utc_time(snapshot.at_ms);
    let footer = match phase {
        DashboardPhase::Live { every } => {
            format!("Updated every {} · as of {at}", human_duration(duration_ms(every)))
        }
        DashboardPhase::Final => format!("Final figures · {at}"),
        DashboardPhase::Offline => format!("The bot went offline; no further updates. Figures as of {at}."),
    };
    embed.color = Some(color);
    embed.footer(footer)
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::commands::reply::{MAX_EMBED_TOTAL_CHARS, MAX_FIELD_VALUE_CHARS};
    use crate::commands::testing::*;
    use crate::store::{NewTranscriptLine, SessionEventRecord};

    fn turn(n: usize, outcome: TurnOutcome, stages: &[(&str, f64)]) -> TurnRecord {
        TurnRecord {
            turn_id: format!("t{n}"),
            npc_id: Some("grimble".into()),
            npc_name: Some("Grimble".into()),
            outcome,
            latencies: stages
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>(),
            speech_end_ms: Some(T0),
            speaker_id: Some(PLAYER.into()),
            error: (outcome == TurnOutcome::Failed).then(|| "llm 503".into()),
            played_ms: 0,
            at_ms: T0,
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 95.0), Some(7.0));
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&values, 0.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 95.0), Some(4.0));
    }

    #[test]
    fn stage_stats_count_every_outcome_and_skip_missing_stages() {
        let mut turns: Vec<TurnRecord> = (1..=19)
            .map(|i| {
                let i = f64::from(i);
                turn(
                    0,
                    TurnOutcome::Spoke,
                    &[("stt_final_ms", 100.0 * i), ("first_frame_out_ms", 1000.0 + i)],
                )
            })
            .collect();
        // A failed turn reached STT only; it still counts there.
        turns.push(turn(20, TurnOutcome::Failed, &[("stt_final_ms", 5000.0)]));
        let stats = stage_stats(&turns);
        assert_eq!(stats.len(), STAGES.len());
        let stt = &stats[1];
        assert_eq!((stt.stage, stt.count), ("stt_final_ms", 20));
        assert_eq!(stt.p50, Some(1000.0));
        assert_eq!(stt.p95, Some(1900.0));
        let total = &stats[5];
        assert_eq!(total.count, 19);
        assert_eq!(total.p50, Some(1010.0));
        assert_eq!(total.p95, Some(1019.0));
        let vad = &stats[0];
        assert_eq!((vad.count, vad.p50, vad.p95), (0, None, None));
    }

    fn snapshot() -> DashboardSnapshot {
        let turns = vec![
            turn(
                1,
                TurnOutcome::Spoke,
                &[("stt_final_ms", 320.0), ("first_frame_out_ms", 1250.0)],
            ),
            turn(
                2,
                TurnOutcome::Cut,
                &[("stt_final_ms", 410.0), ("first_frame_out_ms", 15_500.0)],
            ),
            turn(3, TurnOutcome::Failed, &[("stt_final_ms", 380.0)]),
        ];
        DashboardSnapshot {
            session_id: SessionId::parse("s-1").expect("id"),
            campaign: Some("The Yawning Portal".into()),
            state: SessionState::Active,
            duration_ms: 185_000,
            npcs: Some(NpcCounts { total: 5, muted: 2 }),
            utterances: 42,
            turns: 0,
            errors: 0,
            stages: Vec::new(),
            end_reason: None,
            error: None,
            at_ms: T0 + 3_723_000,
        }
        .with_turns(&turns)
    }

    fn field<'a>(embed: &'a Embed, name: &str) -> &'a str {
        embed
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
            .unwrap_or_else(|| panic!("no field {name} in {embed:?}"))
    }

    #[test]
    fn the_live_embed_shows_every_figure() {
        let snapshot = snapshot();
        assert_eq!((snapshot.turns, snapshot.errors), (3, 1));
        let embed = dashboard_embed(
            &snapshot,
            DashboardPhase::Live {
                every: Duration::from_secs(10),
            },
        );
        assert_eq!(embed.title, "📊 Live session");
        assert_eq!(field(&embed, "Campaign"), "The Yawning Portal");
        assert_eq!(field(&embed, "Status"), "🟢 live");
        assert_eq!(field(&embed, "Duration"), "3 min 05 s");
        assert_eq!(field(&embed, "Session"), "`s-1`");
        assert_eq!(field(&embed, "NPCs"), "5 (2 muted)");
        assert_eq!(field(&embed, "Utterances"), "42");
        assert_eq!(field(&embed, "Turns"), "3");
        assert_eq!(field(&embed, "Errors"), "1");
        let table = field(&embed, "Latency since end of speech");
        let stt = table.lines().find(|l| l.starts_with("STT final")).expect("STT row");
        assert!(
            stt.contains("380 ms") && stt.contains("410 ms") && stt.trim_end().ends_with('3'),
            "{stt}"
        );
        let total = table.lines().find(|l| l.starts_with("Total")).expect("total row");
        assert!(total.contains("1250 ms") && total.contains("15.5 s"), "{total}");
        let vad = table.lines().find(|l| l.starts_with("VAD")).expect("VAD row");
        assert!(vad.contains('—'), "{vad}");
        assert!(table.chars().count() <= MAX_FIELD_VALUE_CHARS);
        assert!(embed.chars() <= MAX_EMBED_TOTAL_CHARS);
        assert_eq!(embed.footer.as_deref(), Some("Updated every 10 s · as of 13:02:03 UTC"));
        assert_eq!(embed.color, Some(LIVE));
    }

    #[test]
    fn ended_and_offline_embeds_say_so() {
        let mut ended = snapshot();
        ended.state = SessionState::Ended;
        ended.end_reason = Some("stopped by 1".into());
        // An ended session is final whatever the phase.
        let embed = dashboard_embed(&ended, DashboardPhase::Offline);
        assert_eq!(embed.title, "📊 Session ended");
        assert_eq!(field(&embed, "Status"), "⏹️ ended");
        assert_eq!(field(&embed, "Ended"), "stopped by 1");
        assert!(embed.footer.as_deref().unwrap_or_default().starts_with("Final figures"));
        assert_eq!(embed.color, Some(ENDED));

        let embed = dashboard_embed(&snapshot(), DashboardPhase::Offline);
        assert_eq!(field(&embed, "Status"), "⏸️ dashboard offline");
        assert!(embed
            .footer
            .as_deref()
            .unwrap_or_default()
            .contains("no further updates"));

        let mut unknown = DashboardSnapshot::from_info(
            &SessionInfo {
                id: SessionId::parse("s-2").expect("id"),
                campaign_id: None,
                campaign: None,
                guild_id: id(GUILD),
                channel_id: id(VOICE_CHANNEL),
                started_by: id(DM),
                state: SessionState::Pending,
                started_at: T0,
                duration_ms: 0,
                worker: None,
            },
            T0,
        );
        unknown.error = Some("worker slow".into());
        let embed = dashboard_embed(
            &unknown,
            DashboardPhase::Live {
                every: Duration::from_secs(10),
            },
        );
        assert_eq!(field(&embed, "Status"), "⏳ starting");
        assert_eq!(field(&embed, "NPCs"), "—");
        assert_eq!(field(&embed, "Campaign"), "(none)");
        assert_eq!(field(&embed, "Session error"), "worker slow");
    }

    #[tokio::test]
    async fn the_source_reads_the_store_and_the_worker() {
        let bench = Bench::new().await;
        bench.start_session().await;
        let live = bench.ctx.sessions.info(&id(GUILD)).await.unwrap().unwrap();
        let store = bench.ctx.store();
        let line = NewTranscriptLine {
            speaker_id: PLAYER.into(),
            speaker_name: "Pip".into(),
            npc_id: None,
            text: "Hello, Grimble!".into(),
            start_ms: T0,
            end_ms: T0 + 900,
            outcome: None,
            turn_id: None,
            puppet: false,
        };
        store.append_transcript(&live.id, &line).await.unwrap();
        let spoke = turn(
            1,
            TurnOutcome::Spoke,
            &[("stt_final_ms", 300.0), ("first_frame_out_ms", 900.0)],
        );
        let failed = turn(2, TurnOutcome::Failed, &[("stt_final_ms", 500.0)]);
        for (sequence, turn) in [(1, spoke), (2, failed)] {
            let stored = store
                .record_event(&live.id, sequence, &SessionEventRecord::Turn(turn))
                .await
                .unwrap();
            assert_eq!(stored, Some(true));
        }
        bench.clock.advance(Duration::from_secs(65));
        let source = DashboardSource::new(store, Arc::clone(&bench.ctx.workers));
        let figures = source.snapshot(&live.id, None).await.unwrap();
        assert_eq!(figures.state, SessionState::Active);
        assert_eq!(figures.campaign.as_deref(), Some("Default campaign"));
        assert_eq!(figures.utterances, 1);
        assert_eq!((figures.turns, figures.errors), (2, 1));
        assert_eq!(figures.stages[1].p95, Some(500.0));
        assert_eq!(figures.duration_ms, 65_000);
        assert!(figures.npcs.is_some(), "the worker reports the roster");

        // Ended: the last NPC figures stay, the duration stops.
        bench.text(command("session", Some("stop"))).await;
        bench.clock.advance(Duration::from_secs(60));
        let kept = Some(NpcCounts { total: 3, muted: 1 });
        let figures = source.snapshot(&live.id, kept).await.unwrap();
        assert_eq!(figures.state, SessionState::Ended);
        assert_eq!(figures.npcs, kept);
        assert_eq!(figures.duration_ms, 65_000);
        assert!(figures.end_reason.is_some());

        let missing = SessionId::parse("nope").unwrap();
        assert!(source.snapshot(&missing, None).await.unwrap_err().contains("nope"));
    }
}
