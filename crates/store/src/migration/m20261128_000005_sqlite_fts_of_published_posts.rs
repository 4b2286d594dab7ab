//! SQLite's full-text index holds published posts only.
//!
//! A search on SQLite used to match drafts too and then read every match's row of `posts` to
//! leave them out: for a word in 48,000 of a million posts, 48,000 random reads of the largest
//! table, which made a search take hundreds of milliseconds. With only published posts in the
//! index, a search counts its matches and picks its page of ranks inside the index, and reads
//! the posts of that page only. PostgreSQL is not concerned (its `tsvector` is a column of
//! `posts`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use super::execute_on;
use super::m20261128_000003_blog::{SQLITE_FTS_INSERT_TRIGGER, SQLITE_FTS_UPDATE_TRIGGER};

pub struct Migration;

/// The name databases recorded when they ran this migration (under its first file name): it
/// must never change, or the migration would run again.
impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000005_search_published"
    }
}

const UP: &[&str] = &[
    "DROP TRIGGER posts_search_insert",
    "DROP TRIGGER posts_search_update",
    "CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN \
       INSERT INTO posts_search (post_id) VALUES (new.id); \
       INSERT INTO posts_fts (rowid, title, content) \
         SELECT rowid, new.title, new.content FROM posts_search \
         WHERE post_id = new.id AND new.published; \
     END",
    "CREATE TRIGGER posts_search_update AFTER UPDATE OF title, content, published ON posts BEGIN \
       DELETE FROM posts_fts WHERE rowid = (SELECT rowid FROM posts_search WHERE post_id = new.id); \
       INSERT INTO posts_fts (rowid, title, content) \
         SELECT rowid, new.title, new.content FROM posts_search \
         WHERE post_id = new.id AND new.published; \
     END",
    "DELETE FROM posts_fts WHERE rowid IN ( \
       SELECT posts_search.rowid FROM posts_search \
       JOIN posts ON posts.id = posts_search.post_id WHERE NOT posts.published)",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER posts_search_insert",
    "DROP TRIGGER posts_search_update",
    SQLITE_FTS_INSERT_TRIGGER,
    SQLITE_FTS_UPDATE_TRIGGER,
    "INSERT INTO posts_fts (rowid, title, content) \
       SELECT posts_search.rowid, posts.title, posts.content FROM posts_search \
       JOIN posts ON posts.id = posts_search.post_id WHERE NOT posts.published",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on(manager, DbBackend::Sqlite, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_on(manager, DbBackend::Sqlite, DOWN).await
    }
}
