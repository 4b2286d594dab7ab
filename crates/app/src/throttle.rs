//! The in-process login throttle (one instance; a shared one needs Redis).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::LoginThrottle;

/// A sliding-window counter of failures per key. Memory stays bounded: a key is forgotten once
/// its last failure leaves the window, and the map is swept when it grows past `max_keys`.
#[derive(Debug)]
pub struct InMemoryLoginThrottle {
    max_failures: usize,
    window: chrono::Duration,
    max_keys: usize,
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl InMemoryLoginThrottle {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1) as usize,
            window: chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(15)),
            max_keys: 100_000,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn prune(queue: &mut VecDeque<DateTime<Utc>>, cutoff: DateTime<Utc>) {
        while queue.front().is_some_and(|t| *t <= cutoff) {
            queue.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<DateTime<Utc>>>> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl LoginThrottle for InMemoryLoginThrottle {
    async fn check(&self, key: &str, now: DateTime<Utc>) -> Result<(), u64> {
        let mut map = self.lock();
        let Some(queue) = map.get_mut(key) else {
            return Ok(());
        };
        Self::prune(queue, now - self.window);
        if queue.len() < self.max_failures {
            if queue.is_empty() {
                map.remove(key);
            }
            return Ok(());
        }
        // Blocked until the oldest counted failure leaves the window.
        let oldest = queue[queue.len() - self.max_failures];
        let free_at = oldest + self.window;
        let millis = u64::try_from((free_at - now).num_milliseconds()).unwrap_or(0);
        Err(millis.div_ceil(1000).max(1))
    }

    async fn record_failure(&self, key: &str, now: DateTime<Utc>) {
        let mut map = self.lock();
        if map.len() >= self.max_keys && !map.contains_key(key) {
            let cutoff = now - self.window;
            map.retain(|_, q| q.back().is_some_and(|t| *t > cutoff));
        }
        let queue = map.entry(key.to_owned()).or_default();
        Self::prune(queue, now - self.window);
        queue.push_back(now);
        // Only the newest `max_failures` matter.
        while queue.len() > self.max_failures {
            queue.pop_front();
        }
    }

    async fn clear(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[tokio::test]
    async fn five_failures_block_the_key_until_the_first_leaves_the_window() {
        let throttle = InMemoryLoginThrottle::new(5, Duration::from_secs(900));
        for i in 0..5 {
            assert!(throttle.check("k", t(i)).await.is_ok());
            throttle.record_failure("k", t(i)).await;
        }
        assert_eq!(throttle.check("k", t(10)).await, Err(890));
        assert_eq!(throttle.check("k", t(899)).await, Err(1));
        assert!(throttle.check("k", t(900)).await.is_ok());
    }

    #[tokio::test]
    async fn keys_are_counted_apart_and_clearing_resets_one() {
        let throttle = InMemoryLoginThrottle::new(2, Duration::from_secs(60));
        throttle.record_failure("a", t(0)).await;
        throttle.record_failure("a", t(1)).await;
        throttle.record_failure("b", t(1)).await;
        assert!(throttle.check("a", t(2)).await.is_err());
        assert!(throttle.check("b", t(2)).await.is_ok());
        throttle.clear("a").await;
        assert!(throttle.check("a", t(3)).await.is_ok());
    }
}
