//! The traits through which use cases reach the outside world. Implementations live in the
//! store (database), the adapters crate (hashing, tokens, mail, Redis…) and in this crate when
//! they are pure (clock, in-memory throttle).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use inkcart_domain::blog::{Post, TagName};
use inkcart_domain::ids::SessionFamilyId;
use inkcart_domain::shop::{Money, Order, OrderStatus, Product};
use inkcart_domain::{
    CommentId, Email, EmailTokenId, EventId, JobId, OrderId, Password, PaymentId, PostId,
    ProductId, RefreshTokenId, Role, Tier, User, UserId,
};
use uuid::Uuid;

use crate::AppResult;
use crate::page::{Page, PageRequest, Sort};

/// An open database transaction. Dropping it without `commit` rolls it back.
///
/// Repositories take `&mut dyn Tx` for every write, so that a use case decides which writes
/// belong together; the store recognises its own transaction type through [`Tx::as_any`].
#[async_trait]
pub trait Tx: Send {
    fn as_any(&mut self) -> &mut (dyn Any + Send);
    async fn commit(self: Box<Self>) -> AppResult<()>;
}

/// The work of one transaction, given to [`Store::transact`]: statements on the transaction it
/// is handed, and nothing else that waits (no network, no timers, no locks), so that a store
/// may run it on a thread of its own.
pub type TxWork = Box<
    dyn for<'t> FnOnce(
            &'t mut dyn Tx,
        )
            -> Pin<Box<dyn Future<Output = AppResult<Box<dyn Any + Send>>> + Send + 't>>
        + Send,
>;

/// The database as a whole: transactions and readiness.
#[async_trait]
pub trait Store: Send + Sync {
    async fn begin(&self) -> AppResult<Box<dyn Tx>>;
    /// Runs `work` in a transaction and commits it when `work` succeeds; an error rolls back
    /// what `work` wrote and nothing else. The answer comes once the commit holding the work
    /// is done. A store may run transactions given here together: on SQLite, those waiting
    /// for the one writer run one after another, each in a savepoint, under one commit.
    async fn transact(&self, work: TxWork) -> AppResult<Box<dyn Any + Send>> {
        transact_after_begin(self, work).await
    }
    /// `Ok` when the database answers and every migration is applied; otherwise a short,
    /// non-sensitive reason (the detail goes to the log).
    async fn check_ready(&self) -> Result<(), String>;
}

/// [`Store::transact`] as any store can do it: [`Store::begin`], `work`, commit.
pub async fn transact_after_begin<S: Store + ?Sized>(
    store: &S,
    work: TxWork,
) -> AppResult<Box<dyn Any + Send>> {
    let mut tx = store.begin().await?;
    let out = work(tx.as_mut()).await?;
    tx.commit().await?;
    Ok(out)
}

/// [`Store::transact`] with a typed answer:
/// `transaction(store, move |tx| Box::pin(async move { … })).await`.
pub async fn transaction<T, F>(store: &dyn Store, work: F) -> AppResult<T>
where
    T: Send + 'static,
    F: for<'t> FnOnce(&'t mut dyn Tx) -> Pin<Box<dyn Future<Output = AppResult<T>> + Send + 't>>
        + Send
        + 'static,
{
    let out = store
        .transact(Box::new(move |tx| {
            let work = work(tx);
            Box::pin(async move { work.await.map(|out| Box::new(out) as Box<dyn Any + Send>) })
        }))
        .await?;
    out.downcast::<T>()
        .map(|out| *out)
        .map_err(|_| crate::AppError::internal("a transaction answered with another type"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSortField {
    CreatedAt,
    Email,
    Name,
}

#[derive(Debug, Clone)]
pub struct UserQuery {
    pub page: PageRequest,
    /// Case-insensitive substring of the name, or of the email too when `search_email`.
    pub search: Option<String>,
    /// Whether `search` also looks in emails (admins only: others may not probe addresses).
    pub search_email: bool,
    pub role: Option<Role>,
    pub sort: Sort<UserSortField>,
}

#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Inserts a new user; a taken email is `AppError::Conflict(ErrorCode::EmailTaken, "User already exists")`.
    async fn insert(&self, tx: &mut dyn Tx, user: &User, password_hash: &str) -> AppResult<()>;
    async fn find(&self, id: UserId) -> AppResult<Option<User>>;
    /// Several users at once (unknown ids are left out).
    async fn find_many(&self, ids: &[UserId]) -> AppResult<Vec<User>>;
    /// The user and their password hash, for login.
    async fn find_credentials(&self, email: &Email) -> AppResult<Option<(User, String)>>;
    /// The password hash of a user, to check a password they give again.
    async fn password_hash(&self, id: UserId) -> AppResult<Option<String>>;
    async fn list(&self, query: &UserQuery) -> AppResult<Page<User>>;
    /// Writes every field of `user` (and the password hash when given); `false` when the user
    /// no longer exists. A taken email is a conflict as for `insert`.
    async fn update(
        &self,
        tx: &mut dyn Tx,
        user: &User,
        password_hash: Option<&str>,
    ) -> AppResult<bool>;
    /// Sets the password hash alone, if the user still has `email` (when given); `false` when
    /// the user has another address by now (or is gone).
    async fn set_password(
        &self,
        tx: &mut dyn Tx,
        id: UserId,
        password_hash: &str,
        email: Option<&str>,
        at: DateTime<Utc>,
    ) -> AppResult<bool>;
    /// Deletes the user and, by cascade, what only they owned; `false` when absent.
    async fn delete(&self, tx: &mut dyn Tx, id: UserId) -> AppResult<bool>;
}

/// A refresh token as stored: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSession {
    pub id: RefreshTokenId,
    pub user_id: UserId,
    pub family_id: SessionFamilyId,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait SessionRepo: Send + Sync {
    async fn insert(&self, tx: &mut dyn Tx, session: &RefreshSession) -> AppResult<()>;
    async fn find_by_hash(&self, token_hash: &str) -> AppResult<Option<RefreshSession>>;
    /// Marks the token spent, only if it is neither spent nor revoked; `false` when another
    /// request got there first (which is then a reuse).
    async fn mark_used(
        &self,
        tx: &mut dyn Tx,
        id: RefreshTokenId,
        at: DateTime<Utc>,
    ) -> AppResult<bool>;
    async fn revoke(&self, tx: &mut dyn Tx, id: RefreshTokenId, at: DateTime<Utc>)
    -> AppResult<()>;
    async fn revoke_family(
        &self,
        tx: &mut dyn Tx,
        family: SessionFamilyId,
        at: DateTime<Utc>,
    ) -> AppResult<u64>;
    async fn revoke_all_for_user(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        at: DateTime<Utc>,
    ) -> AppResult<u64>;
}

#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// Hashes off the async threads (the work is deliberately slow).
    async fn hash(&self, password: &Password) -> AppResult<String>;
    /// Verifies off the async threads; a malformed stored hash is an internal error.
    async fn verify(&self, password: &str, hash: &str) -> AppResult<bool>;
    /// Spends the time of one verification without a user, so that a login for an unknown
    /// email takes as long as one with a wrong password.
    async fn verify_dummy(&self, password: &str) -> AppResult<()>;
}

/// The claims an access token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub expires_in: Duration,
}

pub trait TokenIssuer: Send + Sync {
    fn issue(&self, user: &User, now: DateTime<Utc>, ttl: Duration) -> AppResult<AccessToken>;
    /// `None` for a token that is malformed, forged or expired.
    fn verify(&self, token: &str) -> Option<Claims>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock, truncated to microseconds (what both databases store).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_micros(Utc::now())
    }
}

pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Counts password attempts per key (client address and email for logins) in a sliding
/// window. An attempt is reserved before the password is checked, atomically with the check of
/// the count, so that concurrent attempts cannot all pass the check before any is counted.
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Counts an attempt made at `now`; `Err(retry_after_secs)`, counting nothing, while the key
    /// has used up its attempts.
    async fn reserve(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64>;
    /// Gives back the attempt reserved at `at` when the password could not be checked at all
    /// (the database or the hasher failed): it was no guess.
    async fn release(&self, key: &str, at: DateTime<Utc>);
    /// Forgets every attempt of `key` (the right password was given).
    async fn clear(&self, key: &str);
}

// ---- shop ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductSortField {
    CreatedAt,
    Price,
    Name,
}

#[derive(Debug, Clone)]
pub struct ProductQuery {
    pub page: PageRequest,
    /// Case-insensitive part of the name or description.
    pub search: Option<String>,
    pub min_price: Option<Money>,
    pub max_price: Option<Money>,
    /// `Some(true)`: only products with stock; `Some(false)`: only sold-out ones.
    pub in_stock: Option<bool>,
    pub sort: Sort<ProductSortField>,
}

/// What deleting a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Orders reference it: it was deactivated instead.
    Deactivated,
}

#[async_trait]
pub trait ProductRepo: Send + Sync {
    async fn insert(&self, tx: &mut dyn Tx, product: &Product) -> AppResult<()>;
    async fn find(&self, id: ProductId) -> AppResult<Option<Product>>;
    async fn find_many(&self, ids: &[ProductId]) -> AppResult<Vec<Product>>;
    /// Active products matching the query.
    async fn list(&self, query: &ProductQuery) -> AppResult<Page<Product>>;
    /// Writes every field; `false` when the product no longer exists.
    async fn update(&self, tx: &mut dyn Tx, product: &Product) -> AppResult<bool>;
    /// Deletes the product, or deactivates it when orders reference it; `None` when absent.
    async fn remove(
        &self,
        tx: &mut dyn Tx,
        id: ProductId,
        now: DateTime<Utc>,
    ) -> AppResult<Option<Removal>>;
    /// Takes each line's quantity from its product's stock, in one conditional update, where the
    /// product is active and has that much. `None`: every line was taken. `Some(id)`: the first
    /// line (in the order given) whose product is short, inactive or missing; other lines may have
    /// been taken, so the caller rolls the transaction back. Products appear once in `lines`.
    async fn reserve_stock(
        &self,
        tx: &mut dyn Tx,
        lines: &[(ProductId, i32)],
        now: DateTime<Utc>,
    ) -> AppResult<Option<ProductId>>;
    async fn release_stock(
        &self,
        tx: &mut dyn Tx,
        id: ProductId,
        quantity: i32,
        now: DateTime<Utc>,
    ) -> AppResult<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSortField {
    CreatedAt,
    Total,
}

#[derive(Debug, Clone)]
pub struct OrderQuery {
    pub page: PageRequest,
    /// Only this buyer's orders (`None`: everyone's, for admins).
    pub user_id: Option<UserId>,
    pub status: Option<OrderStatus>,
    pub sort: Sort<OrderSortField>,
}

/// A payment taken for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub gateway: String,
    pub reference: String,
    pub amount: Money,
    /// `succeeded`, or `refunded` when the order could not be paid after all.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopProduct {
    pub product_id: ProductId,
    pub name: String,
    pub total_sold: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailySales {
    pub date: NaiveDate,
    pub orders: i64,
    pub revenue: Money,
}

/// Makes an order of what [`OrderRepo::place`] read for it: the buyer's tier as stored
/// (`None` when the buyer has no account) and the order's products. Prices it under the
/// order's rules, and makes the outbox event that records it. Called once; it only computes.
pub type PriceOrder =
    Box<dyn FnOnce(Option<Tier>, &[Product]) -> AppResult<(Order, OutboxEvent)> + Send>;

#[async_trait]
pub trait OrderRepo: Send + Sync {
    /// Inserts the order and its items.
    async fn insert(&self, tx: &mut dyn Tx, order: &Order) -> AppResult<()>;
    /// Places an order by `buyer` of the products `ids`, all or nothing, and answers it: reads
    /// the buyer's tier and those products (as [`ProductRepo::find_many`]), has `price` make the
    /// order and its event of them, takes each line's quantity from its product's stock (the rule of
    /// [`ProductRepo::reserve_stock`]), inserts the order with its lines, records the event in
    /// the outbox and, with `key`, completes the buyer's claim of that idempotency key with
    /// the order ([`IdempotencyRepo::complete`]). An error of `price` is answered as it is, a
    /// line that cannot be taken fails with 409 `InsufficientStock` naming the first such
    /// line's product, a claim taken over fails as `complete` does; whichever it is, nothing
    /// is written. `now` stamps the products.
    ///
    /// The buyer and the products are read inside the transaction that places the order or
    /// just before it; either way the stock taken is the transaction's own, and a buyer whose
    /// account goes in between fails the order's foreign key (an error, nothing written).
    async fn place(
        &self,
        buyer: UserId,
        ids: &[ProductId],
        price: PriceOrder,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> AppResult<Order>;
    /// The order with its items and their product names, in one query.
    async fn find(&self, id: OrderId) -> AppResult<Option<Order>>;
    async fn list(&self, query: &OrderQuery) -> AppResult<Page<Order>>;
    /// Moves the order from `from` to `to` only if it is still `from`; `false` otherwise.
    async fn set_status(
        &self,
        tx: &mut dyn Tx,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: DateTime<Utc>,
    ) -> AppResult<bool>;
    async fn insert_payment(&self, tx: &mut dyn Tx, payment: &Payment) -> AppResult<()>;
    /// An order's first `limit` payments, oldest first.
    async fn payments(&self, order_id: OrderId, limit: u64) -> AppResult<Vec<Payment>>;
    /// Best sellers over paid, shipped and delivered orders.
    async fn top_products(&self, limit: u64) -> AppResult<Vec<TopProduct>>;
    /// Paid, shipped and delivered orders per UTC day of creation, `from..=to`.
    async fn daily_sales(&self, from: NaiveDate, to: NaiveDate) -> AppResult<Vec<DailySales>>;
}

/// What is known about an idempotency key when a request claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its record expired, or its first request was abandoned): go ahead.
    Granted,
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    /// The first request finished: answer with the order it answered with, as it was then.
    Done(Box<Order>),
}

#[async_trait]
pub trait IdempotencyRepo: Send + Sync {
    /// Claims `(user, key)` for a request with `request_hash`. A record older than `ttl` is
    /// treated as absent, and an in-flight claim older than `abandon_after` is taken over.
    async fn claim(
        &self,
        user: UserId,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        abandon_after: Duration,
    ) -> AppResult<Claim>;
    /// Stores the result (the order as it stands after the work), in the transaction of the
    /// work it describes.
    async fn complete(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        key: &str,
        result: &Order,
        now: DateTime<Utc>,
    ) -> AppResult<()>;
    /// Gives the key up after a failed request, so that it can be retried.
    async fn release(&self, user: UserId, key: &str) -> AppResult<()>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub order_id: OrderId,
    pub amount: Money,
    pub currency: &'static str,
    /// A card token from the client, when the gateway needs one.
    pub payment_token: Option<String>,
    /// Lets the gateway recognise a retried charge.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved { reference: String },
    Declined { reason: String },
}

#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// The gateway's name, recorded with each payment.
    fn name(&self) -> &'static str;
    async fn charge(&self, request: &ChargeRequest) -> AppResult<ChargeOutcome>;
    async fn refund(&self, reference: &str, amount: Money) -> AppResult<()>;
}

// ---- blog ----

/// The author of a post or comment, as lists show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorRef {
    pub id: UserId,
    pub name: Option<String>,
}

/// A post with its author and tag names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostDetail {
    pub post: Post,
    pub author: AuthorRef,
    pub tags: Vec<String>,
    /// Its comments, as kept by the store when the post was read.
    pub comment_count: i64,
}

/// A post as lists show it: no content, with author, tags and comment count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostSummary {
    pub id: PostId,
    pub title: String,
    pub slug: String,
    pub excerpt: String,
    pub cover_image_key: Option<String>,
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub author: AuthorRef,
    pub tags: Vec<String>,
    pub comment_count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostSortField {
    CreatedAt,
    Title,
}

/// Where a keyset page starts: after the post with this sort value and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostCursorValue {
    CreatedAt(DateTime<Utc>),
    Title(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostCursor {
    pub value: PostCursorValue,
    pub id: PostId,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostPaging {
    Offset(PageRequest),
    /// Keyset paging: `after` is `None` for the first page.
    Keyset {
        after: Option<PostCursor>,
        limit: u64,
    },
}

/// Which published posts to list (also the key of the cached pages).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PostQuery {
    pub paging: PostPaging,
    pub tag: Option<String>,
    pub author: Option<UserId>,
    pub sort: Sort<PostSortField>,
    /// Full-text terms (already normalized), for a ranked search; offset paging only.
    pub search: Option<Vec<String>>,
}

/// A page of summaries: `total` with offset paging; `has_more` tells whether posts follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostPage {
    pub items: Vec<PostSummary>,
    pub total: Option<u64>,
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: CommentId,
    pub post_id: PostId,
    pub author_id: UserId,
    pub content: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentView {
    pub comment: Comment,
    pub author: AuthorRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PostKey {
    Id(PostId),
    Slug(String),
}

#[async_trait]
pub trait PostRepo: Send + Sync {
    /// Inserts a post and links its tags (creating new tags); a taken slug is
    /// `Conflict("Slug already exists")`.
    async fn insert(&self, tx: &mut dyn Tx, post: &Post, tags: &[TagName]) -> AppResult<()>;
    /// Writes every field; replaces the tags when given. `false` when the post is gone.
    async fn update(
        &self,
        tx: &mut dyn Tx,
        post: &Post,
        tags: Option<&[TagName]>,
    ) -> AppResult<bool>;
    /// Deletes the post with its comments and tag links.
    async fn delete(&self, tx: &mut dyn Tx, id: PostId) -> AppResult<bool>;
    async fn find(&self, key: &PostKey) -> AppResult<Option<PostDetail>>;
    /// The posts any of `keys` names, each once and in no particular order, with author and
    /// tags, in a fixed number of queries; keys that name no post are left out.
    async fn find_many(&self, keys: &[PostKey]) -> AppResult<Vec<PostDetail>>;
    /// Slugs equal to `base` or of the form `base-<n>`.
    async fn slugs_like(&self, base: &str) -> AppResult<Vec<String>>;
    /// Published posts, with author, tags and comment counts in a fixed number of queries.
    async fn list(&self, query: &PostQuery) -> AppResult<PostPage>;
    /// The author's latest published posts.
    async fn published_by(&self, author: UserId, limit: u64) -> AppResult<Vec<PostSummary>>;
    /// The same page of each author's published posts, newest first, in a fixed number of
    /// queries: a page per author, never every post of every author.
    async fn published_by_authors(
        &self,
        authors: &[UserId],
        page: PageRequest,
    ) -> AppResult<Vec<PostSummary>>;
    /// Content and rendered HTML of several posts.
    async fn contents(&self, ids: &[PostId]) -> AppResult<HashMap<PostId, (String, String)>>;
    /// The same page of each post's comments, oldest first, in one query.
    async fn comments_for(
        &self,
        post_ids: &[PostId],
        page: PageRequest,
    ) -> AppResult<Vec<CommentView>>;
    /// A page of the tags of published posts with their number of published posts, most
    /// used first (then by name).
    async fn tags(&self, page: PageRequest) -> AppResult<Vec<(String, i64)>>;
    async fn insert_comment(&self, tx: &mut dyn Tx, comment: &Comment) -> AppResult<()>;
    async fn find_comment(&self, id: CommentId) -> AppResult<Option<Comment>>;
    async fn delete_comment(&self, tx: &mut dyn Tx, id: CommentId) -> AppResult<bool>;
    /// A post's comments, oldest first, after `(created_at, id)` when given.
    async fn comments(
        &self,
        post_id: PostId,
        after: Option<(DateTime<Utc>, CommentId)>,
        limit: u64,
    ) -> AppResult<Vec<CommentView>>;
}

/// Where uploaded files live: a local directory or an S3-compatible bucket.
#[async_trait]
pub trait ObjectStorage: Send + Sync {
    async fn put(&self, key: &str, bytes: bytes::Bytes, content_type: &str) -> AppResult<()>;
    /// The object's bytes, or `None` when there is no such key.
    async fn get(&self, key: &str) -> AppResult<Option<bytes::Bytes>>;
    /// The URL clients fetch the object from.
    fn public_url(&self, key: &str) -> String;
    /// Stores a report (not public) under `reports/<name>`.
    async fn put_report(
        &self,
        name: &str,
        bytes: bytes::Bytes,
        content_type: &str,
    ) -> AppResult<()>;
}

// ---- background work ----

/// An event as stored in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub id: EventId,
    /// `UserRegistered`, `OrderCreated`, …
    pub kind: String,
    /// The aggregate the event is about (user, order, comment).
    pub subject_id: Uuid,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// When the relay turned it into its jobs; set as it is recorded when it causes none
    /// (`Event::jobs`), so that the relay never reads it.
    pub dispatched_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Records an event in the transaction of the change it describes.
    async fn record(&self, tx: &mut dyn Tx, event: &OutboxEvent) -> AppResult<()>;
    /// Events not yet turned into jobs, oldest first.
    async fn undispatched(&self, limit: u64) -> AppResult<Vec<OutboxEvent>>;
    async fn mark_dispatched(
        &self,
        tx: &mut dyn Tx,
        ids: &[EventId],
        at: DateTime<Utc>,
    ) -> AppResult<()>;
    /// Events not yet published to the broker, oldest first.
    async fn unpublished(&self, limit: u64) -> AppResult<Vec<OutboxEvent>>;
    async fn mark_published(&self, ids: &[EventId], at: DateTime<Utc>) -> AppResult<()>;
    /// How many events of `kind` about `subject` were recorded since `since`.
    async fn count_since(&self, kind: &str, subject: Uuid, since: DateTime<Utc>) -> AppResult<u64>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    /// The last attempt failed; another follows at `run_at`.
    Failed,
    /// Every attempt failed; kept with its last error until an admin retries it.
    Dead,
}

impl JobState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Done,
            Self::Failed,
            Self::Dead,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// What a job does. Stored as its name (`welcome_email`, …); a stored name this build does not
/// know (written by a newer version) fails that job rather than the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    WelcomeEmail,
    VerificationEmail,
    PasswordResetEmail,
    EmailChangedNotice,
    OrderConfirmationEmail,
    OrderShippedEmail,
    DailySalesReport,
    Purge,
}

impl JobKind {
    pub const ALL: &'static [Self] = &[
        Self::WelcomeEmail,
        Self::VerificationEmail,
        Self::PasswordResetEmail,
        Self::EmailChangedNotice,
        Self::OrderConfirmationEmail,
        Self::OrderShippedEmail,
        Self::DailySalesReport,
        Self::Purge,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WelcomeEmail => "welcome_email",
            Self::VerificationEmail => "verification_email",
            Self::PasswordResetEmail => "password_reset_email",
            Self::EmailChangedNotice => "email_changed_notice",
            Self::OrderConfirmationEmail => "order_confirmation_email",
            Self::OrderShippedEmail => "order_shipped_email",
            Self::DailySalesReport => "daily_sales_report",
            Self::Purge => "purge",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|kind| kind.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: serde_json::Value,
    /// Unique: a second job with the same key is not enqueued.
    pub effect_key: String,
    pub run_at: DateTime<Utc>,
    pub max_attempts: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub effect_key: String,
    pub state: JobState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub refresh_tokens: u64,
    pub idempotency_keys: u64,
    pub email_tokens: u64,
    pub jobs: u64,
    pub events: u64,
}

/// The durable job queue on the database.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues in the caller's transaction; `false` when a job with this effect key exists.
    async fn enqueue(&self, tx: &mut dyn Tx, job: &NewJob, now: DateTime<Utc>) -> AppResult<bool>;
    /// Enqueues several jobs in the caller's transaction, skipping those whose effect key
    /// exists; how many were new. A queue may write them in one statement (the relay's batch
    /// then holds the writer for one insert, not one per job).
    async fn enqueue_many(
        &self,
        tx: &mut dyn Tx,
        jobs: &[NewJob],
        now: DateTime<Utc>,
    ) -> AppResult<u64> {
        let mut added = 0;
        for job in jobs {
            if self.enqueue(tx, job, now).await? {
                added += 1;
            }
        }
        Ok(added)
    }
    /// Takes up to `limit` due jobs (and jobs whose worker's lease ran out) for `worker`,
    /// counting an attempt each. No job is handed to two workers while its lease lasts.
    async fn claim(
        &self,
        worker: &str,
        limit: u64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<Job>>;
    /// Extends the lease of jobs still running on `worker`.
    async fn extend(&self, ids: &[JobId], worker: &str, until: DateTime<Utc>) -> AppResult<()>;
    /// Marks a job done (if `worker` still holds it).
    async fn finish(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()>;
    /// Records a failed attempt: retried at `retry_at`, or dead when `None`.
    async fn fail(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> AppResult<()>;
    /// Hands a job back unfinished (shutdown): queued again, the attempt not counted.
    async fn release(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()>;
    async fn list(&self, state: Option<JobState>, page: PageRequest) -> AppResult<Page<Job>>;
    async fn find(&self, id: JobId) -> AppResult<Option<Job>>;
    /// A failed or dead job queued again with fresh attempts; `false` for other states.
    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> AppResult<bool>;
    /// Whether the effect with this key was done already.
    async fn effect_done(&self, key: &str) -> AppResult<bool>;
    /// Records an effect as done; `false` when it already was.
    async fn record_effect(
        &self,
        key: &str,
        job: Option<JobId>,
        now: DateTime<Utc>,
    ) -> AppResult<bool>;
    /// Claims one run of a schedule; `false` when another instance has it.
    async fn claim_schedule(
        &self,
        name: &str,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> AppResult<bool>;
    /// Deletes what has expired as of `now`.
    async fn purge(&self, now: DateTime<Utc>) -> AppResult<Purged>;
}

/// The expiring records the database keeps (tokens, idempotency records, finished jobs,
/// dispatched events), purged apart from any job queue: a queue kept outside the database purges
/// its own jobs and these through this port.
#[async_trait]
pub trait ExpiredRecords: Send + Sync {
    /// Deletes what has expired in the database as of `now`.
    async fn purge_expired(&self, now: DateTime<Utc>) -> AppResult<Purged>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// A single-use token sent by email; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailToken {
    pub id: EmailTokenId,
    pub user_id: UserId,
    /// The address the token was sent to: it proves nothing about another (`None` for tokens
    /// issued before addresses were recorded).
    pub email: Option<String>,
    pub purpose: TokenPurpose,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait EmailTokenRepo: Send + Sync {
    async fn insert(&self, tx: &mut dyn Tx, token: &EmailToken) -> AppResult<()>;
    async fn find_by_hash(&self, hash: &str) -> AppResult<Option<EmailToken>>;
    /// Spends the token, only if unspent; `false` when it was spent already.
    async fn consume(
        &self,
        tx: &mut dyn Tx,
        id: EmailTokenId,
        at: DateTime<Utc>,
    ) -> AppResult<bool>;
    /// Marks the user's email verified, if it is still `email` (when given); `false` when the
    /// user has another address by now (or is gone).
    async fn mark_verified(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        email: Option<&str>,
        at: DateTime<Utc>,
    ) -> AppResult<bool>;
    /// Spends every unspent token of `purpose` the user holds (after a password change, the
    /// reset links on their way are void).
    async fn consume_all(
        &self,
        tx: &mut dyn Tx,
        user: UserId,
        purpose: TokenPurpose,
        at: DateTime<Utc>,
    ) -> AppResult<u64>;
}

/// An email, with its plain-text and HTML bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> AppResult<()>;
}

/// A message broker that other services subscribe to.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, event: &OutboxEvent) -> AppResult<()>;
}

// ---- rate limits ----

/// A budget of requests: `limit` at once, given back evenly over `period` (a full budget
/// again `period` after it was spent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
}

/// What one request spends from one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Names the budget (`ip:203.0.113.7`, `login:ip:203.0.113.7`, `user:<id>`).
    pub key: String,
    pub quota: Quota,
    pub cost: u32,
}

/// What a limiter decided, told by the tightest budget: the one with the least left when every
/// charge fits, otherwise the one that refused for longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until that budget is whole again.
    pub reset_after: Duration,
    /// Until the refused request would fit (zero when allowed).
    pub retry_after: Duration,
}

/// Request budgets, in this process or shared by every instance.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends every charge, or none of them when one would go over its quota. A limiter whose
    /// shared store cannot be reached decides with its own (local) budgets rather than failing.
    async fn charge(&self, charges: &[Charge], now: DateTime<Utc>) -> Verdict;
}

#[cfg(test)]
mod tests {
    use super::JobKind;

    #[test]
    fn job_kinds_keep_the_names_queued_jobs_were_stored_under() {
        // Jobs wait in the queue across upgrades under these names: a renamed kind would strand
        // them. New kinds are added; these never change.
        let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "welcome_email",
                "verification_email",
                "password_reset_email",
                "email_changed_notice",
                "order_confirmation_email",
                "order_shipped_email",
                "daily_sales_report",
                "purge",
            ]
        );
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(JobKind::parse("Welcome_Email"), None);
    }
}
