//! The job queue on Redis (`INKCART_JOB_QUEUE=redis`), for deployments that keep their queues
//! there. Same contract as the database queue: claims with leases, attempts, backoff set by the
//! caller, dead letters, effect keys, one run per schedule slot. Every state change is one Lua
//! script, so it is atomic on the server.
//!
//! Keys, under a prefix: `job:<id>` (the job as JSON), `effect:<key>` (enqueue dedupe),
//! `done:<key>` (effects done), `cron:<name>:<slot>`, and sorted sets `due` (by run time),
//! `running` (by lease end), `all` and `state:<state>` (by creation, for listing).
//!
//! Enqueueing is not part of the database transaction that records the outbox event: the relay
//! enqueues, then marks the event dispatched; after a crash in between, the event is dispatched
//! again and the effect key drops the duplicate job.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inkcart_app::page::{Page, PageRequest};
use inkcart_app::ports::{ExpiredRecords, Job, JobQueue, JobState, NewJob, Purged, Tx};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::JobId;
use redis::Script;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// The job as stored: times in milliseconds since the epoch (Lua numbers).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    id: JobId,
    kind: String,
    /// JSON text (kept as a string so that Lua never re-encodes it).
    payload: String,
    effect_key: String,
    state: String,
    attempts: i64,
    max_attempts: i64,
    run_at: i64,
    #[serde(default)]
    locked_by: Option<String>,
    #[serde(default)]
    locked_until: Option<i64>,
    #[serde(default)]
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
    #[serde(default)]
    finished_at: Option<i64>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> AppResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| AppError::internal("a stored time is out of range"))
}

fn to_job(raw: &str) -> AppResult<Job> {
    let s: Stored = serde_json::from_str(raw)
        .map_err(|e| AppError::internal(format!("a stored job is unreadable: {e}")))?;
    Ok(Job {
        id: s.id,
        kind: s.kind,
        payload: serde_json::from_str(&s.payload)
            .map_err(|e| AppError::internal(format!("job payload: {e}")))?,
        effect_key: s.effect_key,
        state: JobState::parse(&s.state)
            .ok_or_else(|| AppError::internal("a stored job has a bad state"))?,
        attempts: i32::try_from(s.attempts).map_err(AppError::internal)?,
        max_attempts: i32::try_from(s.max_attempts).map_err(AppError::internal)?,
        run_at: at(s.run_at)?,
        locked_by: s.locked_by,
        locked_until: s.locked_until.map(at).transpose()?,
        last_error: s.last_error,
        created_at: at(s.created_at)?,
        updated_at: at(s.updated_at)?,
        finished_at: s.finished_at.map(at).transpose()?,
    })
}

fn redis_err(err: redis::RedisError) -> AppError {
    tracing::error!(error = %err, "redis failed");
    AppError::Unavailable("Job queue unavailable".to_owned())
}

/// Moves a job to a new state in the listing sets (used by every script).
const SET_STATE: &str = r"
local function set_state(p, id, job, state)
  redis.call('ZREM', p .. 'state:' .. job.state, id)
  job.state = state
  redis.call('ZADD', p .. 'state:' .. state, job.created_at, id)
end
";

const ENQUEUE: &str = r"
local p, id, raw, run_at, created = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if not redis.call('SET', p .. 'effect:' .. ARGV[6], id, 'NX') then return 0 end
redis.call('SET', p .. 'job:' .. id, raw)
redis.call('ZADD', p .. 'due', run_at, id)
redis.call('ZADD', p .. 'all', created, id)
redis.call('ZADD', p .. 'state:queued', created, id)
return 1
";

const CLAIM: &str = r"
local p, now, limit, worker, till = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', p .. 'running', '-inf', '(' .. now, 'LIMIT', 0, limit)
if #ids < limit then
  local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'LIMIT', 0, limit - #ids)
  for _, id in ipairs(due) do table.insert(ids, id) end
end
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('GET', p .. 'job:' .. id)
  redis.call('ZREM', p .. 'due', id)
  if raw then
    local job = cjson.decode(raw)
    set_state(p, id, job, 'running')
    job.attempts = job.attempts + 1
    job.locked_by = worker
    job.locked_until = till
    job.updated_at = now
    local enc = cjson.encode(job)
    redis.call('SET', p .. 'job:' .. id, enc)
    redis.call('ZADD', p .. 'running', till, id)
    table.insert(out, enc)
  else
    redis.call('ZREM', p .. 'running', id)
  end
end
return out
";

/// ARGV: prefix, id, worker, now, then per action.
const HELD: &str = r"
local p, id, worker, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local raw = redis.call('GET', p .. 'job:' .. id)
if not raw then return 0 end
local job = cjson.decode(raw)
if job.state ~= 'running' or job.locked_by ~= worker then return 0 end
redis.call('ZREM', p .. 'running', id)
job.locked_by = cjson.null
job.locked_until = cjson.null
job.updated_at = now
";

const FINISH: &str = r"
set_state(p, id, job, 'done')
job.finished_at = now
redis.call('SET', p .. 'job:' .. id, cjson.encode(job))
return 1
";

/// ARGV[5]: error, ARGV[6]: retry time or '' for dead.
const FAIL: &str = r"
job.last_error = ARGV[5]
if ARGV[6] == '' then
  set_state(p, id, job, 'dead')
  job.finished_at = now
else
  set_state(p, id, job, 'failed')
  job.run_at = tonumber(ARGV[6])
  redis.call('ZADD', p .. 'due', job.run_at, id)
end
redis.call('SET', p .. 'job:' .. id, cjson.encode(job))
return 1
";

const RELEASE: &str = r"
set_state(p, id, job, 'queued')
job.attempts = job.attempts - 1
job.run_at = now
redis.call('ZADD', p .. 'due', now, id)
redis.call('SET', p .. 'job:' .. id, cjson.encode(job))
return 1
";

const EXTEND: &str = r"
local p, worker, till = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV do
  local id = ARGV[i]
  local raw = redis.call('GET', p .. 'job:' .. id)
  if raw then
    local job = cjson.decode(raw)
    if job.state == 'running' and job.locked_by == worker then
      job.locked_until = till
      redis.call('SET', p .. 'job:' .. id, cjson.encode(job))
      redis.call('ZADD', p .. 'running', till, id)
    end
  end
end
return 1
";

const RETRY: &str = r"
local p, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('GET', p .. 'job:' .. id)
if not raw then return 0 end
local job = cjson.decode(raw)
if job.state ~= 'failed' and job.state ~= 'dead' then return 0 end
set_state(p, id, job, 'queued')
job.attempts = 0
job.run_at = now
job.finished_at = cjson.null
job.updated_at = now
redis.call('SET', p .. 'job:' .. id, cjson.encode(job))
redis.call('ZADD', p .. 'due', now, id)
return 1
";

/// Removes finished jobs created before ARGV[2], with their dedupe keys.
const PURGE: &str = r"
local p, before = ARGV[1], ARGV[2]
local removed = 0
for _, state in ipairs({'done', 'dead'}) do
  local ids = redis.call('ZRANGEBYSCORE', p .. 'state:' .. state, '-inf', '(' .. before)
  for _, id in ipairs(ids) do
    local raw = redis.call('GET', p .. 'job:' .. id)
    if raw then
      local job = cjson.decode(raw)
      redis.call('DEL', p .. 'effect:' .. job.effect_key)
    end
    redis.call('DEL', p .. 'job:' .. id)
    redis.call('ZREM', p .. 'state:' .. state, id)
    redis.call('ZREM', p .. 'all', id)
    removed = removed + 1
  end
end
return removed
";

struct Scripts {
    enqueue: Script,
    claim: Script,
    finish: Script,
    fail: Script,
    release: Script,
    extend: Script,
    retry: Script,
    purge: Script,
}

/// The Redis job queue; the other records a purge clears stay in the database.
pub struct RedisJobQueue {
    conn: ConnectionManager,
    prefix: String,
    /// The database side of a purge.
    records: Arc<dyn ExpiredRecords>,
    scripts: Scripts,
}

impl std::fmt::Debug for RedisJobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJobQueue")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// How long schedule claims are remembered (a slot is never claimed again within it).
const CRON_MEMORY: u64 = 7 * 24 * 3600;
const KEEP_FINISHED: chrono::Duration = chrono::Duration::days(7);

impl RedisJobQueue {
    pub async fn connect(
        url: &str,
        prefix: &str,
        records: Arc<dyn ExpiredRecords>,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        let with_state = |body: &str| Script::new(&format!("{SET_STATE}{body}"));
        let held = |body: &str| Script::new(&format!("{SET_STATE}{HELD}{body}"));
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            records,
            scripts: Scripts {
                enqueue: Script::new(ENQUEUE),
                claim: with_state(CLAIM),
                finish: held(FINISH),
                fail: held(FAIL),
                release: held(RELEASE),
                extend: Script::new(EXTEND),
                retry: with_state(RETRY),
                purge: Script::new(PURGE),
            },
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    async fn held(
        &self,
        script: &Script,
        id: JobId,
        worker: &str,
        now: DateTime<Utc>,
        extra: &[String],
    ) -> AppResult<()> {
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(id.to_string())
            .arg(worker)
            .arg(ms(now));
        for arg in extra {
            invocation.arg(arg);
        }
        let _: i64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue(&self, _tx: &mut dyn Tx, job: &NewJob, now: DateTime<Utc>) -> AppResult<bool> {
        let id = JobId::generate();
        let stored = Stored {
            id,
            kind: job.kind.as_str().to_owned(),
            payload: job.payload.to_string(),
            effect_key: job.effect_key.clone(),
            state: "queued".to_owned(),
            attempts: 0,
            max_attempts: i64::from(job.max_attempts),
            run_at: ms(job.run_at),
            locked_by: None,
            locked_until: None,
            last_error: None,
            created_at: ms(now),
            updated_at: ms(now),
            finished_at: None,
        };
        let raw = serde_json::to_string(&stored).map_err(AppError::internal)?;
        let inserted: i64 = self
            .scripts
            .enqueue
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id.to_string())
            .arg(raw)
            .arg(ms(job.run_at))
            .arg(ms(now))
            .arg(&job.effect_key)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(inserted == 1)
    }

    async fn claim(
        &self,
        worker: &str,
        limit: u64,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> AppResult<Vec<Job>> {
        let till = now + chrono::Duration::from_std(lease).map_err(AppError::internal)?;
        let raw: Vec<String> = self
            .scripts
            .claim
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(ms(now))
            .arg(limit)
            .arg(worker)
            .arg(ms(till))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        raw.iter().map(|r| to_job(r)).collect()
    }

    async fn extend(&self, ids: &[JobId], worker: &str, until: DateTime<Utc>) -> AppResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.extend.prepare_invoke();
        invocation.arg(&self.prefix).arg(worker).arg(ms(until));
        for id in ids {
            invocation.arg(id.to_string());
        }
        let _: i64 = invocation
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    async fn finish(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()> {
        self.held(&self.scripts.finish, id, worker, now, &[]).await
    }

    async fn fail(
        &self,
        id: JobId,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        let error: String = error.chars().take(2000).collect();
        let retry = retry_at.map(|t| ms(t).to_string()).unwrap_or_default();
        self.held(&self.scripts.fail, id, worker, now, &[error, retry])
            .await
    }

    async fn release(&self, id: JobId, worker: &str, now: DateTime<Utc>) -> AppResult<()> {
        self.held(&self.scripts.release, id, worker, now, &[]).await
    }

    async fn list(&self, state: Option<JobState>, page: PageRequest) -> AppResult<Page<Job>> {
        let set = state.map_or_else(
            || self.key("all"),
            |s| self.key(&format!("state:{}", s.as_str())),
        );
        let mut conn = self.conn.clone();
        let total: u64 = redis::cmd("ZCARD")
            .arg(&set)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let start = page.offset();
        let stop = start + page.limit - 1;
        let ids: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(&set)
            .arg(start)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let raw: Option<String> = redis::cmd("GET")
                .arg(self.key(&format!("job:{id}")))
                .query_async(&mut conn)
                .await
                .map_err(redis_err)?;
            if let Some(raw) = raw {
                items.push(to_job(&raw)?);
            }
        }
        Ok(Page {
            items,
            page: page.page,
            limit: page.limit,
            total,
        })
    }

    async fn find(&self, id: JobId) -> AppResult<Option<Job>> {
        let raw: Option<String> = redis::cmd("GET")
            .arg(self.key(&format!("job:{id}")))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        raw.as_deref().map(to_job).transpose()
    }

    async fn retry(&self, id: JobId, now: DateTime<Utc>) -> AppResult<bool> {
        let retried: i64 = self
            .scripts
            .retry
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(id.to_string())
            .arg(ms(now))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(retried == 1)
    }

    async fn effect_done(&self, key: &str) -> AppResult<bool> {
        redis::cmd("EXISTS")
            .arg(self.key(&format!("done:{key}")))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)
    }

    async fn record_effect(
        &self,
        key: &str,
        job: Option<JobId>,
        _now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("done:{key}")))
            .arg(job.map(|j| j.to_string()).unwrap_or_default())
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(set.is_some())
    }

    async fn claim_schedule(
        &self,
        name: &str,
        slot: DateTime<Utc>,
        _now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("cron:{name}:{}", slot.timestamp())))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(CRON_MEMORY)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        Ok(set.is_some())
    }

    async fn purge(&self, now: DateTime<Utc>) -> AppResult<Purged> {
        let mut purged = self.records.purge_expired(now).await?;
        let removed: u64 = self
            .scripts
            .purge
            .prepare_invoke()
            .arg(&self.prefix)
            .arg(ms(now - KEEP_FINISHED))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err)?;
        purged.jobs += removed;
        Ok(purged)
    }
}
