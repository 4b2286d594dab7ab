//! The demo data of `inkcart seed-demo`, on SQLite and on PostgreSQL: the same rows for the same
//! seed, the shop's arithmetic, and the store's lists, lookups, search and kept counts over it
//! (written by the bulk loader, before and after migrations).

use chrono::{DateTime, Utc};
use inkcart::demo::{self, DemoPlan, DemoSummary};
use inkcart_app::page::{Direction, PageRequest, Sort};
use inkcart_app::ports::{
    PostCursor, PostCursorValue, PostKey, PostPaging, PostQuery, PostRepo, PostSortField,
    truncate_to_micros,
};
use inkcart_domain::PostId;
use inkcart_store::testing::{
    self, add_comment, assert_counts_exact, change_post, delete_post, first_page, rows,
};
use inkcart_store::{Backend, Db, SqlStore, db_test};
use sea_orm::ConnectionTrait as _;
use sea_orm::sea_query::{Alias, Expr, ExprTrait as _, Query};
use uuid::Uuid;

async fn seed_demo(db: &Db, until: DateTime<Utc>) -> DemoSummary {
    let plan = DemoPlan {
        users: 120,
        posts: 450,
        products: 30,
        orders: 420,
        seed: 7,
        until,
    };
    demo::seed(db, &plan, "shared-hash", &|_, _, _| {})
        .await
        .unwrap()
}

db_test!(
    async fn demo_data_is_the_same_for_the_same_seed_and_keeps_the_shops_arithmetic(db) {
        let until = Utc::now();
        let summary = seed_demo(&db.db, until).await;
        assert_eq!((summary.users, summary.posts, summary.products, summary.orders), (120, 450, 30, 420));
        assert!(summary.comments > 0 && summary.tags > 0);
        assert!(!summary.sample_slugs.is_empty() && summary.buyers.len() > 100);

        // Every order's total is its line totals less its discount, and its lines are there.
        let broken = rows(
            &db.db,
            "SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
             GROUP BY o.id, o.subtotal_cents, o.discount_cents, o.total_cents \
             HAVING SUM(i.line_total_cents) <> o.subtotal_cents \
                 OR o.subtotal_cents - o.discount_cents <> o.total_cents",
            &["id"],
        )
        .await;
        assert!(broken.is_empty(), "orders whose totals do not add up: {broken:?}");
        let with_lines = rows(&db.db, "SELECT COUNT(DISTINCT order_id) AS n FROM order_items", &["n"]).await;
        assert_eq!(with_lines, vec![vec!["420".to_owned()]]);

        // Seeding a second, fresh database with the same plan makes the very same rows.
        let other = match db.backend() {
            Backend::Sqlite => testing::sqlite().await,
            Backend::Postgres => testing::postgres().await.unwrap(),
        };
        seed_demo(&other.db, until).await;
        let posts = "SELECT slug, title, content_html FROM posts ORDER BY slug";
        let columns = ["slug", "title", "content_html"];
        assert_eq!(rows(&db.db, posts, &columns).await, rows(&other.db, posts, &columns).await);
        let orders = "SELECT id, total_cents FROM orders ORDER BY id";
        assert_eq!(
            rows(&db.db, orders, &["id", "total_cents"]).await,
            rows(&other.db, orders, &["id", "total_cents"]).await
        );

        // A database that already has the demo data is refused, not doubled.
        let again = demo::seed(
            &db.db,
            &DemoPlan { users: 1, posts: 0, products: 0, orders: 0, seed: 7, until },
            "shared-hash",
            &|_, _, _| {},
        )
        .await;
        assert!(again.is_err());
    }
);

/// Every published post, walked page by page with cursors made as the application makes them
/// (the last post's sort value, its time cut to microseconds, and its id).
async fn walk_by_cursor(
    store: &SqlStore,
    field: PostSortField,
    direction: Direction,
) -> Vec<PostId> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let query = PostQuery {
            paging: PostPaging::Keyset {
                after: after.take(),
                limit: 37,
            },
            tag: None,
            author: None,
            sort: Sort { field, direction },
            search: None,
        };
        let page = PostRepo::list(store, &query).await.unwrap();
        seen.extend(page.items.iter().map(|p| p.id));
        let Some(last) = page.items.last().filter(|_| page.has_more) else {
            return seen;
        };
        let value = match field {
            PostSortField::CreatedAt => {
                PostCursorValue::CreatedAt(truncate_to_micros(last.created_at))
            }
            PostSortField::Title => PostCursorValue::Title(last.title.clone()),
        };
        after = Some(PostCursor { value, id: last.id });
    }
}

db_test!(
    async fn cursor_pages_walk_every_published_post_once_in_the_lists_order_even_where_values_tie(db) {
        seed_demo(&db.db, Utc::now()).await;
        let store = SqlStore::new(db.db.clone());
        let everything = |field, direction| PostQuery {
            paging: PostPaging::Offset(PageRequest { page: 1, limit: 10_000 }),
            tag: None,
            author: None,
            sort: Sort { field, direction },
            search: None,
        };
        // Thirty posts in the middle of the list share one timestamp: the id orders them.
        let newest = PostRepo::list(&store, &everything(PostSortField::CreatedAt, Direction::Desc)).await.unwrap();
        assert!(newest.items.len() > 300, "the demo publishes most of its 450 posts");
        let tied: Vec<PostId> = newest.items[90..120].iter().map(|p| p.id).collect();
        let conn = db.db.writer_for_tests();
        let update = Query::update()
            .table(Alias::new("posts"))
            .value(Alias::new("created_at"), newest.items[100].created_at)
            .and_where(Expr::col(Alias::new("id")).is_in(tied.iter().map(PostId::as_uuid)))
            .to_owned();
        conn.execute_raw(conn.get_database_backend().build(&update)).await.unwrap();

        for field in [PostSortField::CreatedAt, PostSortField::Title] {
            for direction in [Direction::Desc, Direction::Asc] {
                let listed: Vec<PostId> = PostRepo::list(&store, &everything(field, direction))
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(|p| p.id)
                    .collect();
                let walked = walk_by_cursor(&store, field, direction).await;
                assert_eq!(walked, listed, "{field:?} {direction:?}");
            }
        }
    }
);

db_test!(
    async fn many_posts_are_found_at_once_by_id_or_slug_each_once_with_author_and_tags(db) {
        seed_demo(&db.db, Utc::now()).await;
        let store = SqlStore::new(db.db.clone());
        let listed = PostRepo::list(
            &store,
            &PostQuery {
                paging: PostPaging::Offset(PageRequest { page: 1, limit: 10_000 }),
                tag: None,
                author: None,
                sort: Sort { field: PostSortField::CreatedAt, direction: Direction::Desc },
                search: None,
            },
        )
        .await
        .unwrap()
        .items;
        // Posts spread over the list, so over many authors: some asked by id, some by slug,
        // one by both, and keys that name nothing.
        let wanted: Vec<_> = listed.iter().step_by(37).take(10).collect();
        assert!(wanted.iter().any(|p| !p.tags.is_empty()), "the demo tags its posts");
        let mut keys: Vec<PostKey> = wanted
            .iter()
            .enumerate()
            .map(|(i, p)| if i % 2 == 0 { PostKey::Id(p.id) } else { PostKey::Slug(p.slug.clone()) })
            .collect();
        keys.push(PostKey::Slug(wanted[0].slug.clone()));
        keys.push(PostKey::Id(Uuid::new_v4().into()));
        keys.push(PostKey::Slug("no-such-post".to_owned()));

        let found = PostRepo::find_many(&store, &keys).await.unwrap();
        let mut found_ids: Vec<PostId> = found.iter().map(|d| d.post.id).collect();
        found_ids.sort_unstable();
        let mut wanted_ids: Vec<PostId> = wanted.iter().map(|p| p.id).collect();
        wanted_ids.sort_unstable();
        assert_eq!(found_ids, wanted_ids);
        for detail in &found {
            let summary = wanted.iter().find(|p| p.id == detail.post.id).unwrap();
            assert_eq!(detail.post.slug.as_str(), summary.slug);
            assert_eq!(detail.post.title, summary.title);
            assert_eq!(detail.author, summary.author);
            assert_eq!(detail.tags, summary.tags);
            assert!(!detail.post.content.is_empty());
        }
        assert!(PostRepo::find_many(&store, &[]).await.unwrap().is_empty());
    }
);

db_test!(
    async fn posts_written_before_the_published_search_migration_are_searched_as_if_each_had_been_written_after_it(db) {
        // The migration m20261201_000001 (published_search) gave PostgreSQL's search its
        // own table of published posts, filled from the posts already there (on SQLite it
        // changes nothing). It is undone with every later one, so that it runs again on posts
        // written before it.
        db.undo_migrations_back_to("m20261201_000001_published_search").await;
        let summary = seed_demo(&db.db, Utc::now()).await;
        db.db.migrate().await.unwrap();
        let store = SqlStore::new(db.db.clone());
        let results = || async {
            let mut found = Vec::new();
            for word in &summary.search_terms {
                let query = PostQuery {
                    paging: PostPaging::Offset(PageRequest { page: 1, limit: 10_000 }),
                    tag: None,
                    author: None,
                    sort: Sort { field: PostSortField::CreatedAt, direction: Direction::Desc },
                    search: Some(vec![word.clone()]),
                };
                let page = PostRepo::list(&store, &query).await.unwrap();
                let ids: Vec<PostId> = page.items.iter().map(|p| p.id).collect();
                assert_eq!(page.total, Some(ids.len() as u64), "{word}");
                found.push((word.clone(), ids));
            }
            found
        };
        let before = results().await;
        assert!(before.iter().filter(|(_, ids)| ids.len() > 1).count() > 10, "{before:?}");

        // Every post written again: the index's triggers put each one back, or leave it out.
        let conn = db.db.writer_for_tests();
        conn.execute_unprepared("UPDATE posts SET title = title").await.unwrap();
        assert_eq!(results().await, before);
    }
);

db_test!(
    async fn seeded_demo_data_is_counted_exactly(db) {
        seed_demo(&db.db, Utc::now()).await;
        assert_counts_exact(&db, &[]).await;
    }
);

db_test!(
    async fn a_database_from_before_the_kept_counts_upgrades_with_exact_counts(db) {
        // Posts, links and comments written before the migration that keeps the counts, which
        // fills the counters from them.
        db.undo_migrations_back_to("m20261203_000003_published_post_and_comment_counters").await;
        seed_demo(&db.db, Utc::now()).await;
        db.db.migrate().await.unwrap();
        assert_counts_exact(&db, &[]).await;
        // And keeps them from then on.
        let store = SqlStore::new(db.db.clone());
        let listed = first_page(&store, None, None, 3).await.items;
        let post = PostRepo::find(&store, &PostKey::Id(listed[0].id)).await.unwrap().unwrap();
        let mut unpublished = post.post.clone();
        unpublished.published = false;
        assert!(change_post(&store, &unpublished, Some(&["alpha"])).await);
        add_comment(&store, listed[1].id, post.post.author_id).await;
        assert!(delete_post(&store, listed[2].id).await);
        assert_counts_exact(&db, &[]).await;
    }
);
