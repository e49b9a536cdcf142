//! `glyphoxa --mode gateway`: the admin API, the `SessionGatewayService`
//! gRPC server, the session cleanup loop and the tenants' Discord bots over
//! one store, with graceful shutdown. The binary owns configuration, logging
//! and metrics export and hands plain [`GatewaySettings`] to [`run`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminError, AdminSettings, AdminState};
use crate::bots::BotManager;
use crate::commands::RecapEngines;
use crate::discord::{DiscordSettings, HttpAttachments, SerenityBots};
use crate::gateway_api::GatewayHandler;
use crate::orchestrator::{Orchestrator, OrchestratorSettings};
use crate::store::{Store, StoreError, StoreSettings};
use crate::workers::{GrpcWorkerPool, WorkerClient, WorkerError, WorkerPoolSettings};

/// Everything gateway mode needs, as plain values.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The database (`GLYPHOXA_DATABASE_URL` / `storage`).
    pub store: StoreSettings,
    /// Admin API listen address (`GLYPHOXA_ADMIN_ADDR`, default `0.0.0.0:8081`).
    pub admin_addr: SocketAddr,
    /// gRPC listen address for workers (`GLYPHOXA_GRPC_ADDR`, default `0.0.0.0:50052`).
    pub grpc_addr: SocketAddr,
    /// Admin key, secret key and body limit.
    pub admin: AdminSettings,
    /// The workers (`workers:`).
    pub workers: WorkerPoolSettings,
    /// Heartbeat, zombie and dispatch timeouts.
    pub orchestrator: OrchestratorSettings,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How the tenants' bots reach Discord (`GLYPHOXA_DISCORD_API_URL`).
    pub discord: DiscordSettings,
}

impl GatewaySettings {
    /// Defaults (`0.0.0.0:8081`, `0.0.0.0:50052`, no workers) for a
    /// database and an admin key.
    pub fn new(database_url: impl Into<String>, admin_key: impl Into<String>) -> Self {
        Self {
            store: StoreSettings::new(database_url),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50052)),
            admin: AdminSettings::new(admin_key),
            workers: WorkerPoolSettings::default(),
            orchestrator: OrchestratorSettings::default(),
            shutdown_grace: Duration::from_secs(10),
            discord: DiscordSettings::default(),
        }
    }
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The admin API cannot start (no admin key, bad secret key).
    #[error("admin API: {0}")]
    Admin(#[from] AdminError),
    /// The database cannot be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker list is unusable.
    #[error("workers: {0}")]
    Workers(#[from] WorkerError),
    /// A listen address cannot be bound.
    #[error("cannot listen for the {what} on {addr}: {source}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The Discord bots cannot be set up.
    #[error("Discord bots: {0}")]
    Discord(String),
    /// A server failed while running.
    #[error("the {what} failed: {message}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Why.
        message: String,
    },
}

type Task = JoinHandle<Result<(), GatewayError>>;

/// Where the gateway's bot manager comes from.
enum BotSource {
    /// Given by the caller (tests, builds without Discord).
    Given(Arc<dyn BotManager>),
    /// One serenity bot per tenant, built over the gateway's orchestrator.
    Discord(RecapEngines),
}

/// A running gateway: see [`Gateway::start`].
pub struct Gateway {
    admin_addr: SocketAddr,
    grpc_addr: SocketAddr,
    orchestrator: Arc<Orchestrator>,
    bots: Arc<dyn BotManager>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, Task)>,
    grace: Duration,
    discord: Option<Arc<SerenityBots>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("admin_addr", &self.admin_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish()
    }
}

/// How often the `glyphoxa_bots{state}` gauges are refreshed.
pub const BOT_METRICS_INTERVAL: Duration = Duration::from_secs(5);

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

impl Gateway {
    /// Checks the settings, opens and migrates the store, binds both
    /// listeners, reconnects every tenant bot that has a token and starts
    /// serving. Fails before binding anything when the admin key is missing.
    pub async fn start(settings: GatewaySettings, bots: Arc<dyn BotManager>) -> Result<Self, GatewayError> {
        let workers: Arc<dyn WorkerClient> = Arc::new(GrpcWorkerPool::new(settings.workers.clone())?);
        Self::start_with_workers(settings, bots, workers).await
    }

    /// [`Gateway::start`] with a given worker client (e.g. in-process).
    pub async fn start_with_workers(
        settings: GatewaySettings,
        bots: Arc<dyn BotManager>,
        workers: Arc<dyn WorkerClient>,
    ) -> Result<Self, GatewayError> {
        Self::start_inner(settings, workers, BotSource::Given(bots)).await
    }

    /// [`Gateway::start`] with the tenants' real Discord bots (serenity,
    /// through `settings.discord`), making recaps with `recaps`.
    pub async fn start_with_discord(settings: GatewaySettings, recaps: RecapEngines) -> Result<Self, GatewayError> {
        let workers: Arc<dyn WorkerClient> = Arc::new(GrpcWorkerPool::new(settings.workers.clone())?);
        Self::start_inner(settings, workers, BotSource::Discord(recaps)).await
    }

    /// [`Gateway::start_with_discord`] with a given worker client.
    pub async fn start_with_discord_workers(
        settings: GatewaySettings,
        workers: Arc<dyn WorkerClient>,
        recaps: RecapEngines,
    ) -> Result<Self, GatewayError> {
        Self::start_inner(settings, workers, BotSource::Discord(recaps)).await
    }

    async fn start_inner(
        settings: GatewaySettings,
        workers: Arc<dyn WorkerClient>,
        bots: BotSource,
    ) -> Result<Self, GatewayError> {
        // Refuse to start without an admin key before touching anything.
        crate::crypto::AdminKey::new(&settings.admin.admin_key).map_err(AdminError::from)?;
        let store = Store::connect(&settings.store).await?;
        let orchestrator = Arc::new(Orchestrator::new(store, workers, settings.orchestrator));
        let (bots, discord) = match bots {
            BotSource::Given(bots) => (bots, None),
            BotSource::Discord(recaps) => {
                let files = HttpAttachments::new(crate::discord::attachments::DEFAULT_DOWNLOAD_TIMEOUT)
                    .map_err(GatewayError::Discord)?;
                let discord = Arc::new(
                    SerenityBots::new(
                        settings.discord.clone(),
                        Arc::clone(&orchestrator),
                        Arc::new(files),
                        recaps,
                    )
                    .map_err(GatewayError::Discord)?,
                );
                (Arc::clone(&discord) as Arc<dyn BotManager>, Some(discord))
            }
        };
        let state = AdminState::new(&settings.admin, Arc::clone(&orchestrator), Arc::clone(&bots))?;
        let admin_listener = TcpListener::bind(settings.admin_addr)
            .await
            .map_err(|source| GatewayError::Bind {
                what: "admin API",
                addr: settings.admin_addr,
                source,
            })?;
        let grpc_listener = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|source| GatewayError::Bind {
                what: "gateway gRPC server",
                addr: settings.grpc_addr,
                source,
            })?;
        let admin_addr = admin_listener.local_addr().unwrap_or(settings.admin_addr);
        let grpc_addr = grpc_listener.local_addr().unwrap_or(settings.grpc_addr);

        admin::reconnect_bots(&state).await;

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks: Vec<(&'static str, Task)> = Vec::new();
        let router = admin::router(state);
        let signal = stopped(stop_rx.clone());
        tasks.push((
            "admin API",
            tokio::spawn(async move {
                axum::serve(admin_listener, router)
                    .with_graceful_shutdown(signal)
                    .await
                    .map_err(|e| GatewayError::Serve {
                        what: "admin API",
                        message: e.to_string(),
                    })
            }),
        ));
        let handler: Arc<dyn glyphoxa_proto::GatewayApi> = Arc::new(GatewayHandler::new(Arc::clone(&orchestrator)));
        let signal = stopped(stop_rx.clone());
        tasks.push((
            "gateway gRPC server",
            tokio::spawn(async move {
                glyphoxa_proto::server::serve_gateway(handler, grpc_listener, signal)
                    .await
                    .map_err(|e| GatewayError::Serve {
                        what: "gateway gRPC server",
                        message: e.to_string(),
                    })
            }),
        ));
        let signal = stopped(stop_rx.clone());
        let states = Arc::clone(&bots);
        tasks.push((
            "bot state metrics",
            tokio::spawn(async move {
                crate::bots::publish_bot_states(states, BOT_METRICS_INTERVAL, signal).await;
                Ok(())
            }),
        ));
        let cleanup = Arc::clone(&orchestrator);
        let signal = stopped(stop_rx);
        tasks.push((
            "session cleanup loop",
            tokio::spawn(async move {
                cleanup.run_cleanup(signal).await;
                Ok(())
            }),
        ));
        tracing::info!(%admin_addr, %grpc_addr, "gateway started");
        Ok(Self {
            admin_addr,
            grpc_addr,
            orchestrator,
            bots,
            stop,
            tasks,
            grace: settings.shutdown_grace,
            discord,
        })
    }

    /// Where the admin API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the gRPC server for workers listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The orchestrator (for the Discord command handlers).
    pub fn orchestrator(&self) -> &Arc<Orchestrator> {
        &self.orchestrator
    }

    /// The tenants' bots (readiness).
    pub fn bots(&self) -> &Arc<dyn BotManager> {
        &self.bots
    }

    /// Serves until `shutdown` completes or a server fails, then shuts down
    /// gracefully.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        tokio::pin!(shutdown);
        let failed = tokio::select! {
            () = &mut shutdown => None,
            failure = first_exit(&mut self.tasks) => Some(failure),
        };
        let result = self.shutdown().await;
        match failed {
            Some(Err(error)) => Err(error),
            _ => result,
        }
    }

    /// Stops accepting requests, lets in-flight ones finish (up to the
    /// grace period), stops the cleanup loop, closes the Discord bots
    /// (their commands stay registered) and closes the store.
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        let _ = self.stop.send(true);
        if let Some(discord) = &self.discord {
            discord.shutdown(self.grace).await;
        }
        let mut result = Ok(());
        for (what, task) in self.tasks {
            match tokio::time::timeout(self.grace, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => result = Err(error),
                Ok(Err(join)) => {
                    result = Err(GatewayError::Serve {
                        what,
                        message: join.to_string(),
                    })
                }
                Err(_) => tracing::warn!(what, "did not stop within the shutdown grace period"),
            }
        }
        self.orchestrator.store().close().await;
        tracing::info!("gateway stopped");
        result
    }
}

/// Waits until one task ends and says how.
async fn first_exit(tasks: &mut [(&'static str, Task)]) -> Result<(), GatewayError> {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let (outcome, index, _) = futures_util::future::select_all(tasks.iter_mut().map(|(_, task)| task)).await;
    let what = tasks.get(index).map_or("server", |(what, _)| *what);
    match outcome {
        Ok(Ok(())) => Err(GatewayError::Serve {
            what,
            message: "stopped unexpectedly".into(),
        }),
        Ok(Err(error)) => Err(error),
        Err(join) => Err(GatewayError::Serve {
            what,
            message: join.to_string(),
        }),
    }
}

/// Runs gateway mode until `shutdown` completes: the entry point of
/// `glyphoxa --mode gateway`, with one Discord bot per tenant that has a
/// token (see [`Gateway::start_with_discord`]; [`run_with_bots`] takes
/// another bot manager).
pub async fn run(settings: GatewaySettings, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
    Gateway::start_with_discord(settings, RecapEngines::default())
        .await?
        .serve_until(shutdown)
        .await
}

/// [`run`] with the given bot manager.
pub async fn run_with_bots(
    settings: GatewaySettings,
    bots: Arc<dyn BotManager>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    Gateway::start(settings, bots).await?.serve_until(shutdown).await
}
