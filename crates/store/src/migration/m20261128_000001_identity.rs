use sea_orm_migration::prelude::*;

use super::{foreign_key, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    Role,
    Tier,
    EmailVerified,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Users::Email).string_len(254).not_null())
                    .col(
                        ColumnDef::new(Users::PasswordHash)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Users::Name).string_len(100).null())
                    .col(
                        ColumnDef::new(Users::Role)
                            .string_len(16)
                            .not_null()
                            .default("viewer"),
                    )
                    .col(
                        ColumnDef::new(Users::Tier)
                            .string_len(16)
                            .not_null()
                            .default("guest"),
                    )
                    .col(
                        ColumnDef::new(Users::EmailVerified)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check((
                        "users_role_check",
                        Expr::col(Users::Role).is_in(["admin", "editor", "viewer"]),
                    ))
                    .check((
                        "users_tier_check",
                        Expr::col(Users::Tier).is_in(["guest", "regular", "premium"]),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "users_email_key",
                Users::Table,
                [Users::Email],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_users_created_at",
                Users::Table,
                [Users::CreatedAt],
            ))
            .await?;
        manager
            .create_index(index("idx_users_role", Users::Table, [Users::Role]))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(
                        ColumnDef::new(RefreshTokens::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(RefreshTokens::UserId).uuid().not_null())
                    .col(ColumnDef::new(RefreshTokens::FamilyId).uuid().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut foreign_key(
                        "refresh_tokens_user_id_fkey",
                        (RefreshTokens::Table, RefreshTokens::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index(
                "refresh_tokens_token_hash_key",
                RefreshTokens::Table,
                [RefreshTokens::TokenHash],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_refresh_tokens_user_id",
                RefreshTokens::Table,
                [RefreshTokens::UserId],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_refresh_tokens_family_id",
                RefreshTokens::Table,
                [RefreshTokens::FamilyId],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_refresh_tokens_expires_at",
                RefreshTokens::Table,
                [RefreshTokens::ExpiresAt],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}
