//! The health and metrics listener every mode serves on `server.metrics_addr`
//! (`GLYPHOXA_METRICS_ADDR`; default `:9090`, worker `:9091`):
//!
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 when every readiness check passes, else 503, with the
//!   checks as JSON (`{"ready":false,"checks":[{"name":"database","ready":false,"detail":"…"}]}`);
//! - `GET /metrics`: every `metrics` counter, gauge and histogram of the
//!   process in the Prometheus text format.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

/// One readiness check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`database`, `workers`, …).
    pub name: &'static str,
    /// Whether it is ready.
    pub ready: bool,
    /// What was found, for operators.
    pub detail: String,
}

impl Check {
    /// A passing check.
    pub fn ready(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ready: true,
            detail: detail.into(),
        }
    }

    /// A failing check.
    pub fn failing(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ready: false,
            detail: detail.into(),
        }
    }
}

/// Computes the readiness checks of a mode; called on every `/readyz` request.
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, Vec<Check>> + Send + Sync>;

/// Latency buckets in seconds for every `*_seconds` histogram: 5 ms to 10 s,
/// dense around the 1.5 s turn budget.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// Buckets in seconds for the control RPC histograms (`*_rpc_seconds`):
/// 100 µs to 2.5 s, dense below the 1 ms MuteNPC budget. The matcher's
/// suffix sorts before `_seconds`, so it wins.
const RPC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide Prometheus recorder once and returns its handle
/// (later calls return the same handle).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .context("metric buckets")?
        .set_buckets_for_metric(Matcher::Suffix("_rpc_seconds".into()), RPC_BUCKETS)
        .context("RPC metric buckets")?
        .build_recorder();
    let handle = recorder.handle();
    // Only the first installation wins; a test that raced us installed the same kind.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle);
    }
    HANDLE
        .get()
        .cloned()
        .context("another metrics recorder is installed in this process")
}

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    readiness: Readiness,
}

/// The `/healthz`, `/readyz` and `/metrics` routes.
pub fn router(metrics: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Endpoints { metrics, readiness })
}

#[derive(Serialize)]
struct ReadyBody {
    ready: bool,
    checks: Vec<Check>,
}

async fn readyz(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    let checks = (endpoints.readiness)().await;
    let ready = checks.iter().all(|check| check.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadyBody { ready, checks }))
}

async fn render_metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        endpoints.metrics.render(),
    )
}

/// Binds `addr` and serves the routes until `shutdown` completes. Binding
/// happens before this returns, so a taken port is a start-up error.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let metrics = recorder()?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for health and metrics on {addr} (server.metrics_addr / GLYPHOXA_METRICS_ADDR)")
    })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = router(metrics.clone(), readiness);
    let task = tokio::spawn(async move {
        // Histograms need their upkeep to drain old samples.
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "the health and metrics listener failed");
        }
        upkeep.abort();
    });
    tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn readiness(checks: Vec<Check>) -> Readiness {
        Arc::new(move || {
            let checks = checks.clone();
            Box::pin(async move { checks })
        })
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_is_503_with_the_failing_check_named() {
        let handle = recorder().unwrap();
        let app = router(
            handle,
            readiness(vec![
                Check::ready("database", "sqlite"),
                Check::failing("workers", "no worker answered"),
            ]),
        );
        let (status, body) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["ready"], false);
        assert_eq!(json["checks"][1]["name"], "workers");
        assert_eq!(json["checks"][1]["detail"], "no worker answered");
        assert_eq!(get(app, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn readyz_is_200_when_every_check_passes_and_metrics_render() {
        let handle = recorder().unwrap();
        metrics::counter!("glyphoxa_observability_test_total", "kind" => "probe").increment(3);
        metrics::histogram!("glyphoxa_observability_test_seconds").record(0.3);
        metrics::histogram!("glyphoxa_observability_test_rpc_seconds").record(0.0004);
        let app = router(handle, readiness(vec![Check::ready("database", "ok")]));
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains("glyphoxa_observability_test_total{kind=\"probe\"} 3"),
            "{text}"
        );
        // Latency histograms get buckets, not quantile summaries.
        assert!(
            text.contains("glyphoxa_observability_test_seconds_bucket{le=\"0.3\"} 1"),
            "{text}"
        );
        // Control RPCs get sub-millisecond buckets.
        assert!(
            text.contains("glyphoxa_observability_test_rpc_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
    }
}
