//! Hardening: REST input at the edge. Documents nested deep enough to exhaust a parser or the
//! HTML sanitizer, text the databases cannot store (NUL), dates and cursors outside the stored
//! range, bodies that are not the documented object, and lists without a maximum page size.
//! Each test sends the attack, then a normal request that must still be answered.

use axum::body::Body;
use axum::http::{Method, Request, header};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse};

/// A request with a raw body (`application/json`), for bodies `serde_json::Value` cannot
/// hold or that must be sent byte for byte.
async fn raw(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: &str,
) -> TestResponse {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    app.send(request.body(Body::from(body.to_owned())).unwrap())
        .await
}

#[track_caller]
fn assert_field_error(r: &TestResponse, field: &str) {
    let head: String = r.text.chars().take(300).collect();
    assert_eq!(r.status, 400, "{head}");
    r.assert_error(400, "ValidationError", "Validation failed");
    assert_eq!(r.error_fields(), [field], "{}", r.text);
}

async fn published_post(app: &TestApp, editor: &Login, title: &str) -> Value {
    let r = app
        .post(
            "/api/v1/posts",
            Some(&editor.token),
            json!({"title": title, "content": "Some *text*.", "published": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

fn cursor(raw: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

api_test!(
    async fn a_nul_in_any_json_string_is_a_400_naming_the_field_and_nothing_is_written(app) {
        let editor = app.editor().await;
        let t = Some(editor.token.as_str());
        let product = app.product(&editor.token, "Mug", "12.00", 5).await;
        let product_id = product["id"].as_str().unwrap();
        for (method, uri, body, field) in [
            (Method::POST, "/api/v1/posts".to_owned(), r#"{"title":"a\u0000b","content":"x"}"#, "title"),
            (Method::POST, "/api/v1/posts".to_owned(), r#"{"title":"t","content":"x","tags":["ok","\u0000"]}"#, "tags[1]"),
            (Method::POST, "/api/v1/users".to_owned(), r#"{"email":"nul\u0000@example.com","password":"Secret123"}"#, "email"),
            (Method::PATCH, format!("/api/v1/products/{product_id}"), r#"{"description":"\u0000"}"#, "description"),
            (Method::POST, "/api/v1/auth/login".to_owned(), r#"{"email":"a@example.com","password":"\u0000"}"#, "password"),
            (Method::POST, "/api/v1/orders".to_owned(), r#"{"items":[{"productId":"\u0000","quantity":1}]}"#, "items[0].productId"),
        ] {
            let r = raw(&app, method.clone(), &uri, t, body).await;
            assert_field_error(&r, field);
            assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("NUL"), "{}", r.text);
        }
        // Nothing was written: no post, the description unchanged.
        let posts = app.get("/api/v1/posts", None).await;
        assert_eq!(posts.body["meta"]["total"], 0, "{}", posts.text);
        let unchanged = app.get(&format!("/api/v1/products/{product_id}"), None).await;
        assert_eq!(unchanged.body["description"], Value::Null);
        // A normal write is answered.
        published_post(&app, &editor, "Still here").await;
    }
);

api_test!(
    async fn a_nul_in_a_query_parameter_is_a_400_naming_the_parameter(app) {
        let admin = app.admin().await;
        for (uri, field) in [
            ("/api/v1/posts?search=a%00b", "search"),
            ("/api/v1/posts?tag=%00", "tag"),
            ("/api/v1/posts?cursor=%00", "cursor"),
            ("/api/v1/products?search=mug%00", "search"),
            ("/api/v1/products?minPrice=1%00", "minPrice"),
            ("/api/v1/users?search=%00", "search"),
            ("/api/v1/orders?sort=%00", "sort"),
        ] {
            let r = app.get(uri, Some(&admin.token)).await;
            assert_field_error(&r, field);
        }
        let normal = app.get("/api/v1/posts?search=rust&page=1", None).await;
        assert_eq!(normal.status, 200, "{}", normal.text);
    }
);

api_test!(
    async fn a_nul_in_a_path_segment_is_a_400_naming_the_segment(app) {
        let editor = app.editor().await;
        let post = published_post(&app, &editor, "Hello").await;
        for (method, uri, field) in [
            (Method::GET, "/api/v1/posts/hel%00lo", "post"),
            (Method::GET, "/api/v1/posts/%00/comments", "post"),
            (Method::DELETE, "/api/v1/posts/hello%00", "post"),
            (Method::GET, "/files/a%00.png", "key"),
            (Method::GET, "/api/v1/users/%00", "id"),
        ] {
            let r = app.call(method, uri, Some(&editor.token), None).await;
            assert_field_error(&r, field);
        }
        let normal = app.get(&format!("/api/v1/posts/{}", post["slug"].as_str().unwrap()), None).await;
        assert_eq!(normal.status, 200, "{}", normal.text);
    }
);

api_test!(
    async fn a_cursor_outside_the_stored_range_or_holding_nul_is_a_400_on_cursor(app) {
        let editor = app.editor().await;
        let post = published_post(&app, &editor, "First").await;
        published_post(&app, &editor, "Second").await;
        let id = post["id"].as_str().unwrap();
        let far_future = cursor(&format!("c|{}|{id}", i64::MAX / 2));
        let before_year_one = cursor(&format!("c|-62135596800000001|{id}"));
        let nul_title = cursor(&format!("t|{id}|Fi\0rst"));
        for uri in [
            format!("/api/v1/posts?cursor={far_future}"),
            format!("/api/v1/posts?cursor={before_year_one}&limit=1"),
            format!("/api/v1/posts?cursor={nul_title}&sort=title"),
            format!("/api/v1/posts/{id}/comments?cursor={far_future}"),
            format!("/api/v1/posts?cursor={}", "A".repeat(3000)),
        ] {
            let r = app.get(&uri, None).await;
            assert_field_error(&r, "cursor");
        }
        // The server's own cursors still page.
        let first = app.get("/api/v1/posts?limit=1", None).await;
        let next = first.body["meta"]["nextCursor"].as_str().unwrap().to_owned();
        let second = app.get(&format!("/api/v1/posts?limit=1&cursor={next}"), None).await;
        assert_eq!(second.status, 200, "{}", second.text);
        assert_eq!(second.body["data"][0]["title"], "First");
    }
);

api_test!(
    async fn report_dates_outside_years_1_to_9999_are_a_400_naming_the_date(app) {
        let admin = app.admin().await;
        let t = Some(admin.token.as_str());
        for (uri, field) in [
            ("/api/v1/reports/sales?to=%2B262142-12-31", "to"),
            ("/api/v1/reports/sales?from=0000-12-31&to=0001-01-02", "from"),
            ("/api/v1/reports/sales?from=%2B10000-01-01&to=%2B10000-01-02", "from"),
            ("/api/v1/reports/sales?from=-0001-01-01", "from"),
        ] {
            let r = app.get(uri, t).await;
            assert_eq!(r.status, 400, "{uri}: {}", r.text);
            assert!(r.error_fields().contains(&field.to_owned()), "{uri}: {}", r.text);
        }
        // The range's edges are answered, the default `from` kept within it.
        let last = app.get("/api/v1/reports/sales?to=9999-12-31", t).await;
        assert_eq!(last.status, 200, "{}", last.text);
        assert_eq!(last.body["data"].as_array().unwrap().len(), 30);
        let first = app.get("/api/v1/reports/sales?to=0001-01-05", t).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.body["data"][0]["date"], "0001-01-01");
        let normal = app.get("/api/v1/reports/sales", t).await;
        assert_eq!(normal.status, 200, "{}", normal.text);
    }
);

api_test!(
    async fn a_body_that_is_not_the_documented_object_is_a_400_on_every_body_route(app) {
        let admin = app.admin().await;
        let t = Some(admin.token.as_str());
        let product = app.product(&admin.token, "Mug", "12.00", 5).await;
        let product_id = product["id"].as_str().unwrap();
        let user = &admin.id;
        let post = published_post(&app, &admin, "Hello").await;
        let post_id = post["id"].as_str().unwrap();
        let order = app
            .post("/api/v1/orders", t, json!({"items": [{"productId": product_id, "quantity": 1}]}))
            .await;
        assert_eq!(order.status, 201, "{}", order.text);
        let order_id = order.body["id"].as_str().unwrap();
        for (method, uri) in [
            (Method::PATCH, format!("/api/v1/products/{product_id}")),
            (Method::PUT, format!("/api/v1/products/{product_id}")),
            (Method::POST, "/api/v1/products".to_owned()),
            (Method::PATCH, format!("/api/v1/users/{user}")),
            (Method::PUT, format!("/api/v1/users/{user}")),
            (Method::POST, "/api/v1/users".to_owned()),
            (Method::PATCH, format!("/api/v1/posts/{post_id}")),
            (Method::PUT, format!("/api/v1/posts/{post_id}")),
            (Method::POST, format!("/api/v1/posts/{post_id}/comments")),
            (Method::POST, "/api/v1/orders".to_owned()),
            (Method::POST, format!("/api/v1/orders/{order_id}/pay")),
            (Method::POST, "/api/v1/auth/login".to_owned()),
            (Method::POST, "/api/v1/auth/refresh".to_owned()),
            (Method::POST, "/api/v1/auth/password-reset/request".to_owned()),
        ] {
            for body in ["[null, null]", "[]", "null", "42", "\"text\""] {
                if uri.ends_with("/pay") && body == "null" {
                    // Paying takes an optional body: `null` is the document's "none".
                    continue;
                }
                let r = raw(&app, method.clone(), &uri, t, body).await;
                assert_field_error(&r, "body");
            }
        }
        // An order line written as an array of its values is not an object either.
        let r = raw(&app, Method::POST, "/api/v1/orders", t, &format!(r#"{{"items":[["{product_id}",1]]}}"#)).await;
        assert_field_error(&r, "items[0]");
        // Nothing changed, and a real PATCH is answered.
        let patched = app
            .call(Method::PATCH, &format!("/api/v1/products/{product_id}"), t, Some(json!({"stock": 7})))
            .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.body["name"], "Mug");
        assert_eq!(patched.body["stock"], 7);
    }
);

api_test!(
    async fn json_nested_100000_deep_is_a_400_on_every_json_route_and_the_server_still_answers(app) {
        let admin = app.admin().await;
        let t = Some(admin.token.as_str());
        let arrays = format!(r#"{{"title":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let objects = format!(r#"{}1{}"#, r#"{"a":"#.repeat(100_000), "}".repeat(100_000));
        for uri in ["/api/v1/posts", "/api/v1/orders", "/api/v1/users", "/api/v1/auth/login"] {
            for body in [&arrays, &objects] {
                // Malformed past serde_json's recursion limit (128), or refused on the field
                // whose type it breaks: an envelope either way, never a crash.
                let r = raw(&app, Method::POST, uri, t, body).await;
                assert_eq!(r.status, 400, "{uri}: {}", &r.text);
                assert!(["BadRequest", "ValidationError"].contains(&r.body["error"].as_str().unwrap()), "{}", r.text);
            }
        }
        let normal = app.post("/api/v1/posts", t, json!({"title": "Fine", "content": "Fine."})).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
    }
);

api_test!(
    async fn post_content_nested_100000_deep_is_refused_on_content_before_rendering(app) {
        let editor = app.editor().await;
        let t = Some(editor.token.as_str());
        let post = published_post(&app, &editor, "Kept").await;
        let id = post["id"].as_str().unwrap();
        for content in [
            format!("{}x", ">".repeat(99_999)),
            format!("{}x", "* ".repeat(49_999)),
            format!("{}x", "1. ".repeat(33_000)),
            format!("{}x", "<div>".repeat(19_999)),
            format!("{}x", "<ul><li>".repeat(12_000)),
            format!("{}x{}", "<blockquote>".repeat(8_000), "</blockquote>".repeat(100)),
        ] {
            let created = app.post("/api/v1/posts", t, json!({"title": "Deep", "content": content})).await;
            assert_field_error(&created, "content");
            let patched = app
                .call(Method::PATCH, &format!("/api/v1/posts/{id}"), t, Some(json!({"content": content})))
                .await;
            assert_field_error(&patched, "content");
        }
        // Nesting of a real post is rendered as before.
        let normal = app
            .post("/api/v1/posts", t, json!({"title": "Quotes", "content": "> a\n> > b\n\n- x\n  - y\n\n<div><em>z</em></div>"}))
            .await;
        assert_eq!(normal.status, 201, "{}", normal.text);
        let html = normal.body["contentHtml"].as_str().unwrap();
        assert!(html.contains("<blockquote>") && html.contains("<ul>"), "{html}");
        let kept = app.get(&format!("/api/v1/posts/{id}"), None).await;
        assert_eq!(kept.body["content"], "Some *text*.");
    }
);

api_test!(
    async fn a_deeply_nested_comment_is_stored_as_plain_text(app) {
        let editor = app.editor().await;
        let post = published_post(&app, &editor, "Talk").await;
        let id = post["id"].as_str().unwrap();
        let deep = ">".repeat(4_999);
        let r = app
            .post(&format!("/api/v1/posts/{id}/comments"), Some(&editor.token), json!({"content": deep}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["content"], deep);
        let too_long = app
            .post(&format!("/api/v1/posts/{id}/comments"), Some(&editor.token), json!({"content": "<b>".repeat(2_000)}))
            .await;
        assert_field_error(&too_long, "content");
        let list = app.get(&format!("/api/v1/posts/{id}/comments"), None).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    }
);

api_test!(
    async fn query_strings_with_repeated_huge_or_unknown_parameters_are_refused(app) {
        let admin = app.admin().await;
        // 14 KB of one parameter repeated (within the 16 KB head): a duplicate, refused at once.
        let repeated = format!("/api/v1/posts?{}", vec!["page=1"; 2_000].join("&"));
        let r = app.get(&repeated, None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        // A query string past the head limit is refused before it is parsed.
        let huge = format!("/api/v1/products?search={}", "a".repeat(60_000));
        assert_eq!(app.get(&huge, None).await.status, 414);
        let long = format!("/api/v1/products?search={}", "a".repeat(10_000));
        assert_field_error(&app.get(&long, None).await, "search");
        let huge_users = format!("/api/v1/users?search={}", "%C3%A9".repeat(201));
        assert_field_error(&app.get(&huge_users, Some(&admin.token)).await, "search");
        assert_field_error(&app.get(&format!("/api/v1/posts?tag={}", "t".repeat(51)), None).await, "tag");
        let unknown = app.get("/api/v1/posts?pge=2", None).await;
        assert_eq!(unknown.status, 400, "{}", unknown.text);
        for bad_sort in ["", "%2Btitle", "%20title", "-", "title,createdAt"] {
            let r = app.get(&format!("/api/v1/posts?sort={bad_sort}"), None).await;
            assert_field_error(&r, "sort");
        }
        let normal = app.get(&format!("/api/v1/products?search={}&sort=-price", "a".repeat(200)), None).await;
        assert_eq!(normal.status, 200, "{}", normal.text);
    }
);

api_test!(
    async fn every_list_route_has_a_default_and_a_maximum_page_size(app) {
        let admin = app.admin().await;
        let t = Some(admin.token.as_str());
        let post = published_post(&app, &admin, "Listed").await;
        let post_id = post["id"].as_str().unwrap();
        let product = app.product(&admin.token, "Mug", "12.00", 5).await;
        let order = app
            .post("/api/v1/orders", t, json!({"items": [{"productId": product["id"], "quantity": 1}]}))
            .await;
        let order_id = order.body["id"].as_str().unwrap();
        let lists = [
            "/api/v1/users".to_owned(),
            "/api/v1/posts".to_owned(),
            format!("/api/v1/posts/{post_id}/comments"),
            "/api/v1/tags".to_owned(),
            "/api/v1/products".to_owned(),
            "/api/v1/orders".to_owned(),
            format!("/api/v1/orders?userId={}", admin.id),
            format!("/api/v1/orders/{order_id}/payments"),
            "/api/v1/admin/jobs".to_owned(),
            "/api/v1/reports/top-products".to_owned(),
        ];
        for list in &lists {
            let sep = if list.contains('?') { '&' } else { '?' };
            let over = app.get(&format!("{list}{sep}limit=101"), t).await;
            assert_field_error(&over, "limit");
            let max = app.get(&format!("{list}{sep}limit=100"), t).await;
            assert_eq!(max.status, 200, "{list}: {}", max.text);
            let default = app.get(list, t).await;
            assert_eq!(default.status, 200, "{list}: {}", default.text);
        }
        // A report covers at most 366 days.
        let long = app.get("/api/v1/reports/sales?from=2020-01-01&to=2021-12-31", t).await;
        assert_field_error(&long, "to");
    }
);

api_test!(
    async fn tag_and_payment_lists_stop_at_their_limit(app) {
        let editor = app.editor().await;
        for i in 0..3 {
            let r = app
                .post(
                    "/api/v1/posts",
                    Some(&editor.token),
                    json!({"title": format!("Post {i}"), "content": "x", "published": true, "tags": [format!("t{i}"), "common"]}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
        let two = app.get("/api/v1/tags?limit=2", None).await;
        let names: Vec<&str> = two.body["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["common", "t0"]);
        let all = app.get("/api/v1/tags", None).await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 4);
    }
);
