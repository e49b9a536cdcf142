//! [`SessionDashboards`]: the live session dashboard of one tenant's bot
//! (issue 10 item 4) — the [`SessionObserver`] that, when `/session start`
//! succeeds, posts a public message in the dashboard channel
//! ([`DiscordSettings::dashboard_channel_id`], default: the channel of the
//! command) and edits it every [`DiscordSettings::dashboard_interval`] with
//! the session's figures ([`crate::commands::dashboard`]).
//!
//! One task per live session. `/session stop` (or the session ending any
//! other way, seen at the next refresh) makes it write the final figures
//! and end; so does the bot shutting down ([`SessionDashboards::shutdown`],
//! or dropping the dashboards), which marks the message offline. A Discord
//! failure is logged and never touches the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serenity::all::{ChannelId, Http, MessageId};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::MissedTickBehavior;

use super::responder::{describe, status_of};
use super::{wire, DiscordSettings};
use crate::commands::dashboard::{dashboard_embed, DashboardPhase, DashboardSnapshot, DashboardSource, NpcCounts};
use crate::commands::{Message, SessionInfo, SessionObserver};
use crate::ids::{DiscordId, SessionId, TenantId};
use crate::store::SessionState;

/// Why a dashboard stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// The session ended.
    Ended,
    /// The bot is shutting down (the session may go on).
    BotStopped,
}

/// A live dashboard's task and how to stop it.
struct Live {
    finish: oneshot::Sender<Finish>,
    task: JoinHandle<()>,
}

/// The live dashboards by session.
#[derive(Default)]
struct Registry {
    live: Mutex<HashMap<SessionId, Live>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Live>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The live dashboards of one tenant's bot, posted and edited through the
/// bot's REST client.
pub struct SessionDashboards {
    tenant: TenantId,
    http: Arc<Http>,
    source: DashboardSource,
    /// The configured channel (`None`: the command's channel).
    channel: Option<DiscordId>,
    interval: Duration,
    registry: Arc<Registry>,
}

impl std::fmt::Debug for SessionDashboards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDashboards")
            .field("tenant", &self.tenant)
            .field("channel", &self.channel)
            .field("interval", &self.interval)
            .field("live", &self.registry.lock().len())
            .finish()
    }
}

impl SessionDashboards {
    /// Dashboards of `tenant`, posted through `http`, with figures from
    /// `source`, in the channel and at the interval of `settings` (an
    /// unusable channel id is logged and the command's channel used).
    pub fn new(tenant: TenantId, http: Arc<Http>, source: DashboardSource, settings: &DiscordSettings) -> Self {
        let channel = settings
            .dashboard_channel_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .and_then(|id| match DiscordId::parse(id) {
                Ok(id) => Some(id),
                Err(error) => {
                    tracing::warn!(%tenant, %error, "the dashboard channel id is unusable; dashboards go to the channel of /session start");
                    None
                }
            });
        Self {
            tenant,
            http,
            source,
            channel,
            // Never a busy loop, whatever the settings say.
            interval: settings.dashboard_interval.max(Duration::from_millis(10)),
            registry: Arc::new(Registry::default()),
        }
    }

    /// Sessions whose dashboard is live.
    pub fn live(&self) -> Vec<SessionId> {
        self.registry.lock().keys().cloned().collect()
    }

    /// The bot is going away: every live dashboard shows its last figures
    /// and that it is offline; waits up to `grace` for those edits.
    pub async fn shutdown(&self, grace: Duration) {
        let live: Vec<Live> = self.registry.lock().drain().map(|(_, live)| live).collect();
        if live.is_empty() {
            return;
        }
        let mut tasks = Vec::with_capacity(live.len());
        let mut aborts: Vec<AbortHandle> = Vec::with_capacity(live.len());
        for Live { finish, task } in live {
            // A task that already ended has dropped its receiver: nothing to tell.
            let _ = finish.send(Finish::BotStopped);
            aborts.push(task.abort_handle());
            tasks.push(task);
        }
        if tokio::time::timeout(grace, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(tenant = %self.tenant, "some session dashboards were not finalised within the shutdown grace period");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

impl SessionObserver for SessionDashboards {
    fn started(&self, session: &SessionInfo, command_channel: Option<&DiscordId>) {
        let Some(channel) = self.channel.as_ref().or(command_channel) else {
            tracing::info!(tenant = %self.tenant, session_id = %session.id, "no channel for the session dashboard");
            return;
        };
        let Ok(channel_id) = channel.as_str().parse::<ChannelId>() else {
            tracing::warn!(tenant = %self.tenant, %channel, "the dashboard channel is not a usable channel id");
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(tenant = %self.tenant, "no tokio runtime: the session dashboard is not posted");
            return;
        };
        let mut live = self.registry.lock();
        if live.contains_key(&session.id) {
            return;
        }
        let (finish, finished) = oneshot::channel();
        let task = DashboardTask {
            tenant: self.tenant.clone(),
            session: session.clone(),
            http: Arc::clone(&self.http),
            source: self.source.clone(),
            channel: channel_id,
            interval: self.interval,
            registry: Arc::downgrade(&self.registry),
        };
        let task = runtime.spawn(task.run(finished));
        live.insert(session.id.clone(), Live { finish, task });
    }

    fn stopped(&self, session: &SessionInfo) {
        let live = self.registry.lock().remove(&session.id);
        if let Some(live) = live {
            // A task that already ended has dropped its receiver: nothing to tell.
            let _ = live.finish.send(Finish::Ended);
        }
    }
}

/// One session's dashboard message, from posting to finalising.
struct DashboardTask {
    tenant: TenantId,
    session: SessionInfo,
    http: Arc<Http>,
    source: DashboardSource,
    channel: ChannelId,
    interval: Duration,
    registry: Weak<Registry>,
}

/// The message body of a dashboard.
fn body(snapshot: &DashboardSnapshot, phase: DashboardPhase) -> serde_json::Value {
    wire::message_json(&Message::embed(dashboard_embed(snapshot, phase)).public(), false)
}

impl DashboardTask {
    async fn run(self, mut finish: oneshot::Receiver<Finish>) {
        let mut last = self
            .read(None)
            .await
            .unwrap_or_else(|| DashboardSnapshot::from_info(&self.session, self.source.now_ms()));
        let live = DashboardPhase::Live { every: self.interval };
        let message = match self
            .http
            .send_message(self.channel, Vec::new(), &body(&last, live))
            .await
        {
            Ok(message) => message.id,
            Err(error) => {
                tracing::warn!(
                    tenant = %self.tenant, session_id = %self.session.id, channel = %self.channel,
                    error = %describe(&error), "cannot post the session dashboard"
                );
                self.forget();
                return;
            }
        };
        tracing::info!(tenant = %self.tenant, session_id = %self.session.id, channel = %self.channel, "session dashboard posted");
        let start = tokio::time::Instant::now() + self.interval;
        let mut ticker = tokio::time::interval_at(start, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                biased;
                why = &mut finish => break why.unwrap_or(Finish::BotStopped),
                _ = ticker.tick() => {
                    if let Some(now) = self.read(last.npcs).await {
                        last = now;
                    }
                    if last.state == SessionState::Ended {
                        // Ended without /session stop (cleanup, admin API).
                        break Finish::Ended;
                    }
                    if !self.edit(message, &last, live).await {
                        self.forget();
                        return;
                    }
                }
            }
        };
        if let Some(now) = self.read(last.npcs).await {
            last = now;
        }
        let phase = match why {
            Finish::Ended => DashboardPhase::Final,
            Finish::BotStopped => DashboardPhase::Offline,
        };
        if self.edit(message, &last, phase).await {
            tracing::info!(tenant = %self.tenant, session_id = %self.session.id, ?phase, "session dashboard finalised");
        }
        self.forget();
    }

    /// The session's figures now, or `None` (logged) when they cannot be read.
    async fn read(&self, last_npcs: Option<NpcCounts>) -> Option<DashboardSnapshot> {
        match self.source.snapshot(&self.session.id, last_npcs).await {
            Ok(snapshot) => Some(snapshot),
            Err(error) => {
                tracing::warn!(tenant = %self.tenant, session_id = %self.session.id, %error, "cannot read the session dashboard's figures");
                None
            }
        }
    }

    /// Edits the message; `false` when it is gone (deleted in Discord, or
    /// the channel is), so editing it again is pointless.
    async fn edit(&self, message: MessageId, snapshot: &DashboardSnapshot, phase: DashboardPhase) -> bool {
        match self
            .http
            .edit_message(self.channel, message, &body(snapshot, phase), Vec::new())
            .await
        {
            Ok(_) => true,
            Err(error) => {
                let gone = matches!(status_of(&error), Some(403 | 404));
                tracing::warn!(
                    tenant = %self.tenant, session_id = %self.session.id, channel = %self.channel,
                    error = %describe(&error), gone, "cannot edit the session dashboard"
                );
                !gone
            }
        }
    }

    /// Leaves the registry (the dashboard is done).
    fn forget(&self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().remove(&self.session.id);
        }
    }
}

#[cfg(all(test, feature = "fakes"))]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::commands::testing::*;
    use crate::commands::StopCause;
    use crate::crypto::BotToken;
    use crate::discord::fake::{BotFixture, FakeDiscord, FakeState};
    use crate::discord::manager::http_client;
    use crate::store::NewTranscriptLine;

    const TOKEN: &str = "dashboard-token";
    const WAIT: Duration = Duration::from_secs(10);
    const INTERVAL: Duration = Duration::from_millis(50);

    struct Setup {
        fake: FakeDiscord,
        bench: Bench,
        dashboards: Arc<SessionDashboards>,
    }

    async fn setup(settings: DiscordSettings, api_url: Option<&str>) -> Setup {
        let fake = FakeDiscord::start().await.expect("fake Discord");
        fake.add_bot(BotFixture::new(TOKEN, "71", "72", "Glyphoxa"));
        let mut bench = Bench::new().await;
        let url = api_url.map_or_else(|| fake.url(), str::to_string);
        let http = Arc::new(http_client(&BotToken::new(TOKEN), Some(&url), reqwest::Client::new()));
        let source = DashboardSource::new(bench.ctx.store(), Arc::clone(&bench.ctx.workers));
        let dashboards = Arc::new(SessionDashboards::new(
            bench.ctx.tenant.clone(),
            http,
            source,
            &DiscordSettings {
                dashboard_interval: INTERVAL,
                ..settings
            },
        ));
        bench.ctx = bench
            .ctx
            .clone()
            .with_observer(Arc::clone(&dashboards) as Arc<dyn SessionObserver>);
        Setup {
            fake,
            bench,
            dashboards,
        }
    }

    /// The only message of `channel`, once there is one meeting `condition`.
    async fn message_when(fake: &FakeDiscord, channel: &str, condition: impl Fn(&Value) -> bool) -> Value {
        let found = |state: &FakeState| state.channel_messages(channel).first().is_some_and(|m| condition(m));
        if let Err(error) = fake.wait_until(found, WAIT).await {
            panic!("{error}");
        }
        let messages = fake.channel_messages(channel);
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages[0].clone()
    }

    fn title(message: &Value) -> &str {
        message["embeds"][0]["title"].as_str().unwrap_or_default()
    }

    fn field<'a>(message: &'a Value, name: &str) -> &'a str {
        message["embeds"][0]["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["name"] == name)
            .and_then(|f| f["value"].as_str())
            .unwrap_or_default()
    }

    fn edits(fake: &FakeDiscord, message: &Value) -> usize {
        let id = message["id"].as_str().unwrap_or_default();
        fake.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with(&format!("/messages/{id}")))
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_on_start_edits_while_live_finalises_on_stop_then_stays_quiet() {
        let Setup {
            fake,
            bench,
            dashboards,
        } = setup(DiscordSettings::default(), None).await;
        bench.start_session().await;
        let live = bench.ctx.sessions.info(&id(GUILD)).await.unwrap().unwrap();
        let posted = message_when(&fake, TEXT_CHANNEL, |m| title(m) == "📊 Live session").await;
        assert_eq!(posted["flags"], 0, "public");
        assert_eq!(field(&posted, "Session"), format!("`{}`", live.id));
        assert_eq!(field(&posted, "Campaign"), "Default campaign");
        assert_eq!(dashboards.live(), vec![live.id.clone()]);

        // New figures show up in the next edits.
        let line = NewTranscriptLine {
            speaker_id: PLAYER.into(),
            speaker_name: "Pip".into(),
            npc_id: None,
            text: "Hello there".into(),
            start_ms: T0,
            end_ms: T0 + 500,
            outcome: None,
            turn_id: None,
            puppet: false,
        };
        bench.ctx.store().append_transcript(&live.id, &line).await.unwrap();
        let edited = message_when(&fake, TEXT_CHANNEL, |m| field(m, "Utterances") == "1").await;
        assert!(!edited["edited_timestamp"].is_null());
        assert_eq!(field(&edited, "Status"), "🟢 live");
        assert!(field(&edited, "NPCs").contains("muted"), "{edited}");

        bench.clock.advance(Duration::from_secs(65));
        let text = bench.text(command("session", Some("stop"))).await;
        assert!(text.contains("Session ended"), "the reply is unchanged: {text}");
        let last = message_when(&fake, TEXT_CHANNEL, |m| title(m) == "📊 Session ended").await;
        assert_eq!(field(&last, "Status"), "⏹️ ended");
        assert_eq!(field(&last, "Duration"), "1 min 05 s");
        assert!(last["embeds"][0]["footer"]["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Final figures"));
        let settled = edits(&fake, &last);
        tokio::time::sleep(INTERVAL * 6).await;
        assert_eq!(edits(&fake, &last), settled, "no edits after the final one");
        assert!(dashboards.live().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_configured_channel_and_a_bot_shutdown() {
        let settings = DiscordSettings::default().with_dashboard_channel("999");
        let Setup {
            fake,
            bench,
            dashboards,
        } = setup(settings, None).await;
        bench.start_session().await;
        message_when(&fake, "999", |m| title(m) == "📊 Live session").await;
        assert!(fake.channel_messages(TEXT_CHANNEL).is_empty());
        dashboards.shutdown(WAIT).await;
        let last = message_when(&fake, "999", |m| field(m, "Status") == "⏸️ dashboard offline").await;
        assert!(dashboards.live().is_empty());
        let settled = edits(&fake, &last);
        tokio::time::sleep(INTERVAL * 4).await;
        assert_eq!(edits(&fake, &last), settled);
        assert!(
            bench.ctx.sessions.info(&id(GUILD)).await.unwrap().is_some(),
            "the session goes on"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_ended_elsewhere_is_finalised_at_the_next_refresh() {
        let Setup {
            fake,
            bench,
            dashboards,
        } = setup(DiscordSettings::default(), None).await;
        bench.start_session().await;
        message_when(&fake, TEXT_CHANNEL, |m| title(m) == "📊 Live session").await;
        // Ended without /session stop (zombie cleanup, admin API).
        bench
            .ctx
            .sessions
            .stop(&id(GUILD), StopCause::Command(&id(DM)))
            .await
            .unwrap();
        message_when(&fake, TEXT_CHANNEL, |m| title(m) == "📊 Session ended").await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !dashboards.live().is_empty() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discord_failing_never_touches_the_session() {
        let Setup {
            fake: _fake,
            bench,
            dashboards,
        } = setup(DiscordSettings::default(), Some("http://127.0.0.1:1")).await;
        bench.start_session().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !dashboards.live().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the failed post is given up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(bench.ctx.sessions.info(&id(GUILD)).await.unwrap().is_some());
        let text = bench.text(command("session", Some("stop"))).await;
        assert!(text.contains("Session ended"), "{text}");
    }
}
