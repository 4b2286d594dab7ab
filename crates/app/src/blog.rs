//! Posts, comments, tags and search: the guide's Blog API over the ports.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use inkcart_domain::blog::post::{
    BlogError, CONTENT_DEPTH_MAX, CONTENT_HTML_MAX, check_content, parse_comment,
};
use inkcart_domain::blog::{
    Post, PostTitle, Slug, TagName, can_delete_comment, can_edit_post, can_view_post,
};
use inkcart_domain::{Actor, CommentId, FieldError, PostId, Role, UserId};
use uuid::Uuid;

use crate::cache::ReadCache;
use crate::error::messages;
use crate::events::EventLog;
use crate::identity::{find_user, unless_actor_gone};
use crate::page::PageRequest;
use crate::ports::{Clock, Store, UserRepo};
use crate::ports::{
    Comment, CommentView, PostCursor, PostCursorValue, PostDetail, PostKey, PostPage, PostQuery,
    PostRepo, PostSummary,
};
use crate::{AppError, AppResult, Deps, ErrorCode, Settings, Shared};

/// A new post, as received.
#[derive(Debug, Clone, Default)]
pub struct PostInput {
    pub title: Option<String>,
    pub content: Option<String>,
    pub published: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub slug: Option<String>,
    /// `Some(None)` removes the cover image.
    pub cover_image_key: Option<Option<String>>,
}

/// How many times a generated slug is retried when another post takes it meanwhile.
const SLUG_ATTEMPTS: usize = 5;
/// The most characters of an excerpt, before the ellipsis that marks a cut.
pub const EXCERPT_LEN: usize = 200;

fn blog_error(field: &str, err: BlogError) -> FieldError {
    FieldError::new(field, err.to_string())
}

const MARKDOWN: pulldown_cmark::Options = pulldown_cmark::Options::ENABLE_TABLES
    .union(pulldown_cmark::Options::ENABLE_STRIKETHROUGH)
    .union(pulldown_cmark::Options::ENABLE_FOOTNOTES)
    .union(pulldown_cmark::Options::ENABLE_TASKLISTS);

/// Refuses content that would render nested deeper than [`CONTENT_DEPTH_MAX`] elements, before
/// it is rendered. The sanitizer's HTML tree builder looks through every open element for
/// many start tags, so its time grows with the square of the depth: in a release build 100,000
/// nested blockquotes (`>>>>…`, 100 KB) took 95 s and 50,000 nested lists 159 s. One pass of
/// the Markdown parser (milliseconds) counts the open elements, raw HTML tags included.
pub fn check_nesting(markdown: &str) -> Result<(), BlogError> {
    use pulldown_cmark::{Event, Parser};
    let (mut markdown_depth, mut html_depth) = (0_usize, 0_usize);
    for event in Parser::new_ext(markdown, MARKDOWN) {
        let deepest_html = match event {
            Event::Start(_) => {
                markdown_depth += 1;
                html_depth
            }
            Event::End(_) => {
                markdown_depth = markdown_depth.saturating_sub(1);
                html_depth
            }
            Event::Html(raw) | Event::InlineHtml(raw) => open_html_tags(&raw, &mut html_depth),
            _ => html_depth,
        };
        if markdown_depth + deepest_html > CONTENT_DEPTH_MAX {
            return Err(BlogError::ContentTooDeep);
        }
    }
    Ok(())
}

/// Follows the start and end tags of a piece of raw HTML: updates how many elements are open
/// and returns the most that were open at once. Void and self-closed elements do not nest.
/// Tags the HTML parser would close by itself (`<p>`, `<li>`) count as open: an upper bound.
fn open_html_tags(raw: &str, depth: &mut usize) -> usize {
    const VOID: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
        "param", "source", "track", "wbr",
    ];
    let mut deepest = *depth;
    let mut rest = raw;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let (closing, tag) = match rest.strip_prefix('/') {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let name_len = tag
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tag.len());
        let name = &tag[..name_len];
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        if closing {
            *depth = depth.saturating_sub(1);
        } else if !VOID.iter().any(|v| v.eq_ignore_ascii_case(name)) {
            let self_closed = tag[name_len..]
                .find('>')
                .is_some_and(|end| tag[..name_len + end].ends_with('/'));
            if !self_closed {
                *depth += 1;
                deepest = deepest.max(*depth);
            }
        }
    }
    deepest
}

/// Renders Markdown to HTML and sanitizes it: no script, no event handler, no `javascript:`
/// (or other non-web) URL survives; links get `rel="noopener noreferrer nofollow"`. Content
/// from clients passes [`check_nesting`] first.
pub fn render_markdown(markdown: &str) -> String {
    use pulldown_cmark::{Parser, html};
    let mut unsafe_html = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut unsafe_html, Parser::new_ext(markdown, MARKDOWN));
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&unsafe_html)
        .to_string()
}

/// Checks content from a client (length, nesting), renders it, and refuses it when the HTML
/// would exceed [`CONTENT_HTML_MAX`].
fn render_content(content: &str) -> Result<String, BlogError> {
    check_content(content)?;
    check_nesting(content)?;
    let html = render_markdown(content);
    if html.len() > CONTENT_HTML_MAX {
        return Err(BlogError::ContentRendersTooLarge);
    }
    Ok(html)
}

/// The first words of a post as plain text, for lists.
pub fn excerpt(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut text = String::new();
    for event in Parser::new(markdown) {
        match event {
            Event::Text(t) | Event::Code(t) => text.push_str(&t),
            Event::SoftBreak
            | Event::HardBreak
            | Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item) => text.push(' '),
            _ => {}
        }
        if text.len() > EXCERPT_LEN * 4 {
            break;
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = String::new();
    for word in words {
        if out.chars().count() + word.chars().count() + 1 > EXCERPT_LEN {
            out.push('…');
            return out;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// English words full-text search ignores (PostgreSQL's `english` list), dropped on both
/// databases so that a query means the same on each.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "s",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// The terms of a search: lower-case words of letters and digits, stop words dropped, at most
/// ten. Every term must match (AND).
pub fn search_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
    {
        if !terms.iter().any(|t| t == word) {
            terms.push(word.to_owned());
        }
        if terms.len() == 10 {
            break;
        }
    }
    terms
}

/// Cursors are opaque to clients: base64url of the sort value and the id.
pub fn encode_cursor(cursor: &PostCursor) -> String {
    let raw = match &cursor.value {
        PostCursorValue::CreatedAt(t) => format!("c|{}|{}", t.timestamp_micros(), cursor.id),
        PostCursorValue::Title(title) => format!("t|{}|{title}", cursor.id),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub fn decode_cursor(cursor: &str) -> AppResult<PostCursor> {
    let invalid = || AppError::field("cursor", "Invalid cursor");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let raw = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = raw.splitn(3, '|');
    let (kind, a, b) = (parts.next(), parts.next(), parts.next());
    match (kind, a, b) {
        (Some("c"), Some(micros), Some(id)) => Ok(PostCursor {
            // Both databases must be able to compare with it: a time they store.
            value: PostCursorValue::CreatedAt(
                micros
                    .parse()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .and_then(|at| inkcart_domain::time::check_instant(at).ok())
                    .ok_or_else(invalid)?,
            ),
            id: id.parse().map_err(|_| invalid())?,
        }),
        // A title the store could hold: no NUL (PostgreSQL text cannot), not over the maximum.
        (Some("t"), Some(id), Some(title))
            if !title.contains('\0') && PostTitle::parse(title).is_ok() =>
        {
            Ok(PostCursor {
                value: PostCursorValue::Title(title.to_owned()),
                id: id.parse().map_err(|_| invalid())?,
            })
        }
        _ => Err(invalid()),
    }
}

/// `{post}` in a path: an id when it parses as a UUID, otherwise a slug.
pub fn post_key(raw: &str) -> PostKey {
    Uuid::parse_str(raw).map_or_else(
        |_| PostKey::Slug(raw.to_owned()),
        |id| PostKey::Id(PostId::from_uuid(id)),
    )
}

/// A cover image must be one of our uploads.
fn cover_key(key: Option<String>, errors: &mut Vec<FieldError>) -> Option<String> {
    let key = key?;
    if crate::uploads::is_upload_key(&key) {
        Some(key)
    } else {
        errors.push(FieldError::new(
            "coverImageKey",
            "coverImageKey must be the key of an upload",
        ));
        None
    }
}

fn post_not_found() -> AppError {
    AppError::not_found("Post")
}

/// The weight of a cached post (KiB): twice its size, for the value and, once it is served,
/// its encoding.
fn post_cache_weight(detail: &Shared<PostDetail>) -> u32 {
    let post = &detail.post;
    crate::cache::kib(
        2 * (post.content.len()
            + post.content_html.len()
            + post.excerpt.len()
            + post.title.len()
            + detail.tags.iter().map(String::len).sum::<usize>()
            + 512),
    )
}

/// Reads many cached posts at once, for the post cache's background reloads: each key gets
/// the post it names while that post is published; keys of posts gone or unpublished are left
/// out, so the cache forgets them.
fn reload_posts(posts: Arc<dyn PostRepo>) -> crate::cache::ReloadMany<PostKey, Shared<PostDetail>> {
    Arc::new(move |keys: Vec<PostKey>| {
        let posts = Arc::clone(&posts);
        Box::pin(async move {
            let found = posts
                .find_many(&keys)
                .await
                .map_err(|error| error.to_string())?;
            let mut by_id: HashMap<PostId, Shared<PostDetail>> = HashMap::new();
            let mut by_slug: HashMap<String, PostId> = HashMap::new();
            for detail in found.into_iter().filter(|d| d.post.published) {
                by_slug.insert(detail.post.slug.as_str().to_owned(), detail.post.id);
                by_id.insert(detail.post.id, Shared::new(detail));
            }
            Ok(keys
                .into_iter()
                .filter_map(|key| {
                    let id = match &key {
                        PostKey::Id(id) => *id,
                        PostKey::Slug(slug) => *by_slug.get(slug)?,
                    };
                    let detail = by_id.get(&id)?.clone();
                    Some((key, detail))
                })
                .collect())
        })
    })
}

/// The weight of a cached page of the post list (KiB): twice its size, as for a post.
fn post_page_cache_weight(page: &Shared<PostPage>) -> u32 {
    crate::cache::kib(
        2 * (page
            .items
            .iter()
            .map(|p| {
                p.title.len()
                    + p.slug.len()
                    + p.excerpt.len()
                    + p.tags.iter().map(String::len).sum::<usize>()
                    + 256
            })
            .sum::<usize>()
            + 128),
    )
}

/// The most each post cache holds, in KiB (posts are weighed by their size).
const POST_CACHE_KIB: u64 = 32 * 1024;

/// The in-process caches of what readers see of the blog. Shared with the features whose
/// writes change it (an author's name shows on their posts).
#[derive(Clone, Debug)]
pub(crate) struct PostCaches {
    /// Published posts by the id or slug they were asked for.
    post: ReadCache<PostKey, Shared<PostDetail>>,
    /// Pages of the post list by query.
    list: ReadCache<PostQuery, Shared<PostPage>>,
    /// Pages of search results by query.
    search: ReadCache<PostQuery, Shared<PostPage>>,
}

impl PostCaches {
    pub(crate) fn new(posts: &Arc<dyn PostRepo>, settings: &Settings) -> Self {
        Self {
            post: ReadCache::new(settings.post_cache_ttl, POST_CACHE_KIB, post_cache_weight)
                .reloading_many(reload_posts(Arc::clone(posts))),
            list: ReadCache::new(
                settings.post_cache_ttl,
                POST_CACHE_KIB,
                post_page_cache_weight,
            ),
            search: ReadCache::new(
                settings.search_cache_ttl,
                POST_CACHE_KIB,
                post_page_cache_weight,
            ),
        }
    }

    /// After a write that can change a post as shown or the lists it is in: forgets every
    /// cached post and page.
    pub(crate) fn posts_changed(&self) {
        self.post.clear();
        self.lists_changed();
    }

    /// After a write that can change only the lists (comment counts): forgets every cached page.
    fn lists_changed(&self) {
        self.list.clear();
        self.search.clear();
    }
}

/// Posts, comments, tags and search, with the caches readers are served from.
#[derive(Clone)]
pub struct Blog {
    store: Arc<dyn Store>,
    posts: Arc<dyn PostRepo>,
    /// Comments show their author; a write by an account deleted meanwhile is told apart.
    users: Arc<dyn UserRepo>,
    clock: Arc<dyn Clock>,
    events: EventLog,
    caches: PostCaches,
}

impl std::fmt::Debug for Blog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blog").finish_non_exhaustive()
    }
}

impl Blog {
    pub(crate) fn new(deps: &Deps, events: EventLog, caches: PostCaches) -> Self {
        Self {
            store: Arc::clone(&deps.store),
            posts: Arc::clone(&deps.posts),
            users: Arc::clone(&deps.users),
            clock: Arc::clone(&deps.clock),
            events,
            caches,
        }
    }

    /// After a write that can change a post as shown or the lists it is in.
    fn posts_changed(&self) {
        self.caches.posts_changed();
    }

    /// After a write that can change only the lists (comment counts).
    fn post_lists_changed(&self) {
        self.caches.lists_changed();
    }

    /// Writes a post (editors and admins). Without an explicit slug one is made from the title,
    /// with `-2`, `-3`… when taken; an explicit slug that is taken is a conflict.
    pub async fn create_post(&self, actor: Actor, input: PostInput) -> AppResult<PostDetail> {
        if !actor.has_role(Role::Editor) {
            return Err(AppError::insufficient_permissions());
        }
        let mut errors = Vec::new();
        let title = match input.title.as_deref() {
            Some(t) => PostTitle::parse(t)
                .map_err(|e| errors.push(blog_error("title", e)))
                .ok(),
            None => {
                errors.push(FieldError::new("title", "title is required"));
                None
            }
        };
        let content = match input.content {
            Some(c) => render_content(&c)
                .map(|html| (c, html))
                .map_err(|e| errors.push(blog_error("content", e)))
                .ok(),
            None => {
                errors.push(FieldError::new("content", "content is required"));
                None
            }
        };
        let tags = TagName::parse_all(input.tags.iter().flatten().map(String::as_str))
            .map_err(|e| errors.push(blog_error("tags", e)))
            .ok();
        let explicit_slug = match input.slug.as_deref() {
            Some(s) => match Slug::parse(s) {
                Ok(slug) => Some(slug),
                Err(e) => {
                    errors.push(FieldError::new("slug", e.to_string()));
                    None
                }
            },
            None => None,
        };
        let cover_image_key = cover_key(input.cover_image_key.flatten(), &mut errors);
        let (Some(title), Some((content, content_html)), Some(tags), true) =
            (title, content, tags, errors.is_empty())
        else {
            return Err(AppError::Validation(errors));
        };
        let now = self.clock.now();
        let published = input.published.unwrap_or(false);
        let mut post = Post {
            id: PostId::generate(),
            author_id: actor.id,
            slug: explicit_slug
                .clone()
                .unwrap_or_else(|| Slug::from_title(title.as_str())),
            title: title.into_string(),
            content_html,
            excerpt: excerpt(&content),
            content,
            cover_image_key,
            published,
            published_at: published.then_some(now),
            created_at: now,
            updated_at: now,
        };
        let inserted = if explicit_slug.is_some() {
            self.insert_post(&post, &tags).await
        } else {
            self.insert_with_free_slug(&mut post, &tags).await
        };
        unless_actor_gone(self.users.as_ref(), actor.id, inserted).await?;
        self.post_detail(&PostKey::Id(post.id)).await
    }

    async fn insert_post(&self, post: &Post, tags: &[TagName]) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        self.posts.insert(tx.as_mut(), post, tags).await?;
        let committed = tx.commit().await;
        // A published post joins the lists, and its slug may have been another post's.
        self.posts_changed();
        committed
    }

    /// Picks the first free `slug`, `slug-2`, `slug-3`… and inserts; a concurrent writer that
    /// takes the same slug first makes us pick again.
    async fn insert_with_free_slug(&self, post: &mut Post, tags: &[TagName]) -> AppResult<()> {
        let base = post.slug.clone();
        for _ in 0..SLUG_ATTEMPTS {
            post.slug = self.free_slug(&base).await?;
            match self.insert_post(post, tags).await {
                Err(AppError::Conflict(ErrorCode::SlugTaken, _)) => {}
                other => return other,
            }
        }
        Err(AppError::conflict(
            ErrorCode::SlugTaken,
            messages::SLUG_EXISTS,
        ))
    }

    async fn free_slug(&self, base: &Slug) -> AppResult<Slug> {
        let taken = self.posts.slugs_like(base.as_str()).await?;
        if !taken.iter().any(|s| s == base.as_str()) {
            return Ok(base.clone());
        }
        let prefix = format!("{}-", base.as_str());
        let highest = taken
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix)?.parse::<u32>().ok())
            .max()
            .unwrap_or(1);
        Ok(base.with_suffix(highest.max(1) + 1))
    }

    /// A post from the database (never the cache).
    async fn post_detail(&self, key: &PostKey) -> AppResult<PostDetail> {
        self.posts.find(key).await?.ok_or_else(post_not_found)
    }

    /// A post by id or slug; drafts only for their author, editors and admins. Published posts
    /// are served from the in-process cache; drafts are always read from the database.
    pub async fn get_post(
        &self,
        viewer: Option<Actor>,
        key: &PostKey,
    ) -> AppResult<Shared<PostDetail>> {
        /// Why a read was not kept: a draft (never cached) or a failure.
        enum NotKept {
            Draft(Box<PostDetail>),
            Failed(AppError),
        }
        let posts = Arc::clone(&self.posts);
        let read = self
            .caches
            .post
            .get_or_load(key.clone(), move |key| {
                let posts = Arc::clone(&posts);
                async move {
                    match posts.find(&key).await {
                        Ok(Some(detail)) if detail.post.published => Ok(Shared::new(detail)),
                        Ok(Some(draft)) => Err(NotKept::Draft(Box::new(draft))),
                        Ok(None) => Err(NotKept::Failed(post_not_found())),
                        Err(error) => Err(NotKept::Failed(error)),
                    }
                }
            })
            .await;
        let detail = match read {
            Ok(detail) => detail,
            Err(NotKept::Draft(draft)) => Shared::new(*draft),
            Err(NotKept::Failed(error)) => return Err(error),
        };
        if !can_view_post(&detail.post, viewer) {
            return Err(post_not_found());
        }
        Ok(detail)
    }

    /// A post the actor may see, from the database: writes start from the stored state, never
    /// from a cached copy.
    async fn stored_post(&self, actor: Actor, key: &PostKey) -> AppResult<PostDetail> {
        let detail = self.post_detail(key).await?;
        if !can_view_post(&detail.post, Some(actor)) {
            return Err(post_not_found());
        }
        Ok(detail)
    }

    /// Changes the given fields (the author or an admin). A new title keeps the slug unless a
    /// slug is sent; `tags` replaces the tags.
    pub async fn update_post(
        &self,
        actor: Actor,
        key: &PostKey,
        input: PostInput,
    ) -> AppResult<PostDetail> {
        let detail = self.stored_post(actor, key).await?;
        let mut post = detail.post;
        if !can_edit_post(&post, actor) {
            return Err(AppError::not_owner());
        }
        let mut errors = Vec::new();
        if let Some(title) = input.title.as_deref() {
            match PostTitle::parse(title) {
                Ok(t) => post.title = t.into_string(),
                Err(e) => errors.push(blog_error("title", e)),
            }
        }
        if let Some(content) = input.content {
            match render_content(&content) {
                Ok(html) => {
                    post.content_html = html;
                    post.excerpt = excerpt(&content);
                    post.content = content;
                }
                Err(e) => errors.push(blog_error("content", e)),
            }
        }
        if let Some(slug) = input.slug.as_deref() {
            match Slug::parse(slug) {
                Ok(s) => post.slug = s,
                Err(e) => errors.push(FieldError::new("slug", e.to_string())),
            }
        }
        let tags = match &input.tags {
            Some(tags) => TagName::parse_all(tags.iter().map(String::as_str))
                .map(Some)
                .map_err(|e| errors.push(blog_error("tags", e)))
                .ok()
                .flatten(),
            None => None,
        };
        if let Some(cover) = input.cover_image_key {
            post.cover_image_key = cover_key(cover, &mut errors);
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let now = self.clock.now();
        if let Some(published) = input.published {
            if published && !post.published {
                post.published_at = Some(now);
            }
            post.published = published;
        }
        post.updated_at = now;
        let mut tx = self.store.begin().await?;
        if !self
            .posts
            .update(tx.as_mut(), &post, tags.as_deref())
            .await?
        {
            // Deleted meanwhile (perhaps through another instance).
            self.posts_changed();
            return Err(post_not_found());
        }
        let committed = tx.commit().await;
        // Title, content, slug (the old one must stop resolving), tags, cover, publication.
        self.posts_changed();
        committed?;
        self.post_detail(&PostKey::Id(post.id)).await
    }

    /// Deletes a post with its comments and tag links (the author or an admin).
    pub async fn delete_post(&self, actor: Actor, key: &PostKey) -> AppResult<()> {
        let detail = self.stored_post(actor, key).await?;
        if !can_edit_post(&detail.post, actor) {
            return Err(AppError::not_owner());
        }
        let mut tx = self.store.begin().await?;
        if !self.posts.delete(tx.as_mut(), detail.post.id).await? {
            // Deleted meanwhile (perhaps through another instance).
            self.posts_changed();
            return Err(post_not_found());
        }
        let committed = tx.commit().await;
        self.posts_changed();
        committed
    }

    /// Published posts: offset or keyset pages, filters, and ranked full-text search.
    pub async fn list_posts(&self, query: &PostQuery) -> AppResult<Shared<PostPage>> {
        if query.search.as_ref().is_some_and(Vec::is_empty) {
            // Nothing searchable (only stop words or punctuation): nothing matches.
            return Ok(Shared::new(PostPage {
                items: Vec::new(),
                total: Some(0),
                has_more: false,
            }));
        }
        let posts = Arc::clone(&self.posts);
        let cache = if query.search.is_some() {
            &self.caches.search
        } else {
            &self.caches.list
        };
        cache
            .get_or_load(query.clone(), move |query| {
                let posts = Arc::clone(&posts);
                async move { posts.list(&query).await.map(Shared::new) }
            })
            .await
    }

    /// The author's latest published posts (v2 of a user).
    pub async fn posts_by(&self, author: UserId, limit: u64) -> AppResult<Vec<PostSummary>> {
        self.posts.published_by(author, limit).await
    }

    /// Published posts of several authors (for batch loading).
    /// The same page of every author's published posts, newest first (for batch loading).
    pub async fn posts_by_authors(
        &self,
        authors: &[UserId],
        page: PageRequest,
    ) -> AppResult<Vec<PostSummary>> {
        self.posts.published_by_authors(authors, page).await
    }

    /// Markdown and HTML of several posts (for batch loading).
    pub async fn post_contents(
        &self,
        ids: &[PostId],
    ) -> AppResult<std::collections::HashMap<PostId, (String, String)>> {
        self.posts.contents(ids).await
    }

    /// The same page of the comments of several posts, oldest first (for batch loading).
    pub async fn comments_for_posts(
        &self,
        ids: &[PostId],
        page: PageRequest,
    ) -> AppResult<Vec<CommentView>> {
        self.posts.comments_for(ids, page).await
    }

    /// A page of the tags of published posts, most used first.
    pub async fn tags(&self, page: PageRequest) -> AppResult<Vec<(String, i64)>> {
        self.posts.tags(page).await
    }

    /// A published post's comments, oldest first.
    pub async fn list_comments(
        &self,
        viewer: Option<Actor>,
        key: &PostKey,
        after: Option<(DateTime<Utc>, CommentId)>,
        limit: u64,
    ) -> AppResult<Vec<CommentView>> {
        let detail = self.get_post(viewer, key).await?;
        self.posts.comments(detail.post.id, after, limit).await
    }

    /// Comments on a published post (any signed-in user).
    pub async fn add_comment(
        &self,
        actor: Actor,
        key: &PostKey,
        content: &str,
    ) -> AppResult<CommentView> {
        let detail = self.stored_post(actor, key).await?;
        if !detail.post.published {
            return Err(AppError::conflict(
                ErrorCode::CommentsClosed,
                "Comments open when the post is published".to_owned(),
            ));
        }
        let content = parse_comment(content)
            .map_err(|e| AppError::Validation(vec![blog_error("content", e)]))?;
        let now = self.clock.now();
        let comment = Comment {
            id: CommentId::generate(),
            post_id: detail.post.id,
            author_id: actor.id,
            content,
            created_at: now,
            updated_at: now,
        };
        let written = async {
            let mut tx = self.store.begin().await?;
            self.posts.insert_comment(tx.as_mut(), &comment).await?;
            self.events
                .record(
                    tx.as_mut(),
                    &crate::events::Event::CommentAdded {
                        comment_id: comment.id,
                        post_id: comment.post_id,
                        author_id: actor.id,
                    },
                )
                .await?;
            tx.commit().await
        }
        .await;
        // Lists carry comment counts; a post as shown does not.
        self.post_lists_changed();
        unless_actor_gone(self.users.as_ref(), actor.id, written).await?;
        let author = find_user(self.users.as_ref(), actor.id).await?;
        Ok(CommentView {
            comment,
            author: crate::ports::AuthorRef {
                id: author.id,
                name: author.name.map(|n| n.as_str().to_owned()),
            },
        })
    }

    /// Deletes a comment (its writer, the post's author, or an admin).
    pub async fn delete_comment(&self, actor: Actor, id: CommentId) -> AppResult<()> {
        let comment = self
            .posts
            .find_comment(id)
            .await?
            .ok_or_else(|| AppError::not_found("Comment"))?;
        let post = self.post_detail(&PostKey::Id(comment.post_id)).await?.post;
        if !can_delete_comment(comment.author_id, post.author_id, actor) {
            return Err(AppError::not_owner());
        }
        let mut tx = self.store.begin().await?;
        if !self.posts.delete_comment(tx.as_mut(), id).await? {
            return Err(AppError::not_found("Comment"));
        }
        let committed = tx.commit().await;
        self.post_lists_changed();
        committed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_and_scripts_do_not_survive() {
        let html =
            render_markdown("# Hi\n\n**bold** <script>alert(1)</script> [x](javascript:alert(1))");
        assert!(html.contains("<h1>Hi</h1>"));
        assert!(html.contains("<strong>bold</strong>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("javascript:"));
    }

    #[test]
    fn event_handlers_and_dangerous_urls_are_removed() {
        for payload in [
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<svg><script>alert(1)</script></svg>",
            "<iframe src=\"https://evil.example\"></iframe>",
            "[click](javascript:alert(document.cookie))",
            "<a href=\"JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">x</a>",
            "<div style=\"background:url(javascript:alert(1))\">x</div>",
            "<body onload=alert(1)>",
            "<object data=\"javascript:alert(1)\"></object>",
        ] {
            let html = render_markdown(payload).to_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onload",
                "javascript:",
                "<iframe",
                "<object",
                "data:text",
                "style=",
            ] {
                assert!(!html.contains(bad), "{payload:?} left {bad:?} in {html:?}");
            }
        }
    }

    #[test]
    fn content_nested_past_the_maximum_is_refused_before_rendering() {
        let deep = CONTENT_DEPTH_MAX + 1;
        for content in [
            format!("{}x", ">".repeat(100_000)),
            format!("{}x", "> ".repeat(deep)),
            format!("{}x", "* ".repeat(50_000)),
            format!("{}x{}", "*".repeat(deep * 2), "*".repeat(deep * 2)),
            format!("{}x", "<div>".repeat(20_000)),
            format!("{}x{}", "<span>".repeat(deep), "</span>".repeat(deep)),
            format!("{}x", "<ul><li>".repeat(deep)),
            format!("text\n\n{}x", "<b class=\"a\">".repeat(deep)),
        ] {
            assert_eq!(
                check_nesting(&content),
                Err(BlogError::ContentTooDeep),
                "{}",
                &content[..40]
            );
        }
    }

    #[test]
    fn ordinary_nesting_void_tags_and_closed_tags_are_accepted() {
        for content in [
            "# Title\n\n> quote\n>\n> > nested *and **strong***\n\n- a\n  - b\n    - c".to_owned(),
            format!("{}x", "> ".repeat(40)),
            "<br>".repeat(5_000),
            "<img src=\"a.png\"/><hr/>".repeat(2_000),
            "<div>x</div>\n".repeat(5_000),
            format!("{}x", "<p/>".repeat(1_000)),
            "a < b and c <3 d, 1<2".to_owned(),
        ] {
            assert_eq!(check_nesting(&content), Ok(()), "{}", &content[..30]);
        }
    }

    #[test]
    fn a_table_whose_rows_are_shorter_than_its_header_is_refused_for_the_html_it_renders() {
        // 20 KB of Markdown: a header of 5,000 columns, then one-cell rows; each row renders
        // all 5,000 cells.
        let columns = 5_000;
        let table = format!(
            "{}|\n{}|\n{}",
            "|a".repeat(columns),
            "|-".repeat(columns),
            "x\n".repeat(2_000)
        );
        assert!(table.len() < 25_000);
        assert_eq!(
            render_content(&table),
            Err(BlogError::ContentRendersTooLarge)
        );
        let small = format!(
            "{}|\n{}|\n{}",
            "|a".repeat(3),
            "|-".repeat(3),
            "x\n".repeat(20)
        );
        assert!(render_content(&small).is_ok_and(|html| html.contains("<table>")));
    }

    #[test]
    fn links_are_kept_and_marked_nofollow() {
        let html = render_markdown("[site](https://example.com)");
        assert!(html.contains("href=\"https://example.com\""));
        assert!(html.contains("rel=\"noopener noreferrer nofollow\""));
    }

    #[test]
    fn an_excerpt_is_plain_text_cut_at_a_word() {
        assert_eq!(
            excerpt("# Title\n\nSome *emphasis* and `code`."),
            "Title Some emphasis and code."
        );
        let long = "word ".repeat(100);
        let cut = excerpt(&long);
        assert!(cut.chars().count() <= 201);
        assert!(cut.ends_with("word…"));
    }

    #[test]
    fn search_terms_drop_stop_words_and_punctuation() {
        assert_eq!(search_terms("The Rust, and the WEB!"), ["rust", "web"]);
        assert!(search_terms("the of and").is_empty());
        assert_eq!(search_terms("rust rust"), ["rust"]);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = PostCursor {
            value: PostCursorValue::CreatedAt(
                DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            ),
            id: PostId::generate(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)).unwrap(), cursor);
        let titled = PostCursor {
            value: PostCursorValue::Title("A | title".to_owned()),
            id: PostId::generate(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&titled)).unwrap(), titled);
        let encode = |raw: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let id = Uuid::now_v7();
        for bad in [
            String::new(),
            "!!!".to_owned(),
            "eA".to_owned(),
            encode("c|x|y"),
            // Out of the stored range: year 262143, and a year before 1 AD.
            encode(&format!("c|{}|{id}", i64::MAX / 35)),
            encode(&format!("c|-62135596800000001|{id}")),
            encode(&format!("t|{id}|nul\0title")),
            encode(&format!("t|{id}|{}", "x".repeat(201))),
        ] {
            assert!(decode_cursor(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_path_segment_is_an_id_when_it_is_a_uuid() {
        let id = Uuid::now_v7();
        assert_eq!(
            post_key(&id.to_string()),
            PostKey::Id(PostId::from_uuid(id))
        );
        assert_eq!(
            post_key("hello-world"),
            PostKey::Slug("hello-world".to_owned())
        );
    }
}
