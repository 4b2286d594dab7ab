//! The reference server of the benchmarks: plain axum, no database, no middleware. It serves
//! from memory the JSON bodies that inkcart answered for the same requests (a manifest that
//! `bench/run` records), serializing each one per request as a handler that builds its
//! response would. Whatever it reaches on this machine is the ceiling for a dynamic JSON
//! response, and inkcart's numbers are reported as a share of it.
//!
//! Usage: `inkcart-bench-reference MANIFEST.json ADDRESS` (e.g. `127.0.0.1:3901`). The manifest
//! is a JSON array of `{"method": "GET", "path": "/api/v1/posts?limit=20", "status": 200,
//! "body": {...}}`; `path` includes the query string. A request with a body (POST) has it
//! parsed as JSON first, as a real handler would.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Canned {
    method: String,
    path: String,
    status: u16,
    body: Value,
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

type Answers = Arc<HashMap<(Method, String), Answer>>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(manifest), Some(address)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: inkcart-bench-reference MANIFEST.json ADDRESS");
    };
    let raw = std::fs::read(&manifest).with_context(|| format!("reading {manifest}"))?;
    let canned: Vec<Canned> = serde_json::from_slice(&raw).context("parsing the manifest")?;
    let mut answers = HashMap::with_capacity(canned.len());
    for c in canned {
        let method = Method::from_bytes(c.method.as_bytes()).context("a method")?;
        let status = StatusCode::from_u16(c.status).context("a status")?;
        answers.insert(
            (method, c.path),
            Answer {
                status,
                body: c.body,
            },
        );
    }
    let answers: Answers = Arc::new(answers);
    // The same runtime inkcart uses: multi-threaded, one worker per CPU it may run on.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(answers, &address))
}

async fn serve(answers: Answers, address: &str) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let answers = Arc::clone(&answers);
        async move { answer(&answers, method, &uri, &body) }
    });
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn answer(answers: &Answers, method: Method, uri: &Uri, body: &Bytes) -> Response {
    if !body.is_empty() && serde_json::from_slice::<Value>(body).is_err() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let Some(found) = answers.get(&(method, path)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match serde_json::to_vec(&found.body) {
        Ok(bytes) => (
            found.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
