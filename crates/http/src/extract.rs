//! Extractors whose rejections speak the error envelope.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use inkcart_app::error::messages;
use inkcart_app::{AppError, ErrorCode};
use inkcart_domain::{Actor, FieldError, User, UserId};
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

/// Deserializes a JSON body, telling malformed JSON apart from JSON of the wrong shape. Every
/// body the API takes is an object: any other document is a 400 on `body`. A string holding
/// NUL (`\u0000`, which PostgreSQL text cannot store) is a 400 naming its field. Nesting is
/// bounded by serde_json's recursion limit (128): deeper documents are malformed JSON.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Malformed JSON at line {} column {}", e.line(), e.column()),
        )
        .with_code(ErrorCode::MalformedBody)
    };
    // NUL can only be written as this escape (a raw control byte is malformed JSON): a scan
    // of the bytes keeps the usual body on the fast path.
    if memchr::memmem::find(bytes, br"\u0000").is_some()
        && let Some(field) = json_field_with_nul(bytes)
    {
        return Err(nul_error(field));
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(syntax) => malformed(&syntax),
                Ok(_) => ApiError::validation(vec![FieldError::new(
                    "body",
                    "The request body must be a JSON object",
                )]),
            },
        );
    }
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

/// The 400 for a value holding NUL.
fn nul_error(field: String) -> ApiError {
    let message = format!("{field} must not contain NUL characters");
    ApiError::validation(vec![FieldError::new(field, message)])
}

/// The first field (`items[0].name`, or `body` for the document itself) of a JSON document
/// whose name or string value holds NUL; `None` for malformed JSON (reported as such).
fn json_field_with_nul(bytes: &[u8]) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        use serde_json::Value;
        let at = |name: &str| {
            if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            }
        };
        match value {
            Value::String(s) if s.contains('\0') => {
                Some(if path.is_empty() { "body" } else { path }.to_owned())
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            Value::Object(fields) => fields.iter().find_map(|(name, value)| {
                if name.contains('\0') {
                    Some(at(&name.replace('\0', "\\u0000")))
                } else {
                    walk(value, &at(name))
                }
            }),
            _ => None,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&value, "")
}

/// The first query parameter whose name or value holds NUL (`%00`).
fn query_param_with_nul(query: &str) -> Option<String> {
    // Most queries hold no `%00`: they are not decoded twice.
    memchr::memmem::find(query.as_bytes(), b"%00")?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| name.replace('\0', "\\u0000"))
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

/// Query-string parameters; a bad value is a 400 `ValidationError` naming the parameter, and
/// so is one holding NUL (`%00`), which PostgreSQL text cannot store.
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
        if let Some(name) = query_param_with_nul(query) {
            return Err(nul_error(name));
        }
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
/// `ValidationError` on the parameter, and so is one holding NUL (`%00`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if memchr::memmem::find(parts.uri.path().as_bytes(), b"%00").is_some()
            && let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = params.iter().find(|(_, value)| value.contains('\0'))
        {
            return Err(nul_error(name.to_owned()));
        }
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

/// The authenticated caller, from `Authorization: Bearer <access token>`. The token's account
/// is read (one lookup by primary key): a token whose account was deleted is a 401 however
/// long it still has to live, and the role is the account's as stored, not as it was when the
/// token was issued.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub actor: Actor,
    pub email: String,
    /// The caller's account as it is now.
    pub user: User,
}

/// The token of an `Authorization: Bearer <token>` header; `None` without the header.
pub fn bearer_token(headers: &HeaderMap) -> Option<Result<&str, ApiError>> {
    let value = headers.get(header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, messages::INVALID_TOKEN)
                    .with_code(ErrorCode::InvalidToken)
            }),
    )
}

/// The token of the request's `Authorization: Bearer` header: a 401 without one.
fn required_bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    bearer_token(&parts.headers).unwrap_or_else(|| {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, messages::NO_TOKEN)
            .with_code(ErrorCode::NoToken))
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = required_bearer_token(parts)?;
        let user = state.app.identity().authenticate(token).await?;
        Ok(Self {
            actor: user.actor(),
            email: user.email.as_str().to_owned(),
            user,
        })
    }
}

/// The account a valid bearer token was issued to, as the token names it: its signature and
/// lifetime are checked, the account is not read. Only for a use case that reads the account
/// itself, with the rest of its work, and refuses an account that is gone with the same 401 as
/// [`AuthUser`] (placing an order reads the buyer in the order's own read); a request refused
/// before that answers with [`TokenUser::or_gone`]. Everything else takes [`AuthUser`].
#[derive(Debug, Clone, Copy)]
pub struct TokenUser {
    pub id: UserId,
}

impl TokenUser {
    /// `err`, the refusal of a request before its use case read the account, or the 401 that
    /// [`AuthUser`] would have answered first when the account is gone (one read, on this
    /// failing path only).
    pub async fn or_gone(self, state: &AppState, err: ApiError) -> ApiError {
        match state.app.identity().get_user(self.id).await {
            Err(AppError::NotFound(_)) => AppError::invalid_token().into(),
            _ => err,
        }
    }
}

impl FromRequestParts<AppState> for TokenUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = required_bearer_token(parts)?;
        let claims = state.app.identity().verify_token(token)?;
        Ok(Self { id: claims.user_id })
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

    fn fields(e: &ApiError) -> Vec<String> {
        e.field_errors()
            .map(|errors| errors.iter().map(|e| e.field.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_nul_in_a_json_string_is_a_validation_error_naming_its_field() {
        let e = err(r#"{"email":"a\u0000b"}"#);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(fields(&e), ["email"]);
        let nested = parse_json::<serde_json::Value>(br#"{"items":[{"name":"\u0000"}]}"#);
        assert_eq!(fields(&nested.unwrap_err()), ["items[0].name"]);
        let key = parse_json::<serde_json::Value>(br#"{"a\u0000":1}"#).unwrap_err();
        assert_eq!(fields(&key), ["a\\u0000"]);
        // An escaped backslash before `u0000` is text, not NUL.
        let text = parse_json::<serde_json::Value>(br#"{"email":"\\u0000"}"#).unwrap();
        assert_eq!(text["email"], "\\u0000");
        // Malformed JSON is reported as such, NUL or not.
        assert!(
            err(r#"{"email":"\u0000"#)
                .message()
                .starts_with("Malformed JSON")
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused_on_body() {
        for body in [
            "[]",
            "[null, null]",
            "null",
            "1",
            r#""text""#,
            " [{\"email\":\"a\"}]",
        ] {
            let e = err(body);
            assert_eq!(fields(&e), ["body"], "{body}");
            assert_eq!(
                e.field_errors().unwrap()[0].message,
                "The request body must be a JSON object"
            );
        }
        assert!(err("[1,").message().starts_with("Malformed JSON"));
    }

    #[test]
    fn json_nested_past_the_recursion_limit_is_malformed_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().starts_with("Malformed JSON"), "{}", e.message());
        let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(parse_json::<Body>(objects.as_bytes()).is_err());
    }

    #[test]
    fn a_nul_in_a_query_parameter_names_the_parameter() {
        assert_eq!(
            query_param_with_nul("page=1&search=a%00b"),
            Some("search".to_owned())
        );
        assert_eq!(query_param_with_nul("a%00=1"), Some("a\\u0000".to_owned()));
        assert_eq!(query_param_with_nul("search=%2500"), None);
        assert_eq!(query_param_with_nul("page=100"), None);
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
