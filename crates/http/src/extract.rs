//! Extractors whose rejections speak the error envelope.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use inkcart_app::error::messages;
use inkcart_domain::{Actor, FieldError};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body. Without a JSON content type → 415; over the body limit → 413; not JSON → 400
/// `BadRequest`; JSON of the wrong shape → 400 `ValidationError` naming the field.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected a request body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "Failed to read the request body")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Deserializes a JSON document, telling malformed JSON apart from JSON of the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Malformed JSON at line {} column {}", e.line(), e.column()),
        )
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let inner = err.inner();
        if inner.is_syntax() || inner.is_eof() {
            malformed(inner)
        } else if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            // A shape error found before a syntax error further on: the syntax wins.
            malformed(&syntax)
        } else {
            let path = err.path().to_string();
            ApiError::validation(vec![field_error(
                &path,
                &strip_position(&inner.to_string()),
            )])
        }
    })?;
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// Deserializes an already parsed JSON document into a request type, naming the field at fault.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        ApiError::validation(vec![field_error(&path, &err.inner().to_string())])
    })
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// serde's message ends with " at line L column C"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head)
        .to_owned()
}

/// Turns a serde error at `path` into a field error. serde's path for "missing field `x`" is
/// the parent object's, so the name is taken from the message; for "unknown field" the path
/// already ends with the field.
fn field_error(path: &str, message: &str) -> FieldError {
    let root = matches!(path, "." | "");
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if root {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return FieldError::new(field.clone(), format!("{field} is required"));
    }
    let field = if root {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        return FieldError::new(field, format!("Unknown field `{name}`"));
    }
    FieldError::new(field, message.to_owned())
}

/// Query-string parameters; a bad value is a 400 `ValidationError` naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let inner = err.inner().to_string();
                ApiError::validation(vec![field_error(&path, &inner)])
            })
    }
}

/// A path parameter; one that does not parse (say, an id that is not a UUID) is a 400
/// `ValidationError` on the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                let name = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .and_then(|p| p.as_str().rsplit('{').next())
                    .map_or("id", |tail| tail.trim_end_matches(['}', '/']))
                    .to_owned();
                tracing::debug!(%rejection, "path parameter rejected");
                Err(ApiError::validation(vec![FieldError::new(
                    name.clone(),
                    format!("Invalid {name}"),
                )]))
            }
        }
    }
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub actor: Actor,
    pub email: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, messages::NO_TOKEN));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, messages::INVALID_TOKEN))?;
        let claims = state.app.authenticate(token)?;
        Ok(Self {
            actor: Actor {
                id: claims.user_id,
                role: claims.role,
            },
            email: claims.email,
        })
    }
}

/// The caller when a bearer token is sent, `None` without one. A token that is sent but
/// invalid is still a 401: a client should learn that its token stopped working.
#[derive(Debug, Clone)]
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl FromRequestParts<AppState> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            AuthUser::from_request_parts(parts, state)
                .await
                .map(|a| Self(Some(a)))
        } else {
            Ok(Self(None))
        }
    }
}

/// The client's IP address: the socket peer or, behind trusted proxies, the right-most
/// `X-Forwarded-For` hop that is not one of them (see [`crate::proxy::TrustedProxies`]).
/// `unknown` when neither is known (in-process calls without a socket).
#[derive(Debug, Clone)]
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(
            state
                .http
                .proxies
                .client_ip(peer, &parts.headers)
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "fields are only deserialized")]
    struct Body {
        email: String,
        age: Option<u8>,
    }

    fn err(json: &str) -> ApiError {
        parse_json::<Body>(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn malformed_json_is_a_bad_request_with_its_position() {
        let e = err("{\"email\": ");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(
            e.message().starts_with("Malformed JSON at line 1"),
            "{}",
            e.message()
        );
        assert!(err("{} trailing").message().starts_with("Malformed JSON"));
        assert!(err("").message().starts_with("Malformed JSON"));
    }

    #[test]
    fn shape_errors_name_the_field() {
        let body = |e: ApiError| format!("{e:?}");
        assert!(body(err("{}")).contains("email is required"));
        assert!(body(err(r#"{"email":"a","extra":1}"#)).contains("Unknown field `extra`"));
        let wrong = body(err(r#"{"email":"a","age":"old"}"#));
        assert!(wrong.contains("field: \"age\""), "{wrong}");
        assert!(body(err(r#"{"email":5}"#)).contains("field: \"email\""));
        assert!(body(err("\"text\"")).contains("field: \"body\""));
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        let headers = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/merge-patch+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/jsonx")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
