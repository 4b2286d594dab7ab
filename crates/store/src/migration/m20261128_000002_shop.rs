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
enum Products {
    Table,
    Id,
    Name,
    Description,
    PriceCents,
    Stock,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    SubtotalCents,
    DiscountCents,
    TotalCents,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderItems {
    Table,
    Id,
    OrderId,
    ProductId,
    Quantity,
    UnitPriceCents,
    LineTotalCents,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OrderId,
    Gateway,
    Reference,
    AmountCents,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    UserId,
    Key,
    RequestHash,
    State,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
    UpdatedAt,
}

fn timestamps<T: IntoIden>(created: T, updated: T) -> [ColumnDef; 2] {
    [
        ColumnDef::new(created)
            .timestamp_with_time_zone()
            .not_null()
            .to_owned(),
        ColumnDef::new(updated)
            .timestamp_with_time_zone()
            .not_null()
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let [created, updated] = timestamps(Products::CreatedAt, Products::UpdatedAt);
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .col(ColumnDef::new(Products::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Products::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Products::Description).text().null())
                    .col(
                        ColumnDef::new(Products::PriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Products::Stock).integer().not_null())
                    .col(
                        ColumnDef::new(Products::Active)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(created)
                    .col(updated)
                    .check((
                        "products_price_cents_check",
                        Expr::col(Products::PriceCents).gte(0),
                    ))
                    .check(("products_stock_check", Expr::col(Products::Stock).gte(0)))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index(
                "idx_products_created_at",
                Products::Table,
                [Products::CreatedAt],
            ),
            index(
                "idx_products_price_cents",
                Products::Table,
                [Products::PriceCents],
            ),
            index("idx_products_name", Products::Table, [Products::Name]),
        ] {
            manager.create_index(statement).await?;
        }

        let [created, updated] = timestamps(Orders::CreatedAt, Orders::UpdatedAt);
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(ColumnDef::new(Orders::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Orders::UserId).uuid().not_null())
                    .col(ColumnDef::new(Orders::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Orders::SubtotalCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Orders::DiscountCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Orders::TotalCents).big_integer().not_null())
                    .col(created)
                    .col(updated)
                    .check((
                        "orders_status_check",
                        Expr::col(Orders::Status).is_in([
                            "pending",
                            "paid",
                            "shipped",
                            "delivered",
                            "cancelled",
                        ]),
                    ))
                    .check((
                        "orders_amounts_check",
                        Expr::col(Orders::SubtotalCents)
                            .gte(0)
                            .and(Expr::col(Orders::DiscountCents).gte(0))
                            .and(Expr::col(Orders::TotalCents).gte(0)),
                    ))
                    .foreign_key(&mut foreign_key(
                        "orders_user_id_fkey",
                        (Orders::Table, Orders::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index(
                "idx_orders_user_id_created_at",
                Orders::Table,
                [Orders::UserId, Orders::CreatedAt],
            ),
            index("idx_orders_created_at", Orders::Table, [Orders::CreatedAt]),
            index("idx_orders_status", Orders::Table, [Orders::Status]),
        ] {
            manager.create_index(statement).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(OrderItems::Table)
                    .col(
                        ColumnDef::new(OrderItems::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(OrderItems::OrderId).uuid().not_null())
                    .col(ColumnDef::new(OrderItems::ProductId).uuid().not_null())
                    .col(ColumnDef::new(OrderItems::Quantity).integer().not_null())
                    .col(
                        ColumnDef::new(OrderItems::UnitPriceCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OrderItems::LineTotalCents)
                            .big_integer()
                            .not_null(),
                    )
                    .check((
                        "order_items_quantity_check",
                        Expr::col(OrderItems::Quantity).gt(0),
                    ))
                    .foreign_key(&mut foreign_key(
                        "order_items_order_id_fkey",
                        (OrderItems::Table, OrderItems::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "order_items_product_id_fkey",
                        (OrderItems::Table, OrderItems::ProductId),
                        (Products::Table, Products::Id),
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            unique_index(
                "order_items_order_id_product_id_key",
                OrderItems::Table,
                [OrderItems::OrderId, OrderItems::ProductId],
            ),
            index(
                "idx_order_items_product_id",
                OrderItems::Table,
                [OrderItems::ProductId],
            ),
        ] {
            manager.create_index(statement).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .col(ColumnDef::new(Payments::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Payments::OrderId).uuid().not_null())
                    .col(ColumnDef::new(Payments::Gateway).string_len(32).not_null())
                    .col(
                        ColumnDef::new(Payments::Reference)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Payments::AmountCents)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Payments::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Payments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check((
                        "payments_status_check",
                        Expr::col(Payments::Status).is_in(["succeeded", "refunded"]),
                    ))
                    .foreign_key(&mut foreign_key(
                        "payments_order_id_fkey",
                        (Payments::Table, Payments::OrderId),
                        (Orders::Table, Orders::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_payments_order_id",
                Payments::Table,
                [Payments::OrderId],
            ))
            .await?;

        let [created, updated] = timestamps(IdempotencyKeys::CreatedAt, IdempotencyKeys::UpdatedAt);
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(
                        ColumnDef::new(IdempotencyKeys::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::State)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::ResponseStatus)
                            .integer()
                            .null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::ResponseBody).text().null())
                    .col(created)
                    .col(updated)
                    .check((
                        "idempotency_keys_state_check",
                        Expr::col(IdempotencyKeys::State).is_in(["in_flight", "done"]),
                    ))
                    .foreign_key(&mut foreign_key(
                        "idempotency_keys_user_id_fkey",
                        (IdempotencyKeys::Table, IdempotencyKeys::UserId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            unique_index(
                "idempotency_keys_user_id_key_key",
                IdempotencyKeys::Table,
                [IdempotencyKeys::UserId, IdempotencyKeys::Key],
            ),
            index(
                "idx_idempotency_keys_created_at",
                IdempotencyKeys::Table,
                [IdempotencyKeys::CreatedAt],
            ),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            Payments::Table.into_iden(),
            OrderItems::Table.into_iden(),
            Orders::Table.into_iden(),
            Products::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
