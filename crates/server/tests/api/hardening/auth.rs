//! Hardening: authentication and anti-automation. The login throttle under concurrency, tokens
//! of deleted accounts, the current password for credential changes (and the mails of an email
//! change), what others may see of an account, and request rate limits (per address, per
//! user, per class of request, GraphQL mutations counted, off switch, shared through Redis).

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, header};
use inkcart::config::Config;
use inkcart_app::ports::Quota;
use inkcart_app::ratelimit::RateLimitPolicy;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};

use crate::api_test;
use crate::support::{PASSWORD, TestApp, TestResponse, link_token};

async fn count(app: &TestApp, sql: &str) -> i64 {
    let conn = app.db.db.writer_for_tests();
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

async fn gql(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> TestResponse {
    app.post(
        "/graphql",
        token,
        json!({"query": query, "variables": variables}),
    )
    .await
}

/// A request from a client at `ip` (as the server's socket would tell it).
fn from_ip(
    ip: &str,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let mut request = request.body(body).unwrap();
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn quota(limit: u32, secs: u64) -> Quota {
    Quota {
        limit,
        period: Duration::from_secs(secs),
    }
}

/// Limits on, every budget roomy but the ones a test names.
fn limits(config: &mut Config, set: impl FnOnce(&mut RateLimitPolicy)) {
    let mut policy = RateLimitPolicy {
        per_ip: quota(10_000, 60),
        per_user: quota(10_000, 60),
        sign_up: quota(10_000, 60),
        login: quota(10_000, 60),
        refresh: quota(10_000, 60),
        password_reset: quota(10_000, 60),
        verification: quota(10_000, 60),
    };
    set(&mut policy);
    config.rate_limits = Some(policy);
}

fn header_num(r: &TestResponse, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", r.headers))
        .parse()
        .unwrap()
}

// ---- the login throttle ----

api_test!(
    async fn concurrent_wrong_passwords_for_one_account_get_at_most_the_limit_of_401s(app) {
        app.sign_up("target@example.com", None).await;
        // All at once: before the fix, every one passed the check while the first were hashing.
        let attempts = (0..40).map(|_| {
            app.post("/api/v1/auth/login", None, json!({"email": "target@example.com", "password": "Wrong1234"}))
        });
        let answers = futures::future::join_all(attempts).await;
        let unauthorized = answers.iter().filter(|r| r.status == 401).count();
        let limited: Vec<&TestResponse> = answers.iter().filter(|r| r.status == 429).collect();
        assert_eq!(unauthorized, 5, "the limit is 5 attempts");
        assert_eq!(limited.len(), 35);
        for r in &limited {
            r.assert_error(429, "TooManyRequests", "Too many failed login attempts, please try again later");
            assert!((1..=900).contains(&header_num(r, "retry-after")));
        }
        // The right password waits for the window too…
        let blocked = app
            .post("/api/v1/auth/login", None, json!({"email": "target@example.com", "password": PASSWORD}))
            .await;
        assert_eq!(blocked.status, 429);
        // …and works once it has passed.
        app.clock.advance(Duration::from_secs(15 * 60 + 1));
        let login = app.login_as("target@example.com", PASSWORD).await;
        assert_eq!(app.get("/api/v1/profile", Some(&login.token)).await.status, 200);
    }
);

// ---- tokens of deleted accounts ----

async fn png() -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(4, 4, image::Rgba([1, 2, 3, 255]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, token: &str) -> TestResponse {
    let boundary = "auth-hardening";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png().await);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::builder()
        .method("POST")
        .uri("/api/v1/uploads")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body))
        .unwrap();
    app.send(request).await
}

fn files(app: &TestApp) -> usize {
    std::fs::read_dir(app.data_path().join("files")).map_or(0, Iterator::count)
}

async fn written(app: &TestApp) -> (i64, i64, i64, i64, i64, usize) {
    (
        count(app, "SELECT COUNT(*) FROM posts").await,
        count(app, "SELECT COUNT(*) FROM comments").await,
        count(app, "SELECT COUNT(*) FROM products").await,
        count(app, "SELECT COUNT(*) FROM orders").await,
        count(app, "SELECT COUNT(*) FROM idempotency_keys").await,
        files(app),
    )
}

api_test!(
    async fn a_deleted_accounts_token_is_refused_on_every_write_and_nothing_is_written(app) {
        let admin = app.admin().await;
        let post = app
            .post("/api/v1/posts", Some(&admin.token), json!({"title": "Open", "content": "Say hi", "published": true}))
            .await;
        let product = app.product(&admin.token, "Mug", "12.50", 10).await;
        let ghost = app.editor().await;
        let deleted = app.call(Method::DELETE, &format!("/api/v1/users/{}", ghost.id), Some(&admin.token), None).await;
        assert_eq!(deleted.status, 204);
        let before = written(&app).await;

        let post_id = post.body["id"].as_str().unwrap();
        let product_id = product["id"].as_str().unwrap();
        let attempts = [
            app.post("/api/v1/posts", Some(&ghost.token), json!({"title": "Ghost", "content": "Boo", "published": true})).await,
            app.post(&format!("/api/v1/posts/{post_id}/comments"), Some(&ghost.token), json!({"content": "Boo"})).await,
            upload(&app, &ghost.token).await,
            app.post("/api/v1/products", Some(&ghost.token), json!({"name": "Ghost", "price": "1.00", "stock": 1})).await,
            app.post("/api/v1/orders", Some(&ghost.token), json!({"items": [{"productId": product_id, "quantity": 1}]})).await,
            // The order reads its buyer with its products: a dead token is still told before
            // the order's rules and a body that breaks them, and with a key as without.
            app.post("/api/v1/orders", Some(&ghost.token), json!({"items": [{"productId": product_id, "quantity": 0}]})).await,
            app.post("/api/v1/orders", Some(&ghost.token), json!({"items": []})).await,
            app.post("/api/v1/orders", Some(&ghost.token), json!({"items": "none"})).await,
            app.send(
                Request::builder()
                    .method(Method::POST)
                    .uri("/api/v1/orders")
                    .header("authorization", format!("Bearer {}", ghost.token))
                    .header("content-type", "application/json")
                    .header("idempotency-key", "ghost-order")
                    .body(Body::from(json!({"items": [{"productId": product_id, "quantity": 1}]}).to_string()))
                    .unwrap(),
            )
            .await,
            gql(&app, Some(&ghost.token), r#"mutation { createPost(title: "Ghost", content: "Boo") { id } }"#, json!({})).await,
            gql(&app, Some(&ghost.token), "mutation($p: ID!) { createOrder(items: [{productId: $p, quantity: 1}]) { id } }", json!({"p": product_id})).await,
            app.get("/api/v1/profile", Some(&ghost.token)).await,
        ];
        for r in &attempts {
            r.assert_error(401, "Unauthorized", "Invalid or expired token");
        }
        assert_eq!(written(&app).await, before, "(posts, comments, products, orders, idempotency keys, files)");

        // Others go on as before.
        let reader = app.viewer("reader@example.com").await;
        let comment = app.post(&format!("/api/v1/posts/{post_id}/comments"), Some(&reader.token), json!({"content": "Hi"})).await;
        assert_eq!(comment.status, 201, "{}", comment.text);
    }
);

api_test!(
    async fn a_write_by_an_account_deleted_after_its_token_was_checked_is_a_401_not_a_500(app) {
        use inkcart_app::blog::PostInput;
        use inkcart_app::ports::PostKey;
        use inkcart_domain::shop::RequestedLine;
        let admin = app.admin().await;
        let post = app
            .post("/api/v1/posts", Some(&admin.token), json!({"title": "Open", "content": "Say hi", "published": true}))
            .await;
        let product = app.product(&admin.token, "Mug", "12.50", 10).await;
        let before = written(&app).await;
        // What a request holds once its token was checked and its account deleted meanwhile:
        // the foreign keys of posts, comments and orders refuse the rows.
        let gone = inkcart_domain::Actor {
            id: inkcart_domain::UserId::from_uuid(uuid::Uuid::now_v7()),
            role: inkcart_domain::Role::Admin,
        };
        let use_cases = &app.state.app;
        let post_id = uuid::Uuid::parse_str(post.body["id"].as_str().unwrap()).unwrap();
        let product_id = uuid::Uuid::parse_str(product["id"].as_str().unwrap()).unwrap();
        let results = [
            use_cases
                .blog()
                .create_post(gone, PostInput { title: Some("Ghost".into()), content: Some("Boo".into()), ..PostInput::default() })
                .await
                .map(|_| ()),
            use_cases.blog().add_comment(gone, &PostKey::Id(post_id.into()), "Boo").await.map(|_| ()),
            use_cases
                .shop()
                .create_order(gone.id, vec![RequestedLine { product_id: product_id.into(), quantity: 1 }], None)
                .await
                .map(|_| ()),
        ];
        for result in results {
            match result {
                Err(inkcart_app::AppError::Unauthorized(_, message)) => assert_eq!(message, "Invalid or expired token"),
                other => panic!("expected a 401, got {other:?}"),
            }
        }
        assert_eq!(written(&app).await, before);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox_events WHERE kind = 'CommentAdded'").await, 0);
        let stock = app.get(&format!("/api/v1/products/{product_id}"), None).await;
        assert_eq!(stock.body["stock"], 10, "nothing was reserved");
    }
);

api_test!(
    async fn a_changed_role_applies_at_once_to_tokens_already_issued(app) {
        let admin = app.admin().await;
        let second = app.user_with_role("second@example.com", "admin").await;
        assert_eq!(app.get("/api/v1/admin/jobs", Some(&second.token)).await.status, 200);
        let demoted = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", second.id), Some(&admin.token), Some(json!({"role": "viewer"})))
            .await;
        assert_eq!(demoted.status, 200, "{}", demoted.text);
        app.get("/api/v1/admin/jobs", Some(&second.token))
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        assert_eq!(app.get("/api/v1/admin/jobs", Some(&admin.token)).await.status, 200);
    }
);

// ---- changing credentials ----

api_test!(
    async fn changing_the_email_or_the_password_needs_the_current_password(app) {
        app.sign_up("ada@example.com", Some("Ada")).await;
        let ada = app.login_as("ada@example.com", PASSWORD).await;
        let path = format!("/api/v1/users/{}", ada.id);
        for (method, body) in [
            (Method::PATCH, json!({"email": "new@example.com"})),
            (Method::PATCH, json!({"password": "NewSecret456"})),
            (Method::PUT, json!({"email": "new@example.com", "name": "Ada"})),
            (Method::PATCH, json!({"email": "new@example.com", "currentPassword": ""})),
        ] {
            let r = app.call(method, &path, Some(&ada.token), Some(body)).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), ["currentPassword"]);
            assert_eq!(r.body["errors"][0]["message"], "The current password is required to change the email or the password");
        }
        let wrong = app
            .call(Method::PATCH, &path, Some(&ada.token), Some(json!({"password": "NewSecret456", "currentPassword": "Wrong1234"})))
            .await;
        assert_eq!(wrong.error_fields(), ["currentPassword"]);
        assert_eq!(wrong.body["errors"][0]["message"], "The current password is not correct");
        // GraphQL asks the same.
        let r = gql(&app, Some(&ada.token), "mutation($id: ID!) { updateUser(id: $id, email: \"new@example.com\") { email } }", json!({"id": ada.id})).await;
        assert_eq!(r.body["errors"][0]["extensions"]["code"], "ValidationError", "{}", r.text);
        // Nothing changed.
        app.login_as("ada@example.com", PASSWORD).await;

        // A name, or the email it already has, needs no password.
        let renamed = app.call(Method::PUT, &path, Some(&ada.token), Some(json!({"email": "ADA@example.com", "name": "Ada L."}))).await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        let changed = app
            .call(Method::PATCH, &path, Some(&ada.token), Some(json!({"password": "NewSecret456", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        app.login_as("ada@example.com", "NewSecret456").await;
    }
);

api_test!(
    async fn wrong_current_passwords_are_limited_per_account(app) {
        let eve = app.viewer("eve@example.com").await;
        let path = format!("/api/v1/users/{}", eve.id);
        let guess = |password: &'static str| {
            app.call(Method::PATCH, &path, Some(&eve.token), Some(json!({"password": "NewSecret456", "currentPassword": password})))
        };
        for _ in 0..5 {
            assert_eq!(guess("Wrong1234").await.status, 400);
        }
        let limited = guess(PASSWORD).await;
        limited.assert_error(429, "TooManyRequests", "Too many wrong passwords, please try again later");
        assert!(header_num(&limited, "retry-after") > 0);
        app.clock.advance(Duration::from_secs(15 * 60 + 1));
        assert_eq!(guess(PASSWORD).await.status, 200);
        app.login_as("eve@example.com", "NewSecret456").await;
    }
);

api_test!(
    async fn a_new_email_is_unverified_until_confirmed_and_the_previous_address_is_told(app) {
        app.sign_up("old@example.com", Some("Ada")).await;
        app.drain().await;
        let first_link = app.mail().into_iter().find(|m| m.subject == "Confirm your email address").unwrap();
        let first_token = link_token(&first_link, "/verify-email");
        let ada = app.login_as("old@example.com", PASSWORD).await;
        // A reset link on its way to the old address.
        app.post("/api/v1/auth/password-reset/request", None, json!({"email": "old@example.com"})).await;
        app.drain().await;
        let reset = app.mail().into_iter().find(|m| m.subject == "Reset your password").unwrap();
        let reset_token = link_token(&reset, "/reset-password");
        let mails_before = app.mail().len();

        let path = format!("/api/v1/users/{}", ada.id);
        let changed = app
            .call(Method::PATCH, &path, Some(&ada.token), Some(json!({"email": "New@Example.com", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        assert_eq!(changed.body["email"], "new@example.com");
        assert_eq!(changed.body["emailVerified"], false);
        let again = app
            .call(Method::PATCH, &path, Some(&ada.token), Some(json!({"email": "third@example.com", "currentPassword": PASSWORD})))
            .await;
        again.assert_error(429, "TooManyRequests", "The email was changed less than a minute ago");

        app.drain().await;
        let mail = app.mail();
        let new: Vec<_> = mail[mails_before..].to_vec();
        assert_eq!(new.len(), 2, "{new:?}");
        let notice = new.iter().find(|m| m.subject == "Your email address was changed").unwrap();
        assert_eq!(notice.to, "old@example.com");
        assert!(notice.text.contains("from old@example.com to new@example.com"), "{}", notice.text);
        let verify = new.iter().find(|m| m.subject == "Confirm your email address").unwrap();
        assert_eq!(verify.to, "new@example.com");

        // Links sent to the old address prove nothing about the new one.
        app.post("/api/v1/auth/verify-email/confirm", None, json!({"token": first_token}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": reset_token, "newPassword": "Taken9Over"}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        assert_eq!(app.get("/api/v1/profile", Some(&ada.token)).await.body["emailVerified"], false);

        let confirmed = app
            .post("/api/v1/auth/verify-email/confirm", None, json!({"token": link_token(verify, "/verify-email")}))
            .await;
        assert_eq!(confirmed.status, 200, "{}", confirmed.text);
        assert_eq!(app.get("/api/v1/profile", Some(&ada.token)).await.body["emailVerified"], true);
        app.login_as("new@example.com", PASSWORD).await;
    }
);

api_test!(
    async fn a_new_password_voids_the_reset_links_on_their_way(app) {
        app.sign_up("ada@example.com", None).await;
        let ada = app.login_as("ada@example.com", PASSWORD).await;
        app.post("/api/v1/auth/password-reset/request", None, json!({"email": "ada@example.com"})).await;
        app.drain().await;
        let reset = app.mail().into_iter().find(|m| m.subject == "Reset your password").unwrap();
        let changed = app
            .call(Method::PATCH, &format!("/api/v1/users/{}", ada.id), Some(&ada.token), Some(json!({"password": "NewSecret456", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        app.post("/api/v1/auth/password-reset/confirm", None, json!({"token": link_token(&reset, "/reset-password"), "newPassword": "Taken9Over"}))
            .await
            .assert_error(400, "BadRequest", "Invalid or expired token");
        app.login_as("ada@example.com", "NewSecret456").await;
    }
);

api_test!(
    async fn an_admin_changing_another_account_gives_their_own_password(app) {
        let admin = app.admin().await;
        let signed_up = app.post("/api/v1/users", None, json!({"email": "bob@example.com", "password": "BobSecret9"})).await;
        assert_eq!(signed_up.status, 201);
        let bob = app.login_as("bob@example.com", "BobSecret9").await;
        let path = format!("/api/v1/users/{}", bob.id);
        let with_bobs = app
            .call(Method::PATCH, &path, Some(&admin.token), Some(json!({"email": "robert@example.com", "currentPassword": "BobSecret9"})))
            .await;
        assert_eq!(with_bobs.error_fields(), ["currentPassword"]);
        app.drain().await;
        let before = app.mail().len();
        let done = app
            .call(Method::PATCH, &path, Some(&admin.token), Some(json!({"email": "robert@example.com", "currentPassword": PASSWORD})))
            .await;
        assert_eq!(done.status, 200, "{}", done.text);
        app.drain().await;
        let mut to: Vec<String> = app.mail()[before..].iter().map(|m| m.to.clone()).collect();
        to.sort();
        assert_eq!(to, ["bob@example.com", "robert@example.com"]);
        // Through GraphQL as well.
        let r = gql(
            &app,
            Some(&admin.token),
            "mutation($id: ID!, $pw: String) { updateUser(id: $id, name: \"Rob\", email: \"rob@example.com\", currentPassword: $pw) { name email } }",
            json!({"id": bob.id, "pw": PASSWORD}),
        )
        .await;
        assert_eq!(r.body["errors"][0]["extensions"]["code"], "TooManyRequests", "one email change a minute: {}", r.text);
        app.clock.advance(Duration::from_secs(61));
        let r = gql(
            &app,
            Some(&admin.token),
            "mutation($id: ID!, $pw: String) { updateUser(id: $id, name: \"Rob\", email: \"rob@example.com\", currentPassword: $pw) { name email } }",
            json!({"id": bob.id, "pw": PASSWORD}),
        )
        .await;
        assert_eq!(r.body["data"]["updateUser"], json!({"name": "Rob", "email": "rob@example.com"}), "{}", r.text);
        app.login_as("rob@example.com", "BobSecret9").await;
    }
);

// ---- what others may see of an account ----

fn keys(user: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = user
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

const PUBLIC: [&str; 3] = ["createdAt", "id", "name"];
const ALL: [&str; 8] = [
    "createdAt",
    "email",
    "emailVerified",
    "id",
    "name",
    "role",
    "tier",
    "updatedAt",
];

api_test!(
    async fn others_see_only_the_public_fields_of_an_account_and_its_owner_and_admins_see_all(app) {
        let admin = app.admin().await;
        app.sign_up("nora@example.com", Some("Nora")).await;
        let nora = app.login_as("nora@example.com", PASSWORD).await;
        let sam = app.viewer("sam@example.com").await;

        let list = app.get("/api/v1/users?limit=100", Some(&sam.token)).await;
        assert_eq!(list.status, 200, "{}", list.text);
        for user in list.body["data"].as_array().unwrap() {
            let expected: &[&str] = if user["id"] == sam.id.as_str() { &ALL } else { &PUBLIC };
            assert_eq!(keys(user), expected, "{user}");
        }
        assert!(!list.text.contains("nora@example.com") && !list.text.contains("admin@example.com"));
        let one = app.get(&format!("/api/v1/users/{}", nora.id), Some(&sam.token)).await;
        assert_eq!(keys(&one.body), PUBLIC);
        assert_eq!(one.body["name"], "Nora");
        let v2 = app.get(&format!("/api/v2/users/{}", nora.id), Some(&sam.token)).await;
        assert_eq!(v2.body.get("email"), None, "{}", v2.text);
        assert_eq!(keys(&app.get(&format!("/api/v1/users/{}", nora.id), Some(&nora.token)).await.body), ALL);
        assert_eq!(keys(&app.get(&format!("/api/v1/users/{}", nora.id), Some(&admin.token)).await.body), ALL);
        let listed = app.get("/api/v1/users?limit=100", Some(&admin.token)).await;
        assert!(listed.body["data"].as_array().unwrap().iter().all(|u| keys(u) == ALL));

        // No probing what the answer hides: a search looks in names only, and filtering by role
        // or sorting by email is for admins.
        let probe = app.get("/api/v1/users?search=nora%40example", Some(&sam.token)).await;
        assert_eq!(probe.body["meta"]["total"], 0);
        let by_name = app.get("/api/v1/users?search=NOR", Some(&sam.token)).await;
        assert_eq!(by_name.body["meta"]["total"], 1);
        for query in ["role=admin", "sort=email", "sort=-email"] {
            app.get(&format!("/api/v1/users?{query}"), Some(&sam.token))
                .await
                .assert_error(403, "Forbidden", "Insufficient permissions");
        }
        let found = app.get("/api/v1/users?search=nora%40example&role=viewer&sort=email", Some(&admin.token)).await;
        assert_eq!(found.body["meta"]["total"], 1);

        let gql_list = gql(&app, Some(&sam.token), "{ users(limit: 100) { id email role } }", json!({})).await;
        for user in gql_list.body["data"]["users"].as_array().unwrap() {
            if user["id"] == sam.id.as_str() {
                assert_eq!(user["email"], "sam@example.com");
            } else {
                assert_eq!((&user["email"], &user["role"]), (&Value::Null, &Value::Null), "{user}");
            }
        }
        assert_eq!(app.get("/api/v1/profile", Some(&sam.token)).await.body["email"], "sam@example.com");
    }
);

// ---- rate limits ----

api_test!(
    async fn past_the_budget_of_an_address_requests_get_a_429_with_retry_after_and_ratelimit_headers(app, |c: &mut Config| limits(c, |p| p.per_ip = quota(5, 60))) {
        let get = |ip: &str| app.send(from_ip(ip, Method::GET, "/api/v1/posts", None, None));
        for left in (0..5).rev() {
            let r = get("203.0.113.7").await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(header_num(&r, "ratelimit-limit"), 5);
            assert_eq!(header_num(&r, "ratelimit-remaining"), left);
            assert!(header_num(&r, "ratelimit-reset") <= 60);
        }
        let refused = get("203.0.113.7").await;
        refused.assert_error(429, "TooManyRequests", "Too many requests, please try again later");
        assert_eq!(header_num(&refused, "retry-after"), 12, "one request's worth comes back every 12 s");
        assert_eq!(header_num(&refused, "ratelimit-remaining"), 0);
        assert_eq!(header_num(&refused, "ratelimit-reset"), 60);
        // Every API route counts, whatever it answers; health checks never do.
        let post = app.send(from_ip("203.0.113.7", Method::POST, "/api/v1/auth/login", None, Some(json!({})))).await;
        assert_eq!(post.status, 429);
        let health = app.send(from_ip("203.0.113.7", Method::GET, "/health/live", None, None)).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.header("ratelimit-limit"), None);
        // Another address has its own budget; this one refills with time.
        assert_eq!(get("198.51.100.1").await.status, 200);
        app.clock.advance(Duration::from_secs(12));
        assert_eq!(get("203.0.113.7").await.status, 200);
    }
);

api_test!(
    async fn a_signed_in_user_has_one_budget_across_addresses(app, |c: &mut Config| limits(c, |p| p.per_user = quota(3, 60))) {
        let kim = app.viewer("kim@example.com").await;
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            let r = app.send(from_ip(ip, Method::GET, "/api/v1/profile", Some(&kim.token), None)).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let refused = app.send(from_ip("192.0.2.4", Method::GET, "/api/v1/profile", Some(&kim.token), None)).await;
        refused.assert_error(429, "TooManyRequests", "Too many requests, please try again later");
        assert_eq!(header_num(&refused, "ratelimit-limit"), 3);
        // The address itself is not spent: anonymous requests from it go on.
        assert_eq!(app.send(from_ip("192.0.2.4", Method::GET, "/api/v1/posts", None, None)).await.status, 200);
    }
);

api_test!(
    async fn sign_up_login_refresh_reset_and_verification_have_budgets_of_their_own(app, |c: &mut Config| limits(c, |p| {
        p.sign_up = quota(1, 3600);
        p.login = quota(1, 300);
        p.refresh = quota(1, 300);
        p.password_reset = quota(1, 3600);
        p.verification = quota(1, 3600);
    })) {
        let ip = "203.0.113.50";
        let send = |method: Method, uri: &'static str, token: Option<String>, body: Option<Value>| {
            app.send(from_ip(ip, method, uri, token.as_deref(), body))
        };
        let signed_up = send(Method::POST, "/api/v1/users", None, Some(json!({"email": "lea@example.com", "password": PASSWORD}))).await;
        assert_eq!(signed_up.status, 201, "{}", signed_up.text);
        let login = send(Method::POST, "/api/v1/auth/login", None, Some(json!({"email": "lea@example.com", "password": PASSWORD}))).await;
        assert_eq!(login.status, 200, "{}", login.text);
        let token = login.body["token"].as_str().unwrap().to_owned();
        let refresh = login.body["refreshToken"].as_str().unwrap().to_owned();
        assert_eq!(send(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refreshToken": refresh}))).await.status, 200);
        assert_eq!(send(Method::POST, "/api/v1/auth/password-reset/request", None, Some(json!({"email": "lea@example.com"}))).await.status, 202);
        assert_eq!(send(Method::POST, "/api/v1/auth/verify-email/request", Some(token.clone()), None).await.status, 202);

        let second: [(&'static str, Option<String>, Option<Value>); 5] = [
            ("/api/v1/users", None, Some(json!({"email": "max@example.com", "password": PASSWORD}))),
            ("/api/v1/auth/login", None, Some(json!({"email": "lea@example.com", "password": PASSWORD}))),
            ("/api/v1/auth/refresh", None, Some(json!({"refreshToken": "x"}))),
            ("/api/v1/auth/password-reset/confirm", None, Some(json!({"token": "x", "newPassword": "Whatever9"}))),
            ("/api/v1/auth/verify-email/confirm", None, Some(json!({"token": "x"}))),
        ];
        for (uri, token, body) in second {
            let r = send(Method::POST, uri, token, body).await;
            r.assert_error(429, "TooManyRequests", "Too many requests, please try again later");
            assert_eq!(header_num(&r, "ratelimit-limit"), 1, "{uri}");
            assert!(header_num(&r, "retry-after") >= 60, "{uri}");
        }
        // Nothing was created by the refused sign-up, and the general budget still serves.
        assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
        let profile = send(Method::GET, "/api/v1/profile", Some(token), None).await;
        assert_eq!(profile.status, 200, "{}", profile.text);
    }
);

/// `n` aliased `createUser` fields.
fn create_user_fields(n: usize, offset: usize) -> String {
    let fields: Vec<String> = (offset..offset + n)
        .map(|i| format!("u{i}: createUser(email: \"bulk{i}@example.com\", password: \"{PASSWORD}\") {{ id }}"))
        .collect();
    fields.join(" ")
}

fn create_users(n: usize, offset: usize) -> String {
    format!("mutation {{ {} }}", create_user_fields(n, offset))
}

api_test!(
    async fn each_aliased_create_user_mutation_is_charged_as_a_sign_up(app, |c: &mut Config| limits(c, |p| p.sign_up = quota(2, 3600))) {
        let refused = gql(&app, None, &create_users(3, 0), json!({})).await;
        refused.assert_error(429, "TooManyRequests", "Too many requests, please try again later");
        assert_eq!(header_num(&refused, "ratelimit-limit"), 2);
        // Through a fragment too.
        let fragment = format!("mutation {{ ...F }} fragment F on MutationRoot {{ {} }}", create_user_fields(3, 10));
        let refused = gql(&app, None, &fragment, json!({})).await;
        assert_eq!(refused.status, 429, "{}", refused.text);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 0);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox_events").await, 0, "no mail queued");

        let two = gql(&app, None, &create_users(2, 20), json!({})).await;
        assert_eq!(two.status, 200, "{}", two.text);
        assert_eq!(two.body.get("errors"), None, "{}", two.text);
        assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 2);
        // The budget is spent: one more sign-up, by GraphQL or REST, waits.
        assert_eq!(gql(&app, None, &create_users(1, 30), json!({})).await.status, 429);
        assert_eq!(app.post("/api/v1/users", None, json!({"email": "rest@example.com", "password": PASSWORD})).await.status, 429);
        // Queries are not mutations: they still run.
        let r = gql(&app, None, "{ posts { id } }", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
);

api_test!(
    async fn graphql_mutations_spend_the_general_budget_field_by_field(app, |c: &mut Config| limits(c, |p| p.per_ip = quota(4, 60))) {
        // The request is one, its three root mutations three more: 4 of 4.
        let first = gql(&app, None, &create_users(3, 0), json!({})).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body.get("errors"), None, "{}", first.text);
        let next = gql(&app, None, "{ posts { id } }", json!({})).await;
        next.assert_error(429, "TooManyRequests", "Too many requests, please try again later");
        app.clock.advance(Duration::from_secs(60));
        assert_eq!(gql(&app, None, "{ posts { id } }", json!({})).await.status, 200);
    }
);

api_test!(
    async fn with_rate_limits_off_nothing_is_limited_and_no_budget_is_told(app, |c: &mut Config| c.rate_limits = None) {
        for _ in 0..200 {
            let r = app.send(from_ip("203.0.113.9", Method::GET, "/api/v1/posts", None, None)).await;
            assert_eq!(r.status, 200);
            assert_eq!(r.header("ratelimit-limit"), None);
        }
        // More sign-ups from one address than the default budget allows (10 an hour).
        for i in 0..12 {
            app.sign_up(&format!("many{i}@example.com"), None).await;
        }
        assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 12);
    }
);

async fn shared_limiter(prefix: &str) -> Option<inkcart::Connected> {
    let url = std::env::var("INKCART_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await
    };
    if let Err(e) = reachable.await {
        assert!(
            !std::env::var("INKCART_REQUIRE_REDIS").is_ok_and(|v| v == "1"),
            "INKCART_REQUIRE_REDIS=1 but Redis at {url} is unreachable: {e}"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** Redis not reachable at {url}: skipping the shared rate limit test ***\n"
        );
        return None;
    }
    let config = Config {
        redis_url: Some(url),
        rate_limit_prefix: prefix.to_owned(),
        ..crate::support::test_config()
    };
    let mut with_limits = config;
    limits(&mut with_limits, |_| {});
    let limiter = inkcart::connect_rate_limiter(&with_limits).await.unwrap();
    assert!(limiter.is_some());
    Some(inkcart::Connected {
        rate_limiter: limiter,
        ..inkcart::Connected::default()
    })
}

async fn forget(prefix: &str) {
    let url = std::env::var("INKCART_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Budgets live in Redis, not in the database: the two instances here have a database each, and
/// the test runs once (not once per database engine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_share_one_budget() {
    let prefix = format!("inkcart-test-{}:", uuid::Uuid::now_v7().simple());
    let Some(first) = shared_limiter(&prefix).await else {
        return;
    };
    let Some(second) = shared_limiter(&prefix).await else {
        return;
    };
    let configure = |c: &mut Config| limits(c, |p| p.per_ip = quota(4, 60));
    let a = TestApp::with_connected(inkcart_store::testing::sqlite().await, configure, first);
    let b = TestApp::with_connected(inkcart_store::testing::sqlite().await, configure, second);
    async fn get(app: &TestApp, ip: &str) -> TestResponse {
        app.send(from_ip(ip, Method::GET, "/api/v1/posts", None, None))
            .await
    }
    let ip = "203.0.113.77";
    let mut remaining = Vec::new();
    for app in [&a, &b, &a, &b] {
        let r = get(app, ip).await;
        assert_eq!(r.status, 200, "{}", r.text);
        remaining.push(header_num(&r, "ratelimit-remaining"));
    }
    assert_eq!(remaining, [3, 2, 1, 0], "one budget, spent from both");
    for app in [&a, &b] {
        let refused = get(app, ip).await;
        refused.assert_error(
            429,
            "TooManyRequests",
            "Too many requests, please try again later",
        );
        assert!((14..=15).contains(&header_num(&refused, "retry-after")));
    }
    // Another address still has its budget, on either instance.
    assert_eq!(get(&b, "203.0.113.78").await.status, 200);
    assert_eq!(get(&a, "203.0.113.78").await.status, 200);
    forget(&prefix).await;
}
