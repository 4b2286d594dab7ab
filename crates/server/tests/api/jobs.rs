//! Background work: outbox → jobs → email, retries and dead letters, schedules, and the email
//! flows of identity. Jobs are run to the end by `TestApp::drain`, as the worker runs them.

use axum::http::Method;
use serde_json::json;

use crate::api_test;
use crate::support::{PASSWORD, SmtpSink, TestApp, free_port, link_token};

async fn sign_up_and_drain(app: &TestApp, email: &str) {
    app.sign_up(email, Some("Ada")).await;
    app.drain().await;
}

api_test!(
    async fn signing_up_sends_a_welcome_email_and_a_verification_link_that_works(app) {
        sign_up_and_drain(&app, "ada@example.com").await;
        let mail = app.mail();
        let subjects: Vec<&str> = mail.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(subjects.len(), 2, "{subjects:?}");
        assert!(subjects.contains(&"Welcome to inkcart"));
        assert!(subjects.contains(&"Confirm your email address"));
        assert!(mail.iter().all(|m| m.to == "ada@example.com"));
        let verification = mail.iter().find(|m| m.subject == "Confirm your email address").unwrap();
        assert!(verification.text.contains("http://127.0.0.1:3000/verify-email?token="));
        let token = link_token(verification, "/verify-email");

        let login = app.login_as("ada@example.com", PASSWORD).await;
        assert_eq!(app.get("/api/v1/profile", Some(&login.token)).await.body["emailVerified"], false);
        let confirmed = app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": token})).await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.text);
        assert_eq!(confirmed.body, json!({"verified": true}));
        assert_eq!(app.get("/api/v1/profile", Some(&login.token)).await.body["emailVerified"], true);
        app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": token}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": "made-up"}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        // Draining again sends nothing twice.
        app.drain().await;
        assert_eq!(app.mail().len(), 2);
    }
);

api_test!(
    async fn a_verification_link_expires_after_a_day(app) {
        sign_up_and_drain(&app, "ada@example.com").await;
        let mail = app.mail();
        let token = link_token(mail.iter().find(|m| m.subject == "Confirm your email address").unwrap(), "/verify-email");
        app.clock.advance(std::time::Duration::from_secs(24 * 3600 + 1));
        app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": token}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
    }
);

api_test!(
    async fn a_new_verification_email_is_sent_at_most_once_a_minute(app) {
        sign_up_and_drain(&app, "ada@example.com").await;
        let login = app.login_as("ada@example.com", PASSWORD).await;
        let request = || app.call(Method::POST, "/api/v1/auth/verify-email/request", Some(&login.token), None);
        let first = request().await;
        assert_eq!(first.status, 202, "{}", first.text);
        let second = request().await;
        second.assert_error(429, "TooManyRequests", "A verification email was sent less than a minute ago");
        assert_eq!(second.header("retry-after"), Some("60"));
        app.clock.advance(std::time::Duration::from_secs(61));
        assert_eq!(request().await.status, 202);
        app.drain().await;
        let verifications = app.mail().into_iter().filter(|m| m.subject == "Confirm your email address").count();
        assert_eq!(verifications, 3);
        app.call(Method::POST, "/api/v1/auth/verify-email/request", None, None)
            .await
            .assert_error(401, "Unauthorized", "No token provided");
    }
);

api_test!(
    async fn a_password_reset_works_end_to_end_and_ends_every_session(app, smtp) {
        let Some(sink) = sink().await else { return };
        sign_up_and_drain(&app, "ada@example.com").await;
        let session = app.login_as("ada@example.com", PASSWORD).await;
        let before = sink.received().len();
        for email in ["ada@example.com", "nobody@example.com"] {
            let r = app.post("/api/v1/auth/password-reset/request", None, json!({"email": email})).await;
            assert_eq!(r.status, 202, "{}", r.text);
            assert_eq!(r.body, json!({"status": "accepted"}));
        }
        app.drain().await;
        let mail = sink.received();
        assert_eq!(mail.len(), before + 1, "only the existing account gets mail");
        let reset = mail.iter().find(|m| m.subject == "Reset your password").unwrap();
        assert_eq!(reset.to, "ada@example.com");
        assert!(reset.text.contains("http://127.0.0.1:3000/reset-password?token="));
        let token = link_token(reset, "/reset-password");

        let weak = app
            .post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "newPassword": "weak"}))
            .await;
        weak.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(weak.error_fields(), ["newPassword"]);
        let done = app
            .post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "newPassword": "Brand9New"}))
            .await;
        assert_eq!(done.status, 204, "{}", done.text);
        app.post("/api/v1/auth/refresh", None, json!({"refreshToken": session.refresh}))
            .await
            .assert_error(401, "Unauthorized", "Invalid or expired token");
        app.post("/api/v1/auth/login", None, json!({"email": "ada@example.com", "password": PASSWORD}))
            .await
            .assert_error(401, "Unauthorized", "Invalid credentials");
        app.login_as("ada@example.com", "Brand9New").await;
        app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "newPassword": "Other9Pass"}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        app.post("/api/v1/auth/password-reset/request", None, json!({"email": "not an email"}))
            .await
            .assert_error(400, "ValidationError", "Validation failed");
    }
);

api_test!(
    async fn a_reset_link_expires_after_30_minutes(app) {
        sign_up_and_drain(&app, "ada@example.com").await;
        app.post("/api/v1/auth/password-reset/request", None, json!({"email": "ada@example.com"})).await;
        app.drain().await;
        let token = link_token(app.mail().last().unwrap(), "/reset-password");
        app.clock.advance(std::time::Duration::from_secs(31 * 60));
        app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": token, "newPassword": "Brand9New"}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
    }
);

api_test!(
    async fn placing_paying_and_shipping_an_order_sends_the_two_order_emails(app, smtp) {
        let Some(sink) = sink().await else { return };
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "12.50", 10).await;
        sign_up_and_drain(&app, "buyer@example.com").await;
        let buyer = app.login_as("buyer@example.com", PASSWORD).await;
        let before = sink.received().len();
        let order = app
            .post("/api/v1/orders", Some(&buyer.token), json!({"items": [{"productId": mug["id"], "quantity": 2}]}))
            .await;
        let id = order.body["id"].as_str().unwrap();
        app.call(Method::POST, &format!("/api/v1/orders/{id}/pay"), Some(&buyer.token), None).await;
        app.call(Method::POST, &format!("/api/v1/orders/{id}/ship"), Some(&editor.token), None).await;
        app.drain().await;
        let mail = sink.received();
        let new: Vec<_> = mail[before..].iter().filter(|m| m.to == "buyer@example.com").collect();
        assert_eq!(new.len(), 2, "{new:?}");
        let confirmation = new.iter().find(|m| m.subject == format!("Your order {id} is confirmed")).unwrap();
        assert!(confirmation.text.contains("2 × Mug at 12.50 = 25.00"), "{}", confirmation.text);
        assert!(confirmation.text.contains("Total paid: 25.00"));
        assert!(new.iter().any(|m| m.subject == format!("Your order {id} has shipped")));
    }
);

api_test!(
    async fn an_order_leaves_the_relay_nothing_to_dispatch_while_its_payment_waits_for_its_mail(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "12.50", 10).await;
        let buyer = app.viewer("buyer@example.com").await;
        app.drain().await;
        let relay = app.state.app.background();
        let order = app
            .post("/api/v1/orders", Some(&buyer.token), json!({"items": [{"productId": mug["id"], "quantity": 1}]}))
            .await;
        assert_eq!(order.status, 201, "{}", order.text);
        // An order's event causes no job: it is written dispatched, and the relay reads nothing.
        assert_eq!(relay.dispatch_events(100).await.unwrap(), 0);
        let id = order.body["id"].as_str().unwrap();
        let paid = app.call(Method::POST, &format!("/api/v1/orders/{id}/pay"), Some(&buyer.token), None).await;
        assert_eq!(paid.status, 200, "{}", paid.text);
        assert_eq!(relay.dispatch_events(100).await.unwrap(), 1, "the payment's event waits for the relay");
        app.drain().await;
        assert!(app.mail().iter().any(|m| m.subject == format!("Your order {id} is confirmed")));
    }
);

api_test!(
    async fn the_daily_sales_report_is_stored_and_mailed_to_admins(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "12.50", 10).await;
        let buyer = app.viewer("buyer@example.com").await;
        let order = app
            .post("/api/v1/orders", Some(&buyer.token), json!({"items": [{"productId": mug["id"], "quantity": 2}]}))
            .await;
        app.call(Method::POST, &format!("/api/v1/orders/{}/pay", order.body["id"].as_str().unwrap()), Some(&buyer.token), None)
            .await;
        app.admin().await;
        app.drain().await;
        let today = chrono::Utc::now().date_naive();
        // Move to 00:15 UTC tomorrow: yesterday's (today's) report is due.
        let due = today.succ_opt().unwrap().and_hms_opt(0, 15, 0).unwrap().and_utc();
        app.clock.advance((due - chrono::Utc::now()).to_std().unwrap());
        app.state.app.background().run_schedules().await.unwrap();
        app.drain().await;
        let report = app.mail().into_iter().find(|m| m.subject == format!("Sales report for {today}")).expect("a report mail");
        assert_eq!(report.to, "admin@example.com");
        assert!(report.text.contains("1 orders, 25.00 revenue"), "{}", report.text);
        let csv = std::fs::read_to_string(app.data_path().join(format!("files/reports/sales-{today}.csv"))).unwrap();
        assert_eq!(csv, format!("date,orders,revenue\n{today},1,25.00\n"));
        // Running the schedules again does not make a second report.
        app.state.app.background().run_schedules().await.unwrap();
        app.drain().await;
        let reports = app.mail().into_iter().filter(|m| m.subject.starts_with("Sales report")).count();
        assert_eq!(reports, 1);
    }
);

api_test!(
    async fn each_event_becomes_its_jobs_exactly_once(app) {
        app.sign_up("ada@example.com", None).await;
        // Two relays (two instances) see the same event; the effect keys keep one job each.
        let app2 = inkcart::build_app(&crate::support::test_config(), app.db.db.clone()).unwrap();
        let (a, b) = tokio::join!(app.state.app.background().dispatch_events(100), app2.background().dispatch_events(100));
        assert!(a.unwrap() + b.unwrap() >= 1);
        let admin = app.admin().await;
        let jobs = app.get("/api/v1/admin/jobs?state=queued", Some(&admin.token)).await;
        let mut names: Vec<&str> = jobs.body["data"].as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
        names.sort_unstable();
        // Two jobs for ada; the admin's own sign-up event is not dispatched yet.
        assert_eq!(names, ["verification_email", "welcome_email"]);
        app.drain().await;
    }
);

api_test!(
    async fn a_failing_job_is_retried_with_backoff_then_dead_then_retried_by_an_admin(app, |c| {
        c.job_max_attempts = 3;
        c.job_backoff = std::time::Duration::from_secs(10);
        c.smtp = Some(SmtpSink::settings(SMTP_PORT.with(|p| *p)));
    }) {
        let port = SMTP_PORT.with(|p| *p);
        let admin = app.admin().await;
        let viewer = app.viewer("viewer@example.com").await;
        // Nothing listens on the SMTP port yet: every send fails. Each account has two mails.
        let failures = app.drain_with_failures().await;
        assert_eq!(failures.len(), 4, "{failures:?}");
        let failed = app.get("/api/v1/admin/jobs?state=failed", Some(&admin.token)).await;
        assert_eq!(failed.body["meta"]["total"], 4, "{}", failed.text);
        let job = &failed.body["data"][0];
        assert_eq!(job["attempts"], 1);
        assert!(job["lastError"].as_str().unwrap().contains("SMTP"), "{job}");
        // A retry waits for its backoff (10 s doubling, with 50-100 % jitter).
        assert!(app.drain_with_failures().await.is_empty(), "retried before its backoff");
        for (attempt, wait) in [(2, 10), (3, 20)] {
            app.clock.advance(std::time::Duration::from_secs(wait));
            assert_eq!(app.drain_with_failures().await.len(), 4, "attempt {attempt}");
        }
        let dead = app.get("/api/v1/admin/jobs?state=dead", Some(&admin.token)).await;
        assert_eq!(dead.body["meta"]["total"], 4);
        assert_eq!(dead.body["data"][0]["attempts"], 3);
        assert!(dead.body["data"][0]["lastError"].as_str().unwrap().contains("SMTP"));
        app.clock.advance(std::time::Duration::from_secs(3600));
        assert!(app.drain_with_failures().await.is_empty(), "a dead job ran again");

        // The mail server comes back; an admin retries the dead jobs.
        let Some(sink) = SmtpSink::start_on(port).await else { return };
        let ids: Vec<String> = dead.body["data"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect();
        app.call(Method::POST, &format!("/api/v1/admin/jobs/{}/retry", ids[0]), Some(&viewer.token), None)
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        for id in &ids {
            let retried = app.call(Method::POST, &format!("/api/v1/admin/jobs/{id}/retry"), Some(&admin.token), None).await;
            assert_eq!(retried.status, 200, "{}", retried.text);
            assert_eq!(retried.body["state"], "queued");
            assert_eq!(retried.body["attempts"], 0);
        }
        app.drain().await;
        assert_eq!(sink.received().len(), 4);
        app.call(Method::POST, &format!("/api/v1/admin/jobs/{}/retry", ids[0]), Some(&admin.token), None)
            .await
            .assert_error(409, "Conflict", "Only failed or dead jobs can be retried; this one is done");
    }
);

thread_local! {
    /// This test's SMTP port, fixed before the app is built (each test has its own thread).
    static SMTP_PORT: u16 = free_port();
}

/// Sends this test's mail to its own SMTP sink (see [`sink`]).
fn smtp(config: &mut inkcart::config::Config) {
    config.smtp = Some(SmtpSink::settings(SMTP_PORT.with(|p| *p)));
}

/// Starts this test's SMTP sink.
async fn sink() -> Option<SmtpSink> {
    SmtpSink::start_on(SMTP_PORT.with(|p| *p)).await
}

api_test!(
    async fn the_welcome_email_arrives_at_a_real_smtp_server(app, smtp) {
        let Some(sink) = sink().await else { return };
        sign_up_and_drain(&app, "ada@example.com").await;
        let received = sink.received();
        assert_eq!(received.len(), 2, "{received:?}");
        let welcome = received.iter().find(|m| m.subject == "Welcome to inkcart").unwrap();
        assert_eq!(welcome.to, "ada@example.com");
        assert!(welcome.text.contains("Hello Ada,"));
        let verification = received.iter().find(|m| m.subject == "Confirm your email address").unwrap();
        let token = link_token(verification, "/verify-email");
        let confirmed = app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": token})).await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.text);
        assert!(app.mail().is_empty(), "with SMTP configured no .eml file is written");
    }
);

api_test!(
    async fn a_schedule_runs_once_per_slot_across_instances(app) {
        let other = inkcart::build_app(&crate::support::test_config(), app.db.db.clone()).unwrap();
        let (a, b) = tokio::join!(app.state.app.background().run_schedules(), other.background().run_schedules());
        a.unwrap();
        b.unwrap();
        app.state.app.background().run_schedules().await.unwrap();
        let admin = app.admin().await;
        let jobs = app.get("/api/v1/admin/jobs", Some(&admin.token)).await;
        let purges = jobs.body["data"].as_array().unwrap().iter().filter(|j| j["name"] == "purge").count();
        assert_eq!(purges, 1, "{}", jobs.text);
        app.drain().await;
    }
);

api_test!(
    async fn only_admins_see_the_job_queue(app) {
        let viewer = app.viewer("viewer@example.com").await;
        app.get("/api/v1/admin/jobs", Some(&viewer.token))
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let admin = app.admin().await;
        app.get("/api/v1/admin/jobs?state=lost", Some(&admin.token))
            .await
            .assert_error(400, "ValidationError", "Validation failed");
        app.call(Method::POST, &format!("/api/v1/admin/jobs/{}/retry", uuid::Uuid::now_v7()), Some(&admin.token), None)
            .await
            .assert_error(404, "NotFound", "Job not found");
        app.drain().await;
    }
);
