use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use inkcart_app::blog::{PostInput, decode_cursor, encode_cursor, post_key, search_terms};
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{
    AuthorRef, CommentView, PostCursor, PostCursorValue, PostDetail, PostPage, PostPaging,
    PostQuery, PostSortField, PostSummary,
};
use inkcart_domain::{CommentId, PostId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::dto::{SEARCH_MAX, check_len, double_option, shared_json, ts};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, MaybeAuthUser, Path, Query};
use inkcart_domain::blog::post::TAG_MAX;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthorBody {
    pub id: Uuid,
    pub name: Option<String>,
}

impl From<AuthorRef> for AuthorBody {
    fn from(a: AuthorRef) -> Self {
        Self {
            id: a.id.as_uuid(),
            name: a.name,
        }
    }
}

/// A full post: the Markdown as written and its sanitized HTML.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostBody {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    /// Markdown, as submitted.
    pub content: String,
    /// The content rendered to HTML and sanitized (no scripts, event handlers or `javascript:`).
    pub content_html: String,
    pub excerpt: String,
    pub cover_image_key: Option<String>,
    pub published: bool,
    #[serde(serialize_with = "crate::dto::ts_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
    pub author: AuthorBody,
    pub tags: Vec<String>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<PostDetail> for PostBody {
    fn from(d: PostDetail) -> Self {
        let p = d.post;
        Self {
            id: p.id.into(),
            title: p.title,
            slug: p.slug.as_str().to_owned(),
            content: p.content,
            content_html: p.content_html,
            excerpt: p.excerpt,
            cover_image_key: p.cover_image_key,
            published: p.published,
            published_at: p.published_at,
            author: d.author.into(),
            tags: d.tags,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A post in a list: no content, an excerpt instead.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostListItem {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub excerpt: String,
    pub cover_image_key: Option<String>,
    #[serde(serialize_with = "crate::dto::ts_opt")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<chrono::DateTime<chrono::Utc>>,
    pub author: AuthorBody,
    pub tags: Vec<String>,
    pub comment_count: i64,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<PostSummary> for PostListItem {
    fn from(s: PostSummary) -> Self {
        Self {
            id: s.id.into(),
            title: s.title,
            slug: s.slug,
            excerpt: s.excerpt,
            cover_image_key: s.cover_image_key,
            published_at: s.published_at,
            author: s.author.into(),
            tags: s.tags,
            comment_count: s.comment_count,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Offset pages carry `page`, `total` and `totalPages`; cursor pages carry only `limit` and
/// `nextCursor`. Both carry `nextCursor` (null on the last page).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostListMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    pub limit: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostList {
    pub data: Vec<PostListItem>,
    pub meta: PostListMeta,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPostsParams {
    /// Offset paging: the page, from 1.
    #[param(minimum = 1, maximum = 10_000_000)]
    pub page: Option<u64>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// Cursor paging: `nextCursor` of the previous page.
    #[param(max_length = 2048)]
    pub cursor: Option<String>,
    /// Full-text search over title and content, ranked (offset paging only).
    #[param(max_length = 200)]
    pub search: Option<String>,
    /// Only posts with this tag.
    #[param(max_length = 50)]
    pub tag: Option<String>,
    /// Only posts by this user.
    pub author: Option<Uuid>,
    /// `-createdAt` (default), `createdAt`, `title` or `-title`.
    #[param(pattern = "^-?(createdAt|title)$")]
    pub sort: Option<String>,
}

/// The longest cursor the server makes (a title cursor of 200 four-byte characters).
const CURSOR_MAX: usize = 2048;

const SORTS: &[(&str, PostSortField)] = &[
    ("createdAt", PostSortField::CreatedAt),
    ("title", PostSortField::Title),
];

fn cursor_of(item: &PostSummary, field: PostSortField) -> String {
    encode_cursor(&PostCursor {
        value: match field {
            PostSortField::CreatedAt => PostCursorValue::CreatedAt(item.created_at),
            PostSortField::Title => PostCursorValue::Title(item.title.clone()),
        },
        id: item.id,
    })
}

/// Lists published posts: offset (`page`) or cursor (`cursor`) pages, by tag or author,
/// or a ranked full-text search.
#[utoipa::path(get, path = "/api/v1/posts", tag = "posts", params(ListPostsParams), responses(
    (status = 200, body = PostList),
    (status = 400, body = ErrorBody, description = "Bad page, limit, cursor or sort"),
))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListPostsParams>,
) -> ApiResult<Response> {
    let mut errors = Vec::new();
    check_len("cursor", params.cursor.as_deref(), CURSOR_MAX, &mut errors);
    check_len("search", params.search.as_deref(), SEARCH_MAX, &mut errors);
    check_len("tag", params.tag.as_deref(), TAG_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let sort = Sort::parse(
        params.sort.as_deref(),
        SORTS,
        Sort {
            field: PostSortField::CreatedAt,
            direction: Direction::Desc,
        },
    )?;
    let search = params.search.as_deref().map(search_terms);
    let limit = PageRequest::new(params.page, params.limit)?.limit;
    let paging = match (&params.cursor, params.page) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(vec![inkcart_domain::FieldError::new(
                "cursor",
                "Use either page or cursor, not both",
            )]));
        }
        (Some(_), None) if search.is_some() => {
            return Err(ApiError::validation(vec![inkcart_domain::FieldError::new(
                "cursor",
                "Search results are paged with page, not cursor",
            )]));
        }
        (Some(cursor), None) => {
            let cursor = decode_cursor(cursor)?;
            let matches_sort = matches!(
                (&cursor.value, sort.field),
                (PostCursorValue::CreatedAt(_), PostSortField::CreatedAt)
                    | (PostCursorValue::Title(_), PostSortField::Title)
            );
            if !matches_sort {
                return Err(ApiError::validation(vec![inkcart_domain::FieldError::new(
                    "cursor",
                    "Invalid cursor",
                )]));
            }
            PostPaging::Keyset {
                after: Some(cursor),
                limit,
            }
        }
        (None, page) => PostPaging::Offset(PageRequest::new(page, Some(limit))?),
    };
    let query = PostQuery {
        paging,
        tag: params.tag.map(|t| t.trim().to_lowercase()),
        author: params.author.map(UserId::from_uuid),
        sort,
        search,
    };
    let page = state.app.blog().list_posts(&query).await?;
    // The body depends on the query (the cache's key) and the page only.
    shared_json(&page, |page| PostList {
        data: page.items.iter().cloned().map(PostListItem::from).collect(),
        meta: list_meta(page, &query),
    })
}

/// The `meta` of a page of the post list.
fn list_meta(page: &PostPage, query: &PostQuery) -> PostListMeta {
    let next_cursor = if page.has_more && query.search.is_none() {
        page.items
            .last()
            .map(|last| cursor_of(last, query.sort.field))
    } else {
        None
    };
    match &query.paging {
        PostPaging::Offset(p) => {
            let total = page.total.unwrap_or(0);
            PostListMeta {
                page: Some(p.page),
                limit: p.limit,
                total: Some(total),
                total_pages: Some(total.div_ceil(p.limit)),
                next_cursor,
            }
        }
        PostPaging::Keyset { limit, .. } => PostListMeta {
            page: None,
            limit: *limit,
            total: None,
            total_pages: None,
            next_cursor,
        },
    }
}

/// One post by id or slug. Drafts are seen only by their author, editors and admins.
#[utoipa::path(get, path = "/api/v1/posts/{post}", tag = "posts", params(("post" = String, Path, description = "The post's id or slug")), responses(
    (status = 200, body = PostBody),
    (status = 401, body = ErrorBody, description = "A token was sent and is not valid"),
    (status = 404, body = ErrorBody),
))]
pub async fn get(
    State(state): State<AppState>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    Path(post): Path<String>,
) -> ApiResult<Response> {
    let detail = state
        .app
        .blog()
        .get_post(viewer.map(|v| v.actor), &post_key(&post))
        .await?;
    shared_json(&detail, |detail| PostBody::from(detail.clone()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"title": "Hello, world", "content": "My **first** post.", "published": true, "tags": ["rust", "web"]}))]
pub struct CreatePostRequest {
    /// 1 to 200 characters once trimmed.
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 200
    )]
    pub title: String,
    /// Markdown, at most 100,000 characters, nested at most 100 levels deep.
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 100000
    )]
    pub content: String,
    #[serde(default)]
    pub published: Option<bool>,
    /// Tag names (trimmed and lower-cased; created on first use). At most 10.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub tags: Option<Vec<String>>,
    /// An explicit slug; taken → 409. Without one, the slug comes from the title.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 100)]
    pub slug: Option<String>,
    /// The key of an uploaded image.
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(_thumb)?\.(png|jpg|gif|webp)$"
    )]
    pub cover_image_key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdatePostRequest {
    #[serde(default)]
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 200
    )]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 100000
    )]
    pub content: Option<String>,
    #[serde(default)]
    pub published: Option<bool>,
    /// Replaces the tags when sent.
    #[serde(default)]
    #[schema(max_items = 10)]
    pub tags: Option<Vec<String>>,
    /// Changes the slug (a new title alone does not).
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 100)]
    pub slug: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(_thumb)?\.(png|jpg|gif|webp)$"
    )]
    pub cover_image_key: Option<Option<String>>,
}

/// Writes a post (editors and admins).
#[utoipa::path(post, path = "/api/v1/posts", tag = "posts", request_body = CreatePostRequest, security(("bearer" = [])), responses(
    (status = 201, body = PostBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "Slug already exists"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<CreatePostRequest>,
) -> ApiResult<(StatusCode, Json<PostBody>)> {
    let detail = state
        .app
        .blog()
        .create_post(
            auth.actor,
            PostInput {
                title: Some(body.title),
                content: Some(body.content),
                published: body.published,
                tags: body.tags,
                slug: body.slug,
                cover_image_key: body.cover_image_key.map(Some),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(detail.into())))
}

async fn update(
    state: &AppState,
    auth: &AuthUser,
    post: &str,
    body: UpdatePostRequest,
) -> ApiResult<Json<PostBody>> {
    let detail = state
        .app
        .blog()
        .update_post(
            auth.actor,
            &post_key(post),
            PostInput {
                title: body.title,
                content: body.content,
                published: body.published,
                tags: body.tags,
                slug: body.slug,
                cover_image_key: body.cover_image_key,
            },
        )
        .await?;
    Ok(Json(detail.into()))
}

/// Replaces a post's title and content (and the other fields sent). The author or an admin.
#[utoipa::path(put, path = "/api/v1/posts/{post}", tag = "posts", params(("post" = String, Path, description = "The post's id or slug")),
    request_body = CreatePostRequest, security(("bearer" = [])), responses(
    (status = 200, body = PostBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "Not the author (nor an admin)"),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Slug already exists"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn replace(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(post): Path<String>,
    Json(body): Json<CreatePostRequest>,
) -> ApiResult<Json<PostBody>> {
    let body = UpdatePostRequest {
        title: Some(body.title),
        content: Some(body.content),
        published: body.published,
        tags: body.tags,
        slug: body.slug,
        cover_image_key: body.cover_image_key.map(Some),
    };
    update(&state, &auth, &post, body).await
}

/// Changes some fields of a post. The author or an admin.
#[utoipa::path(patch, path = "/api/v1/posts/{post}", tag = "posts", params(("post" = String, Path, description = "The post's id or slug")),
    request_body = UpdatePostRequest, security(("bearer" = [])), responses(
    (status = 200, body = PostBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody, description = "Not the author (nor an admin)"),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "Slug already exists"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn patch(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(post): Path<String>,
    Json(body): Json<UpdatePostRequest>,
) -> ApiResult<Json<PostBody>> {
    update(&state, &auth, &post, body).await
}

/// Deletes a post with its comments and tag links. The author or an admin.
#[utoipa::path(delete, path = "/api/v1/posts/{post}", tag = "posts", params(("post" = String, Path, description = "The post's id or slug")),
    security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
))]
pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(post): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .app
        .blog()
        .delete_post(auth.actor, &post_key(&post))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommentBody {
    pub id: Uuid,
    pub post_id: Uuid,
    pub content: String,
    pub author: AuthorBody,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<CommentView> for CommentBody {
    fn from(c: CommentView) -> Self {
        Self {
            id: c.comment.id.into(),
            post_id: c.comment.post_id.into(),
            content: c.comment.content,
            author: c.author.into(),
            created_at: c.comment.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CursorMeta {
    pub limit: u64,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommentList {
    pub data: Vec<CommentBody>,
    pub meta: CursorMeta,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCommentsParams {
    /// `nextCursor` of the previous page.
    #[param(max_length = 2048)]
    pub cursor: Option<String>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// A post's comments, oldest first, in cursor pages.
#[utoipa::path(get, path = "/api/v1/posts/{post}/comments", tag = "posts", params(("post" = String, Path, description = "The post's id or slug"), ListCommentsParams), responses(
    (status = 200, body = CommentList),
    (status = 400, body = ErrorBody, description = "Bad cursor or limit"),
    (status = 401, body = ErrorBody, description = "A token was sent and is not valid"),
    (status = 404, body = ErrorBody),
))]
pub async fn comments(
    State(state): State<AppState>,
    MaybeAuthUser(viewer): MaybeAuthUser,
    Path(post): Path<String>,
    Query(params): Query<ListCommentsParams>,
) -> ApiResult<Json<CommentList>> {
    let mut errors = Vec::new();
    check_len("cursor", params.cursor.as_deref(), CURSOR_MAX, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let limit = PageRequest::new(None, params.limit)?.limit;
    // A comments cursor is written as a post cursor by creation time, its id the comment's.
    let after = match params.cursor.as_deref() {
        Some(raw) => match decode_cursor(raw)? {
            PostCursor {
                value: PostCursorValue::CreatedAt(at),
                id,
            } => Some((at, CommentId::from_uuid(id.as_uuid()))),
            PostCursor { .. } => {
                return Err(ApiError::validation(vec![inkcart_domain::FieldError::new(
                    "cursor",
                    "Invalid cursor",
                )]));
            }
        },
        None => None,
    };
    let mut items = state
        .app
        .blog()
        .list_comments(viewer.map(|v| v.actor), &post_key(&post), after, limit + 1)
        .await?;
    let has_more = items.len() as u64 > limit;
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = has_more.then(|| items.last()).flatten().map(|last| {
        encode_cursor(&PostCursor {
            value: PostCursorValue::CreatedAt(last.comment.created_at),
            id: PostId::from_uuid(last.comment.id.as_uuid()),
        })
    });
    Ok(Json(CommentList {
        data: items.into_iter().map(CommentBody::from).collect(),
        meta: CursorMeta { limit, next_cursor },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"content": "Great post!"}))]
pub struct CommentRequest {
    /// 1 to 5,000 characters once trimmed (plain text, never rendered).
    #[schema(
        pattern = r"^[^\u0000]*[^\u0000\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$",
        max_length = 5000
    )]
    pub content: String,
}

/// Comments on a published post (any signed-in user).
#[utoipa::path(post, path = "/api/v1/posts/{post}/comments", tag = "posts", params(("post" = String, Path, description = "The post's id or slug")),
    request_body = CommentRequest, security(("bearer" = [])), responses(
    (status = 201, body = CommentBody),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "The post is a draft"),
    (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
))]
pub async fn add_comment(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(post): Path<String>,
    Json(body): Json<CommentRequest>,
) -> ApiResult<(StatusCode, Json<CommentBody>)> {
    let comment = state
        .app
        .blog()
        .add_comment(auth.actor, &post_key(&post), &body.content)
        .await?;
    Ok((StatusCode::CREATED, Json(comment.into())))
}

/// Deletes a comment: its writer, the post's author, or an admin.
#[utoipa::path(delete, path = "/api/v1/comments/{id}", tag = "posts", params(("id" = Uuid, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody),
))]
pub async fn delete_comment(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    state
        .app
        .blog()
        .delete_comment(auth.actor, id.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagBody {
    pub name: String,
    /// Published posts with this tag.
    pub post_count: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TagList {
    pub data: Vec<TagBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTagsParams {
    /// How many tags, most used first (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Tags of published posts, most used first.
#[utoipa::path(get, path = "/api/v1/tags", tag = "posts", params(ListTagsParams), responses(
    (status = 200, body = TagList),
    (status = 400, body = ErrorBody, description = "Bad limit"),
))]
pub async fn tags(
    State(state): State<AppState>,
    Query(params): Query<ListTagsParams>,
) -> ApiResult<Json<TagList>> {
    let tags = state
        .app
        .blog()
        .tags(PageRequest::new(None, params.limit)?)
        .await?;
    Ok(Json(TagList {
        data: tags
            .into_iter()
            .map(|(name, post_count)| TagBody { name, post_count })
            .collect(),
    }))
}
