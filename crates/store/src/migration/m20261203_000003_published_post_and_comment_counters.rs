//! Published posts and comments are counted as they are written, not each time a list is read.
//!
//! An offset page of the post list answers `total`, which was a `COUNT(*)` over every
//! published post (90,000 of them) on every read, and each summary's comment count, which was a
//! `GROUP BY` over the page's comments. Now:
//!
//! - `published_post_counts` keeps the number of published posts overall (scope `all`, the nil
//!   id), per author (`author`, the user's id) and per tag (`tag`, the tag's id): the totals of
//!   the list with no filter, an author filter and a tag filter. A row at zero is removed (the
//!   `all` row stays), so an account or a tag that no longer has published posts leaves nothing
//!   behind.
//! - `posts.comment_count` keeps the number of the post's comments.
//!
//! Triggers keep both, in the transaction of the write, on every path that writes posts, tag
//! links or comments (the repositories, demo seeding, the cascades of a deleted post, account or
//! tag). A post counts as published when `published` is true, whatever `published_at` says and
//! whoever its author is: what the list's `COUNT(*)` counted.
//!
//! SQLite has one writer at a time, so its row triggers update the counters directly.
//! PostgreSQL's writers run side by side: its triggers write each change to
//! `published_post_count_changes`, a journal of the transaction's own rows, and a deferred
//! trigger adds them up at commit and applies them (`n = n + delta` under the row's lock, so no
//! increment is lost) in the order of the counters' keys, after every other lock the
//! transaction takes. Two transactions that change the same counters then lock them in the same
//! order and wait for each other instead of deadlocking, and none holds a counter while it waits
//! for anything else (updating the counters in each statement would, and a busy tag's row would
//! be held for the rest of every transaction that touched it). A link or comment written for a
//! post takes a share lock on the post first, so that a concurrent publication is counted once.
//!
//! The migration fills the counters from the rows already there, in the same transaction as the
//! triggers, so an existing database upgrades with exact counts.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use super::execute_on;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Posts {
    Table,
    CommentCount,
}

#[derive(DeriveIden)]
enum PublishedPostCounts {
    Table,
    Scope,
    Id,
    N,
}

/// The counters from the rows already there. `nil` is the nil UUID as the engine writes it.
fn backfill(nil: &str) -> [String; 2] {
    [
        format!(
            "INSERT INTO published_post_counts (scope, id, n) \
               SELECT 'all', {nil}, COUNT(*) FROM posts WHERE published \
               UNION ALL \
               SELECT 'author', author_id, COUNT(*) FROM posts WHERE published GROUP BY author_id \
               UNION ALL \
               SELECT 'tag', post_tags.tag_id, COUNT(*) FROM post_tags \
                 JOIN posts ON posts.id = post_tags.post_id WHERE posts.published \
                 GROUP BY post_tags.tag_id"
        ),
        "UPDATE posts SET comment_count = counted.n \
           FROM (SELECT post_id, COUNT(*) AS n FROM comments GROUP BY post_id) AS counted \
           WHERE posts.id = counted.post_id"
            .to_owned(),
    ]
}

const SQLITE_NIL: &str = "X'00000000000000000000000000000000'";
const POSTGRES_NIL: &str = "'00000000-0000-0000-0000-000000000000'::uuid";

/// SQLite: row triggers that change the counters at once (one writer at a time). A post's
/// links are counted before the post is deleted: the cascade removes them after the row, when
/// the post can no longer be read to tell whether it was published.
const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER published_post_counts_emptied AFTER UPDATE OF n ON published_post_counts \
       WHEN new.n = 0 AND new.scope <> 'all' BEGIN \
       DELETE FROM published_post_counts WHERE scope = new.scope AND id = new.id; \
     END",
    "CREATE TRIGGER published_post_counts_post_inserted AFTER INSERT ON posts \
       WHEN new.published BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         VALUES ('all', X'00000000000000000000000000000000', 1), ('author', new.author_id, 1) \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    "CREATE TRIGGER published_post_counts_post_updated AFTER UPDATE OF published, author_id ON posts \
       WHEN old.published IS NOT new.published OR old.author_id IS NOT new.author_id BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'all', X'00000000000000000000000000000000', -1 WHERE old.published \
         UNION ALL SELECT 'author', old.author_id, -1 WHERE old.published \
         UNION ALL SELECT 'tag', tag_id, -1 FROM post_tags WHERE post_id = old.id AND old.published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'all', X'00000000000000000000000000000000', 1 WHERE new.published \
         UNION ALL SELECT 'author', new.author_id, 1 WHERE new.published \
         UNION ALL SELECT 'tag', tag_id, 1 FROM post_tags WHERE post_id = new.id AND new.published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    "CREATE TRIGGER published_post_counts_post_deleted BEFORE DELETE ON posts \
       WHEN old.published BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         VALUES ('all', X'00000000000000000000000000000000', -1), ('author', old.author_id, -1) \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'tag', tag_id, -1 FROM post_tags WHERE post_id = old.id \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    // A link deleted with its post finds no post: the post's trigger counted it.
    "CREATE TRIGGER published_post_counts_link_inserted AFTER INSERT ON post_tags BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'tag', new.tag_id, 1 FROM posts WHERE id = new.post_id AND published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    "CREATE TRIGGER published_post_counts_link_deleted AFTER DELETE ON post_tags BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'tag', old.tag_id, -1 FROM posts WHERE id = old.post_id AND published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    "CREATE TRIGGER published_post_counts_link_moved AFTER UPDATE OF post_id, tag_id ON post_tags \
       WHEN old.post_id IS NOT new.post_id OR old.tag_id IS NOT new.tag_id BEGIN \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'tag', old.tag_id, -1 FROM posts WHERE id = old.post_id AND published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
       INSERT INTO published_post_counts (scope, id, n) \
         SELECT 'tag', new.tag_id, 1 FROM posts WHERE id = new.post_id AND published \
         ON CONFLICT (scope, id) DO UPDATE SET n = n + excluded.n; \
     END",
    // A comment deleted with its post finds no post to update.
    "CREATE TRIGGER post_comment_counts_inserted AFTER INSERT ON comments BEGIN \
       UPDATE posts SET comment_count = comment_count + 1 WHERE id = new.post_id; \
     END",
    "CREATE TRIGGER post_comment_counts_deleted AFTER DELETE ON comments BEGIN \
       UPDATE posts SET comment_count = comment_count - 1 WHERE id = old.post_id; \
     END",
    "CREATE TRIGGER post_comment_counts_moved AFTER UPDATE OF post_id ON comments \
       WHEN old.post_id IS NOT new.post_id BEGIN \
       UPDATE posts SET comment_count = comment_count - 1 WHERE id = old.post_id; \
       UPDATE posts SET comment_count = comment_count + 1 WHERE id = new.post_id; \
     END",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER published_post_counts_emptied",
    "DROP TRIGGER published_post_counts_post_inserted",
    "DROP TRIGGER published_post_counts_post_updated",
    "DROP TRIGGER published_post_counts_post_deleted",
    "DROP TRIGGER published_post_counts_link_inserted",
    "DROP TRIGGER published_post_counts_link_deleted",
    "DROP TRIGGER published_post_counts_link_moved",
    "DROP TRIGGER post_comment_counts_inserted",
    "DROP TRIGGER post_comment_counts_deleted",
    "DROP TRIGGER post_comment_counts_moved",
];

/// PostgreSQL: the journal, the deferred trigger that applies it, and the triggers that write
/// it. Inserts and link and comment changes are statement triggers (a seeded batch or a
/// cascade is one journal entry per counter, not one per row); a post's publication, author or
/// deletion is a row trigger, the deletion before the row goes so that its links are still
/// there to count (the cascade removes them after the row, when the post can no longer be
/// read).
const POSTGRES_TRIGGERS: &[&str] = &[
    // The transaction's changes to the counters, until it commits. Rows of other transactions
    // are never seen: each removes its own before it commits.
    "CREATE TABLE published_post_count_changes ( \
       xact xid8 NOT NULL DEFAULT pg_current_xact_id(), \
       scope varchar(6) NOT NULL, \
       id uuid NOT NULL, \
       delta bigint NOT NULL)",
    "CREATE INDEX idx_published_post_count_changes_xact ON published_post_count_changes (xact)",
    // At commit, once per journal row: the first adds the transaction's changes up and applies
    // them in key order; the others find nothing left.
    "CREATE FUNCTION published_post_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$ \
     DECLARE \
       change record; \
     BEGIN \
       FOR change IN \
         SELECT scope, id, SUM(delta)::bigint AS delta FROM published_post_count_changes \
         WHERE xact = pg_current_xact_id() \
         GROUP BY scope, id HAVING SUM(delta) <> 0 ORDER BY scope, id \
       LOOP \
         INSERT INTO published_post_counts AS counts (scope, id, n) \
           VALUES (change.scope, change.id, change.delta) \
           ON CONFLICT (scope, id) DO UPDATE SET n = counts.n + EXCLUDED.n; \
         IF change.scope <> 'all' THEN \
           DELETE FROM published_post_counts \
             WHERE scope = change.scope AND id = change.id AND n = 0; \
         END IF; \
       END LOOP; \
       DELETE FROM published_post_count_changes WHERE xact = pg_current_xact_id(); \
       RETURN NULL; \
     END $$",
    "CREATE CONSTRAINT TRIGGER published_post_counts_apply \
       AFTER INSERT ON published_post_count_changes DEFERRABLE INITIALLY DEFERRED \
       FOR EACH ROW EXECUTE FUNCTION published_post_counts_apply()",
    // New posts have no links yet: a link's own trigger counts it.
    "CREATE FUNCTION published_post_counts_posts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       INSERT INTO published_post_count_changes (scope, id, delta) \
         SELECT 'all', '00000000-0000-0000-0000-000000000000'::uuid, COUNT(*) FROM new_posts \
           WHERE published HAVING COUNT(*) > 0 \
         UNION ALL \
         SELECT 'author', author_id, COUNT(*) FROM new_posts WHERE published GROUP BY author_id; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER published_post_counts_posts_inserted AFTER INSERT ON posts \
       REFERENCING NEW TABLE AS new_posts FOR EACH STATEMENT \
       EXECUTE FUNCTION published_post_counts_posts_inserted()",
    // A post leaves the counters it was in and joins those it is in now.
    "CREATE FUNCTION published_post_counts_post_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF OLD.published THEN \
         INSERT INTO published_post_count_changes (scope, id, delta) \
           VALUES ('all', '00000000-0000-0000-0000-000000000000'::uuid, -1), \
                  ('author', OLD.author_id, -1) \
           UNION ALL \
           SELECT 'tag', tag_id, -1 FROM post_tags WHERE post_id = OLD.id; \
       END IF; \
       IF TG_OP = 'DELETE' THEN \
         RETURN OLD; \
       END IF; \
       IF NEW.published THEN \
         INSERT INTO published_post_count_changes (scope, id, delta) \
           VALUES ('all', '00000000-0000-0000-0000-000000000000'::uuid, 1), \
                  ('author', NEW.author_id, 1) \
           UNION ALL \
           SELECT 'tag', tag_id, 1 FROM post_tags WHERE post_id = NEW.id; \
       END IF; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER published_post_counts_post_updated \
       AFTER UPDATE OF published, author_id ON posts FOR EACH ROW \
       WHEN (OLD.published IS DISTINCT FROM NEW.published \
             OR OLD.author_id IS DISTINCT FROM NEW.author_id) \
       EXECUTE FUNCTION published_post_counts_post_changed()",
    "CREATE TRIGGER published_post_counts_post_deleted BEFORE DELETE ON posts FOR EACH ROW \
       WHEN (OLD.published) EXECUTE FUNCTION published_post_counts_post_changed()",
    // The share lock waits for a transaction that is publishing or unpublishing the post, and
    // the count then reads what it wrote. A link deleted with its post finds no post.
    "CREATE FUNCTION published_post_counts_links_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF TG_OP = 'INSERT' THEN \
         PERFORM 1 FROM posts WHERE id IN (SELECT post_id FROM new_links) ORDER BY id FOR SHARE; \
         INSERT INTO published_post_count_changes (scope, id, delta) \
           SELECT 'tag', links.tag_id, COUNT(*) FROM new_links AS links \
             JOIN posts ON posts.id = links.post_id WHERE posts.published \
             GROUP BY links.tag_id; \
       ELSE \
         PERFORM 1 FROM posts WHERE id IN (SELECT post_id FROM old_links) ORDER BY id FOR SHARE; \
         INSERT INTO published_post_count_changes (scope, id, delta) \
           SELECT 'tag', links.tag_id, -COUNT(*) FROM old_links AS links \
             JOIN posts ON posts.id = links.post_id WHERE posts.published \
             GROUP BY links.tag_id; \
       END IF; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER published_post_counts_links_inserted AFTER INSERT ON post_tags \
       REFERENCING NEW TABLE AS new_links FOR EACH STATEMENT \
       EXECUTE FUNCTION published_post_counts_links_changed()",
    "CREATE TRIGGER published_post_counts_links_deleted AFTER DELETE ON post_tags \
       REFERENCING OLD TABLE AS old_links FOR EACH STATEMENT \
       EXECUTE FUNCTION published_post_counts_links_changed()",
    "CREATE FUNCTION published_post_counts_link_moved() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       PERFORM 1 FROM posts WHERE id IN (OLD.post_id, NEW.post_id) ORDER BY id FOR SHARE; \
       INSERT INTO published_post_count_changes (scope, id, delta) \
         SELECT 'tag', OLD.tag_id, -1 FROM posts WHERE id = OLD.post_id AND published \
         UNION ALL \
         SELECT 'tag', NEW.tag_id, 1 FROM posts WHERE id = NEW.post_id AND published; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER published_post_counts_link_moved \
       AFTER UPDATE OF post_id, tag_id ON post_tags FOR EACH ROW \
       WHEN (OLD.post_id IS DISTINCT FROM NEW.post_id OR OLD.tag_id IS DISTINCT FROM NEW.tag_id) \
       EXECUTE FUNCTION published_post_counts_link_moved()",
    // Comment counts change at once, under the post's row lock (taken in id order when a
    // statement touches several posts); a comment deleted with its post finds no post.
    "CREATE FUNCTION post_comment_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF TG_OP = 'INSERT' THEN \
         PERFORM 1 FROM posts WHERE id IN (SELECT post_id FROM new_comments) \
           ORDER BY id FOR NO KEY UPDATE; \
         UPDATE posts SET comment_count = posts.comment_count + counted.n \
           FROM (SELECT post_id, COUNT(*) AS n FROM new_comments GROUP BY post_id) AS counted \
           WHERE posts.id = counted.post_id; \
       ELSE \
         PERFORM 1 FROM posts WHERE id IN (SELECT post_id FROM old_comments) \
           ORDER BY id FOR NO KEY UPDATE; \
         UPDATE posts SET comment_count = posts.comment_count - counted.n \
           FROM (SELECT post_id, COUNT(*) AS n FROM old_comments GROUP BY post_id) AS counted \
           WHERE posts.id = counted.post_id; \
       END IF; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER post_comment_counts_inserted AFTER INSERT ON comments \
       REFERENCING NEW TABLE AS new_comments FOR EACH STATEMENT \
       EXECUTE FUNCTION post_comment_counts_changed()",
    "CREATE TRIGGER post_comment_counts_deleted AFTER DELETE ON comments \
       REFERENCING OLD TABLE AS old_comments FOR EACH STATEMENT \
       EXECUTE FUNCTION post_comment_counts_changed()",
    "CREATE FUNCTION post_comment_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       PERFORM 1 FROM posts WHERE id IN (OLD.post_id, NEW.post_id) \
         ORDER BY id FOR NO KEY UPDATE; \
       UPDATE posts SET comment_count = comment_count - 1 WHERE id = OLD.post_id; \
       UPDATE posts SET comment_count = comment_count + 1 WHERE id = NEW.post_id; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER post_comment_counts_moved AFTER UPDATE OF post_id ON comments FOR EACH ROW \
       WHEN (OLD.post_id IS DISTINCT FROM NEW.post_id) \
       EXECUTE FUNCTION post_comment_counts_moved()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER post_comment_counts_moved ON comments",
    "DROP TRIGGER post_comment_counts_deleted ON comments",
    "DROP TRIGGER post_comment_counts_inserted ON comments",
    "DROP TRIGGER published_post_counts_link_moved ON post_tags",
    "DROP TRIGGER published_post_counts_links_deleted ON post_tags",
    "DROP TRIGGER published_post_counts_links_inserted ON post_tags",
    "DROP TRIGGER published_post_counts_post_deleted ON posts",
    "DROP TRIGGER published_post_counts_post_updated ON posts",
    "DROP TRIGGER published_post_counts_posts_inserted ON posts",
    "DROP TABLE published_post_count_changes",
    "DROP FUNCTION post_comment_counts_moved()",
    "DROP FUNCTION post_comment_counts_changed()",
    "DROP FUNCTION published_post_counts_link_moved()",
    "DROP FUNCTION published_post_counts_links_changed()",
    "DROP FUNCTION published_post_counts_post_changed()",
    "DROP FUNCTION published_post_counts_posts_inserted()",
    "DROP FUNCTION published_post_counts_apply()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on both engines: no write can fall between the backfill and the
    /// triggers.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Posts::Table)
                    .add_column(
                        ColumnDef::new(Posts::CommentCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PublishedPostCounts::Table)
                    .col(
                        ColumnDef::new(PublishedPostCounts::Scope)
                            .string_len(6)
                            .not_null(),
                    )
                    .col(ColumnDef::new(PublishedPostCounts::Id).uuid().not_null())
                    .col(
                        ColumnDef::new(PublishedPostCounts::N)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(PublishedPostCounts::Scope)
                            .col(PublishedPostCounts::Id),
                    )
                    .to_owned(),
            )
            .await?;
        let (nil, triggers) = match manager.get_database_backend() {
            DbBackend::Postgres => (POSTGRES_NIL, POSTGRES_TRIGGERS),
            _ => (SQLITE_NIL, SQLITE_TRIGGERS),
        };
        let conn = manager.get_connection();
        for sql in backfill(nil) {
            conn.execute_unprepared(&sql).await?;
        }
        for sql in triggers {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on(manager, DbBackend::Sqlite, SQLITE_DOWN).await?;
        execute_on(manager, DbBackend::Postgres, POSTGRES_DOWN).await?;
        manager
            .drop_table(Table::drop().table(PublishedPostCounts::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Posts::Table)
                    .drop_column(Posts::CommentCount)
                    .to_owned(),
            )
            .await
    }
}
