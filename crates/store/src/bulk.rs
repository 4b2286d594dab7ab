//! Bulk loading: rows made elsewhere (the demo data of `inkcart seed-demo`) written straight to
//! the tables, a few hundred to a statement, each [`Batch`] in one transaction. No use case
//! runs: nothing is checked beyond the schema's constraints and no event is recorded. The kept
//! counts (published posts overall, per author and per tag; comments per post) stay exact, as
//! the database's triggers keep them on every insert.

use chrono::{DateTime, Utc};
use inkcart_domain::shop::{Money, OrderStatus};
use inkcart_domain::{CommentId, OrderId, PostId, ProductId, Role, Tier, UserId};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, TransactionTrait as _};
use uuid::Uuid;

use crate::Db;
use crate::dialect::Dialect;
use crate::entity::{comments, order_items, orders, post_tags, posts, products, tags, users};

/// How many rows go into one statement (12 values a post: 4,800, well under the bound
/// parameters either engine takes).
const ROWS_PER_STATEMENT: usize = 400;

/// An account.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub name: Option<String>,
    pub role: Role,
    pub tier: Tier,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A tag.
#[derive(Debug, Clone)]
pub struct TagRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A post (its comment count is kept by the database).
#[derive(Debug, Clone)]
pub struct PostRow {
    pub id: PostId,
    pub author_id: UserId,
    pub title: String,
    pub slug: String,
    pub content: String,
    pub content_html: String,
    pub excerpt: String,
    pub cover_image_key: Option<String>,
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A post's tag.
#[derive(Debug, Clone)]
pub struct PostTagRow {
    pub post_id: PostId,
    pub tag_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// A comment on a post.
#[derive(Debug, Clone)]
pub struct CommentRow {
    pub id: CommentId,
    pub post_id: PostId,
    pub author_id: UserId,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product.
#[derive(Debug, Clone)]
pub struct ProductRow {
    pub id: ProductId,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub stock: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An order, with its totals as priced.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A line of an order.
#[derive(Debug, Clone)]
pub struct OrderItemRow {
    pub id: Uuid,
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: i32,
    pub unit_price: Money,
    pub line_total: Money,
}

/// Rows written together, in one transaction. A row may refer to rows of the same batch
/// (a post to its author, a comment to its post, …) or of batches written before.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub users: Vec<UserRow>,
    pub tags: Vec<TagRow>,
    pub posts: Vec<PostRow>,
    pub post_tags: Vec<PostTagRow>,
    pub comments: Vec<CommentRow>,
    pub products: Vec<ProductRow>,
    pub orders: Vec<OrderRow>,
    pub order_items: Vec<OrderItemRow>,
}

/// Writes batches of rows to a database.
#[derive(Debug, Clone)]
pub struct BulkWriter {
    db: Db,
}

impl BulkWriter {
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
    }

    /// Writes every row of the batch in one transaction: the tables in the order their
    /// references need (accounts, tags, posts, their tags, comments, products, orders, their
    /// lines), each in multi-row inserts.
    pub async fn write(&self, batch: Batch) -> anyhow::Result<()> {
        let Batch {
            users,
            tags,
            posts,
            post_tags,
            comments,
            products,
            orders,
            order_items,
        } = batch;
        let tx = self.db.writer.begin().await?;
        insert(&tx, users.into_iter().map(user_model)).await?;
        insert(&tx, tags.into_iter().map(tag_model)).await?;
        insert(&tx, posts.into_iter().map(post_model)).await?;
        insert(&tx, post_tags.into_iter().map(post_tag_model)).await?;
        insert(&tx, comments.into_iter().map(comment_model)).await?;
        insert(&tx, products.into_iter().map(product_model)).await?;
        insert(&tx, orders.into_iter().map(order_model)).await?;
        insert(&tx, order_items.into_iter().map(order_item_model)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What the engine needs once a load is written (on PostgreSQL, fresh statistics for the
    /// planner; nothing on SQLite).
    pub async fn finish(&self) -> anyhow::Result<()> {
        let writer = &self.db.writer;
        if let Some(sql) = Dialect::of(writer).after_bulk_load() {
            writer.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// The rows in statements of [`ROWS_PER_STATEMENT`].
async fn insert<A, C>(conn: &C, rows: impl Iterator<Item = A>) -> anyhow::Result<()>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    let mut rows = rows.peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

fn user_model(r: UserRow) -> users::ActiveModel {
    users::ActiveModel {
        id: Set(r.id.as_uuid()),
        email: Set(r.email),
        password_hash: Set(r.password_hash),
        name: Set(r.name),
        role: Set(r.role.as_str().to_owned()),
        tier: Set(r.tier.as_str().to_owned()),
        email_verified: Set(r.email_verified),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

fn tag_model(r: TagRow) -> tags::ActiveModel {
    tags::ActiveModel {
        id: Set(r.id),
        name: Set(r.name),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

fn post_model(r: PostRow) -> posts::ActiveModel {
    posts::ActiveModel {
        id: Set(r.id.as_uuid()),
        author_id: Set(r.author_id.as_uuid()),
        title: Set(r.title),
        slug: Set(r.slug),
        content: Set(r.content),
        content_html: Set(r.content_html),
        excerpt: Set(r.excerpt),
        cover_image_key: Set(r.cover_image_key),
        published: Set(r.published),
        published_at: Set(r.published_at),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
        // Kept by the database's triggers.
        comment_count: NotSet,
    }
}

fn post_tag_model(r: PostTagRow) -> post_tags::ActiveModel {
    post_tags::ActiveModel {
        post_id: Set(r.post_id.as_uuid()),
        tag_id: Set(r.tag_id),
        created_at: Set(r.created_at),
    }
}

fn comment_model(r: CommentRow) -> comments::ActiveModel {
    comments::ActiveModel {
        id: Set(r.id.as_uuid()),
        post_id: Set(r.post_id.as_uuid()),
        author_id: Set(r.author_id.as_uuid()),
        content: Set(r.content),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

fn product_model(r: ProductRow) -> products::ActiveModel {
    products::ActiveModel {
        id: Set(r.id.as_uuid()),
        name: Set(r.name),
        description: Set(r.description),
        price_cents: Set(r.price.cents()),
        stock: Set(r.stock),
        active: Set(r.active),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

fn order_model(r: OrderRow) -> orders::ActiveModel {
    orders::ActiveModel {
        id: Set(r.id.as_uuid()),
        user_id: Set(r.user_id.as_uuid()),
        status: Set(r.status.as_str().to_owned()),
        subtotal_cents: Set(r.subtotal.cents()),
        discount_cents: Set(r.discount.cents()),
        total_cents: Set(r.total.cents()),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    }
}

fn order_item_model(r: OrderItemRow) -> order_items::ActiveModel {
    order_items::ActiveModel {
        id: Set(r.id),
        order_id: Set(r.order_id.as_uuid()),
        product_id: Set(r.product_id.as_uuid()),
        quantity: Set(r.quantity),
        unit_price_cents: Set(r.unit_price.cents()),
        line_total_cents: Set(r.line_total.cents()),
    }
}
