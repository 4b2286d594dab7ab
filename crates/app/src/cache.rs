//! In-process read caches for answers that many requests read and few writes change.
//!
//! A [`ReadCache`] is cleared as a whole: every write that could change a cached answer calls
//! [`ReadCache::clear`], which starts a new generation. Entries remember the generation they were
//! read in and are served only while it is current, so an answer read from the database before
//! a write, and stored after the write cleared the cache, is never served. Writes made through
//! other processes are not seen: the time to live bounds that staleness. A zero time to live
//! turns the cache off: nothing is kept and every read goes to the source.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A cache of `K → V`, cleared as a whole on writes; see the module documentation.
pub(crate) struct ReadCache<K, V> {
    inner: Option<Inner<K, V>>,
}

struct Inner<K, V> {
    entries: moka::future::Cache<K, (u64, V)>,
    generation: Arc<AtomicU64>,
}

impl<K, V> Clone for ReadCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.as_ref().map(|inner| Inner {
                entries: inner.entries.clone(),
                generation: Arc::clone(&inner.generation),
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

/// The generation a read started in, taken before asking the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation(u64);

impl<K, V> ReadCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
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
            .weigher(move |_: &K, (_, value): &(u64, V)| weigh(value))
            .time_to_live(ttl)
            .build();
        Self {
            inner: Some(Inner {
                entries,
                generation: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The cached answer for `key`, if one of the current generation is kept.
    pub(crate) async fn get(&self, key: &K) -> Option<V> {
        let inner = self.inner.as_ref()?;
        let (generation, value) = inner.entries.get(key).await?;
        (generation == inner.generation.load(Ordering::SeqCst)).then_some(value)
    }

    /// The cached answer for `key`, or the one `load` reads from the source and keeps.
    /// Concurrent misses of one key share one load: when a popular entry expires under load,
    /// its query runs once, not once per waiting request.
    pub(crate) async fn get_or_load<F, Fut, E>(&self, key: K, load: F) -> Result<V, E>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send,
        E: Send + Sync + 'static,
    {
        let Some(inner) = &self.inner else {
            return load().await;
        };
        if let Some((generation, value)) = inner.entries.get(&key).await {
            if generation == inner.generation.load(Ordering::SeqCst) {
                return Ok(value);
            }
            // Read before a write that cleared the cache: load again.
            inner.entries.invalidate(&key).await;
        }
        let generations = Arc::clone(&inner.generation);
        let loading = load();
        let shared = inner
            .entries
            .try_get_with(key, async move {
                let read_in = generations.load(Ordering::SeqCst);
                loading.await.map(|value| (read_in, value))
            })
            .await;
        match shared {
            Ok((_, value)) => Ok(value),
            // The load failed: the caller that ran it gets its error; one that waited on it
            // asks the source itself (errors are not cached).
            Err(error) => match Arc::try_unwrap(error) {
                Ok(error) => Err(error),
                Err(_) => load().await,
            },
        }
    }

    /// Call before reading the source; pass the result to [`ReadCache::insert`].
    pub(crate) fn generation(&self) -> Generation {
        Generation(
            self.inner
                .as_ref()
                .map_or(0, |inner| inner.generation.load(Ordering::SeqCst)),
        )
    }

    /// Keeps an answer read from the source in generation `read_in`; dropped when a write has
    /// cleared the cache since (the answer may predate that write).
    pub(crate) async fn insert(&self, read_in: Generation, key: K, value: V) {
        let Some(inner) = &self.inner else {
            return;
        };
        if inner.generation.load(Ordering::SeqCst) == read_in.0 {
            inner.entries.insert(key, (read_in.0, value)).await;
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

    #[tokio::test]
    async fn concurrent_misses_of_one_key_share_one_load() {
        let cache = cache(60);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            // Still loading when the other callers arrive.
            tokio::task::yield_now().await;
            Ok::<_, std::convert::Infallible>("one".to_owned())
        };
        let answers = futures::future::join_all((0..10).map(|_| cache.get_or_load(1, load))).await;
        assert!(answers.iter().all(|a| a.as_deref() == Ok("one")));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // A write clears the cache: the next read loads again.
        cache.clear();
        assert_eq!(cache.get_or_load(1, load).await.as_deref(), Ok("one"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_kept_answer_is_served_until_the_cache_is_cleared() {
        let cache = cache(60);
        let read_in = cache.generation();
        cache.insert(read_in, 1, "one".to_owned()).await;
        assert_eq!(cache.get(&1).await.as_deref(), Some("one"));
        cache.clear();
        assert_eq!(cache.get(&1).await, None);
        let read_in = cache.generation();
        cache.insert(read_in, 1, "uno".to_owned()).await;
        assert_eq!(cache.get(&1).await.as_deref(), Some("uno"));
    }

    #[tokio::test]
    async fn an_answer_read_before_a_write_is_not_kept_after_it() {
        let cache = cache(60);
        let read_in = cache.generation();
        // A write lands (and clears the cache) while the read is in flight.
        cache.clear();
        cache.insert(read_in, 1, "stale".to_owned()).await;
        assert_eq!(cache.get(&1).await, None);
    }

    #[tokio::test]
    async fn a_zero_time_to_live_keeps_nothing() {
        let cache = cache(0);
        let read_in = cache.generation();
        cache.insert(read_in, 1, "one".to_owned()).await;
        assert_eq!(cache.get(&1).await, None);
        cache.clear();
    }

    #[test]
    fn weights_are_whole_kib_and_never_zero() {
        assert_eq!(kib(0), 1);
        assert_eq!(kib(1023), 1);
        assert_eq!(kib(4096), 5);
    }
}
