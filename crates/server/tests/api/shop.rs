use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Value, json};

use crate::api_test;
use crate::support::{Login, TestApp};

async fn order(app: &TestApp, buyer: &Login, items: Value) -> crate::support::TestResponse {
    app.post(
        "/api/v1/orders",
        Some(&buyer.token),
        json!({"items": items}),
    )
    .await
}

async fn stock(app: &TestApp, id: &Value) -> i64 {
    let r = app
        .get(&format!("/api/v1/products/{}", id.as_str().unwrap()), None)
        .await;
    r.body["stock"].as_i64().unwrap()
}

async fn set_tier(app: &TestApp, user: &Login, tier: &str) {
    let admin = app.admin().await;
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{}", user.id),
            Some(&admin.token),
            Some(json!({"tier": tier})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

api_test!(
    async fn products_are_made_by_editors_and_admins_only(app) {
        let body = json!({"name": "Mug", "price": "19.99", "stock": 5});
        app.post("/api/v1/products", None, body.clone())
            .await
            .assert_error(401, "Unauthorized", "No token provided");
        let viewer = app.viewer("viewer@example.com").await;
        app.post("/api/v1/products", Some(&viewer.token), body.clone())
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let editor = app.editor().await;
        let created = app.post("/api/v1/products", Some(&editor.token), body).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.body["name"], "Mug");
        assert_eq!(created.body["price"], "19.99");
        assert_eq!(created.body["stock"], 5);
        assert_eq!(created.body["active"], true);
        let admin = app.admin().await;
        app.product(&admin.token, "Teapot", "45", 1).await;
    }
);

api_test!(
    async fn product_input_is_validated_and_money_is_never_a_float(app) {
        let editor = app.editor().await;
        for (body, field) in [
            (json!({"name": "Mug", "price": 19.99, "stock": 1}), "price"),
            (json!({"name": "Mug", "price": "1.234", "stock": 1}), "price"),
            (json!({"name": "Mug", "price": "-1.00", "stock": 1}), "price"),
            (json!({"name": "Mug", "price": "abc", "stock": 1}), "price"),
            (json!({"name": "Mug", "stock": 1}), "price"),
            (json!({"name": "  ", "price": "1.00"}), "name"),
            (json!({"name": "Mug", "price": "1.00", "stock": -1}), "stock"),
            (json!({"name": "Mug", "price": "1.00", "stock": 1.5}), "stock"),
            (json!({"name": "Mug", "price": "1.00", "colour": "red"}), "colour"),
        ] {
            let r = app.post("/api/v1/products", Some(&editor.token), body.clone()).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), [field], "{body}: {}", r.text);
        }
        let list = app.get("/api/v1/products", None).await;
        assert_eq!(list.body["meta"]["total"], 0);
    }
);

api_test!(
    async fn a_product_has_an_etag_a_304_when_unchanged_and_fresh_data_after_a_change(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let path = format!("/api/v1/products/{}", mug["id"].as_str().unwrap());
        let first = app.get(&path, None).await;
        assert_eq!(first.status, 200);
        let etag = first.header("etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_eq!(first.header("cache-control"), Some("public, max-age=30"));

        let conditional = |tag: &str| {
            Request::builder().uri(&path).header("if-none-match", tag).body(Body::empty()).unwrap()
        };
        let not_modified = app.send(conditional(&etag)).await;
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.text.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
        assert_eq!(app.send(conditional(&format!("W/{etag}, \"other\""))).await.status, 304);

        let changed = app
            .call(Method::PATCH, &path, Some(&editor.token), Some(json!({"price": "12.50"})))
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        let fresh = app.get(&path, None).await;
        assert_eq!(fresh.body["price"], "12.50", "the cache still served the old product");
        assert_ne!(fresh.header("etag").unwrap(), etag);
        assert_eq!(app.send(conditional(&etag)).await.status, 200);
    }
);

api_test!(
    async fn products_list_with_filters_and_sorts(app) {
        let editor = app.editor().await;
        app.product(&editor.token, "Blue Mug", "15.00", 3).await;
        app.product(&editor.token, "Red Mug", "9.00", 0).await;
        app.product(&editor.token, "Teapot", "45.00", 1).await;
        let names = |r: &crate::support::TestResponse| -> Vec<String> {
            r.body["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
        };
        let r = app.get("/api/v1/products?sort=price", None).await;
        assert_eq!(names(&r), ["Red Mug", "Blue Mug", "Teapot"]);
        assert_eq!(r.body["meta"]["total"], 3);
        let r = app.get("/api/v1/products?sort=-price&minPrice=10&maxPrice=45.00", None).await;
        assert_eq!(names(&r), ["Teapot", "Blue Mug"]);
        let r = app.get("/api/v1/products?inStock=true&search=mug", None).await;
        assert_eq!(names(&r), ["Blue Mug"]);
        let r = app.get("/api/v1/products?sort=name&limit=2&page=2", None).await;
        assert_eq!(names(&r), ["Teapot"]);
        let newest = app.get("/api/v1/products", None).await;
        assert_eq!(names(&newest)[0], "Teapot");

        for (query, field) in [
            ("minPrice=ten", "minPrice"),
            ("maxPrice=1.001", "maxPrice"),
            ("minPrice=20&maxPrice=10", "minPrice"),
            ("sort=stock", "sort"),
            ("inStock=maybe", "inStock"),
        ] {
            let r = app.get(&format!("/api/v1/products?{query}"), None).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), [field], "{query}");
        }
    }
);

api_test!(
    async fn deleting_a_product_that_orders_reference_deactivates_it(app) {
        let editor = app.editor().await;
        let admin = app.admin().await;
        let sold = app.product(&editor.token, "Sold", "20.00", 5).await;
        let unsold = app.product(&editor.token, "Unsold", "20.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": sold["id"], "quantity": 1}])).await;
        assert_eq!(placed.status, 201, "{}", placed.text);

        let path = |p: &Value| format!("/api/v1/products/{}", p["id"].as_str().unwrap());
        app.call(Method::DELETE, &path(&unsold), Some(&editor.token), None)
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let deleted = app.call(Method::DELETE, &path(&unsold), Some(&admin.token), None).await;
        assert_eq!(deleted.status, 204);
        app.get(&path(&unsold), None).await.assert_error(404, "NotFound", "Product not found");

        let deactivated = app.call(Method::DELETE, &path(&sold), Some(&admin.token), None).await;
        assert_eq!(deactivated.status, 200);
        assert_eq!(deactivated.body, json!({"result": "deactivated"}));
        assert_eq!(app.get(&path(&sold), None).await.body["active"], false);
        let again = order(&app, &buyer, json!([{"productId": sold["id"], "quantity": 1}])).await;
        again.assert_error(400, "ValidationError", "Product Sold is not available");
        // The old order still shows the product's name.
        let old = app.get(&format!("/api/v1/orders/{}", placed.body["id"].as_str().unwrap()), Some(&buyer.token)).await;
        assert_eq!(old.body["items"][0]["name"], "Sold");
    }
);

api_test!(
    async fn placing_an_order_prices_it_and_reserves_the_stock(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "12.50", 10).await;
        let pot = app.product(&editor.token, "Teapot", "30.00", 2).await;
        let buyer = app.viewer("buyer@example.com").await;
        let r = order(&app, &buyer, json!([
            {"productId": mug["id"], "quantity": 2},
            {"productId": pot["id"], "quantity": 1}
        ]))
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["status"], "pending");
        assert_eq!(r.body["userId"], buyer.id.as_str());
        assert_eq!(r.body["subtotal"], "55.00");
        assert_eq!(r.body["discount"], "0.00");
        assert_eq!(r.body["total"], "55.00");
        let items = r.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        let mug_line = items.iter().find(|i| i["productId"] == mug["id"]).unwrap();
        assert_eq!(mug_line["name"], "Mug");
        assert_eq!(mug_line["quantity"], 2);
        assert_eq!(mug_line["unitPrice"], "12.50");
        assert_eq!(mug_line["lineTotal"], "25.00");
        assert_eq!(stock(&app, &mug["id"]).await, 8);
        assert_eq!(stock(&app, &pot["id"]).await, 1);

        let fetched = app.get(&format!("/api/v1/orders/{}", r.body["id"].as_str().unwrap()), Some(&buyer.token)).await;
        assert_eq!(fetched.body, r.body);
    }
);

api_test!(
    async fn every_order_rule_of_the_guide_answers_with_its_message(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "5.00", 100).await;
        let buyer = app.viewer("buyer@example.com").await;

        let empty = order(&app, &buyer, json!([])).await;
        empty.assert_error(400, "ValidationError", "Cart is empty");
        empty.assert_code("order_rules_broken");
        assert_eq!(empty.body["errors"][0], json!({"field": "items", "message": "Cart is empty"}));
        let no_items = app.post("/api/v1/orders", Some(&buyer.token), json!({})).await;
        no_items.assert_error(400, "ValidationError", "Cart is empty");

        let small = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 1}])).await;
        small.assert_error(400, "ValidationError", "Minimum order amount is $10");

        for quantity in [json!(0), json!(-1), json!(1.5), json!(10_000_000_000_i64)] {
            let bad = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": quantity}, {"productId": mug["id"], "quantity": 3}])).await;
            assert_eq!(bad.status, 400, "{quantity}: {}", bad.text);
            let messages: Vec<&str> = bad.body["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
            assert!(messages.contains(&"Invalid quantity for Mug"), "{quantity}: {messages:?}");
            assert_eq!(bad.body["errors"][messages.iter().position(|m| *m == "Invalid quantity for Mug").unwrap()]["field"], "items[0]");
        }

        let ghost = uuid::Uuid::now_v7();
        let unknown = order(&app, &buyer, json!([{"productId": ghost, "quantity": 1}])).await;
        assert_eq!(unknown.status, 400);
        let messages = unknown.text;
        assert!(messages.contains(&format!("Product {ghost} is not available")), "{messages}");

        let wrong_type = order(&app, &buyer, json!([{"productId": "not-a-uuid", "quantity": 1}])).await;
        wrong_type.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(wrong_type.error_fields(), ["items[0].productId"]);

        assert_eq!(stock(&app, &mug["id"]).await, 100, "a refused order reserved stock");
        let list = app.get("/api/v1/orders", Some(&buyer.token)).await;
        assert_eq!(list.body["meta"]["total"], 0);
    }
);

api_test!(
    async fn insufficient_stock_is_a_409_naming_the_product_and_reserves_nothing(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let pot = app.product(&editor.token, "Teapot", "30.00", 1).await;
        let buyer = app.viewer("buyer@example.com").await;
        let r = order(&app, &buyer, json!([
            {"productId": mug["id"], "quantity": 2},
            {"productId": pot["id"], "quantity": 2}
        ]))
        .await;
        r.assert_error(409, "Conflict", "Insufficient stock for Teapot");
        r.assert_code("insufficient_stock");
        assert_eq!(stock(&app, &mug["id"]).await, 5);
        assert_eq!(stock(&app, &pot["id"]).await, 1);
    }
);

api_test!(
    async fn duplicate_lines_of_one_product_become_one_line(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let r = order(&app, &buyer, json!([
            {"productId": mug["id"], "quantity": 2},
            {"productId": mug["id"], "quantity": 3}
        ]))
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
        assert_eq!(r.body["items"][0]["quantity"], 5);
        assert_eq!(r.body["total"], "50.00");
        assert_eq!(stock(&app, &mug["id"]).await, 0);
    }
);

api_test!(
    async fn the_discount_follows_the_buyers_tier_and_rounds_half_up(app) {
        let editor = app.editor().await;
        let item = app.product(&editor.token, "Odd", "33.35", 10).await;
        let buyer = app.viewer("buyer@example.com").await;
        let line = json!([{"productId": item["id"], "quantity": 1}]);
        let guest = order(&app, &buyer, line.clone()).await;
        assert_eq!((guest.body["discount"].as_str(), guest.body["total"].as_str()), (Some("0.00"), Some("33.35")));
        set_tier(&app, &buyer, "regular").await;
        let regular = order(&app, &buyer, line.clone()).await;
        // 10 % of 33.35 is 3.335 → 3.34.
        assert_eq!((regular.body["discount"].as_str(), regular.body["total"].as_str()), (Some("3.34"), Some("30.01")));
        set_tier(&app, &buyer, "premium").await;
        let premium = order(&app, &buyer, line).await;
        assert_eq!((premium.body["discount"].as_str(), premium.body["total"].as_str()), (Some("6.67"), Some("26.68")));
    }
);

api_test!(
    async fn unit_prices_are_copied_into_the_order(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 1}])).await;
        let path = format!("/api/v1/products/{}", mug["id"].as_str().unwrap());
        app.call(Method::PATCH, &path, Some(&editor.token), Some(json!({"price": "99.00"}))).await;
        let again = app.get(&format!("/api/v1/orders/{}", placed.body["id"].as_str().unwrap()), Some(&buyer.token)).await;
        assert_eq!(again.body["items"][0]["unitPrice"], "10.00");
        assert_eq!(again.body["total"], "10.00");
    }
);

api_test!(
    async fn orders_are_seen_by_their_buyer_and_by_admins_only(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 10).await;
        let ann = app.viewer("ann@example.com").await;
        let bob = app.viewer("bob@example.com").await;
        let anns = order(&app, &ann, json!([{"productId": mug["id"], "quantity": 1}])).await;
        order(&app, &bob, json!([{"productId": mug["id"], "quantity": 2}])).await;
        let path = format!("/api/v1/orders/{}", anns.body["id"].as_str().unwrap());
        app.get(&path, Some(&bob.token)).await.assert_error(404, "NotFound", "Order not found");
        let admin = app.admin().await;
        assert_eq!(app.get(&path, Some(&admin.token)).await.status, 200);

        let own = app.get("/api/v1/orders", Some(&ann.token)).await;
        assert_eq!(own.body["meta"]["total"], 1);
        assert_eq!(own.body["data"][0]["id"], anns.body["id"]);
        let all = app.get("/api/v1/orders", Some(&admin.token)).await;
        assert_eq!(all.body["meta"]["total"], 2);
        let bobs = app.get(&format!("/api/v1/orders?userId={}", bob.id), Some(&admin.token)).await;
        assert_eq!(bobs.body["meta"]["total"], 1);
        app.get(&format!("/api/v1/orders?userId={}", bob.id), Some(&ann.token))
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let by_total = app.get("/api/v1/orders?sort=-total&status=pending", Some(&admin.token)).await;
        assert_eq!(by_total.body["data"][0]["total"], "20.00");
        app.get("/api/v1/orders?status=lost", Some(&admin.token))
            .await
            .assert_error(400, "ValidationError", "Validation failed");
    }
);

api_test!(
    async fn cancelling_a_pending_order_returns_its_stock(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 3}])).await;
        let id = placed.body["id"].as_str().unwrap();
        let other = app.viewer("other@example.com").await;
        app.call(Method::POST, &format!("/api/v1/orders/{id}/cancel"), Some(&other.token), None)
            .await
            .assert_error(404, "NotFound", "Order not found");
        assert_eq!(stock(&app, &mug["id"]).await, 2);
        let cancelled = app.call(Method::POST, &format!("/api/v1/orders/{id}/cancel"), Some(&buyer.token), None).await;
        assert_eq!(cancelled.status, 200, "{}", cancelled.text);
        assert_eq!(cancelled.body["status"], "cancelled");
        assert_eq!(stock(&app, &mug["id"]).await, 5);
        app.call(Method::POST, &format!("/api/v1/orders/{id}/cancel"), Some(&buyer.token), None)
            .await
            .assert_error(409, "Conflict", "Cannot cancel an order that is cancelled");
        assert_eq!(stock(&app, &mug["id"]).await, 5);
    }
);

api_test!(
    async fn paying_moves_an_order_to_paid_and_a_decline_leaves_it_pending(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 2}])).await;
        let id = placed.body["id"].as_str().unwrap();
        let pay = format!("/api/v1/orders/{id}/pay");

        let declined = app.post(&pay, Some(&buyer.token), json!({"paymentToken": "tok_chargeDeclined"})).await;
        declined.assert_error(402, "PaymentRequired", "Payment declined");
        let still = app.get(&format!("/api/v1/orders/{id}"), Some(&buyer.token)).await;
        assert_eq!(still.body["status"], "pending");

        let admin = app.admin().await;
        app.call(Method::POST, &pay, Some(&admin.token), None)
            .await
            .assert_error(403, "Forbidden", "Can only edit your own resources");

        let paid = app.call(Method::POST, &pay, Some(&buyer.token), None).await;
        assert_eq!(paid.status, 200, "{}", paid.text);
        assert_eq!(paid.body["status"], "paid");
        let payments = app.get(&format!("/api/v1/orders/{id}/payments"), Some(&buyer.token)).await;
        assert_eq!(payments.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(payments.body["data"][0]["gateway"], "sandbox");
        assert_eq!(payments.body["data"][0]["amount"], "20.00");
        assert_eq!(payments.body["data"][0]["status"], "succeeded");

        app.call(Method::POST, &pay, Some(&buyer.token), None)
            .await
            .assert_error(409, "Conflict", "Cannot pay an order that is paid");
        app.call(Method::POST, &format!("/api/v1/orders/{id}/cancel"), Some(&buyer.token), None)
            .await
            .assert_error(409, "Conflict", "Cannot cancel an order that is paid");
    }
);

api_test!(
    async fn only_editors_ship_and_only_paid_orders_ship(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 1}])).await;
        let id = placed.body["id"].as_str().unwrap();
        let ship = format!("/api/v1/orders/{id}/ship");
        app.call(Method::POST, &ship, Some(&editor.token), None)
            .await
            .assert_error(409, "Conflict", "Cannot ship an order that is pending");
        app.call(Method::POST, &format!("/api/v1/orders/{id}/pay"), Some(&buyer.token), None).await;
        app.call(Method::POST, &ship, Some(&buyer.token), None)
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let shipped = app.call(Method::POST, &ship, Some(&editor.token), None).await;
        assert_eq!(shipped.status, 200, "{}", shipped.text);
        assert_eq!(shipped.body["status"], "shipped");
        let delivered = app.call(Method::POST, &format!("/api/v1/orders/{id}/deliver"), Some(&editor.token), None).await;
        assert_eq!(delivered.body["status"], "delivered");
        app.call(Method::POST, &ship, Some(&editor.token), None)
            .await
            .assert_error(409, "Conflict", "Cannot ship an order that is delivered");
    }
);

fn with_key(uri: &str, token: &str, key: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

api_test!(
    async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 10).await;
        let buyer = app.viewer("buyer@example.com").await;
        let body = json!({"items": [{"productId": mug["id"], "quantity": 2}]});
        let first = app.send(with_key("/api/v1/orders", &buyer.token, "order-1", &body)).await;
        assert_eq!(first.status, 201, "{}", first.text);
        assert_eq!(first.header("idempotent-replayed"), None);
        let second = app.send(with_key("/api/v1/orders", &buyer.token, "order-1", &body)).await;
        assert_eq!(second.status, 201);
        assert_eq!(second.header("idempotent-replayed"), Some("true"));
        assert_eq!(second.body, first.body);
        assert_eq!(stock(&app, &mug["id"]).await, 8);

        // The same document with its keys in another order is the same request.
        let reordered: Value = serde_json::from_str(&format!(
            r#"{{"items":[{{"quantity":2,"productId":"{}"}}]}}"#,
            mug["id"].as_str().unwrap()
        ))
        .unwrap();
        let third = app.send(with_key("/api/v1/orders", &buyer.token, "order-1", &reordered)).await;
        assert_eq!(third.body["id"], first.body["id"]);

        let other_body = json!({"items": [{"productId": mug["id"], "quantity": 3}]});
        let reused = app.send(with_key("/api/v1/orders", &buyer.token, "order-1", &other_body)).await;
        reused.assert_error(422, "UnprocessableEntity", "This Idempotency-Key was used with a different request");
        reused.assert_code("idempotency_key_reused");
        // Keys belong to their user.
        let other = app.viewer("other@example.com").await;
        let theirs = app.send(with_key("/api/v1/orders", &other.token, "order-1", &body)).await;
        assert_eq!(theirs.status, 201);
        assert_ne!(theirs.body["id"], first.body["id"]);
        app.send(with_key("/api/v1/orders", &buyer.token, "bad key with spaces", &body))
            .await
            .assert_error(400, "BadRequest", "Idempotency-Key must be 1 to 255 visible ASCII characters");
        let list = app.get("/api/v1/orders", Some(&buyer.token)).await;
        assert_eq!(list.body["meta"]["total"], 1);
    }
);

api_test!(
    async fn a_failed_request_gives_its_idempotency_key_back(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 1).await;
        let buyer = app.viewer("buyer@example.com").await;
        let body = json!({"items": [{"productId": mug["id"], "quantity": 2}]});
        app.send(with_key("/api/v1/orders", &buyer.token, "retry-me", &body))
            .await
            .assert_error(409, "Conflict", "Insufficient stock for Mug");
        let path = format!("/api/v1/products/{}", mug["id"].as_str().unwrap());
        app.call(Method::PATCH, &path, Some(&editor.token), Some(json!({"stock": 5}))).await;
        let retried = app.send(with_key("/api/v1/orders", &buyer.token, "retry-me", &body)).await;
        assert_eq!(retried.status, 201, "{}", retried.text);
    }
);

api_test!(
    async fn a_repeated_payment_with_one_key_is_replayed_not_refused(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        let placed = order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 1}])).await;
        let pay = format!("/api/v1/orders/{}/pay", placed.body["id"].as_str().unwrap());
        let first = app.send(with_key(&pay, &buyer.token, "pay-1", &json!({}))).await;
        assert_eq!(first.status, 200, "{}", first.text);
        let again = app.send(with_key(&pay, &buyer.token, "pay-1", &json!({}))).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body["status"], "paid");
        let payments = app.get(&format!("/api/v1/orders/{}/payments", placed.body["id"].as_str().unwrap()), Some(&buyer.token)).await;
        assert_eq!(payments.body["data"].as_array().unwrap().len(), 1);
    }
);

api_test!(
    async fn reports_show_best_sellers_and_daily_sales_to_admins(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 50).await;
        let pot = app.product(&editor.token, "Teapot", "40.00", 50).await;
        let buyer = app.viewer("buyer@example.com").await;
        for (items, pay) in [
            (json!([{"productId": mug["id"], "quantity": 3}]), true),
            (json!([{"productId": mug["id"], "quantity": 1}, {"productId": pot["id"], "quantity": 1}]), true),
            (json!([{"productId": pot["id"], "quantity": 9}]), false),
        ] {
            let placed = order(&app, &buyer, items).await;
            if pay {
                let id = placed.body["id"].as_str().unwrap();
                app.call(Method::POST, &format!("/api/v1/orders/{id}/pay"), Some(&buyer.token), None).await;
            }
        }
        app.get("/api/v1/reports/top-products", Some(&editor.token))
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let admin = app.admin().await;
        let top = app.get("/api/v1/reports/top-products?limit=10", Some(&admin.token)).await;
        assert_eq!(top.status, 200, "{}", top.text);
        assert_eq!(
            top.body["data"],
            json!([
                {"productId": mug["id"], "name": "Mug", "totalSold": 4},
                {"productId": pot["id"], "name": "Teapot", "totalSold": 1}
            ])
        );
        let today = chrono::Utc::now().date_naive();
        let yesterday = today - chrono::Duration::days(1);
        let sales = app
            .get(&format!("/api/v1/reports/sales?from={yesterday}&to={today}"), Some(&admin.token))
            .await;
        assert_eq!(
            sales.body["data"],
            json!([
                {"date": yesterday.to_string(), "orders": 0, "revenue": "0.00"},
                {"date": today.to_string(), "orders": 2, "revenue": "80.00"}
            ])
        );
        for query in ["from=2026-13-01", "from=2026-02-01&to=2026-01-01", "limit=0"] {
            let uri = if query.starts_with("limit") {
                format!("/api/v1/reports/top-products?{query}")
            } else {
                format!("/api/v1/reports/sales?{query}")
            };
            app.get(&uri, Some(&admin.token)).await.assert_error(400, "ValidationError", "Validation failed");
        }
    }
);

api_test!(
    async fn a_user_with_orders_cannot_be_deleted(app) {
        let editor = app.editor().await;
        let mug = app.product(&editor.token, "Mug", "10.00", 5).await;
        let buyer = app.viewer("buyer@example.com").await;
        order(&app, &buyer, json!([{"productId": mug["id"], "quantity": 1}])).await;
        let admin = app.admin().await;
        app.call(Method::DELETE, &format!("/api/v1/users/{}", buyer.id), Some(&admin.token), None)
            .await
            .assert_error(409, "Conflict", "User has orders and cannot be deleted");
    }
);
