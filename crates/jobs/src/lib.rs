//! The background runtime: a worker that claims due jobs and runs them with a timeout, a relay
//! that turns outbox events into jobs (and publishes them), and the schedules. The rules of
//! each job live in `inkcart-app`; this crate only decides when and how many run.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use inkcart_app::Background;
use inkcart_app::ports::Job;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at the same time by this process.
    pub concurrency: usize,
    /// How long to wait between polls when there is nothing to do.
    pub poll_interval: Duration,
    /// A job running longer than this fails (and is retried).
    pub job_timeout: Duration,
    /// On shutdown, how long running jobs may take to finish before they are handed back.
    pub shutdown_grace: Duration,
    /// How often the lease of running jobs is renewed (well under the lease itself).
    pub heartbeat: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            job_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(20),
        }
    }
}

/// A name for this worker, unique across processes (it marks the jobs it holds).
pub fn worker_id() -> String {
    format!(
        "worker-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Runs the relay, the schedules and the job worker until `shutdown` resolves; then stops
/// claiming, lets running jobs finish for the grace period, and hands the rest back.
pub async fn run(
    background: Background,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let relay = tokio::spawn(relay_loop(
        background.clone(),
        config.poll_interval,
        stop_rx.clone(),
    ));
    let schedules = tokio::spawn(schedule_loop(background.clone(), stop_rx.clone()));
    let worker = tokio::spawn(worker_loop(background, config, stop_rx));
    shutdown.await;
    tracing::info!("background work: stopping");
    let _ = stop_tx.send(true);
    for task in [relay, schedules, worker] {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a background task ended abnormally");
        }
    }
    tracing::info!("background work: stopped");
}

async fn stopped(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(wait) => *stop.borrow(),
    }
}

/// Events the relay takes at once, in one read and one transaction.
const RELAY_BATCH: usize = 200;

/// Outbox → jobs, and outbox → broker. A full batch means more are waiting: the next batch
/// follows at once. Otherwise the relay waits `interval`, so that under a steady stream of
/// writes it takes events in batches, not a few at a time in a transaction of their own.
async fn relay_loop(background: Background, interval: Duration, mut stop: watch::Receiver<bool>) {
    let limit = RELAY_BATCH as u64;
    loop {
        let mut busy = false;
        match background.dispatch_events(limit).await {
            Ok(n) => busy |= n >= RELAY_BATCH,
            Err(e) => tracing::error!(error = %e, "dispatching outbox events failed"),
        }
        match background.publish_events(limit).await {
            Ok(n) => busy |= n >= RELAY_BATCH,
            Err(e) => tracing::warn!(error = %e, "publishing outbox events failed; will retry"),
        }
        let wait = if busy { Duration::ZERO } else { interval };
        if stopped(&mut stop, wait).await {
            return;
        }
    }
}

async fn schedule_loop(background: Background, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = background.run_schedules().await {
            tracing::error!(error = %e, "running schedules failed");
        }
        if stopped(&mut stop, Duration::from_secs(30)).await {
            return;
        }
    }
}

async fn run_one(background: Background, job: Job, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, background.run_job(&job)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
    }
}

async fn settle(background: &Background, worker: &str, job: &Job, result: Result<(), String>) {
    let outcome = match result {
        Ok(()) => background.finish_job(job, worker).await,
        Err(error) => background.fail_job(job, worker, &error).await,
    };
    if let Err(e) = outcome {
        tracing::error!(job = %job.id, error = %e, "recording a job's outcome failed");
    }
}

async fn worker_loop(
    background: Background,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let worker = worker_id();
    tracing::info!(%worker, concurrency = config.concurrency, "worker started");
    let mut running: JoinSet<Result<(), String>> = JoinSet::new();
    let mut held: HashMap<tokio::task::Id, Job> = HashMap::new();
    let mut heartbeat = tokio::time::interval(config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let free = config.concurrency.saturating_sub(running.len());
        let mut claimed = 0;
        if free > 0 && !*stop.borrow() {
            match background.claim_jobs(&worker, free as u64).await {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        let handle = running.spawn(run_one(
                            background.clone(),
                            job.clone(),
                            config.job_timeout,
                        ));
                        held.insert(handle.id(), job);
                    }
                }
                Err(e) => tracing::error!(error = %e, "claiming jobs failed"),
            }
        }
        let wait = if claimed > 0 && running.len() < config.concurrency {
            Duration::ZERO
        } else {
            config.poll_interval
        };
        tokio::select! {
            Some(done) = running.join_next_with_id() => {
                let (id, result) = match done {
                    Ok((id, result)) => (id, result),
                    Err(e) => (e.id(), Err(format!("the job panicked: {e}"))),
                };
                if let Some(job) = held.remove(&id) {
                    settle(&background, &worker, &job, result).await;
                }
            }
            _ = heartbeat.tick() => {
                let ids: Vec<_> = held.values().map(|j| j.id).collect();
                if let Err(e) = background.extend_jobs(&ids, &worker).await {
                    tracing::warn!(error = %e, "renewing job leases failed");
                }
            }
            _ = stop.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    // Shutdown: let running jobs finish for a while, then hand back what is left.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    while !running.is_empty() {
        match tokio::time::timeout_at(deadline, running.join_next_with_id()).await {
            Ok(Some(done)) => {
                let (id, result) = match done {
                    Ok((id, result)) => (id, result),
                    Err(e) => (e.id(), Err(format!("the job panicked: {e}"))),
                };
                if let Some(job) = held.remove(&id) {
                    settle(&background, &worker, &job, result).await;
                }
            }
            Ok(None) => break,
            Err(_) => {
                running.abort_all();
                for job in held.values() {
                    tracing::warn!(job = %job.id, "handing an unfinished job back");
                    if let Err(e) = background.release_job(job, &worker).await {
                        tracing::error!(job = %job.id, error = %e, "handing a job back failed");
                    }
                }
                break;
            }
        }
    }
    tracing::info!(%worker, "worker stopped");
}
