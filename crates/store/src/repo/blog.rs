use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_app::page::{Direction, PageRequest};
use inkcart_app::ports::{
    AuthorRef, Comment, CommentView, PostCursor, PostCursorValue, PostDetail, PostKey, PostPage,
    PostPaging, PostQuery, PostRepo, PostSortField, PostSummary, Tx,
};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::blog::{Post, Slug, TagName};
use inkcart_domain::{CommentId, PostId, UserId};
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait as _, Query, SelectStatement, Value};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait as _, EntityTrait as _, JoinType, Order, QueryFilter as _, QuerySelect as _,
    QueryTrait as _,
};
use uuid::Uuid;

use super::{OnceSql, SqlStore, TxConn, Unique as _, get, get_id, paged, uuids, write};
use crate::dialect::{Dialect, Shape, TAG_SEPARATOR};
use crate::entity::{comments, post_tags, posts, published_post_counts, tags, users};
use crate::error::db_err;
use crate::lite::{Columns, Row};

fn col(c: posts::Column) -> Expr {
    Expr::col((posts::Entity, c))
}

/// Posts by id or slug, each with its author's name and its tags, in one statement: each
/// statement is a round trip (to PostgreSQL) or a walk of SQLite's virtual machine.
fn detail_select(keys: &[PostKey], dialect: Dialect) -> SelectStatement {
    let mut ids = Vec::new();
    let mut slugs = Vec::new();
    for key in keys {
        match key {
            PostKey::Id(id) => ids.push(*id),
            PostKey::Slug(slug) => slugs.push(slug.as_str()),
        }
    }
    let mut wanted = sea_orm::Condition::any();
    if !ids.is_empty() {
        wanted = wanted.add(posts::Column::Id.is_in(uuids(&ids)));
    }
    if !slugs.is_empty() {
        wanted = wanted.add(posts::Column::Slug.is_in(slugs));
    }
    posts::Entity::find()
        .filter(wanted)
        .join(
            JoinType::LeftJoin,
            posts::Entity::belongs_to(users::Entity)
                .from(posts::Column::AuthorId)
                .to(users::Column::Id)
                .into(),
        )
        .column_as(users::Column::Name, "author_name")
        .column_as(dialect.tag_list_of_post(), "tag_list")
        .into_query()
}

/// The value [`detail_select`] binds for one key.
fn key_value(key: &PostKey) -> Value {
    match key {
        PostKey::Id(id) => Value::from(id.as_uuid()),
        PostKey::Slug(slug) => Value::from(slug.clone()),
    }
}

/// The decoder of a row of [`detail_select`] on `dialect`'s connection (which may leave the
/// tags unordered: [`Dialect::orders_tag_lists`]).
fn detail_from_row(dialect: Dialect) -> impl Fn(&Row<'_, '_>) -> AppResult<PostDetail> + Copy {
    let sort_tags = !dialect.orders_tag_lists();
    move |row| {
        let model = post_row(row)?;
        let author = AuthorRef {
            id: UserId::from_uuid(model.author_id),
            name: get(row, "author_name")?,
        };
        let mut tags: Vec<String> = get::<Option<String>>(row, "tag_list")?
            .map(|list| list.split(TAG_SEPARATOR).map(str::to_owned).collect())
            .unwrap_or_default();
        if sort_tags {
            tags.sort_unstable();
        }
        let comment_count = model.comment_count;
        Ok(PostDetail {
            post: post_from_model(model)?,
            author,
            tags,
            comment_count,
        })
    }
}

/// The columns of a summary, with the author's name.
fn summary_columns(q: &mut SelectStatement) {
    use posts::Column as P;
    for (c, alias) in [
        (P::Id, "id"),
        (P::Title, "title"),
        (P::Slug, "slug"),
        (P::Excerpt, "excerpt"),
        (P::CoverImageKey, "cover_image_key"),
        (P::Published, "published"),
        (P::PublishedAt, "published_at"),
        (P::CreatedAt, "created_at"),
        (P::UpdatedAt, "updated_at"),
        (P::AuthorId, "author_id"),
        (P::CommentCount, "comment_count"),
    ] {
        q.expr_as(col(c), alias);
    }
    q.expr_as(
        Expr::col((users::Entity, users::Column::Name)),
        "author_name",
    );
}

fn summary_from_row(row: &impl Columns) -> AppResult<PostSummary> {
    Ok(PostSummary {
        id: get_id(row, "id")?,
        title: get(row, "title")?,
        slug: get(row, "slug")?,
        excerpt: get(row, "excerpt")?,
        cover_image_key: get(row, "cover_image_key")?,
        published: get(row, "published")?,
        published_at: get(row, "published_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        author: AuthorRef {
            id: UserId::from_uuid(get(row, "author_id")?),
            name: get(row, "author_name")?,
        },
        tags: Vec::new(),
        comment_count: get(row, "comment_count")?,
    })
}

/// A post's row (every column of `posts`).
fn post_row(row: &Row) -> AppResult<posts::Model> {
    Ok(posts::Model {
        id: get(row, "id")?,
        author_id: get(row, "author_id")?,
        title: get(row, "title")?,
        slug: get(row, "slug")?,
        content: get(row, "content")?,
        content_html: get(row, "content_html")?,
        excerpt: get(row, "excerpt")?,
        cover_image_key: get(row, "cover_image_key")?,
        published: get(row, "published")?,
        published_at: get(row, "published_at")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        comment_count: get(row, "comment_count")?,
    })
}

fn post_from_model(m: posts::Model) -> AppResult<Post> {
    let slug = Slug::parse(&m.slug)
        .map_err(|_| AppError::internal(format!("post {}: stored slug is invalid", m.id)))?;
    Ok(Post {
        id: m.id.into(),
        author_id: UserId::from_uuid(m.author_id),
        title: m.title,
        slug,
        content: m.content,
        content_html: m.content_html,
        excerpt: m.excerpt,
        cover_image_key: m.cover_image_key,
        published: m.published,
        published_at: m.published_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn post_model(p: &Post) -> posts::ActiveModel {
    posts::ActiveModel {
        id: Set(p.id.into()),
        author_id: Set(p.author_id.as_uuid()),
        title: Set(p.title.clone()),
        slug: Set(p.slug.as_str().to_owned()),
        content: Set(p.content.clone()),
        content_html: Set(p.content_html.clone()),
        excerpt: Set(p.excerpt.clone()),
        cover_image_key: Set(p.cover_image_key.clone()),
        published: Set(p.published),
        published_at: Set(p.published_at),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
        // Kept by the database's triggers.
        comment_count: NotSet,
    }
}

/// Offset pages beyond this many posts are read off the runtime's threads
/// (`SqlStore::read_offloaded`), not on the calling thread (`lite/mod.rs`): the offset walks
/// every post before the page.
const DEEP_OFFSET: u64 = 1_000;

/// Post lookups of up to this many keys are read on the calling thread (`lite/mod.rs`).
const FEW_POSTS: usize = 20;

/// How many comments [`SqlStore::comment_views`] reads.
#[derive(Debug, Clone, Copy)]
enum CommentLimit {
    /// At most this many in all.
    Total(u64),
    /// The same page of each post's comments.
    PerPost(PageRequest),
}

/// `select` cut to the same page within each group of rows sharing `partition`, in `order`:
/// one statement, whatever the number of groups, that reads no row beyond a group's page
/// (`ROW_NUMBER()` works alike on SQLite and PostgreSQL). The rows come grouped by
/// `partition_alias` (the partition's name in the select), each group in `order`. As in
/// [`paged`], the bounds are written as integer literals.
fn page_per(
    mut select: SelectStatement,
    partition: &str,
    order: &str,
    partition_alias: &str,
    page: PageRequest,
) -> SelectStatement {
    select.expr_as(
        Expr::cust(format!(
            "ROW_NUMBER() OVER (PARTITION BY {partition} ORDER BY {order})"
        )),
        "row_in_group",
    );
    let first = page.offset();
    let last = first.saturating_add(page.limit);
    let mut outer = Query::select();
    outer
        .column(Asterisk)
        .from_subquery(select, Alias::new("grouped"))
        .and_where(Expr::cust(format!(
            r#""grouped"."row_in_group" > {first} AND "grouped"."row_in_group" <= {last}"#
        )))
        .order_by_expr(
            Expr::cust(format!(r#""grouped"."{partition_alias}""#)),
            Order::Asc,
        )
        .order_by_expr(Expr::cust(r#""grouped"."row_in_group""#), Order::Asc);
    outer
}

/// Tags of published posts with their number of published posts, most used first: the kept
/// counts (migration `m20261203_000003`), not a count of every tag link of a published post.
fn tags_select() -> SelectStatement {
    use published_post_counts::Column as C;
    let counter = |c: C| Expr::col((published_post_counts::Entity, c));
    let mut q = Query::select();
    q.expr_as(Expr::col((tags::Entity, tags::Column::Name)), "name")
        .expr_as(counter(C::N), "n")
        .from(published_post_counts::Entity)
        .inner_join(
            tags::Entity,
            Expr::col((tags::Entity, tags::Column::Id))
                .equals((published_post_counts::Entity, C::Id)),
        )
        .and_where(counter(C::Scope).eq(published_post_counts::TAG))
        .and_where(counter(C::N).gt(0))
        .order_by((published_post_counts::Entity, C::N), Order::Desc)
        .order_by((tags::Entity, tags::Column::Name), Order::Asc);
    q
}

/// Whether a search is answered from the full-text index before any post is read. Both
/// engines' indexes hold published posts only (SQLite's `posts_fts` since migration
/// `m20261128_000005`, PostgreSQL's `published_search` since `m20261201_000001`), so with no
/// other filter the matches are counted, ranked and cut to one page inside the index (on
/// PostgreSQL counted and ranked in one pass, see [`Dialect::counts_with_ranks`]), and only the
/// page's posts are read. A word in 48,000 of a million posts no longer means 48,000 reads of
/// `posts`.
fn ranks_inside(query: &PostQuery) -> bool {
    query.search.is_some() && query.author.is_none() && query.tag.is_none()
}

/// The kept number of published posts of a list without search (migration
/// `m20261203_000003`): every published post, an author's or a tag's, as `n`. One row read where
/// `COUNT(*)` read every post the filter selects; a counter without a row is zero. `None` for a
/// search and for a tag and an author together, which no counter covers.
fn kept_count(query: &PostQuery) -> Option<SelectStatement> {
    use published_post_counts::Column as C;
    if query.search.is_some() {
        return None;
    }
    let counter = |c: C| Expr::col((published_post_counts::Entity, c));
    let (scope, id) = match (query.author, query.tag.as_deref()) {
        (None, None) => (published_post_counts::ALL, counter(C::Id).eq(Uuid::nil())),
        (Some(author), None) => (
            published_post_counts::AUTHOR,
            counter(C::Id).eq(author.as_uuid()),
        ),
        (None, Some(tag)) => {
            // The tag the list's filter matches: by its stored name.
            let mut named = Query::select();
            named
                .column((tags::Entity, tags::Column::Id))
                .from(tags::Entity)
                .and_where(Expr::col((tags::Entity, tags::Column::Name)).eq(tag));
            (
                published_post_counts::TAG,
                counter(C::Id).in_subquery(named),
            )
        }
        (Some(_), Some(_)) => return None,
    };
    let mut q = Query::select();
    q.expr_as(counter(C::N), "n")
        .from(published_post_counts::Entity)
        .and_where(counter(C::Scope).eq(scope))
        .and_where(id);
    Some(q)
}

impl SqlStore {
    /// The `n` of a kept count (one row read).
    async fn kept(&self, count: SelectStatement) -> AppResult<i64> {
        let n = self.read_all(&count, |r| get::<i64>(r, "n")).await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// The `n` of a count that reads every row it counts.
    async fn counted(&self, count: SelectStatement) -> AppResult<i64> {
        let n = self
            .read_offloaded(self.dialect().build(&count), |r| get::<i64>(r, "n"))
            .await?;
        Ok(n.first().copied().unwrap_or(0))
    }

    /// The published posts a query selects, without ordering. A page is joined with the authors
    /// and, for a search, carries each match's rank; a count needs neither (the join made
    /// counting 100k posts on SQLite cost hundreds of milliseconds, and a rank is not needed to
    /// count).
    fn posts_select(query: &PostQuery, dialect: Dialect, shape: Shape) -> SelectStatement {
        let mut q = Query::select();
        if let Some(terms) = &query.search {
            // The matches drive the join: `CROSS JOIN` makes SQLite keep them as the outer
            // loop. Left to itself, the planner walked every published post and ran the
            // full-text match once per post (seconds on 100k posts, not milliseconds).
            // PostgreSQL plans a cross join with a condition as any inner join.
            // (sea-query writes no ON for a cross join: the condition goes in WHERE.)
            q.from_subquery(dialect.search_matches(terms, shape), Alias::new("matches"))
                .cross_join(posts::Entity)
                .and_where(Expr::cust(r#""matches"."sid" = "posts"."id""#));
        } else {
            q.from(posts::Entity);
        }
        if shape != Shape::Count {
            q.inner_join(
                users::Entity,
                Expr::col((users::Entity, users::Column::Id))
                    .equals((posts::Entity, posts::Column::AuthorId)),
            );
        }
        q.and_where(col(posts::Column::Published).eq(true));
        if let Some(author) = query.author {
            q.and_where(col(posts::Column::AuthorId).eq(author.as_uuid()));
        }
        if let Some(tag) = query.tag.as_deref() {
            let mut tagged = Query::select();
            tagged
                .expr(Expr::val(1))
                .from(post_tags::Entity)
                .inner_join(
                    tags::Entity,
                    Expr::col((tags::Entity, tags::Column::Id))
                        .equals((post_tags::Entity, post_tags::Column::TagId)),
                )
                .and_where(
                    Expr::col((post_tags::Entity, post_tags::Column::PostId))
                        .equals((posts::Entity, posts::Column::Id)),
                )
                .and_where(Expr::col((tags::Entity, tags::Column::Name)).eq(tag));
            q.and_where(Expr::exists(tagged));
        }
        q
    }

    /// Orders by rank for a search, otherwise by the sort field; the id breaks ties.
    fn order_posts(q: &mut SelectStatement, query: &PostQuery, dialect: Dialect) {
        let order = match query.sort.direction {
            Direction::Asc => Order::Asc,
            Direction::Desc => Order::Desc,
        };
        if query.search.is_some() {
            q.order_by_expr(Expr::cust(r#""matches"."rank""#), dialect.best_rank_first());
            q.order_by((posts::Entity, posts::Column::CreatedAt), Order::Desc)
                .order_by((posts::Entity, posts::Column::Id), Order::Desc);
            return;
        }
        match query.sort.field {
            PostSortField::CreatedAt => {
                q.order_by((posts::Entity, posts::Column::CreatedAt), order.clone())
            }
            PostSortField::Title => q.order_by_expr(dialect.title_sort(), order.clone()),
        };
        q.order_by((posts::Entity, posts::Column::Id), order);
    }

    /// Posts strictly after the cursor in the query's order.
    fn after_cursor(
        q: &mut SelectStatement,
        query: &PostQuery,
        cursor: &PostCursor,
        dialect: Dialect,
    ) {
        let forward = query.sort.direction == Direction::Asc;
        let id = col(posts::Column::Id);
        let id_after = if forward {
            id.gt(cursor.id.as_uuid())
        } else {
            id.lt(cursor.id.as_uuid())
        };
        // `field ≤ value AND (field < value OR id < cursor id)` (mirrored going forward). The
        // first half says nothing the second does not, but it is a plain range that a planner
        // seeks the `(published, field, id)` index to. With only the OR, SQLite walked the index
        // from the first post and filtered out every post before the cursor: a page 300,000
        // posts deep took 50 ms instead of 0.5 ms.
        let (reach, beyond) = match &cursor.value {
            PostCursorValue::CreatedAt(t) => {
                let at = || col(posts::Column::CreatedAt);
                if forward {
                    (at().gte(*t), at().gt(*t))
                } else {
                    (at().lte(*t), at().lt(*t))
                }
            }
            PostCursorValue::Title(title) => {
                let title = || title.clone();
                if forward {
                    (
                        dialect.title_sort().gte(title()),
                        dialect.title_sort().gt(title()),
                    )
                } else {
                    (
                        dialect.title_sort().lte(title()),
                        dialect.title_sort().lt(title()),
                    )
                }
            }
        };
        q.and_where(reach).and_where(beyond.or(id_after));
    }

    /// Comments with their authors' names, oldest first: of the given posts, after a cursor,
    /// up to a limit in all or a page per post.
    async fn comment_views(
        &self,
        post_ids: Option<&[Uuid]>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: CommentLimit,
    ) -> AppResult<Vec<CommentView>> {
        use comments::Column as C;
        let c = |column: C| Expr::col((comments::Entity, column));
        let mut q = Query::select();
        for (column, alias) in [
            (C::Id, "id"),
            (C::PostId, "post_id"),
            (C::AuthorId, "author_id"),
            (C::Content, "content"),
            (C::CreatedAt, "created_at"),
            (C::UpdatedAt, "updated_at"),
        ] {
            q.expr_as(c(column), alias);
        }
        q.expr_as(
            Expr::col((users::Entity, users::Column::Name)),
            "author_name",
        )
        .from(comments::Entity)
        .inner_join(
            users::Entity,
            Expr::col((users::Entity, users::Column::Id)).equals((comments::Entity, C::AuthorId)),
        );
        if let Some(ids) = post_ids {
            q.and_where(c(C::PostId).is_in(ids.iter().copied()));
        }
        if let Some((at, id)) = after {
            // The first bound lets the index seek to the cursor (see `after_cursor`).
            q.and_where(c(C::CreatedAt).gte(at))
                .and_where(c(C::CreatedAt).gt(at).or(c(C::Id).gt(id)));
        }
        let dialect = self.dialect();
        let statement = match limit {
            CommentLimit::Total(limit) => {
                q.order_by((comments::Entity, C::CreatedAt), Order::Asc)
                    .order_by((comments::Entity, C::Id), Order::Asc);
                paged(dialect.build(&q), limit, 0)
            }
            CommentLimit::PerPost(page) => dialect.build(&page_per(
                q,
                r#""comments"."post_id""#,
                r#""comments"."created_at", "comments"."id""#,
                "post_id",
                page,
            )),
        };
        let decode = |row: &Row<'_, '_>| {
            let author_id = UserId::from_uuid(get(row, "author_id")?);
            Ok(CommentView {
                comment: Comment {
                    id: get_id(row, "id")?,
                    post_id: get_id(row, "post_id")?,
                    author_id,
                    content: get(row, "content")?,
                    created_at: get(row, "created_at")?,
                    updated_at: get(row, "updated_at")?,
                },
                author: AuthorRef {
                    id: author_id,
                    name: get(row, "author_name")?,
                },
            })
        };
        match limit {
            // Up to a page, found by the index from the cursor on.
            CommentLimit::Total(_) => self.read(statement, decode).await,
            // Numbers every comment of the posts to cut each one's page: as many rows as they
            // have comments.
            CommentLimit::PerPost(_) => self.read_offloaded(statement, decode).await,
        }
    }

    /// Tags for a page of summaries: one query, whatever the page size. (Their comment counts
    /// are kept in `posts`, read with the page.)
    async fn decorate(&self, items: &mut [PostSummary]) -> AppResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = items.iter().map(|p| p.id.as_uuid()).collect();
        let mut tag_names = self.tags_of(&ids).await?;
        for item in items {
            item.tags = tag_names.remove(&item.id.as_uuid()).unwrap_or_default();
        }
        Ok(())
    }

    /// Tag names per post, alphabetical, in one query.
    async fn tags_of(&self, post_ids: &[Uuid]) -> AppResult<HashMap<Uuid, Vec<String>>> {
        let mut q = Query::select();
        q.expr_as(
            Expr::col((post_tags::Entity, post_tags::Column::PostId)),
            "post_id",
        )
        .expr_as(Expr::col((tags::Entity, tags::Column::Name)), "name")
        .from(post_tags::Entity)
        .inner_join(
            tags::Entity,
            Expr::col((tags::Entity, tags::Column::Id))
                .equals((post_tags::Entity, post_tags::Column::TagId)),
        )
        .and_where(
            Expr::col((post_tags::Entity, post_tags::Column::PostId))
                .is_in(post_ids.iter().copied()),
        )
        .order_by((tags::Entity, tags::Column::Name), Order::Asc);
        let rows = self
            .read_all(&q, |row| {
                Ok((get::<Uuid>(row, "post_id")?, get::<String>(row, "name")?))
            })
            .await?;
        let mut map: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (post, name) in rows {
            map.entry(post).or_default().push(name);
        }
        Ok(map)
    }

    /// Creates missing tags and links them to the post.
    async fn link_tags(
        conn: &mut TxConn<'_>,
        post_id: Uuid,
        names: &[TagName],
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        // New tags are inserted in name order: two posts creating the same new tags in
        // different orders would each take one name and wait for the other's, a deadlock on
        // PostgreSQL. In one order, the second waits for the first to commit.
        let mut names: Vec<&TagName> = names.iter().collect();
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup_by(|a, b| a.as_str() == b.as_str());
        let new_tags = names.iter().map(|name| tags::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.as_str().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        });
        let insert =
            tags::Entity::insert_many(new_tags).on_conflict_do_nothing_on([tags::Column::Name]);
        conn.execute(conn.build(&insert)).await?;
        let ids = Query::select()
            .column(tags::Column::Id)
            .from(tags::Entity)
            .and_where(tags::Column::Name.is_in(names.iter().map(|name| name.as_str())))
            .to_owned();
        let ids: Vec<Uuid> = conn
            .query(conn.dialect().build(&ids), |row| get(row, "id"))
            .await?;
        let links = ids.into_iter().map(|tag_id| post_tags::ActiveModel {
            post_id: Set(post_id),
            tag_id: Set(tag_id),
            created_at: Set(now),
        });
        conn.execute(conn.build(&post_tags::Entity::insert_many(links)))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl PostRepo for SqlStore {
    async fn insert(&self, tx: &mut dyn Tx, post: &Post, tags: &[TagName]) -> AppResult<()> {
        let mut conn = TxConn::of(tx)?;
        conn.execute(conn.build(&posts::Entity::insert(post_model(post))))
            .await?;
        Self::link_tags(&mut conn, post.id.into(), tags, post.created_at).await
    }

    async fn update(
        &self,
        tx: &mut dyn Tx,
        post: &Post,
        tags: Option<&[TagName]>,
    ) -> AppResult<bool> {
        use posts::Column as P;
        let mut conn = TxConn::of(tx)?;
        let update = posts::Entity::update_many()
            .col_expr(P::Title, Expr::value(post.title.clone()))
            .col_expr(P::Slug, Expr::value(post.slug.as_str().to_owned()))
            .col_expr(P::Content, Expr::value(post.content.clone()))
            .col_expr(P::ContentHtml, Expr::value(post.content_html.clone()))
            .col_expr(P::Excerpt, Expr::value(post.excerpt.clone()))
            .col_expr(P::CoverImageKey, Expr::value(post.cover_image_key.clone()))
            .col_expr(P::Published, Expr::value(post.published))
            .col_expr(P::PublishedAt, Expr::value(post.published_at))
            .col_expr(P::UpdatedAt, Expr::value(post.updated_at))
            .filter(P::Id.eq(post.id.as_uuid()));
        if conn.execute(conn.build(&update)).await? != 1 {
            return Ok(false);
        }
        if let Some(tags) = tags {
            let unlink = post_tags::Entity::delete_many()
                .filter(post_tags::Column::PostId.eq(post.id.as_uuid()));
            conn.execute(conn.build(&unlink)).await?;
            Self::link_tags(&mut conn, post.id.into(), tags, post.updated_at).await?;
        }
        Ok(true)
    }

    async fn delete(&self, tx: &mut dyn Tx, id: PostId) -> AppResult<bool> {
        let result = write(tx, &posts::Entity::delete_by_id(id)).await?;
        Ok(result == 1)
    }

    async fn find(&self, key: &PostKey) -> AppResult<Option<PostDetail>> {
        // One post by id or by slug: two statements whose text never changes, built once.
        static BY_ID: OnceSql = OnceSql::new();
        static BY_SLUG: OnceSql = OnceSql::new();
        let text = match key {
            PostKey::Id(_) => &BY_ID,
            PostKey::Slug(_) => &BY_SLUG,
        };
        let dialect = self.dialect();
        let statement = text.statement(dialect, vec![key_value(key)], || {
            dialect.build(&detail_select(std::slice::from_ref(key), dialect))
        });
        Ok(self.read(statement, detail_from_row(dialect)).await?.pop())
    }

    async fn find_many(&self, keys: &[PostKey]) -> AppResult<Vec<PostDetail>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let dialect = self.dialect();
        let select = detail_select(keys, dialect);
        // A few posts (a request's) on the calling thread; a batch (the cache's reloads, up to
        // 256 posts) off the runtime's threads.
        if keys.len() <= FEW_POSTS {
            self.read_all(&select, detail_from_row(dialect)).await
        } else {
            self.read_offloaded(dialect.build(&select), detail_from_row(dialect))
                .await
        }
    }

    async fn slugs_like(&self, base: &str) -> AppResult<Vec<String>> {
        Ok(posts::Entity::find()
            .filter(
                posts::Column::Slug
                    .eq(base)
                    .or(posts::Column::Slug.like(format!("{base}-%"))),
            )
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|p| p.slug)
            .collect())
    }

    async fn list(&self, query: &PostQuery) -> AppResult<PostPage> {
        let dialect = self.dialect();
        let index_page = match &query.paging {
            PostPaging::Offset(page) if ranks_inside(query) => Some((page.limit, page.offset())),
            _ => None,
        };
        let mut q = Self::posts_select(query, dialect, Shape::Page { ranks: index_page });
        summary_columns(&mut q);
        let counted = dialect.counts_with_ranks() && ranks_inside(query);
        if counted {
            q.expr_as(Expr::cust(r#""matches"."n""#), "matches_total");
        }
        let limit = match &query.paging {
            PostPaging::Offset(page) => page.limit,
            PostPaging::Keyset { after, limit } => {
                if let Some(cursor) = after {
                    Self::after_cursor(&mut q, query, cursor, dialect);
                }
                *limit
            }
        };
        Self::order_posts(&mut q, query, dialect);
        let statement = match &query.paging {
            // The page was cut inside the full-text index.
            PostPaging::Offset(_) if index_page.is_some() => dialect.build(&q),
            PostPaging::Offset(page) => paged(dialect.build(&q), page.limit, page.offset()),
            // One more than asked, to know whether another page follows.
            PostPaging::Keyset { .. } => paged(dialect.build(&q), limit + 1, 0),
        };
        // A search reads the full-text index, and a deep offset walks every post before its
        // page: either can take long. A page near the start is bounded by the index of its
        // order.
        // Each summary, with the number of matches where a search counts them beside its ranks.
        let decode = |row: &Row<'_, '_>| {
            let matches = if counted {
                Some(get::<i64>(row, "matches_total")?)
            } else {
                None
            };
            Ok((summary_from_row(row)?, matches))
        };
        let deep = matches!(&query.paging, PostPaging::Offset(page) if page.offset() > DEEP_OFFSET);
        let rows = if query.search.is_some() || deep {
            self.read_offloaded(statement, decode).await?
        } else {
            self.read(statement, decode).await?
        };
        let total = match &query.paging {
            PostPaging::Keyset { .. } => None,
            PostPaging::Offset(page) => Some(match (&query.search, rows.first()) {
                // Counted beside the page's ranks.
                (Some(_), Some((_, Some(matches)))) if counted => *matches,
                (Some(_), None) if counted && page.offset() == 0 => 0,
                // Counted inside the index; on PostgreSQL also a page past the last match,
                // which holds no row to carry the number.
                (Some(terms), _) if index_page.is_some() => {
                    self.counted(dialect.count_matches(terms)).await?
                }
                // Kept by the database, or else counted.
                _ => match kept_count(query) {
                    Some(kept) => self.kept(kept).await?,
                    None => {
                        let mut count = Self::posts_select(query, dialect, Shape::Count);
                        count.expr_as(Expr::cust("COUNT(*)"), "n");
                        self.counted(count).await?
                    }
                },
            }),
        };
        let total = total.map(|n| u64::try_from(n).unwrap_or(0));
        let mut items: Vec<PostSummary> = rows.into_iter().map(|(summary, _)| summary).collect();
        let has_more = match total {
            Some(total) => match &query.paging {
                PostPaging::Offset(page) => page.offset() + (items.len() as u64) < total,
                PostPaging::Keyset { .. } => false,
            },
            None => items.len() as u64 > limit,
        };
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        self.decorate(&mut items).await?;
        Ok(PostPage {
            items,
            total,
            has_more,
        })
    }

    async fn published_by(&self, author: UserId, limit: u64) -> AppResult<Vec<PostSummary>> {
        let query = PostQuery {
            paging: PostPaging::Keyset { after: None, limit },
            tag: None,
            author: Some(author),
            sort: inkcart_app::page::Sort {
                field: PostSortField::CreatedAt,
                direction: Direction::Desc,
            },
            search: None,
        };
        Ok(self.list(&query).await?.items)
    }

    async fn published_by_authors(
        &self,
        authors: &[UserId],
        page: PageRequest,
    ) -> AppResult<Vec<PostSummary>> {
        if authors.is_empty() {
            return Ok(Vec::new());
        }
        let query = PostQuery {
            paging: PostPaging::Offset(page),
            tag: None,
            author: None,
            sort: inkcart_app::page::Sort {
                field: PostSortField::CreatedAt,
                direction: Direction::Desc,
            },
            search: None,
        };
        let dialect = self.dialect();
        let mut q = Self::posts_select(&query, dialect, Shape::Page { ranks: None });
        summary_columns(&mut q);
        q.and_where(col(posts::Column::AuthorId).is_in(authors.iter().map(UserId::as_uuid)));
        let q = page_per(
            q,
            r#""posts"."author_id""#,
            r#""posts"."created_at" DESC, "posts"."id" DESC"#,
            "author_id",
            page,
        );
        // Numbers every published post of the authors to cut each one's page.
        let mut items = self
            .read_offloaded(dialect.build(&q), |row| summary_from_row(row))
            .await?;
        self.decorate(&mut items).await?;
        Ok(items)
    }

    async fn contents(&self, ids: &[PostId]) -> AppResult<HashMap<PostId, (String, String)>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(posts::Entity::find()
            .filter(posts::Column::Id.is_in(uuids(ids)))
            .all(&self.db.reader)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|p| (PostId::from_uuid(p.id), (p.content, p.content_html)))
            .collect())
    }

    async fn comments_for(
        &self,
        post_ids: &[PostId],
        page: PageRequest,
    ) -> AppResult<Vec<CommentView>> {
        if post_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.comment_views(Some(&uuids(post_ids)), None, CommentLimit::PerPost(page))
            .await
    }

    async fn tags(&self, page: PageRequest) -> AppResult<Vec<(String, i64)>> {
        let statement = paged(
            self.dialect().build(&tags_select()),
            page.limit,
            page.offset(),
        );
        self.read(statement, |r| Ok((get(r, "name")?, get(r, "n")?)))
            .await
    }

    async fn insert_comment(&self, tx: &mut dyn Tx, c: &Comment) -> AppResult<()> {
        write(
            tx,
            &comments::Entity::insert(comments::ActiveModel {
                id: Set(c.id.into()),
                post_id: Set(c.post_id.into()),
                author_id: Set(c.author_id.as_uuid()),
                content: Set(c.content.clone()),
                created_at: Set(c.created_at),
                updated_at: Set(c.updated_at),
            }),
        )
        .await?;
        Ok(())
    }

    async fn find_comment(&self, id: CommentId) -> AppResult<Option<Comment>> {
        Ok(comments::Entity::find_by_id(id)
            .unique(&self.db.reader)
            .await
            .map_err(db_err)?
            .map(|m| Comment {
                id: m.id.into(),
                post_id: m.post_id.into(),
                author_id: UserId::from_uuid(m.author_id),
                content: m.content,
                created_at: m.created_at,
                updated_at: m.updated_at,
            }))
    }

    async fn delete_comment(&self, tx: &mut dyn Tx, id: CommentId) -> AppResult<bool> {
        let result = write(tx, &comments::Entity::delete_by_id(id)).await?;
        Ok(result == 1)
    }

    async fn comments(
        &self,
        post_id: PostId,
        after: Option<(DateTime<Utc>, CommentId)>,
        limit: u64,
    ) -> AppResult<Vec<CommentView>> {
        let after = after.map(|(at, id)| (at, id.as_uuid()));
        self.comment_views(Some(&[post_id.into()]), after, CommentLimit::Total(limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use inkcart_app::ports::PostKey;
    use inkcart_domain::PostId;

    use super::{detail_select, key_value};
    use crate::repo::assert_kept_text_binds;

    #[test]
    fn a_post_read_after_the_first_binds_its_own_key_to_the_kept_statement() {
        let build = |key: &PostKey, dialect: crate::dialect::Dialect| {
            dialect.build(&detail_select(std::slice::from_ref(key), dialect))
        };
        let values = |key: &PostKey| vec![key_value(key)];
        let slugs = ["first-post", "second-post"].map(|s| PostKey::Slug(s.to_owned()));
        assert_kept_text_binds(build, values, &slugs[0], &slugs[1]);
        let ids = [PostId::generate(), PostId::generate()].map(PostKey::Id);
        assert_kept_text_binds(build, values, &ids[0], &ids[1]);
    }
}
