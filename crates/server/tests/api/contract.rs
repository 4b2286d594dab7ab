//! The contract as documents: the OpenAPI document and the GraphQL schema are snapshots, so
//! every change to them is a reviewed diff; and every operation of API.md is documented.

#[test]
fn the_openapi_document_matches_its_snapshot() {
    let doc = serde_json::to_value(inkcart_http::openapi()).unwrap();
    insta::assert_json_snapshot!("openapi", doc);
}

#[test]
fn the_graphql_schema_matches_its_snapshot() {
    insta::assert_snapshot!("graphql_sdl", inkcart_http::graphql::sdl());
}

/// Every row of API.md's tables, as (method, path).
const API_MD: &[(&str, &str)] = &[
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("post", "/api/v1/users"),
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("post", "/api/v1/auth/logout-all"),
    ("get", "/api/v1/profile"),
    ("get", "/api/v1/users"),
    ("get", "/api/v1/users/{id}"),
    ("put", "/api/v1/users/{id}"),
    ("patch", "/api/v1/users/{id}"),
    ("delete", "/api/v1/users/{id}"),
    ("get", "/api/v2/users/{id}"),
    ("get", "/api/v1/posts"),
    ("get", "/api/v1/posts/{post}"),
    ("post", "/api/v1/posts"),
    ("put", "/api/v1/posts/{post}"),
    ("patch", "/api/v1/posts/{post}"),
    ("delete", "/api/v1/posts/{post}"),
    ("get", "/api/v1/posts/{post}/comments"),
    ("post", "/api/v1/posts/{post}/comments"),
    ("delete", "/api/v1/comments/{id}"),
    ("get", "/api/v1/tags"),
    ("post", "/api/v1/uploads"),
    ("get", "/files/{key}"),
    ("get", "/api/v1/products"),
    ("get", "/api/v1/products/{id}"),
    ("post", "/api/v1/products"),
    ("put", "/api/v1/products/{id}"),
    ("patch", "/api/v1/products/{id}"),
    ("delete", "/api/v1/products/{id}"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("post", "/api/v1/orders/{id}/pay"),
    ("post", "/api/v1/orders/{id}/cancel"),
    ("post", "/api/v1/orders/{id}/ship"),
    ("get", "/api/v1/reports/top-products"),
    ("get", "/api/v1/reports/sales"),
    ("post", "/graphql"),
];

#[test]
fn every_operation_of_the_contract_is_documented() {
    let doc = serde_json::to_value(inkcart_http::openapi()).unwrap();
    let mut missing = Vec::new();
    for (method, path) in API_MD {
        if doc["paths"][path][method].is_null() {
            missing.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn every_documented_error_answers_with_the_envelope() {
    let doc = serde_json::to_value(inkcart_http::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                // Readiness answers its checks, also when one fails (API.md "Health").
                let is_readiness = path == "/health/ready" && status == "503";
                if (status.starts_with('4') || status.starts_with('5')) && !is_readiness {
                    // A shared response (the rate limit's 429) is read where it is defined.
                    let response = match response["$ref"].as_str() {
                        Some(shared) => {
                            &doc["components"]["responses"]
                                [shared.trim_start_matches("#/components/responses/")]
                        }
                        None => response,
                    };
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

crate::api_test!(
    async fn a_token_that_is_not_valid_is_a_documented_401_wherever_it_is_refused(app) {
        // Every operation, with a token no server issued: where it answers 401 (optional-auth
        // reads included), the document must say so; nowhere may it be a 5xx.
        let doc = serde_json::to_value(inkcart_http::openapi()).unwrap();
        let id = "0193a4c2-0000-7000-8000-000000000000";
        let mut refused = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            let mut uri = String::new();
            for (n, part) in path.split('{').enumerate() {
                match part.split_once('}') {
                    Some((_, rest)) if n > 0 => uri.push_str(&format!("{id}{rest}")),
                    _ => uri.push_str(part),
                }
            }
            for (method, op) in item.as_object().unwrap() {
                let method: axum::http::Method = method.to_uppercase().parse().unwrap();
                let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH")
                    .then(|| serde_json::json!({}));
                let response = app.call(method.clone(), &uri, Some("not-a-token"), body).await;
                assert!(response.status.as_u16() < 500, "{method} {path}: {}", response.text);
                if response.status == 401 {
                    refused += 1;
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path} answers an invalid token with 401 but does not document it"
                    );
                }
            }
        }
        assert!(refused > 30, "only {refused} operations refused the token");
    }
);
