use axum::http::Method;
use serde_json::json;

use crate::api_test;
use crate::support::PASSWORD;

api_test!(
    async fn signing_up_returns_the_new_viewer_without_credentials(app) {
        let response = app
            .post("/api/v1/users", None, json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "name": "Ada"}))
            .await;
        assert_eq!(response.status, 201, "{}", response.text);
        let user = &response.body;
        assert_eq!(user["email"], "ada@example.com");
        assert_eq!(user["name"], "Ada");
        assert_eq!(user["role"], "viewer");
        assert_eq!(user["tier"], "guest");
        assert_eq!(user["emailVerified"], false);
        let id = user["id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
        assert_eq!(response.header("location"), Some(format!("/api/v1/users/{id}").as_str()));
        let created = user["createdAt"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.len() == "2026-11-27T10:30:00.123Z".len(), "{created}");
        assert!(!response.text.to_lowercase().contains("password"), "{}", response.text);
        assert!(!response.text.contains("$argon2"));
    }
);

api_test!(
    async fn signing_up_twice_with_one_email_in_any_case_is_a_conflict(app) {
        app.sign_up("bob@example.com", None).await;
        let response = app
            .post("/api/v1/users", None, json!({"email": "BOB@example.com", "password": PASSWORD}))
            .await;
        response.assert_error(409, "Conflict", "User already exists");
    }
);

api_test!(
    async fn an_invalid_email_and_a_weak_password_are_both_reported(app) {
        let response = app
            .post("/api/v1/users", None, json!({"email": "not-an-email", "password": "short"}))
            .await;
        response.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(response.error_fields(), ["email", "password"]);
        assert_eq!(response.body["errors"][0]["message"], "Invalid email format");
        assert_eq!(response.body["errors"][1]["message"], "Password must be at least 8 characters");
        let response = app
            .post("/api/v1/users", None, json!({"email": "a@b.io", "password": "alllowercase1"}))
            .await;
        assert_eq!(response.body["errors"][0]["message"], "Password must contain an upper-case letter");
    }
);

api_test!(
    async fn a_missing_field_an_unknown_field_and_a_wrong_type_are_named(app) {
        let response = app.post("/api/v1/users", None, json!({"email": "a@b.io"})).await;
        response.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(response.error_fields(), ["password"]);
        assert_eq!(response.body["errors"][0]["message"], "password is required");

        let response = app
            .post("/api/v1/users", None, json!({"email": "a@b.io", "password": PASSWORD, "role": "admin"}))
            .await;
        response.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(response.error_fields(), ["role"]);

        let response = app.post("/api/v1/users", None, json!({"email": ["a@b.io"], "password": PASSWORD})).await;
        assert_eq!(response.error_fields(), ["email"]);

        // Nothing was written by any of them.
        let admin = app.admin().await;
        let list = app.get("/api/v1/users", Some(&admin.token)).await;
        assert_eq!(list.body["meta"]["total"], 1);
    }
);

api_test!(
    async fn logging_in_returns_an_access_token_a_refresh_token_and_the_user(app) {
        app.sign_up("carol@example.com", Some("Carol")).await;
        let response = app
            .post("/api/v1/auth/login", None, json!({"email": "Carol@Example.com", "password": PASSWORD}))
            .await;
        assert_eq!(response.status, 200, "{}", response.text);
        assert_eq!(response.body["expiresIn"], 900);
        assert_eq!(response.body["user"]["email"], "carol@example.com");
        assert_eq!(response.body["user"]["name"], "Carol");
        assert_eq!(response.body["user"]["role"], "viewer");
        let token = response.body["token"].as_str().unwrap();
        assert_eq!(token.split('.').count(), 3);
        let profile = app.get("/api/v1/profile", Some(token)).await;
        assert_eq!(profile.status, 200);
        assert_eq!(profile.body["email"], "carol@example.com");
    }
);

api_test!(
    async fn a_wrong_password_and_an_unknown_email_get_the_same_answer(app) {
        app.sign_up("dave@example.com", None).await;
        let wrong = app
            .post("/api/v1/auth/login", None, json!({"email": "dave@example.com", "password": "Wrong1234"}))
            .await;
        wrong.assert_error(401, "Unauthorized", "Invalid credentials");
        let unknown = app
            .post("/api/v1/auth/login", None, json!({"email": "nobody@example.com", "password": PASSWORD}))
            .await;
        unknown.assert_error(401, "Unauthorized", "Invalid credentials");
        assert_eq!(wrong.body, unknown.body);
    }
);

api_test!(
    async fn failed_logins_are_limited_per_address_and_email(app) {
        app.sign_up("erin@example.com", None).await;
        app.sign_up("frank@example.com", None).await;
        for _ in 0..5 {
            let r = app
                .post("/api/v1/auth/login", None, json!({"email": "erin@example.com", "password": "Wrong1234"}))
                .await;
            assert_eq!(r.status, 401);
        }
        let limited = app
            .post("/api/v1/auth/login", None, json!({"email": "erin@example.com", "password": PASSWORD}))
            .await;
        limited.assert_error(429, "TooManyRequests", "Too many failed login attempts, please try again later");
        let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        // Another account from the same address is not affected.
        app.login_as("frank@example.com", PASSWORD).await;
    }
);

api_test!(
    async fn a_successful_login_clears_earlier_failures(app) {
        app.sign_up("gina@example.com", None).await;
        for _ in 0..4 {
            app.post("/api/v1/auth/login", None, json!({"email": "gina@example.com", "password": "Wrong1234"}))
                .await;
        }
        app.login_as("gina@example.com", PASSWORD).await;
        for _ in 0..4 {
            let r = app
                .post("/api/v1/auth/login", None, json!({"email": "gina@example.com", "password": "Wrong1234"}))
                .await;
            assert_eq!(r.status, 401);
        }
        app.login_as("gina@example.com", PASSWORD).await;
    }
);

api_test!(
    async fn refreshing_rotates_the_pair_and_reusing_the_old_token_kills_the_newer_one(app) {
        let login = app.viewer("hank@example.com").await;
        let first = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": login.refresh}))
            .await;
        assert_eq!(first.status, 200, "{}", first.text);
        let new_refresh = first.body["refreshToken"].as_str().unwrap().to_owned();
        assert_ne!(new_refresh, login.refresh);
        assert_eq!(first.body["expiresIn"], 900);
        let new_token = first.body["token"].as_str().unwrap();
        assert_eq!(app.get("/api/v1/profile", Some(new_token)).await.status, 200);

        let reuse = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": login.refresh}))
            .await;
        reuse.assert_error(401, "Unauthorized", "Invalid or expired token");
        let newer = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": new_refresh}))
            .await;
        newer.assert_error(401, "Unauthorized", "Invalid or expired token");
    }
);

api_test!(
    async fn concurrent_refreshes_with_one_token_yield_at_most_one_new_pair(app) {
        let login = app.viewer("iris@example.com").await;
        let body = json!({"refreshToken": login.refresh});
        let (a, b) = tokio::join!(
            app.post("/api/v1/auth/refresh", None, body.clone()),
            app.post("/api/v1/auth/refresh", None, body.clone())
        );
        let ok = [&a, &b].iter().filter(|r| r.status == 200).count();
        assert!(ok <= 1, "both refreshes succeeded: {} / {}", a.text, b.text);
        // Whatever happened, the family is now spent or revoked: the original token is dead.
        let again = app.post("/api/v1/auth/refresh", None, body).await;
        assert_eq!(again.status, 401);
    }
);

api_test!(
    async fn an_unknown_refresh_token_is_refused(app) {
        let response = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": "made-up"}))
            .await;
        response.assert_error(401, "Unauthorized", "Invalid or expired token");
    }
);

api_test!(
    async fn a_refresh_token_expires_after_its_lifetime(app) {
        let login = app.viewer("jack@example.com").await;
        app.clock.advance(std::time::Duration::from_secs(7 * 24 * 3600 + 1));
        let response = app
            .post("/api/v1/auth/refresh", None, json!({"refreshToken": login.refresh}))
            .await;
        response.assert_error(401, "Unauthorized", "Invalid or expired token");
    }
);

api_test!(
    async fn logging_out_ends_that_session_only(app) {
        app.sign_up("kate@example.com", None).await;
        let phone = app.login_as("kate@example.com", PASSWORD).await;
        let laptop = app.login_as("kate@example.com", PASSWORD).await;
        let response = app
            .post("/api/v1/auth/logout", Some(&phone.token), json!({"refreshToken": phone.refresh}))
            .await;
        assert_eq!(response.status, 204);
        assert!(response.text.is_empty());
        let dead = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": phone.refresh})).await;
        assert_eq!(dead.status, 401);
        let alive = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": laptop.refresh})).await;
        assert_eq!(alive.status, 200);
    }
);

api_test!(
    async fn logging_out_cannot_end_someone_elses_session(app) {
        let mallory = app.viewer("mallory@example.com").await;
        let victim = app.viewer("victim@example.com").await;
        let response = app
            .post("/api/v1/auth/logout", Some(&mallory.token), json!({"refreshToken": victim.refresh}))
            .await;
        assert_eq!(response.status, 204);
        let alive = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": victim.refresh})).await;
        assert_eq!(alive.status, 200);
    }
);

api_test!(
    async fn logging_out_everywhere_ends_every_session(app) {
        app.sign_up("liam@example.com", None).await;
        let a = app.login_as("liam@example.com", PASSWORD).await;
        let b = app.login_as("liam@example.com", PASSWORD).await;
        let response = app.call(Method::POST, "/api/v1/auth/logout-all", Some(&a.token), None).await;
        assert_eq!(response.status, 204);
        for refresh in [a.refresh, b.refresh] {
            let r = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": refresh})).await;
            assert_eq!(r.status, 401);
        }
    }
);

api_test!(
    async fn authenticated_routes_need_a_valid_bearer_token(app) {
        let none = app.get("/api/v1/profile", None).await;
        none.assert_error(401, "Unauthorized", "No token provided");
        assert_eq!(none.header("www-authenticate"), Some("Bearer"));
        app.get("/api/v1/profile", Some("garbage"))
            .await
            .assert_error(401, "Unauthorized", "Invalid or expired token");

        let basic = axum::http::Request::builder()
            .uri("/api/v1/profile")
            .header("authorization", "Basic YTpi")
            .body(axum::body::Body::empty())
            .unwrap();
        app.send(basic).await.assert_error(401, "Unauthorized", "Invalid or expired token");

        // Signed with another secret, or expired.
        use inkcart_app::ports::TokenIssuer as _;
        let login = app.viewer("mia@example.com").await;
        let user = app
            .state
            .app
            .identity()
            .get_user(login.id.parse().unwrap())
            .await
            .unwrap();
        let forged = inkcart_adapters::tokens::JwtIssuer::new(&[1; 32])
            .issue(&user, chrono::Utc::now(), std::time::Duration::from_secs(900))
            .unwrap();
        app.get("/api/v1/profile", Some(&forged.token))
            .await
            .assert_error(401, "Unauthorized", "Invalid or expired token");
        let expired = inkcart_adapters::tokens::JwtIssuer::new(&crate::support::JWT_SECRET)
            .issue(&user, chrono::Utc::now() - chrono::Duration::hours(1), std::time::Duration::from_secs(900))
            .unwrap();
        app.get("/api/v1/profile", Some(&expired.token))
            .await
            .assert_error(401, "Unauthorized", "Invalid or expired token");
    }
);

api_test!(
    async fn the_users_list_pages_searches_filters_and_sorts(app) {
        let admin = app.admin().await;
        for (email, name) in [("nora@example.com", "Nora"), ("oscar@example.com", "Oscar"), ("paul@example.com", "Paul")] {
            app.sign_up(email, Some(name)).await;
        }
        let page = app.get("/api/v1/users?page=2&limit=2&sort=email", Some(&admin.token)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.body["meta"], json!({"page": 2, "limit": 2, "total": 4, "totalPages": 2}));
        let emails: Vec<&str> = page.body["data"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
        assert_eq!(emails, ["oscar@example.com", "paul@example.com"]);

        let found = app.get("/api/v1/users?search=OSC", Some(&admin.token)).await;
        assert_eq!(found.body["meta"]["total"], 1);
        assert_eq!(found.body["data"][0]["name"], "Oscar");

        let admins = app.get("/api/v1/users?role=admin", Some(&admin.token)).await;
        assert_eq!(admins.body["meta"]["total"], 1);
        assert_eq!(admins.body["data"][0]["email"], "admin@example.com");

        let newest = app.get("/api/v1/users", Some(&admin.token)).await;
        assert_eq!(newest.body["data"][0]["email"], "paul@example.com");
        assert_eq!(newest.body["meta"]["limit"], 20);
        let by_name_desc = app.get("/api/v1/users?sort=-name", Some(&admin.token)).await;
        assert_eq!(by_name_desc.body["data"][0]["name"], "Paul");
        assert!(!by_name_desc.text.contains("password"));
    }
);

api_test!(
    async fn bad_list_parameters_are_validation_errors(app) {
        let viewer = app.viewer("quinn@example.com").await;
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=abc", "limit"),
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=9223372036854775808", "page"),
            ("page=10000001", "page"),
            ("sort=password", "sort"),
            ("sort=-passwordHash", "sort"),
            ("role=root", "role"),
            ("bogus=1", "bogus"),
        ] {
            let r = app.get(&format!("/api/v1/users?{query}"), Some(&viewer.token)).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), [field], "{query}: {}", r.text);
        }
    }
);

api_test!(
    async fn a_user_is_found_by_id_and_unknown_or_malformed_ids_are_told_apart(app) {
        let viewer = app.viewer("rose@example.com").await;
        let found = app.get(&format!("/api/v1/users/{}", viewer.id), Some(&viewer.token)).await;
        assert_eq!(found.status, 200);
        assert_eq!(found.body["email"], "rose@example.com");
        let missing = app
            .get("/api/v1/users/01a22173-c3e7-73b9-9408-deaa345b95c3", Some(&viewer.token))
            .await;
        missing.assert_error(404, "NotFound", "User not found");
        let malformed = app.get("/api/v1/users/42", Some(&viewer.token)).await;
        malformed.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(malformed.error_fields(), ["id"]);
    }
);

api_test!(
    async fn users_edit_their_own_account_but_not_anyone_elses(app) {
        let sam = app.viewer("sam@example.com").await;
        let tess = app.viewer("tess@example.com").await;
        let own = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", sam.id), Some(&sam.token), Some(json!({"name": "Samuel"})))
            .await;
        assert_eq!(own.status, 200, "{}", own.text);
        assert_eq!(own.body["name"], "Samuel");
        assert_ne!(own.body["updatedAt"], own.body["createdAt"]);

        let other = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", tess.id), Some(&sam.token), Some(json!({"name": "Hacked"})))
            .await;
        other.assert_error(403, "Forbidden", "Can only edit your own resources");
        let put = app
            .call(Method::PUT, &format!("/api/v1/users/{}", tess.id), Some(&sam.token), Some(json!({"email": "x@y.io"})))
            .await;
        put.assert_error(403, "Forbidden", "Can only edit your own resources");
        let tess_now = app.get(&format!("/api/v1/users/{}", tess.id), Some(&tess.token)).await;
        assert_eq!(tess_now.body["email"], "tess@example.com");
        assert_eq!(tess_now.body["name"], serde_json::Value::Null);
    }
);

api_test!(
    async fn only_an_admin_changes_roles_and_tiers(app) {
        let uma = app.viewer("uma@example.com").await;
        let path = format!("/api/v1/users/{}", uma.id);
        for body in [json!({"role": "admin"}), json!({"tier": "premium"})] {
            let r = app.call(Method::PATCH, &path, Some(&uma.token), Some(body)).await;
            r.assert_error(403, "Forbidden", "Insufficient permissions");
        }
        // Sending the current values is not a change.
        let same = app
            .call(Method::PATCH, &path, Some(&uma.token), Some(json!({"role": "viewer", "tier": "guest"})))
            .await;
        assert_eq!(same.status, 200, "{}", same.text);

        let admin = app.admin().await;
        let promoted = app
            .call(Method::PATCH, &path, Some(&admin.token), Some(json!({"role": "editor", "tier": "premium"})))
            .await;
        assert_eq!(promoted.status, 200, "{}", promoted.text);
        assert_eq!(promoted.body["role"], "editor");
        assert_eq!(promoted.body["tier"], "premium");
        let bad = app.call(Method::PATCH, &path, Some(&admin.token), Some(json!({"role": "root"}))).await;
        bad.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(bad.error_fields(), ["role"]);
    }
);

api_test!(
    async fn put_replaces_email_and_name_and_a_missing_name_clears_it(app) {
        app.sign_up("vera@example.com", Some("Vera")).await;
        let vera = app.login_as("vera@example.com", PASSWORD).await;
        let path = format!("/api/v1/users/{}", vera.id);
        let replaced = app
            .call(Method::PUT, &path, Some(&vera.token), Some(json!({"email": "Vera.New@Example.com", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(replaced.status, 200, "{}", replaced.text);
        assert_eq!(replaced.body["email"], "vera.new@example.com");
        assert_eq!(replaced.body["name"], serde_json::Value::Null);
        let missing_email = app.call(Method::PUT, &path, Some(&vera.token), Some(json!({"name": "V"}))).await;
        assert_eq!(missing_email.error_fields(), ["email"]);
        app.login_as("vera.new@example.com", PASSWORD).await;
    }
);

api_test!(
    async fn patch_with_null_name_clears_it_and_an_absent_name_keeps_it(app) {
        app.sign_up("wade@example.com", Some("Wade")).await;
        let wade = app.login_as("wade@example.com", PASSWORD).await;
        let path = format!("/api/v1/users/{}", wade.id);
        let kept = app.call(Method::PATCH, &path, Some(&wade.token), Some(json!({}))).await;
        assert_eq!(kept.body["name"], "Wade");
        let cleared = app.call(Method::PATCH, &path, Some(&wade.token), Some(json!({"name": null}))).await;
        assert_eq!(cleared.body["name"], serde_json::Value::Null);
        let blank = app.call(Method::PATCH, &path, Some(&wade.token), Some(json!({"name": "   "}))).await;
        assert_eq!(blank.error_fields(), ["name"]);
    }
);

api_test!(
    async fn taking_an_email_that_belongs_to_another_user_is_a_conflict(app) {
        app.sign_up("xena@example.com", None).await;
        let yuri = app.viewer("yuri@example.com").await;
        let r = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", yuri.id), Some(&yuri.token), Some(json!({"email": "XENA@example.com", "currentPassword": PASSWORD})))
            .await;
        r.assert_error(409, "Conflict", "User already exists");
        let me = app.get("/api/v1/profile", Some(&yuri.token)).await;
        assert_eq!(me.body["email"], "yuri@example.com");
    }
);

api_test!(
    async fn a_new_password_ends_every_session_and_replaces_the_old_one(app) {
        app.sign_up("zoe@example.com", None).await;
        let a = app.login_as("zoe@example.com", PASSWORD).await;
        let b = app.login_as("zoe@example.com", PASSWORD).await;
        let weak = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", a.id), Some(&a.token), Some(json!({"password": "weak", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(weak.error_fields(), ["password"]);
        let changed = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", a.id), Some(&a.token), Some(json!({"password": "NewSecret456", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        for refresh in [&a.refresh, &b.refresh] {
            let r = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": refresh})).await;
            assert_eq!(r.status, 401);
        }
        let old = app.post("/api/v1/auth/login", None, json!({"email": "zoe@example.com", "password": PASSWORD})).await;
        assert_eq!(old.status, 401);
        app.login_as("zoe@example.com", "NewSecret456").await;
    }
);

api_test!(
    async fn only_admins_delete_users_and_the_deleted_lose_their_sessions(app) {
        let victim = app.viewer("abe@example.com").await;
        let editor = app.user_with_role("bea@example.com", "editor").await;
        let path = format!("/api/v1/users/{}", victim.id);
        app.call(Method::DELETE, &path, Some(&victim.token), None)
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        app.call(Method::DELETE, &path, Some(&editor.token), None)
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let admin = app.admin().await;
        let deleted = app.call(Method::DELETE, &path, Some(&admin.token), None).await;
        assert_eq!(deleted.status, 204);
        app.call(Method::DELETE, &path, Some(&admin.token), None)
            .await
            .assert_error(404, "NotFound", "User not found");
        app.get(&path, Some(&admin.token)).await.assert_error(404, "NotFound", "User not found");
        let r = app.post("/api/v1/auth/refresh", None, json!({"refreshToken": victim.refresh})).await;
        assert_eq!(r.status, 401);
    }
);

api_test!(
    async fn create_admin_promotes_an_existing_account_and_is_idempotent(app) {
        let user = app.viewer("admin@example.com").await;
        let first = app.admin().await;
        assert_eq!(first.id, user.id);
        let profile = app.get("/api/v1/profile", Some(&first.token)).await;
        assert_eq!(profile.body["role"], "admin");
        let again = app.admin().await;
        assert_eq!(again.id, user.id);
    }
);

api_test!(
    async fn version_2_of_a_user_carries_their_posts(app) {
        let viewer = app.viewer("cy@example.com").await;
        let r = app.get(&format!("/api/v2/users/{}", viewer.id), Some(&viewer.token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["email"], "cy@example.com");
        assert_eq!(r.body["posts"], json!([]));
        app.get(&format!("/api/v2/users/{}", viewer.id), None)
            .await
            .assert_error(401, "Unauthorized", "No token provided");
    }
);
