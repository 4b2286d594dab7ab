use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ok`, or `unavailable` when a check fails.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Each check by name: `ok` or a short reason.
    #[schema(example = json!({"database": "ok"}))]
    pub checks: BTreeMap<&'static str, String>,
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { status: "ok" })
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, body = Ready),
    (status = 503, description = "A check failed", body = Ready),
))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let readiness = state.app.health().readiness().await;
    let ok = readiness.is_ready();
    let checks = readiness
        .checks
        .into_iter()
        .map(|(name, result)| (name, result.err().unwrap_or_else(|| "ok".to_owned())))
        .collect();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Ready {
            status: if ok { "ok" } else { "unavailable" },
            checks,
        }),
    )
}
