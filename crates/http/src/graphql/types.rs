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
use inkcart_domain::shop::RequestedLine;
use inkcart_domain::shop::{Order, Product};
use inkcart_domain::{PostId, User, UserId};
use uuid::Uuid;

use super::cost::{self, Paging};
use super::loaders::{CommentAuthors, CommentsByPost, PostContents, PostsByAuthor, Users};
use super::{Caller, Loader, gql_error};
use crate::AppState;

fn state<'a>(ctx: &Context<'a>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_unchecked::<Caller>()
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_id<T: From<Uuid>>(id: &ID) -> Result<T> {
    Uuid::parse_str(id)
        .map(T::from)
        .map_err(|_| gql_error(inkcart_app::AppError::field("id", "Invalid id")))
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
    let ids: Vec<PostId> = posts.iter().map(|p| p.id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    if look.field("author").exists() {
        let authors = dedup(posts.iter().map(|p| p.author.id));
        let users = app
            .identity()
            .users_by_ids(&authors)
            .await
            .map_err(gql_error)?;
        ctx.data_unchecked::<Loader<Users>>()
            .feed_many(users.into_iter().map(|u| (u.id, u)))
            .await;
    }
    if look.field("content").exists() || look.field("contentHtml").exists() {
        let contents = app.blog().post_contents(&ids).await.map_err(gql_error)?;
        ctx.data_unchecked::<Loader<PostContents>>()
            .feed_many(contents)
            .await;
    }
    let comments = look.field("comments");
    if comments.exists() {
        // The pages the `comments` selections ask for (usually one); a selection whose
        // arguments are invalid is left to its resolver, which refuses them.
        let mut pages: Vec<PageRequest> = Vec::new();
        for page in comments.selection_fields().iter().filter_map(|field| {
            let arguments = field.arguments().ok()?;
            let number = |name: &str| {
                arguments
                    .iter()
                    .find(|(n, _)| n.as_str() == name)
                    .and_then(|(_, v)| match v {
                        async_graphql::Value::Number(n) => n.as_u64(),
                        _ => None,
                    })
            };
            page_of(number("page"), number("limit"), cost::POST_COMMENTS).ok()
        }) {
            if !pages.contains(&page) {
                pages.push(page);
            }
        }
        let mut authors: Vec<UserId> = Vec::new();
        for page in pages {
            let by_post = CommentsByPost::pages(app.blog(), &ids, page).await?;
            authors.extend(by_post.values().flatten().map(|c| c.author.id));
            ctx.data_unchecked::<Loader<CommentsByPost>>()
                .feed_many(by_post)
                .await;
        }
        if comments.field("author").exists() {
            let authors = dedup(authors.into_iter());
            let users = app
                .identity()
                .users_by_ids(&authors)
                .await
                .map_err(gql_error)?;
            ctx.data_unchecked::<Loader<CommentAuthors>>()
                .feed_many(users.into_iter().map(|u| (u.id, u)))
                .await;
        }
    }
    Ok(())
}

/// The page a list's `page` and `limit` ask for, `limit` within the list's maximum.
fn page_of(page: Option<u64>, limit: Option<u64>, paging: Paging) -> Result<PageRequest> {
    let limit = limit.unwrap_or(paging.default);
    if !(1..=paging.max).contains(&limit) {
        return Err(gql_error(inkcart_app::AppError::field(
            "limit",
            format!("limit must be between 1 and {}", paging.max),
        )));
    }
    PageRequest::new(page, Some(limit)).map_err(gql_error)
}

/// A registered user.
pub struct UserObject(User);

impl UserObject {
    /// Whether the caller may see this account's private fields.
    fn private(&self, ctx: &Context<'_>) -> bool {
        caller(ctx)
            .actor()
            .is_some_and(|a| a.may_see_private(self.0.id))
    }
}

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The account's owner and admins only (`null` for others), as in REST.
    #[graphql(complexity = "cost::EMAIL")]
    async fn email(&self, ctx: &Context<'_>) -> Option<&str> {
        self.private(ctx).then(|| self.0.email.as_str())
    }

    #[graphql(complexity = "cost::USER_NAME")]
    async fn name(&self) -> Option<&str> {
        self.0.name.as_ref().map(inkcart_domain::UserName::as_str)
    }

    /// The account's owner and admins only (`null` for others).
    async fn role(&self, ctx: &Context<'_>) -> Option<&str> {
        self.private(ctx).then(|| self.0.role.as_str())
    }

    /// Their published posts, newest first: `limit` 10 by default, at most 20.
    #[graphql(
        complexity = "cost::list(cost::USER_POSTS.items(limit), cost::POST_ROW, child_complexity)"
    )]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<PostObject>> {
        let page = page_of(page, limit, cost::USER_POSTS)?;
        let loader = ctx.data_unchecked::<Loader<PostsByAuthor>>();
        let posts = loader
            .load_one((self.0.id, page))
            .await?
            .unwrap_or_default();
        Ok(posts.into_iter().map(PostObject::listed).collect())
    }

    async fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
}

/// A published post (or a draft its caller may see), with its Markdown and HTML when they
/// were read with it (a single post); lists read those only when asked, through a loader.
pub struct PostObject {
    summary: PostSummary,
    contents: Option<(String, String)>,
}

impl PostObject {
    fn listed(summary: PostSummary) -> Self {
        Self {
            summary,
            contents: None,
        }
    }

    fn detailed(mut detail: inkcart_app::ports::PostDetail) -> Self {
        let contents = (
            std::mem::take(&mut detail.post.content),
            std::mem::take(&mut detail.post.content_html),
        );
        Self {
            summary: summary_of(detail),
            contents: Some(contents),
        }
    }

    /// The Markdown (`html: false`) or the HTML, read with the post or through the loader.
    async fn content_part(&self, ctx: &Context<'_>, html: bool) -> Result<String> {
        if let Some((markdown, rendered)) = &self.contents {
            return Ok(if html { rendered } else { markdown }.clone());
        }
        let loader = ctx.data_unchecked::<Loader<PostContents>>();
        Ok(loader
            .load_one(self.summary.id)
            .await?
            .map(|(markdown, rendered)| if html { rendered } else { markdown })
            .unwrap_or_default())
    }
}

#[Object(name = "Post")]
impl PostObject {
    async fn id(&self) -> ID {
        ID(self.summary.id.to_string())
    }

    #[graphql(complexity = "cost::TITLE")]
    async fn title(&self) -> &str {
        &self.summary.title
    }

    #[graphql(complexity = "cost::SLUG")]
    async fn slug(&self) -> &str {
        &self.summary.slug
    }

    #[graphql(complexity = "cost::EXCERPT")]
    async fn excerpt(&self) -> &str {
        &self.summary.excerpt
    }

    /// Markdown, as written.
    #[graphql(complexity = "cost::CONTENT_PAIR")]
    async fn content(&self, ctx: &Context<'_>) -> Result<String> {
        self.content_part(ctx, false).await
    }

    /// The content rendered and sanitized.
    #[graphql(complexity = "cost::CONTENT_PAIR")]
    async fn content_html(&self, ctx: &Context<'_>) -> Result<String> {
        self.content_part(ctx, true).await
    }

    #[graphql(complexity = "cost::object(cost::USER_ROW, child_complexity)")]
    async fn author(&self, ctx: &Context<'_>) -> Result<UserObject> {
        let loader = ctx.data_unchecked::<Loader<Users>>();
        loader
            .load_one(self.summary.author.id)
            .await?
            .map(UserObject)
            .ok_or_else(|| gql_error(inkcart_app::AppError::not_found("User")))
    }

    /// At most 10 (the domain's limit).
    #[graphql(complexity = "cost::TAGS")]
    async fn tags(&self) -> &[String] {
        &self.summary.tags
    }

    async fn comment_count(&self) -> i64 {
        self.summary.comment_count
    }

    /// Comments, oldest first: `limit` 10 by default, at most 50.
    #[graphql(
        complexity = "cost::list(cost::POST_COMMENTS.items(limit), cost::COMMENT_ROW, child_complexity)"
    )]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<CommentObject>> {
        let page = page_of(page, limit, cost::POST_COMMENTS)?;
        let loader = ctx.data_unchecked::<Loader<CommentsByPost>>();
        let comments = loader
            .load_one((self.summary.id, page))
            .await?
            .unwrap_or_default();
        Ok(comments.into_iter().map(CommentObject).collect())
    }

    async fn published_at(&self) -> Option<String> {
        self.summary.published_at.map(timestamp)
    }

    async fn created_at(&self) -> String {
        timestamp(self.summary.created_at)
    }
}

pub struct CommentObject(CommentView);

#[Object(name = "Comment")]
impl CommentObject {
    async fn id(&self) -> ID {
        ID(self.0.comment.id.to_string())
    }

    #[graphql(complexity = "cost::COMMENT")]
    async fn content(&self) -> &str {
        &self.0.comment.content
    }

    #[graphql(complexity = "cost::object(cost::USER_ROW, child_complexity)")]
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
    #[graphql(complexity = "cost::TAG_NAME")]
    name: String,
    post_count: i64,
}

pub struct ProductObject(Product);

#[Object(name = "Product")]
impl ProductObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    #[graphql(complexity = "cost::PRODUCT_NAME")]
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(complexity = "cost::DESCRIPTION")]
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
    #[graphql(complexity = "cost::PRODUCT_NAME")]
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
    /// Every line (at most 100, the domain's limit).
    #[graphql(
        complexity = "cost::list(inkcart_domain::shop::order::MAX_LINES, 1, child_complexity)"
    )]
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
    /// Users, newest first (signed-in callers): `limit` 20 by default, at most 100.
    #[graphql(
        complexity = "cost::list(cost::TOP_LEVEL.items(limit), cost::USER_ROW, child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<UserObject>> {
        let actor = caller(ctx).require()?;
        let query = UserQuery {
            page: page_of(page, limit, cost::TOP_LEVEL)?,
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
            .identity()
            .list_users(actor, &query)
            .await
            .map_err(gql_error)?;
        Ok(users.items.into_iter().map(UserObject).collect())
    }

    /// One user (signed-in callers).
    #[graphql(complexity = "cost::object(cost::USER_ROW, child_complexity)")]
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Result<Option<UserObject>> {
        caller(ctx).require()?;
        let id = UserId::from_uuid(parse_id(&id)?);
        match state(ctx).app.identity().get_user(id).await {
            Ok(user) => Ok(Some(UserObject(user))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// Published posts, newest first; with `search`, ranked full-text matches: `limit` 20 by
    /// default, at most 100.
    #[graphql(
        complexity = "cost::list(cost::TOP_LEVEL.items(limit), cost::POST_ROW, child_complexity)"
    )]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        tag: Option<String>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<PostObject>> {
        let query = PostQuery {
            paging: PostPaging::Offset(page_of(page, limit, cost::TOP_LEVEL)?),
            tag: tag.map(|t| t.trim().to_lowercase()),
            author: None,
            sort: Sort {
                field: PostSortField::CreatedAt,
                direction: Direction::Desc,
            },
            search: search.as_deref().map(search_terms),
        };
        let posts = state(ctx)
            .app
            .blog()
            .list_posts(&query)
            .await
            .map_err(gql_error)?;
        prefetch(ctx, &posts.items).await?;
        Ok(posts
            .items
            .iter()
            .cloned()
            .map(PostObject::listed)
            .collect())
    }

    /// One post by id or slug (drafts for their author, editors and admins).
    #[graphql(complexity = "cost::object(cost::POST_DETAIL_ROW, child_complexity)")]
    async fn post(&self, ctx: &Context<'_>, id_or_slug: String) -> Result<Option<PostObject>> {
        match state(ctx)
            .app
            .blog()
            .get_post(caller(ctx).actor(), &post_key(&id_or_slug))
            .await
        {
            Ok(detail) => Ok(Some(PostObject::detailed(detail.into_value()))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// Tags of published posts, most used first: `limit` 50 by default, at most 100.
    #[graphql(
        complexity = "cost::list(cost::TAG_LIST.items(limit), cost::TAG_ROW, child_complexity)"
    )]
    async fn tags(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<TagObject>> {
        let page = page_of(page, limit, cost::TAG_LIST)?;
        let tags = state(ctx).app.blog().tags(page).await.map_err(gql_error)?;
        Ok(tags
            .into_iter()
            .map(|(name, post_count)| TagObject { name, post_count })
            .collect())
    }

    /// Active products, newest first: `limit` 20 by default, at most 100.
    #[graphql(
        complexity = "cost::list(cost::TOP_LEVEL.items(limit), cost::PRODUCT_ROW, child_complexity)"
    )]
    async fn products(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<ProductObject>> {
        let query = ProductQuery {
            page: page_of(page, limit, cost::TOP_LEVEL)?,
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
            .shop()
            .list_products(&query)
            .await
            .map_err(gql_error)?;
        Ok(products.items.into_iter().map(ProductObject).collect())
    }

    #[graphql(complexity = "cost::object(cost::PRODUCT_ROW, child_complexity)")]
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ProductObject>> {
        match state(ctx).app.shop().get_product(parse_id(&id)?).await {
            Ok(p) => Ok(Some(ProductObject(p.into_value()))),
            Err(inkcart_app::AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(gql_error(e)),
        }
    }

    /// The caller's orders, newest first: `limit` 20 by default, at most 100.
    #[graphql(
        complexity = "cost::list(cost::TOP_LEVEL.items(limit), cost::ORDER_ROW, child_complexity)"
    )]
    async fn my_orders(
        &self,
        ctx: &Context<'_>,
        page: Option<u64>,
        limit: Option<u64>,
    ) -> Result<Vec<OrderObject>> {
        let actor = caller(ctx).require()?;
        let query = OrderQuery {
            page: page_of(page, limit, cost::TOP_LEVEL)?,
            user_id: Some(actor.id),
            status: None,
            sort: Sort {
                field: OrderSortField::CreatedAt,
                direction: Direction::Desc,
            },
        };
        let orders = state(ctx)
            .app
            .shop()
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
        comment_count: detail.comment_count,
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
    #[graphql(complexity = "cost::object(cost::USER_ROW, child_complexity)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        name: Option<String>,
    ) -> Result<UserObject> {
        let user = state(ctx)
            .app
            .identity()
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
    #[graphql(complexity = "cost::object(cost::USER_ROW, child_complexity)")]
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
            .identity()
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
            .identity()
            .delete_user(actor, UserId::from_uuid(parse_id(&id)?))
            .await
            .map_err(gql_error)?;
        Ok(true)
    }

    /// Writes a post (editors and admins).
    #[graphql(complexity = "cost::object(cost::POST_DETAIL_ROW, child_complexity)")]
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
            .blog()
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
        Ok(PostObject::detailed(detail))
    }

    /// Places an order, with the same rules as `POST /api/v1/orders`.
    #[graphql(complexity = "cost::object(cost::ORDER_ROW, child_complexity)")]
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        items: Vec<OrderLineInput>,
    ) -> Result<OrderObject> {
        let buyer = caller(ctx).account()?;
        let lines = items
            .iter()
            .map(|l| {
                Ok(RequestedLine {
                    product_id: parse_id(&l.product_id)?,
                    quantity: l.quantity,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let outcome = state(ctx)
            .app
            .shop()
            .create_order(buyer.id, lines, None)
            .await
            .map_err(gql_error)?;
        Ok(OrderObject(outcome.into_order()))
    }
}
