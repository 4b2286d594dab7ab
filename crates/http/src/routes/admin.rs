use axum::extract::State;
use inkcart_app::page::PageRequest;
use inkcart_app::ports::{Job, JobState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::dto::{Paged, ts, ts_opt};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path, Query};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStateDto {
    Queued,
    Running,
    Done,
    Failed,
    Dead,
}

impl From<JobStateDto> for JobState {
    fn from(s: JobStateDto) -> Self {
        match s {
            JobStateDto::Queued => Self::Queued,
            JobStateDto::Running => Self::Running,
            JobStateDto::Done => Self::Done,
            JobStateDto::Failed => Self::Failed,
            JobStateDto::Dead => Self::Dead,
        }
    }
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => Self::Queued,
            JobState::Running => Self::Running,
            JobState::Done => Self::Done,
            JobState::Failed => Self::Failed,
            JobState::Dead => Self::Dead,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobBody {
    pub id: Uuid,
    /// The job's kind (`welcome_email`, `order_confirmation_email`, …).
    pub name: String,
    pub state: JobStateDto,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    /// When it runs (next).
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub run_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<Job> for JobBody {
    fn from(j: Job) -> Self {
        Self {
            id: j.id.into(),
            name: j.kind,
            state: j.state.into(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            last_error: j.last_error,
            run_at: j.run_at,
            created_at: j.created_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobsParams {
    pub state: Option<JobStateDto>,
    #[param(minimum = 1, maximum = 10_000_000)]
    pub page: Option<u64>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Background jobs, newest first (admins).
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin", params(ListJobsParams), security(("bearer" = [])), responses(
    (status = 200, body = Paged<JobBody>),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
))]
pub async fn jobs(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(params): Query<ListJobsParams>,
) -> ApiResult<Json<Paged<JobBody>>> {
    let page = state
        .app
        .background()
        .list_jobs(
            auth.actor,
            params.state.map(Into::into),
            PageRequest::new(params.page, params.limit)?,
        )
        .await?;
    Ok(Json(Paged::from_page(page, JobBody::from)))
}

/// Queues a failed or dead job again, with fresh attempts (admins).
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 200, body = JobBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Not failed or dead"),
))]
pub async fn retry(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JobBody>> {
    Ok(Json(
        state
            .app
            .background()
            .retry_job(auth.actor, id.into())
            .await?
            .into(),
    ))
}
