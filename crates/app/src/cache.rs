//! In-process read caches for answers that many requests read and few writes change.
//!
//! A [`ReadCache`] is cleared as a whole: every write that could change a cached answer calls
//! [`ReadCache::clear`], which starts a new generation. Entries remember the generation they were
//! read in and are served only while it is current, so an answer read from the database before
//! a write, and stored after the write cleared the cache, is never served. Writes made through
//! other processes are not seen: the time to live bounds that staleness. Concurrent misses of a
//! key share one load, and an entry read in the second half of its life is reloaded in the
//! background while it is served, so a busy key never expires under its readers. A zero time to live
//! turns the cache off: nothing is kept and every read goes to the source.
//!
//! A cache given a way to read many keys at once ([`ReadCache::reloading_many`]) reloads the
//! entries that come due in batches: its reload task waits a little for more keys, then reads
//! them all with a few queries, instead of a few queries each. Busy entries come due one by one
//! (their ages spread out), and on a database that shares the server's core, a stream of
//! one-key reloads is what the slowest requests wait behind.
//!
//! What a cache keeps is a [`Shared`] value: every reader of an entry gets the same one, and the
//! adapter that serves it keeps its encoding there, so a cached answer is encoded once in its
//! life instead of once per read.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// A value as the use cases answer it, shared (cheaply cloned) by everyone who reads the same
/// cache entry, with room for its encoding.
///
/// The HTTP layer asks [`Shared::encoded`] for the bytes of its answer; the first reader of an
/// entry encodes it and every later reader of that entry gets the same bytes. The encoding lives
/// and dies with the value: a write that clears a cache drops both, so the bytes can never be
/// older than the value they encode.
pub struct Shared<T> {
    inner: Arc<SharedInner<T>>,
}

struct SharedInner<T> {
    value: T,
    /// The encoding and the representation it was made for.
    encoded: OnceLock<(TypeId, Bytes)>,
}

impl<T> Shared<T> {
    pub fn new(value: T) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                value,
                encoded: OnceLock::new(),
            }),
        }
    }

    /// The value encoded as the representation `R` (a type naming it, such as the body type an
    /// endpoint answers with) by `encode`, kept for the next readers. A value keeps one encoding:
    /// asked for another representation, it encodes that one afresh every time.
    pub fn encoded<R: 'static, E>(
        &self,
        encode: impl FnOnce(&T) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let representation = TypeId::of::<R>();
        if let Some((kept_for, bytes)) = self.inner.encoded.get() {
            if *kept_for == representation {
                return Ok(bytes.clone());
            }
            return encode(&self.inner.value);
        }
        let bytes = encode(&self.inner.value)?;
        // Two first readers may race: each answers with the bytes it made, and one is kept.
        let _ = self.inner.encoded.set((representation, bytes.clone()));
        Ok(bytes)
    }

    /// The value itself: taken when this was its only holder, else copied.
    pub fn into_value(self) -> T
    where
        T: Clone,
    {
        Arc::try_unwrap(self.inner).map_or_else(|shared| shared.value.clone(), |inner| inner.value)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.value.fmt(f)
    }
}

/// A cache of `K → V`, cleared as a whole on writes; see the module documentation.
pub(crate) struct ReadCache<K, V> {
    inner: Option<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: moka::future::Cache<K, Stamped<V>>,
    generation: Arc<AtomicU64>,
    /// After this age an entry that is read is reloaded in the background (half the time to
    /// live), so that a key in steady demand never expires under its readers.
    refresh_after: Duration,
    /// Keys being reloaded in the background.
    refreshing: Arc<Mutex<HashSet<K>>>,
    /// One background reload at a time: entries loaded together (a warm-up, a burst after a
    /// write) come due together, and hundreds of reloads at once starve the requests.
    refresh_turn: Arc<tokio::sync::Semaphore>,
    /// Reads many keys at once, when the cache was given a way to.
    reload_many: Option<ReloadMany<K, V>>,
    /// How long a batch reload waits for more keys to come due: a tenth of the time an entry
    /// is served after it came due (at most a second), so that no entry outlives its time to
    /// live while it waits.
    gather: Duration,
    /// Keys waiting for a batch reload, and whether a task is reloading them.
    due: Arc<Mutex<Due<K>>>,
}

/// Reads the values of many keys at once: those it answers are kept, keys it leaves out are
/// forgotten (gone, or no longer to be cached), and on an error every entry is served on until
/// it expires.
pub(crate) type ReloadMany<K, V> = Arc<
    dyn Fn(Vec<K>) -> Pin<Box<dyn Future<Output = Result<Vec<(K, V)>, String>> + Send>>
        + Send
        + Sync,
>;

/// The most keys one batch reload asks for.
const RELOAD_BATCH: usize = 256;

/// Keys that came due for a batch reload.
struct Due<K> {
    keys: Vec<K>,
    /// A task is reloading: it takes the keys queued meanwhile when its batch is done.
    reloading: bool,
}

/// A kept answer: the generation it was read in and when.
#[derive(Clone)]
struct Stamped<V> {
    generation: u64,
    loaded: Instant,
    value: V,
}

impl<K, V> Clone for ReadCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.as_ref().map(|inner| Inner {
                entries: inner.entries.clone(),
                generation: Arc::clone(&inner.generation),
                refresh_after: inner.refresh_after,
                refreshing: Arc::clone(&inner.refreshing),
                refresh_turn: Arc::clone(&inner.refresh_turn),
                reload_many: inner.reload_many.clone(),
                gather: inner.gather,
                due: Arc::clone(&inner.due),
            }),
        }
    }
}

impl<K, V> std::fmt::Debug for ReadCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> ReadCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache whose entries live `ttl` (zero: no cache at all), holding at most `capacity`
    /// in the unit of `weigh` (which gives an entry's weight).
    pub(crate) fn new(ttl: Duration, capacity: u64, weigh: fn(&V) -> u32) -> Self {
        if ttl.is_zero() {
            return Self { inner: None };
        }
        let entries = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(move |_: &K, entry: &Stamped<V>| weigh(&entry.value))
            .time_to_live(ttl)
            .build();
        Self {
            inner: Some(Inner {
                entries,
                generation: Arc::new(AtomicU64::new(0)),
                refresh_after: ttl / 2,
                refreshing: Arc::new(Mutex::new(HashSet::new())),
                refresh_turn: Arc::new(tokio::sync::Semaphore::new(1)),
                reload_many: None,
                gather: (ttl / 20).min(Duration::from_secs(1)),
                due: Arc::new(Mutex::new(Due {
                    keys: Vec::new(),
                    reloading: false,
                })),
            }),
        }
    }

    /// The same cache, reloading the entries that come due with `reload` (many keys at a
    /// time) instead of one key at a time with the reader's loader.
    pub(crate) fn reloading_many(mut self, reload: ReloadMany<K, V>) -> Self {
        if let Some(inner) = &mut self.inner {
            inner.reload_many = Some(reload);
        }
        self
    }

    /// The cached answer for `key`, if one of the current generation is kept.
    #[cfg(test)]
    pub(crate) async fn get(&self, key: &K) -> Option<V> {
        let inner = self.inner.as_ref()?;
        let entry = inner.entries.get(key).await?;
        (entry.generation == inner.generation.load(Ordering::SeqCst)).then_some(entry.value)
    }

    /// The cached answer for `key`, or the one `load(key)` reads from the source and keeps.
    /// Concurrent misses of one key share one load: when a popular entry expires under load,
    /// its query runs once, not once per waiting request. An entry read in the second half of
    /// its life is reloaded in the background while it goes on being served, so a key in
    /// steady demand is never missing; nothing older than the time to live is ever served.
    pub(crate) async fn get_or_load<F, Fut, E>(&self, key: K, load: F) -> Result<V, E>
    where
        F: Fn(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let Some(inner) = &self.inner else {
            return load(key).await;
        };
        if let Some(entry) = inner.entries.get(&key).await {
            if entry.generation == inner.generation.load(Ordering::SeqCst) {
                if entry.loaded.elapsed() >= inner.refresh_after {
                    inner.refresh_in_background(key, load);
                }
                return Ok(entry.value);
            }
            // Read before a write that cleared the cache: load again.
            inner.entries.invalidate(&key).await;
        }
        let generations = Arc::clone(&inner.generation);
        let loading = load(key.clone());
        let shared = inner
            .entries
            .try_get_with(key.clone(), async move {
                let read_in = generations.load(Ordering::SeqCst);
                loading.await.map(|value| Stamped {
                    generation: read_in,
                    loaded: Instant::now(),
                    value,
                })
            })
            .await;
        match shared {
            Ok(entry) => Ok(entry.value),
            // The load failed: the caller that ran it gets its error; one that waited on it
            // asks the source itself (errors are not cached).
            Err(error) => match Arc::try_unwrap(error) {
                Ok(error) => Err(error),
                Err(_) => load(key).await,
            },
        }
    }

    /// Forgets every answer: the next read of each key goes to the source.
    pub(crate) fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.generation.fetch_add(1, Ordering::SeqCst);
            inner.entries.invalidate_all();
        }
    }
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Reloads `key` on a task of its own, once at a time per key and one key at a time; the
    /// answer is kept only if no write cleared the cache meanwhile.
    fn refresh_in_background<F, Fut, E>(&self, key: K, load: F)
    where
        F: Fn(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        if !lock(&self.refreshing).insert(key.clone()) {
            return;
        }
        if let Some(reload) = &self.reload_many {
            return self.queue_for_batch(key, Arc::clone(reload));
        }
        let entries = self.entries.clone();
        let generation = Arc::clone(&self.generation);
        let refreshing = Arc::clone(&self.refreshing);
        let turn = Arc::clone(&self.refresh_turn);
        tokio::spawn(async move {
            // Waiting for the turn: the entry goes on being served meanwhile.
            let _turn = turn.acquire_owned().await;
            let read_in = generation.load(Ordering::SeqCst);
            if let Ok(value) = load(key.clone()).await
                && generation.load(Ordering::SeqCst) == read_in
            {
                let entry = Stamped {
                    generation: read_in,
                    loaded: Instant::now(),
                    value,
                };
                entries.insert(key.clone(), entry).await;
            }
            lock(&refreshing).remove(&key);
        });
    }

    /// Queues `key` for a batch reload, starting the task that reloads batches unless one is
    /// running. That task waits [`Self::gather`] for the keys that come due meanwhile, reads up
    /// to [`RELOAD_BATCH`] of them with one call of `reload`, and goes on so until no key is
    /// left. The wait is what makes batches: entries loaded at different moments come due one
    /// by one (with 200 posts read steadily and a 5 s life, 80 a second), and without it each
    /// would be a batch of its own.
    fn queue_for_batch(&self, key: K, reload: ReloadMany<K, V>) {
        {
            let mut due = lock(&self.due);
            due.keys.push(key);
            if due.reloading {
                return;
            }
            due.reloading = true;
        }
        let entries = self.entries.clone();
        let generation = Arc::clone(&self.generation);
        let refreshing = Arc::clone(&self.refreshing);
        let due = Arc::clone(&self.due);
        let gather = self.gather;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(gather).await;
                let batch: Vec<K> = {
                    let mut due = lock(&due);
                    if due.keys.is_empty() {
                        due.reloading = false;
                        return;
                    }
                    let n = due.keys.len().min(RELOAD_BATCH);
                    due.keys.drain(..n).collect()
                };
                let read_in = generation.load(Ordering::SeqCst);
                // On a task of its own: a reload that panics counts as one that failed, and
                // this task goes on.
                let read = tokio::spawn(reload(batch.clone()))
                    .await
                    .unwrap_or_else(|e| Err(format!("the reload failed: {e}")));
                match read {
                    // A write cleared the cache meanwhile: what was read is not kept.
                    Ok(_) if generation.load(Ordering::SeqCst) != read_in => {}
                    Ok(found) => {
                        let mut found: HashMap<K, V> = found.into_iter().collect();
                        for key in &batch {
                            match found.remove(key) {
                                Some(value) => {
                                    let entry = Stamped {
                                        generation: read_in,
                                        loaded: Instant::now(),
                                        value,
                                    };
                                    entries.insert(key.clone(), entry).await;
                                }
                                None => entries.invalidate(key).await,
                            }
                        }
                    }
                    Err(error) => tracing::warn!(
                        keys = batch.len(),
                        %error,
                        "background reload failed; the entries are served until they expire"
                    ),
                }
                let mut refreshing = lock(&refreshing);
                for key in &batch {
                    refreshing.remove(key);
                }
            }
        });
    }
}

/// A lock on the cache's bookkeeping (a panic while it was held leaves it usable).
fn lock<T>(state: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A weight in KiB (at least 1) for an entry of about `bytes` bytes.
pub(crate) fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(ttl_secs: u64) -> ReadCache<u32, String> {
        ReadCache::new(Duration::from_secs(ttl_secs), 1024, |v| kib(v.len()))
    }

    type Loading =
        std::pin::Pin<Box<dyn Future<Output = Result<String, std::convert::Infallible>> + Send>>;

    /// A loader that counts its calls and answers `answer`.
    fn counting(
        answer: &'static str,
    ) -> (
        Arc<std::sync::atomic::AtomicUsize>,
        impl Fn(u32) -> Loading + Clone + Send + 'static,
    ) {
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&loads);
        let load = move |_| {
            let counter = Arc::clone(&counter);
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                // Still loading when the other callers arrive.
                tokio::task::yield_now().await;
                Ok(answer.to_owned())
            }) as Loading
        };
        (loads, load)
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_share_one_load() {
        let cache = cache(60);
        let (loads, load) = counting("one");
        let answers =
            futures::future::join_all((0..10).map(|_| cache.get_or_load(1, load.clone()))).await;
        assert!(answers.iter().all(|a| a.as_deref() == Ok("one")));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A write clears the cache: the next read loads again.
        cache.clear();
        assert_eq!(cache.get_or_load(1, load).await.as_deref(), Ok("one"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_read_late_in_its_life_is_reloaded_while_it_is_served() {
        let cache = cache(10);
        let (_, old) = counting("old");
        assert_eq!(cache.get_or_load(1, old).await.as_deref(), Ok("old"));
        let (loads, new) = counting("new");
        // Early in its life: served, not reloaded.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            cache.get_or_load(1, new.clone()).await.as_deref(),
            Ok("old")
        );
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        // Past half its life: still served at once, and reloaded behind the reader.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            cache.get_or_load(1, new.clone()).await.as_deref(),
            Ok("old")
        );
        while cache.get(&1).await.as_deref() != Some("new") {
            tokio::task::yield_now().await;
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_kept_answer_is_served_until_the_cache_is_cleared() {
        let cache = cache(60);
        let (loads, load) = counting("one");
        assert_eq!(
            cache.get_or_load(1, load.clone()).await.as_deref(),
            Ok("one")
        );
        assert_eq!(
            cache.get_or_load(1, load.clone()).await.as_deref(),
            Ok("one")
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        cache.clear();
        assert_eq!(cache.get(&1).await, None);
        let (_, uno) = counting("uno");
        assert_eq!(cache.get_or_load(1, uno).await.as_deref(), Ok("uno"));
        assert_eq!(cache.get(&1).await.as_deref(), Some("uno"));
    }

    #[tokio::test]
    async fn an_answer_read_before_a_write_is_not_kept_after_it() {
        let cache = cache(60);
        let writer = cache.clone();
        // A write lands (and clears the cache) while the read is in flight.
        let read = cache
            .get_or_load(1, move |_| {
                let writer = writer.clone();
                async move {
                    writer.clear();
                    Ok::<_, std::convert::Infallible>("stale".to_owned())
                }
            })
            .await;
        assert_eq!(read.as_deref(), Ok("stale"));
        assert_eq!(cache.get(&1).await, None);
    }

    #[tokio::test]
    async fn a_zero_time_to_live_keeps_nothing() {
        let cache = cache(0);
        let (loads, load) = counting("one");
        assert_eq!(
            cache.get_or_load(1, load.clone()).await.as_deref(),
            Ok("one")
        );
        assert_eq!(cache.get_or_load(1, load).await.as_deref(), Ok("one"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.get(&1).await, None);
        cache.clear();
    }

    /// The keys of each call of a batch reloader.
    type Calls = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A batch reloader that records the keys of each call and answers `new-<key>` for the
    /// keys `answers` accepts (or fails, on `None`).
    fn batch_reloader(answers: fn(u32) -> Option<bool>) -> (Calls, ReloadMany<u32, String>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let reload: ReloadMany<u32, String> = Arc::new(move |keys: Vec<u32>| {
            lock(&recorded).push(keys.clone());
            Box::pin(async move {
                // Still reading when other keys come due.
                tokio::task::yield_now().await;
                let mut found = Vec::new();
                for key in keys {
                    match answers(key) {
                        None => return Err("database unreachable".to_owned()),
                        Some(true) => found.push((key, format!("new-{key}"))),
                        Some(false) => {}
                    }
                }
                Ok(found)
            })
        });
        (calls, reload)
    }

    /// Waits until no key is queued or being reloaded in the background (on the paused clock,
    /// which moves on by itself while every task waits).
    async fn reloads_settled(cache: &ReadCache<u32, String>) {
        let Some(inner) = &cache.inner else { return };
        for _ in 0..10_000 {
            if lock(&inner.refreshing).is_empty() && !lock(&inner.due).reloading {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("background reloads never finished");
    }

    /// Twenty entries loaded at once with `old`, then read again past half their life with a
    /// loader that must not be called.
    async fn twenty_entries_come_due(cache: &ReadCache<u32, String>) {
        for key in 0..20 {
            let (_, old) = counting("old");
            assert_eq!(cache.get_or_load(key, old).await.as_deref(), Ok("old"));
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        let (loads, unused) = counting("one by one");
        for key in 0..20 {
            let read = cache.get_or_load(key, unused.clone()).await;
            assert_eq!(read.as_deref(), Ok("old"), "served while it is reloaded");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_that_come_due_one_by_one_are_reloaded_in_one_batch_each_key_once() {
        let (calls, reload) = batch_reloader(|_| Some(true));
        let cache = cache(10).reloading_many(reload);
        // Loaded 10 ms apart, and read again as each passes half its life (5 s).
        let step = Duration::from_millis(10);
        for key in 0..20 {
            let (_, old) = counting("old");
            assert_eq!(cache.get_or_load(key, old).await.as_deref(), Ok("old"));
            tokio::time::advance(step).await;
        }
        tokio::time::advance(Duration::from_secs(5) - step * 20).await;
        let (loads, unused) = counting("one by one");
        for key in 0..20 {
            let read = cache.get_or_load(key, unused.clone()).await;
            assert_eq!(read.as_deref(), Ok("old"), "served while it is reloaded");
            tokio::time::advance(step).await;
        }
        reloads_settled(&cache).await;
        for key in 0..20 {
            assert_eq!(cache.get(&key).await, Some(format!("new-{key}")));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        let calls = lock(&calls).clone();
        assert_eq!(
            calls.len(),
            1,
            "one call for the keys that came due: {calls:?}"
        );
        let mut reloaded: Vec<u32> = calls.concat();
        reloaded.sort_unstable();
        assert_eq!(reloaded, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_reload_forgets_the_keys_it_no_longer_finds() {
        let (_, reload) = batch_reloader(|key| Some(key % 2 == 0));
        let cache = cache(10).reloading_many(reload);
        twenty_entries_come_due(&cache).await;
        reloads_settled(&cache).await;
        for key in 0..20 {
            let expected = (key % 2 == 0).then(|| format!("new-{key}"));
            assert_eq!(cache.get(&key).await, expected, "key {key}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failed_batch_reload_the_entries_are_served_on_and_the_next_read_retries() {
        let (calls, reload) = batch_reloader(|_| None);
        let cache = cache(10).reloading_many(reload);
        twenty_entries_come_due(&cache).await;
        reloads_settled(&cache).await;
        let failed = lock(&calls).len();
        assert!(failed >= 1);
        for key in 0..20 {
            assert_eq!(cache.get(&key).await.as_deref(), Some("old"));
        }
        // The next read tries again.
        let (_, unused) = counting("one by one");
        assert_eq!(cache.get_or_load(3, unused).await.as_deref(), Ok("old"));
        reloads_settled(&cache).await;
        assert_eq!(lock(&calls).len(), failed + 1);
    }

    #[test]
    fn weights_are_whole_kib_and_never_zero() {
        assert_eq!(kib(0), 1);
        assert_eq!(kib(1023), 1);
        assert_eq!(kib(4096), 5);
    }

    /// Encodes `value` as its bytes, counting the calls.
    fn encoder(
        calls: &std::sync::atomic::AtomicUsize,
    ) -> impl FnOnce(&String) -> Result<Bytes, std::convert::Infallible> + '_ {
        move |value| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(format!("<{value}>")))
        }
    }

    struct Body;
    struct OtherBody;

    #[test]
    fn a_shared_value_is_encoded_by_its_first_reader_and_every_later_reader_gets_those_bytes() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let value = Shared::new("post".to_owned());
        let reader = value.clone();
        assert_eq!(
            value.encoded::<Body, _>(encoder(&calls)),
            Ok(Bytes::from("<post>"))
        );
        assert_eq!(
            reader.encoded::<Body, _>(encoder(&calls)),
            Ok(Bytes::from("<post>"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_shared_value_asked_for_another_representation_encodes_it_afresh_each_time() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let value = Shared::new("post".to_owned());
        let _ =
            value.encoded::<Body, _>(|_| Ok::<_, std::convert::Infallible>(Bytes::from("body")));
        assert_eq!(
            value.encoded::<OtherBody, _>(encoder(&calls)),
            Ok(Bytes::from("<post>"))
        );
        assert_eq!(
            value.encoded::<OtherBody, _>(encoder(&calls)),
            Ok(Bytes::from("<post>"))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            value.encoded::<Body, _>(encoder(&calls)),
            Ok(Bytes::from("body"))
        );
    }

    #[test]
    fn a_failed_encoding_is_not_kept() {
        let value = Shared::new("post".to_owned());
        assert_eq!(
            value.encoded::<Body, _>(|_| Err("full disk")),
            Err("full disk")
        );
        let calls = std::sync::atomic::AtomicUsize::new(0);
        assert_eq!(
            value.encoded::<Body, _>(encoder(&calls)),
            Ok(Bytes::from("<post>"))
        );
    }

    #[tokio::test]
    async fn after_a_write_clears_the_cache_readers_get_the_encoding_of_the_new_value() {
        let cache: ReadCache<u32, Shared<String>> =
            ReadCache::new(Duration::from_secs(60), 1024, |v| kib(v.len()));
        let load = |answer: &'static str| {
            move |_| async move { Ok::<_, std::convert::Infallible>(Shared::new(answer.to_owned())) }
        };
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let old = cache.get_or_load(1, load("old")).await;
        assert_eq!(
            old.map(|v| v.encoded::<Body, _>(encoder(&calls))),
            Ok(Ok(Bytes::from("<old>")))
        );
        let kept = cache.get_or_load(1, load("unused")).await;
        assert_eq!(
            kept.map(|v| v.encoded::<Body, _>(encoder(&calls))),
            Ok(Ok(Bytes::from("<old>")))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.clear();
        let new = cache.get_or_load(1, load("new")).await;
        assert_eq!(
            new.map(|v| v.encoded::<Body, _>(encoder(&calls))),
            Ok(Ok(Bytes::from("<new>")))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
