//! Transactions of a SQLite file on one writer thread, committed in groups.
//!
//! SQLite has one writer. Through sqlx, a transaction that places an order hands each of its
//! statements (begin, the stock update, three inserts, commit) to the connection's thread and
//! waits for it to come back: a dozen switches between threads, during which the writer does
//! nothing else, and one commit per order. Work given to [`Store::transact`] comes here instead:
//! one thread owns a connection and takes every transaction waiting for it, runs each in a
//! savepoint of one SQLite transaction, and commits them together. A transaction that fails
//! rolls back to its savepoint, leaving the others; every caller is answered after the commit
//! that holds its work (or with the error that lost it).
//!
//! The other writes still go through sqlx's one writer connection. The thread holds that
//! connection (taken from its pool of one) while its transaction is open, so that the two never
//! wait on SQLite's lock for each other: they queue in the pool as before.
//!
//! [`Store::transact`]: inkcart_app::ports::Store::transact

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use inkcart_app::ports::{Tx, TxWork};
use inkcart_app::{AppError, AppResult};
use rusqlite::{Connection, OpenFlags};
use sea_orm::Statement;
use sea_orm::sqlx::SqlitePool;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::checkpoint::{CHECKPOINT_EVERY, Checkpointer};
use super::{
    PREPARED_PER_CONNECTION, Row, WAL_CHECKPOINT_PAGES, WAL_KEPT_BYTES, execute, lite_err, run,
};

/// Transactions committed together at most; more wait for the next commit.
const MOST_PER_COMMIT: usize = 64;

/// A commit of at least this many transactions means the writer is busy: the next one waits
/// up to [`COMMIT_LINGER`] for more to join it. A lone write never waits.
const BUSY_COMMIT: usize = 8;

/// How long a busy writer waits for transactions to join a commit (docs/decisions.md, "Group
/// commit on SQLite"). Under load a request waits longer than this for the commits queued
/// ahead of it anyway; each commit then holds about twice the orders, and the pages they
/// share are written once.
const COMMIT_LINGER: Duration = Duration::from_millis(3);

/// The writer's page cache, in KiB (SQLite's default is 2,000).
const WRITER_CACHE_KIB: u32 = 8 * 1024;

type Answer = AppResult<Box<dyn Any + Send>>;

struct Job {
    work: TxWork,
    queued: Instant,
    answer: oneshot::Sender<Answer>,
}

/// The handle of the writer thread; the thread ends when every handle is dropped or closed.
pub(crate) struct LiteWriter {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Copies the WAL back into the file on a clock, so that the writer does not.
    checkpointer: Checkpointer,
    /// Counts statements, for tests that check how many a request runs.
    #[cfg(feature = "testing")]
    statements: Arc<OnceLock<Arc<AtomicU64>>>,
}

impl std::fmt::Debug for LiteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteWriter").finish_non_exhaustive()
    }
}

impl LiteWriter {
    /// Opens the writer's connection to `path` (whose settings sqlx's writer already applied:
    /// WAL, synchronous NORMAL) and starts its thread. `gate` is sqlx's writer pool (of one),
    /// held during each of the thread's transactions; waiting for it, or waiting in the queue,
    /// longer than `wait` answers unavailable, as sqlx's acquire timeout does.
    pub(crate) fn start(path: &Path, gate: SqlitePool, wait: Duration) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(wait)?;
        conn.set_prepared_statement_cache_capacity(PREPARED_PER_CONNECTION);
        // `temp_store = MEMORY` keeps the savepoints' journal in memory: a commit's savepoints
        // copy each page they change before changing it, and on disk (the library's default)
        // that was a temporary file written and unlinked per commit, three quarters of what
        // an order wrote. It holds at most one savepoint's changed pages at a time. The
        // checkpoint thread copies the WAL back into the file; the automatic checkpoint only
        // bounds the WAL if that thread falls behind. The page cache is 8 MiB, four times
        // SQLite's default: the pages an order changes at random (its products, the lines'
        // index by product, the orders' index by buyer, the accounts its foreign key checks)
        // stay in it instead of being read back with a `pread` (docs/decisions.md).
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -{WRITER_CACHE_KIB}; \
             PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}; \
             PRAGMA journal_size_limit = {WAL_KEPT_BYTES};"
        ))?;
        let statements = Arc::new(OnceLock::new());
        let (jobs, queue) = mpsc::channel();
        let thread = Thread {
            tx: LiteTx {
                conn,
                statements: Arc::clone(&statements),
            },
            gate,
            runtime: Handle::try_current()?,
            wait,
        };
        let checkpointer = Checkpointer::start(path, CHECKPOINT_EVERY)?;
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || thread.serve(&queue))?;
        Ok(Self {
            jobs: Mutex::new(Some(jobs)),
            checkpointer,
            #[cfg(feature = "testing")]
            statements,
        })
    }

    /// Runs `work` in a savepoint of the next commit; its answer once that commit is done.
    pub(crate) async fn transact(&self, work: TxWork) -> Answer {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            answer,
        };
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(unavailable());
        }
        // A dropped answer means the thread is gone.
        answered.await.unwrap_or_else(|_| Err(unavailable()))
    }

    /// Refuses every later transaction; the thread finishes the queued ones and ends.
    pub(crate) fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        self.checkpointer.close();
    }

    #[cfg(feature = "testing")]
    pub(crate) fn count_statements(&self, counter: &Arc<AtomicU64>) {
        // A second counter is ignored: tests set one per database.
        let _ = self.statements.set(Arc::clone(counter));
    }
}

fn unavailable() -> AppError {
    AppError::Unavailable("Database unavailable".to_owned())
}

/// The writer's connection, as the transaction every job runs on.
pub(crate) struct LiteTx {
    conn: Connection,
    statements: Arc<OnceLock<Arc<AtomicU64>>>,
}

impl LiteTx {
    fn counted(&self) {
        if let Some(counter) = self.statements.get() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Every row of a statement (a `RETURNING` one, or a read inside the transaction).
    pub(crate) fn query<T>(
        &self,
        statement: &Statement,
        decode: impl Fn(&Row<'_, '_>) -> AppResult<T>,
    ) -> AppResult<Vec<T>> {
        self.counted();
        run(&self.conn, statement, decode)
    }

    /// A statement without rows; how many rows it changed.
    pub(crate) fn execute(&self, statement: &Statement) -> AppResult<u64> {
        self.counted();
        execute(&self.conn, statement)
    }

    fn batch(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }

    /// One statement without rows, prepared once: the writer's `BEGIN`, `COMMIT`, `SAVEPOINT`
    /// and `RELEASE`, several per commit.
    fn control(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(drop)
    }
}

#[async_trait]
impl Tx for LiteTx {
    fn as_any(&mut self) -> &mut (dyn Any + Send) {
        self
    }

    /// Never reached: work given to `transact` holds a `&mut dyn Tx`, not the box.
    async fn commit(self: Box<Self>) -> AppResult<()> {
        Err(AppError::internal(
            "the writer thread commits its transactions itself",
        ))
    }
}

struct Thread {
    tx: LiteTx,
    gate: SqlitePool,
    runtime: Handle,
    wait: Duration,
}

/// A job run in the open transaction, answered when it commits.
struct Ran {
    answer: oneshot::Sender<Answer>,
    result: Answer,
}

impl Thread {
    fn serve(mut self, queue: &mpsc::Receiver<Job>) {
        let mut last = 0;
        while let Ok(first) = queue.recv() {
            // Under load, wait a moment for more: a page that several orders change (a
            // product's stock, an index leaf) is then written to the WAL once for all of them.
            let linger = (last >= BUSY_COMMIT).then(|| Instant::now() + COMMIT_LINGER);
            let mut jobs = vec![first];
            while jobs.len() < MOST_PER_COMMIT {
                let next = match linger {
                    Some(until) => queue
                        .recv_timeout(until.saturating_duration_since(Instant::now()))
                        .ok(),
                    None => queue.try_recv().ok(),
                };
                match next {
                    Some(job) => jobs.push(job),
                    None => break,
                }
            }
            last = jobs.len();
            self.commit_together(jobs);
        }
    }

    /// Runs `jobs` in one transaction, each in a savepoint, and answers them after its commit.
    fn commit_together(&mut self, jobs: Vec<Job>) {
        // Whoever stopped waiting (a closed connection, a timeout) is not run: as with a
        // transaction through sqlx, a request dropped before its commit leaves nothing. Work
        // that has started runs to its commit, as if the caller had left just after it.
        let mut live = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.answer.is_closed() {
                continue;
            }
            if job.queued.elapsed() > self.wait {
                let _ = job.answer.send(Err(unavailable()));
                continue;
            }
            live.push(job);
        }
        if live.is_empty() {
            return;
        }
        // Giving sqlx's connection back to its pool spawns a task: in the runtime's context.
        let _entered = self.runtime.enter();
        // The pool's own acquire timeout (`wait`) bounds this.
        let gate = catch_unwind(AssertUnwindSafe(|| {
            self.runtime.block_on(self.gate.acquire())
        }));
        let Ok(Ok(_held)) = gate else {
            tracing::error!("the SQLite writer could not take the write lock in time");
            for job in live {
                let _ = job.answer.send(Err(unavailable()));
            }
            return;
        };
        let mut ran: Vec<Ran> = Vec::with_capacity(live.len());
        let mut open = false;
        for job in live {
            if !open {
                if let Err(err) = self.tx.control("BEGIN IMMEDIATE") {
                    let _ = job.answer.send(Err(lite_err(err)));
                    continue;
                }
                open = true;
            }
            let result = self.run_in_savepoint(job.work);
            if self.tx.conn.is_autocommit() {
                // SQLite ended the transaction itself (an I/O error, a full disk): the work of
                // the jobs before this one is gone with it.
                tracing::error!("the SQLite writer's transaction was rolled back by SQLite");
                for lost in ran.drain(..) {
                    let _ = lost.answer.send(Err(unavailable()));
                }
                let _ = job.answer.send(result.and(Err(unavailable())));
                open = false;
                continue;
            }
            ran.push(Ran {
                answer: job.answer,
                result,
            });
        }
        if open && let Err(err) = self.tx.control("COMMIT") {
            tracing::error!(error = %err, "the SQLite writer could not commit");
            let _ = self.tx.batch("ROLLBACK");
            for job in ran {
                let _ = job.answer.send(job.result.and(Err(unavailable())));
            }
            return;
        }
        tracing::debug!(transactions = ran.len(), "SQLite group commit");
        for job in ran {
            let _ = job.answer.send(job.result);
        }
    }

    /// Runs one job's work in a savepoint: kept when it succeeds, rolled back when it fails
    /// (or panics, which is answered as an internal error).
    fn run_in_savepoint(&mut self, work: TxWork) -> Answer {
        self.tx.control("SAVEPOINT work").map_err(lite_err)?;
        let tx: &mut dyn Tx = &mut self.tx;
        // The work only runs statements on this connection, so its future is ready at once;
        // `block_on` also serves one that waits on something else, just more slowly.
        let result = catch_unwind(AssertUnwindSafe(|| self.runtime.block_on(work(tx))))
            .unwrap_or_else(|_| Err(AppError::internal("a transaction's work panicked")));
        let ended = match &result {
            Ok(_) => self.tx.control("RELEASE work"),
            Err(_) => self.tx.batch("ROLLBACK TO work; RELEASE work"),
        };
        match ended {
            Ok(()) => result,
            Err(err) => {
                // The savepoint could not be kept: undo it, whatever the work answered.
                let _ = self.tx.batch("ROLLBACK TO work; RELEASE work");
                Err(lite_err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        reason = "test code: a failed expectation is a failed test"
    )]

    use std::any::Any;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use inkcart_app::AppError;
    use inkcart_app::ports::{Store as _, Tx, TxWork, transaction};
    use rusqlite::{Connection, OpenFlags};
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};
    use tokio::runtime::Handle;
    use tokio::sync::oneshot;

    use super::{Answer, Job, LiteTx, Thread};
    use crate::repo::{SqlStore, TxConn};
    use crate::testing::{TestDb, sqlite};

    async fn with_table() -> TestDb {
        let db = sqlite().await;
        db.db
            .writer_for_tests()
            .execute_unprepared("CREATE TABLE t (n INTEGER NOT NULL UNIQUE)")
            .await
            .unwrap();
        db
    }

    fn insert(n: i64) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (n) VALUES (?)",
            [n.into()],
        )
    }

    /// Work that inserts `n`, then fails when `fail` says so.
    fn work(n: i64, fail: bool) -> TxWork {
        Box::new(move |tx: &mut dyn Tx| {
            Box::pin(async move {
                TxConn::of(tx)?.execute(insert(n)).await?;
                if fail {
                    return Err(AppError::internal("the work failed after writing"));
                }
                Ok(Box::new(n) as Box<dyn Any + Send>)
            })
        })
    }

    async fn numbers(db: &TestDb) -> Vec<i64> {
        db.db
            .writer_for_tests()
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT n FROM t ORDER BY n",
            ))
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<i64>("", "n").unwrap())
            .collect()
    }

    /// A writer thread's state on `db`'s file, run directly (not on its own thread).
    fn thread(db: &TestDb) -> Thread {
        let file = db.sqlite_dir().unwrap().join(crate::connect::SQLITE_FILE);
        let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
        Thread {
            tx: LiteTx {
                conn,
                statements: Arc::default(),
            },
            gate: db
                .db
                .writer_for_tests()
                .get_sqlite_connection_pool()
                .clone(),
            runtime: Handle::current(),
            wait: Duration::from_secs(2),
        }
    }

    fn job(work: TxWork) -> (Job, oneshot::Receiver<Answer>) {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            work,
            queued: Instant::now(),
            answer,
        };
        (job, answered)
    }

    fn number(answer: Answer) -> i64 {
        *answer.unwrap().downcast::<i64>().unwrap()
    }

    #[tokio::test]
    async fn work_committed_together_keeps_each_answer_and_a_failure_undoes_only_its_own_writes() {
        let db = with_table().await;
        let (jobs, answers): (Vec<_>, Vec<_>) = [
            work(1, false),
            work(2, true),
            work(3, false),
            // Breaks the unique constraint on `n` written by the first work of the group.
            work(1, false),
            work(4, false),
        ]
        .into_iter()
        .map(job)
        .unzip();
        let mut writer = thread(&db);
        tokio::task::spawn_blocking(move || writer.commit_together(jobs))
            .await
            .unwrap();
        let mut answers = answers.into_iter();
        let mut next = || answers.next().unwrap().try_recv().unwrap();
        assert_eq!(number(next()), 1);
        assert!(
            next().is_err(),
            "the failing work is answered with its error"
        );
        assert_eq!(number(next()), 3);
        assert!(
            next().is_err(),
            "a constraint broken inside the group fails that work"
        );
        assert_eq!(number(next()), 4);
        assert_eq!(numbers(&db).await, vec![1, 3, 4]);
    }

    #[tokio::test]
    async fn work_whose_caller_stopped_waiting_is_not_run_and_work_queued_too_long_is_refused() {
        let db = with_table().await;
        let (gone, answered) = job(work(1, false));
        drop(answered);
        let (mut late, late_answer) = job(work(2, false));
        late.queued = Instant::now().checked_sub(Duration::from_secs(3)).unwrap();
        let (kept, kept_answer) = job(work(3, false));
        let mut writer = thread(&db);
        tokio::task::spawn_blocking(move || writer.commit_together(vec![gone, late, kept]))
            .await
            .unwrap();
        assert!(matches!(
            late_answer.await.unwrap(),
            Err(AppError::Unavailable(_))
        ));
        assert_eq!(number(kept_answer.await.unwrap()), 3);
        assert_eq!(numbers(&db).await, vec![3]);
    }

    #[tokio::test]
    async fn work_that_panics_is_answered_as_an_error_and_the_writer_goes_on() {
        let db = with_table().await;
        let store = SqlStore::new(db.db.clone());
        let panics: TxWork = Box::new(|tx: &mut dyn Tx| {
            Box::pin(async move {
                TxConn::of(tx)?.execute(insert(1)).await?;
                panic!("a bug in the work");
            })
        });
        assert!(matches!(
            store.transact(panics).await,
            Err(AppError::Internal(_))
        ));
        assert_eq!(number(store.transact(work(2, false)).await), 2);
        assert_eq!(numbers(&db).await, vec![2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_transactions_at_once_all_commit_each_once() {
        let db = with_table().await;
        let store = Arc::new(SqlStore::new(db.db.clone()));
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    transaction(store.as_ref(), move |tx| {
                        Box::pin(async move {
                            TxConn::of(tx)?.execute(insert(n)).await?;
                            Ok(n)
                        })
                    })
                    .await
                })
            })
            .collect();
        for (n, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap().unwrap(), i64::try_from(n).unwrap());
        }
        assert_eq!(numbers(&db).await, (0..200).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_closed_writer_answers_unavailable() {
        let db = with_table().await;
        let store = SqlStore::new(db.db.clone());
        db.db.clone().close().await;
        assert!(matches!(
            store.transact(work(1, false)).await,
            Err(AppError::Unavailable(_))
        ));
    }
}
