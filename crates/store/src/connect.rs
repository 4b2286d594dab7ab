use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait as _, DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector,
};
use sea_orm_migration::MigratorTrait as _;

use crate::lite::{LiteReader, LiteWriter, WAL_CHECKPOINT_PAGES, WAL_KEPT_BYTES};
use crate::migration::Migrator;
use crate::pg::{PING_IDLE_AFTER, PgConnections};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `postgres://…` for PostgreSQL; otherwise the SQLite file `<data_dir>/inkcart.db`.
    pub url: Option<String>,
    pub data_dir: std::path::PathBuf,
    /// Size of the pool (PostgreSQL) or of the reader pool (SQLite).
    pub max_connections: u32,
    /// How long to wait for a free connection (and, on SQLite, for a lock).
    pub acquire_timeout: Duration,
}

/// An open database. On SQLite, writes go through a single connection (one writer, so
/// transactions queue in the pool instead of failing with `SQLITE_BUSY`) and reads through a
/// pool, and a file database also has read-only connections used on the calling thread
/// (`lite/mod.rs`); on PostgreSQL both are the same pool, and reads and transactions keep some
/// of its connections out of it (`pg.rs`).
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) reader: DatabaseConnection,
    pub(crate) writer: DatabaseConnection,
    pub(crate) lite: Option<Arc<LiteReader>>,
    /// The thread that runs `Store::transact` work on a SQLite file, in group commits.
    pub(crate) lite_writer: Option<Arc<LiteWriter>>,
    /// The connections PostgreSQL reads and transactions keep out of the pool.
    pub(crate) pg: Option<Arc<PgConnections>>,
    backend: Backend,
}

pub const SQLITE_FILE: &str = "inkcart.db";

impl Db {
    pub async fn connect(options: &DbOptions) -> anyhow::Result<Self> {
        match options.url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Self::connect_postgres(url, options).await
            }
            Some(url) if url.starts_with("sqlite:") => {
                let opts = SqliteConnectOptions::from_str(url)
                    .with_context(|| "DATABASE_URL is not a valid sqlite: URL")?;
                Self::connect_sqlite(opts, options).await
            }
            Some(other) => anyhow::bail!(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got `{}`)",
                other.split(':').next().unwrap_or_default()
            ),
            None => {
                std::fs::create_dir_all(&options.data_dir).with_context(|| {
                    format!("cannot create the data dir {}", options.data_dir.display())
                })?;
                let path = options.data_dir.join(SQLITE_FILE);
                Self::connect_sqlite_file(&path, options).await
            }
        }
    }

    pub async fn connect_sqlite_file(path: &Path, options: &DbOptions) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::new().filename(path);
        Self::connect_sqlite(opts, options).await
    }

    async fn connect_sqlite(
        opts: SqliteConnectOptions,
        options: &DbOptions,
    ) -> anyhow::Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout)
            // Checkpoints happen on the commits of whichever connection writes: the same
            // interval and limit as the writer thread's.
            .pragma("wal_autocheckpoint", WAL_CHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_KEPT_BYTES.to_string());
        // No test before lending a connection: a SQLite connection does not drop, and the ping
        // is a round trip to its thread on every statement.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(opts.clone())
            .await
            .context("cannot open the SQLite database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(opts)
            .await
            .context("cannot open the SQLite database")?;
        // The file SQLite itself opened (none for an in-memory database, which another
        // connection could not share).
        let file: Option<String> = sea_orm::sqlx::query_scalar(
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        )
        .fetch_optional(&reader)
        .await
        .context("cannot read the SQLite database's file name")?;
        let file = file.filter(|f| !f.is_empty());
        let lite = file.as_deref().map(|file| {
            Arc::new(LiteReader::new(
                Path::new(file),
                options.acquire_timeout,
                usize::try_from(options.max_connections).unwrap_or(1),
            ))
        });
        let lite_writer = match file.as_deref() {
            Some(file) => Some(Arc::new(
                LiteWriter::start(Path::new(file), writer.clone(), options.acquire_timeout)
                    .context("cannot start the SQLite writer")?,
            )),
            None => None,
        };
        Ok(Self {
            reader: SqlxSqliteConnector::from_sqlx_sqlite_pool(reader),
            writer: SqlxSqliteConnector::from_sqlx_sqlite_pool(writer),
            lite,
            lite_writer,
            pg: None,
            backend: Backend::Sqlite,
        })
    }

    async fn connect_postgres(url: &str, options: &DbOptions) -> anyhow::Result<Self> {
        // No JIT: PostgreSQL compiles a query whose estimated cost passes `jit_above_cost`,
        // which a search for a common word on a million posts does, and the 20 to 30 ms of
        // compiling are never won back by queries that take milliseconds.
        let opts = PgConnectOptions::from_str(url)
            .context("DATABASE_URL is not a valid postgres URL")?
            .options([("jit", "off")]);
        // A connection that sat idle for a while is tested before it is lent (a server restart
        // or a proxy's idle cut is noticed there, and a dead one is replaced, not handed to a
        // request); one that was in use a moment ago is not. sqlx's default tests every
        // acquire, which is a round trip to the server before every statement outside a
        // transaction: under load that doubled the round trips of a read.
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sea_orm::sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(opts)
            .await
            .context("cannot connect to PostgreSQL")?;
        let pg = PgConnections::new(pool.clone(), options.acquire_timeout).map(Arc::new);
        let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
        Ok(Self {
            reader: conn.clone(),
            writer: conn,
            lite: None,
            lite_writer: None,
            pg,
            backend: Backend::Postgres,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.writer, None)
            .await
            .context("applying migrations failed")
    }

    /// Names of migrations not yet applied (all of them on an empty database).
    pub async fn pending_migrations(&self) -> anyhow::Result<Vec<String>> {
        let pending = Migrator::get_pending_migrations_read_only(&self.reader).await?;
        Ok(pending.iter().map(|m| m.name().to_owned()).collect())
    }

    pub async fn close(self) {
        if let Some(lite) = &self.lite {
            lite.close();
        }
        if let Some(writer) = &self.lite_writer {
            writer.close();
        }
        if let Some(pg) = &self.pg {
            pg.close();
        }
        if self.backend == Backend::Sqlite {
            // The whole WAL copied back and the file emptied: a file whose WAL holds frames is
            // opened by reading every one of them (up to 64 MiB, a fifth of a second cold),
            // after a stop as after a crash. Behind the writer thread's last commit, as it holds
            // this pool's one connection while it commits.
            if let Err(err) = self
                .writer
                .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
            {
                tracing::warn!(error = %err, "the SQLite WAL could not be emptied on closing");
            }
        }
        let _ = self.reader.close().await;
        if self.backend == Backend::Sqlite {
            let _ = self.writer.close().await;
        }
    }
}

#[cfg(feature = "testing")]
impl Db {
    /// Counts every statement run through this handle (and its clones made afterwards).
    pub fn count_statements(&mut self, counter: &std::sync::Arc<std::sync::atomic::AtomicU64>) {
        for conn in [&mut self.reader, &mut self.writer] {
            let counter = counter.clone();
            conn.set_metric_callback(move |_| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        if let Some(writer) = &self.lite_writer {
            writer.count_statements(counter);
        }
        if let Some(lite) = &mut self.lite {
            match Arc::get_mut(lite) {
                Some(lite) => lite.statements = Some(counter.clone()),
                None => panic!("count_statements must be called before the Db is cloned"),
            }
        }
        if let Some(pg) = &mut self.pg {
            match Arc::get_mut(pg) {
                Some(pg) => pg.statements = Some(counter.clone()),
                None => panic!("count_statements must be called before the Db is cloned"),
            }
        }
    }

    /// The write connection, for tests that need raw SQL.
    pub fn writer_for_tests(&self) -> &DatabaseConnection {
        &self.writer
    }
}
