//! The worker as a process: `kill -9` in the middle of a batch loses nothing, two workers never
//! run one job at once, and events reach a real NATS server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use inkcart_app::ports::{
    Clock as _, JobQueue as _, NewJob, Store as _, SystemClock, UserRepo as _,
};
use inkcart_store::SqlStore;
use inkcart_store::testing::TestDb;
use sea_orm::ConnectionTrait as _;

use crate::support::read_mail;

/// `inkcart worker` on the test database, writing its mail to `data_dir/mail`.
fn spawn_worker(db: &TestDb, data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_inkcart"))
        .arg("worker")
        .env("DATABASE_URL", db.url())
        .env("INKCART_DATA_DIR", data_dir)
        .env("INKCART_JOB_LEASE_SECS", "2")
        .env("INKCART_WORKER_POLL_MS", "20")
        .env("INKCART_WORKER_CONCURRENCY", "4")
        .env("INKCART_LOG", "warn")
        .env_remove("INKCART_SMTP_HOST")
        .env_remove("INKCART_NATS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start inkcart worker")
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let conn = db.db.writer_for_tests();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            sql,
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Waits (polling the database) until `sql` counts at least `at_least`.
async fn wait_for(db: &TestDb, sql: &str, at_least: i64, within: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let n = count(db, sql).await;
        if n >= at_least {
            return n;
        }
        assert!(
            started.elapsed() < within,
            "{sql}: {n} after {within:?}, wanted {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// The workers also run the schedules (a purge, the daily report); the counts below look at the
// welcome emails only.

/// `n` users and a welcome-email job for each.
async fn enqueue_welcome_jobs(db: &TestDb, n: usize) {
    let store = SqlStore::new(db.db.clone());
    let mut tx = store.begin().await.unwrap();
    for i in 0..n {
        let now = SystemClock.now();
        let user = inkcart_domain::User {
            id: inkcart_domain::UserId::from_uuid(uuid::Uuid::now_v7()),
            email: inkcart_domain::Email::parse(&format!("user{i}@example.com")).unwrap(),
            name: None,
            role: inkcart_domain::Role::Viewer,
            tier: inkcart_domain::Tier::Guest,
            email_verified: false,
            created_at: now,
            updated_at: now,
        };
        store.insert(tx.as_mut(), &user, "x").await.unwrap();
        let job = NewJob {
            kind: inkcart_app::ports::JobKind::WelcomeEmail,
            payload: serde_json::json!({"type": "UserRegistered", "userId": user.id}),
            effect_key: format!("welcome_email:test-{i}"),
            run_at: now,
            max_attempts: 5,
        };
        assert!(store.enqueue(tx.as_mut(), &job, now).await.unwrap());
    }
    tx.commit().await.unwrap();
}

async fn kill_nine_in_the_middle_of_a_batch_loses_nothing(db: TestDb) {
    let data = tempfile::tempdir().unwrap();
    enqueue_welcome_jobs(&db, 1000).await;
    let mut first = spawn_worker(&db, data.path());
    let done_before_kill = wait_for(
        &db,
        "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'",
        150,
        Duration::from_secs(120),
    )
    .await;
    first.kill().unwrap(); // SIGKILL: no chance to hand anything back
    first.wait().unwrap();
    let effects_at_kill = count(
        &db,
        "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'",
    )
    .await;
    assert!(
        effects_at_kill >= done_before_kill && effects_at_kill < 1000,
        "{effects_at_kill} effects at the kill"
    );

    let mut second = spawn_worker(&db, data.path());
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND kind = 'welcome_email'",
        1000,
        Duration::from_secs(180),
    )
    .await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE state <> 'done' AND kind = 'welcome_email'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'"
        )
        .await,
        1000
    );
    // Every user got their mail; only mails in flight at the kill (at most the worker's
    // concurrency) can have gone out twice, before their effect was recorded.
    let mail = read_mail(&data.path().join("mail"));
    let mut recipients: Vec<&str> = mail.iter().map(|m| m.to.as_str()).collect();
    recipients.sort_unstable();
    recipients.dedup();
    assert_eq!(recipients.len(), 1000);
    assert!(
        mail.len() <= 1000 + 4,
        "{} mails for 1000 users",
        mail.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_a_worker_loses_no_job_on_sqlite() {
    kill_nine_in_the_middle_of_a_batch_loses_nothing(inkcart_store::testing::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_a_worker_loses_no_job_on_postgres() {
    if let Some(db) = inkcart_store::testing::postgres().await {
        kill_nine_in_the_middle_of_a_batch_loses_nothing(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgres_never_run_one_job_twice() {
    let Some(db) = inkcart_store::testing::postgres().await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    enqueue_welcome_jobs(&db, 500).await;
    let mut workers = [
        spawn_worker(&db, data.path()),
        spawn_worker(&db, data.path()),
    ];
    wait_for(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND kind = 'welcome_email'",
        500,
        Duration::from_secs(180),
    )
    .await;
    for worker in &mut workers {
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    // Each job was claimed once (one attempt), by one of the two, and mailed once.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE attempts <> 1 AND kind = 'welcome_email'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE locked_by IS NOT NULL AND kind = 'welcome_email'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'"
        )
        .await,
        500
    );
    assert_eq!(read_mail(&data.path().join("mail")).len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_runs_beside_a_server_without_one() {
    // `serve --no-worker` writes events; `inkcart worker` alone turns them into mail.
    let db = inkcart_store::testing::sqlite().await;
    let data = tempfile::tempdir().unwrap();
    let config = inkcart::config::Config {
        data_dir: data.path().to_path_buf(),
        ..crate::support::test_config()
    };
    let server_side = inkcart::build_app(&config, db.db.clone()).unwrap();
    server_side
        .identity()
        .sign_up(inkcart_app::identity::SignUp {
            email: "solo@example.com".to_owned(),
            password: crate::support::PASSWORD.to_owned(),
            name: None,
        })
        .await
        .unwrap();
    let mut worker = spawn_worker(&db, data.path());
    let mails = "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND kind IN ('welcome_email', 'verification_email')";
    wait_for(&db, mails, 2, Duration::from_secs(60)).await;
    worker.kill().unwrap();
    worker.wait().unwrap();
    let mail = read_mail(&data.path().join("mail"));
    assert_eq!(mail.len(), 2);
    assert!(mail.iter().all(|m| m.to == "solo@example.com"));
}

fn nats_url() -> String {
    std::env::var("INKCART_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn events_reach_a_nats_subscriber(db: TestDb) {
    let url = nats_url();
    let client = match async_nats::connect(&url).await {
        Ok(client) => client,
        Err(e) => {
            assert!(
                !std::env::var("INKCART_REQUIRE_NATS").is_ok_and(|v| v == "1"),
                "INKCART_REQUIRE_NATS=1 but NATS at {url} is unreachable: {e}"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** NATS not reachable at {url}: skipping the NATS test ***\n"
            );
            return;
        }
    };
    let mut subscription = client
        .subscribe("inkcart.events.UserRegistered")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let config = crate::support::test_config();
    let publisher = inkcart::connect_publisher(&inkcart::config::Config {
        nats_url: Some(url),
        ..config.clone()
    })
    .await
    .unwrap();
    let app = inkcart::build_app_with(
        &config,
        db.db.clone(),
        std::sync::Arc::new(SystemClock),
        inkcart::Connected {
            publisher,
            ..inkcart::Connected::default()
        },
    )
    .unwrap();
    let email = format!("nats-{}@example.com", uuid::Uuid::now_v7().simple());
    let user = app
        .identity()
        .sign_up(inkcart_app::identity::SignUp {
            email: email.clone(),
            password: crate::support::PASSWORD.to_owned(),
            name: None,
        })
        .await
        .unwrap();
    assert_eq!(app.background().publish_events(100).await.unwrap(), 1);
    // The event is published once: a second pass finds nothing left to publish.
    assert_eq!(app.background().publish_events(100).await.unwrap(), 0);
    // The subject carries every registration published meanwhile (the same test on the other
    // database runs at the same time): ours is the one naming our user.
    let ours = async {
        loop {
            let message = futures::StreamExt::next(&mut subscription)
                .await
                .expect("the subscription ended");
            let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            if body["data"]["userId"] == user.id.to_string() {
                return (message, body);
            }
        }
    };
    let (message, body) = tokio::time::timeout(Duration::from_secs(10), ours)
        .await
        .expect("no event for our user within 10 s");
    assert_eq!(body["type"], "UserRegistered");
    let id = message
        .headers
        .as_ref()
        .unwrap()
        .get("Nats-Msg-Id")
        .unwrap()
        .to_string();
    assert_eq!(id, body["id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_nats_subscriber_on_sqlite() {
    events_reach_a_nats_subscriber(inkcart_store::testing::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_nats_subscriber_on_postgres() {
    if let Some(db) = inkcart_store::testing::postgres().await {
        events_reach_a_nats_subscriber(db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_worker_finishes_or_hands_back_what_it_holds() {
    let db = inkcart_store::testing::sqlite().await;
    let data = tempfile::tempdir().unwrap();
    enqueue_welcome_jobs(&db, 300).await;
    let mut worker = spawn_worker(&db, data.path());
    wait_for(
        &db,
        "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'",
        20,
        Duration::from_secs(60),
    )
    .await;
    let terminated = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'running'").await,
        0
    );
    let done = count(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND kind = 'welcome_email'",
    )
    .await;
    assert!(done < 300, "the worker should have stopped before the end");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM job_effects WHERE effect_key LIKE 'welcome:%'"
        )
        .await,
        done
    );
}

async fn jobs_wait_in_redis_when_configured(db: TestDb) {
    let url = std::env::var("INKCART_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let data = tempfile::tempdir().unwrap();
    let config = inkcart::config::Config {
        data_dir: data.path().to_path_buf(),
        job_queue: inkcart::config::JobQueueConfig::Redis,
        redis_url: Some(url.clone()),
        ..crate::support::test_config()
    };
    let prefix = format!("inkcart-test-{}:", uuid::Uuid::now_v7().simple());
    let queue = match inkcart_adapters::redis_queue::RedisJobQueue::connect(
        &url,
        &prefix,
        std::sync::Arc::new(SqlStore::new(db.db.clone())),
    )
    .await
    {
        Ok(queue) => std::sync::Arc::new(queue),
        Err(e) => {
            assert!(
                !std::env::var("INKCART_REQUIRE_REDIS").is_ok_and(|v| v == "1"),
                "INKCART_REQUIRE_REDIS=1 but Redis at {url} is unreachable: {e}"
            );
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** Redis not reachable at {url}: skipping the Redis queue test ***\n"
            );
            return;
        }
    };
    let app = std::sync::Arc::new(
        inkcart::build_app_with(
            &config,
            db.db.clone(),
            std::sync::Arc::new(SystemClock),
            inkcart::Connected {
                queue: Some(queue),
                ..inkcart::Connected::default()
            },
        )
        .unwrap(),
    );
    app.identity()
        .sign_up(inkcart_app::identity::SignUp {
            email: "redis@example.com".to_owned(),
            password: crate::support::PASSWORD.to_owned(),
            name: None,
        })
        .await
        .unwrap();
    // The real worker runtime, stopped once both mails are out.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(inkcart_jobs::run(
        app.background().clone(),
        inkcart_jobs::WorkerConfig {
            poll_interval: Duration::from_millis(20),
            ..inkcart_jobs::WorkerConfig::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    let started = Instant::now();
    while read_mail(&data.path().join("mail")).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the mails did not go out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
    let mut subjects: Vec<String> = read_mail(&data.path().join("mail"))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["Confirm your email address", "Welcome to inkcart"]
    );
    // The jobs are in Redis, not in the database.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 0);
    let operator = inkcart_domain::Actor {
        id: inkcart_domain::UserId::from_uuid(uuid::Uuid::now_v7()),
        role: inkcart_domain::Role::Admin,
    };
    let done = app
        .background()
        .list_jobs(
            operator,
            Some(inkcart_app::ports::JobState::Done),
            inkcart_app::page::PageRequest::default(),
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = done.items.iter().map(|j| j.kind.as_str()).collect();
    assert!(
        kinds.contains(&"welcome_email") && kinds.contains(&"verification_email"),
        "{kinds:?}"
    );
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_in_redis_when_configured_on_sqlite() {
    jobs_wait_in_redis_when_configured(inkcart_store::testing::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_in_redis_when_configured_on_postgres() {
    if let Some(db) = inkcart_store::testing::postgres().await {
        jobs_wait_in_redis_when_configured(db).await;
    }
}
