//! The in-process login throttle (one instance; a shared one needs Redis).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::LoginThrottle;

/// A sliding window of attempts per key. An attempt is counted when it is reserved, before the
/// password is checked, under the same lock as the check: however many arrive at once, at most
/// `max_attempts` get past it in a window. Memory stays bounded: a key is forgotten once its
/// last attempt leaves the window, and the map is swept when it grows past `max_keys`.
#[derive(Debug)]
pub struct InMemoryLoginThrottle {
    max_attempts: usize,
    window: chrono::Duration,
    max_keys: usize,
    attempts: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl InMemoryLoginThrottle {
    pub fn new(max_attempts: u32, window: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1) as usize,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(15)),
            max_keys: 100_000,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn prune(queue: &mut VecDeque<DateTime<Utc>>, cutoff: DateTime<Utc>) {
        while queue.front().is_some_and(|t| *t <= cutoff) {
            queue.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<DateTime<Utc>>>> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl LoginThrottle for InMemoryLoginThrottle {
    async fn reserve(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let mut map = self.lock();
        let cutoff = now - self.window;
        if map.len() >= self.max_keys && !map.contains_key(key) {
            map.retain(|_, q| q.back().is_some_and(|t| *t > cutoff));
        }
        let queue = map.entry(key.to_owned()).or_default();
        Self::prune(queue, cutoff);
        if queue.len() < self.max_attempts {
            queue.push_back(now);
            return Ok(());
        }
        // Blocked until the oldest counted attempt leaves the window.
        let oldest = queue[queue.len() - self.max_attempts];
        let free_at = oldest + self.window;
        let millis = u64::try_from((free_at - now).num_milliseconds()).unwrap_or(0);
        Err(millis.div_ceil(1000).max(1))
    }

    async fn release(&self, key: &str, at: DateTime<Utc>) {
        let mut map = self.lock();
        if let Some(queue) = map.get_mut(key) {
            if let Some(i) = queue.iter().rposition(|t| *t == at) {
                queue.remove(i);
            }
            if queue.is_empty() {
                map.remove(key);
            }
        }
    }

    async fn clear(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[tokio::test]
    async fn five_attempts_block_the_key_until_the_first_leaves_the_window() {
        let throttle = InMemoryLoginThrottle::new(5, Duration::from_secs(900));
        for i in 0..5 {
            assert!(throttle.reserve("k", t(i)).await.is_ok());
        }
        assert_eq!(throttle.reserve("k", t(10)).await, Err(890));
        assert_eq!(throttle.reserve("k", t(899)).await, Err(1));
        // The refused attempts were not counted: the first slot frees at 900.
        assert!(throttle.reserve("k", t(900)).await.is_ok());
        assert!(throttle.reserve("k", t(900)).await.is_err());
    }

    #[tokio::test]
    async fn keys_are_counted_apart_and_clearing_resets_one() {
        let throttle = InMemoryLoginThrottle::new(2, Duration::from_secs(60));
        throttle.reserve("a", t(0)).await.unwrap();
        throttle.reserve("a", t(1)).await.unwrap();
        throttle.reserve("b", t(1)).await.unwrap();
        assert!(throttle.reserve("a", t(2)).await.is_err());
        assert!(throttle.reserve("b", t(2)).await.is_ok());
        throttle.clear("a").await;
        assert!(throttle.reserve("a", t(3)).await.is_ok());
    }

    #[tokio::test]
    async fn a_released_attempt_no_longer_counts() {
        let throttle = InMemoryLoginThrottle::new(1, Duration::from_secs(60));
        throttle.reserve("k", t(0)).await.unwrap();
        assert!(throttle.reserve("k", t(1)).await.is_err());
        throttle.release("k", t(0)).await;
        assert!(throttle.reserve("k", t(2)).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_exceed_the_limit() {
        let throttle = Arc::new(InMemoryLoginThrottle::new(5, Duration::from_secs(900)));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let throttle = Arc::clone(&throttle);
                tokio::spawn(async move { throttle.reserve("k", t(0)).await.is_ok() })
            })
            .collect();
        let mut granted = 0;
        for task in tasks {
            granted += usize::from(task.await.unwrap());
        }
        assert_eq!(granted, 5);
    }
}
