//! Request rate limits: the classes of requests, their budgets, and the in-process limiter.
//!
//! Budgets follow GCRA (the generic cell rate algorithm): a budget of `limit` requests per
//! `period` is one "theoretical arrival time" per key, pushed `period / limit` ahead by each
//! request; a request fits while that time is at most `period` ahead of now. That is a token
//! bucket of `limit` tokens refilled evenly, kept in one number. The same arithmetic runs in
//! Redis (a Lua script, `inkcart_adapters::ratelimit`) when instances share their budgets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_domain::UserId;

use crate::ports::{Charge, Clock, Quota, RateLimiter, Verdict};

/// What a request is, for its budgets. Every request is `General`; the others are charged on
/// top of it, with budgets of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    General,
    SignUp,
    Login,
    Refresh,
    PasswordReset,
    Verification,
}

impl RateClass {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::General => "general",
            Self::SignUp => "sign-up",
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::PasswordReset => "password-reset",
            Self::Verification => "verification",
        }
    }
}

/// The budgets of each class. General requests have one budget per client address and one per
/// signed-in user; each other class has its quota per address and, when signed in, per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub per_ip: Quota,
    pub per_user: Quota,
    pub sign_up: Quota,
    pub login: Quota,
    pub refresh: Quota,
    pub password_reset: Quota,
    pub verification: Quota,
}

const fn quota(limit: u32, secs: u64) -> Quota {
    Quota {
        limit,
        period: Duration::from_secs(secs),
    }
}

impl Default for RateLimitPolicy {
    /// Numbers no person meets by hand: an address can send 20 requests a second for a minute
    /// (an office behind one NAT), a user 10; sign-ups, resets and verification mails are a
    /// few an hour per address, logins 12 a minute and refreshes one a second (an office's
    /// sessions all refresh every 15 minutes).
    fn default() -> Self {
        Self {
            per_ip: quota(1200, 60),
            per_user: quota(600, 60),
            sign_up: quota(10, 3600),
            login: quota(60, 300),
            refresh: quota(300, 300),
            password_reset: quota(10, 3600),
            verification: quota(10, 3600),
        }
    }
}

impl RateLimitPolicy {
    fn quota(&self, class: RateClass) -> (Quota, Quota) {
        match class {
            RateClass::General => (self.per_ip, self.per_user),
            RateClass::SignUp => (self.sign_up, self.sign_up),
            RateClass::Login => (self.login, self.login),
            RateClass::Refresh => (self.refresh, self.refresh),
            RateClass::PasswordReset => (self.password_reset, self.password_reset),
            RateClass::Verification => (self.verification, self.verification),
        }
    }
}

/// A quota in whole microseconds: the time one request pushes the budget ahead, and how far
/// ahead it may be (`limit` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub interval_us: i64,
    pub burst_us: i64,
}

impl Cell {
    pub fn of(quota: Quota) -> Self {
        let limit = i64::from(quota.limit.max(1));
        let period = i64::try_from(quota.period.as_micros()).unwrap_or(i64::MAX / 2);
        let interval_us = (period / limit).max(1);
        Self {
            interval_us,
            burst_us: interval_us.saturating_mul(limit),
        }
    }

    /// How far ahead the budget is after spending `cost` from `ahead_us`.
    pub fn after(self, ahead_us: i64, cost: u32) -> i64 {
        ahead_us.saturating_add(self.interval_us.saturating_mul(i64::from(cost)))
    }

    pub fn fits(self, ahead_us: i64, cost: u32) -> bool {
        self.after(ahead_us, cost) <= self.burst_us
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The verdict over `charges`, given how far ahead of now each budget was before them
/// (`ahead_us[i]`, zero for a whole budget). Shared by every limiter, so that they all answer
/// the same headers.
pub fn verdict(charges: &[Charge], ahead_us: &[i64]) -> Verdict {
    let mut allowed_verdict: Option<Verdict> = None;
    let mut refused: Option<Verdict> = None;
    for (charge, &ahead) in charges.iter().zip(ahead_us) {
        let cell = Cell::of(charge.quota);
        let after = cell.after(ahead, charge.cost);
        if after <= cell.burst_us {
            let remaining = u32::try_from((cell.burst_us - after) / cell.interval_us).unwrap_or(0);
            let this = Verdict {
                allowed: true,
                limit: charge.quota.limit,
                remaining,
                reset_after: micros(after),
                retry_after: Duration::ZERO,
            };
            if allowed_verdict.is_none_or(|v| remaining < v.remaining) {
                allowed_verdict = Some(this);
            }
        } else {
            let retry_after = micros(after - cell.burst_us);
            let this = Verdict {
                allowed: false,
                limit: charge.quota.limit,
                remaining: 0,
                reset_after: micros(ahead),
                retry_after,
            };
            if refused.is_none_or(|v| retry_after > v.retry_after) {
                refused = Some(this);
            }
        }
    }
    refused.or(allowed_verdict).unwrap_or(Verdict {
        allowed: true,
        limit: 0,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
    })
}

/// The budgets of this process: one "theoretical arrival time" (µs since the epoch) per key.
/// Memory stays bounded: keys whose budget is whole again are swept once the map reaches
/// `max_keys`; if every key is still in use then, new keys are let through uncounted (and a
/// warning logged) rather than refused.
#[derive(Debug)]
pub struct InMemoryRateLimiter {
    max_keys: usize,
    arrivals: Mutex<HashMap<String, i64>>,
}

impl Default for InMemoryRateLimiter {
    fn default() -> Self {
        Self::with_max_keys(1_000_000)
    }
}

impl InMemoryRateLimiter {
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            max_keys,
            arrivals: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock leaves only counters behind: keep using them.
        self.arrivals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RateLimiter for InMemoryRateLimiter {
    async fn charge(&self, charges: &[Charge], now: DateTime<Utc>) -> Verdict {
        let now = now.timestamp_micros();
        let mut map = self.lock();
        let ahead: Vec<i64> = charges
            .iter()
            .map(|c| map.get(&c.key).map_or(0, |tat| (tat - now).max(0)))
            .collect();
        let verdict = verdict(charges, &ahead);
        if !verdict.allowed {
            return verdict;
        }
        let new_keys = charges.iter().filter(|c| !map.contains_key(&c.key)).count();
        if map.len() + new_keys > self.max_keys {
            map.retain(|_, tat| *tat > now);
        }
        for (charge, ahead) in charges.iter().zip(ahead) {
            let tat = now + Cell::of(charge.quota).after(ahead, charge.cost);
            if let Some(stored) = map.get_mut(&charge.key) {
                *stored = tat;
            } else if map.len() < self.max_keys {
                map.insert(charge.key.clone(), tat);
            } else {
                tracing::warn!(
                    keys = map.len(),
                    "rate limiter full of budgets in use: a new client goes uncounted"
                );
            }
        }
        verdict
    }
}

/// The request budgets of clients and users.
#[derive(Clone)]
pub struct RateLimits {
    limiter: Arc<dyn RateLimiter>,
    clock: Arc<dyn Clock>,
    /// `None`: rate limits are off.
    policy: Option<RateLimitPolicy>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    pub(crate) fn new(
        limiter: Arc<dyn RateLimiter>,
        clock: Arc<dyn Clock>,
        policy: Option<RateLimitPolicy>,
    ) -> Self {
        Self {
            limiter,
            clock,
            policy,
        }
    }

    /// Whether request rate limits are on.
    pub fn rate_limits_on(&self) -> bool {
        self.policy.is_some()
    }

    /// Charges a request (`uses`: each class and how many of it) to the budgets of the client
    /// address and of the signed-in user: all of them, or none when one is spent. `None` when
    /// rate limits are off.
    pub async fn charge_requests(
        &self,
        ip: &str,
        user: Option<UserId>,
        uses: &[(RateClass, u32)],
    ) -> Option<Verdict> {
        let policy = self.policy.as_ref()?;
        let mut charges = Vec::with_capacity(uses.len() * 2);
        for &(class, cost) in uses.iter().filter(|(_, cost)| *cost > 0) {
            let (per_ip, per_user) = policy.quota(class);
            let prefix = match class {
                RateClass::General => String::new(),
                other => format!("{}:", other.as_str()),
            };
            charges.push(Charge {
                key: format!("{prefix}ip:{ip}"),
                quota: per_ip,
                cost,
            });
            if let Some(user) = user {
                charges.push(Charge {
                    key: format!("{prefix}user:{user}"),
                    quota: per_user,
                    cost,
                });
            }
        }
        Some(self.limiter.charge(&charges, self.clock.now()).await)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn charge(key: &str, limit: u32, secs: u64, cost: u32) -> Charge {
        Charge {
            key: key.to_owned(),
            quota: quota(limit, secs),
            cost,
        }
    }

    #[tokio::test]
    async fn a_budget_allows_its_limit_at_once_then_refills_evenly() {
        let limiter = InMemoryRateLimiter::default();
        let c = [charge("k", 5, 10, 1)];
        for left in (0..5).rev() {
            let v = limiter.charge(&c, t(0)).await;
            assert!(v.allowed);
            assert_eq!((v.limit, v.remaining), (5, left));
        }
        let refused = limiter.charge(&c, t(0)).await;
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        assert_eq!(refused.reset_after, Duration::from_secs(10));
        // One request's worth comes back every two seconds.
        assert!(!limiter.charge(&c, t(1_999)).await.allowed);
        let v = limiter.charge(&c, t(2_000)).await;
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
        let v = limiter.charge(&c, t(12_000)).await;
        assert_eq!(v.remaining, 4, "{v:?}");
    }

    #[tokio::test]
    async fn a_refused_charge_spends_nothing_from_any_budget() {
        let limiter = InMemoryRateLimiter::default();
        let both = [charge("wide", 100, 60, 1), charge("narrow", 1, 60, 1)];
        assert!(limiter.charge(&both, t(0)).await.allowed);
        for _ in 0..10 {
            assert!(!limiter.charge(&both, t(0)).await.allowed);
        }
        let wide = limiter.charge(&[charge("wide", 100, 60, 1)], t(0)).await;
        assert_eq!(wide.remaining, 98);
    }

    #[tokio::test]
    async fn the_verdict_is_told_by_the_tightest_budget() {
        let limiter = InMemoryRateLimiter::default();
        let v = limiter
            .charge(&[charge("a", 100, 60, 3), charge("b", 10, 60, 3)], t(0))
            .await;
        assert_eq!((v.limit, v.remaining), (10, 7));
    }

    #[tokio::test]
    async fn a_cost_above_the_limit_never_fits() {
        let limiter = InMemoryRateLimiter::default();
        let v = limiter.charge(&[charge("k", 10, 3600, 600)], t(0)).await;
        assert!(!v.allowed);
        assert!(
            limiter
                .charge(&[charge("k", 10, 3600, 10)], t(0))
                .await
                .allowed
        );
    }

    #[tokio::test]
    async fn spent_keys_are_swept_and_a_full_map_lets_new_keys_through() {
        let limiter = InMemoryRateLimiter::with_max_keys(2);
        for key in ["a", "b"] {
            limiter.charge(&[charge(key, 1, 1, 1)], t(0)).await;
        }
        // Full of budgets in use: a third key is let through, uncounted.
        for _ in 0..3 {
            assert!(limiter.charge(&[charge("c", 1, 1, 1)], t(0)).await.allowed);
        }
        // A second later both budgets are whole again and make room.
        assert!(
            limiter
                .charge(&[charge("c", 1, 1, 1)], t(1_000))
                .await
                .allowed
        );
        assert!(
            !limiter
                .charge(&[charge("c", 1, 1, 1)], t(1_000))
                .await
                .allowed
        );
        assert_eq!(limiter.lock().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_charges_never_spend_more_than_the_budget() {
        let limiter = Arc::new(InMemoryRateLimiter::default());
        let tasks: Vec<_> = (0..300)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter
                        .charge(&[charge("k", 50, 3600, 1)], t(0))
                        .await
                        .allowed
                })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            allowed += usize::from(task.await.unwrap());
        }
        assert_eq!(allowed, 50);
    }
}
