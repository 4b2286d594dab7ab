//! Reads and transactions of a PostgreSQL database on connections kept out of sqlx's pool.
//!
//! sqlx's pool tests every connection it takes back: it pings the server before the connection
//! is lent again (`return_to_pool`), and no option turns that off. Through the pool, every read
//! is two round trips: its statement, then the ping once the answer is in. Each costs the server
//! process and PostgreSQL a wake-up. A read here takes a connection from the few the store
//! keeps checked out of the pool, runs its statement, and keeps the connection for the next
//! read: one round trip per statement.
//!
//! A request's transactions (`Store::begin`, `Store::transact`) run here too, as [`PgTx`]:
//! `BEGIN`, the statements, `COMMIT` on one kept connection, which then serves the next read or
//! transaction without going back to the pool.
//!
//! The reads and transactions here hold at most [`PgConnections::held_share`] of the pool's
//! connections (idle here or in use): the rest stay in the pool for the job queue and the few
//! statements that go through SeaORM's own pool path, so those never wait on connections
//! idle here.
//!
//! A connection is kept only after its work succeeded: one whose statement failed, or whose
//! read was abandoned half-way (a request that timed out), is dropped back to the pool, which
//! tests it and closes it if it is broken. A transaction dropped without a commit is rolled
//! back before its connection serves again. One that sat idle here for [`PING_IDLE_AFTER`] or
//! more is tested before it is used, as the pool does for its own. The pool's idle timeout and
//! lifetime hold here too: a connection idle here longer than the idle timeout, or kept out of
//! the pool longer than the lifetime, goes back to the pool, which closes it when it is due.

use std::any::Any;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use inkcart_app::ports::Tx;
use inkcart_app::{AppError, AppResult};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::query::Query;
use sea_orm::sqlx::{Connection as _, PgPool, Postgres};
use sea_orm::{ConnAcquireErr, DbErr, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::db_err;
use crate::lite::Row;

/// How long a PostgreSQL connection may sit idle (in the pool or here) and still be lent
/// without a ping.
pub(crate) const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Connections kept out of a PostgreSQL pool for reads and transactions, idle ones kept for
/// the next.
pub(crate) struct PgConnections {
    pool: PgPool,
    idle: Mutex<Vec<Idle>>,
    /// One permit per connection held at once (by a read or a transaction).
    permits: Arc<Semaphore>,
    /// How many connections reads and transactions may hold: [`PgConnections::held_share`] of
    /// the pool.
    limit: usize,
    acquire_timeout: Duration,
    /// Set by [`PgConnections::close`]: every later read or transaction is refused.
    closed: AtomicBool,
    /// Counts statements, for tests that check how many a request runs.
    pub(crate) statements: Option<Arc<AtomicU64>>,
}

struct Idle {
    conn: PoolConnection<Postgres>,
    /// When it was last used.
    since: Instant,
    /// When it was taken from the pool.
    taken: Instant,
}

/// A connection in use, with when it was taken from the pool.
struct Lent {
    conn: PoolConnection<Postgres>,
    taken: Instant,
}

impl std::fmt::Debug for PgConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnections")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl PgConnections {
    /// The connections kept out of `pool`, or none when the pool is too small to share (one
    /// connection).
    pub(crate) fn new(pool: PgPool, acquire_timeout: Duration) -> Option<Self> {
        let limit = Self::held_share(pool.options().get_max_connections());
        (limit > 0).then(|| Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(limit)),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            acquire_timeout,
            closed: AtomicBool::new(false),
            statements: None,
        })
    }

    /// How many of a pool's `size` connections reads and transactions may hold: all but a
    /// quarter (at least one), which stays for the job queue and SeaORM's own pool path.
    fn held_share(size: u32) -> usize {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        size.saturating_sub((size / 4).max(1))
    }

    /// Every row of a statement built for PostgreSQL, each decoded by `decode`.
    pub(crate) async fn read<T>(
        &self,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
    ) -> AppResult<Vec<T>> {
        self.count();
        let (permit, mut lent) = self.connection().await?;
        let rows = bound(statement)
            .fetch_all(&mut *lent.conn)
            .await
            .map_err(query_err)?;
        self.keep(lent);
        drop(permit);
        decode_all(rows, decode)
    }

    /// Runs a statement without rows as its own transaction; how many rows it changed, or the
    /// database's error (the connection then goes back to the pool, which tests it).
    pub(crate) async fn try_execute(&self, statement: Statement) -> AppResult<Result<u64, DbErr>> {
        self.count();
        let (permit, mut lent) = self.connection().await?;
        let done = bound(statement).execute(&mut *lent.conn).await;
        if done.is_ok() {
            self.keep(lent);
        }
        drop(permit);
        Ok(done.map(|done| done.rows_affected()).map_err(exec_db_err))
    }

    /// A transaction on a kept connection (or a new one from the pool).
    pub(crate) async fn begin(self: &Arc<Self>) -> AppResult<PgTx> {
        let (permit, mut lent) = self.connection().await?;
        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe("BEGIN"))
            .execute(&mut *lent.conn)
            .await
            .map_err(exec_err)?;
        Ok(PgTx {
            conn: Some(lent),
            permit: Some(permit),
            owner: Arc::clone(self),
        })
    }

    fn count(&self) {
        if let Some(counter) = &self.statements {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A permit and a connection: an idle one kept here (tested first if it sat idle
    /// long), else one from the pool; within the acquire timeout.
    async fn connection(&self) -> AppResult<(OwnedSemaphorePermit, Lent)> {
        tokio::time::timeout(self.acquire_timeout, async {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|_| pool_err(sea_orm::sqlx::Error::PoolClosed))?;
            if self.closed.load(Ordering::SeqCst) {
                return Err(pool_err(sea_orm::sqlx::Error::PoolClosed));
            }
            // One that fails its ping is dropped: the pool tests it again and closes it.
            if let Some(Idle {
                mut conn,
                since,
                taken,
            }) = self.take_idle()
                && (since.elapsed() < PING_IDLE_AFTER || conn.ping().await.is_ok())
            {
                return Ok((permit, Lent { conn, taken }));
            }
            let conn = self.pool.acquire().await.map_err(pool_err)?;
            let taken = Instant::now();
            Ok((permit, Lent { conn, taken }))
        })
        .await
        .map_err(|_| pool_err(sea_orm::sqlx::Error::PoolTimedOut))?
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Keeps a connection whose work succeeded for the next read or transaction, unless it is
    /// due back in the pool; also gives back the one idle longest if it outlived the pool's
    /// idle timeout. (Idle ones are in the order they were last used: taken from the end.)
    fn keep(&self, lent: Lent) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let options = self.pool.options();
        if options
            .get_max_lifetime()
            .is_some_and(|lifetime| lent.taken.elapsed() >= lifetime)
        {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if let Some(timeout) = options.get_idle_timeout()
            && idle
                .first()
                .is_some_and(|oldest| oldest.since.elapsed() >= timeout)
        {
            idle.remove(0);
        }
        if idle.len() < self.limit {
            idle.push(Idle {
                conn: lent.conn,
                since: Instant::now(),
                taken: lent.taken,
            });
        }
    }

    /// Gives every idle connection back to the pool and refuses every later read or
    /// transaction.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// A transaction on one of [`PgConnections`]'s connections. Dropped without a commit, it is rolled
/// back (on a task of its own) before the connection serves again.
pub(crate) struct PgTx {
    conn: Option<Lent>,
    permit: Option<OwnedSemaphorePermit>,
    owner: Arc<PgConnections>,
}

impl PgTx {
    fn conn(&mut self) -> AppResult<&mut PoolConnection<Postgres>> {
        self.conn
            .as_mut()
            .map(|lent| &mut lent.conn)
            .ok_or_else(|| AppError::internal("a statement after the transaction ended"))
    }

    /// Runs a statement without rows; how many rows it changed, or the database's error.
    pub(crate) async fn try_execute(
        &mut self,
        statement: Statement,
    ) -> AppResult<Result<u64, DbErr>> {
        self.owner.count();
        let conn = self.conn()?;
        Ok(bound(statement)
            .execute(&mut **conn)
            .await
            .map(|done| done.rows_affected())
            .map_err(exec_db_err))
    }

    /// Every row of a statement (a read, or a write with `RETURNING`), each decoded.
    pub(crate) async fn query<T>(
        &mut self,
        statement: Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
    ) -> AppResult<Vec<T>> {
        self.owner.count();
        let conn = self.conn()?;
        let rows = bound(statement)
            .fetch_all(&mut **conn)
            .await
            .map_err(query_err)?;
        decode_all(rows, decode)
    }
}

#[async_trait]
impl Tx for PgTx {
    fn as_any(&mut self) -> &mut (dyn Any + Send) {
        self
    }

    async fn commit(mut self: Box<Self>) -> AppResult<()> {
        let mut lent = self
            .conn
            .take()
            .ok_or_else(|| AppError::internal("a transaction committed twice"))?;
        // A failed commit drops the connection back to the pool, which tests it.
        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe("COMMIT"))
            .execute(&mut *lent.conn)
            .await
            .map_err(exec_err)?;
        self.owner.keep(lent);
        Ok(())
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(mut lent) = self.conn.take() else {
            return;
        };
        let (permit, owner) = (self.permit.take(), Arc::clone(&self.owner));
        match tokio::runtime::Handle::try_current() {
            // The statement the transaction was running, if it was abandoned half-way, is
            // answered first; a connection that cannot roll back goes back to the pool, which
            // tests it.
            Ok(runtime) => {
                runtime.spawn(async move {
                    let rolled_back =
                        sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe("ROLLBACK"))
                            .execute(&mut *lent.conn)
                            .await;
                    if rolled_back.is_ok() {
                        owner.keep(lent);
                    }
                    drop(permit);
                });
            }
            // No runtime to roll back on: the connection is closed, which ends its
            // transaction, instead of going back to the pool inside it.
            Err(_) => drop(lent.conn.detach()),
        }
    }
}

/// A statement with its values bound as SeaORM binds them. Taken by value: sqlx keeps the SQL
/// as it is (a borrowed string would be copied) and the values need no copy.
fn bound(statement: Statement) -> Query<'static, Postgres, SqlxValues> {
    let values = statement
        .values
        .unwrap_or_else(|| sea_orm::Values(Vec::new()));
    sea_orm::sqlx::query_with(
        sea_orm::sqlx::AssertSqlSafe(statement.sql),
        SqlxValues(values),
    )
}

fn decode_all<T>(
    rows: Vec<PgRow>,
    decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
) -> AppResult<Vec<T>> {
    rows.into_iter()
        .map(|row| decode(&Row::Sea(&QueryResult::from(row))))
        .collect()
}

fn query_err(err: sea_orm::sqlx::Error) -> AppError {
    db_err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))))
}

fn exec_err(err: sea_orm::sqlx::Error) -> AppError {
    db_err(exec_db_err(err))
}

fn exec_db_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

/// A pool that timed out or was closed, as sea-orm reports it (`ConnectionAcquire`), or a
/// connection that could not be opened.
fn pool_err(err: sea_orm::sqlx::Error) -> AppError {
    db_err(match err {
        sea_orm::sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sea_orm::sqlx::Error::PoolClosed => {
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)
        }
        other => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(other))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed expectation is a failed test"
    )]

    use std::sync::Arc;
    use std::time::Duration;

    use inkcart_app::ports::{Store as _, Tx};
    use inkcart_app::{AppError, AppResult};
    use sea_orm::sqlx::postgres::PgPoolOptions;
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

    use super::PgConnections;
    use crate::lite::Columns as _;
    use crate::repo::TxConn;
    use crate::testing::TestDb;
    use crate::{Db, DbOptions, SqlStore};

    #[test]
    fn reads_may_hold_all_but_a_quarter_of_the_pool_and_leave_at_least_one() {
        assert_eq!(PgConnections::held_share(1), 0);
        assert_eq!(PgConnections::held_share(2), 1);
        assert_eq!(PgConnections::held_share(4), 3);
        assert_eq!(PgConnections::held_share(16), 12);
        assert_eq!(PgConnections::held_share(100), 75);
    }

    /// A database of its own opened with a pool of `size` connections, or `None` when
    /// PostgreSQL is not reachable and not required.
    async fn small_pool(size: u32, acquire_timeout: Duration) -> Option<(TestDb, Db)> {
        let test = crate::testing::postgres().await?;
        let db = Db::connect(&DbOptions {
            url: Some(test.url()),
            data_dir: std::env::temp_dir(),
            max_connections: size,
            acquire_timeout,
        })
        .await
        .unwrap();
        Some((test, db))
    }

    fn sql(sql: &str) -> Statement {
        Statement::from_string(DbBackend::Postgres, sql)
    }

    fn number(n: i32) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, "SELECT $1::int4 AS n", [n.into()])
    }

    /// The column `n` of every row of `statement`.
    async fn read_n(conns: &PgConnections, statement: Statement) -> AppResult<Vec<i32>> {
        conns.read(statement, |row| row.column::<i32>("n")).await
    }

    async fn read_number(conns: &PgConnections, n: i32) -> AppResult<Vec<i32>> {
        read_n(conns, number(n)).await
    }

    async fn insert(tx: &mut dyn Tx, n: i32) {
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO t VALUES ($1)",
            [n.into()],
        );
        assert_eq!(TxConn::of(tx).unwrap().execute(statement).await.unwrap(), 1);
    }

    fn idle(conns: &PgConnections) -> usize {
        conns.idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_transaction_dropped_without_a_commit_is_rolled_back_before_its_connection_serves_again()
     {
        // Two connections: one for reads and transactions, so the next transaction gets the
        // same connection, once it is rolled back.
        let Some((_test, db)) = small_pool(2, Duration::from_secs(10)).await else {
            return;
        };
        db.writer_for_tests()
            .execute_unprepared("CREATE TABLE t (n int)")
            .await
            .unwrap();
        let store = SqlStore::new(db.clone());
        let mut dropped = store.begin().await.unwrap();
        insert(dropped.as_mut(), 1).await;
        drop(dropped);
        let mut kept = store.begin().await.unwrap();
        insert(kept.as_mut(), 2).await;
        kept.commit().await.unwrap();
        let conns = db.pg.clone().unwrap();
        let rows = read_n(&conns, sql("SELECT n FROM t ORDER BY n")).await;
        assert_eq!(rows.unwrap(), vec![2]);
        assert_eq!(idle(&conns), 1);
    }

    #[tokio::test]
    async fn reads_and_transactions_leave_a_quarter_of_the_pool_to_the_rest() {
        let Some((_test, db)) = small_pool(4, Duration::from_millis(300)).await else {
            return;
        };
        let store = SqlStore::new(db.clone());
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(store.begin().await.unwrap());
        }
        let refused = store.begin().await;
        assert!(
            matches!(refused, Err(AppError::Unavailable(_))),
            "{:?}",
            refused.err()
        );
        // The fourth connection is still the pool's.
        db.writer_for_tests()
            .execute_unprepared("SELECT 1")
            .await
            .unwrap();
        for tx in held {
            tx.commit().await.unwrap();
        }
        let conns = db.pg.clone().unwrap();
        assert_eq!(idle(&conns), 3);
        assert_eq!(read_number(&conns, 3).await.unwrap(), vec![3]);
    }

    #[tokio::test]
    async fn a_read_that_failed_or_was_abandoned_leaves_its_connection_to_the_pool() {
        let Some((_test, db)) = small_pool(4, Duration::from_secs(10)).await else {
            return;
        };
        let conns = db.pg.clone().unwrap();
        let failed = read_n(&conns, sql("SELECT 1 / 0 AS n")).await;
        assert!(failed.is_err());
        assert_eq!(idle(&conns), 0);
        // A read dropped while its statement runs: its connection still owes that answer.
        let slow = sql("SELECT 1 AS n FROM pg_sleep(5)");
        let abandoned =
            tokio::time::timeout(Duration::from_millis(100), read_n(&conns, slow)).await;
        assert!(abandoned.is_err(), "the slow read should not have finished");
        assert_eq!(idle(&conns), 0);
        // Every later read answers its own statement.
        for n in 1..=4 {
            assert_eq!(read_number(&conns, n).await.unwrap(), vec![n]);
        }
        assert_eq!(idle(&conns), 1);
    }

    #[tokio::test]
    async fn connections_go_back_to_the_pool_once_idle_past_its_idle_timeout_or_held_past_its_lifetime()
     {
        let Some(test) = crate::testing::postgres().await else {
            return;
        };
        async fn over(url: &str, options: PgPoolOptions) -> Arc<PgConnections> {
            let pool = options.max_connections(4).connect(url).await.unwrap();
            Arc::new(PgConnections::new(pool, Duration::from_secs(10)).unwrap())
        }
        // The sleeps below are the condition under test: longer than the timeout or lifetime.
        let past = Duration::from_millis(20);
        let short = Duration::from_millis(5);

        let conns = over(&test.url(), PgPoolOptions::new().idle_timeout(short)).await;
        let (first, second) = (conns.begin().await.unwrap(), conns.begin().await.unwrap());
        Box::new(first).commit().await.unwrap();
        assert_eq!(idle(&conns), 1);
        tokio::time::sleep(past).await;
        Box::new(second).commit().await.unwrap();
        assert_eq!(idle(&conns), 1, "the first went back to the pool");

        let conns = over(&test.url(), PgPoolOptions::new().max_lifetime(short)).await;
        let tx = conns.begin().await.unwrap();
        tokio::time::sleep(past).await;
        Box::new(tx).commit().await.unwrap();
        assert_eq!(idle(&conns), 0);
        assert_eq!(read_number(&conns, 5).await.unwrap(), vec![5]);
    }

    #[tokio::test]
    async fn a_closed_database_refuses_reads_as_unavailable() {
        let Some((_test, db)) = small_pool(4, Duration::from_secs(10)).await else {
            return;
        };
        let conns = db.pg.clone().unwrap();
        assert_eq!(read_number(&conns, 1).await.unwrap(), vec![1]);
        db.close().await;
        let refused = read_number(&conns, 2).await;
        assert!(
            matches!(refused, Err(AppError::Unavailable(_))),
            "{refused:?}"
        );
    }
}
