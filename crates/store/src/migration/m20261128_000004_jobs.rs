use sea_orm_migration::prelude::*;

use super::{foreign_key, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    Kind,
    SubjectId,
    Payload,
    CreatedAt,
    DispatchedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Kind,
    Payload,
    EffectKey,
    State,
    Attempts,
    MaxAttempts,
    RunAt,
    LockedBy,
    LockedUntil,
    LastError,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum JobEffects {
    Table,
    Id,
    EffectKey,
    JobId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CronRuns {
    Table,
    Id,
    Name,
    Slot,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

fn ts<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null<T: IntoIden>(col: T) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Events written in the transaction of the change they describe; a relay turns each
        // into jobs (and publishes it) afterwards.
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(
                        ColumnDef::new(OutboxEvents::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OutboxEvents::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(OutboxEvents::SubjectId).uuid().not_null())
                    .col(ColumnDef::new(OutboxEvents::Payload).text().not_null())
                    .col(ts(OutboxEvents::CreatedAt))
                    .col(ts_null(OutboxEvents::DispatchedAt))
                    .col(ts_null(OutboxEvents::PublishedAt))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index(
                "idx_outbox_events_dispatched_at",
                OutboxEvents::Table,
                [OutboxEvents::DispatchedAt, OutboxEvents::CreatedAt],
            ),
            index(
                "idx_outbox_events_published_at",
                OutboxEvents::Table,
                [OutboxEvents::PublishedAt, OutboxEvents::CreatedAt],
            ),
            index(
                "idx_outbox_events_kind_subject_id",
                OutboxEvents::Table,
                [
                    OutboxEvents::Kind,
                    OutboxEvents::SubjectId,
                    OutboxEvents::CreatedAt,
                ],
            ),
        ] {
            manager.create_index(statement).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(ColumnDef::new(Jobs::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Jobs::Kind).string_len(64).not_null())
                    .col(ColumnDef::new(Jobs::Payload).text().not_null())
                    .col(ColumnDef::new(Jobs::EffectKey).string_len(255).not_null())
                    .col(ColumnDef::new(Jobs::State).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Jobs::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Jobs::MaxAttempts).integer().not_null())
                    .col(ts(Jobs::RunAt))
                    .col(ColumnDef::new(Jobs::LockedBy).string_len(64).null())
                    .col(ts_null(Jobs::LockedUntil))
                    .col(ColumnDef::new(Jobs::LastError).text().null())
                    .col(ts(Jobs::CreatedAt))
                    .col(ts(Jobs::UpdatedAt))
                    .col(ts_null(Jobs::FinishedAt))
                    .check((
                        "jobs_state_check",
                        Expr::col(Jobs::State)
                            .is_in(["queued", "running", "done", "failed", "dead"]),
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            unique_index("jobs_effect_key_key", Jobs::Table, [Jobs::EffectKey]),
            index(
                "idx_jobs_state_run_at",
                Jobs::Table,
                [Jobs::State, Jobs::RunAt],
            ),
            index(
                "idx_jobs_state_locked_until",
                Jobs::Table,
                [Jobs::State, Jobs::LockedUntil],
            ),
        ] {
            manager.create_index(statement).await?;
        }

        // Side effects done, by key: a job that runs again (its lease ran out while it was
        // still working) skips what is already done.
        manager
            .create_table(
                Table::create()
                    .table(JobEffects::Table)
                    .col(
                        ColumnDef::new(JobEffects::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(JobEffects::EffectKey)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(JobEffects::JobId).uuid().null())
                    .col(ts(JobEffects::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "job_effects_effect_key_key",
                JobEffects::Table,
                [JobEffects::EffectKey],
            ))
            .await?;

        // One row per scheduled run: the instance that inserts it runs the schedule.
        manager
            .create_table(
                Table::create()
                    .table(CronRuns::Table)
                    .col(ColumnDef::new(CronRuns::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(CronRuns::Name).string_len(64).not_null())
                    .col(ts(CronRuns::Slot))
                    .col(ts(CronRuns::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "cron_runs_name_slot_key",
                CronRuns::Table,
                [CronRuns::Name, CronRuns::Slot],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EmailTokens::Table)
                    .col(
                        ColumnDef::new(EmailTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(EmailTokens::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(EmailTokens::Purpose)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(EmailTokens::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ts(EmailTokens::ExpiresAt))
                    .col(ts_null(EmailTokens::UsedAt))
                    .col(ts(EmailTokens::CreatedAt))
                    .check((
                        "email_tokens_purpose_check",
                        Expr::col(EmailTokens::Purpose).is_in(["verify_email", "reset_password"]),
                    ))
                    .foreign_key(&mut foreign_key(
                        "email_tokens_user_id_fkey",
                        (EmailTokens::Table, EmailTokens::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            unique_index(
                "email_tokens_token_hash_key",
                EmailTokens::Table,
                [EmailTokens::TokenHash],
            ),
            index(
                "idx_email_tokens_user_id",
                EmailTokens::Table,
                [EmailTokens::UserId],
            ),
            index(
                "idx_email_tokens_expires_at",
                EmailTokens::Table,
                [EmailTokens::ExpiresAt],
            ),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmailTokens::Table.into_iden(),
            CronRuns::Table.into_iden(),
            JobEffects::Table.into_iden(),
            Jobs::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
