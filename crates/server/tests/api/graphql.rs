use serde_json::{Value, json};

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse};

async fn gql(app: &TestApp, who: Option<&Login>, query: &str, variables: Value) -> TestResponse {
    let r = app
        .post(
            "/graphql",
            who.map(|l| l.token.as_str()),
            json!({"query": query, "variables": variables}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

fn error_code(r: &TestResponse) -> &str {
    r.body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

const GET_USER_WITH_POSTS: &str = r"
query GetUserWithPosts($id: ID!) {
  user(id: $id) {
    id
    email
    name
    posts {
      id
      title
      comments {
        id
        content
        author {
          name
        }
      }
    }
  }
}";

api_test!(
    async fn the_guides_get_user_with_posts_query_returns_the_guides_shape(app) {
        app.sign_up("writer@example.com", Some("John Doe")).await;
        let writer = app.login_as("writer@example.com", crate::support::PASSWORD).await;
        let admin = app.admin().await;
        app.call(axum::http::Method::PATCH, &format!("/api/v1/users/{}", writer.id), Some(&admin.token), Some(json!({"role": "editor"}))).await;
        let writer = app.login_as("writer@example.com", crate::support::PASSWORD).await;
        let post = app
            .post("/api/v1/posts", Some(&writer.token), json!({"title": "My First Post", "content": "Hi", "published": true}))
            .await;
        app.sign_up("jane@example.com", Some("Jane Smith")).await;
        let jane = app.login_as("jane@example.com", crate::support::PASSWORD).await;
        let comment = app
            .post(&format!("/api/v1/posts/{}/comments", post.body["id"].as_str().unwrap()), Some(&jane.token), json!({"content": "Great post!"}))
            .await;
        // The writer asks: an account's email is for its owner (and admins).
        let r = gql(&app, Some(&writer), GET_USER_WITH_POSTS, json!({"id": writer.id})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(
            r.body,
            json!({"data": {"user": {
                "id": writer.id,
                "email": "writer@example.com",
                "name": "John Doe",
                "posts": [{
                    "id": post.body["id"],
                    "title": "My First Post",
                    "comments": [{"id": comment.body["id"], "content": "Great post!", "author": {"name": "Jane Smith"}}]
                }]
            }}})
        );
    }
);

api_test!(
    // The test counts statements: 20 posts with their content cost more than the default
    // complexity limit allows (each post's Markdown and HTML may be 100,000 characters).
    async fn twenty_posts_with_authors_comments_and_commenters_cost_a_fixed_number_of_statements(app, |c| c.graphql_complexity_limit = 1_000_000) {
        let editors = [app.user_with_role("e1@example.com", "editor").await, app.user_with_role("e2@example.com", "editor").await];
        let readers = app.quick_buyers(3).await;
        for i in 0..20 {
            let author = &editors[i % 2];
            let post = app
                .post("/api/v1/posts", Some(&author.token), json!({"title": format!("Post {i}"), "content": "x", "published": true}))
                .await;
            for reader in &readers[..1 + i % 3] {
                app.post(&format!("/api/v1/posts/{}/comments", post.body["id"].as_str().unwrap()), Some(&reader.token), json!({"content": "ok"}))
                    .await;
            }
        }
        let query = "query($limit: Int) { posts(limit: $limit) { id title content author { name } comments { content author { name } } } }";
        let measure = |limit: u64| {
            let app = &app;
            async move {
                let before = app.db.statements();
                let r = gql(app, None, query, json!({"limit": limit})).await;
                assert_eq!(r.body.get("errors"), None, "{}", r.text);
                assert_eq!(r.body["data"]["posts"].as_array().unwrap().len() as u64, limit);
                app.db.statements() - before
            }
        };
        let two = measure(2).await;
        let twenty = measure(20).await;
        assert_eq!(two, twenty, "2 posts took {two} statements, 20 took {twenty}");
        assert!(twenty <= 8, "{twenty} statements");
    }
);

api_test!(
    async fn a_single_post_tells_its_number_of_comments_as_lists_do(app) {
        let editor = app.editor().await;
        let post = app
            .post("/api/v1/posts", Some(&editor.token), json!({"title": "Counted", "content": "Hi", "published": true}))
            .await;
        let id = post.body["id"].as_str().unwrap();
        let reader = app.viewer("reader@example.com").await;
        for text in ["one", "two"] {
            let c = app.post(&format!("/api/v1/posts/{id}/comments"), Some(&reader.token), json!({"content": text})).await;
            assert_eq!(c.status, 201, "{}", c.text);
        }
        let query = "query($id: String!) { post(idOrSlug: $id) { commentCount } posts { commentCount } }";
        let r = gql(&app, None, query, json!({"id": "counted"})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(r.body["data"]["post"]["commentCount"], 2, "{}", r.text);
        assert_eq!(r.body["data"]["posts"][0]["commentCount"], 2, "{}", r.text);
    }
);

api_test!(
    async fn a_query_deeper_than_the_limit_is_refused(app) {
        // posts > author > posts > author > posts > author > posts > author > posts > id: depth 10.
        // (One item per list: with their default pages, nested lists are too complex.)
        let ten = "{ posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { id } } } } } } } } } }";
        let r = gql(&app, None, ten, json!({})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        let eleven = "{ posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { author { posts(limit: 1) { author { id } } } } } } } } } } }";
        let r = gql(&app, None, eleven, json!({})).await;
        assert_eq!(r.body["data"], Value::Null);
        assert_eq!(r.body["errors"][0]["message"], "Query is nested too deep.");
    }
);

api_test!(
    async fn a_too_complex_query_is_refused(app, |c| c.graphql_complexity_limit = 10) {
        let r = gql(&app, None, "{ posts { id title slug excerpt tags createdAt author { id name role createdAt } comments { id content createdAt } } }", json!({})).await;
        assert_eq!(r.body["errors"][0]["message"], "Query is too complex.");
    }
);

api_test!(
    async fn introspection_can_be_switched_off(app, |c| c.graphql_introspection = false) {
        let r = gql(&app, None, "{ __schema { queryType { name } } }", json!({})).await;
        assert_eq!(r.body["data"]["__schema"], Value::Null, "{}", r.text);
    }
);

api_test!(
    async fn graphql_errors_carry_the_rest_error_names_and_rules(app) {
        let r = gql(&app, None, "{ users { id } }", json!({})).await;
        assert_eq!(error_code(&r), "Unauthorized");
        assert_eq!(r.body["errors"][0]["message"], "No token provided");

        let viewer = app.viewer("viewer@example.com").await;
        let r = gql(&app, Some(&viewer), r#"mutation { createPost(title: "T", content: "x") { id } }"#, json!({})).await;
        assert_eq!(error_code(&r), "Forbidden");
        assert_eq!(r.body["errors"][0]["message"], "Insufficient permissions");

        let r = gql(&app, None, r#"mutation { createUser(email: "bad", password: "short") { id } }"#, json!({})).await;
        assert_eq!(error_code(&r), "ValidationError");
        let fields: Vec<&str> = r.body["errors"][0]["extensions"]["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["email", "password"]);

        let r = gql(&app, None, r#"mutation { createUser(email: "viewer@example.com", password: "Secret123") { id } }"#, json!({})).await;
        assert_eq!(error_code(&r), "Conflict");
        assert_eq!(r.body["errors"][0]["extensions"]["reason"], "email_taken", "{}", r.text);
        assert_eq!(r.body["errors"][0]["message"], "User already exists");

        let r = gql(&app, Some(&viewer), r"mutation { createOrder(items: []) { id } }", json!({})).await;
        assert_eq!(error_code(&r), "ValidationError");
        assert_eq!(r.body["errors"][0]["message"], "Cart is empty");

        let other = app.viewer("other@example.com").await;
        let r = gql(&app, Some(&viewer), "mutation($id: ID!) { updateUser(id: $id, name: \"X\") { id } }", json!({"id": other.id})).await;
        assert_eq!(error_code(&r), "Forbidden");
        assert_eq!(r.body["errors"][0]["message"], "Can only edit your own resources");

        let bad_token = app.post("/graphql", Some("garbage"), json!({"query": "{ tags { name } }"})).await;
        bad_token.assert_error(401, "Unauthorized", "Invalid or expired token");
        let malformed = app
            .send(axum::http::Request::builder().method("POST").uri("/graphql").header("content-type", "application/json").body(axum::body::Body::from("{")).unwrap())
            .await;
        assert_eq!(malformed.status, 400);
    }
);

api_test!(
    async fn graphql_reaches_the_same_shop_and_blog_as_rest(app) {
        let editor = app.editor().await;
        let product = app.product(&editor.token, "Mug", "12.50", 10).await;
        let buyer = app.viewer("buyer@example.com").await;
        let r = gql(&app, Some(&buyer), "mutation($p: ID!) { createOrder(items: [{productId: $p, quantity: 2}]) { status total items { name quantity unitPrice } } }", json!({"p": product["id"]})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(r.body["data"]["createOrder"], json!({"status": "pending", "total": "25.00", "items": [{"name": "Mug", "quantity": 2, "unitPrice": "12.50"}]}));
        let mine = gql(&app, Some(&buyer), "{ myOrders { total } }", json!({})).await;
        assert_eq!(mine.body["data"]["myOrders"], json!([{"total": "25.00"}]));
        let stock = gql(&app, None, "query($id: ID!) { product(id: $id) { stock price } }", json!({"id": product["id"]})).await;
        assert_eq!(stock.body["data"]["product"], json!({"stock": 8, "price": "12.50"}));

        let created = gql(&app, Some(&editor), r#"mutation { createPost(title: "GraphQL post", content: "Hello *there*", published: true, tags: ["Gql"]) { slug tags contentHtml } }"#, json!({})).await;
        assert_eq!(created.body["data"]["createPost"], json!({"slug": "graphql-post", "tags": ["gql"], "contentHtml": "<p>Hello <em>there</em></p>\n"}));
        let found = gql(&app, None, r#"{ posts(search: "hello") { title } tags { name postCount } }"#, json!({})).await;
        assert_eq!(found.body["data"], json!({"posts": [{"title": "GraphQL post"}], "tags": [{"name": "gql", "postCount": 1}]}));
        // E-mail addresses and roles are for their owners and admins, as in REST.
        for caller in [None, Some(&buyer)] {
            let other = gql(&app, caller, "{ posts { author { name email role } } }", json!({})).await;
            assert_eq!(other.body.get("errors"), None, "{}", other.text);
            assert_eq!(other.body["data"]["posts"][0]["author"], json!({"name": null, "email": null, "role": null}));
        }
        let own = gql(&app, Some(&editor), "{ posts { author { email role } } }", json!({})).await;
        assert_eq!(own.body["data"]["posts"][0]["author"], json!({"email": "editor@example.com", "role": "editor"}));
        // Introspection is on in development.
        let schema = gql(&app, None, "{ __schema { queryType { name } } }", json!({})).await;
        assert_eq!(schema.body["data"]["__schema"]["queryType"]["name"], "QueryRoot");
    }
);

api_test!(
    async fn graphiql_is_served_from_the_binary_in_development(app) {
        let page = app.get("/graphql", None).await;
        assert_eq!(page.status, 200);
        assert!(page.header("content-type").unwrap().starts_with("text/html"));
        assert!(page.header("content-security-policy").unwrap().contains("script-src 'self'"));
        assert!(!page.text.contains("http://") && !page.text.contains("https://"), "the page loads from elsewhere");
        for asset in ["graphiql.min.js", "graphiql.min.css", "react.production.min.js", "react-dom.production.min.js", "init.js"] {
            let r = app.get(&format!("/graphql/assets/{asset}"), None).await;
            assert_eq!(r.status, 200, "{asset}");
        }
        app.get("/graphql/assets/../../jwt-secret", None).await.assert_error(404, "NotFound", "Route not found");
    }
);

api_test!(
    async fn graphiql_is_off_in_production(app, |c| c.env = inkcart::config::Environment::Production) {
        app.get("/graphql", None)
            .await
            .assert_error(404, "NotFound", "GraphiQL is served in development only");
        let r = gql(&app, None, "{ tags { name } }", json!({})).await;
        assert_eq!(r.body["data"]["tags"], json!([]));
    }
);
