//! Background work as use cases: turning outbox events into jobs, running a job, schedules,
//! and the admin view of the queue. The worker runtime (polling, concurrency, timeouts,
//! shutdown) lives in `inkcart-jobs`.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Timelike as _, Utc};
use inkcart_domain::shop::Money;
use inkcart_domain::{Actor, EmailTokenId, EventId, JobId, OrderId, Role, UserId};
use serde::Deserialize;

use crate::events::Event;
use crate::identity::hash_refresh_token;
use crate::mail;
use crate::page::{Direction, Page, PageRequest, Sort};
use crate::ports::{
    EmailToken, Job, JobKind, JobState, NewJob, OutboxEvent, Purged, TokenPurpose, UserQuery,
    UserSortField,
};
use std::sync::Arc;

use crate::identity::find_user;
use crate::ports::{
    Clock, EmailTokenRepo, EventPublisher, JobQueue, Mailer, ObjectStorage, OrderRepo, Outbox,
    Store, UserRepo, transaction,
};
use crate::{AppError, AppResult, Deps, ErrorCode, Settings};

pub const VERIFICATION_TTL: chrono::Duration = chrono::Duration::hours(24);
pub const RESET_TTL_MINUTES: i64 = 30;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserPayload {
    user_id: UserId,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmailChangedPayload {
    user_id: UserId,
    previous_email: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderPayload {
    order_id: OrderId,
}

#[derive(Debug, Deserialize)]
struct ReportPayload {
    day: NaiveDate,
}

fn payload<T: for<'de> Deserialize<'de>>(job: &Job) -> AppResult<T> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| AppError::internal(format!("job {} has a bad payload: {e}", job.id)))
}

/// Exponential backoff with jitter: `base · 2^(attempt-1)`, capped at an hour, then a random
/// 50–100 % of it (so that retries of many jobs spread out).
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
    let full = base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600));
    let mut byte = [0u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        0.5 + f64::from(byte[0]) / 510.0
    } else {
        1.0
    };
    full.mul_f64(jitter)
}

fn new_email_token() -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal(format!("random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Background work: the outbox relay, the job queue and what each job does, the schedules.
#[derive(Clone)]
pub struct Background {
    store: Arc<dyn Store>,
    jobs: Arc<dyn JobQueue>,
    outbox: Arc<dyn Outbox>,
    /// The broker events are published to, when one is configured.
    publisher: Option<Arc<dyn EventPublisher>>,
    mailer: Arc<dyn Mailer>,
    email_tokens: Arc<dyn EmailTokenRepo>,
    /// Read by the mails about orders and by the sales report.
    orders: Arc<dyn OrderRepo>,
    users: Arc<dyn UserRepo>,
    /// Where the sales reports are written.
    storage: Arc<dyn ObjectStorage>,
    clock: Arc<dyn Clock>,
    job_max_attempts: i32,
    job_lease: Duration,
    job_backoff: Duration,
    public_url: String,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background").finish_non_exhaustive()
    }
}

impl Background {
    pub(crate) fn new(deps: &Deps, settings: &Settings) -> Self {
        Self {
            store: Arc::clone(&deps.store),
            jobs: Arc::clone(&deps.jobs),
            outbox: Arc::clone(&deps.outbox),
            publisher: deps.publisher.clone(),
            mailer: Arc::clone(&deps.mailer),
            email_tokens: Arc::clone(&deps.email_tokens),
            orders: Arc::clone(&deps.orders),
            users: Arc::clone(&deps.users),
            storage: Arc::clone(&deps.storage),
            clock: Arc::clone(&deps.clock),
            job_max_attempts: settings.job_max_attempts,
            job_lease: settings.job_lease,
            job_backoff: settings.job_backoff,
            public_url: settings.public_url.clone(),
        }
    }

    /// The account a job is about.
    async fn get_user(&self, id: UserId) -> AppResult<inkcart_domain::User> {
        find_user(self.users.as_ref(), id).await
    }

    /// The jobs an event causes, each enqueued once per event.
    fn jobs_for(&self, event: &OutboxEvent, now: DateTime<Utc>) -> AppResult<Vec<NewJob>> {
        let parsed: Event = serde_json::from_value(event.payload.clone()).map_err(|e| {
            AppError::internal(format!("event {} has a bad payload: {e}", event.id))
        })?;
        let kinds = parsed.jobs();
        Ok(kinds
            .iter()
            .map(|&kind| NewJob {
                kind,
                payload: event.payload.clone(),
                effect_key: format!("{kind}:{}", event.id),
                run_at: now,
                max_attempts: self.job_max_attempts,
            })
            .collect())
    }

    /// Turns undispatched outbox events into jobs, exactly once per (event, job kind), and
    /// marks them dispatched in the same transaction. Returns how many events it handled.
    pub async fn dispatch_events(&self, limit: u64) -> AppResult<usize> {
        let events = self.outbox.undispatched(limit).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let mut jobs = Vec::with_capacity(events.len());
        for event in &events {
            jobs.extend(self.jobs_for(event, now)?);
        }
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let (queue, outbox) = (Arc::clone(&self.jobs), Arc::clone(&self.outbox));
        transaction(self.store.as_ref(), move |tx| {
            Box::pin(async move {
                queue.enqueue_many(tx, &jobs, now).await?;
                outbox.mark_dispatched(tx, &ids, now).await
            })
        })
        .await?;
        Ok(events.len())
    }

    /// Publishes unpublished events to the broker, when one is configured.
    pub async fn publish_events(&self, limit: u64) -> AppResult<usize> {
        let Some(publisher) = &self.publisher else {
            return Ok(0);
        };
        let events = self.outbox.unpublished(limit).await?;
        let mut published = Vec::with_capacity(events.len());
        for event in &events {
            publisher.publish(event).await?;
            published.push(event.id);
        }
        if !published.is_empty() {
            self.outbox
                .mark_published(&published, self.clock.now())
                .await?;
        }
        Ok(published.len())
    }

    /// Enqueues the runs of the schedules that are due; one instance wins each run.
    pub async fn run_schedules(&self) -> AppResult<()> {
        let now = self.clock.now();
        // Hourly purge, at the top of the hour.
        let hour = now
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        self.schedule_once("purge", hour, JobKind::Purge, serde_json::json!({}))
            .await?;
        // The daily sales report of yesterday, from 00:10 UTC.
        let today = now.date_naive();
        if let Some(at) = today.and_hms_opt(0, 10, 0).map(|t| t.and_utc())
            && now >= at
            && let Some(yesterday) = today.pred_opt()
        {
            self.schedule_once(
                "daily-sales-report",
                at,
                JobKind::DailySalesReport,
                serde_json::json!({"day": yesterday}),
            )
            .await?;
        }
        Ok(())
    }

    async fn schedule_once(
        &self,
        name: &str,
        slot: DateTime<Utc>,
        kind: JobKind,
        payload: serde_json::Value,
    ) -> AppResult<()> {
        let now = self.clock.now();
        if !self.jobs.claim_schedule(name, slot, now).await? {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        let job = NewJob {
            kind,
            payload,
            effect_key: format!("cron:{name}:{}", slot.timestamp()),
            run_at: now,
            max_attempts: self.job_max_attempts,
        };
        self.jobs.enqueue(tx.as_mut(), &job, now).await?;
        tx.commit().await
    }

    /// Takes due jobs for a worker.
    pub async fn claim_jobs(&self, worker: &str, limit: u64) -> AppResult<Vec<Job>> {
        self.jobs
            .claim(worker, limit, self.job_lease, self.clock.now())
            .await
    }

    pub async fn extend_jobs(&self, ids: &[JobId], worker: &str) -> AppResult<()> {
        let until = self.clock.now()
            + chrono::Duration::from_std(self.job_lease).map_err(AppError::internal)?;
        self.jobs.extend(ids, worker, until).await
    }

    pub async fn finish_job(&self, job: &Job, worker: &str) -> AppResult<()> {
        self.jobs.finish(job.id, worker, self.clock.now()).await
    }

    /// Records a failure: retried after a backoff, or dead after the last attempt.
    pub async fn fail_job(&self, job: &Job, worker: &str, error: &str) -> AppResult<()> {
        let now = self.clock.now();
        let retry_at = (job.attempts < job.max_attempts)
            .then(|| chrono::Duration::from_std(backoff(self.job_backoff, job.attempts)))
            .transpose()
            .map_err(AppError::internal)?
            .map(|delay| now + delay);
        if retry_at.is_none() {
            tracing::error!(job = %job.id, kind = %job.kind, attempts = job.attempts, error, "job is dead");
        } else {
            tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempts, error, "job failed; will retry");
        }
        self.jobs.fail(job.id, worker, error, retry_at, now).await
    }

    pub async fn release_job(&self, job: &Job, worker: &str) -> AppResult<()> {
        self.jobs.release(job.id, worker, self.clock.now()).await
    }

    /// Runs one job's handler. Handlers are idempotent: each records its effect under a key,
    /// and a job that finds its effect done does nothing.
    pub async fn run_job(&self, job: &Job) -> AppResult<()> {
        let Some(kind) = JobKind::parse(&job.kind) else {
            return Err(AppError::internal(format!(
                "unknown job kind `{}`",
                job.kind
            )));
        };
        match kind {
            JobKind::WelcomeEmail => {
                let p: UserPayload = payload(job)?;
                self.once(&format!("welcome:{}", p.user_id), job, || async {
                    let user = self.get_user(p.user_id).await?;
                    self.mailer.send(&mail::welcome(&user)).await
                })
                .await
            }
            JobKind::VerificationEmail => {
                let p: UserPayload = payload(job)?;
                self.once(&format!("verification:{}", job.effect_key), job, || async {
                    let user = self.get_user(p.user_id).await?;
                    if user.email_verified {
                        return Ok(());
                    }
                    let token = self
                        .issue_email_token(&user, TokenPurpose::VerifyEmail, VERIFICATION_TTL)
                        .await?;
                    let link = format!("{}/verify-email?token={token}", self.public_url);
                    self.mailer.send(&mail::verify_email(&user, &link)).await
                })
                .await
            }
            JobKind::PasswordResetEmail => {
                let p: UserPayload = payload(job)?;
                self.once(
                    &format!("password-reset:{}", job.effect_key),
                    job,
                    || async {
                        let user = self.get_user(p.user_id).await?;
                        let token = self
                            .issue_email_token(
                                &user,
                                TokenPurpose::ResetPassword,
                                chrono::Duration::minutes(RESET_TTL_MINUTES),
                            )
                            .await?;
                        let link = format!("{}/reset-password?token={token}", self.public_url);
                        self.mailer
                            .send(&mail::reset_password(&user, &link, RESET_TTL_MINUTES))
                            .await
                    },
                )
                .await
            }
            JobKind::EmailChangedNotice => {
                let p: EmailChangedPayload = payload(job)?;
                self.once(
                    &format!("email-changed:{}", job.effect_key),
                    job,
                    || async {
                        let user = self.get_user(p.user_id).await?;
                        self.mailer
                            .send(&mail::email_changed(&user, &p.previous_email))
                            .await
                    },
                )
                .await
            }
            JobKind::OrderConfirmationEmail | JobKind::OrderShippedEmail => {
                let p: OrderPayload = payload(job)?;
                let shipped = kind == JobKind::OrderShippedEmail;
                let key = if shipped {
                    format!("order-shipped:{}", p.order_id)
                } else {
                    format!("order-confirmation:{}", p.order_id)
                };
                self.once(&key, job, || async {
                    let order = self
                        .orders
                        .find(p.order_id)
                        .await?
                        .ok_or_else(|| AppError::not_found("Order"))?;
                    let user = self.get_user(order.user_id).await?;
                    let mail = if shipped {
                        mail::order_shipped(&user, &order)
                    } else {
                        mail::order_confirmation(&user, &order)
                    };
                    self.mailer.send(&mail).await
                })
                .await
            }
            JobKind::DailySalesReport => {
                let p: ReportPayload = payload(job)?;
                self.once(&format!("sales-report:{}", p.day), job, || {
                    self.sales_report(p.day)
                })
                .await
            }
            JobKind::Purge => {
                let purged: Purged = self.jobs.purge(self.clock.now()).await?;
                tracing::info!(?purged, "purged expired records");
                Ok(())
            }
        }
    }

    /// Runs `effect` unless the effect under `key` was done already, then records it.
    async fn once<F, Fut>(&self, key: &str, job: &Job, effect: F) -> AppResult<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = AppResult<()>>,
    {
        if self.jobs.effect_done(key).await? {
            tracing::info!(job = %job.id, key, "effect already done; skipping");
            return Ok(());
        }
        effect().await?;
        self.jobs
            .record_effect(key, Some(job.id), self.clock.now())
            .await?;
        Ok(())
    }

    /// A token for a link mailed to the user's current address, valid for that address only.
    async fn issue_email_token(
        &self,
        user: &inkcart_domain::User,
        purpose: TokenPurpose,
        ttl: chrono::Duration,
    ) -> AppResult<String> {
        let token = new_email_token()?;
        let now = self.clock.now();
        let record = EmailToken {
            id: EmailTokenId::generate(),
            user_id: user.id,
            email: Some(user.email.as_str().to_owned()),
            purpose,
            token_hash: hash_refresh_token(&token),
            expires_at: now + ttl,
            used_at: None,
            created_at: now,
        };
        let mut tx = self.store.begin().await?;
        self.email_tokens.insert(tx.as_mut(), &record).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Writes the day's sales as CSV to storage and mails it to every admin.
    async fn sales_report(&self, day: NaiveDate) -> AppResult<()> {
        let rows = self.orders.daily_sales(day, day).await?;
        let (orders, revenue) = rows
            .first()
            .map_or((0, Money::ZERO), |r| (r.orders, r.revenue));
        let csv = format!("date,orders,revenue\n{day},{orders},{revenue}\n");
        self.storage
            .put_report(&format!("sales-{day}.csv"), csv.clone().into(), "text/csv")
            .await?;
        let admins = self
            .users
            .list(&UserQuery {
                page: PageRequest::new(Some(1), Some(100))?,
                search: None,
                search_email: false,
                role: Some(Role::Admin),
                sort: Sort {
                    field: UserSortField::CreatedAt,
                    direction: Direction::Asc,
                },
            })
            .await?;
        let revenue = revenue.to_string();
        for admin in admins.items {
            let mail = mail::sales_report(
                admin.email.as_str(),
                &day.to_string(),
                orders,
                &revenue,
                csv.as_bytes(),
            );
            self.mailer.send(&mail).await?;
        }
        Ok(())
    }

    /// Jobs by state (admins).
    pub async fn list_jobs(
        &self,
        actor: Actor,
        state: Option<JobState>,
        page: PageRequest,
    ) -> AppResult<Page<Job>> {
        if !actor.is_admin() {
            return Err(AppError::insufficient_permissions());
        }
        self.jobs.list(state, page).await
    }

    /// Queues a failed or dead job again (admins).
    pub async fn retry_job(&self, actor: Actor, id: JobId) -> AppResult<Job> {
        if !actor.is_admin() {
            return Err(AppError::insufficient_permissions());
        }
        let job = self
            .jobs
            .find(id)
            .await?
            .ok_or_else(|| AppError::not_found("Job"))?;
        if !matches!(job.state, JobState::Dead | JobState::Failed) {
            return Err(AppError::conflict(
                ErrorCode::JobNotRetryable,
                format!(
                    "Only failed or dead jobs can be retried; this one is {}",
                    job.state.as_str()
                ),
            ));
        }
        if !self.jobs.retry(id, self.clock.now()).await? {
            return Err(AppError::conflict(
                ErrorCode::Conflict,
                "The job changed meanwhile; try again".to_owned(),
            ));
        }
        self.jobs
            .find(id)
            .await?
            .ok_or_else(|| AppError::not_found("Job"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_each_attempt_with_jitter_and_a_cap() {
        let base = Duration::from_secs(2);
        for attempt in 1..=5 {
            let full = base * 2u32.pow(u32::try_from(attempt - 1).unwrap());
            let d = backoff(base, attempt);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} outside {:?}..{full:?}",
                full / 2
            );
        }
        assert!(backoff(base, 40) <= Duration::from_secs(3600));
    }
}
