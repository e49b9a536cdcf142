//! [`GrpcWorkerPool`]: remote workers over gRPC, with deadlines, a circuit
//! breaker per worker and least-loaded placement.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use glyphoxa_proto::v1::{
    GetStatusRequest, GetStatusResponse, ListNpcsRequest, ListNpcsResponse, MuteAllNpcsRequest, MuteAllNpcsResponse,
    MuteNpcRequest, MuteNpcResponse, PlayAudioHeader, PlayAudioResponse, SpeakNpcRequest, SpeakNpcResponse,
    StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse, UnmuteAllNpcsRequest,
    UnmuteAllNpcsResponse, UnmuteNpcRequest, UnmuteNpcResponse, UpdateKnowledgeRequest, UpdateKnowledgeResponse,
    UpdateVoiceServerRequest, UpdateVoiceServerResponse, WorkerLoad,
};
use glyphoxa_proto::{ApiError, ClientConfig, GrpcWorkerClient, PcmStream, WorkerApi};

use super::breaker::{BreakerSettings, CircuitBreaker};
use super::{Placement, WorkerClient, WorkerError, WorkerHealth};

/// How a gateway reaches its workers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerPoolSettings {
    /// Worker gRPC addresses (`host:port` or `http://host:port`).
    pub addresses: Vec<String>,
    /// A DNS name whose every address is a worker (e.g. a headless service,
    /// `http://workers.glyphoxa.svc:50051`), used with `addresses`.
    pub dns: Option<String>,
    /// Deadline of one control call (status, stop, NPC controls).
    pub call_timeout: Duration,
    /// Deadline of StartSession (the worker joins voice before answering).
    pub start_timeout: Duration,
    /// Deadline for opening a connection.
    pub connect_timeout: Duration,
    /// When a worker's circuit opens.
    pub breaker: BreakerSettings,
    /// How often the DNS name is resolved again.
    pub dns_refresh: Duration,
}

impl Default for WorkerPoolSettings {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            dns: None,
            call_timeout: Duration::from_secs(2),
            start_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            breaker: BreakerSettings::default(),
            dns_refresh: Duration::from_secs(30),
        }
    }
}

/// One worker: its clients (control and start deadlines over one
/// connection) and its circuit.
struct WorkerEntry {
    address: String,
    control: GrpcWorkerClient,
    start: GrpcWorkerClient,
    breaker: CircuitBreaker,
}

/// Remote workers: placement (least-loaded healthy worker from GetStatus,
/// retry on the next on failure) and per-worker circuit breakers.
pub struct GrpcWorkerPool {
    settings: WorkerPoolSettings,
    entries: Mutex<BTreeMap<String, Arc<WorkerEntry>>>,
    resolved: Mutex<Option<(Instant, Vec<String>)>>,
}

impl std::fmt::Debug for GrpcWorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcWorkerPool")
            .field("settings", &self.settings)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// `http://host:port` for any accepted spelling of an address.
fn normalize(address: &str) -> String {
    let address = address.trim().trim_end_matches('/');
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}

impl GrpcWorkerPool {
    /// A pool over `settings.addresses` (connections open lazily).
    /// [`WorkerError::Unavailable`] names an address that cannot be parsed.
    pub fn new(settings: WorkerPoolSettings) -> Result<Self, WorkerError> {
        let pool = Self {
            settings,
            entries: Mutex::new(BTreeMap::new()),
            resolved: Mutex::new(None),
        };
        for address in pool.settings.addresses.clone() {
            pool.entry(&address)?;
        }
        Ok(pool)
    }

    fn entry(&self, address: &str) -> Result<Arc<WorkerEntry>, WorkerError> {
        let address = normalize(address);
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get(&address) {
            return Ok(Arc::clone(entry));
        }
        let control_config = ClientConfig {
            deadline: self.settings.call_timeout,
            connect_timeout: self.settings.connect_timeout,
            ..ClientConfig::default()
        };
        let start_config = ClientConfig {
            deadline: self.settings.start_timeout,
            ..control_config
        };
        let channel = control_config
            .channel_lazy(&address)
            .map_err(|e| WorkerError::Unavailable(format!("bad worker address {address:?}: {e}")))?;
        let entry = Arc::new(WorkerEntry {
            address: address.clone(),
            control: GrpcWorkerClient::new(channel.clone(), control_config),
            start: GrpcWorkerClient::new(channel, start_config),
            breaker: CircuitBreaker::new(self.settings.breaker),
        });
        entries.insert(address, Arc::clone(&entry));
        Ok(entry)
    }

    /// The configured addresses plus those the DNS name resolves to.
    async fn addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self.settings.addresses.iter().map(|a| normalize(a)).collect();
        if let Some(dns) = &self.settings.dns {
            for address in self.resolve(dns).await {
                if !addresses.contains(&address) {
                    addresses.push(address);
                }
            }
        }
        addresses
    }

    async fn resolve(&self, dns: &str) -> Vec<String> {
        if let Some((at, addresses)) = lock(&self.resolved).as_ref() {
            if at.elapsed() < self.settings.dns_refresh {
                return addresses.clone();
            }
        }
        let normalized = normalize(dns);
        let (scheme, host_port) = normalized.split_once("://").unwrap_or(("http", normalized.as_str()));
        let lookup = tokio::time::timeout(
            self.settings.connect_timeout,
            tokio::net::lookup_host(host_port.to_string()),
        )
        .await;
        match lookup {
            Ok(Ok(found)) => {
                let addresses: Vec<String> = found.map(|addr| format!("{scheme}://{addr}")).collect();
                *lock(&self.resolved) = Some((Instant::now(), addresses.clone()));
                addresses
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(dns = %dns, error = %why, "cannot resolve the workers' DNS name; using the last known workers");
                lock(&self.resolved)
                    .as_ref()
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default()
            }
        }
    }

    async fn probe(entry: &Arc<WorkerEntry>) -> Result<GetStatusResponse, ApiError> {
        Guarded(Arc::clone(entry))
            .get_status(GetStatusRequest { session_id: None })
            .await
    }
}

/// Placement order: least loaded (by share of capacity, then count), then address.
fn load_key(load: &WorkerLoad) -> (u64, u32) {
    let share = u64::from(load.active_sessions) * 1_000_000 / u64::from(load.capacity.max(1));
    (share, load.active_sessions)
}

#[async_trait]
impl WorkerClient for GrpcWorkerPool {
    async fn start_session(&self, request: StartSessionRequest) -> Result<Placement, WorkerError> {
        let addresses = self.addresses().await;
        if addresses.is_empty() {
            return Err(WorkerError::Unavailable(
                "no voice workers are configured (workers.addresses or workers.dns)".into(),
            ));
        }
        let mut failures = Vec::new();
        let mut entries = Vec::new();
        for address in &addresses {
            match self.entry(address) {
                Ok(entry) => entries.push(entry),
                Err(e) => failures.push(e.to_string()),
            }
        }
        let probes = join_all(
            entries
                .iter()
                .map(|entry| async move { (Arc::clone(entry), Self::probe(entry).await) }),
        )
        .await;
        let mut candidates = Vec::new();
        for (entry, probe) in probes {
            match probe {
                Ok(status) => {
                    let load = status.load.unwrap_or_default();
                    if load.draining {
                        failures.push(format!("{}: draining", entry.address));
                    } else if load.capacity > 0 && load.active_sessions >= load.capacity {
                        failures.push(format!(
                            "{}: full ({}/{})",
                            entry.address, load.active_sessions, load.capacity
                        ));
                    } else {
                        candidates.push((entry, load));
                    }
                }
                Err(error) => failures.push(format!("{}: {}", entry.address, error)),
            }
        }
        candidates.sort_by(|(a, la), (b, lb)| load_key(la).cmp(&load_key(lb)).then_with(|| a.address.cmp(&b.address)));
        for (entry, _) in candidates {
            let guarded = Guarded(Arc::clone(&entry));
            match guarded.start(request.clone()).await {
                Ok(response) => {
                    metrics::counter!("glyphoxa_gateway_worker_starts_total", "outcome" => "started").increment(1);
                    return Ok(Placement {
                        worker_addr: entry.address.clone(),
                        worker_id: if response.worker_id.is_empty() {
                            entry.address.clone()
                        } else {
                            response.worker_id
                        },
                        session: response.session,
                    });
                }
                Err(
                    error @ (ApiError::InvalidArgument(_) | ApiError::FailedPrecondition(_) | ApiError::NotFound(_)),
                ) => {
                    // The request itself is wrong: another worker would refuse it too.
                    metrics::counter!("glyphoxa_gateway_worker_starts_total", "outcome" => "refused").increment(1);
                    return Err(WorkerError::Api {
                        worker: entry.address.clone(),
                        source: error,
                    });
                }
                Err(error) => {
                    tracing::warn!(worker = %entry.address, session_id = %request.session_id, error = %error,
                        "starting a session failed; trying another worker");
                    if !matches!(error, ApiError::ResourceExhausted(_)) {
                        // It may have started after all (e.g. the deadline passed
                        // while it joined voice): stop it there, in the background.
                        let stop = StopSessionRequest {
                            session_id: request.session_id.clone(),
                            reason: "start failed; placed elsewhere".into(),
                        };
                        let entry = Arc::clone(&entry);
                        tokio::spawn(async move {
                            let _ = Guarded(entry).stop_session(stop).await;
                        });
                    }
                    failures.push(format!("{}: {}", entry.address, error));
                }
            }
        }
        metrics::counter!("glyphoxa_gateway_worker_starts_total", "outcome" => "unavailable").increment(1);
        Err(WorkerError::Unavailable(format!(
            "no voice worker could start the session ({})",
            failures.join("; ")
        )))
    }

    fn worker(&self, address: &str) -> Result<Arc<dyn WorkerApi>, WorkerError> {
        Ok(Arc::new(Guarded(self.entry(address)?)))
    }

    async fn health(&self) -> Vec<WorkerHealth> {
        let mut entries = Vec::new();
        for address in self.addresses().await {
            if let Ok(entry) = self.entry(&address) {
                entries.push(entry);
            }
        }
        join_all(entries.into_iter().map(|entry| async move {
            let probe = Self::probe(&entry).await;
            let circuit = entry.breaker.state();
            match probe {
                Ok(status) => WorkerHealth {
                    address: entry.address.clone(),
                    worker_id: Some(status.worker_id),
                    circuit,
                    load: status.load,
                    error: None,
                },
                Err(error) => WorkerHealth {
                    address: entry.address.clone(),
                    worker_id: None,
                    circuit,
                    load: None,
                    error: Some(error.to_string()),
                },
            }
        }))
        .await
    }
}

/// A worker's API behind its circuit breaker: an open circuit fails the
/// call at once with `UNAVAILABLE`.
struct Guarded(Arc<WorkerEntry>);

/// Records a worker RPC's latency as seen by the gateway:
/// `glyphoxa_gateway_worker_rpc_seconds{method, code}` (`method` as in the
/// proto, `code` the gRPC status name, `OK` on success).
fn record_rpc<T>(method: &'static str, took: Duration, outcome: &Result<T, ApiError>) {
    let code = outcome.as_ref().err().map_or("OK", ApiError::code_name);
    metrics::histogram!("glyphoxa_gateway_worker_rpc_seconds", "method" => method, "code" => code)
        .record(took.as_secs_f64());
}

macro_rules! guarded {
    ($self:ident, $name:literal, $client:ident . $method:ident ( $($arg:expr),* )) => {{
        let entry = &$self.0;
        entry.breaker.try_acquire().map_err(|wait| {
            ApiError::unavailable(format!(
                "circuit open for worker {} after repeated failures (next try in {:.1}s)",
                entry.address,
                wait.as_secs_f64()
            ))
        })?;
        let started = Instant::now();
        let outcome = entry.$client.$method($($arg),*).await;
        record_rpc($name, started.elapsed(), &outcome);
        entry.breaker.record(&outcome);
        outcome
    }};
}

impl Guarded {
    async fn start(&self, request: StartSessionRequest) -> Result<StartSessionResponse, ApiError> {
        guarded!(self, "StartSession", start.start_session(request))
    }
}

#[async_trait]
impl WorkerApi for Guarded {
    async fn start_session(&self, request: StartSessionRequest) -> Result<StartSessionResponse, ApiError> {
        self.start(request).await
    }

    async fn stop_session(&self, request: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        guarded!(self, "StopSession", control.stop_session(request))
    }

    async fn get_status(&self, request: GetStatusRequest) -> Result<GetStatusResponse, ApiError> {
        guarded!(self, "GetStatus", control.get_status(request))
    }

    async fn update_voice_server(
        &self,
        request: UpdateVoiceServerRequest,
    ) -> Result<UpdateVoiceServerResponse, ApiError> {
        guarded!(self, "UpdateVoiceServer", control.update_voice_server(request))
    }

    async fn update_knowledge(&self, request: UpdateKnowledgeRequest) -> Result<UpdateKnowledgeResponse, ApiError> {
        guarded!(self, "UpdateKnowledge", control.update_knowledge(request))
    }

    async fn list_npcs(&self, request: ListNpcsRequest) -> Result<ListNpcsResponse, ApiError> {
        guarded!(self, "ListNPCs", control.list_npcs(request))
    }

    async fn mute_npc(&self, request: MuteNpcRequest) -> Result<MuteNpcResponse, ApiError> {
        guarded!(self, "MuteNPC", control.mute_npc(request))
    }

    async fn unmute_npc(&self, request: UnmuteNpcRequest) -> Result<UnmuteNpcResponse, ApiError> {
        guarded!(self, "UnmuteNPC", control.unmute_npc(request))
    }

    async fn speak_npc(&self, request: SpeakNpcRequest) -> Result<SpeakNpcResponse, ApiError> {
        guarded!(self, "SpeakNPC", control.speak_npc(request))
    }

    async fn mute_all_npcs(&self, request: MuteAllNpcsRequest) -> Result<MuteAllNpcsResponse, ApiError> {
        guarded!(self, "MuteAllNPCs", control.mute_all_npcs(request))
    }

    async fn unmute_all_npcs(&self, request: UnmuteAllNpcsRequest) -> Result<UnmuteAllNpcsResponse, ApiError> {
        guarded!(self, "UnmuteAllNPCs", control.unmute_all_npcs(request))
    }

    async fn play_audio(&self, header: PlayAudioHeader, pcm: PcmStream) -> Result<PlayAudioResponse, ApiError> {
        guarded!(self, "PlayAudio", control.play_audio(header, pcm))
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn worker_rpcs_are_timed_by_method_and_status_code() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            record_rpc("MuteNPC", Duration::from_millis(3), &Ok::<(), ApiError>(()));
            record_rpc::<()>(
                "ListNPCs",
                Duration::from_millis(7),
                &Err(ApiError::not_found("no session")),
            );
        });
        let mut seen: Vec<(String, String, f64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == "glyphoxa_gateway_worker_rpc_seconds")
            .map(|(key, _, _, value)| {
                let label = |name: &str| {
                    key.key()
                        .labels()
                        .find(|l| l.key() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                let DebugValue::Histogram(values) = value else {
                    panic!("a histogram: {value:?}");
                };
                (label("method"), label("code"), values[0].into_inner())
            })
            .collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!((seen[0].0.as_str(), seen[0].1.as_str()), ("ListNPCs", "NOT_FOUND"));
        assert!((seen[0].2 - 0.007).abs() < 1e-9);
        assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("MuteNPC", "OK"));
    }
}
