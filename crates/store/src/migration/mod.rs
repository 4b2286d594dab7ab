//! Migrations, written once with SeaQuery's schema builder so that SQLite and PostgreSQL get
//! the same tables, constraints (named `<table>_<cols>_key`, `<table>_<col>_fkey`) and indexes
//! (`idx_<table>_<cols>`). Versions are timestamps; a migration never changes once released.

use sea_orm_migration::prelude::*;

mod m20261128_000001_identity;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261128_000001_identity::Migration)]
    }
}
