//! Fresh databases for tests: a migrated SQLite file in a temporary directory, or a PostgreSQL
//! database cloned from a migrated template (created once per schema version, under an
//! advisory lock so that concurrent test processes share it).
//!
//! PostgreSQL comes from `INKCART_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached the PostgreSQL half
//! of a test is skipped with a message on stderr, unless `INKCART_REQUIRE_POSTGRES=1` (set by
//! `.ci/run`), which turns the skip into a failure.
//!
//! Beside them, what tests of several crates share: raw rows as text, the first page of the
//! post list, the kept counts held to a fresh `COUNT(*)` ([`assert_counts_exact`]), and writes
//! of posts and comments each in a transaction of its own ([`change_post`], [`delete_post`],
//! [`add_comment`]).

#![expect(
    clippy::expect_used,
    reason = "test support: a test database that cannot be made must fail the test loudly"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{
    Clock as _, Comment, PostPage, PostPaging, PostQuery, PostRepo, PostSortField, Store as _,
    SystemClock,
};
use inkcart_domain::blog::{Post, TagName};
use inkcart_domain::{CommentId, PostId, UserId};
use sea_orm::ConnectionTrait as _;
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Query};
use sea_orm::sqlx::{self, AssertSqlSafe, Connection as _, PgConnection};
use sea_orm_migration::MigratorTrait as _;
use uuid::Uuid;

use crate::dialect::Dialect;
use crate::migration::Migrator;
use crate::{Backend, Db, DbOptions, SqlStore};

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test and is removed afterwards.
#[derive(Debug)]
pub struct TestDb {
    pub db: Db,
    statements: Arc<AtomicU64>,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// How many SQL statements have run on this database since it was made.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }

    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// Where the SQLite file lives (`None` on PostgreSQL).
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        match &self.cleanup {
            Cleanup::Sqlite(dir) => Some(dir.path()),
            Cleanup::Postgres { .. } => None,
        }
    }

    /// Rolls back the newest migration, leaving the database behind the code.
    pub async fn undo_last_migration(&self) {
        Migrator::down(&self.db.writer, Some(1))
            .await
            .expect("roll back a migration");
    }

    /// Rolls back the migration recorded as `name` and every later one, leaving the database as
    /// it was before `name` ran (every migration is applied to a test database).
    pub async fn undo_migrations_back_to(&self, name: &str) {
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        let position = names
            .iter()
            .position(|n| n == name)
            .expect("a migration of this crate");
        let steps = u32::try_from(names.len() - position).expect("a few migrations");
        Migrator::down(&self.db.writer, Some(steps))
            .await
            .expect("roll back migrations");
    }

    /// The URL a second process can use to reach this database.
    pub fn url(&self) -> String {
        match &self.cleanup {
            Cleanup::Sqlite(dir) => format!(
                "sqlite://{}",
                dir.path().join(crate::connect::SQLITE_FILE).display()
            ),
            Cleanup::Postgres { admin_url, name } => replace_db_name(admin_url, name),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                        let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await;
                    }
                });
            })
            .join();
        }
    }
}

fn options(url: Option<String>, data_dir: std::path::PathBuf) -> DbOptions {
    DbOptions {
        url,
        data_dir,
        max_connections: 5,
        acquire_timeout: Duration::from_secs(10),
    }
}

/// A migrated SQLite database in a new temporary directory.
pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut db = Db::connect(&options(None, dir.path().to_path_buf()))
        .await
        .expect("open SQLite");
    let statements = Arc::new(AtomicU64::new(0));
    db.count_statements(&statements);
    db.migrate().await.expect("migrate SQLite");
    TestDb {
        db,
        statements,
        cleanup: Cleanup::Sqlite(dir),
    }
}

fn postgres_required() -> bool {
    std::env::var("INKCART_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

fn admin_url() -> String {
    std::env::var("INKCART_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

fn template_name() -> String {
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in names.join(",").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("inkcart_tmpl_{hash:016x}")
}

/// A migrated PostgreSQL database of its own, or `None` (after a message) when PostgreSQL is
/// not reachable and not required.
pub async fn postgres() -> Option<TestDb> {
    static SKIP_NOTICE: OnceLock<()> = OnceLock::new();
    let admin_url = admin_url();
    let mut admin = match PgConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(err) => {
            assert!(
                !postgres_required(),
                "PostgreSQL is required (INKCART_REQUIRE_POSTGRES=1) but {admin_url} is unreachable: {err}"
            );
            SKIP_NOTICE.get_or_init(|| {
                // Written to the real stderr: the test harness hides `eprintln!` of passing tests.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "\n*** PostgreSQL not reachable at {admin_url} ({err}): skipping the PostgreSQL half of the tests ***\n"
                );
            });
            return None;
        }
    };
    let template = template_name();
    let name = format!("inkcart_test_{}", uuid::Uuid::now_v7().simple());
    // One process at a time builds the template or copies it (a copy fails while another
    // session is connected to the template).
    sqlx::query("SELECT pg_advisory_lock(72430021)")
        .execute(&mut admin)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .expect("look up the template");
    if !exists {
        build_template(&mut admin, &admin_url, &template).await;
    }
    let create = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
    let created = sqlx::raw_sql(AssertSqlSafe(create))
        .execute(&mut admin)
        .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(72430021)")
        .execute(&mut admin)
        .await;
    created.expect("create the test database");
    let _ = admin.close().await;

    let url = replace_db_name(&admin_url, &name);
    let mut db = Db::connect(&options(Some(url), std::env::temp_dir()))
        .await
        .expect("connect to the test database");
    let statements = Arc::new(AtomicU64::new(0));
    db.count_statements(&statements);
    Some(TestDb {
        db,
        statements,
        cleanup: Cleanup::Postgres { admin_url, name },
    })
}

async fn build_template(admin: &mut PgConnection, admin_url: &str, template: &str) {
    let building = format!("{template}_building");
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{building}\""),
    ] {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *admin)
            .await
            .expect("prepare the template");
    }
    let db = Db::connect(&options(
        Some(replace_db_name(admin_url, &building)),
        std::env::temp_dir(),
    ))
    .await
    .expect("connect to the template");
    db.migrate().await.expect("migrate the template");
    db.close().await;
    let rename = format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"");
    sqlx::raw_sql(AssertSqlSafe(rename))
        .execute(&mut *admin)
        .await
        .expect("publish the template");
}

// ---- Shared checks ----

/// The rows of raw SQL run on the writer, each column as text (a UUID, text or an integer).
pub async fn rows(db: &Db, sql: &str, columns: &[&str]) -> Vec<Vec<String>> {
    let conn = db.writer_for_tests();
    let statement = Dialect::of(conn).statement(sql, []);
    let result = conn.query_all_raw(statement).await.expect("run the SQL");
    result
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    row.try_get::<Uuid>("", c)
                        .map(|id| id.to_string())
                        .or_else(|_| row.try_get::<String>("", c))
                        .or_else(|_| row.try_get::<i64>("", c).map(|n| n.to_string()))
                        .or_else(|_| row.try_get::<i32>("", c).map(|n| n.to_string()))
                        .expect("a UUID, text or integer column")
                })
                .collect()
        })
        .collect()
}

/// The first page of a list of published posts, newest first, with its total.
pub async fn first_page(
    store: &SqlStore,
    author: Option<Uuid>,
    tag: Option<&str>,
    limit: u64,
) -> PostPage {
    let query = PostQuery {
        paging: PostPaging::Offset(PageRequest { page: 1, limit }),
        tag: tag.map(str::to_owned),
        author: author.map(UserId::from_uuid),
        sort: Sort {
            field: PostSortField::CreatedAt,
            direction: Direction::Desc,
        },
        search: None,
    };
    PostRepo::list(store, &query).await.expect("list posts")
}

/// A fresh `COUNT(*)` of the published posts, of an author or with a tag (by name) when given.
pub async fn counted_now(db: &Db, author: Option<Uuid>, tag: Option<&str>) -> u64 {
    let posts = || Alias::new("posts");
    let mut q = Query::select();
    q.expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
        .from(posts())
        .and_where(Expr::col((posts(), Alias::new("published"))).eq(true));
    if let Some(author) = author {
        q.and_where(Expr::col((posts(), Alias::new("author_id"))).eq(author));
    }
    if let Some(tag) = tag {
        let (links, tags) = (|| Alias::new("post_tags"), || Alias::new("tags"));
        let mut tagged = Query::select();
        tagged
            .expr(Expr::val(1))
            .from(links())
            .inner_join(
                tags(),
                Expr::col((tags(), Alias::new("id"))).equals((links(), Alias::new("tag_id"))),
            )
            .and_where(
                Expr::col((links(), Alias::new("post_id"))).equals((posts(), Alias::new("id"))),
            )
            .and_where(Expr::col((tags(), Alias::new("name"))).eq(tag));
        q.and_where(Expr::exists(tagged));
    }
    let conn = db.writer_for_tests();
    let rows = conn
        .query_all_raw(Dialect::of(conn).build(&q))
        .await
        .expect("count the published posts");
    let n = rows
        .first()
        .and_then(|row| row.try_get::<i64>("", "n").ok())
        .expect("a count");
    u64::try_from(n).expect("a count is not negative")
}

/// Every kept count against a fresh count of the same rows:
/// - the list's total overall, for every account (deleted ones and one that never existed
///   included, through `extra_authors`) and every tag (and a name that is no tag), against a
///   `COUNT(*)` over the same filter;
/// - the counters themselves: exactly one row per author and tag with published posts, and
///   the tag list they give;
/// - every post's comment count, and the counts the list's summaries carry.
pub async fn assert_counts_exact(db: &TestDb, extra_authors: &[Uuid]) {
    let store = SqlStore::new(db.db.clone());
    let mut authors: Vec<Uuid> = rows(&db.db, "SELECT id FROM users", &["id"])
        .await
        .iter()
        .map(|r| r[0].parse().expect("a user id"))
        .collect();
    authors.extend_from_slice(extra_authors);
    authors.push(Uuid::now_v7());
    let mut tags: Vec<String> = rows(&db.db, "SELECT name FROM tags", &["name"])
        .await
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect();
    tags.push("no-such-tag".to_owned());

    let total = first_page(&store, None, None, 1).await.total;
    assert_eq!(
        total,
        Some(counted_now(&db.db, None, None).await),
        "every published post"
    );
    for author in &authors {
        let total = first_page(&store, Some(*author), None, 1).await.total;
        assert_eq!(
            total,
            Some(counted_now(&db.db, Some(*author), None).await),
            "author {author}"
        );
    }
    for tag in &tags {
        let total = first_page(&store, None, Some(tag), 1).await.total;
        assert_eq!(
            total,
            Some(counted_now(&db.db, None, Some(tag)).await),
            "tag {tag}"
        );
    }

    let kept = rows(
        &db.db,
        "SELECT scope, id, n FROM published_post_counts WHERE scope <> 'all' ORDER BY scope, id",
        &["scope", "id", "n"],
    )
    .await;
    let fresh = rows(
        &db.db,
        "SELECT 'author' AS scope, author_id AS id, COUNT(*) AS n FROM posts WHERE published \
           GROUP BY author_id \
         UNION ALL \
         SELECT 'tag', post_tags.tag_id, COUNT(*) FROM post_tags \
           JOIN posts ON posts.id = post_tags.post_id WHERE posts.published \
           GROUP BY post_tags.tag_id \
         ORDER BY 1, 2",
        &["scope", "id", "n"],
    )
    .await;
    assert_eq!(
        kept, fresh,
        "the counters hold one row per author and tag with published posts"
    );
    let tag_list: Vec<Vec<String>> = PostRepo::tags(
        &store,
        PageRequest {
            page: 1,
            limit: 100,
        },
    )
    .await
    .expect("the tag list")
    .into_iter()
    .map(|(name, n)| vec![name, n.to_string()])
    .collect();
    let fresh_tag_list = rows(
        &db.db,
        "SELECT tags.name AS name, COUNT(*) AS n FROM tags \
           JOIN post_tags ON post_tags.tag_id = tags.id \
           JOIN posts ON posts.id = post_tags.post_id WHERE posts.published \
           GROUP BY tags.id, tags.name ORDER BY n DESC, tags.name ASC",
        &["name", "n"],
    )
    .await;
    assert_eq!(tag_list, fresh_tag_list, "the tag list, most used first");
    if db.backend() == Backend::Postgres {
        let journal = rows(
            &db.db,
            "SELECT COUNT(*) AS n FROM published_post_count_changes",
            &["n"],
        )
        .await;
        assert_eq!(
            journal,
            [["0"]],
            "every transaction applied and removed its changes"
        );
    }

    let wrong = rows(
        &db.db,
        "SELECT id, comment_count FROM posts \
         WHERE comment_count <> (SELECT COUNT(*) FROM comments WHERE comments.post_id = posts.id)",
        &["id", "comment_count"],
    )
    .await;
    assert!(
        wrong.is_empty(),
        "posts whose kept comment count is not their number of comments: {wrong:?}"
    );
    let counted: std::collections::HashMap<Uuid, i64> = rows(
        &db.db,
        "SELECT post_id, COUNT(*) AS n FROM comments GROUP BY post_id",
        &["post_id", "n"],
    )
    .await
    .iter()
    .map(|r| {
        (
            r[0].parse().expect("a post id"),
            r[1].parse().expect("a count"),
        )
    })
    .collect();
    let listed = first_page(&store, None, None, 10_000).await;
    for summary in &listed.items {
        assert_eq!(
            summary.comment_count,
            counted.get(&summary.id.as_uuid()).copied().unwrap_or(0),
            "{}",
            summary.slug
        );
    }
}

/// Declares a test that runs once on SQLite and once on PostgreSQL:
/// `db_test!(async fn name(db) { ... })` makes `name::sqlite` and `name::postgres`, each given a
/// fresh, migrated [`TestDb`].
#[macro_export]
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports, reason = "the test body sees the enclosing module's items")]
            use super::*;

            async fn run($db: $crate::testing::TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::testing::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::testing::postgres().await {
                    run(db).await;
                }
            }
        }
    };
}

/// Writes the post's fields (and replaces its tags when given); whether it was still there.
pub async fn change_post(store: &SqlStore, post: &Post, tags: Option<&[&str]>) -> bool {
    let tags: Option<Vec<TagName>> = tags.map(|names| {
        names
            .iter()
            .map(|n| TagName::parse(n).expect("a valid tag"))
            .collect()
    });
    let mut tx = store.begin().await.expect("begin");
    let found = PostRepo::update(store, tx.as_mut(), post, tags.as_deref())
        .await
        .expect("update the post");
    tx.commit().await.expect("commit");
    found
}

/// Deletes a post; whether it was there.
pub async fn delete_post(store: &SqlStore, id: PostId) -> bool {
    let mut tx = store.begin().await.expect("begin");
    let found = PostRepo::delete(store, tx.as_mut(), id)
        .await
        .expect("delete the post");
    tx.commit().await.expect("commit");
    found
}

/// Adds a comment by `author` to the post.
pub async fn add_comment(store: &SqlStore, post_id: PostId, author: UserId) -> CommentId {
    let now = SystemClock.now();
    let comment = Comment {
        id: CommentId::generate(),
        post_id,
        author_id: author,
        content: "hi".to_owned(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = store.begin().await.expect("begin");
    PostRepo::insert_comment(store, tx.as_mut(), &comment)
        .await
        .expect("insert the comment");
    tx.commit().await.expect("commit");
    comment.id
}
