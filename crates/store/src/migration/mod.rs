//! Migrations, written once with SeaQuery's schema builder so that SQLite and PostgreSQL get
//! the same tables, constraints (named `<table>_<cols>_key`, `<table>_<col>_fkey`) and indexes
//! (`idx_<table>_<cols>`). Versions are timestamps; a migration never changes once released.
//! A file's name says what its migration does and on which engine; the name a database records
//! is the migration's `name()`, which never changes (two files were renamed after release and
//! keep their first names there).

use sea_orm_migration::prelude::*;

mod m20261128_000001_identity;
mod m20261128_000002_shop;
mod m20261128_000003_blog;
mod m20261128_000004_jobs;
mod m20261128_000005_sqlite_fts_of_published_posts;
mod m20261201_000001_postgres_published_search_table;
mod m20261202_000001_email_token_address;
mod m20261203_000002_idempotency_keys_keep_the_result;
mod m20261203_000003_published_post_and_comment_counters;

#[derive(Debug)]
pub struct Migrator;

/// Runs raw statements, one after another, on `backend` only (a migration of one engine's
/// full-text search is a no-op on the other).
async fn execute_on(
    manager: &SchemaManager<'_>,
    backend: sea_orm_migration::sea_orm::DbBackend,
    statements: &[&str],
) -> Result<(), DbErr> {
    if manager.get_database_backend() != backend {
        return Ok(());
    }
    let conn = manager.get_connection();
    for sql in statements {
        conn.execute_unprepared(sql).await?;
    }
    Ok(())
}

/// `CREATE INDEX <name> ON <table> (<cols>)`.
fn index<T, C>(name: &str, table: T, cols: impl IntoIterator<Item = C>) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIndexColumn,
{
    let mut statement = Index::create();
    statement.name(name).table(table);
    for col in cols {
        statement.col(col);
    }
    statement
}

/// A named foreign key `<from_table>.<from_col> → <to_table>.id`.
fn foreign_key<F, T>(
    name: &str,
    from: (F, F),
    to: (T, T),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement
where
    F: IntoIden,
    T: IntoIden,
{
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

/// `CREATE UNIQUE INDEX <name> ON <table> (<cols>)`; the name is the constraint name that
/// conflicts are recognised by.
fn unique_index<T, C>(
    name: &str,
    table: T,
    cols: impl IntoIterator<Item = C>,
) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIndexColumn,
{
    let mut statement = index(name, table, cols);
    statement.unique();
    statement
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_identity::Migration),
            Box::new(m20261128_000002_shop::Migration),
            Box::new(m20261128_000003_blog::Migration),
            Box::new(m20261128_000004_jobs::Migration),
            Box::new(m20261128_000005_sqlite_fts_of_published_posts::Migration),
            Box::new(m20261201_000001_postgres_published_search_table::Migration),
            Box::new(m20261202_000001_email_token_address::Migration),
            Box::new(m20261203_000002_idempotency_keys_keep_the_result::Migration),
            Box::new(m20261203_000003_published_post_and_comment_counters::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_databases_recorded_never_change() {
        // A database knows which migrations it ran by these names: a new name would run a
        // migration again. Only new names may be added, at the end.
        let names: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "m20261128_000001_identity",
                "m20261128_000002_shop",
                "m20261128_000003_blog",
                "m20261128_000004_jobs",
                "m20261128_000005_search_published",
                "m20261201_000001_published_search",
                "m20261202_000001_email_token_address",
                "m20261203_000002_idempotency_keys_keep_the_result",
                "m20261203_000003_published_post_and_comment_counters",
            ]
        );
    }
}
