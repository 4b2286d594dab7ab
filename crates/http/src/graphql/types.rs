//! The GraphQL types and root resolvers. Every resolver calls a use case of `inkcart-app`; the
//! rules (who may see or change what) live there, as for REST.

use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use inkcart_app::blog::{PostInput, post_key, search_terms};
use inkcart_app::identity::{SignUp, UserChanges};
use inkcart_app::page::{Direction, Page, PageRequest, Sort};
use inkcart_app::ports::{
    CommentView, OrderQuery, OrderSortField, PostPaging, PostQuery, PostSortField, PostSummary,
    ProductQuery, ProductSortField, UserQuery, UserSortField,
};
use inkcart_app::shop::{LineInput, Outcome};
use inkcart_domain::shop::{Order, Product};
use inkcart_domain::{User, UserId};
use uuid::Uuid;

use super::loaders::{CommentAuthors, CommentsByPost, PostContents, PostsByAuthor, Users};
use super::{Caller, Loader, gql_error};
use crate::AppState;

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

fn caller(ctx: &Context<'_>) -> Caller {
    *ctx.data_unchecked::<Caller>()
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_id(id: &ID) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|_| gql_error(inkcart_app::AppError::field("id", "Invalid id")))
}

fn dedup<T: Ord + Copy>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Loads, up front and in one statement each, what the query asks of a list of posts (authors,
/// content, comments and their authors) into the loaders' caches. Batching left to the
/// loaders' timers would depend on timing; this does not, so a list costs a fixed number of
/// statements whatever its length.
async fn prefetch(ctx: &Context<'_>, posts: &[PostSummary]) -> Result<()> {
    let look = ctx.look_ahead();
    let app = &state(ctx).app;
    let ids: Vec<Uuid> = posts.iter().map(|p| p.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    if look.field("author").exists() {
        let authors = dedup(posts.iter().map(|p| p.author.id));
        let users = app.users_by_ids(&authors).await.map_err(gql_error)?;
        ctx.data_unchecked::<Loader<Users>>()
            .feed_many(users.into_iter().map(|u| (u.id, u)))
            .await;
    }
    if look.field("content").exists() || look.field("contentHtml").exists() {
        let contents = app.post_contents(&ids).await.map_err(gql_error)?;
        ctx.data_unchecked::<Loader<PostContents>>()
            .feed_many(contents)
            .await;
    }
    let comments = look.field("comments");
    if comments.exists() {
        let all = app.comments_for_posts(&ids).await.map_err(gql_error)?;
        if comments.field("author").exists() {
            let authors = dedup(all.iter().map(|c| c.author.id));
            let users = app.users_by_ids(&authors).await.map_err(gql_error)?;
            ctx.data_unchecked::<Loader<CommentAuthors>>()
                .feed_many(users.into_iter().map(|u| (u.id, u)))
                .await;
        }
        let mut by_post: std::collections::HashMap<Uuid, Vec<CommentView>> =
            ids.iter().map(|id| (*id, Vec::new())).collect();
        for comment in all {
            by_post
                .entry(comment.comment.post_id)
                .or_default()
                .push(comment);
        }
        ctx.data_unchecked::<Loader<CommentsByPost>>()
            .feed_many(by_post)
            .await;
    }
    Ok(())
}

fn page(page: Option<u64>, limit: Option<u64>) -> Result<PageRequest> {
    PageRequest::new(page, limit).map_err(gql_error)
}

/// A registered user.
pub struct UserObject(User);

impl UserObject {
    /// Whether the caller may see this account's private fields.
    fn private(&self, ctx: &Context<'_>) -> bool {
        caller(ctx).0.is_some_and(|a| a.may_see_private(self.0.id))
    }
}

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The account's owner and admins only (`null` for others), as in REST.
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        self.private(ctx).then(|| self.0.email.as_str())
    }

    async fn name(&self) -> Option<&str> {
        self.0.name.as_ref().map(inkcart_domain::UserName::as_str)
    }

    /// The account's owner and admins only (`null` for others).
    async fn role(&self, ctx: &Context<'_>) -> Option<&str> {
        self.private(ctx).then(|| self.0.role.as_str())
    }

    /// Their published posts, newest first.
    async fn posts(&self, ctx: &Context<'_>) -> Result<Vec<PostObject>> {
        let loader = ctx.data_unchecked::<Loader<PostsByAuthor>>();
        let posts = loader.load_one(self.0.id).await?.unwrap_or_default();
        Ok(posts.into_iter().map(PostObject).collect())
    }

    async fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
}

/// A published post (or a draft its caller may see).
pub struct PostObject(PostSummary);

#[Object(name = "Post")]
impl PostObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn title(&self) -> &str {
        &self.0.title
    }

    async fn slug(&self) -> &str {
        &self.0.slug
    }

    async fn excerpt(&self) -> &str {
        &self.0.excerpt
    }

    /// Markdown, as written.
    async fn content(&self, ctx: &Context<'_>) -> Result<String> {
        let loader = ctx.data_unchecked::<Loader<PostContents>>();
        Ok(loader
            .load_one(self.0.id)
            .await?
            .map(|(md, _)| md)
            .unwrap_or_default())
    }

    /// The content rendered and sanitized.
    async fn content_html(&self, ctx: &Context<'_>) -> Result<String> {
        let loader = ctx.data_unchecked::<Loader<PostContents>>();
        Ok(loader
            .load_one(self.0.id)
            .await?
            .map(|(_, html)| html)
            .unwrap_or_default())
    }

    async fn author(&self, ctx: &Context<'_>) -> Result<UserObject> {
        let loader = ctx.data_unchecked::<Loader<Users>>();
        loader
            .load_one(self.0.author.id)
            .await?
            .map(UserObject)
            .ok_or_else(|| gql_error(inkcart_app::AppError::not_found("User")))
    }

    async fn tags(&self) -> &[String] {
        &self.0.tags
    }

    async fn comment_count(&self) -> i64 {
        self.0.comment_count
    }

    /// Comments, oldest first.
    async fn comments(&self, ctx: &Context<'_>) -> Result<Vec<CommentObject>> {
        let loader = ctx.data_unchecked::<Loader<CommentsByPost>>();
        let comments = loader.load_one(self.0.id).await?.unwrap_or_default();
        Ok(comments.into_iter().map(CommentObject).collect())
    }

    async fn published_at(&self) -> Option<String> {
        self.0.published_at.map(timestamp)
    }

    async fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
}

pub struct CommentObject(CommentView);

#[Object(name = "Comment")]
impl CommentObject {
    async fn id(&self) -> ID {
        ID(self.0.comment.id.to_string())
    }

    async fn content(&self) -> &str {
        &self.0.comment.content
    }

    async fn author(&self, ctx: &Context<'_>) -> Result<UserObject> {
        let loader = ctx.data_unchecked::<Loader<CommentAuthors>>();
        loader
            .load_one(self.0.author.id)
            .await?
            .map(UserObject)
            .ok_or_else(|| gql_error(inkcart_app::AppError::not_found("User")))
    }

    async fn created_at(&self) -> String {
        timestamp(self.0.comment.created_at)
    }
}

#[derive(async_graphql::SimpleObject)]
#[graphql(name = "Tag")]
pub struct TagObject {
    name: String,
    post_count: i64,
}

pub struct ProductObject(Product);

#[Object(name = "Product")]
impl ProductObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// A decimal string with two places.
    async fn price(&self) -> String {
        self.0.price.to_string()
    }
    async fn stock(&self) -> i32 {
        self.0.stock
    }
    async fn active(&self) -> bool {
        self.0.active
    }
}

#[derive(async_graphql::SimpleObject)]
#[graphql(name = "OrderItem")]
pub struct OrderItemObject {
    product_id: ID,
    name: String,
    quantity: i32,
    unit_price: String,
    line_total: String,
}

pub struct OrderObject(Order);

#[Object(name = "Order")]
impl OrderObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> &str {
        self.0.status.as_str()
    }
    async fn items(&self) -> Vec<OrderItemObject> {
        self.0
            .items
            .iter()
            .map(|i| OrderItemObject {
                product_id: ID(i.product_id.to_string()),
                name: i.name.clone(),
                quantity: i.quantity,
                unit_price: i.unit_price.to_string(),
                line_total: i.line_total.to_string(),
            })
            .collect()
    }
    async fn subtotal(&self) -> String {
        self.0.subtotal.to_string()
    }
    async fn discount(&self) -> String {
        self.0.discount.to_string()
    }
    async fn total(&self) -> String {
        self.0.total.to_string()
    }
    async fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
}

#[derive(Debug)]
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// Users, newest first (signed-in callers).
    async fn users(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<UserObject>> {
        let actor = caller(ctx).require()?;
        let query = UserQuery {
            page: self::page(page, limit)?,
            search: None,
            search_email: false,
            role: None,
            sort: Sort {
                field: UserSortField::CreatedAt,
                direction: Direction::Desc,
            },
        };
        let users: Page<User> = state(ctx)
            .app
            .list_users(actor, &query)
            .await
            .map_err(gql_error)?;
        Ok(users.items.into_iter().map(UserObject).collect())
    }

    /// One user (signed-in callers).
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<UserObject>> {
        caller(ctx).require()?;
        let id = UserId::from_uuid(parse_id(&id)?);
        match state(ctx).app.get_user(id).await {
            Ok(user) => Ok(Some(UserObject(user))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// Published posts, newest first; with `search`, ranked full-text matches.
    async fn posts(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        tag: Option<String>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<PostObject>> {
        let query = PostQuery {
            paging: PostPaging::Offset(self::page(page, limit)?),
            tag: tag.map(|t| t.trim().to_lowercase()),
            author: None,
            sort: Sort {
                field: PostSortField::CreatedAt,
                direction: Direction::Desc,
            },
            search: search.as_deref().map(search_terms),
        };
        let posts = state(ctx).app.list_posts(&query).await.map_err(gql_error)?;
        prefetch(ctx, &posts.items).await?;
        Ok(posts.items.iter().cloned().map(PostObject).collect())
    }

    /// One post by id or slug (drafts for their author, editors and admins).
    async fn post(&self, ctx: &Context<'_>, id_or_slug: String) -> Result<Option<PostObject>> {
        match state(ctx)
            .app
            .get_post(caller(ctx).0, &post_key(&id_or_slug))
            .await
        {
            Ok(detail) => Ok(Some(PostObject(summary_of(detail.into_value())))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// Tags of published posts, most used first.
    async fn tags(&self, ctx: &Context<'_>) -> Result<Vec<TagObject>> {
        let tags = state(ctx).app.tags().await.map_err(gql_error)?;
        Ok(tags
            .into_iter()
            .map(|(name, post_count)| TagObject { name, post_count })
            .collect())
    }

    /// Active products, newest first.
    async fn products(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<ProductObject>> {
        let query = ProductQuery {
            page: self::page(page, limit)?,
            search,
            min_price: None,
            max_price: None,
            in_stock: None,
            sort: Sort {
                field: ProductSortField::CreatedAt,
                direction: Direction::Desc,
            },
        };
        let products = state(ctx)
            .app
            .list_products(&query)
            .await
            .map_err(gql_error)?;
        Ok(products.items.into_iter().map(ProductObject).collect())
    }

    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ProductObject>> {
        match state(ctx).app.get_product(parse_id(&id)?).await {
            Ok(p) => Ok(Some(ProductObject(p.into_value()))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// The caller's orders, newest first.
    async fn my_orders(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<OrderObject>> {
        let actor = caller(ctx).require()?;
        let query = OrderQuery {
            page: self::page(page, limit)?,
            user_id: Some(actor.id),
            status: None,
            sort: Sort {
                field: OrderSortField::CreatedAt,
                direction: Direction::Desc,
            },
        };
        let orders = state(ctx)
            .app
            .list_orders(actor, query)
            .await
            .map_err(gql_error)?;
        Ok(orders.items.into_iter().map(OrderObject).collect())
    }
}

fn summary_of(detail: inkcart_app::ports::PostDetail) -> PostSummary {
    let p = detail.post;
    PostSummary {
        id: p.id,
        title: p.title,
        slug: p.slug.as_str().to_owned(),
        excerpt: p.excerpt,
        cover_image_key: p.cover_image_key,
        published: p.published,
        published_at: p.published_at,
        created_at: p.created_at,
        updated_at: p.updated_at,
        author: detail.author,
        tags: detail.tags,
        comment_count: 0,
    }
}

#[derive(InputObject)]
pub struct OrderLineInput {
    product_id: ID,
    quantity: i64,
}

#[derive(Debug)]
pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Signs up (as `POST /api/v1/users`).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        name: Option<String>,
    ) -> Result<UserObject> {
        let user = state(ctx)
            .app
            .sign_up(SignUp {
                email,
                password,
                name,
            })
            .await
            .map_err(gql_error)?;
        Ok(UserObject(user))
    }

    /// Changes a user's name or email (self or admin). A new email needs the caller's
    /// `currentPassword` (an admin's own for another account); it is unverified until the
    /// link mailed to it is followed, and the previous address is told.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        email: Option<String>,
        current_password: Option<String>,
    ) -> Result<UserObject> {
        let actor = caller(ctx).require()?;
        let changes = UserChanges {
            email,
            name: name.map(Some),
            current_password,
            ..UserChanges::default()
        };
        let user = state(ctx)
            .app
            .update_user(actor, UserId::from_uuid(parse_id(&id)?), changes)
            .await
            .map_err(gql_error)?;
        Ok(UserObject(user))
    }

    /// Deletes a user (admins).
    async fn delete_user(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let actor = caller(ctx).require()?;
        state(ctx)
            .app
            .delete_user(actor, UserId::from_uuid(parse_id(&id)?))
            .await
            .map_err(gql_error)?;
        Ok(true)
    }

    /// Writes a post (editors and admins).
    async fn create_post(
        &self,
        ctx: &Context<'_>,
        title: String,
        content: String,
        published: Option<bool>,
        tags: Option<Vec<String>>,
    ) -> Result<PostObject> {
        let actor = caller(ctx).require()?;
        let detail = state(ctx)
            .app
            .create_post(
                actor,
                PostInput {
                    title: Some(title),
                    content: Some(content),
                    published,
                    tags,
                    ..PostInput::default()
                },
            )
            .await
            .map_err(gql_error)?;
        Ok(PostObject(summary_of(detail)))
    }

    /// Places an order, with the same rules as `POST /api/v1/orders`.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        items: Vec<OrderLineInput>,
    ) -> Result<OrderObject> {
        let actor = caller(ctx).require()?;
        let lines = items
            .iter()
            .map(|l| {
                Ok(LineInput {
                    product_id: parse_id(&l.product_id)?,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        match state(ctx)
            .app
            .create_order(actor, lines, None)
            .await
            .map_err(gql_error)?
        {
            Outcome::Fresh(order) => Ok(OrderObject(order)),
            Outcome::Replayed { .. } => Err(gql_error(inkcart_app::AppError::internal(
                "an order without an idempotency key was replayed",
            ))),
        }
    }
}
