//! Request budgets shared by every instance, in Redis (`REDIS_URL`).
//!
//! One Lua script charges every budget of a request atomically on the server, with the same
//! GCRA arithmetic as the in-process limiter (`inkcart_app::ratelimit`) and the server's clock,
//! so that instances with drifting clocks still share one budget. A key holds a budget's
//! "theoretical arrival time" in µs and expires when the budget is whole again.
//!
//! When Redis cannot be reached (or answers too slowly), requests are decided by this
//! instance's own budgets instead: limits stay, only no longer shared, and neither a Redis
//! outage turns into an API outage nor do limits disappear with it. Redis is then left alone
//! for a second before it is tried again, so that a hung server costs one request a second a
//! timeout, not every request.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_app::ports::{Charge, RateLimiter, Verdict};
use inkcart_app::ratelimit::{Cell, InMemoryRateLimiter, verdict};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// KEYS: the budgets. ARGV: for each, the interval and the burst (µs), and the cost. Returns
/// 1 or 0 (every budget charged, or none), then how far ahead of now each budget was before.
const CHARGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ahead = {}
local ok = 1
for i = 1, #KEYS do
  local interval, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  local a = 0
  if tat and tat > now then a = tat - now end
  ahead[i] = a
  if a + cost * interval > burst then ok = 0 end
end
if ok == 1 then
  for i = 1, #KEYS do
    local after = ahead[i] + tonumber(ARGV[3*i]) * tonumber(ARGV[3*i-2])
    redis.call('SET', KEYS[i], string.format('%.0f', now + after), 'PX', math.ceil(after / 1000) + 1)
  end
end
table.insert(ahead, 1, ok)
return ahead
";

/// How long Redis may take to answer a charge before this instance decides alone.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after it failed.
const BACKOFF: Duration = Duration::from_secs(1);

/// The Redis limiter, with this instance's budgets to fall back on.
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    fallback: InMemoryRateLimiter,
    /// Until when Redis is not asked (after a failure).
    resting_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url`, its keys under `prefix`. The connection is made on first
    /// use and remade after failures; an unreachable server now is an error in the log, not a
    /// failed start (requests are limited per instance until it answers).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let mut conn = ConnectionManager::new_lazy_with_config(client, config)?;
        if let Err(e) = redis::cmd("PING").query_async::<()>(&mut conn).await {
            tracing::error!(
                error = %e,
                "Redis does not answer: rate limits are per instance until it does"
            );
        }
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(CHARGE),
            fallback: InMemoryRateLimiter::default(),
            resting_until: Mutex::new(None),
        })
    }

    async fn charge_shared(&self, charges: &[Charge]) -> redis::RedisResult<Verdict> {
        let mut invocation = self.script.prepare_invoke();
        for charge in charges {
            let cell = Cell::of(charge.quota);
            invocation
                .key(format!("{}{}", self.prefix, charge.key))
                .arg(cell.interval_us)
                .arg(cell.burst_us)
                .arg(charge.cost);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        match reply.split_first() {
            Some((_, ahead)) if ahead.len() == charges.len() => Ok(verdict(charges, ahead)),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "rate limit script answered the wrong number of values",
            ))),
        }
    }

    fn resting(&self) -> bool {
        let until = *self
            .resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        until.is_some_and(|t| Instant::now() < t)
    }

    fn rest(&self, error: &redis::RedisError) {
        let mut until = self
            .resting_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tracing::warn!(
            error = %error,
            "rate limits: Redis failed, deciding with this instance's budgets for a while"
        );
        *until = Some(Instant::now() + BACKOFF);
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn charge(&self, charges: &[Charge], now: DateTime<Utc>) -> Verdict {
        if !self.resting() {
            match self.charge_shared(charges).await {
                Ok(verdict) => return verdict,
                Err(e) => self.rest(&e),
            }
        }
        self.fallback.charge(charges, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkcart_app::ports::Quota;

    #[tokio::test]
    async fn without_redis_the_instances_own_budgets_decide() {
        // Nothing listens on port 1.
        let limiter = RedisRateLimiter::connect("redis://127.0.0.1:1", "t:")
            .await
            .unwrap();
        let charge = [Charge {
            key: "k".to_owned(),
            quota: Quota {
                limit: 2,
                period: Duration::from_secs(60),
            },
            cost: 1,
        }];
        let now = Utc::now();
        let started = Instant::now();
        assert!(limiter.charge(&charge, now).await.allowed);
        assert!(limiter.charge(&charge, now).await.allowed);
        let refused = limiter.charge(&charge, now).await;
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // One failed attempt, then Redis is left alone: no request waits a timeout each.
        assert!(started.elapsed() < TIMEOUT * 4, "{:?}", started.elapsed());
    }
}
