//! Reads of a SQLite database on the calling thread.
//!
//! sqlx runs each SQLite connection on a thread of its own: every statement is handed to that
//! thread and its rows handed back, a switch between threads each way. A post read from the
//! database spent a third of the server's CPU in the kernel's scheduler for those hand-offs and
//! a few per cent in SQLite itself. The reads here run where they are asked for, on a
//! connection taken from a small pool of idle ones, with their prepared statements kept on the
//! connection: no hand-off at all.
//!
//! Only reads that an index bounds run on the calling thread (a post by key, a page of a list
//! near its start, its tags and kept count, a page of one post's comments, users and products by
//! id): they take tens of microseconds, within what a runtime thread may spend between two
//! awaits. A read that can take long (a full-text search, a count of every post a filter
//! selects, a deep offset, a batch) runs on one of the runtime's blocking threads instead, so
//! that it never holds a runtime thread (`SqlStore::read_offloaded`, [`LiteReader::read_blocking`]):
//! one hand-off there and one back, where sqlx's connection thread hands every row over on its
//! own. It has connections of its own, which do not map the file ([`Reads`]). Writes never come
//! here: the connections are opened read-only.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use inkcart_app::{AppError, AppResult};
use rusqlite::types::{FromSql, FromSqlResult, Value as LiteValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::sea_query::Value;
use sea_orm::{QueryResult, Statement, TryGetable};
use tokio::sync::Semaphore;
use uuid::Uuid;

mod checkpoint;
mod writer;

pub(crate) use writer::{LiteTx, LiteWriter};

/// Statements kept prepared per connection: every read statement of the store fits, with
/// room for the pages whose size or offset differ (written into their SQL, see `paged`).
pub(crate) const PREPARED_PER_CONNECTION: usize = 128;

/// WAL pages past which a commit copies the WAL back into the database file itself (SQLite's
/// default is 1,000). The checkpoint thread does it on a clock long before (`checkpoint.rs`);
/// this is the bound if it falls behind: 64 MiB of the default 4 KiB pages.
pub(crate) const WAL_CHECKPOINT_PAGES: u32 = 16_384;

/// The size the WAL file is cut back to when it starts over after a checkpoint: it may grow
/// past [`WAL_CHECKPOINT_PAGES`] while a long read keeps a checkpoint from finishing, and
/// without a limit it would keep that size on disk.
pub(crate) const WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;

/// How much of the file a read connection maps into memory and reads in place, instead of a
/// `pread` and a copy for every page missing from its own cache (docs/decisions.md, "SQLite
/// reads that an index bounds run on the calling thread").
pub(crate) const READ_MAPPED_BYTES: u64 = 1 << 30;

/// Read-only connections to one SQLite file, idle ones kept for the next read.
pub(crate) struct LiteReader {
    path: PathBuf,
    busy_timeout: Duration,
    /// At most this many idle connections of each kind are kept; more are opened while that
    /// many reads run at once (one per runtime thread at most, as a read never awaits) and
    /// closed afterwards.
    keep: usize,
    /// Connections that map the file, for the reads on the calling thread.
    idle: Mutex<Vec<Connection>>,
    /// Connections that read through SQLite's own page cache, for the reads on blocking threads
    /// ([`Reads::Long`]).
    idle_unmapped: Mutex<Vec<Connection>>,
    /// Reads on blocking threads ([`LiteReader::read_blocking`]) that may run at once, as many as
    /// the SQLite reading pool has connections: each holds a connection for as long as it runs.
    blocking: Arc<Semaphore>,
    /// Set by [`LiteReader::close`], as closing sqlx's pools: every later read is refused.
    closed: AtomicBool,
    /// Counts statements, for tests that check how many a request runs.
    pub(crate) statements: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for LiteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteReader")
            .field("path", &self.path)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

impl LiteReader {
    pub(crate) fn new(path: &Path, busy_timeout: Duration, keep: usize) -> Self {
        Self {
            path: path.to_path_buf(),
            busy_timeout,
            keep: keep.max(1),
            idle: Mutex::new(Vec::new()),
            idle_unmapped: Mutex::new(Vec::new()),
            blocking: Arc::new(Semaphore::new(keep.max(1))),
            closed: AtomicBool::new(false),
            statements: None,
        }
    }

    /// Closes the idle connections and refuses every later read (as unavailable).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for idle in [&self.idle, &self.idle_unmapped] {
            if let Ok(mut idle) = idle.lock() {
                idle.clear();
            }
        }
    }

    fn open(&self, reads: Reads) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(PREPARED_PER_CONNECTION);
        if reads == Reads::Short {
            conn.execute_batch(&format!("PRAGMA mmap_size = {READ_MAPPED_BYTES};"))?;
        }
        Ok(conn)
    }

    /// Every row of a statement built for SQLite, each decoded by `decode` where it lies
    /// (no copy of a value before its decoding).
    pub(crate) fn read<T>(
        &self,
        statement: &Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
    ) -> AppResult<Vec<T>> {
        self.with_connection(Reads::Short, |conn| run(conn, statement, decode))
    }

    /// Every row of a statement that may take long, read on one of the runtime's blocking
    /// threads and decoded by `decode` back on the calling one, at most as many at once as the
    /// reading pool has connections (waiting up to the busy timeout for a turn, then
    /// unavailable). A read whose caller gives up runs to its end and frees its turn then.
    pub(crate) async fn read_blocking<T>(
        self: &Arc<Self>,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
    ) -> AppResult<Vec<T>> {
        let unavailable = || AppError::Unavailable("Database unavailable".to_owned());
        let turn = tokio::time::timeout(
            self.busy_timeout,
            Arc::clone(&self.blocking).acquire_owned(),
        )
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
        let reader = Arc::clone(self);
        let (names, rows) = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            reader.with_connection(Reads::Long, |conn| run_owned(conn, &statement))
        })
        .await
        .map_err(|e| AppError::internal(format!("a database read ended abnormally: {e}")))??;
        rows.iter()
            .map(|values| {
                decode(&Row::Owned {
                    values,
                    names: &names,
                })
            })
            .collect()
    }

    /// Runs `read` on an idle connection (or a new one), kept afterwards for the next read.
    fn with_connection<R>(
        &self,
        reads: Reads,
        read: impl FnOnce(&Connection) -> AppResult<R>,
    ) -> AppResult<R> {
        if let Some(counter) = &self.statements {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Err(AppError::Unavailable("Database unavailable".to_owned()));
        }
        let pool = match reads {
            Reads::Short => &self.idle,
            Reads::Long => &self.idle_unmapped,
        };
        let taken = pool.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(conn) => conn,
            None => self.open(reads).map_err(lite_err)?,
        };
        let done = read(&conn);
        // A connection whose statement failed is closed rather than kept: it may hold a
        // transaction or a lock that the failure left open.
        if done.is_ok()
            && !self.closed.load(Ordering::SeqCst)
            && let Ok(mut idle) = pool.lock()
            && idle.len() < self.keep
        {
            idle.push(conn);
        }
        done
    }
}

/// The names of a statement's columns, in order.
type Names = Vec<Box<str>>;

/// Which reads a connection serves.
///
/// Short ones map the file ([`READ_MAPPED_BYTES`]). Long ones read through SQLite's own page cache
/// (2 MiB a connection): a search walks much of the full-text index, and every connection maps
/// the file on its own, so each counted the pages it had touched in the process's resident
/// memory (twenty searches took it from 84 to 243 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    Short,
    Long,
}

/// Runs a statement built for SQLite on `conn`, each row decoded where it lies.
pub(crate) fn run<T>(
    conn: &Connection,
    statement: &Statement,
    decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
) -> AppResult<Vec<T>> {
    let mut prepared = prepare(conn, statement)?;
    let names: Names = prepared.column_names().into_iter().map(Box::from).collect();
    let mut rows = prepared.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(lite_err)? {
        out.push(decode(&Row::Lite { row, names: &names })?);
    }
    Ok(out)
}

/// Runs a statement built for SQLite on `conn`: the names of its columns and every row's
/// values, copied out of SQLite to be decoded on another thread.
fn run_owned(conn: &Connection, statement: &Statement) -> AppResult<(Names, Vec<Vec<LiteValue>>)> {
    let mut prepared = prepare(conn, statement)?;
    let names: Names = prepared.column_names().into_iter().map(Box::from).collect();
    let width = names.len();
    let mut rows = prepared.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(lite_err)? {
        let values = (0..width)
            .map(|i| row.get::<_, LiteValue>(i))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(lite_err)?;
        out.push(values);
    }
    Ok((names, out))
}

/// Runs a statement that returns no rows on `conn`; the number of rows it changed.
pub(crate) fn execute(conn: &Connection, statement: &Statement) -> AppResult<u64> {
    let changed = prepare(conn, statement)?.raw_execute().map_err(lite_err)?;
    Ok(u64::try_from(changed).unwrap_or(u64::MAX))
}

/// The statement prepared (or taken from the connection's cache) with its parameters bound.
fn prepare<'c>(
    conn: &'c Connection,
    statement: &Statement,
) -> AppResult<rusqlite::CachedStatement<'c>> {
    let mut prepared = conn.prepare_cached(&statement.sql).map_err(lite_err)?;
    if let Some(values) = &statement.values {
        for (i, value) in values.0.iter().enumerate() {
            prepared
                .raw_bind_parameter(i + 1, lite_value(value).map_err(lite_err)?)
                .map_err(lite_err)?;
        }
    }
    Ok(prepared)
}

/// A parameter as sqlx binds it on SQLite (through sea-query), so that a value compares with
/// the stored ones: a UUID as its 16 bytes, a timestamp as RFC 3339 text with `+00:00`.
fn lite_value(value: &Value) -> rusqlite::Result<LiteValue> {
    let unsupported = || {
        rusqlite::Error::ToSqlConversionFailure(
            format!("no SQLite binding for the parameter {value:?}").into(),
        )
    };
    let int = |v: Option<i64>| v.map_or(LiteValue::Null, LiteValue::Integer);
    Ok(match value {
        Value::Bool(v) => int(v.map(i64::from)),
        Value::TinyInt(v) => int(v.map(i64::from)),
        Value::SmallInt(v) => int(v.map(i64::from)),
        Value::Int(v) => int(v.map(i64::from)),
        Value::BigInt(v) => int(*v),
        Value::TinyUnsigned(v) => int(v.map(i64::from)),
        Value::SmallUnsigned(v) => int(v.map(i64::from)),
        Value::Unsigned(v) => int(v.map(i64::from)),
        Value::BigUnsigned(v) => match v {
            Some(v) => LiteValue::Integer(i64::try_from(*v).map_err(|_| unsupported())?),
            None => LiteValue::Null,
        },
        Value::Float(v) => v.map_or(LiteValue::Null, |v| LiteValue::Real(f64::from(v))),
        Value::Double(v) => v.map_or(LiteValue::Null, LiteValue::Real),
        Value::String(v) => v.clone().map_or(LiteValue::Null, LiteValue::Text),
        Value::Char(v) => v.map_or(LiteValue::Null, |c| LiteValue::Text(c.to_string())),
        Value::Bytes(v) => v.clone().map_or(LiteValue::Null, LiteValue::Blob),
        Value::Uuid(v) => v.map_or(LiteValue::Null, |id| {
            LiteValue::Blob(id.as_bytes().to_vec())
        }),
        Value::ChronoDateTimeUtc(v) => v.map_or(LiteValue::Null, |at| {
            LiteValue::Text(at.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        Value::Json(v) => match v {
            Some(json) => LiteValue::Text(json.to_string()),
            None => LiteValue::Null,
        },
        _ => return Err(unsupported()),
    })
}

/// Busy (a checkpoint or recovery holding the file) is the database being unavailable, as
/// sqlx's acquire timeout is; a known unique violation is the conflict it means (as through
/// sqlx, `db_err`); anything else is internal.
pub(crate) fn lite_err(err: rusqlite::Error) -> AppError {
    use rusqlite::ErrorCode as Code;
    if let rusqlite::Error::SqliteFailure(failure, Some(message)) = &err
        && failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        && let Some(conflict) = crate::error::unique_conflict(message)
    {
        return conflict;
    }
    match err.sqlite_error_code() {
        Some(Code::DatabaseBusy | Code::DatabaseLocked | Code::CannotOpen) => {
            tracing::error!(error = %err, "database unavailable");
            AppError::Unavailable("Database unavailable".to_owned())
        }
        _ => AppError::Internal(anyhow::Error::new(err).context("database error")),
    }
}

/// A row of any kind of read, as a decoder sees it: sea-orm's (PostgreSQL, and SQLite through
/// sqlx) or one of [`LiteReader`]'s, where it lies or copied out, with the names of its
/// statement's columns.
pub(crate) enum Row<'a, 's> {
    Sea(&'a QueryResult),
    Lite {
        row: &'a rusqlite::Row<'s>,
        names: &'a [Box<str>],
    },
    Owned {
        values: &'a [LiteValue],
        names: &'a [Box<str>],
    },
}

/// A value a column holds, readable from both kinds of row.
pub(crate) trait Column: TryGetable + Sized {
    fn from_lite(value: ValueRef<'_>) -> FromSqlResult<Self>;
}

/// Types whose rusqlite decoding reads what sqlx wrote.
macro_rules! column_as_from_sql {
    ($($t:ty),* $(,)?) => {
        $(impl Column for $t {
            fn from_lite(value: ValueRef<'_>) -> FromSqlResult<Self> {
                <$t as FromSql>::column_result(value)
            }
        })*
    };
}

column_as_from_sql!(String, i64, i32, bool, Uuid);

/// sqlx writes RFC 3339 (`2026-12-03T17:04:05.123456+00:00`), which chrono's RFC 3339 parser
/// reads directly; rusqlite's own decoding interprets a format string on every value (a
/// twentieth of a list page's CPU). Anything else falls back to rusqlite's.
impl Column for DateTime<Utc> {
    fn from_lite(value: ValueRef<'_>) -> FromSqlResult<Self> {
        if let ValueRef::Text(text) = value
            && let Ok(text) = std::str::from_utf8(text)
            && let Ok(at) = DateTime::parse_from_rfc3339(text)
        {
            return Ok(at.with_timezone(&Utc));
        }
        <DateTime<Utc> as FromSql>::column_result(value)
    }
}

impl<T: Column> Column for Option<T>
where
    Option<T>: TryGetable,
{
    fn from_lite(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Null => Ok(None),
            value => T::from_lite(value).map(Some),
        }
    }
}

/// Something rows are read from by column name.
pub(crate) trait Columns {
    fn column<T: Column>(&self, name: &str) -> AppResult<T>;
}

impl Columns for QueryResult {
    fn column<T: Column>(&self, name: &str) -> AppResult<T> {
        self.try_get::<T>("", name)
            .map_err(|e| AppError::internal(format!("reading column {name}: {e}")))
    }
}

impl Columns for Row<'_, '_> {
    fn column<T: Column>(&self, name: &str) -> AppResult<T> {
        let index = |names: &[Box<str>]| names.iter().position(|c| &**c == name);
        let value = match self {
            Self::Sea(row) => return row.column(name),
            Self::Lite { row, names } => index(names).and_then(|i| row.get_ref(i).ok()),
            Self::Owned { values, names } => {
                index(names).and_then(|i| values.get(i).map(ValueRef::from))
            }
        }
        .ok_or_else(|| AppError::internal(format!("reading column {name}: no such column")))?;
        T::from_lite(value).map_err(|e| AppError::internal(format!("reading column {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed expectation is a failed test"
    )]

    use chrono::{DateTime, TimeZone as _, Utc};
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
    use uuid::Uuid;

    use super::{Columns as _, LiteReader};
    use crate::testing::{TestDb, sqlite};

    fn sql(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    async fn with_table() -> TestDb {
        let db = sqlite().await;
        db.db
            .writer_for_tests()
            .execute_unprepared(
                "CREATE TABLE t (id BLOB, at TEXT, n INTEGER, flag BOOLEAN, note TEXT)",
            )
            .await
            .unwrap();
        db
    }

    /// The `n` of a count read through the calling-thread reader.
    fn rows(db: &TestDb, count: &Statement) -> i64 {
        lite(db).read(count, |row| row.column::<i64>("n")).unwrap()[0]
    }

    /// A row of `t`: id, at, n, flag, note.
    type Whole = (Uuid, DateTime<Utc>, i64, bool, Option<String>);

    /// Every column of a row of `t`, typed.
    fn whole_row(row: &super::Row<'_, '_>) -> inkcart_app::AppResult<Whole> {
        Ok((
            row.column::<Uuid>("id")?,
            row.column::<DateTime<Utc>>("at")?,
            row.column::<i64>("n")?,
            row.column::<bool>("flag")?,
            row.column::<Option<String>>("note")?,
        ))
    }

    fn lite(db: &TestDb) -> &LiteReader {
        db.db
            .lite
            .as_deref()
            .expect("a SQLite file has calling-thread readers")
    }

    #[tokio::test]
    async fn values_bound_here_match_what_sqlx_stored_and_read_back_as_the_same_types() {
        let db = with_table().await;
        let id = Uuid::now_v7();
        // Microseconds, a fraction sqlx writes in full, and a whole second, which it writes
        // without one: both must compare equal as text.
        let times: [DateTime<Utc>; 2] = [
            Utc.with_ymd_and_hms(2026, 12, 3, 17, 4, 5).unwrap()
                + chrono::Duration::microseconds(123_456),
            Utc.with_ymd_and_hms(2026, 12, 3, 17, 4, 6).unwrap(),
        ];
        for (n, at) in times.iter().enumerate() {
            db.db
                .writer_for_tests()
                .execute_raw(sql(
                    "INSERT INTO t (id, at, n, flag, note) VALUES (?, ?, ?, ?, ?)",
                    vec![
                        id.into(),
                        (*at).into(),
                        i64::try_from(n).unwrap().into(),
                        true.into(),
                        None::<String>.into(),
                    ],
                ))
                .await
                .unwrap();
        }
        for (n, at) in times.iter().enumerate() {
            let rows = lite(&db)
                .read(
                    &sql(
                        "SELECT id, at, n, flag, note FROM t WHERE id = ? AND at = ? AND flag = ?",
                        vec![id.into(), (*at).into(), true.into()],
                    ),
                    |row| {
                        assert!(
                            row.column::<i64>("missing").is_err(),
                            "an unknown column is an error"
                        );
                        whole_row(row)
                    },
                )
                .unwrap();
            assert_eq!(
                rows,
                vec![(id, *at, i64::try_from(n).unwrap(), true, None)],
                "the row stored at {at} is found by its values and reads back whole"
            );
        }
    }

    #[tokio::test]
    async fn a_kept_connection_sees_writes_committed_after_its_last_read() {
        let db = with_table().await;
        let count = sql("SELECT COUNT(*) AS n FROM t", vec![]);
        assert_eq!(rows(&db, &count), 0);
        db.db
            .writer_for_tests()
            .execute_unprepared("INSERT INTO t (n) VALUES (1)")
            .await
            .unwrap();
        assert_eq!(rows(&db, &count), 1);
    }

    #[tokio::test]
    async fn a_closed_reader_answers_unavailable() {
        let db = with_table().await;
        let count = sql("SELECT COUNT(*) AS n FROM t", vec![]);
        assert_eq!(rows(&db, &count), 0);
        lite(&db).close();
        assert!(matches!(
            lite(&db).read(&count, |row| row.column::<i64>("n")),
            Err(inkcart_app::AppError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_read_on_a_blocking_thread_gives_the_rows_the_calling_thread_reads() {
        let db = with_table().await;
        let id = Uuid::now_v7();
        let at = Utc.with_ymd_and_hms(2026, 12, 5, 9, 30, 0).unwrap();
        for (n, note) in [(1, Some("one")), (2, None)] {
            db.db
                .writer_for_tests()
                .execute_raw(sql(
                    "INSERT INTO t (id, at, n, flag, note) VALUES (?, ?, ?, ?, ?)",
                    vec![id.into(), at.into(), n.into(), true.into(), note.into()],
                ))
                .await
                .unwrap();
        }
        let select = sql(
            "SELECT id, at, n, flag, note FROM t WHERE id = ? ORDER BY n",
            vec![id.into()],
        );
        let here = lite(&db).read(&select, whole_row).unwrap();
        let there = db
            .db
            .lite
            .as_ref()
            .unwrap()
            .read_blocking(select, whole_row)
            .await
            .unwrap();
        assert_eq!(
            there,
            vec![
                (id, at, 1, true, Some("one".to_owned())),
                (id, at, 2, true, None)
            ]
        );
        assert_eq!(here, there);
    }

    #[tokio::test]
    async fn short_reads_map_the_file_and_long_ones_read_through_the_page_cache() {
        let db = with_table().await;
        let mapped = || sql("PRAGMA mmap_size", vec![]);
        let short = lite(&db)
            .read(&mapped(), |row| row.column::<i64>("mmap_size"))
            .unwrap();
        let long = db
            .db
            .lite
            .as_ref()
            .unwrap()
            .read_blocking(mapped(), |row| row.column::<i64>("mmap_size"))
            .await
            .unwrap();
        assert_eq!(
            short,
            vec![i64::try_from(super::READ_MAPPED_BYTES).unwrap()]
        );
        assert_eq!(long, vec![0], "a long read's connection maps the file");
    }

    #[tokio::test]
    async fn reads_on_blocking_threads_wait_for_a_free_connection_and_give_up_after_the_timeout() {
        let db = with_table().await;
        let file = db.sqlite_dir().unwrap().join(crate::connect::SQLITE_FILE);
        let reader = std::sync::Arc::new(LiteReader::new(
            &file,
            std::time::Duration::from_millis(50),
            1,
        ));
        let count = || sql("SELECT COUNT(*) AS n FROM t", vec![]);
        let held = std::sync::Arc::clone(&reader.blocking)
            .acquire_owned()
            .await
            .unwrap();
        assert!(
            matches!(
                reader
                    .read_blocking(count(), |row| row.column::<i64>("n"))
                    .await,
                Err(inkcart_app::AppError::Unavailable(_))
            ),
            "a read ran while every connection was taken"
        );
        drop(held);
        assert_eq!(
            reader
                .read_blocking(count(), |row| row.column::<i64>("n"))
                .await
                .unwrap(),
            vec![0]
        );
        reader.close();
        assert!(matches!(
            reader
                .read_blocking(count(), |row| row.column::<i64>("n"))
                .await,
            Err(inkcart_app::AppError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn the_connections_refuse_to_write_and_a_failed_statement_leaves_the_reader_usable() {
        let db = with_table().await;
        let insert = sql("INSERT INTO t (n) VALUES (1)", vec![]);
        assert!(
            lite(&db).read(&insert, |_| Ok(())).is_err(),
            "a read connection wrote"
        );
        let count = sql("SELECT COUNT(*) AS n FROM t", vec![]);
        assert_eq!(rows(&db, &count), 0);
    }
}
