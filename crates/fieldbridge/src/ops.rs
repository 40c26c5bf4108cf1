//! The operations listener (`metrics:`): Prometheus `/metrics` and
//! `/healthz` on one HTTP/1 listener, loopback unless allowed otherwise.
//!
//! Both read the run's [`Telemetry`]; encoding happens here, on the
//! listener's task, never on an event loop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fieldbridge_core::telemetry::Telemetry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` now (so that a taken port fails start-up, naming the
/// address) and serves until `shutdown` is cancelled.
pub async fn serve(
    listen: SocketAddr,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for metrics: {e}"))?;
    let local = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %local, "serving /metrics and /healthz");
    let app = router(telemetry);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(listen = %local, error = %e, "the metrics listener failed");
        }
    }))
}

/// The routes, on their own for tests.
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(telemetry)
}

async fn metrics(State(t): State<Arc<Telemetry>>) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], t.encode()).into_response()
}

/// 200 with the health as JSON, or 503 with the same body and its reason.
async fn healthz(State(t): State<Arc<Telemetry>>) -> Response {
    let health = t.health();
    let status = if health.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        health.to_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_fails_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = taken.local_addr().expect("its address");
        let err = serve(addr, Arc::default(), CancellationToken::new())
            .await
            .expect_err("the port is taken");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot listen on {addr} for metrics: ")),
            "{err}"
        );
    }
}
