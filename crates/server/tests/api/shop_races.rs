//! The money paths under concurrency, on both databases.

use futures::future::join_all;
use serde_json::json;

use crate::api_test;

api_test!(
    async fn fifty_buyers_racing_for_ten_units_get_exactly_ten_orders(app) {
        let editor = app.editor().await;
        let item = app.product(&editor.token, "Last Ten", "25.00", 10).await;
        let buyers = app.quick_buyers(50).await;
        let body = json!({"items": [{"productId": item["id"], "quantity": 1}]});
        let responses = join_all(
            buyers
                .iter()
                .map(|b| app.post("/api/v1/orders", Some(&b.token), body.clone())),
        )
        .await;
        let created = responses.iter().filter(|r| r.status == 201).count();
        let refused = responses.iter().filter(|r| r.status == 409).count();
        assert_eq!((created, refused), (10, 40), "{:?}", responses.iter().map(|r| &r.text).collect::<Vec<_>>());
        for r in responses.iter().filter(|r| r.status == 409) {
            r.assert_error(409, "Conflict", "Insufficient stock for Last Ten");
        }
        let product = app.get(&format!("/api/v1/products/{}", item["id"].as_str().unwrap()), None).await;
        assert_eq!(product.body["stock"], 0);
        let admin = app.admin().await;
        let orders = app.get("/api/v1/orders", Some(&admin.token)).await;
        assert_eq!(orders.body["meta"]["total"], 10);
    }
);

api_test!(
    async fn one_idempotency_key_sent_twenty_times_at_once_makes_one_order(app) {
        let editor = app.editor().await;
        let item = app.product(&editor.token, "Mug", "10.00", 100).await;
        let buyer = app.viewer("buyer@example.com").await;
        let body = json!({"items": [{"productId": item["id"], "quantity": 1}]});
        let request = || {
            axum::http::Request::builder()
                .method("POST")
                .uri("/api/v1/orders")
                .header("authorization", format!("Bearer {}", buyer.token))
                .header("content-type", "application/json")
                .header("idempotency-key", "same-key")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap()
        };
        let responses = join_all((0..20).map(|_| app.send(request()))).await;
        let ids: std::collections::HashSet<&str> = responses
            .iter()
            .filter(|r| r.status == 201)
            .map(|r| r.body["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "{:?}", responses.iter().map(|r| &r.text).collect::<Vec<_>>());
        for r in &responses {
            assert!(r.status == 201 || r.status == 409, "{} {}", r.status, r.text);
        }
        let orders = app.get("/api/v1/orders", Some(&buyer.token)).await;
        assert_eq!(orders.body["meta"]["total"], 1);
        let product = app.get(&format!("/api/v1/products/{}", item["id"].as_str().unwrap()), None).await;
        assert_eq!(product.body["stock"], 99);
    }
);

api_test!(
    async fn cancel_racing_pay_lets_exactly_one_win_and_keeps_the_stock_right(app) {
        let editor = app.editor().await;
        let item = app.product(&editor.token, "Mug", "10.00", 1000).await;
        let buyer = app.viewer("buyer@example.com").await;
        let rounds = 10;
        let mut cancelled = 0;
        for _ in 0..rounds {
            let placed = app
                .post("/api/v1/orders", Some(&buyer.token), json!({"items": [{"productId": item["id"], "quantity": 2}]}))
                .await;
            let id = placed.body["id"].as_str().unwrap().to_owned();
            let (pay_uri, cancel_uri) = (format!("/api/v1/orders/{id}/pay"), format!("/api/v1/orders/{id}/cancel"));
            let (pay, cancel) = tokio::join!(
                app.call(axum::http::Method::POST, &pay_uri, Some(&buyer.token), None),
                app.call(axum::http::Method::POST, &cancel_uri, Some(&buyer.token), None)
            );
            let wins = [pay.status == 200, cancel.status == 200];
            assert_eq!(wins.iter().filter(|w| **w).count(), 1, "pay {} / cancel {}", pay.text, cancel.text);
            let loser = if wins[0] { &cancel } else { &pay };
            assert_eq!(loser.status, 409, "{}", loser.text);
            let order = app.get(&format!("/api/v1/orders/{id}"), Some(&buyer.token)).await;
            if wins[1] {
                cancelled += 1;
                assert_eq!(order.body["status"], "cancelled");
            } else {
                assert_eq!(order.body["status"], "paid");
            }
            // A payment that lost to the cancel was refunded; none stands for a cancelled order.
            let payments = app.get(&format!("/api/v1/orders/{id}/payments"), Some(&buyer.token)).await;
            let standing = payments.body["data"].as_array().unwrap().iter().filter(|p| p["status"] == "succeeded").count();
            assert_eq!(standing, usize::from(wins[0]));
        }
        let product = app.get(&format!("/api/v1/products/{}", item["id"].as_str().unwrap()), None).await;
        let sold = 2 * (rounds - cancelled);
        assert_eq!(product.body["stock"], 1000 - sold);
    }
);
