//! Request rate limits at the edge: every request but the health checks is charged to the
//! budgets of its client address and, with a valid bearer token, of its user; sign-up, login,
//! refresh, password reset and email verification are charged to their own, stricter budgets
//! too. GraphQL mutations are charged field by field once the document is parsed
//! ([`charge_graphql`]), so that one request of many aliased mutations costs what as many
//! requests would.
//!
//! Answers carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until
//! the budget is whole again) for the tightest budget charged; a refused request is a 429
//! envelope with `Retry-After` as well.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, Response};
use axum::middleware::Next;
use axum::response::IntoResponse as _;
use inkcart_app::ports::Verdict;
use inkcart_app::ratelimit::RateClass;
use inkcart_domain::Actor;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, bearer_token};

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Whole seconds, rounded up (a client told 0 would retry at once).
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The stricter budget a REST route is charged to, besides the general one.
pub fn class_of(method: &Method, path: &str) -> Option<RateClass> {
    if method != Method::POST {
        return None;
    }
    match path {
        "/api/v1/users" => Some(RateClass::SignUp),
        "/api/v1/auth/login" => Some(RateClass::Login),
        "/api/v1/auth/refresh" => Some(RateClass::Refresh),
        "/api/v1/auth/password-reset/request" | "/api/v1/auth/password-reset/confirm" => {
            Some(RateClass::PasswordReset)
        }
        "/api/v1/auth/verify-email/request" | "/api/v1/auth/verify-email/confirm" => {
            Some(RateClass::Verification)
        }
        _ => None,
    }
}

/// The budget a GraphQL root mutation field is charged to, besides the general one.
pub fn class_of_mutation(field: &str) -> RateClass {
    match field {
        "createUser" => RateClass::SignUp,
        _ => RateClass::General,
    }
}

fn set_headers(response: &mut Response<Body>, verdict: &Verdict) {
    let headers = response.headers_mut();
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(verdict.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(verdict.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(ceil_secs(verdict.reset_after)),
    );
}

/// Adds the 429 that any route but the health checks may answer to every operation of `doc`,
/// as the shared response `TooManyRequests` (and its `RateLimit-*` headers to the 429s that
/// routes document themselves).
pub fn document(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type,
    };
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .build(),
            ))
            .description(Some(description))
            .build()
    };
    let headers = [
        (
            "ratelimit-limit",
            header("Requests the tightest budget charged allows at once"),
        ),
        (
            "ratelimit-remaining",
            header("Requests left in that budget"),
        ),
        (
            "ratelimit-reset",
            header("Seconds until that budget is whole again"),
        ),
    ];
    let mut too_many = ResponseBuilder::new()
        .description("A rate limit is reached")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .header("retry-after", header("Seconds to wait before trying again"));
    for (name, h) in &headers {
        too_many = too_many.header(*name, h.clone());
    }
    doc.components
        .get_or_insert_with(Default::default)
        .responses
        .insert("TooManyRequests".to_owned(), RefOr::T(too_many.build()));
    for (path, item) in &mut doc.paths.paths {
        if path.starts_with("/health/") {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            match operation.responses.responses.get_mut("429") {
                Some(RefOr::T(own)) => {
                    for (name, h) in &headers {
                        own.headers
                            .entry((*name).to_owned())
                            .or_insert_with(|| RefOr::T(h.clone()));
                    }
                }
                Some(RefOr::Ref(_)) => {}
                None => {
                    operation.responses.responses.insert(
                        "429".to_owned(),
                        RefOr::Ref(Ref::from_response_name("TooManyRequests")),
                    );
                }
            }
        }
    }
}

/// The middleware: charges the request, refuses it with a 429 when a budget is spent, and
/// tells the client where it stands. `/health/*` is never limited (probes must not be).
pub async fn rate_limit(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response<Body> {
    if !state.app.rate_limits().rate_limits_on() || request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(ClientIp(ip)) = ClientIp::from_request_parts(&mut parts, &state).await;
    // The signature is enough to name the budget; whether the account still exists is the
    // handler's question (a stale token is refused there).
    let user = bearer_token(&parts.headers)
        .and_then(Result::ok)
        .and_then(|token| state.app.identity().verify_token(token).ok())
        .map(|claims| claims.user_id);
    let mut uses = vec![(RateClass::General, 1)];
    if let Some(class) = class_of(&parts.method, parts.uri.path()) {
        uses.push((class, 1));
    }
    let Some(verdict) = state
        .app
        .rate_limits()
        .charge_requests(&ip, user, &uses)
        .await
    else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let mut response = if verdict.allowed {
        next.run(Request::from_parts(parts, body)).await
    } else {
        // The access line logs the 429 already; a flood must not double the log.
        tracing::debug!(%ip, ?user, path = %parts.uri.path(), "rate limit reached");
        ApiError::rate_limited(verdict).into_response()
    };
    // A handler that refused on a budget of its own (GraphQL mutations) tells which.
    let shown = response
        .extensions()
        .get::<Verdict>()
        .copied()
        .unwrap_or(verdict);
    set_headers(&mut response, &shown);
    response
}

/// Charges each root mutation field of a GraphQL request (as the document walk of the GraphQL
/// guard lists them) to the general budgets and to those of its class (`createUser` is a
/// sign-up), all or nothing, before anything runs. The HTTP request itself was charged once by
/// the middleware.
pub async fn charge_mutations(
    state: &AppState,
    caller: Option<Actor>,
    ip: &str,
    root_fields: &[String],
) -> ApiResult<()> {
    if root_fields.is_empty() {
        return Ok(());
    }
    let mut uses = vec![(
        RateClass::General,
        u32::try_from(root_fields.len()).unwrap_or(u32::MAX),
    )];
    for class in root_fields.iter().map(|f| class_of_mutation(f)) {
        match uses.iter_mut().find(|(c, _)| *c == class) {
            Some((RateClass::General, _)) => {}
            Some((_, n)) => *n = n.saturating_add(1),
            None => uses.push((class, 1)),
        }
    }
    match state
        .app
        .rate_limits()
        .charge_requests(ip, caller.map(|a| a.id), &uses)
        .await
    {
        Some(verdict) if !verdict.allowed => Err(ApiError::rate_limited(verdict)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_routes_are_classed_by_method_and_exact_path() {
        assert_eq!(
            class_of(&Method::POST, "/api/v1/users"),
            Some(RateClass::SignUp)
        );
        assert_eq!(class_of(&Method::GET, "/api/v1/users"), None);
        assert_eq!(
            class_of(&Method::POST, "/api/v1/auth/login"),
            Some(RateClass::Login)
        );
        assert_eq!(
            class_of(&Method::POST, "/api/v1/auth/password-reset/confirm"),
            Some(RateClass::PasswordReset)
        );
        assert_eq!(
            class_of(&Method::POST, "/api/v1/auth/verify-email/request"),
            Some(RateClass::Verification)
        );
        assert_eq!(class_of(&Method::POST, "/api/v1/posts"), None);
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}
