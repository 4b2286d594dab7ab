use crate::api_test;

api_test!(
    async fn liveness_answers_ok(app) {
        let response = app.get("/health/live", None).await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, serde_json::json!({"status": "ok"}));
    }
);

api_test!(
    async fn readiness_reports_the_database_ok_when_it_answers_and_is_migrated(app) {
        let response = app.get("/health/ready", None).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body,
            serde_json::json!({"status": "ok", "checks": {"database": "ok"}})
        );
    }
);

api_test!(
    async fn readiness_is_503_while_a_migration_is_pending(app) {
        app.db.undo_last_migration().await;
        let response = app.get("/health/ready", None).await;
        assert_eq!(response.status, 503);
        assert_eq!(response.body["status"], "unavailable");
        assert_eq!(response.body["checks"]["database"], "migrations pending");
    }
);

api_test!(
    async fn readiness_is_503_when_the_database_is_gone(app) {
        app.db.db.clone().close().await;
        let response = app.get("/health/ready", None).await;
        assert_eq!(response.status, 503);
        assert_eq!(response.body["checks"]["database"], "unreachable");
    }
);
