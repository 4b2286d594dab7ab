//! Hardening: GraphQL. Documents and variables nested deep enough to exhaust a parser's stack,
//! fragments that expand exponentially, small queries that would return or read unbounded
//! data, many mutations in one request, and NUL characters (which PostgreSQL cannot store) are
//! refused before they run, each as a GraphQL error with `extensions.code`. Every test ends
//! with a normal request that must still be answered.

use serde_json::{Value, json};

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse};

async fn gql(app: &TestApp, who: Option<&Login>, query: &str, variables: Value) -> TestResponse {
    app.post(
        "/graphql",
        who.map(|l| l.token.as_str()),
        json!({"query": query, "variables": variables}),
    )
    .await
}

/// Asserts that the request was refused as a whole: a GraphQL error with `code`, no data.
#[track_caller]
fn assert_refused(r: &TestResponse, code: &str, message: &str) {
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], Value::Null, "{}", r.text);
    let error = &r.body["errors"][0];
    assert_eq!(error["extensions"]["code"], code, "{}", r.text);
    let text = error["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "expected {message:?} in {text:?}");
}

/// A normal request after an attack: the server is up and answers it.
async fn assert_still_answered(app: &TestApp) {
    let r = gql(
        app,
        None,
        "{ posts(limit: 1) { id title } tags { name } }",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body.get("errors"), None, "{}", r.text);
    assert!(r.body["data"]["posts"].is_array(), "{}", r.text);
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

const TOO_DEEP: &str = "The document nests brackets more than 32 deep";

api_test!(
    async fn list_literals_nested_hundreds_to_thousands_deep_are_refused_before_parsing(app) {
        // 400 levels overflowed the stack of a debug build, 1,600 (3.2 KB) that of a release one.
        for depth in [400, 1_600, 10_000] {
            let list = nested("[", "1", "]", depth);
            for query in [
                format!("{{ posts(tag: {list}) {{ id }} }}"),
                format!("query($t: String = {list}) {{ posts(tag: $t) {{ id }} }}"),
                format!("query($t: {}) {{ posts(tag: $t) {{ id }} }}", nested("[", "String", "]", depth)),
                format!("{{ posts @include(if: {list}) {{ id }} }}"),
            ] {
                let r = gql(&app, None, &query, json!({})).await;
                assert_refused(&r, "BadRequest", TOO_DEEP);
            }
        }
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn input_objects_nested_hundreds_to_thousands_deep_are_refused_before_parsing(app) {
        for depth in [400, 1_400, 7_000] {
            let object = nested("{a:", "1", "}", depth);
            let query = format!("mutation {{ createOrder(items: [{{productId: {object}, quantity: 1}}]) {{ id }} }}");
            let r = gql(&app, None, &query, json!({})).await;
            assert_refused(&r, "BadRequest", TOO_DEEP);
        }
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn a_selection_set_nested_thousands_deep_is_refused_before_parsing(app) {
        let selections = nested("posts { author { ", "id", " } }", 1_000);
        let r = gql(&app, None, &format!("{{ {selections} }}"), json!({})).await;
        assert_refused(&r, "BadRequest", TOO_DEEP);
        // Within the nesting limit, the depth limit (10) still applies, with a code.
        let selections = nested("posts(limit: 1) { author { ", "id", " } }", 6);
        let r = gql(&app, None, &format!("{{ {selections} }}"), json!({})).await;
        assert_refused(&r, "BadRequest", "Query is nested too deep.");
        assert_still_answered(&app).await;
    }
);

/// Fragments that each select one more level through the next: `levels` levels once expanded,
/// though the text itself nests only three deep.
fn fragment_chain(levels: usize) -> String {
    let mut source = String::from("{ posts(limit: 1) { ...F0 } }\n");
    for i in 0..levels {
        let next = i + 1;
        if i.is_multiple_of(2) {
            source.push_str(&format!(
                "fragment F{i} on Post {{ author {{ ...F{next} }} }}\n"
            ));
        } else {
            source.push_str(&format!(
                "fragment F{i} on User {{ posts(limit: 1) {{ ...F{next} }} }}\n"
            ));
        }
    }
    let on = if levels.is_multiple_of(2) {
        "Post"
    } else {
        "User"
    };
    source.push_str(&format!("fragment F{levels} on {on} {{ id }}\n"));
    source
}

api_test!(
    async fn selections_nested_through_fragments_are_measured_with_the_fragments_expanded(app) {
        let r = gql(&app, None, &fragment_chain(500), json!({})).await;
        assert_refused(&r, "BadRequest", "nests more than 32 levels deep once its fragments are expanded");
        let r = gql(&app, None, &fragment_chain(20), json!({})).await;
        assert_refused(&r, "BadRequest", "nests more than 32 levels deep once its fragments are expanded");
        // Deeper than the depth limit (10) but within the nesting limit.
        let r = gql(&app, None, &fragment_chain(12), json!({})).await;
        assert_refused(&r, "BadRequest", "Query is nested too deep.");
        let cycle = "{ posts { ...A } } fragment A on Post { author { ...B } } fragment B on User { posts { ...A } }";
        let r = gql(&app, None, cycle, json!({})).await;
        assert_refused(&r, "BadRequest", "spreads itself");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn fragments_that_expand_exponentially_are_refused_before_validation(app) {
        // 2 KB of text that expands to 4^25 fields; validation would walk every one.
        let mut bomb = String::from("{ posts(limit: 1) { ...F25 } }\nfragment F0 on Post { id }\n");
        for i in 1..=25 {
            let p = i - 1;
            bomb.push_str(&format!("fragment F{i} on Post {{ ...F{p} ...F{p} ...F{p} ...F{p} }}\n"));
        }
        let r = gql(&app, None, &bomb, json!({})).await;
        assert_refused(&r, "BadRequest", "has more than 10000 nodes once its fragments are expanded");
        // Directives and aliases multiply the same way.
        let directives = " @include(if: true)".repeat(200);
        let spreads = (0..200).map(|i| format!("a{i}: title ...D")).collect::<Vec<_>>().join(" ");
        let query = format!("{{ posts(limit: 1) {{ {spreads} }} }} fragment D on Post {{ id{directives} }}");
        let r = gql(&app, None, &query, json!({})).await;
        assert_refused(&r, "BadRequest", "has more than 10000 nodes once its fragments are expanded");
        // Thousands of aliases written out fit in the document but not in the complexity limit.
        let aliases = (0..2_800).map(|i| format!("a{i}: id")).collect::<Vec<_>>().join(" ");
        let r = gql(&app, None, &format!("{{ posts {{ {aliases} }} }}"), json!({})).await;
        assert_refused(&r, "BadRequest", "Query is too complex.");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn a_document_over_the_size_limit_is_refused_unparsed(app) {
        let padding = "#".repeat(33 * 1024);
        let r = gql(&app, None, &format!("{padding}\n{{ posts {{ id }} }}"), json!({})).await;
        assert_refused(&r, "PayloadTooLarge", "at most 32768 are accepted");
        // Over the body limit, the body is not even read.
        let huge = "#".repeat(2 * 1024 * 1024);
        let r = gql(&app, None, &huge, json!({})).await;
        r.assert_error(413, "PayloadTooLarge", "Request body is too large");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn variables_too_large_too_deep_or_too_many_are_refused(app) {
        let query = "query($t: String) { posts(tag: $t) { id } }";
        let r = gql(&app, None, query, json!({"t": "x".repeat(600 * 1024)})).await;
        assert_refused(&r, "PayloadTooLarge", "at most 524288 are accepted");
        // Under serde_json's own limit (128), over ours.
        let deep: Value = serde_json::from_str(&nested("[", "1", "]", 100)).unwrap();
        let r = gql(&app, None, query, json!({"t": deep})).await;
        assert_refused(&r, "BadRequest", "The variables nest more than 32 deep");
        let many: Vec<u8> = vec![1; 20_000];
        let r = gql(&app, None, query, json!({"t": many})).await;
        assert_refused(&r, "BadRequest", "The variables hold more than 10000 values");
        // Beyond serde_json's limit the body is not JSON this server reads.
        let body = format!(r#"{{"query": "{{ posts {{ id }} }}", "variables": {{"t": {}}}}}"#, nested("[", "1", "]", 100_000));
        let r = app
            .send(axum::http::Request::builder().method("POST").uri("/graphql").header("content-type", "application/json").body(axum::body::Body::from(body)).unwrap())
            .await;
        r.assert_error(400, "BadRequest", "JSON nested more than 128 deep at line 1 column 175");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn a_batch_of_operations_is_refused_with_an_envelope(app) {
        let batch = json!([{"query": "mutation { createUser(email: \"a@example.com\", password: \"Secret123\") { id } }"}, {"query": "{ posts { id } }"}]);
        let r = app.post("/graphql", None, batch).await;
        r.assert_error(400, "BadRequest", "Batched GraphQL requests are not accepted: send one operation per request");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn root_mutation_fields_are_capped_per_request_counting_aliases_and_fragments(app) {
        let create = |i: usize| format!("u{i}:createUser(email:\"u{i}@x.io\",password:$p){{id}}");
        let six_hundred = (0..600).map(create).collect::<String>();
        let r = gql(&app, None, &format!("mutation($p:String!){{{six_hundred}}}"), json!({"p": "Secret123"})).await;
        assert_refused(&r, "BadRequest", "A request may run at most 5 mutations; this one runs 600");
        // Spread from fragments, they count the same.
        let spread = format!("mutation($p:String!) {{ ...M ...M }} fragment M on MutationRoot {{ {} }}", (0..3).map(create).collect::<String>());
        let r = gql(&app, None, &spread, json!({"p": "Secret123"})).await;
        assert_refused(&r, "BadRequest", "this one runs 6");
        app.drain().await;
        assert!(app.mail().is_empty(), "no account was made, no mail sent");
        let admin = app.admin().await;
        let users = app.get("/api/v1/users", Some(&admin.token)).await;
        assert_eq!(users.body["meta"]["total"], 1, "only the admin exists: {}", users.text);
        // Five is the default cap, and five run.
        let rename = |i: usize| format!("n{i}: updateUser(id: \"{}\", name: \"Name {i}\") {{ name }}", admin.id);
        let five = (0..5).map(rename).collect::<Vec<_>>().join(" ");
        let r = gql(&app, Some(&admin), &format!("mutation {{ {five} }}"), json!({})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(r.body["data"].as_object().unwrap().len(), 5);
        assert_still_answered(&app).await;
    }
);

fn nul_fields(r: &TestResponse) -> Vec<&str> {
    r.body["errors"][0]["extensions"]["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

api_test!(
    async fn a_nul_in_a_string_argument_is_a_validation_error_naming_it(app) {
        let buyer = app.viewer("buyer@example.com").await;
        let cases = [
            (r#"{ posts(tag: "a\u0000b") { id } }"#.to_owned(), vec!["tag"]),
            // A raw NUL in the document's string, as JSON carries it.
            ("{ posts(search: \"a\u{0}\") { id } }".to_owned(), vec!["search"]),
            (r#"mutation { createOrder(items: [{productId: "x", quantity: 1}, {productId: "\u0000", quantity: 1}]) { id } }"#.to_owned(), vec!["items[1].productId"]),
            (r#"mutation { createUser(email: "n@example.com", password: "Secret123", name: "\u0000") { id } }"#.to_owned(), vec!["name"]),
        ];
        for (query, fields) in cases {
            let r = gql(&app, Some(&buyer), &query, json!({})).await;
            assert_refused(&r, "ValidationError", "Validation failed");
            assert_eq!(nul_fields(&r), fields, "{}", r.text);
        }
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn a_nul_in_a_variable_is_a_validation_error_naming_it(app) {
        let buyer = app.viewer("buyer@example.com").await;
        let r = gql(&app, None, "query($t: String) { posts(tag: $t) { id } }", json!({"t": "a\u{0}b"})).await;
        assert_refused(&r, "ValidationError", "Validation failed");
        assert_eq!(nul_fields(&r), ["$t"]);
        let r = gql(
            &app,
            Some(&buyer),
            "mutation($items: [OrderLineInput!]!) { createOrder(items: $items) { id } }",
            json!({"items": [{"productId": "\u{0}", "quantity": 1}]}),
        )
        .await;
        assert_refused(&r, "ValidationError", "Validation failed");
        assert_eq!(nul_fields(&r), ["$items[0].productId"]);
        let r = gql(&app, None, "mutation($n: String) { createUser(email: \"v@example.com\", password: \"Secret123\", name: $n) { id } }", json!({"n": "\u{0}"})).await;
        assert_eq!(nul_fields(&r), ["$n"]);
        assert_still_answered(&app).await;
    }
);

/// Rows written straight to the store: the worst data the domain allows, in the numbers the
/// tests need, without going through the use cases (and their hashing and rendering).
mod seed {
    use chrono::{DateTime, Duration, Utc};
    use inkcart_app::ports::{Comment, PostRepo as _, Store as _, Tx};
    use inkcart_domain::blog::{Post, Slug, TagName};
    use inkcart_domain::shop::{Money, Order, OrderItem, OrderStatus, Product};
    use inkcart_domain::{Email, Role, Tier, User, UserId, UserName};
    use inkcart_store::SqlStore;
    use uuid::Uuid;

    /// A character JSON writes in six bytes (`\u0001`): the longest form of a character.
    pub fn longest(chars: usize) -> String {
        "\u{1}".repeat(chars)
    }

    pub struct Seed {
        pub store: SqlStore,
        tx: Option<Box<dyn Tx>>,
        /// Every row is a second newer than the one before: the order of lists is known.
        clock: DateTime<Utc>,
    }

    impl Seed {
        pub async fn new(app: &crate::support::TestApp) -> Self {
            let store = SqlStore::new(app.db.db.clone());
            let tx = Some(store.begin().await.expect("tx"));
            Self {
                store,
                tx,
                clock: Utc::now() - Duration::days(30),
            }
        }

        fn tick(&mut self) -> DateTime<Utc> {
            self.clock += Duration::seconds(1);
            self.clock
        }

        fn tx(&mut self) -> &mut dyn Tx {
            self.tx.as_deref_mut().expect("open transaction")
        }

        pub async fn commit(mut self) {
            self.tx
                .take()
                .expect("open transaction")
                .commit()
                .await
                .expect("commit");
        }

        /// A user whose name is 100 four-byte characters (names may not hold control ones).
        pub async fn user(&mut self, i: usize, role: Role) -> User {
            let now = self.tick();
            let user = User {
                id: UserId::from_uuid(Uuid::now_v7()),
                email: Email::parse(&format!("seeded{i}@example.com")).expect("email"),
                name: Some(UserName::parse(&"𝄞".repeat(100)).expect("name")),
                role,
                tier: Tier::Guest,
                email_verified: true,
                created_at: now,
                updated_at: now,
            };
            let store = self.store.clone();
            inkcart_app::ports::UserRepo::insert(&store, self.tx(), &user, "not-a-usable-hash")
                .await
                .expect("user");
            user
        }

        /// A published post with the longest title and excerpt, ten of the longest tags (of
        /// `tag_names`), and `content` as both Markdown and HTML.
        pub async fn post(&mut self, author: &User, tags: &[TagName], content: &str) -> Post {
            let now = self.tick();
            let id = Uuid::now_v7();
            let post = Post {
                id: id.into(),
                author_id: author.id,
                title: longest(200),
                slug: Slug::parse(&format!("post-{}", id.simple())).expect("slug"),
                content: content.to_owned(),
                content_html: content.to_owned(),
                excerpt: longest(201),
                cover_image_key: None,
                published: true,
                published_at: Some(now),
                created_at: now,
                updated_at: now,
            };
            let store = self.store.clone();
            inkcart_app::ports::PostRepo::insert(&store, self.tx(), &post, tags)
                .await
                .expect("post");
            post
        }

        pub async fn comment(&mut self, post: &Post, author: &User) {
            let now = self.tick();
            let comment = Comment {
                id: Uuid::now_v7().into(),
                post_id: post.id,
                author_id: author.id,
                content: longest(5_000),
                created_at: now,
                updated_at: now,
            };
            let store = self.store.clone();
            store
                .insert_comment(self.tx(), &comment)
                .await
                .expect("comment");
        }

        pub async fn product(&mut self) -> Product {
            let now = self.tick();
            let product = Product {
                id: Uuid::now_v7().into(),
                name: longest(200),
                description: Some(longest(10_000)),
                price: Money::from_cents(10_00),
                stock: 1_000,
                active: true,
                created_at: now,
                updated_at: now,
            };
            let store = self.store.clone();
            inkcart_app::ports::ProductRepo::insert(&store, self.tx(), &product)
                .await
                .expect("product");
            product
        }

        /// An order of one of each of `products` (the most lines an order may have).
        pub async fn order(&mut self, buyer: &User, products: &[Product]) {
            let now = self.tick();
            let items: Vec<OrderItem> = products
                .iter()
                .map(|p| OrderItem {
                    product_id: p.id,
                    name: p.name.clone(),
                    quantity: 1,
                    unit_price: p.price,
                    line_total: p.price,
                })
                .collect();
            let total = Money::from_cents(10_00 * i64::try_from(items.len()).unwrap());
            let order = Order {
                id: Uuid::now_v7().into(),
                user_id: buyer.id,
                status: OrderStatus::Pending,
                items,
                subtotal: total,
                discount: Money::ZERO,
                total,
                created_at: now,
                updated_at: now,
            };
            let store = self.store.clone();
            inkcart_app::ports::OrderRepo::insert(&store, self.tx(), &order)
                .await
                .expect("order");
        }
    }
}

api_test!(
    async fn the_69_byte_query_that_returned_723_mb_is_refused_as_too_complex(app) {
        let r = gql(&app, None, "{ posts(limit:100) { author { posts { author { posts { id } } } } } }", json!({})).await;
        assert_refused(&r, "BadRequest", "Query is too complex.");
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn nested_lists_are_paged_with_a_default_and_a_maximum(app) {
        let mut seed = seed::Seed::new(&app).await;
        let author = seed.user(0, inkcart_domain::Role::Editor).await;
        let reader = seed.user(1, inkcart_domain::Role::Viewer).await;
        let tags: Vec<_> = (0..3).map(|i| inkcart_domain::blog::TagName::parse(&format!("tag {i}")).unwrap()).collect();
        let mut newest = None;
        for _ in 0..25 {
            newest = Some(seed.post(&author, &tags, "text").await);
        }
        for _ in 0..60 {
            seed.comment(newest.as_ref().unwrap(), &reader).await;
        }
        seed.commit().await;
        let count = |r: &TestResponse, pointer: &str| r.body.pointer(pointer).and_then(Value::as_array).map(Vec::len);

        let r = gql(&app, None, "{ posts(limit: 1) { author { posts { id } } comments { id } } }", json!({})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(count(&r, "/data/posts/0/author/posts"), Some(10), "User.posts: 10 by default");
        assert_eq!(count(&r, "/data/posts/0/comments"), Some(10), "Post.comments: 10 by default");

        let r = gql(&app, None, "{ posts(limit: 1) { author { posts(limit: 20) { id } } comments(limit: 50) { id } more: comments(page: 2, limit: 50) { id } } }", json!({})).await;
        assert_eq!(r.body.get("errors"), None, "{}", r.text);
        assert_eq!(count(&r, "/data/posts/0/author/posts"), Some(20));
        assert_eq!(count(&r, "/data/posts/0/comments"), Some(50));
        assert_eq!(count(&r, "/data/posts/0/more"), Some(10), "the second page holds the last 10 of 60");

        for (query, max) in [
            ("{ posts(limit: 1) { author { posts(limit: 21) { id } } } }", 20),
            ("{ posts(limit: 1) { comments(limit: 51) { id } } }", 50),
            ("{ tags(limit: 101) { name } }", 100),
            ("{ posts(limit: 101) { id } }", 100),
        ] {
            let r = gql(&app, None, query, json!({})).await;
            assert_eq!(r.body["errors"][0]["extensions"]["code"], "ValidationError", "{}", r.text);
            assert_eq!(r.body["errors"][0]["extensions"]["errors"][0]["message"], format!("limit must be between 1 and {max}"), "{}", r.text);
        }
        let r = gql(&app, None, "{ tags { name postCount } }", json!({})).await;
        assert_eq!(r.body["data"]["tags"], json!([{"name": "tag 0", "postCount": 25}, {"name": "tag 1", "postCount": 25}, {"name": "tag 2", "postCount": 25}]));
        let r = gql(&app, None, "{ tags(page: 2, limit: 2) { name } }", json!({})).await;
        assert_eq!(r.body["data"]["tags"], json!([{"name": "tag 2"}]));
        assert_still_answered(&app).await;
    }
);

/// The bound the documentation states for the worst query the defaults accept.
const RESPONSE_BOUND: usize = 5_000_000;

api_test!(
    async fn the_worst_queries_the_defaults_accept_stay_within_the_stated_bound(app) {
        use inkcart_domain::Role;
        // Every page filled to its maximum with the longest values the domain allows: 36
        // authors with 20 posts each (the newest 4 with the longest content and 50 of the
        // longest comments), 100 products, and 38 orders of 100 lines.
        let mut seed = seed::Seed::new(&app).await;
        let tags: Vec<_> = (0..120)
            .map(|i| inkcart_domain::blog::TagName::parse(&format!("{i:03}{}", "𝄞".repeat(47))).unwrap())
            .collect();
        let buyer = seed.user(1_000, Role::Viewer).await;
        let mut authors = Vec::new();
        for i in 0..36 {
            authors.push(seed.user(i, Role::Editor).await);
        }
        let mut posts = Vec::new();
        for (i, author) in authors.iter().enumerate() {
            for j in 0..20 {
                let first = (i * 20 + j) % 110;
                posts.push(seed.post(author, &tags[first..first + 10], "short").await);
            }
        }
        let content = seed::longest(100_000);
        let mut heavy = Vec::new();
        for author in authors.iter().take(4) {
            let post = seed.post(author, &tags[..10], &content).await;
            for _ in 0..50 {
                seed.comment(&post, &buyer).await;
            }
            heavy.push(post);
        }
        let mut products = Vec::new();
        for _ in 0..100 {
            products.push(seed.product().await);
        }
        for _ in 0..38 {
            seed.order(&buyer, &products).await;
        }
        seed.commit().await;
        let viewer = app.viewer("viewer@example.com").await;
        let buyer_login = crate::support::Login {
            id: buyer.id.to_string(),
            token: {
                use inkcart_app::ports::TokenIssuer as _;
                let issuer = inkcart_adapters::tokens::JwtIssuer::new(&crate::support::JWT_SECRET);
                issuer.issue(&buyer, chrono::Utc::now(), std::time::Duration::from_secs(900)).unwrap().token
            },
            refresh: String::new(),
        };
        let slug = |i: usize| heavy[i].slug.as_str().to_owned();
        let posts_of = |n: usize| format!("a{n}: post(idOrSlug: \"{}\") {{ content contentHtml }}", slug(n));
        // Each family: the largest accepted query, then one step more, refused.
        let families: Vec<(Option<&Login>, String, String)> = vec![
            (None, "{ posts(limit: 2) { content } }".into(), "{ posts(limit: 3) { content } }".into()),
            (None, format!("{{ {} }}", posts_of(0)), format!("{{ {} {} }}", posts_of(0), posts_of(1))),
            (None, "{ posts(limit: 3) { comments(limit: 50) { content author { name } } } }".into(), "{ posts(limit: 4) { comments(limit: 50) { content author { name } } } }".into()),
            (Some(&viewer), "{ users(limit: 36) { posts(limit: 20) { id title excerpt tags } } }".into(), "{ users(limit: 37) { posts(limit: 20) { id title excerpt tags } } }".into()),
            (None, "{ products(limit: 81) { name description } }".into(), "{ products(limit: 82) { name description } }".into()),
            (Some(&buyer_login), "{ myOrders(limit: 38) { items { name } } }".into(), "{ myOrders(limit: 39) { items { name } } }".into()),
            (None, "{ posts(limit: 100) { id title slug excerpt tags commentCount publishedAt createdAt author { id name role createdAt } } tags(limit: 100) { name postCount } }".into(), String::new()),
        ];
        for (who, accepted, refused) in families {
            let r = gql(&app, who, &accepted, json!({})).await;
            assert_eq!(r.body.get("errors"), None, "{accepted}: {}", &r.text[..r.text.len().min(500)]);
            assert!(r.text.len() <= RESPONSE_BOUND, "{accepted}: {} bytes", r.text.len());
            assert!(r.text.len() > 100_000, "{accepted}: the data is there ({} bytes)", r.text.len());
            if !refused.is_empty() {
                let r = gql(&app, who, &refused, json!({})).await;
                assert_refused(&r, "BadRequest", "Query is too complex.");
            }
        }
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn an_order_of_more_than_100_lines_is_refused_whatever_the_api(app) {
        let editor = app.editor().await;
        let product = app.product(&editor.token, "Pen", "1.00", 1_000).await;
        let buyer = app.viewer("buyer@example.com").await;
        let lines: Vec<Value> = (0..101).map(|_| json!({"productId": product["id"], "quantity": 1})).collect();
        let r = gql(&app, Some(&buyer), "mutation($items: [OrderLineInput!]!) { createOrder(items: $items) { id } }", json!({"items": lines})).await;
        assert_eq!(r.body["errors"][0]["extensions"]["code"], "ValidationError", "{}", r.text);
        assert_eq!(r.body["errors"][0]["message"], "An order has at most 100 lines", "{}", r.text);
        let rest = app.post("/api/v1/orders", Some(&buyer.token), json!({"items": lines})).await;
        assert_eq!(rest.status, 400, "{}", rest.text);
        assert_eq!(rest.error_fields(), ["items"]);
        let r = gql(&app, Some(&buyer), "mutation($items: [OrderLineInput!]!) { createOrder(items: $items) { items { quantity } } }", json!({"items": &lines[..100]})).await;
        assert_eq!(r.body["data"]["createOrder"]["items"], json!([{"quantity": 100}]), "{}", r.text);
        assert_still_answered(&app).await;
    }
);

api_test!(
    async fn nesting_at_the_highest_setting_is_parsed_and_validated_without_exhausting_the_stack(app, |c| c.graphql_max_nesting = 64) {
        // `{` and `(` take two of the 64 levels (and `[{` two more around the object).
        let list = nested("[", "1", "]", 62);
        let object = nested("{a:", "1", "}", 60);
        for query in [
            format!("{{ posts(tag: {list}) {{ id }} }}"),
            format!("query($t: String = {list}) {{ posts(tag: $t) {{ id }} }}"),
            format!("mutation {{ createOrder(items: [{{productId: {object}, quantity: 1}}]) {{ id }} }}"),
        ] {
            let r = gql(&app, None, &query, json!({})).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.body["errors"][0]["extensions"]["code"], "BadRequest", "{}", r.text);
            assert!(!r.text.contains("nests brackets"), "{}", r.text);
        }
        let deep: Value = serde_json::from_str(&nested("[", "1", "]", 64)).unwrap();
        let r = gql(&app, None, "query($t: [[String]]) { posts(tag: $t) { id } }", json!({"t": deep})).await;
        assert_eq!(r.body["errors"][0]["extensions"]["code"], "BadRequest", "{}", r.text);
        assert!(!r.text.contains("variables nest"), "{}", r.text);
        let r = gql(&app, None, &format!("{{ posts(tag: {}) {{ id }} }}", nested("[", "1", "]", 63)), json!({})).await;
        assert_refused(&r, "BadRequest", "The document nests brackets more than 64 deep");
        assert_still_answered(&app).await;
    }
);
