//! PostgreSQL searches a narrow table of the published posts' vectors, not `posts`.
//!
//! The weighted `tsvector` used to be a generated column of `posts`. A search visited every
//! match's row of `posts` to leave out the drafts, and ranked it by reading the vector, which
//! posts' long rows keep out of line (TOAST): about 24 µs a match with everything cached, so a
//! word in 4,500 of a million posts took over 100 ms. `published_search` holds one short row
//! per published post (id, creation time, vector), kept by a trigger, so the vector sits in the
//! row that the GIN index points at: counting and ranking the matches read that table alone,
//! and only the page's posts are read from `posts` (as SQLite's `posts_fts` holds published
//! posts only since `m20261128_000005`). SQLite is not concerned.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use super::execute_on;

pub struct Migration;

/// The name databases recorded when they ran this migration (under its first file name): it
/// must never change, or the migration would run again.
impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_published_search"
    }
}

const UP: &[&str] = &[
    "CREATE TABLE published_search ( \
       post_id uuid PRIMARY KEY REFERENCES posts (id) ON DELETE CASCADE, \
       created_at timestamptz NOT NULL, \
       search_vector tsvector NOT NULL)",
    // Title above content, as before; `ts_rank` reads the weights.
    "CREATE FUNCTION published_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF NEW.published THEN \
         INSERT INTO published_search (post_id, created_at, search_vector) VALUES ( \
           NEW.id, NEW.created_at, \
           setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A') || \
           setweight(to_tsvector('english', coalesce(NEW.content, '')), 'B')) \
         ON CONFLICT (post_id) DO UPDATE SET \
           created_at = EXCLUDED.created_at, search_vector = EXCLUDED.search_vector; \
       ELSE \
         DELETE FROM published_search WHERE post_id = NEW.id; \
       END IF; \
       RETURN NULL; \
     END $$",
    "CREATE TRIGGER published_search_sync \
       AFTER INSERT OR UPDATE OF title, content, published, created_at ON posts \
       FOR EACH ROW EXECUTE FUNCTION published_search_sync()",
    "INSERT INTO published_search (post_id, created_at, search_vector) \
       SELECT id, created_at, search_vector FROM posts WHERE published",
    // Built after the rows are in: one sorted build, not one insert at a time.
    "CREATE INDEX idx_published_search_vector ON published_search USING GIN (search_vector)",
    "DROP INDEX idx_posts_search_vector",
    "ALTER TABLE posts DROP COLUMN search_vector",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER published_search_sync ON posts",
    "DROP FUNCTION published_search_sync()",
    "DROP TABLE published_search",
    "ALTER TABLE posts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ( \
       setweight(to_tsvector('english', coalesce(title, '')), 'A') || \
       setweight(to_tsvector('english', coalesce(content, '')), 'B')) STORED",
    "CREATE INDEX idx_posts_search_vector ON posts USING GIN (search_vector)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on(manager, DbBackend::Postgres, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on(manager, DbBackend::Postgres, DOWN).await
    }
}
