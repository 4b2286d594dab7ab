//! The WAL copied back into the SQLite file on a clock, on a thread of its own.
//!
//! SQLite copies its WAL back into the database file (a checkpoint) on the commit that takes the
//! WAL past `wal_autocheckpoint` pages, 1,000 by default: on the writer thread, whose queued
//! transactions all wait for the copy and its two `fsync`s. Under orders that was about every
//! 140 orders, and each checkpoint wrote back nearly every page it found, as each had been
//! changed about once since the last: the same pages of `products` and of the indexes on buyers
//! and on products, over and over. Here a thread with its own connection checkpoints every
//! [`CHECKPOINT_EVERY`] instead, while the writer goes on committing (SQLite lets a checkpoint
//! and a writer run at once). A page changed a hundred times in that while is written back once,
//! and the WAL's `fsync` comes on the clock: with `synchronous = NORMAL` that is how old the
//! commits are that a power cut can lose, where before a quiet database could go minutes
//! without one. The writers keep an automatic checkpoint at [`WAL_CHECKPOINT_PAGES`], far
//! above what the clock leaves in the WAL, in case this thread falls behind.
//!
//! [`WAL_CHECKPOINT_PAGES`]: super::WAL_CHECKPOINT_PAGES

use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How often the WAL is copied back (docs/decisions.md, "Group commit on SQLite").
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The handle of the checkpoint thread; the thread ends when it is closed or dropped.
pub(crate) struct Checkpointer {
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl Checkpointer {
    /// Opens a connection to `path` and checkpoints its WAL every `every` until closed.
    pub(crate) fn start(path: &Path, every: Duration) -> anyhow::Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || {
                let mut failing = false;
                // Nothing is ever sent: the wait ends on the clock, or when the handle is
                // closed or dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // PASSIVE copies what no reader still needs, without waiting for anyone.
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    match done {
                        Err(err) if !failing => {
                            tracing::error!(error = %err, "the SQLite checkpoint failed");
                            failing = true;
                        }
                        Err(_) => {}
                        Ok(()) if failing => {
                            tracing::info!("the SQLite checkpoint works again");
                            failing = false;
                        }
                        Ok(()) => {}
                    }
                }
            })?;
        Ok(Self {
            stop: Mutex::new(Some(stop)),
        })
    }

    /// Ends the thread (after the checkpoint it may be running).
    pub(crate) fn close(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.take();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a failed expectation is a failed test"
    )]

    use std::path::Path;
    use std::time::{Duration, Instant};

    use rusqlite::Connection;
    use sea_orm::ConnectionTrait as _;

    use crate::connect::SQLITE_FILE;
    use crate::testing::sqlite;

    /// How many rows of `t` a copy of the database file alone holds, without its WAL: what a
    /// backup of the file, or the file after a power cut, keeps. None while the copy cannot be
    /// read (caught in the middle of a checkpoint's writes).
    fn rows_in_the_file_alone(dir: &Path) -> Option<i64> {
        let copy = tempfile::tempdir().unwrap();
        let file = copy.path().join(SQLITE_FILE);
        std::fs::copy(dir.join(SQLITE_FILE), &file).unwrap();
        let conn = Connection::open(&file).ok()?;
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .ok()
    }

    #[tokio::test]
    async fn a_small_commit_reaches_the_database_file_itself_within_moments() {
        let db = sqlite().await;
        let writer = db.db.writer_for_tests();
        writer
            .execute_unprepared("CREATE TABLE t (n INTEGER NOT NULL)")
            .await
            .unwrap();
        // One page or two: far from the 1,000 pages of SQLite's own automatic checkpoint.
        writer
            .execute_unprepared("INSERT INTO t (n) VALUES (1)")
            .await
            .unwrap();
        let dir = db.sqlite_dir().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rows_in_the_file_alone(dir) != Some(1) {
            assert!(
                Instant::now() < deadline,
                "after 10 s the commit is still only in the WAL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
