use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use inkcart_app::ports::PasswordHasher;
use inkcart_app::{AppError, AppResult};
use inkcart_domain::Password;

/// argon2id with the crate's recommended parameters (19 MiB, 2 passes), run on a few threads
/// of its own (see [`Workers`]) so that hashing never stalls the async workers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Argon2Hasher;

/// Bytes of salt in a new hash (the PHC string format's recommendation).
const SALT_LEN: usize = 16;

/// The memory a hashing thread works in, kept from one hash to the next.
///
/// argon2 needs 19 MiB per hash. Allocated and freed for every hash (as the crate's own
/// `hash_password` does), the C allocator kept each freed block for later, so the process grew
/// by 19 MiB a login up to about 235 MB with two threads (`bench/abuse`, auth-burst). Hashing
/// into a buffer each thread keeps holds the memory at 19 MiB a thread.
#[derive(Default)]
struct Scratch {
    blocks: Vec<Block>,
}

impl Scratch {
    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let count = params.block_count();
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        &mut self.blocks[..count]
    }
}

fn internal(context: &str, e: impl std::fmt::Display) -> AppError {
    AppError::internal(format!("{context}: {e}"))
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) for `password`.
fn hash_with(scratch: &mut Scratch, password: &str) -> AppResult<String> {
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| internal("random source", e))?;
    let salt = Salt::new(&salt).map_err(|e| internal("password salt", e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            scratch.blocks(&params),
        )
        .map_err(|e| internal("password hashing failed", e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| internal("password hash", e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| internal("password hash", e))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, with the algorithm, version, parameters
/// and salt that `stored` names. A string that is not such a hash is an internal error.
fn verify_with(scratch: &mut Scratch, password: &str, stored: &str) -> AppResult<bool> {
    let unusable = |e: &dyn std::fmt::Display| internal("stored password hash unusable", e);
    let parsed = PasswordHash::new(stored).map_err(|e| unusable(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).map_err(|e| unusable(&e))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| unusable(&e))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| unusable(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(unusable(&"no salt or no hash"));
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            scratch.blocks(&params),
        )
        .map_err(|e| unusable(&e))?;
    // `Output`'s comparison takes the same time whatever the bytes.
    Ok(Output::new(&out).map_err(|e| unusable(&e))? == expected)
}

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

/// The threads that hash: one per core the process may run on, each taking the next job from
/// one queue (first come, first served) and hashing in the memory it keeps ([`Scratch`]).
///
/// argon2 is all CPU, so a hash beyond one per core only waits for a core while holding its
/// 19 MiB. On tokio's blocking pool, 64 logins at once ran on 64 threads and took 3.9 GB;
/// limited to one hash per core there, they still ran on whichever pool thread was free, and
/// the C allocator kept freed 19 MiB blocks for each of those threads (260 MB at 4 logins at
/// once). With threads of their own, each with its own buffer, the memory is 19 MiB a thread.
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
        f: impl FnOnce(&mut Scratch) -> AppResult<T> + Send + 'static,
    ) -> AppResult<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            // The caller may be gone (a closed connection); its result is then dropped.
            let _ = done.send(f(scratch));
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
    let mut scratch = Scratch::default();
    loop {
        // The lock is held only while waiting for the next job, not while hashing.
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panic fails that job (its caller sees the dropped sender) and keeps the thread.
        let _ = catch_unwind(AssertUnwindSafe(|| job(&mut scratch)));
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce(&mut Scratch) -> AppResult<T> + Send + 'static,
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
fn dummy_hash(scratch: &mut Scratch) -> AppResult<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_with(scratch, "an unguessable placeholder password 7Qx")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> AppResult<String> {
        let password = password.expose().to_owned();
        blocking(move |scratch| hash_with(scratch, &password)).await
    }

    async fn verify(&self, password: &str, hash: &str) -> AppResult<bool> {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        blocking(move |scratch| verify_with(scratch, &password, &hash)).await
    }

    async fn verify_dummy(&self, password: &str) -> AppResult<()> {
        let password = password.to_owned();
        blocking(move |scratch| {
            let hash = dummy_hash(scratch)?;
            verify_with(scratch, &password, hash).map(|_| ())
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
                        .run(move |scratch| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            // Real work of a hash's length, so that unbounded jobs would overlap.
                            hash_with(scratch, "Secret123")?;
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
        let failed = workers.run(|_| -> AppResult<()> { panic!("boom") }).await;
        assert!(matches!(failed, Err(AppError::Internal(_))));
        assert_eq!(workers.run(|_| Ok(7)).await.unwrap(), 7);
    }

    #[test]
    fn hashes_are_standard_phc_strings_that_the_argon2_crate_verifies_and_the_other_way_round() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};
        let mut scratch = Scratch::default();
        let ours = hash_with(&mut scratch, "Secret123").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(
            Argon2::default()
                .verify_password(b"Secret123", ours.as_str())
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"Secret124", ours.as_str())
                .is_err()
        );
        let theirs = Argon2::default()
            .hash_password(b"Secret123")
            .unwrap()
            .to_string();
        assert!(verify_with(&mut scratch, "Secret123", &theirs).unwrap());
        assert!(!verify_with(&mut scratch, "Secret124", &theirs).unwrap());
        // Other parameters than today's still verify (the stored hash names its own).
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"Secret123")
        .unwrap()
        .to_string();
        assert!(verify_with(&mut scratch, "Secret123", &light).unwrap());
    }

    #[test]
    fn a_thread_hashes_in_the_memory_it_keeps() {
        let mut scratch = Scratch::default();
        hash_with(&mut scratch, "Secret123").unwrap();
        let kept = scratch.blocks.as_ptr();
        assert_eq!(scratch.blocks.len(), Params::default().block_count());
        hash_with(&mut scratch, "Secret124").unwrap();
        let other = hash_with(&mut scratch, "y").unwrap();
        verify_with(&mut scratch, "x", &other).unwrap();
        assert_eq!(
            scratch.blocks.as_ptr(),
            kept,
            "the buffer was allocated again"
        );
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
