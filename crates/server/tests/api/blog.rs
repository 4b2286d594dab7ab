use axum::http::Method;
use serde_json::{Value, json};

use crate::api_test;
use crate::support::{Login, TestApp};

async fn write(app: &TestApp, author: &Login, body: Value) -> Value {
    let r = app.post("/api/v1/posts", Some(&author.token), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body
}

async fn publish(
    app: &TestApp,
    author: &Login,
    title: &str,
    content: &str,
    tags: &[&str],
) -> Value {
    write(
        app,
        author,
        json!({"title": title, "content": content, "published": true, "tags": tags}),
    )
    .await
}

fn titles(r: &crate::support::TestResponse) -> Vec<String> {
    r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect()
}

api_test!(
    async fn editors_write_posts_with_a_slug_rendered_html_and_normalized_tags(app) {
        let editor = app.editor().await;
        let viewer = app.viewer("viewer@example.com").await;
        let body = json!({"title": "Hello, World!", "content": "# Hi\n\nSome **bold** text.", "published": true, "tags": [" Rust ", "rust", "Web"]});
        let anonymous = app.post("/api/v1/posts", None, body.clone()).await;
        anonymous.assert_error(401, "Unauthorized", "No token provided");
        anonymous.assert_code("no_token");
        app.post("/api/v1/posts", Some(&viewer.token), body.clone())
            .await
            .assert_error(403, "Forbidden", "Insufficient permissions");
        let post = write(&app, &editor, body).await;
        assert_eq!(post["slug"], "hello-world");
        assert_eq!(post["content"], "# Hi\n\nSome **bold** text.");
        assert_eq!(post["contentHtml"], "<h1>Hi</h1>\n<p>Some <strong>bold</strong> text.</p>\n");
        assert_eq!(post["excerpt"], "Hi Some bold text.");
        assert_eq!(post["tags"], json!(["rust", "web"]));
        assert_eq!(post["author"]["id"], editor.id.as_str());
        assert_eq!(post["published"], true);
        assert!(post["publishedAt"].is_string());
        let draft = write(&app, &editor, json!({"title": "Draft", "content": "x"})).await;
        assert_eq!(draft["published"], false);
        assert_eq!(draft["publishedAt"], Value::Null);
    }
);

api_test!(
    async fn post_input_is_validated(app) {
        let editor = app.editor().await;
        for (body, field) in [
            (json!({"content": "x"}), "title"),
            (json!({"title": " ", "content": "x"}), "title"),
            (json!({"title": "T", "content": "  "}), "content"),
            (json!({"title": "T", "content": "x", "slug": "Not A Slug"}), "slug"),
            (json!({"title": "T", "content": "x", "slug": "0195f3a2-7b1c-7d4e-8f90-123456789abc"}), "slug"),
            (json!({"title": "T", "content": "x", "tags": (0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()}), "tags"),
            (json!({"title": "T", "content": "x", "coverImageKey": "../etc/passwd"}), "coverImageKey"),
            (json!({"title": "T", "content": "x", "author": "me"}), "author"),
        ] {
            let r = app.post("/api/v1/posts", Some(&editor.token), body.clone()).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), [field], "{body}");
        }
    }
);

api_test!(
    async fn generated_slugs_get_suffixes_and_a_taken_explicit_slug_is_a_conflict(app) {
        let editor = app.editor().await;
        let slugs: Vec<String> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                let p = write(&app, &editor, json!({"title": "Same Title", "content": "x"})).await;
                v.push(p["slug"].as_str().unwrap().to_owned());
            }
            v
        };
        assert_eq!(slugs, ["same-title", "same-title-2", "same-title-3"]);
        let taken = app.post("/api/v1/posts", Some(&editor.token), json!({"title": "Other", "content": "x", "slug": "same-title"})).await;
        taken.assert_error(409, "Conflict", "Slug already exists");
        taken.assert_code("slug_taken");
        let explicit = write(&app, &editor, json!({"title": "Other", "content": "x", "slug": "my-own"})).await;
        assert_eq!(explicit["slug"], "my-own");
    }
);

api_test!(
    async fn a_post_is_found_by_id_or_slug_and_a_new_title_keeps_its_slug(app) {
        let editor = app.editor().await;
        let post = publish(&app, &editor, "First Title", "x", &[]).await;
        let id = post["id"].as_str().unwrap();
        assert_eq!(app.get(&format!("/api/v1/posts/{id}"), None).await.body["slug"], "first-title");
        assert_eq!(app.get("/api/v1/posts/first-title", None).await.body["id"], id);
        let renamed = app
            .call(Method::PATCH, "/api/v1/posts/first-title", Some(&editor.token), Some(json!({"title": "Second Title"})))
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        assert_eq!(renamed.body["title"], "Second Title");
        assert_eq!(renamed.body["slug"], "first-title");
        let moved = app
            .call(Method::PATCH, &format!("/api/v1/posts/{id}"), Some(&editor.token), Some(json!({"slug": "second-title"})))
            .await;
        assert_eq!(moved.body["slug"], "second-title");
        app.get("/api/v1/posts/first-title", None).await.assert_error(404, "NotFound", "Post not found");
        let replaced = app
            .call(Method::PUT, &format!("/api/v1/posts/{id}"), Some(&editor.token), Some(json!({"title": "Third", "content": "new *text*", "tags": ["b", "a"]})))
            .await;
        assert_eq!(replaced.body["contentHtml"], "<p>new <em>text</em></p>\n");
        assert_eq!(replaced.body["tags"], json!(["a", "b"]));
        assert_eq!(replaced.body["published"], true);
    }
);

api_test!(
    async fn only_the_author_or_an_admin_changes_or_deletes_a_post(app) {
        let author = app.user_with_role("author@example.com", "editor").await;
        let other = app.user_with_role("other@example.com", "editor").await;
        let viewer = app.viewer("viewer@example.com").await;
        let admin = app.admin().await;
        let post = publish(&app, &author, "Mine", "x", &[]).await;
        let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());
        for token in [&other.token, &viewer.token] {
            app.call(Method::PATCH, &path, Some(token), Some(json!({"title": "Hijacked"})))
                .await
                .assert_error(403, "Forbidden", "Can only edit your own resources");
            app.call(Method::DELETE, &path, Some(token), None)
                .await
                .assert_error(403, "Forbidden", "Can only edit your own resources");
        }
        app.call(Method::PATCH, &path, None, Some(json!({"title": "x"})))
            .await
            .assert_error(401, "Unauthorized", "No token provided");
        let by_admin = app.call(Method::PATCH, &path, Some(&admin.token), Some(json!({"title": "Edited by admin"}))).await;
        assert_eq!(by_admin.status, 200);
        assert_eq!(by_admin.body["author"]["id"], author.id.as_str());
        assert_eq!(app.call(Method::DELETE, &path, Some(&author.token), None).await.status, 204);
        app.get(&path, None).await.assert_error(404, "NotFound", "Post not found");
    }
);

api_test!(
    async fn drafts_are_seen_only_by_their_author_editors_and_admins(app) {
        let author = app.user_with_role("author@example.com", "editor").await;
        let draft = write(&app, &author, json!({"title": "Secret plan", "content": "The unicorn launch", "tags": ["hidden"]})).await;
        publish(&app, &author, "Public", "Hello", &[]).await;
        let path = format!("/api/v1/posts/{}", draft["slug"].as_str().unwrap());
        let viewer = app.viewer("viewer@example.com").await;
        app.get(&path, None).await.assert_error(404, "NotFound", "Post not found");
        app.get(&path, Some(&viewer.token)).await.assert_error(404, "NotFound", "Post not found");
        assert_eq!(app.get(&path, Some(&author.token)).await.status, 200);
        let other_editor = app.user_with_role("editor2@example.com", "editor").await;
        assert_eq!(app.get(&path, Some(&other_editor.token)).await.status, 200);
        let admin = app.admin().await;
        assert_eq!(app.get(&path, Some(&admin.token)).await.status, 200);

        let list = app.get("/api/v1/posts", Some(&admin.token)).await;
        assert_eq!(titles(&list), ["Public"]);
        assert_eq!(app.get("/api/v1/posts?search=unicorn", None).await.body["meta"]["total"], 0);
        assert_eq!(app.get("/api/v1/tags", None).await.body["data"], json!([]));
        let v2 = app.get(&format!("/api/v2/users/{}", author.id), Some(&viewer.token)).await;
        let v2_titles: Vec<&str> = v2.body["posts"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(v2_titles, ["Public"]);
        app.get(&format!("{path}/comments"), None).await.assert_error(404, "NotFound", "Post not found");
        app.get(&path, Some("not-a-token")).await.assert_error(401, "Unauthorized", "Invalid or expired token");
    }
);

/// The attributes of a tag's inside (`a href="x" rel="y z"`), as (name, value).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut rest = tag
        .trim_end_matches('/')
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r)
        .trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        rest = rest[end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(quoted) = after.strip_prefix('"') {
                let close = quoted.find('"').unwrap_or(quoted.len());
                value = quoted[..close].to_owned();
                rest = quoted.get(close + 1..).unwrap_or("").trim_start();
            } else {
                let close = after.find(char::is_whitespace).unwrap_or(after.len());
                value = after[..close].to_owned();
                rest = after[close..].trim_start();
            }
        }
        out.push((name, value));
    }
    out
}

api_test!(
    async fn xss_payloads_never_reach_the_rendered_html(app) {
        let editor = app.editor().await;
        let payloads = [
            "<script>alert('xss')</script>",
            "<img src=x onerror=\"alert(1)\">",
            "[click me](javascript:alert(document.cookie))",
            "<a href=\"jAvAsCrIpT:alert(1)\">x</a>",
            "<svg/onload=alert(1)>",
            "<iframe src=\"javascript:alert(1)\"></iframe>",
            "<div onmouseover=\"alert(1)\">hover</div>",
            "![x](javascript:alert(1))",
            "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
            "<a href=\"&#106;avascript:alert(1)\">entity</a>",
        ];
        let content = payloads.join("\n\n");
        let post = publish(&app, &editor, "XSS", &content, &[]).await;
        let html = post["contentHtml"].as_str().unwrap().to_lowercase();
        // Text is escaped (`&lt;`), so every `<` in the output opens a real element.
        for tag in html.split('<').skip(1).map(|rest| rest.split('>').next().unwrap_or_default()) {
            let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default();
            assert!(
                ["p", "a", "img", "div", "strong", "em"].contains(&name),
                "element <{tag}> survived in {html}"
            );
            for (attr_name, _) in attributes(tag) {
                assert!(!attr_name.starts_with("on"), "event handler in <{tag}>");
                assert!(["src", "alt", "href", "rel", "title"].contains(&attr_name.as_str()), "attribute {attr_name} in <{tag}>");
            }
            assert!(!tag.contains("javascript:"), "javascript: URL in <{tag}>");
        }
        // The Markdown is kept as written, for editing.
        assert_eq!(post["content"], content);
    }
);

api_test!(
    async fn lists_page_by_offset_filter_by_tag_and_author_and_sort(app) {
        let ann = app.user_with_role("ann@example.com", "editor").await;
        let bob = app.user_with_role("bob@example.com", "editor").await;
        publish(&app, &ann, "Alpha", "a", &["rust"]).await;
        publish(&app, &bob, "Bravo", "b", &["rust", "web"]).await;
        publish(&app, &ann, "Charlie", "c", &["web"]).await;
        let newest = app.get("/api/v1/posts?limit=2", None).await;
        assert_eq!(titles(&newest), ["Charlie", "Bravo"]);
        assert_eq!(newest.body["meta"]["total"], 3);
        assert_eq!(newest.body["meta"]["totalPages"], 2);
        assert_eq!(newest.body["meta"]["page"], 1);
        let item = &newest.body["data"][1];
        assert_eq!(item["tags"], json!(["rust", "web"]));
        assert_eq!(item["commentCount"], 0);
        assert_eq!(item["author"]["id"], bob.id.as_str());
        assert!(item.get("content").is_none(), "lists carry no content");
        assert_eq!(titles(&app.get("/api/v1/posts?page=2&limit=2", None).await), ["Alpha"]);
        assert_eq!(titles(&app.get("/api/v1/posts?tag=RUST", None).await), ["Bravo", "Alpha"]);
        assert_eq!(titles(&app.get(&format!("/api/v1/posts?author={}", ann.id), None).await), ["Charlie", "Alpha"]);
        assert_eq!(titles(&app.get("/api/v1/posts?sort=title", None).await), ["Alpha", "Bravo", "Charlie"]);
        assert_eq!(titles(&app.get("/api/v1/posts?sort=-title", None).await), ["Charlie", "Bravo", "Alpha"]);
        assert_eq!(titles(&app.get("/api/v1/posts?sort=createdAt", None).await), ["Alpha", "Bravo", "Charlie"]);
        for (query, field) in [("sort=views", "sort"), ("limit=0", "limit"), ("cursor=%%%", "cursor"), ("cursor=abc&page=2", "cursor"), ("author=me", "author")] {
            let r = app.get(&format!("/api/v1/posts?{query}"), None).await;
            r.assert_error(400, "ValidationError", "Validation failed");
            assert_eq!(r.error_fields(), [field], "{query}");
        }
    }
);

api_test!(
    async fn cursor_pages_walk_every_post_once_even_while_posts_are_added(app) {
        let editor = app.editor().await;
        for i in 0..7 {
            publish(&app, &editor, &format!("Post {i}"), "x", &[]).await;
        }
        let mut seen: Vec<String> = Vec::new();
        let first = app.get("/api/v1/posts?limit=3", None).await;
        seen.extend(titles(&first));
        let mut cursor = first.body["meta"]["nextCursor"].as_str().map(str::to_owned);
        let mut added = 0;
        while let Some(c) = cursor {
            // New posts land at the front; they must not shift or repeat what follows.
            publish(&app, &editor, &format!("Late {added}"), "x", &[]).await;
            added += 1;
            let page = app.get(&format!("/api/v1/posts?limit=3&cursor={c}"), None).await;
            assert_eq!(page.status, 200, "{}", page.text);
            assert!(page.body["meta"].get("total").is_none());
            seen.extend(titles(&page));
            cursor = page.body["meta"]["nextCursor"].as_str().map(str::to_owned);
        }
        let expected: Vec<String> = (0..7).rev().map(|i| format!("Post {i}")).collect();
        assert_eq!(seen, expected);

        // Title order pages too.
        let a = app.get("/api/v1/posts?sort=title&limit=4", None).await;
        let next = a.body["meta"]["nextCursor"].as_str().unwrap();
        let b = app.get(&format!("/api/v1/posts?sort=title&limit=4&cursor={next}"), None).await;
        let mut all = titles(&a);
        all.extend(titles(&b));
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        // A createdAt cursor does not fit a title sort.
        let mixed = app.get(&format!("/api/v1/posts?cursor={}", a.body["meta"]["nextCursor"].as_str().unwrap()), None).await;
        mixed.assert_error(400, "ValidationError", "Validation failed");
    }
);

api_test!(
    async fn a_list_costs_the_same_number_of_queries_for_2_posts_as_for_20(app) {
        let editor = app.editor().await;
        let commenter = app.viewer("commenter@example.com").await;
        for i in 0..20 {
            let post = publish(&app, &editor, &format!("Post {i}"), "x", &["t1", &format!("t{}", i % 3)]).await;
            let path = format!("/api/v1/posts/{}/comments", post["id"].as_str().unwrap());
            app.post(&path, Some(&commenter.token), json!({"content": "nice"})).await;
        }
        let count = |uri: String| {
            let app = &app;
            async move {
                let before = app.db.statements();
                let r = app.get(&uri, None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                assert!(r.body["data"].as_array().unwrap().iter().all(|p| p["commentCount"] == 1 && !p["tags"].as_array().unwrap().is_empty()));
                app.db.statements() - before
            }
        };
        let two = count("/api/v1/posts?limit=2".to_owned()).await;
        let twenty = count("/api/v1/posts?limit=20".to_owned()).await;
        assert_eq!(two, twenty, "2 posts took {two} statements, 20 took {twenty}");
        assert!(twenty <= 4, "{twenty} statements for one list");
        let keyset_two = count("/api/v1/posts?limit=2&cursor=".to_owned() + &encode_first(&app).await).await;
        assert!(keyset_two <= 3, "{keyset_two}");
    }
);

/// A cursor from the first page, to measure a keyset page.
async fn encode_first(app: &TestApp) -> String {
    let page = app.get("/api/v1/posts?limit=1", None).await;
    page.body["meta"]["nextCursor"].as_str().unwrap().to_owned()
}

/// The same corpus on both databases; each query must find the same posts on each.
const CORPUS: &[(&str, &str)] = &[
    (
        "Running a Rust web server",
        "Axum and Tokio make a fast web server.",
    ),
    (
        "Baking sourdough bread",
        "Flour, water, salt and patience. The starter runs the show.",
    ),
    (
        "Rust ownership explained",
        "Borrowing and lifetimes, without tears.",
    ),
    (
        "Gardening notes",
        "Tomatoes need sun; the web of roots needs water.",
    ),
    (
        "PostgreSQL full-text search",
        "tsvector, GIN indexes and ranking in the database.",
    ),
];

api_test!(
    async fn search_finds_the_same_posts_on_both_databases_ranked_title_first(app) {
        let editor = app.editor().await;
        for (title, content) in CORPUS {
            publish(&app, &editor, title, content, &[]).await;
        }
        let search = |q: &str| {
            let uri = format!("/api/v1/posts?search={q}");
            let app = &app;
            async move {
                let r = app.get(&uri, None).await;
                assert_eq!(r.status, 200, "{}", r.text);
                r
            }
        };
        let mut rust = titles(&search("rust").await);
        rust.sort();
        assert_eq!(rust, ["Running a Rust web server", "Rust ownership explained"]);
        // Stemming: "run" finds "Running" and "runs".
        let mut run = titles(&search("run").await);
        run.sort();
        assert_eq!(run, ["Baking sourdough bread", "Running a Rust web server"]);
        // Every term must match; stop words and punctuation are ignored.
        assert_eq!(titles(&search("the%20rust%20web!").await), ["Running a Rust web server"]);
        // A title match outranks a content match.
        assert_eq!(titles(&search("web").await)[0], "Running a Rust web server");
        assert_eq!(titles(&search("water").await).len(), 2);
        let nothing = search("the").await;
        assert_eq!(nothing.body["meta"]["total"], 0);
        assert_eq!(search("tomatoes").await.body["meta"]["total"], 1);
        let paged = search("rust&limit=1&page=2").await;
        assert_eq!(paged.body["meta"]["total"], 2);
        assert_eq!(titles(&paged).len(), 1);
        app.get("/api/v1/posts?search=rust&cursor=abc", None)
            .await
            .assert_error(400, "ValidationError", "Validation failed");
    }
);

api_test!(
    async fn search_follows_edits_and_deletions(app) {
        let editor = app.editor().await;
        let post = publish(&app, &editor, "Original", "About zebras", &[]).await;
        let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());
        assert_eq!(app.get("/api/v1/posts?search=zebras", None).await.body["meta"]["total"], 1);
        app.call(Method::PATCH, &path, Some(&editor.token), Some(json!({"content": "About giraffes"}))).await;
        assert_eq!(app.get("/api/v1/posts?search=zebras", None).await.body["meta"]["total"], 0);
        assert_eq!(app.get("/api/v1/posts?search=giraffes", None).await.body["meta"]["total"], 1);
        app.call(Method::PATCH, &path, Some(&editor.token), Some(json!({"published": false}))).await;
        assert_eq!(app.get("/api/v1/posts?search=giraffes", None).await.body["meta"]["total"], 0);
        app.call(Method::DELETE, &path, Some(&editor.token), None).await;
        assert_eq!(app.get("/api/v1/posts?search=giraffes", None).await.body["meta"]["total"], 0);
    }
);

api_test!(
    async fn a_draft_is_found_by_search_only_once_published_and_pages_of_equal_ranks_hold_every_match_once(app, |c| c.search_cache_ttl = std::time::Duration::ZERO) {
        let editor = app.editor().await;
        let total = |q: &'static str| {
            let app = &app;
            async move { app.get(&format!("/api/v1/posts?search={q}"), None).await.body["meta"]["total"].clone() }
        };
        let draft = write(&app, &editor, json!({"title": "Quiet", "content": "About okapis", "published": false})).await;
        assert_eq!(total("okapis").await, 0);
        let path = format!("/api/v1/posts/{}", draft["id"].as_str().unwrap());
        app.call(Method::PATCH, &path, Some(&editor.token), Some(json!({"published": true}))).await;
        assert_eq!(total("okapis").await, 1);

        // Seven posts with the very same text rank equally: paging by three walks each once.
        let mut written = Vec::new();
        for i in 0..7 {
            let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &[] };
            written.push(publish(&app, &editor, &format!("Same {i}"), "Tapirs everywhere", tags).await["title"].as_str().unwrap().to_owned());
        }
        let mut seen = Vec::new();
        for page in 1..=3 {
            let r = app.get(&format!("/api/v1/posts?search=tapirs&limit=3&page={page}"), None).await;
            assert_eq!(r.body["meta"]["total"], 7);
            seen.extend(titles(&r));
        }
        seen.sort();
        written.sort();
        assert_eq!(seen, written);
        // A page past the last match is empty and still says how many posts match.
        let past = app.get("/api/v1/posts?search=tapirs&limit=3&page=4", None).await;
        assert_eq!(past.status, axum::http::StatusCode::OK);
        assert_eq!(past.body["meta"]["total"], 7);
        assert!(titles(&past).is_empty());
        // With another filter too, only the matching posts are counted and listed.
        let even = app.get("/api/v1/posts?search=tapirs&tag=even&limit=3&page=2", None).await;
        assert_eq!(even.body["meta"]["total"], 4);
        assert_eq!(titles(&even).len(), 1);
    }
);

api_test!(
    async fn comments_are_added_listed_oldest_first_and_deleted_by_the_right_people(app) {
        let author = app.user_with_role("author@example.com", "editor").await;
        let post = publish(&app, &author, "Talk", "x", &[]).await;
        let comments = format!("/api/v1/posts/{}/comments", post["slug"].as_str().unwrap());
        let ann = app.viewer("ann@example.com").await;
        let bob = app.viewer("bob@example.com").await;
        app.post(&comments, None, json!({"content": "hi"})).await.assert_error(401, "Unauthorized", "No token provided");
        let blank = app.post(&comments, Some(&ann.token), json!({"content": "  "})).await;
        assert_eq!(blank.error_fields(), ["content"]);
        let mut ids = Vec::new();
        for (who, text) in [(&ann, "first"), (&bob, "second"), (&ann, "third")] {
            let r = app.post(&comments, Some(&who.token), json!({"content": text})).await;
            assert_eq!(r.status, 201, "{}", r.text);
            assert_eq!(r.body["author"]["id"], who.id.as_str());
            ids.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let page = app.get(&format!("{comments}?limit=2"), None).await;
        let texts: Vec<&str> = page.body["data"].as_array().unwrap().iter().map(|c| c["content"].as_str().unwrap()).collect();
        assert_eq!(texts, ["first", "second"]);
        let next = page.body["meta"]["nextCursor"].as_str().unwrap();
        let rest = app.get(&format!("{comments}?limit=2&cursor={next}"), None).await;
        assert_eq!(rest.body["data"][0]["content"], "third");
        assert_eq!(rest.body["meta"]["nextCursor"], Value::Null);
        app.get(&format!("{comments}?cursor=bogus"), None).await.assert_error(400, "ValidationError", "Validation failed");
        let listed = app.get("/api/v1/posts", None).await;
        assert_eq!(listed.body["data"][0]["commentCount"], 3);

        let delete = |id: &str| format!("/api/v1/comments/{id}");
        app.call(Method::DELETE, &delete(&ids[0]), Some(&bob.token), None)
            .await
            .assert_error(403, "Forbidden", "Can only edit your own resources");
        assert_eq!(app.call(Method::DELETE, &delete(&ids[0]), Some(&ann.token), None).await.status, 204);
        assert_eq!(app.call(Method::DELETE, &delete(&ids[1]), Some(&author.token), None).await.status, 204);
        let admin = app.admin().await;
        assert_eq!(app.call(Method::DELETE, &delete(&ids[2]), Some(&admin.token), None).await.status, 204);
        app.call(Method::DELETE, &delete(&ids[2]), Some(&admin.token), None).await.assert_error(404, "NotFound", "Comment not found");
    }
);

api_test!(
    async fn a_draft_takes_no_comments(app) {
        let author = app.user_with_role("author@example.com", "editor").await;
        let draft = write(&app, &author, json!({"title": "Draft", "content": "x"})).await;
        let path = format!("/api/v1/posts/{}/comments", draft["id"].as_str().unwrap());
        let viewer = app.viewer("viewer@example.com").await;
        app.post(&path, Some(&viewer.token), json!({"content": "early"})).await.assert_error(404, "NotFound", "Post not found");
        app.post(&path, Some(&author.token), json!({"content": "early"}))
            .await
            .assert_error(409, "Conflict", "Comments open when the post is published");
    }
);

api_test!(
    async fn deleting_a_post_takes_its_comments_and_tag_links(app) {
        let editor = app.editor().await;
        let doomed = publish(&app, &editor, "Doomed", "x", &["gone", "kept"]).await;
        publish(&app, &editor, "Stays", "x", &["kept"]).await;
        let viewer = app.viewer("viewer@example.com").await;
        let comment = app
            .post(&format!("/api/v1/posts/{}/comments", doomed["id"].as_str().unwrap()), Some(&viewer.token), json!({"content": "bye"}))
            .await;
        let tags = app.get("/api/v1/tags", None).await;
        assert_eq!(tags.body["data"], json!([{"name": "kept", "postCount": 2}, {"name": "gone", "postCount": 1}]));
        app.call(Method::DELETE, &format!("/api/v1/posts/{}", doomed["id"].as_str().unwrap()), Some(&editor.token), None).await;
        assert_eq!(app.get("/api/v1/tags", None).await.body["data"], json!([{"name": "kept", "postCount": 1}]));
        app.call(Method::DELETE, &format!("/api/v1/comments/{}", comment.body["id"].as_str().unwrap()), Some(&viewer.token), None)
            .await
            .assert_error(404, "NotFound", "Comment not found");
    }
);

api_test!(
    async fn version_2_of_a_user_lists_their_published_posts_newest_first(app) {
        let editor = app.editor().await;
        for title in ["One", "Two", "Three"] {
            publish(&app, &editor, title, "x", &[]).await;
        }
        let r = app.get(&format!("/api/v2/users/{}", editor.id), Some(&editor.token)).await;
        let posts: Vec<&str> = r.body["posts"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(posts, ["Three", "Two", "One"]);
        assert_eq!(r.body["posts"][0]["slug"], "three");
    }
);

// ---- the in-process caches of posts and post lists ----

/// Reads `uri` twice, so that the second answer comes from the cache when there is one.
async fn read_twice(app: &TestApp, uri: &str, token: Option<&str>) -> crate::support::TestResponse {
    let first = app.get(uri, token).await;
    let second = app.get(uri, token).await;
    assert_eq!(first.status, second.status, "{uri}: {}", second.text);
    assert_eq!(first.body, second.body, "{uri}");
    second
}

async fn patch_post(app: &TestApp, token: &str, post: &str, body: Value) -> Value {
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/posts/{post}"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

api_test!(
    async fn an_edited_post_is_served_fresh_right_after_the_edit(app) {
        let editor = app.editor().await;
        let post = publish(&app, &editor, "Before", "old *words*", &["old"]).await;
        let id = post["id"].as_str().unwrap();
        for uri in ["/api/v1/posts/before".to_owned(), format!("/api/v1/posts/{id}")] {
            assert_eq!(read_twice(&app, &uri, None).await.body["title"], "Before");
        }

        patch_post(&app, &editor.token, "before", json!({"title": "After", "content": "new *words*", "tags": ["new"]})).await;
        for uri in ["/api/v1/posts/before".to_owned(), format!("/api/v1/posts/{id}")] {
            let r = app.get(&uri, None).await;
            assert_eq!(r.body["title"], "After", "{uri}");
            assert_eq!(r.body["content"], "new *words*", "{uri}");
            assert_eq!(r.body["contentHtml"], "<p>new <em>words</em></p>\n", "{uri}");
            assert_eq!(r.body["tags"], json!(["new"]), "{uri}");
        }

        // A new slug: the old one stops resolving at once, the new one resolves.
        read_twice(&app, "/api/v1/posts/before", None).await;
        patch_post(&app, &editor.token, id, json!({"slug": "moved"})).await;
        app.get("/api/v1/posts/before", None).await.assert_error(404, "NotFound", "Post not found");
        assert_eq!(read_twice(&app, "/api/v1/posts/moved", None).await.body["id"], id);
        assert_eq!(app.get(&format!("/api/v1/posts/{id}"), None).await.body["slug"], "moved");

        // Deleted: gone by slug and by id.
        let r = app.call(Method::DELETE, &format!("/api/v1/posts/{id}"), Some(&editor.token), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        app.get("/api/v1/posts/moved", None).await.assert_error(404, "NotFound", "Post not found");
        app.get(&format!("/api/v1/posts/{id}"), None).await.assert_error(404, "NotFound", "Post not found");
        assert_eq!(app.get("/api/v1/posts", None).await.body["meta"]["total"], 0);
    }
);

api_test!(
    async fn a_new_post_appears_in_the_cached_list_at_once(app) {
        let editor = app.editor().await;
        publish(&app, &editor, "One", "x", &["t"]).await;
        let lists = ["/api/v1/posts", "/api/v1/posts?tag=t", "/api/v1/posts?limit=5&sort=title", "/api/v1/posts?search=x"];
        for uri in lists {
            assert_eq!(titles(&read_twice(&app, uri, None).await), ["One"], "{uri}");
        }
        // A draft stays out of every list.
        write(&app, &editor, json!({"title": "Draft", "content": "x", "tags": ["t"]})).await;
        for uri in lists {
            assert_eq!(titles(&app.get(uri, None).await), ["One"], "{uri}");
        }
        publish(&app, &editor, "Two", "x", &["t"]).await;
        assert_eq!(titles(&app.get("/api/v1/posts", None).await), ["Two", "One"]);
        assert_eq!(app.get("/api/v1/posts", None).await.body["meta"]["total"], 2);
        assert_eq!(titles(&app.get("/api/v1/posts?tag=t", None).await), ["Two", "One"]);
        assert_eq!(titles(&app.get("/api/v1/posts?limit=5&sort=title", None).await), ["One", "Two"]);
        assert_eq!(titles(&app.get("/api/v1/posts?search=x", None).await).len(), 2);
        // The same through GraphQL, which shares the cache.
        let r = app.post("/graphql", None, json!({"query": "{ posts { title } }"})).await;
        assert_eq!(r.body["data"]["posts"], json!([{"title": "Two"}, {"title": "One"}]), "{}", r.text);
    }
);

api_test!(
    async fn unpublishing_a_post_removes_it_from_the_cached_list_and_page(app) {
        let editor = app.editor().await;
        let reader = app.viewer("reader@example.com").await;
        publish(&app, &editor, "Stays", "x", &[]).await;
        let post = publish(&app, &editor, "Goes", "x", &[]).await;
        let id = post["id"].as_str().unwrap();
        assert_eq!(titles(&read_twice(&app, "/api/v1/posts", None).await), ["Goes", "Stays"]);
        for token in [None, Some(reader.token.as_str())] {
            assert_eq!(read_twice(&app, "/api/v1/posts/goes", token).await.body["published"], true);
            read_twice(&app, &format!("/api/v1/posts/{id}"), token).await;
        }

        assert_eq!(titles(&read_twice(&app, "/api/v1/posts?search=goes", None).await), ["Goes"]);

        patch_post(&app, &editor.token, "goes", json!({"published": false})).await;
        assert_eq!(titles(&app.get("/api/v1/posts", None).await), ["Stays"]);
        assert_eq!(titles(&app.get("/api/v1/posts?search=goes", None).await), Vec::<String>::new());
        assert_eq!(app.get("/api/v1/posts", None).await.body["meta"]["total"], 1);
        for token in [None, Some(reader.token.as_str())] {
            app.get("/api/v1/posts/goes", token).await.assert_error(404, "NotFound", "Post not found");
            app.get(&format!("/api/v1/posts/{id}"), token).await.assert_error(404, "NotFound", "Post not found");
        }
        // Its author still sees the draft.
        assert_eq!(app.get("/api/v1/posts/goes", Some(&editor.token)).await.body["published"], false);

        patch_post(&app, &editor.token, id, json!({"published": true})).await;
        assert_eq!(titles(&app.get("/api/v1/posts", None).await), ["Goes", "Stays"]);
        assert_eq!(app.get("/api/v1/posts/goes", None).await.body["published"], true);
    }
);

api_test!(
    async fn a_draft_is_never_served_from_the_cache_to_a_reader(app) {
        let editor = app.editor().await;
        let reader = app.viewer("reader@example.com").await;
        let draft = write(&app, &editor, json!({"title": "Secret", "content": "x"})).await;
        let id = draft["id"].as_str().unwrap();
        // Its author reads it, more than once, by slug and by id.
        for uri in ["/api/v1/posts/secret".to_owned(), format!("/api/v1/posts/{id}")] {
            assert_eq!(read_twice(&app, &uri, Some(&editor.token)).await.body["title"], "Secret");
        }
        for uri in ["/api/v1/posts/secret".to_owned(), format!("/api/v1/posts/{id}")] {
            for token in [None, Some(reader.token.as_str())] {
                app.get(&uri, token).await.assert_error(404, "NotFound", "Post not found");
            }
            let r = app.post("/graphql", Some(&reader.token), json!({"query": format!("{{ post(idOrSlug: \"{uri}\") {{ title }} }}", uri = uri.trim_start_matches("/api/v1/posts/"))})).await;
            assert_eq!(r.body["data"]["post"], Value::Null, "{}", r.text);
        }
        assert_eq!(titles(&app.get("/api/v1/posts", None).await), Vec::<String>::new());
    }
);

api_test!(
    async fn comments_and_author_changes_show_in_the_cached_list_and_page_at_once(app) {
        let author = app.user_with_role("author@example.com", "editor").await;
        let commenter = app.viewer("commenter@example.com").await;
        let admin = app.admin().await;
        let post = publish(&app, &author, "Talked About", "x", &[]).await;
        let id = post["id"].as_str().unwrap();
        let count = |r: &crate::support::TestResponse| r.body["data"][0]["commentCount"].clone();
        assert_eq!(count(&read_twice(&app, "/api/v1/posts", None).await), 0);

        let comment = app.post(&format!("/api/v1/posts/{id}/comments"), Some(&commenter.token), json!({"content": "first"})).await;
        assert_eq!(comment.status, 201, "{}", comment.text);
        assert_eq!(count(&read_twice(&app, "/api/v1/posts", None).await), 1);
        let r = app.call(Method::DELETE, &format!("/api/v1/comments/{}", comment.body["id"].as_str().unwrap()), Some(&commenter.token), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert_eq!(count(&read_twice(&app, "/api/v1/posts", None).await), 0);

        // The author's name is part of the post and of the list.
        read_twice(&app, "/api/v1/posts/talked-about", None).await;
        let r = app.call(Method::PATCH, &format!("/api/v1/users/{}", author.id), Some(&author.token), Some(json!({"name": "Ada"}))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(app.get("/api/v1/posts/talked-about", None).await.body["author"]["name"], "Ada");
        assert_eq!(read_twice(&app, "/api/v1/posts", None).await.body["data"][0]["author"]["name"], "Ada");

        // Deleting the account deletes its posts.
        let r = app.call(Method::DELETE, &format!("/api/v1/users/{}", author.id), Some(&admin.token), None).await;
        assert_eq!(r.status, 204, "{}", r.text);
        app.get("/api/v1/posts/talked-about", None).await.assert_error(404, "NotFound", "Post not found");
        assert_eq!(app.get("/api/v1/posts", None).await.body["meta"]["total"], 0);
    }
);

/// The SQL statements one read of `uri` runs.
async fn statements_of(app: &TestApp, uri: &str) -> u64 {
    let before = app.db.statements();
    let r = app.get(uri, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.db.statements() - before
}

api_test!(
    async fn a_repeated_read_of_a_post_or_a_list_does_not_reach_the_database(app) {
        let editor = app.editor().await;
        publish(&app, &editor, "Hot", "x", &["t"]).await;
        for uri in ["/api/v1/posts/hot", "/api/v1/posts", "/api/v1/posts?tag=t&limit=3", "/api/v1/posts?search=hot"] {
            assert!(statements_of(&app, uri).await > 0, "{uri}: the first read goes to the database");
            assert_eq!(statements_of(&app, uri).await, 0, "{uri}: the second read is cached");
        }
    }
);

api_test!(
    async fn with_cache_lifetimes_of_zero_every_read_reaches_the_database(app, |c| { c.post_cache_ttl = std::time::Duration::ZERO; c.search_cache_ttl = std::time::Duration::ZERO; }) {
        let editor = app.editor().await;
        publish(&app, &editor, "Hot", "x", &["t"]).await;
        for uri in ["/api/v1/posts/hot", "/api/v1/posts", "/api/v1/posts?tag=t&limit=3", "/api/v1/posts?search=hot"] {
            for _ in 0..3 {
                assert!(statements_of(&app, uri).await > 0, "{uri}");
            }
        }
    }
);

api_test!(
    async fn a_write_through_another_instance_is_seen_once_the_ttl_runs_out(app, |c| c.post_cache_ttl = std::time::Duration::from_secs(1)) {
        let editor = app.editor().await;
        publish(&app, &editor, "Shared", "x", &[]).await;
        // A second instance over the same database, with caches of its own.
        let data_dir = tempfile::tempdir().unwrap();
        let config = inkcart::config::Config { data_dir: data_dir.path().to_path_buf(), ..crate::support::test_config() };
        let other = inkcart::build_app_with_clock(&config, app.db.db.clone(), app.clock.clone()).unwrap();
        let actor = inkcart_domain::Actor {
            id: inkcart_domain::UserId::from_uuid(editor.id.parse().unwrap()),
            role: inkcart_domain::Role::Editor,
        };

        let warmed = std::time::Instant::now();
        read_twice(&app, "/api/v1/posts/shared", None).await;
        read_twice(&app, "/api/v1/posts", None).await;
        let input = inkcart_app::blog::PostInput { title: Some("Changed Elsewhere".to_owned()), ..Default::default() };
        other.blog().update_post(actor, &inkcart_app::blog::post_key("shared"), input).await.unwrap();
        let post = app.get("/api/v1/posts/shared", None).await;
        let list = app.get("/api/v1/posts", None).await;
        if warmed.elapsed() < std::time::Duration::from_millis(900) {
            // This instance did not see the write: its copies are still alive.
            assert_eq!(post.body["title"], "Shared");
            assert_eq!(titles(&list), ["Shared"]);
        }
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        assert_eq!(app.get("/api/v1/posts/shared", None).await.body["title"], "Changed Elsewhere");
        assert_eq!(titles(&app.get("/api/v1/posts", None).await), ["Changed Elsewhere"]);
    }
);

api_test!(
    async fn posts_read_late_in_their_cache_life_are_reloaded_behind_their_readers_and_show_writes_made_elsewhere(app, |c| c.post_cache_ttl = std::time::Duration::from_secs(6)) {
        let editor = app.editor().await;
        publish(&app, &editor, "Renamed", "x", &["news"]).await;
        let hidden = publish(&app, &editor, "Hidden", "y", &[]).await;
        let hidden_uri = format!("/api/v1/posts/{}", hidden["id"].as_str().unwrap());
        let data_dir = tempfile::tempdir().unwrap();
        let config = inkcart::config::Config { data_dir: data_dir.path().to_path_buf(), ..crate::support::test_config() };
        let other = inkcart::build_app_with_clock(&config, app.db.db.clone(), app.clock.clone()).unwrap();
        let actor = inkcart_domain::Actor {
            id: inkcart_domain::UserId::from_uuid(editor.id.parse().unwrap()),
            role: inkcart_domain::Role::Editor,
        };

        // Cached by slug and by id; then changed through another instance, unseen here.
        let warmed = std::time::Instant::now();
        read_twice(&app, "/api/v1/posts/renamed", None).await;
        read_twice(&app, &hidden_uri, None).await;
        let retitle = inkcart_app::blog::PostInput { title: Some("Renamed Elsewhere".to_owned()), ..Default::default() };
        other.blog().update_post(actor, &inkcart_app::blog::post_key("renamed"), retitle).await.unwrap();
        let unpublish = inkcart_app::blog::PostInput { published: Some(false), ..Default::default() };
        other.blog().update_post(actor, &inkcart_app::blog::post_key(hidden["id"].as_str().unwrap()), unpublish).await.unwrap();

        // Past half their life, the copies are read again: served as they were, and reloaded
        // behind the readers (the post asked by slug first).
        tokio::time::sleep(std::time::Duration::from_millis(3050).saturating_sub(warmed.elapsed())).await;
        assert_eq!(app.get("/api/v1/posts/renamed", None).await.body["title"], "Renamed");
        assert_eq!(app.get(&hidden_uri, None).await.status, 200);
        // The unpublished post is forgotten by its reload, which ends after the other's.
        while app.get(&hidden_uri, None).await.status != axum::http::StatusCode::NOT_FOUND {
            // Well before the copies expire (6 s after they were read), so that only the
            // reload can have brought the change.
            assert!(warmed.elapsed() < std::time::Duration::from_secs(5), "the unpublished post is still served");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The renamed post was reloaded into the cache: served changed, without a query.
        let before = app.db.statements();
        let renamed = app.get("/api/v1/posts/renamed", None).await;
        assert_eq!(app.db.statements() - before, 0);
        assert_eq!(renamed.body["title"], "Renamed Elsewhere");
        assert_eq!(renamed.body["tags"], json!(["news"]));
    }
);

// ---- kept counts ----

/// The first page (up to 100 posts) of the list with `filter`: its total and its posts.
async fn listed(app: &TestApp, filter: &str) -> (u64, Vec<Value>) {
    let r = app
        .get(&format!("/api/v1/posts?page=1&limit=100{filter}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.body["meta"]["total"].as_u64().unwrap(),
        r.body["data"].as_array().unwrap().clone(),
    )
}

async fn expect_status(
    app: &TestApp,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let r = app.call(method, uri, Some(token), body).await;
    assert_eq!(r.status, status, "{uri}: {}", r.text);
    r.body
}

api_test!(
    async fn list_totals_and_comment_counts_stay_exact_under_concurrent_writes(app) {
        let ann = app.user_with_role("ann@example.com", "editor").await;
        let bob = app.user_with_role("bob@example.com", "editor").await;
        let dave = app.user_with_role("dave@example.com", "editor").await;
        let carol = app.viewer("carol@example.com").await;
        let admin = app.admin().await;
        const TAGS: [&str; 4] = ["red", "green", "blue", "cyan"];
        let tag = |i: usize| TAGS[i % TAGS.len()];
        let editors = [&ann, &bob];
        // The tags exist before the writers start (a draft carries them all).
        write(&app, &ann, json!({"title": "Palette", "content": "x", "tags": TAGS})).await;
        // Posts that stay published (their tags change, they take comments, one of them from
        // the account deleted below), and posts that are published and unpublished in turn.
        let (mut stable, mut flipping) = (Vec::new(), Vec::new());
        for i in 0..4 {
            let post = publish(&app, editors[i % 2], &format!("Stable {i}"), "x", &[tag(i)]).await;
            let id = post["id"].as_str().unwrap().to_owned();
            expect_status(&app, Method::POST, &format!("/api/v1/posts/{id}/comments"), &dave.token, Some(json!({"content": "from dave"})), 201).await;
            stable.push(id);
            let post = publish(&app, editors[i % 2], &format!("Flipping {i}"), "x", &[tag(i + 1), tag(i + 2)]).await;
            flipping.push(post["id"].as_str().unwrap().to_owned());
        }
        publish(&app, &dave, "Leaving", "x", &[tag(0)]).await;

        let writers = (0..32_usize).map(|i| {
            let (app, stable, flipping, carol, admin, dave) = (&app, &stable, &flipping, &carol, &admin, &dave);
            let author = editors[i % 2];
            async move {
                match i % 4 {
                    // A post of one's own: created, unpublished, republished with other tags,
                    // commented, and every other one deleted.
                    0 => {
                        let post = publish(app, author, &format!("Own {i}"), "x", &[tag(i), tag(i + 1)]).await;
                        let path = format!("/api/v1/posts/{}", post["id"].as_str().unwrap());
                        expect_status(app, Method::PATCH, &path, &author.token, Some(json!({"published": false})), 200).await;
                        expect_status(app, Method::PATCH, &path, &author.token, Some(json!({"published": true, "tags": [tag(i + 2)]})), 200).await;
                        expect_status(app, Method::POST, &format!("{path}/comments"), &carol.token, Some(json!({"content": "nice"})), 201).await;
                        if i % 8 == 0 {
                            expect_status(app, Method::DELETE, &path, &author.token, None, 204).await;
                        }
                    }
                    // A shared post published and unpublished in turn.
                    1 => {
                        let path = format!("/api/v1/posts/{}", flipping[i % flipping.len()]);
                        for step in 0..3 {
                            let published = (i / 4 + step) % 2 == 0;
                            expect_status(app, Method::PATCH, &path, &admin.token, Some(json!({"published": published})), 200).await;
                        }
                    }
                    // A published post's tags replaced, emptied, replaced.
                    2 => {
                        let path = format!("/api/v1/posts/{}", stable[i % stable.len()]);
                        for tags in [json!([tag(i), tag(i + 1)]), json!([]), json!([tag(i + 3)])] {
                            expect_status(app, Method::PATCH, &path, &admin.token, Some(json!({"tags": tags})), 200).await;
                        }
                    }
                    // An account deleted with its post and its comments.
                    _ if i == 3 => {
                        expect_status(app, Method::DELETE, &format!("/api/v1/users/{}", dave.id), &admin.token, None, 204).await;
                    }
                    // Comments on published posts, one of them deleted again.
                    _ => {
                        let mut ids = Vec::new();
                        for post in [&stable[i % stable.len()], &stable[(i + 1) % stable.len()]] {
                            let comment = expect_status(app, Method::POST, &format!("/api/v1/posts/{post}/comments"), &carol.token, Some(json!({"content": "hi"})), 201).await;
                            ids.push(comment["id"].as_str().unwrap().to_owned());
                        }
                        expect_status(app, Method::DELETE, &format!("/api/v1/comments/{}", ids[0]), &carol.token, None, 204).await;
                    }
                }
            }
        });
        futures::future::join_all(writers).await;

        // Each total is the number of posts the list itself finds.
        let (total, everything) = listed(&app, "").await;
        assert!(total > 0 && total < 100, "{total}");
        assert_eq!(total, everything.len() as u64);
        for author in [&ann, &bob, &dave, &carol] {
            let (total, posts) = listed(&app, &format!("&author={}", author.id)).await;
            assert_eq!(total, posts.len() as u64, "author {}", author.id);
        }
        assert_eq!(listed(&app, &format!("&author={}", dave.id)).await.0, 0);
        let tag_list = app.get("/api/v1/tags?limit=100", None).await;
        for name in TAGS.iter().chain(&["no-such-tag"]) {
            let (total, posts) = listed(&app, &format!("&tag={name}")).await;
            assert_eq!(total, posts.len() as u64, "tag {name}");
            let listed_count = tag_list.body["data"].as_array().unwrap().iter().find(|t| t["name"] == *name).map_or(0, |t| t["postCount"].as_u64().unwrap());
            assert_eq!(listed_count, total, "tag {name} in the tag list");
        }
        // Each summary's comment count is the number of comments the post lists.
        for post in &everything {
            let comments = app.get(&format!("/api/v1/posts/{}/comments?limit=100", post["id"].as_str().unwrap()), None).await;
            assert_eq!(comments.status, 200, "{}", comments.text);
            assert_eq!(post["commentCount"], comments.body["data"].as_array().unwrap().len(), "{}", post["title"]);
        }
    }
);
