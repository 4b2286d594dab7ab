use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use super::{foreign_key, index, unique_index};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Posts {
    Table,
    Id,
    AuthorId,
    Title,
    Slug,
    Content,
    ContentHtml,
    Excerpt,
    CoverImageKey,
    Published,
    PublishedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tags {
    Table,
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PostTags {
    Table,
    PostId,
    TagId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    PostId,
    AuthorId,
    Content,
    CreatedAt,
    UpdatedAt,
}

/// The triggers that index every post, drafts included. `m20261128_000005` replaces them with
/// ones that index published posts only; its `down` puts these back.
pub(super) const SQLITE_FTS_INSERT_TRIGGER: &str = "CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN \
       INSERT INTO posts_search (post_id) VALUES (new.id); \
       INSERT INTO posts_fts (rowid, title, content) \
         VALUES ((SELECT rowid FROM posts_search WHERE post_id = new.id), new.title, new.content); \
     END";
pub(super) const SQLITE_FTS_UPDATE_TRIGGER: &str = "CREATE TRIGGER posts_search_update AFTER UPDATE OF title, content ON posts BEGIN \
       UPDATE posts_fts SET title = new.title, content = new.content \
         WHERE rowid = (SELECT rowid FROM posts_search WHERE post_id = new.id); \
     END";

/// Full-text search on SQLite: an FTS5 table (Porter stemming, like PostgreSQL's `english`
/// configuration) kept in sync by triggers. FTS5 rows are keyed by an integer, so
/// `posts_search` maps each post id to one (a post's own rowid is not stable across VACUUM).
const SQLITE_FTS: &[&str] = &[
    "CREATE TABLE posts_search (rowid INTEGER PRIMARY KEY, post_id BLOB NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE posts_fts USING fts5(title, content, tokenize = 'porter unicode61 remove_diacritics 2')",
    SQLITE_FTS_INSERT_TRIGGER,
    SQLITE_FTS_UPDATE_TRIGGER,
    "CREATE TRIGGER posts_search_delete AFTER DELETE ON posts BEGIN \
       DELETE FROM posts_fts WHERE rowid = (SELECT rowid FROM posts_search WHERE post_id = old.id); \
       DELETE FROM posts_search WHERE post_id = old.id; \
     END",
];

/// Full-text search on PostgreSQL: a generated, weighted `tsvector` (title above content) with
/// a GIN index; the database keeps it in sync.
const POSTGRES_FTS: &[&str] = &[
    "ALTER TABLE posts ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ( \
       setweight(to_tsvector('english', coalesce(title, '')), 'A') || \
       setweight(to_tsvector('english', coalesce(content, '')), 'B')) STORED",
    "CREATE INDEX idx_posts_search_vector ON posts USING GIN (search_vector)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .col(ColumnDef::new(Posts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Posts::AuthorId).uuid().not_null())
                    .col(ColumnDef::new(Posts::Title).string_len(200).not_null())
                    .col(ColumnDef::new(Posts::Slug).string_len(100).not_null())
                    .col(ColumnDef::new(Posts::Content).text().not_null())
                    .col(ColumnDef::new(Posts::ContentHtml).text().not_null())
                    .col(ColumnDef::new(Posts::Excerpt).text().not_null())
                    .col(ColumnDef::new(Posts::CoverImageKey).string_len(255).null())
                    .col(
                        ColumnDef::new(Posts::Published)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Posts::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Posts::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Posts::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut foreign_key(
                        "posts_author_id_fkey",
                        (Posts::Table, Posts::AuthorId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            unique_index("posts_slug_key", Posts::Table, [Posts::Slug]),
            index(
                "idx_posts_author_id_created_at",
                Posts::Table,
                [Posts::AuthorId, Posts::CreatedAt],
            ),
            index(
                "idx_posts_published_created_at",
                Posts::Table,
                [Posts::Published, Posts::CreatedAt, Posts::Id],
            ),
            index(
                "idx_posts_published_title",
                Posts::Table,
                [Posts::Published, Posts::Title, Posts::Id],
            ),
        ] {
            manager.create_index(statement).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Tags::Table)
                    .col(ColumnDef::new(Tags::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tags::Name).string_len(50).not_null())
                    .col(
                        ColumnDef::new(Tags::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tags::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(unique_index("tags_name_key", Tags::Table, [Tags::Name]))
            .await?;

        // A link table: its key is the pair, so it has no id of its own.
        manager
            .create_table(
                Table::create()
                    .table(PostTags::Table)
                    .col(ColumnDef::new(PostTags::PostId).uuid().not_null())
                    .col(ColumnDef::new(PostTags::TagId).uuid().not_null())
                    .col(
                        ColumnDef::new(PostTags::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(PostTags::PostId).col(PostTags::TagId))
                    .foreign_key(&mut foreign_key(
                        "post_tags_post_id_fkey",
                        (PostTags::Table, PostTags::PostId),
                        (Posts::Table, Posts::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "post_tags_tag_id_fkey",
                        (PostTags::Table, PostTags::TagId),
                        (Tags::Table, Tags::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_post_tags_tag_id",
                PostTags::Table,
                [PostTags::TagId, PostTags::PostId],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Comments::Table)
                    .col(ColumnDef::new(Comments::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Comments::PostId).uuid().not_null())
                    .col(ColumnDef::new(Comments::AuthorId).uuid().not_null())
                    .col(ColumnDef::new(Comments::Content).text().not_null())
                    .col(
                        ColumnDef::new(Comments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Comments::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(&mut foreign_key(
                        "comments_post_id_fkey",
                        (Comments::Table, Comments::PostId),
                        (Posts::Table, Posts::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "comments_author_id_fkey",
                        (Comments::Table, Comments::AuthorId),
                        (Users::Table, Users::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index(
                "idx_comments_post_id_created_at",
                Comments::Table,
                [Comments::PostId, Comments::CreatedAt, Comments::Id],
            ),
            index(
                "idx_comments_author_id",
                Comments::Table,
                [Comments::AuthorId],
            ),
        ] {
            manager.create_index(statement).await?;
        }

        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => POSTGRES_FTS,
            _ => SQLITE_FTS,
        };
        let conn = manager.get_connection();
        for sql in statements {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            let conn = manager.get_connection();
            for sql in [
                "DROP TRIGGER IF EXISTS posts_search_insert",
                "DROP TRIGGER IF EXISTS posts_search_update",
                "DROP TRIGGER IF EXISTS posts_search_delete",
                "DROP TABLE IF EXISTS posts_fts",
                "DROP TABLE IF EXISTS posts_search",
            ] {
                conn.execute_unprepared(sql).await?;
            }
        }
        for table in [
            Comments::Table.into_iden(),
            PostTags::Table.into_iden(),
            Tags::Table.into_iden(),
            Posts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
