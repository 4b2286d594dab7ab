use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use inkcart_app::error::{ErrorCode, messages};
use inkcart_app::page::Page;
use inkcart_app::ports::{
    Claim, DailySales, IdempotencyRepo, OrderQuery, OrderRepo, OrderSortField, Outbox as _,
    OutboxEvent, Payment, PriceOrder, ProductQuery, ProductRepo, ProductSortField, Removal,
    TopProduct, Tx, transaction,
};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::shop::{Money, Order, OrderItem, OrderStatus, Product};
use inkcart_domain::{OrderId, ProductId, Tier, UserId};
use sea_orm::sea_query::{
    Alias, CaseStatement, CommonTableExpression, Expr, ExprTrait as _, Func, InsertStatement,
    LikeExpr, LockType, Query, SelectStatement, SubQueryStatement, UpdateStatement, Value,
    WithClause,
};
use sea_orm::sqlx::postgres::PgDatabaseError;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DbErr, EntityTrait as _, Iterable as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, QueryTrait as _,
    RuntimeErr, Statement, TryInsertResult,
};
use uuid::Uuid;

use super::jobs::outbox_insert;
use super::{
    InsertRow, OnceSql, OnceSqlPerCount, SqlStore, TxConn, Unique as _, escape_like, get, get_id,
    insert_rows, order, paged, row_values, uuids, write,
};
use crate::dialect::Dialect;
use crate::entity::{idempotency_keys, order_items, orders, payments, products, users};
use crate::error::db_err;
use crate::lite::{Columns, Row};

/// A product's row, as [`SqlStore::models`] reads it.
fn product_row(row: &Row) -> AppResult<products::Model> {
    Ok(products::Model {
        id: get(row, "id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        price_cents: get(row, "price_cents")?,
        stock: get(row, "stock")?,
        active: get(row, "active")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

fn product_from_model(m: products::Model) -> Product {
    Product {
        id: m.id.into(),
        name: m.name,
        description: m.description,
        price: Money::from_cents(m.price_cents),
        stock: m.stock,
        active: m.active,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

fn product_model(p: &Product) -> products::ActiveModel {
    products::ActiveModel {
        id: Set(p.id.into()),
        name: Set(p.name.clone()),
        description: Set(p.description.clone()),
        price_cents: Set(p.price.cents()),
        stock: Set(p.stock),
        active: Set(p.active),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    }
}

#[async_trait]
impl ProductRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, product: &Product) -> AppResult<()> {
        write(tx, &products::Entity::insert(product_model(product))).await?;
        Ok(())
    }

    async fn find(&self, id: ProductId) -> AppResult<Option<Product>> {
        Ok(self
            .models(products::Entity::find_by_id(id), product_row)
            .await?
            .pop()
            .map(product_from_model))
    }

    async fn find_many(&self, ids: &[ProductId]) -> AppResult<Vec<Product>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .read(order_products(ids, self.dialect()), product_row)
            .await?
            .into_iter()
            .map(product_from_model)
            .collect())
    }

    async fn list(&self, query: &ProductQuery) -> AppResult<Page<Product>> {
        let mut select = products::Entity::find().filter(products::Column::Active.eq(true));
        if let Some(term) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let pattern = escape_like(&term.to_lowercase());
            let like = |col: products::Column| {
                Expr::expr(Func::lower(Expr::col(col)))
                    .like(LikeExpr::new(pattern.clone()).escape('\\'))
            };
            select =
                select.filter(like(products::Column::Name).or(like(products::Column::Description)));
        }
        if let Some(min) = query.min_price {
            select = select.filter(products::Column::PriceCents.gte(min.cents()));
        }
        if let Some(max) = query.max_price {
            select = select.filter(products::Column::PriceCents.lte(max.cents()));
        }
        match query.in_stock {
            Some(true) => select = select.filter(products::Column::Stock.gt(0)),
            Some(false) => select = select.filter(products::Column::Stock.eq(0)),
            None => {}
        }
        let total = select
            .clone()
            .count(&self.db.reader)
            .await
            .map_err(db_err)?;
        let ord = order(query.sort.direction);
        let column = match query.sort.field {
            ProductSortField::CreatedAt => products::Column::CreatedAt,
            ProductSortField::Price => products::Column::PriceCents,
            ProductSortField::Name => products::Column::Name,
        };
        let models = select
            .order_by(column, ord.clone())
            .order_by(products::Column::Id, ord)
            .offset(query.page.offset())
            .limit(query.page.limit)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        Ok(Page {
            items: models.into_iter().map(product_from_model).collect(),
            page: query.page.page,
            limit: query.page.limit,
            total,
        })
    }

    async fn update(&self, tx: &mut dyn Tx, product: &Product) -> AppResult<bool> {
        let result = write(
            tx,
            &products::Entity::update_many()
                .col_expr(products::Column::Name, Expr::value(product.name.clone()))
                .col_expr(
                    products::Column::Description,
                    Expr::value(product.description.clone()),
                )
                .col_expr(
                    products::Column::PriceCents,
                    Expr::value(product.price.cents()),
                )
                .col_expr(products::Column::Stock, Expr::value(product.stock))
                .col_expr(products::Column::Active, Expr::value(product.active))
                .col_expr(products::Column::UpdatedAt, Expr::value(product.updated_at))
                .filter(products::Column::Id.eq(product.id.as_uuid())),
        )
        .await?;
        Ok(result == 1)
    }

    async fn remove(
        &self,
        tx: &mut dyn Tx,
        id: ProductId,
        now: DateTime<Utc>,
    ) -> AppResult<Option<Removal>> {
        let mut conn = TxConn::of(tx)?;
        // Whether any order holds the product: one row at most, by the index on product_id.
        let referenced = Query::select()
            .expr_as(Expr::val(1), "one")
            .from(order_items::Entity)
            .and_where(order_items::Column::ProductId.eq(id.as_uuid()))
            .to_owned();
        let referenced = !conn
            .query(paged(conn.dialect().build(&referenced), 1, 0), |_| Ok(()))
            .await?
            .is_empty();
        let affected = if referenced {
            let deactivate = products::Entity::update_many()
                .col_expr(products::Column::Active, Expr::value(false))
                .col_expr(products::Column::UpdatedAt, Expr::value(now))
                .filter(products::Column::Id.eq(id.as_uuid()));
            conn.execute(conn.build(&deactivate)).await?
        } else {
            conn.execute(conn.build(&products::Entity::delete_by_id(id)))
                .await?
        };
        Ok((affected == 1).then_some(if referenced {
            Removal::Deactivated
        } else {
            Removal::Deleted
        }))
    }

    async fn reserve_stock(
        &self,
        tx: &mut dyn Tx,
        lines: &[(ProductId, i32)],
        now: DateTime<Utc>,
    ) -> AppResult<Option<ProductId>> {
        if lines.is_empty() {
            return Ok(None);
        }
        let mut conn = TxConn::of(tx)?;
        let dialect = conn.dialect();
        if !dialect.takes_stock_in_one_statement() {
            // A statement per line, each a search of the product by its key; the first line
            // not taken (short, inactive or missing) is the answer, and the caller's error rolls
            // back the lines taken before it.
            static TAKE_ONE: OnceSql = OnceSql::new();
            for &(id, quantity) in lines {
                let values = stock_take_one_values(id, quantity, now);
                let update = TAKE_ONE.statement(dialect, values, || {
                    dialect.build(&stock_take_one(id, quantity, now))
                });
                if conn.execute(update).await? != 1 {
                    return Ok(Some(id));
                }
            }
            return Ok(None);
        }
        // Every order runs it: the text is built once per number of lines.
        static TAKE: OnceSqlPerCount<8> = OnceSqlPerCount::new();
        let update = TAKE.statement(dialect, lines.len(), stock_values(lines, now), || {
            dialect.build(&stock_update(lines, now))
        });
        let taken = conn
            .query(update, |row| get_id::<ProductId>(row, "id"))
            .await?;
        // A line whose row the update did not return was short, inactive or missing.
        Ok(lines
            .iter()
            .map(|(id, _)| *id)
            .find(|id| !taken.contains(id)))
    }

    async fn release_stock(
        &self,
        tx: &mut dyn Tx,
        id: ProductId,
        quantity: i32,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        write(
            tx,
            &products::Entity::update_many()
                .col_expr(
                    products::Column::Stock,
                    Expr::col(products::Column::Stock).add(quantity),
                )
                .col_expr(products::Column::UpdatedAt, Expr::value(now))
                .filter(products::Column::Id.eq(id.as_uuid())),
        )
        .await?;
        Ok(())
    }
}

/// Takes each line's quantity from its product's stock, in one statement for every line (each
/// a round trip less inside the transaction that holds the rows; SQLite takes a line at a time
/// instead, [`stock_take_one`]),
/// where the product is active and has that much, `RETURNING` the ids of the rows taken
/// (SQLite ≥ 3.35, PostgreSQL; built here because sea-orm offers it on SQLite only behind a
/// feature). On PostgreSQL the subquery locks the rows in id order, so that two orders sharing
/// products cannot deadlock whatever plan the update gets; SQLite has one writer and no row
/// locks, and sea-query leaves the `FOR UPDATE` out there.
fn stock_update(lines: &[(ProductId, i32)], now: DateTime<Utc>) -> UpdateStatement {
    let locked = Query::select()
        .column(products::Column::Id)
        .from(products::Entity)
        .and_where(products::Column::Id.is_in(lines.iter().map(|(id, _)| id.as_uuid())))
        .order_by(products::Column::Id, sea_orm::Order::Asc)
        .lock(LockType::Update)
        .to_owned();
    let wanted = lines
        .iter()
        .fold(CaseStatement::new(), |case, (id, quantity)| {
            case.case(products::Column::Id.eq(id.as_uuid()), *quantity)
        })
        .finally(0);
    let mut update = products::Entity::update_many()
        .col_expr(
            products::Column::Stock,
            Expr::col(products::Column::Stock).sub(wanted.clone()),
        )
        .col_expr(products::Column::UpdatedAt, Expr::value(now))
        .filter(products::Column::Id.in_subquery(locked))
        .filter(products::Column::Active.eq(true))
        .filter(Expr::col(products::Column::Stock).gte(wanted))
        .into_query();
    update.returning_col(products::Column::Id);
    update
}

/// Takes one line's quantity from its product's stock where the product is active and has that
/// much: [`stock_update`] for one line, without its subquery and `RETURNING`, whose temporary
/// tables SQLite builds and drops on every run ([`Dialect::takes_stock_in_one_statement`]).
fn stock_take_one(id: ProductId, quantity: i32, now: DateTime<Utc>) -> UpdateStatement {
    products::Entity::update_many()
        .col_expr(
            products::Column::Stock,
            Expr::col(products::Column::Stock).sub(quantity),
        )
        .col_expr(products::Column::UpdatedAt, Expr::value(now))
        .filter(products::Column::Id.eq(id.as_uuid()))
        .filter(products::Column::Active.eq(true))
        .filter(Expr::col(products::Column::Stock).gte(quantity))
        .into_query()
}

/// The values of [`stock_take_one`], in the order its text binds them.
fn stock_take_one_values(id: ProductId, quantity: i32, now: DateTime<Utc>) -> Vec<Value> {
    vec![
        Value::from(quantity),
        Value::from(now),
        Value::from(id.as_uuid()),
        Value::from(true),
        Value::from(quantity),
    ]
}

/// The values of [`stock_update`], in the order its text binds them.
fn stock_values(lines: &[(ProductId, i32)], now: DateTime<Utc>) -> Vec<Value> {
    let wanted = || {
        lines
            .iter()
            .flat_map(|(id, quantity)| [Value::from(id.as_uuid()), Value::from(*quantity)])
            .chain([Value::from(0)])
    };
    wanted()
        .chain([Value::from(now)])
        .chain(lines.iter().map(|(id, _)| Value::from(id.as_uuid())))
        .chain([Value::from(true)])
        .chain(wanted())
        .collect()
}

/// The read of an order's products (at least one) by id: its text is built once per count.
fn order_products(ids: &[ProductId], dialect: Dialect) -> Statement {
    static BY_IDS: OnceSqlPerCount<8> = OnceSqlPerCount::new();
    BY_IDS.statement(dialect, ids.len(), id_values(ids), || {
        products_by_ids(ids, dialect)
    })
}

/// The read of an order's buyer and products, in one statement: a row per product found, each
/// with the buyer's tier; one row without a product when none is; no row without the buyer.
/// Its text is built once per count of products.
fn buyer_and_products(buyer: UserId, ids: &[ProductId], dialect: Dialect) -> Statement {
    static READ: OnceSqlPerCount<8> = OnceSqlPerCount::new();
    READ.statement(
        dialect,
        ids.len(),
        buyer_products_values(buyer, ids),
        || buyer_products_select(buyer, ids, dialect),
    )
}

/// The statement of [`buyer_and_products`], built.
fn buyer_products_select(buyer: UserId, ids: &[ProductId], dialect: Dialect) -> Statement {
    let mut q = Query::select();
    q.expr_as(
        Expr::col((users::Entity, users::Column::Tier)),
        Alias::new("buyer_tier"),
    )
    .columns(products::Column::iter().map(|c| (products::Entity, c)))
    .from(users::Entity)
    .left_join(
        products::Entity,
        Expr::col((products::Entity, products::Column::Id)).is_in(uuids(ids)),
    )
    .and_where(Expr::col((users::Entity, users::Column::Id)).eq(buyer.as_uuid()));
    dialect.build(&q)
}

/// The values of [`buyer_and_products`] in the order of its text: the products' ids (the join),
/// then the buyer's (the filter).
fn buyer_products_values(buyer: UserId, ids: &[ProductId]) -> Vec<Value> {
    let mut values = id_values(ids);
    values.push(buyer.as_uuid().into());
    values
}

/// A row of [`buyer_and_products`]: the buyer's tier, and a product unless none was found.
fn buyer_product_row(row: &Row) -> AppResult<(String, Option<products::Model>)> {
    let product = match get::<Option<Uuid>>(row, "id")? {
        Some(_) => Some(product_row(row)?),
        None => None,
    };
    Ok((get(row, "buyer_tier")?, product))
}

/// The buyer's tier (`None` when there was no buyer) and the products, of the rows of
/// [`buyer_and_products`].
fn buyer_and_products_of(
    rows: Vec<(String, Option<products::Model>)>,
) -> AppResult<(Option<Tier>, Vec<Product>)> {
    let tier = rows
        .first()
        .map(|(tier, _)| tier.parse().map_err(|_| corrupt("the buyer's tier")))
        .transpose()?;
    let products = rows
        .into_iter()
        .filter_map(|(_, product)| product.map(product_from_model))
        .collect();
    Ok((tier, products))
}

/// Products by id.
fn products_by_ids(ids: &[ProductId], dialect: Dialect) -> Statement {
    dialect.build(
        &products::Entity::find()
            .filter(products::Column::Id.is_in(uuids(ids)))
            .into_query(),
    )
}

fn id_values(ids: &[ProductId]) -> Vec<Value> {
    ids.iter().map(|id| Value::from(id.as_uuid())).collect()
}

/// What each line of `order` takes from its product's stock.
fn stock_lines(order: &Order) -> Vec<(ProductId, i32)> {
    order
        .items
        .iter()
        .map(|item| (item.product_id, item.quantity))
        .collect()
}

/// The row of an order (without its lines).
fn order_row(order: &Order) -> InsertRow<orders::Column, 8> {
    use orders::Column as O;
    [
        (O::Id, Uuid::from(order.id).into()),
        (O::UserId, order.user_id.as_uuid().into()),
        (O::Status, order.status.as_str().into()),
        (O::SubtotalCents, order.subtotal.cents().into()),
        (O::DiscountCents, order.discount.cents().into()),
        (O::TotalCents, order.total.cents().into()),
        (O::CreatedAt, order.created_at.into()),
        (O::UpdatedAt, order.updated_at.into()),
    ]
}

fn order_insert(order: &Order) -> AppResult<InsertStatement> {
    insert_rows(orders::Entity, [order_row(order)], |_, value| {
        Expr::value(value)
    })
}

/// The rows of an order's lines; `lines` are their ids, one per item ([`line_ids`]).
fn item_rows<'a>(
    order: &'a Order,
    lines: &'a [Uuid],
) -> impl Iterator<Item = InsertRow<order_items::Column, 6>> + 'a {
    use order_items::Column as I;
    order.items.iter().zip(lines).map(|(item, line)| {
        [
            (I::Id, (*line).into()),
            (I::OrderId, Uuid::from(order.id).into()),
            (I::ProductId, item.product_id.as_uuid().into()),
            (I::Quantity, item.quantity.into()),
            (I::UnitPriceCents, item.unit_price.cents().into()),
            (I::LineTotalCents, item.line_total.cents().into()),
        ]
    })
}

/// The insert of an order's lines (at least one). `product` makes the expression of each
/// line's product id from its value: the value itself, or in [`placement`] the row the stock
/// update took.
fn items_insert(
    order: &Order,
    lines: &[Uuid],
    product: impl Fn(Value) -> Expr,
) -> AppResult<InsertStatement> {
    insert_rows(
        order_items::Entity,
        item_rows(order, lines),
        |column, value| match column {
            order_items::Column::ProductId => product(value),
            _ => Expr::value(value),
        },
    )
}

/// New ids for the rows of an order's items.
fn line_ids(order: &Order) -> Vec<Uuid> {
    order.items.iter().map(|_| Uuid::now_v7()).collect()
}

fn cte(name: &str, query: impl Into<SubQueryStatement>) -> CommonTableExpression {
    CommonTableExpression::new()
        .table_name(Alias::new(name))
        .query(query)
        .to_owned()
}

/// An order without an idempotency key, whole, in one PostgreSQL statement: its own
/// transaction, one round trip where a transaction takes five (`BEGIN`, the stock, the order
/// with its lines, the event, `COMMIT`). The stock update runs as `taken`, the order and its
/// outbox event beside it, and each line takes its product id from the row `taken` returned
/// for that product. A line whose stock was not taken (short, inactive, gone) gets no id, the
/// not-null constraint of `order_items.product_id` fails the statement, and nothing of the
/// order stays ([`is_short_line`]).
fn placement(order: &Order, event: &OutboxEvent, now: DateTime<Utc>) -> AppResult<Statement> {
    let mut with = WithClause::new();
    with.cte(cte("taken", stock_update(&stock_lines(order), now)))
        .cte(cte("o", order_insert(order)?))
        .cte(cte("e", outbox_insert(event)?));
    let mut items = items_insert(order, &line_ids(order), |id| {
        let taken = Query::select()
            .column(Alias::new("id"))
            .from(Alias::new("taken"))
            .and_where(Expr::col(Alias::new("id")).eq(id))
            .to_owned();
        Expr::SubQuery(None, Box::new(taken.into()))
    })?;
    items.with_cte(with);
    Ok(Dialect::Postgres.build(&items))
}

/// The error of [`placement`] when a line's stock was not taken.
fn is_short_line(err: &DbErr) -> bool {
    let DbErr::Exec(RuntimeErr::SqlxError(cause)) = err else {
        return false;
    };
    cause
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|db| {
            db.code() == "23502"
                && db.table() == Some("order_items")
                && db.column() == Some("product_id")
        })
}

/// `'paid', 'shipped', 'delivered'`: the statuses of the orders reports count as sales.
fn sold_statuses() -> String {
    OrderStatus::SOLD
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn corrupt(what: &str) -> AppError {
    AppError::internal(format!("stored order data is invalid: {what}"))
}

/// An order as an idempotency key keeps it: what the first request answered, stored as JSON.
/// Field names are part of the stored format (records live for the key's lifetime, 24 hours
/// by default): rename none without reading the old names too.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredOrder {
    id: Uuid,
    user_id: Uuid,
    status: String,
    items: Vec<StoredItem>,
    subtotal_cents: i64,
    discount_cents: i64,
    total_cents: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredItem {
    product_id: Uuid,
    name: String,
    quantity: i32,
    unit_price_cents: i64,
    line_total_cents: i64,
}

impl From<&Order> for StoredOrder {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id.into(),
            user_id: order.user_id.as_uuid(),
            status: order.status.as_str().to_owned(),
            items: order
                .items
                .iter()
                .map(|item| StoredItem {
                    product_id: item.product_id.into(),
                    name: item.name.clone(),
                    quantity: item.quantity,
                    unit_price_cents: item.unit_price.cents(),
                    line_total_cents: item.line_total.cents(),
                })
                .collect(),
            subtotal_cents: order.subtotal.cents(),
            discount_cents: order.discount.cents(),
            total_cents: order.total.cents(),
            created_at: order.created_at,
            updated_at: order.updated_at,
        }
    }
}

impl StoredOrder {
    fn into_order(self) -> AppResult<Order> {
        Ok(Order {
            id: self.id.into(),
            user_id: UserId::from_uuid(self.user_id),
            status: self.status.parse().map_err(|_| corrupt("status"))?,
            items: self
                .items
                .into_iter()
                .map(|item| OrderItem {
                    product_id: item.product_id.into(),
                    name: item.name,
                    quantity: item.quantity,
                    unit_price: Money::from_cents(item.unit_price_cents),
                    line_total: Money::from_cents(item.line_total_cents),
                })
                .collect(),
            subtotal: Money::from_cents(self.subtotal_cents),
            discount: Money::from_cents(self.discount_cents),
            total: Money::from_cents(self.total_cents),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The items of an order, with the current product names, as selected by [`items_query`].
fn item_from_row(row: &impl Columns) -> AppResult<OrderItem> {
    Ok(OrderItem {
        product_id: get_id(row, "i_product_id")?,
        name: get(row, "p_name")?,
        quantity: get(row, "i_quantity")?,
        unit_price: Money::from_cents(get(row, "i_unit_price_cents")?),
        line_total: Money::from_cents(get(row, "i_line_total_cents")?),
    })
}

/// Selects item columns (aliased `i_*`) and the product name (`p_name`) joined to `from`.
fn add_item_columns(q: &mut SelectStatement) {
    use order_items::Column as I;
    q.expr_as(Expr::col((order_items::Entity, I::OrderId)), "i_order_id")
        .expr_as(
            Expr::col((order_items::Entity, I::ProductId)),
            "i_product_id",
        )
        .expr_as(Expr::col((order_items::Entity, I::Quantity)), "i_quantity")
        .expr_as(
            Expr::col((order_items::Entity, I::UnitPriceCents)),
            "i_unit_price_cents",
        )
        .expr_as(
            Expr::col((order_items::Entity, I::LineTotalCents)),
            "i_line_total_cents",
        )
        .expr_as(
            Expr::col((products::Entity, products::Column::Name)),
            "p_name",
        );
}

fn order_from_model(m: &orders::Model, items: Vec<OrderItem>) -> AppResult<Order> {
    Ok(Order {
        id: m.id.into(),
        user_id: UserId::from_uuid(m.user_id),
        status: m.status.parse().map_err(|_| corrupt("status"))?,
        items,
        subtotal: Money::from_cents(m.subtotal_cents),
        discount: Money::from_cents(m.discount_cents),
        total: Money::from_cents(m.total_cents),
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

impl SqlStore {
    /// Items with product names for several orders, in one query.
    async fn items_for(&self, order_ids: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<OrderItem>>> {
        let mut map: HashMap<Uuid, Vec<OrderItem>> = HashMap::new();
        if order_ids.is_empty() {
            return Ok(map);
        }
        let mut q = Query::select();
        add_item_columns(&mut q);
        q.from(order_items::Entity)
            .inner_join(
                products::Entity,
                Expr::col((products::Entity, products::Column::Id))
                    .equals((order_items::Entity, order_items::Column::ProductId)),
            )
            .and_where(
                Expr::col((order_items::Entity, order_items::Column::OrderId))
                    .is_in(order_ids.iter().copied()),
            )
            .order_by(
                (order_items::Entity, order_items::Column::ProductId),
                sea_orm::Order::Asc,
            );
        let rows = self
            .read_all(&q, |row| {
                Ok((get::<Uuid>(row, "i_order_id")?, item_from_row(row)?))
            })
            .await?;
        for (order_id, item) in rows {
            map.entry(order_id).or_default().push(item);
        }
        Ok(map)
    }
}

fn payment_from_model(m: payments::Model) -> Payment {
    Payment {
        id: m.id.into(),
        order_id: m.order_id.into(),
        gateway: m.gateway,
        reference: m.reference,
        amount: Money::from_cents(m.amount_cents),
        status: m.status,
        created_at: m.created_at,
    }
}

impl SqlStore {
    /// An order's buyer and products ([`buyer_and_products`]), read in `tx`.
    async fn buyer_and_products_in(
        &self,
        tx: &mut dyn Tx,
        buyer: UserId,
        ids: &[ProductId],
    ) -> AppResult<(Option<Tier>, Vec<Product>)> {
        let mut conn = TxConn::of(tx)?;
        let statement = buyer_and_products(buyer, ids, conn.dialect());
        buyer_and_products_of(conn.query(statement, buyer_product_row).await?)
    }

    /// The writes of [`OrderRepo::place`] in `tx`: the stock, the order, its event, its key.
    async fn write_order(
        &self,
        tx: &mut dyn Tx,
        order: &Order,
        event: &OutboxEvent,
        key: Option<String>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        if let Some(short) = self.reserve_stock(tx, &stock_lines(order), now).await? {
            // The error rolls back whatever lines were taken.
            let name = order
                .items
                .iter()
                .find(|item| item.product_id == short)
                .map_or("a product", |item| item.name.as_str());
            return Err(AppError::Conflict(
                ErrorCode::InsufficientStock,
                messages::insufficient_stock(name),
            ));
        }
        OrderRepo::insert(self, tx, order).await?;
        self.record(tx, event).await?;
        if let Some(key) = key {
            self.complete(tx, order.user_id, &key, order, now).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl OrderRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, order: &Order) -> AppResult<()> {
        let mut conn = TxConn::of(tx)?;
        let dialect = conn.dialect();
        let lines = line_ids(order);
        if dialect == Dialect::Postgres && !order.items.is_empty() {
            // The order and its lines in one statement, `WITH "o" AS (INSERT INTO orders …)
            // INSERT INTO order_items …`: one round trip less inside the transaction that
            // holds the products' rows.
            let mut items = items_insert(order, &lines, Expr::value)?;
            items.with_cte(
                WithClause::new()
                    .cte(cte("o", order_insert(order)?))
                    .to_owned(),
            );
            conn.execute(dialect.build(&items)).await?;
            return Ok(());
        }
        // SQLite has no INSERT inside WITH, and its statements are calls on the writer's
        // thread, not round trips: the order, then its lines, with texts built once.
        static ORDER: OnceSql = OnceSql::new();
        static LINES: OnceSqlPerCount<8> = OnceSqlPerCount::new();
        let insert = ORDER.try_statement(dialect, row_values([order_row(order)]), || {
            order_insert(order).map(|insert| dialect.build(&insert))
        })?;
        conn.execute(insert).await?;
        if !order.items.is_empty() {
            let items = LINES.try_statement(
                dialect,
                order.items.len(),
                row_values(item_rows(order, &lines)),
                || items_insert(order, &lines, Expr::value).map(|items| dialect.build(&items)),
            )?;
            conn.execute(items).await?;
        }
        Ok(())
    }

    async fn place(
        &self,
        buyer: UserId,
        ids: &[ProductId],
        price: PriceOrder,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> AppResult<Order> {
        let key = key.map(str::to_owned);
        let Some(pg) = &self.db.pg else {
            // SQLite: the one writer reads the buyer and the products, in the transaction,
            // from the pages its own last commits left in its cache (the order's foreign key
            // reads the buyer's page again). A reader would start with its cache emptied by
            // those commits, and read the pages back from the write-ahead log.
            let (store, ids) = (self.clone(), ids.to_vec());
            return transaction(self, move |tx| {
                Box::pin(async move {
                    let (tier, products) = store.buyer_and_products_in(tx, buyer, &ids).await?;
                    let (order, event) = price(tier, &products)?;
                    store.write_order(tx, &order, &event, key, now).await?;
                    Ok(order)
                })
            })
            .await;
        };
        // PostgreSQL: read first, so that an order without a key is one statement, and the
        // whole order two round trips.
        let read = buyer_and_products(buyer, ids, self.dialect());
        let (tier, products) = buyer_and_products_of(self.read(read, buyer_product_row).await?)?;
        let (order, event) = price(tier, &products)?;
        if key.is_none() && !order.items.is_empty() {
            match pg.try_execute(placement(&order, &event, now)?).await? {
                Ok(_) => return Ok(order),
                // Nothing was written. The transaction below names the line, or takes its
                // stock if some came back in between.
                Err(err) if is_short_line(&err) => {}
                Err(err) => return Err(db_err(err)),
            }
        }
        let store = self.clone();
        transaction(self, move |tx| {
            Box::pin(async move {
                store.write_order(tx, &order, &event, key, now).await?;
                Ok(order)
            })
        })
        .await
    }

    async fn find(&self, id: OrderId) -> AppResult<Option<Order>> {
        use orders::Column as O;
        let mut q = Query::select();
        for (col, alias) in [
            (O::Id, "o_id"),
            (O::UserId, "o_user_id"),
            (O::Status, "o_status"),
            (O::SubtotalCents, "o_subtotal_cents"),
            (O::DiscountCents, "o_discount_cents"),
            (O::TotalCents, "o_total_cents"),
            (O::CreatedAt, "o_created_at"),
            (O::UpdatedAt, "o_updated_at"),
        ] {
            q.expr_as(Expr::col((orders::Entity, col)), alias);
        }
        add_item_columns(&mut q);
        q.from(orders::Entity)
            .left_join(
                order_items::Entity,
                Expr::col((order_items::Entity, order_items::Column::OrderId))
                    .equals((orders::Entity, O::Id)),
            )
            .left_join(
                products::Entity,
                Expr::col((products::Entity, products::Column::Id))
                    .equals((order_items::Entity, order_items::Column::ProductId)),
            )
            .and_where(Expr::col((orders::Entity, O::Id)).eq(id.as_uuid()))
            .order_by(
                (order_items::Entity, order_items::Column::ProductId),
                sea_orm::Order::Asc,
            );
        // Each row: the order (the same on every row) and one item, if it has any.
        let rows = self
            .read_all(&q, |row| {
                let model = orders::Model {
                    id: get(row, "o_id")?,
                    user_id: get(row, "o_user_id")?,
                    status: get(row, "o_status")?,
                    subtotal_cents: get(row, "o_subtotal_cents")?,
                    discount_cents: get(row, "o_discount_cents")?,
                    total_cents: get(row, "o_total_cents")?,
                    created_at: get(row, "o_created_at")?,
                    updated_at: get(row, "o_updated_at")?,
                };
                let item = match get::<Option<Uuid>>(row, "i_product_id")? {
                    Some(_) => Some(item_from_row(row)?),
                    None => None,
                };
                Ok((model, item))
            })
            .await?;
        let Some((model, _)) = rows.first() else {
            return Ok(None);
        };
        let items = rows.iter().filter_map(|(_, item)| item.clone()).collect();
        order_from_model(model, items).map(Some)
    }

    async fn list(&self, query: &OrderQuery) -> AppResult<Page<Order>> {
        let mut select = orders::Entity::find();
        if let Some(user) = query.user_id {
            select = select.filter(orders::Column::UserId.eq(user.as_uuid()));
        }
        if let Some(status) = query.status {
            select = select.filter(orders::Column::Status.eq(status.as_str()));
        }
        let total = select
            .clone()
            .count(&self.db.reader)
            .await
            .map_err(db_err)?;
        let ord = order(query.sort.direction);
        let column = match query.sort.field {
            OrderSortField::CreatedAt => orders::Column::CreatedAt,
            OrderSortField::Total => orders::Column::TotalCents,
        };
        let models = select
            .order_by(column, ord.clone())
            .order_by(orders::Column::Id, ord)
            .offset(query.page.offset())
            .limit(query.page.limit)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?;
        let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
        let mut items = self.items_for(&ids).await?;
        let orders = models
            .into_iter()
            .map(|m| {
                let its = items.remove(&m.id).unwrap_or_default();
                order_from_model(&m, its)
            })
            .collect::<AppResult<Vec<_>>>()?;
        Ok(Page {
            items: orders,
            page: query.page.page,
            limit: query.page.limit,
            total,
        })
    }

    async fn set_status(
        &self,
        tx: &mut dyn Tx,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let result = write(
            tx,
            &orders::Entity::update_many()
                .col_expr(orders::Column::Status, Expr::value(to.as_str()))
                .col_expr(orders::Column::UpdatedAt, Expr::value(now))
                .filter(orders::Column::Id.eq(id.as_uuid()))
                .filter(orders::Column::Status.eq(from.as_str())),
        )
        .await?;
        Ok(result == 1)
    }

    async fn insert_payment(&self, tx: &mut dyn Tx, payment: &Payment) -> AppResult<()> {
        write(
            tx,
            &payments::Entity::insert(payments::ActiveModel {
                id: Set(payment.id.into()),
                order_id: Set(payment.order_id.into()),
                gateway: Set(payment.gateway.clone()),
                reference: Set(payment.reference.clone()),
                amount_cents: Set(payment.amount.cents()),
                status: Set(payment.status.clone()),
                created_at: Set(payment.created_at),
            }),
        )
        .await?;
        Ok(())
    }

    async fn payments(&self, order_id: OrderId, limit: u64) -> AppResult<Vec<Payment>> {
        Ok(payments::Entity::find()
            .filter(payments::Column::OrderId.eq(order_id.as_uuid()))
            .order_by_asc(payments::Column::CreatedAt)
            .limit(limit)
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(payment_from_model)
            .collect())
    }

    async fn top_products(&self, limit: u64) -> AppResult<Vec<TopProduct>> {
        let sql = format!(
            "SELECT p.id AS product_id, p.name AS name, SUM(oi.quantity) AS total_sold \
             FROM products p \
             JOIN order_items oi ON oi.product_id = p.id \
             JOIN orders o ON o.id = oi.order_id \
             WHERE o.status IN ({}) \
             GROUP BY p.id, p.name \
             ORDER BY total_sold DESC, p.name ASC \
             LIMIT ",
            sold_statuses()
        );
        let limit = i64::try_from(limit).map_err(AppError::internal)?;
        let dialect = self.dialect();
        let sql = format!("{sql}{}", dialect.param(1));
        let rows = self
            .db
            .reader
            .query_all_raw(dialect.statement(sql, [limit.into()]))
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                Ok(TopProduct {
                    product_id: get_id(row, "product_id")?,
                    name: get(row, "name")?,
                    total_sold: get(row, "total_sold")?,
                })
            })
            .collect()
    }

    async fn daily_sales(&self, from: NaiveDate, to: NaiveDate) -> AppResult<Vec<DailySales>> {
        let start = from
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| corrupt("from"))?;
        let end = to
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .ok_or_else(|| corrupt("to"))?;
        let dialect = self.dialect();
        let day = dialect.utc_day("created_at");
        let (p1, p2) = (dialect.param(1), dialect.param(2));
        let sold = sold_statuses();
        let sql = format!(
            "SELECT {day} AS day, COUNT(*) AS orders, CAST(SUM(total_cents) AS BIGINT) AS revenue \
             FROM orders \
             WHERE status IN ({sold}) AND created_at >= {p1} AND created_at < {p2} \
             GROUP BY day ORDER BY day"
        );
        let rows = self
            .db
            .reader
            .query_all_raw(dialect.statement(sql, [start.into(), end.into()]))
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let day: String = get(row, "day")?;
                Ok(DailySales {
                    date: day.parse().map_err(|_| corrupt("day"))?,
                    orders: get(row, "orders")?,
                    revenue: Money::from_cents(get(row, "revenue")?),
                })
            })
            .collect()
    }
}

#[async_trait]
impl IdempotencyRepo for SqlStore {
    async fn claim(
        &self,
        user: UserId,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        abandon_after: Duration,
    ) -> AppResult<Claim> {
        use idempotency_keys::Column as K;
        let ttl = chrono::Duration::from_std(ttl).map_err(AppError::internal)?;
        let abandon_after =
            chrono::Duration::from_std(abandon_after).map_err(AppError::internal)?;
        // A few rounds at most: each lost race means another request changed the record.
        for _ in 0..4 {
            let inserted = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
                id: Set(Uuid::now_v7()),
                user_id: Set(user.as_uuid()),
                key: Set(key.to_owned()),
                request_hash: Set(request_hash.to_owned()),
                state: Set("in_flight".to_owned()),
                result: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict_do_nothing_on([K::UserId, K::Key])
            .exec_without_returning(&self.db.writer)
            .await
            .map_err(db_err)?;
            if matches!(inserted, TryInsertResult::Inserted(1)) {
                return Ok(Claim::Granted);
            }
            let Some(existing) = idempotency_keys::Entity::find()
                .filter(K::UserId.eq(user.as_uuid()))
                .filter(K::Key.eq(key))
                .unique(&self.db.writer)
                .await
                .map_err(db_err)?
            else {
                continue;
            };
            if existing.created_at + ttl <= now {
                idempotency_keys::Entity::delete_many()
                    .filter(K::Id.eq(existing.id))
                    .filter(K::UpdatedAt.eq(existing.updated_at))
                    .exec(&self.db.writer)
                    .await
                    .map_err(db_err)?;
                continue;
            }
            if existing.request_hash != request_hash {
                return Ok(Claim::Mismatch);
            }
            if existing.state == "done" {
                // A key answered before results were kept has none: refused as in flight
                // until it expires, so that a retry of it can never place a second order.
                let Some(result) = existing.result else {
                    return Ok(Claim::InFlight);
                };
                let stored: StoredOrder =
                    serde_json::from_str(&result).map_err(|_| corrupt("idempotency result"))?;
                return Ok(Claim::Done(Box::new(stored.into_order()?)));
            }
            if existing.updated_at + abandon_after > now {
                return Ok(Claim::InFlight);
            }
            let taken = idempotency_keys::Entity::update_many()
                .col_expr(K::UpdatedAt, Expr::value(now))
                .filter(K::Id.eq(existing.id))
                .filter(K::State.eq("in_flight"))
                .filter(K::UpdatedAt.eq(existing.updated_at))
                .exec(&self.db.writer)
                .await
                .map_err(db_err)?;
            if taken.rows_affected == 1 {
                return Ok(Claim::Granted);
            }
        }
        Ok(Claim::InFlight)
    }

    async fn complete(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        key: &str,
        result: &Order,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        use idempotency_keys::Column as K;
        let stored =
            serde_json::to_string(&StoredOrder::from(result)).map_err(AppError::internal)?;
        let update = idempotency_keys::Entity::update_many()
            .col_expr(K::State, Expr::value("done"))
            .col_expr(K::Result, Expr::value(stored))
            .col_expr(K::UpdatedAt, Expr::value(now))
            .filter(K::UserId.eq(user.as_uuid()))
            .filter(K::Key.eq(key))
            .filter(K::State.eq("in_flight"));
        if write(tx, &update).await? == 1 {
            Ok(())
        } else {
            // The claim was taken over as abandoned: this request must not also succeed.
            Err(AppError::Conflict(
                inkcart_app::error::ErrorCode::IdempotencyKeyInFlight,
                inkcart_app::error::messages::IDEMPOTENCY_IN_FLIGHT.to_owned(),
            ))
        }
    }

    async fn release(&self, user: UserId, key: &str) -> AppResult<()> {
        use idempotency_keys::Column as K;
        idempotency_keys::Entity::delete_many()
            .filter(K::UserId.eq(user.as_uuid()))
            .filter(K::Key.eq(key))
            .filter(K::State.eq("in_flight"))
            .exec(&self.db.writer)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed expectation is a failed test"
    )]

    use chrono::{TimeZone as _, Utc};
    use inkcart_domain::ProductId;

    use inkcart_domain::shop::{Money, Order, OrderItem, OrderStatus};
    use inkcart_domain::{OrderId, UserId};
    use sea_orm::sea_query::Expr;
    use uuid::Uuid;

    use super::{
        buyer_products_select, buyer_products_values, id_values, item_rows, items_insert, line_ids,
        order_insert, order_row, products_by_ids, stock_take_one, stock_take_one_values,
        stock_update, stock_values,
    };
    use crate::repo::{assert_kept_text_binds, row_values};

    fn order(lines: usize, cents: i64, status: OrderStatus) -> Order {
        let at =
            Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap() + chrono::Duration::seconds(cents);
        let items: Vec<OrderItem> = (1..=lines)
            .map(|n| OrderItem {
                product_id: ProductId::generate(),
                name: format!("product {n}"),
                quantity: i32::try_from(n).unwrap(),
                unit_price: Money::from_cents(cents),
                line_total: Money::from_cents(cents * i64::try_from(n).unwrap()),
            })
            .collect();
        Order {
            id: OrderId::generate(),
            user_id: UserId::generate(),
            status,
            subtotal: Money::from_cents(cents * 10),
            discount: Money::from_cents(cents),
            total: Money::from_cents(cents * 9),
            items,
            created_at: at,
            updated_at: at + chrono::Duration::seconds(1),
        }
    }

    #[test]
    fn an_order_written_after_the_first_binds_its_own_values_to_the_kept_statements() {
        assert_kept_text_binds(
            |order: &Order, dialect| dialect.build(&order_insert(order).unwrap()),
            |order| row_values([order_row(order)]),
            &order(1, 1_500, OrderStatus::Pending),
            &order(1, 2_750, OrderStatus::Paid),
        );
        // Every count whose text is kept (`OnceSqlPerCount<8>`), the lines' ids given.
        for n in 1..=8 {
            let (first, second) = (
                order(n, 1_500, OrderStatus::Pending),
                order(n, 2_750, OrderStatus::Pending),
            );
            let with_lines = |order: &Order| (order.clone(), line_ids(order));
            assert_kept_text_binds(
                |(order, lines): &(Order, Vec<uuid::Uuid>), dialect| {
                    dialect.build(&items_insert(order, lines, Expr::value).unwrap())
                },
                |(order, lines)| row_values(item_rows(order, lines)),
                &with_lines(&first),
                &with_lines(&second),
            );
        }
    }

    fn ids(n: usize) -> Vec<ProductId> {
        (0..n).map(|_| ProductId::generate()).collect()
    }

    #[test]
    fn an_orders_products_read_after_the_first_bind_their_own_ids_to_the_kept_statement() {
        // Every count whose text is kept (`OnceSqlPerCount<8>`).
        for n in 1..=8 {
            assert_kept_text_binds(
                |ids: &Vec<ProductId>, dialect| products_by_ids(ids, dialect),
                |ids| id_values(ids),
                &ids(n),
                &ids(n),
            );
        }
    }

    #[test]
    fn an_orders_buyer_and_products_read_after_the_first_binds_its_own_ids_to_the_kept_statement() {
        let buyer = || UserId::from_uuid(Uuid::now_v7());
        // Every count whose text is kept (`OnceSqlPerCount<8>`).
        for n in 1..=8 {
            assert_kept_text_binds(
                |(buyer, ids): &(UserId, Vec<ProductId>), dialect| {
                    buyer_products_select(*buyer, ids, dialect)
                },
                |(buyer, ids)| buyer_products_values(*buyer, ids),
                &(buyer(), ids(n)),
                &(buyer(), ids(n)),
            );
        }
    }

    #[test]
    fn a_stock_update_after_the_first_binds_its_own_lines_and_time_to_the_kept_statement() {
        let lines = |n: usize, quantity: i32| -> Vec<(ProductId, i32)> {
            ids(n).into_iter().map(|id| (id, quantity)).collect()
        };
        let first = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let second = Utc.with_ymd_and_hms(2026, 12, 5, 11, 30, 0).unwrap();
        // Every count whose text is kept (`OnceSqlPerCount<8>`).
        for n in 1..=8 {
            assert_kept_text_binds(
                |(lines, now): &(Vec<(ProductId, i32)>, _), dialect| {
                    dialect.build(&stock_update(lines, *now))
                },
                |(lines, now)| stock_values(lines, *now),
                &(lines(n, 1), first),
                &(lines(n, 7), second),
            );
        }
    }

    #[test]
    fn a_single_lines_stock_take_after_the_first_binds_its_own_product_quantity_and_time() {
        let first = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let second = Utc.with_ymd_and_hms(2026, 12, 5, 11, 30, 0).unwrap();
        let (a, b) = (ProductId::generate(), ProductId::generate());
        assert_kept_text_binds(
            |&(id, quantity, now): &(ProductId, i32, _), dialect| {
                dialect.build(&stock_take_one(id, quantity, now))
            },
            |&(id, quantity, now)| stock_take_one_values(id, quantity, now),
            &(a, 1, first),
            &(b, 7, second),
        );
    }
}
