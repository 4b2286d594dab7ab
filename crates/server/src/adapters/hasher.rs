use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use inkcart_app::ports::PasswordHasher;
use inkcart_app::{AppError, AppResult};
use inkcart_domain::Password;

/// argon2id with the crate's recommended parameters (19 MiB, 2 passes), run on a few threads
/// of its own (see [`Workers`]) so that hashing never stalls the async workers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Argon2Hasher;

fn hash_blocking(password: &str) -> AppResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash: one per core the process may run on, each taking the next job from
/// one queue (first come, first served).
///
/// argon2 is all CPU, so a hash beyond one per core only waits for a core while holding its
/// 19 MiB. On tokio's blocking pool, 64 logins at once ran on 64 threads and took 3.9 GB;
/// limited to one hash per core there, they still ran on whichever pool thread was free, and
/// the C allocator kept freed 19 MiB blocks for each of those threads (260 MB at 4 logins at
/// once). With threads of their own, the memory is that of one thread per core (about 150 MB
/// with one core: `docs/benchmarks.md`, section 14).
struct Workers {
    jobs: Sender<Job>,
}

impl Workers {
    fn start(threads: usize) -> AppResult<Self> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue))
                .map_err(|e| AppError::internal(format!("no thread for hashing: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on one of the threads and waits for its result without blocking the caller's.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may be gone (a closed connection); its result is then dropped.
            let _ = done.send(f());
        });
        self.jobs
            .send(job)
            .map_err(|_| AppError::internal("hashing threads stopped"))?;
        result
            .await
            .map_err(|_| AppError::internal("hashing job failed"))?
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while hashing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panic fails that job (its caller sees the dropped sender) and keeps the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    static WORKERS: OnceLock<Result<Workers, String>> = OnceLock::new();
    let workers = WORKERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Workers::start(cores).map_err(|e| e.to_string())
    });
    match workers {
        Ok(workers) => workers.run(f).await,
        Err(e) => Err(AppError::internal(e.clone())),
    }
}

/// A hash of a random password, verified against when the email is unknown.
fn dummy_hash() -> AppResult<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_blocking("an unguessable placeholder password 7Qx")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> AppResult<String> {
        let password = password.expose().to_owned();
        blocking(move || hash_blocking(&password)).await
    }

    async fn verify(&self, password: &str, hash: &str) -> AppResult<bool> {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        blocking(move || {
            match Argon2::default().verify_password(password.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(AppError::internal(format!(
                    "stored password hash unusable: {e}"
                ))),
            }
        })
        .await
    }

    async fn verify_dummy(&self, password: &str) -> AppResult<()> {
        let password = password.to_owned();
        blocking(move || {
            let hash = dummy_hash()?;
            let _ = Argon2::default().verify_password(password.as_bytes(), hash);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let hasher = Argon2Hasher;
        let password = Password::parse("Secret123").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("Secret123", &hash).await.unwrap());
        assert!(!hasher.verify("Secret124", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher;
        let password = Password::parse("Secret123").unwrap();
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hasher.hash(&password).await.unwrap()
        );
    }

    #[tokio::test]
    async fn no_more_hashes_run_at_once_than_there_are_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let workers = Arc::new(Workers::start(2).unwrap());
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (workers, running, peak) = (workers.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    workers
                        .run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            // Real work of a hash's length, so that unbounded jobs would overlap.
                            hash_blocking("Secret123")?;
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 2, "{peak} hashes ran at once on 2 threads");
    }

    #[tokio::test]
    async fn a_job_that_panics_fails_alone_and_the_thread_goes_on() {
        let workers = Workers::start(1).unwrap();
        let failed = workers.run(|| -> AppResult<()> { panic!("boom") }).await;
        assert!(matches!(failed, Err(AppError::Internal(_))));
        assert_eq!(workers.run(|| Ok(7)).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_internal_error() {
        let err = Argon2Hasher
            .verify("Secret123", "not-a-hash")
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Internal(_)));
    }
}
