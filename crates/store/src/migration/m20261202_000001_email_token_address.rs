//! An email token records the address it was mailed to.
//!
//! Once an account can change its email, a verification link sent to the previous address
//! must not mark the new one verified, and a reset link sent there must not reset anything:
//! a token proves that someone reads the address it went to, no other. Tokens issued before
//! this column existed have none (they are checked as before; they expire within a day).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    Email,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EmailTokens::Table)
                    .add_column(ColumnDef::new(EmailTokens::Email).string_len(254).null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(EmailTokens::Table)
                    .drop_column(EmailTokens::Email)
                    .to_owned(),
            )
            .await
    }
}
