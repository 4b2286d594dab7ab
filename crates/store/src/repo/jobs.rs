use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_app::page::{Page, PageRequest};
use inkcart_app::ports::{
    EmailToken, EmailTokenRepo, ExpiredRecords, Job, JobQueue, JobState, NewJob, Outbox,
    OutboxEvent, Purged, TokenPurpose, Tx,
};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::{EmailTokenId, EventId, JobId, UserId};
use sea_orm::sea_query::{Expr, ExprTrait as _, InsertStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, QueryTrait as _, TryInsertResult,
};
use uuid::Uuid;

use super::{
    InsertRow, OnceSql, SqlStore, TxConn, Unique as _, get, insert_rows, row_values, uuids, write,
};
use crate::dialect::Dialect;
use crate::entity::{
    cron_runs, email_tokens, idempotency_keys, job_effects, jobs, outbox_events, refresh_tokens,
    users,
};
use crate::error::db_err;
use crate::lite::Row;

/// The row of an event in the outbox.
fn outbox_row(event: &OutboxEvent) -> InsertRow<outbox_events::Column, 7> {
    use outbox_events::Column as E;
    [
        (E::Id, Uuid::from(event.id).into()),
        (E::Kind, event.kind.clone().into()),
        (E::SubjectId, event.subject_id.into()),
        (E::Payload, event.payload.to_string().into()),
        (E::CreatedAt, event.created_at.into()),
        (E::DispatchedAt, event.dispatched_at.into()),
        (E::PublishedAt, None::<DateTime<Utc>>.into()),
    ]
}

/// The insert of an event into the outbox (also part of an order's one statement, `shop.rs`).
pub(super) fn outbox_insert(event: &OutboxEvent) -> AppResult<InsertStatement> {
    insert_rows(outbox_events::Entity, [outbox_row(event)], |_, value| {
        Expr::value(value)
    })
}

fn event_from_row(row: &Row<'_, '_>) -> AppResult<OutboxEvent> {
    let id: Uuid = get(row, "id")?;
    let payload: String = get(row, "payload")?;
    Ok(OutboxEvent {
        payload: serde_json::from_str(&payload)
            .map_err(|e| AppError::internal(format!("event {id}: bad payload: {e}")))?,
        id: id.into(),
        kind: get(row, "kind")?,
        subject_id: get(row, "subject_id")?,
        created_at: get(row, "created_at")?,
        dispatched_at: get(row, "dispatched_at")?,
    })
}

fn job_from_model(m: jobs::Model) -> AppResult<Job> {
    Ok(Job {
        payload: serde_json::from_str(&m.payload)
            .map_err(|e| AppError::internal(format!("job {}: bad payload: {e}", m.id)))?,
        state: JobState::parse(&m.state)
            .ok_or_else(|| AppError::internal(format!("job {}: bad state", m.id)))?,
        id: m.id.into(),
        kind: m.kind,
        effect_key: m.effect_key,
        attempts: m.attempts,
        max_attempts: m.max_attempts,
        run_at: m.run_at,
        locked_by: m.locked_by,
        locked_until: m.locked_until,
        last_error: m.last_error,
        created_at: m.created_at,
        updated_at: m.updated_at,
        finished_at: m.finished_at,
    })
}

/// What a purge keeps: finished jobs and dispatched events for a week, idempotency records
/// for a day (their replay window), expired tokens not at all.
const KEEP_FINISHED: chrono::Duration = chrono::Duration::days(7);
const KEEP_IDEMPOTENCY: chrono::Duration = chrono::Duration::hours(24);

#[async_trait]
impl Outbox for SqlStore {
    async fn record(&self, tx: &mut dyn Tx, event: &OutboxEvent) -> AppResult<()> {
        // Every order and most writes record one: the text is built once.
        static RECORD: OnceSql = OnceSql::new();
        let mut conn = TxConn::of(tx)?;
        let dialect = conn.dialect();
        let insert = RECORD.try_statement(dialect, row_values([outbox_row(event)]), || {
            outbox_insert(event).map(|insert| dialect.build(&insert))
        })?;
        conn.execute(insert).await?;
        Ok(())
    }

    async fn undispatched(&self, limit: u64) -> AppResult<Vec<OutboxEvent>> {
        self.oldest_events(outbox_events::Column::DispatchedAt, limit)
            .await
    }

    async fn mark_dispatched(
        &self,
        tx: &mut dyn Tx,
        ids: &[EventId],
        at: DateTime<Utc>,
    ) -> AppResult<()> {
        let update = outbox_events::Entity::update_many()
            .col_expr(outbox_events::Column::DispatchedAt, Expr::value(at))
            .filter(outbox_events::Column::Id.is_in(uuids(ids)))
            .filter(outbox_events::Column::DispatchedAt.is_null());
        write(tx, &update).await?;
        Ok(())
    }

    async fn unpublished(&self, limit: u64) -> AppResult<Vec<OutboxEvent>> {
        self.oldest_events(outbox_events::Column::PublishedAt, limit)
            .await
    }

    async fn mark_published(&self, ids: &[EventId], at: DateTime<Utc>) -> AppResult<()> {
        outbox_events::Entity::update_many()
            .col_expr(outbox_events::Column::PublishedAt, Expr::value(at))
            .filter(outbox_events::Column::Id.is_in(uuids(ids)))
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn count_since(&self, kind: &str, subject: Uuid, since: DateTime<Utc>) -> AppResult<u64> {
        outbox_events::Entity::find()
            .filter(outbox_events::Column::Kind.eq(kind))
            .filter(outbox_events::Column::SubjectId.eq(subject))
            .filter(outbox_events::Column::CreatedAt.gt(since))
            .count(&self.db.reader)
            .await
            .map_err(db_err)
    }
}

impl SqlStore {
    /// The oldest events whose `pending` timestamp (dispatched, published) is still unset.
    ///
    /// Offloaded: it sorts every pending event, as many as a stopped relay left. On SQLite
    /// that is one hand-off for the batch, where sqlx's connection thread handed over each of
    /// its rows (about 3 % of the core while orders came in).
    async fn oldest_events(
        &self,
        pending: outbox_events::Column,
        limit: u64,
    ) -> AppResult<Vec<OutboxEvent>> {
        let select = outbox_events::Entity::find()
            .filter(pending.is_null())
            .order_by_asc(outbox_events::Column::CreatedAt)
            .order_by_asc(outbox_events::Column::Id)
            .limit(limit)
            .into_query();
        self.read_offloaded(self.dialect().build(&select), event_from_row)
            .await
    }

    /// Jobs held by `worker` in state `running`, as a filter.
    fn held_by(id: Uuid, worker: &str) -> sea_orm::sea_query::SimpleExpr {
        jobs::Column::Id
            .eq(id)
            .and(jobs::Column::LockedBy.eq(worker))
            .and(jobs::Column::State.eq("running"))
    }

    /// An update of job `id` that `worker` holds, giving it up: no lock, updated `now`.
    fn let_go(id: Uuid, worker: &str, now: DateTime<Utc>) -> sea_orm::UpdateMany<jobs::Entity> {
        jobs::Entity::update_many()
            .col_expr(jobs::Column::LockedBy, Expr::value(Option::<String>::None))
            .col_expr(
                jobs::Column::LockedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(Self::held_by(id, worker))
    }
}

fn new_job_row(job: &NewJob, now: DateTime<Utc>) -> jobs::ActiveModel {
    jobs::ActiveModel {
        id: Set(Uuid::now_v7()),
        kind: Set(job.kind.as_str().to_owned()),
        payload: Set(job.payload.to_string()),
        effect_key: Set(job.effect_key.clone()),
        state: Set("queued".to_owned()),
        attempts: Set(0),
        max_attempts: Set(job.max_attempts),
        run_at: Set(job.run_at),
        locked_by: Set(None),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        finished_at: Set(None),
    }
}

#[async_trait]
impl JobQueue for SqlStore {
    async fn enqueue(&self, tx: &mut dyn Tx, job: &NewJob, now: DateTime<Utc>) -> AppResult<bool> {
        Ok(self
            .enqueue_many(tx, std::slice::from_ref(job), now)
            .await?
            == 1)
    }

    async fn enqueue_many(
        &self,
        tx: &mut dyn Tx,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> AppResult<u64> {
        let mut added = 0;
        // 14 parameters a row: 500 rows stay under SQLite's 32,766 parameters.
        for chunk in jobs.chunks(500) {
            let rows = chunk.iter().map(|job| new_job_row(job, now));
            let insert = jobs::Entity::insert_many(rows)
                .on_conflict_do_nothing_on([jobs::Column::EffectKey]);
            added += write(tx, &insert).await?;
        }
        Ok(added)
    }

    async fn claim(
        &self,
        worker: &str,
        limit: u64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<Job>> {
        let until = now + chrono::Duration::from_std(lease).map_err(AppError::internal)?;
        let limit = i64::try_from(limit).map_err(AppError::internal)?;
        let claim = Dialect::of(&self.db.writer).claim_jobs(worker, until, now, limit);
        let mut claimed = jobs::Entity::find()
            .from_raw_sql(claim)
            .all(&self.db.writer)
            .await
            .map_err(db_err)?;
        claimed.sort_by_key(|j| (j.run_at, j.id));
        claimed.into_iter().map(job_from_model).collect()
    }

    async fn extend(&self, ids: &[JobId], worker: &str, until: DateTime<Utc>) -> AppResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        jobs::Entity::update_many()
            .col_expr(jobs::Column::LockedUntil, Expr::value(until))
            .filter(jobs::Column::Id.is_in(uuids(ids)))
            .filter(jobs::Column::LockedBy.eq(worker))
            .filter(jobs::Column::State.eq("running"))
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn finish(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()> {
        Self::let_go(id.into(), worker, now)
            .col_expr(jobs::Column::State, Expr::value("done"))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn fail(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let mut update = Self::let_go(id.into(), worker, now).col_expr(
            jobs::Column::LastError,
            Expr::value(error.chars().take(2000).collect::<String>()),
        );
        update = match retry_at {
            Some(at) => update
                .col_expr(jobs::Column::State, Expr::value("failed"))
                .col_expr(jobs::Column::RunAt, Expr::value(at)),
            None => update
                .col_expr(jobs::Column::State, Expr::value("dead"))
                .col_expr(jobs::Column::FinishedAt, Expr::value(now)),
        };
        update.exec(&self.db.writer).await.map_err(db_err)?;
        Ok(())
    }

    async fn release(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()> {
        Self::let_go(id.into(), worker, now)
            .col_expr(jobs::Column::State, Expr::value("queued"))
            .col_expr(
                jobs::Column::Attempts,
                Expr::col(jobs::Column::Attempts).sub(1),
            )
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list(&self, state: Option<JobState>, page: PageRequest) -> AppResult<Page<Job>> {
        let mut select = jobs::Entity::find();
        if let Some(state) = state {
            select = select.filter(jobs::Column::State.eq(state.as_str()));
        }
        let total = select
            .clone()
            .count(&self.db.reader)
            .await
            .map_err(db_err)?;
        let models = select
            .order_by_desc(jobs::Column::CreatedAt)
            .order_by_desc(jobs::Column::Id)
            .offset(page.offset())
            .limit(page.limit)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        Ok(Page {
            items: models
                .into_iter()
                .map(job_from_model)
                .collect::<AppResult<_>>()?,
            page: page.page,
            limit: page.limit,
            total,
        })
    }

    async fn find(&self, id: JobId) -> AppResult<Option<Job>> {
        jobs::Entity::find_by_id(id)
            .unique(&self.db.reader)
            .await
            .map_err(db_err)?
            .map(job_from_model)
            .transpose()
    }

    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> AppResult<bool> {
        let result = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value("queued"))
            .col_expr(jobs::Column::Attempts, Expr::value(0))
            .col_expr(jobs::Column::RunAt, Expr::value(now))
            .col_expr(
                jobs::Column::FinishedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(jobs::Column::UpdatedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.as_uuid()))
            .filter(jobs::Column::State.is_in(["failed", "dead"]))
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(result.rows_affected == 1)
    }

    async fn effect_done(&self, key: &str) -> AppResult<bool> {
        Ok(job_effects::Entity::find()
            .filter(job_effects::Column::EffectKey.eq(key))
            .count(&self.db.reader)
            .await
            .map_err(db_err)?
            > 0)
    }

    async fn record_effect(
        &self,
        key: &str,
        job: Option<JobId>,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let inserted = job_effects::Entity::insert(job_effects::ActiveModel {
            id: Set(Uuid::now_v7()),
            effect_key: Set(key.to_owned()),
            job_id: Set(job.map(Uuid::from)),
            created_at: Set(now),
        })
        .on_conflict_do_nothing_on([job_effects::Column::EffectKey])
        .exec_without_returning(&self.db.writer)
        .await
        .map_err(db_err)?;
        Ok(matches!(inserted, TryInsertResult::Inserted(1)))
    }

    async fn claim_schedule(
        &self,
        name: &str,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let inserted = cron_runs::Entity::insert(cron_runs::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.to_owned()),
            slot: Set(slot),
            created_at: Set(now),
        })
        .on_conflict_do_nothing_on([cron_runs::Column::Name, cron_runs::Column::Slot])
        .exec_without_returning(&self.db.writer)
        .await
        .map_err(db_err)?;
        Ok(matches!(inserted, TryInsertResult::Inserted(1)))
    }

    async fn purge(&self, now: DateTime<Utc>) -> AppResult<Purged> {
        self.purge_expired(now).await
    }
}

#[async_trait]
impl ExpiredRecords for SqlStore {
    async fn purge_expired(&self, now: DateTime<Utc>) -> AppResult<Purged> {
        let w = &self.db.writer;
        let refresh_tokens = refresh_tokens::Entity::delete_many()
            .filter(refresh_tokens::Column::ExpiresAt.lt(now))
            .exec(w)
            .await
            .map_err(db_err)?
            .rows_affected;
        let idempotency_keys = idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::CreatedAt.lt(now - KEEP_IDEMPOTENCY))
            .exec(w)
            .await
            .map_err(db_err)?
            .rows_affected;
        let email_tokens = email_tokens::Entity::delete_many()
            .filter(email_tokens::Column::ExpiresAt.lt(now))
            .exec(w)
            .await
            .map_err(db_err)?
            .rows_affected;
        let jobs = jobs::Entity::delete_many()
            .filter(jobs::Column::State.eq("done"))
            .filter(jobs::Column::FinishedAt.lt(now - KEEP_FINISHED))
            .exec(w)
            .await
            .map_err(db_err)?
            .rows_affected;
        let events = outbox_events::Entity::delete_many()
            .filter(outbox_events::Column::DispatchedAt.lt(now - KEEP_FINISHED))
            .exec(w)
            .await
            .map_err(db_err)?
            .rows_affected;
        Ok(Purged {
            refresh_tokens,
            idempotency_keys,
            email_tokens,
            jobs,
            events,
        })
    }
}

fn token_from_model(m: email_tokens::Model) -> AppResult<EmailToken> {
    let purpose = match m.purpose.as_str() {
        "verify_email" => TokenPurpose::VerifyEmail,
        "reset_password" => TokenPurpose::ResetPassword,
        _ => {
            return Err(AppError::internal(format!(
                "email token {}: bad purpose",
                m.id
            )));
        }
    };
    Ok(EmailToken {
        id: m.id.into(),
        user_id: UserId::from_uuid(m.user_id),
        email: m.email,
        purpose,
        token_hash: m.token_hash,
        expires_at: m.expires_at,
        used_at: m.used_at,
        created_at: m.created_at,
    })
}

#[async_trait]
impl EmailTokenRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, token: &EmailToken) -> AppResult<()> {
        write(
            tx,
            &email_tokens::Entity::insert(email_tokens::ActiveModel {
                id: Set(token.id.into()),
                user_id: Set(token.user_id.as_uuid()),
                email: Set(token.email.clone()),
                purpose: Set(token.purpose.as_str().to_owned()),
                token_hash: Set(token.token_hash.clone()),
                expires_at: Set(token.expires_at),
                used_at: Set(token.used_at),
                created_at: Set(token.created_at),
            }),
        )
        .await?;
        Ok(())
    }

    async fn find_by_hash(&self, hash: &str) -> AppResult<Option<EmailToken>> {
        email_tokens::Entity::find()
            .filter(email_tokens::Column::TokenHash.eq(hash))
            .unique(&self.db.reader)
            .await
            .map_err(db_err)?
            .map(token_from_model)
            .transpose()
    }

    async fn consume(
        &self,
        tx: &mut dyn Tx,
        id: EmailTokenId,
        at: DateTime<Utc>,
    ) -> AppResult<bool> {
        let result = write(
            tx,
            &email_tokens::Entity::update_many()
                .col_expr(email_tokens::Column::UsedAt, Expr::value(at))
                .filter(email_tokens::Column::Id.eq(id.as_uuid()))
                .filter(email_tokens::Column::UsedAt.is_null())
                .filter(email_tokens::Column::ExpiresAt.gt(at)),
        )
        .await?;
        Ok(result == 1)
    }

    async fn mark_verified(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        email: Option<&str>,
        at: DateTime<Utc>,
    ) -> AppResult<bool> {
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(at))
            .filter(users::Column::Id.eq(user.as_uuid()));
        if let Some(email) = email {
            update = update.filter(users::Column::Email.eq(email));
        }
        let result = write(tx, &update).await?;
        Ok(result == 1)
    }

    async fn consume_all(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        purpose: TokenPurpose,
        at: DateTime<Utc>,
    ) -> AppResult<u64> {
        let result = write(
            tx,
            &email_tokens::Entity::update_many()
                .col_expr(email_tokens::Column::UsedAt, Expr::value(at))
                .filter(email_tokens::Column::UserId.eq(user.as_uuid()))
                .filter(email_tokens::Column::Purpose.eq(purpose.as_str()))
                .filter(email_tokens::Column::UsedAt.is_null()),
        )
        .await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use inkcart_app::ports::OutboxEvent;
    use inkcart_domain::EventId;
    use uuid::Uuid;

    use super::{outbox_insert, outbox_row};
    use crate::repo::assert_kept_text_binds;
    use crate::repo::row_values;

    #[test]
    fn an_event_recorded_after_the_first_binds_its_own_values_to_the_kept_statement() {
        let event = |kind: &str, minute: u32| OutboxEvent {
            id: EventId::generate(),
            kind: kind.to_owned(),
            subject_id: Uuid::now_v7(),
            payload: serde_json::json!({ "kind": kind, "n": minute }),
            created_at: Utc
                .with_ymd_and_hms(2026, 12, 4, 10, minute, 0)
                .single()
                .unwrap_or_default(),
            dispatched_at: None,
        };
        assert_kept_text_binds(
            |event: &OutboxEvent, dialect| dialect.build(&outbox_insert(event).unwrap()),
            |event| row_values([outbox_row(event)]),
            &event("order.created", 1),
            &event("post.published", 2),
        );
    }
}
