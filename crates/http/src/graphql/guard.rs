//! The checks a GraphQL request passes before async-graphql sees it.
//!
//! async-graphql's parser and validation recurse into nested values and walk fragment spreads
//! once per spread: a few kilobytes of `[[[[…]]]]` overflow the stack, and fragments that each
//! spread the previous one several times make its validation exponential. So, in order:
//! the body is read as one JSON object (a JSON array, a batch, is refused); the document's and
//! the variables' sizes are checked; the document's brackets are counted, outside strings and
//! comments, before the parser runs, and the variables' nesting likewise; the parsed document
//! is then measured with fragment spreads expanded (counted, not copied: [`super::document`]),
//! string arguments and variables are checked for NUL characters (which PostgreSQL cannot
//! store), and the root mutation fields the operation would run are counted against a cap.
//!
//! HTTP-level problems (not JSON, a batch, no `query`) are 4xx envelopes; every refusal of the
//! GraphQL request itself is a GraphQL error (status 200, `data: null`) whose
//! `extensions.code` says why, like the errors of the resolvers.

use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ErrorExtensionValues, Pos, ServerError};
use axum::http::StatusCode;
use inkcart_domain::FieldError;
use serde_json::Value;

use super::document::{self, Analysis};
use crate::error::{ApiError, error_name};
use inkcart_app::ErrorCode;

/// The limits of [`check`], from configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_document_bytes: usize,
    pub max_variables_bytes: usize,
    pub max_nesting: usize,
    pub max_nodes: usize,
    pub max_mutations: usize,
}

/// A request's fields, as read from its JSON body.
#[derive(Debug)]
pub(crate) struct RawRequest {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: serde_json::Map<String, Value>,
}

/// A request that passed every check, parsed.
#[derive(Debug)]
pub struct CheckedRequest {
    pub(crate) raw: RawRequest,
    pub(crate) document: ExecutableDocument,
    pub(crate) mutation_fields: Vec<String>,
}

impl CheckedRequest {
    /// The root mutation fields the operation runs, in order, one entry per field as written
    /// (aliases and fields spread from fragments included, `@skip`ped ones left out); empty for
    /// a query. The cap on mutations per request has been applied to this list.
    pub fn mutation_fields(&self) -> &[String] {
        &self.mutation_fields
    }

    /// The request for async-graphql, carrying the document parsed here so that it is not
    /// parsed again.
    pub(crate) fn into_request(self) -> async_graphql::Request {
        let RawRequest {
            query,
            operation_name,
            variables,
        } = self.raw;
        let variables = async_graphql::Variables::from_json(Value::Object(variables));
        let mut request = async_graphql::Request::new(query).variables(variables);
        if let Some(name) = operation_name {
            request = request.operation_name(name);
        }
        request.set_parsed_query(self.document);
        request
    }
}

/// A refusal as a GraphQL error with `extensions.code` (the error name) and
/// `extensions.reason` (the machine-readable code).
pub(crate) fn refusal(code: ErrorCode, message: impl Into<String>) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    let status = match code {
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    extensions.set("code", error_name(status, false));
    extensions.set("reason", code.as_str());
    error.extensions = Some(extensions);
    error
}

fn bad_request(message: impl Into<String>) -> ServerError {
    refusal(ErrorCode::BadRequest, message)
}

/// Reads the body: one JSON object with a string `query`, and optionally `variables` (an
/// object) and `operationName` (other keys, such as `extensions`, are ignored). serde_json
/// refuses JSON nested more than 128 deep.
pub(crate) fn read_body(bytes: &[u8]) -> Result<RawRequest, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.to_string().starts_with("recursion limit exceeded") {
            "JSON nested more than 128 deep"
        } else {
            "Malformed JSON"
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} at line {} column {}", e.line(), e.column()),
        )
        .with_code(ErrorCode::MalformedBody)
    })?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Batched GraphQL requests are not accepted: send one operation per request",
            ));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Expected a JSON object with a `query`",
            ));
        }
    };
    let invalid = |field: &str, message: &str| {
        ApiError::validation(vec![FieldError::new(field, format!("{field} {message}"))])
    };
    let query = match object.remove("query") {
        Some(Value::String(query)) => query,
        None | Some(Value::Null) => return Err(invalid("query", "is required")),
        Some(_) => return Err(invalid("query", "must be a string")),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(invalid("operationName", "must be a string")),
    };
    let variables = match object.remove("variables") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(variables)) => variables,
        Some(_) => return Err(invalid("variables", "must be an object")),
    };
    Ok(RawRequest {
        query,
        operation_name,
        variables,
    })
}

/// Runs every check on `raw` and parses it; the errors to answer with otherwise.
pub(crate) fn check(limits: &Limits, raw: RawRequest) -> Result<CheckedRequest, Vec<ServerError>> {
    let one = |e: ServerError| vec![e];
    if raw.query.len() > limits.max_document_bytes {
        return Err(one(refusal(
            ErrorCode::PayloadTooLarge,
            format!(
                "The document is {} bytes long; at most {} are accepted",
                raw.query.len(),
                limits.max_document_bytes
            ),
        )));
    }
    if nesting_exceeds(&raw.query, limits.max_nesting) {
        return Err(one(bad_request(format!(
            "The document nests brackets more than {} deep",
            limits.max_nesting
        ))));
    }
    let variables_bytes = json_len(&raw.variables);
    if variables_bytes > limits.max_variables_bytes {
        return Err(one(refusal(
            ErrorCode::PayloadTooLarge,
            format!(
                "The variables are {variables_bytes} bytes long as JSON; at most {} are accepted",
                limits.max_variables_bytes
            ),
        )));
    }
    let mut variables = VariablesWalk {
        max_depth: limits.max_nesting,
        values: 0,
        nul: Vec::new(),
        path: String::new(),
    };
    for (name, value) in &raw.variables {
        variables.path.clear();
        variables.path.push('$');
        variables.path.push_str(name);
        if variables.walk(value, 0).is_err() {
            return Err(one(bad_request(format!(
                "The variables nest more than {} deep",
                limits.max_nesting
            ))));
        }
    }
    if variables.values > limits.max_nodes {
        return Err(one(bad_request(format!(
            "The variables hold more than {} values",
            limits.max_nodes
        ))));
    }
    let document =
        async_graphql::parser::parse_query(&raw.query).map_err(|e| one(labelled(e.into())))?;
    let Analysis {
        nul_arguments,
        mutation_fields,
    } = document::analyze(
        &document,
        raw.operation_name.as_deref(),
        &raw.variables,
        document::Budget {
            max_depth: limits.max_nesting,
            max_nodes: limits.max_nodes,
        },
    )
    .map_err(|problem| one(bad_request(problem.message(limits))))?;
    let mut nul: Vec<(String, Option<Pos>)> = nul_arguments
        .into_iter()
        .map(|(name, pos)| (name, Some(pos)))
        .collect();
    nul.extend(variables.nul.into_iter().map(|name| (name, None)));
    if !nul.is_empty() {
        return Err(one(nul_refusal(nul)));
    }
    if mutation_fields.len() > limits.max_mutations {
        return Err(one(bad_request(format!(
            "A request may run at most {} mutations; this one runs {}",
            limits.max_mutations,
            mutation_fields.len()
        ))));
    }
    Ok(CheckedRequest {
        raw,
        document,
        mutation_fields,
    })
}

/// The most NUL findings listed in one answer.
const MAX_LISTED: usize = 10;

/// One `ValidationError` naming each argument or variable that holds a NUL character.
fn nul_refusal(mut found: Vec<(String, Option<Pos>)>) -> ServerError {
    found.truncate(MAX_LISTED);
    let fields = found
        .iter()
        .map(|(name, _)| FieldError::new(name.clone(), format!("{name} must not contain NUL")))
        .collect();
    let error = super::gql_error(inkcart_app::AppError::Validation(fields));
    let mut server = ServerError::new(error.message, None);
    server.locations = found.iter().filter_map(|(_, pos)| *pos).collect();
    server.extensions = error.extensions;
    server
}

/// Gives an error of async-graphql's own (a parse or validation error, a limit) the code
/// `BadRequest`, so that every error of the endpoint carries one.
pub(crate) fn labelled(mut error: ServerError) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", error_name(StatusCode::BAD_REQUEST, false));
        extensions.set("reason", ErrorCode::BadRequest.as_str());
    }
    error
}

/// The length of `variables` written as compact JSON, without writing it.
fn json_len(variables: &serde_json::Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, variables);
    count.0
}

/// Counts the variables' values and finds the strings holding NUL, refusing nesting deeper
/// than `max_depth` (the recursion is bounded by it).
struct VariablesWalk {
    max_depth: usize,
    values: usize,
    /// Where NUL characters were found: `$name`, `$name.field`, `$name[0]`.
    nul: Vec<String>,
    path: String,
}

struct TooDeep;

impl VariablesWalk {
    /// Walks `value`, which `enclosing` lists and objects hold.
    fn walk(&mut self, value: &Value, enclosing: usize) -> Result<(), TooDeep> {
        self.values = self.values.saturating_add(1);
        let here = self.path.len();
        match value {
            Value::String(s) if s.contains('\0') && self.nul.len() < MAX_LISTED => {
                self.nul.push(self.path.clone());
            }
            Value::Array(items) => {
                let depth = self.enter(enclosing)?;
                for (i, item) in items.iter().enumerate() {
                    use std::fmt::Write as _;
                    let _ = write!(self.path, "[{i}]");
                    self.walk(item, depth)?;
                    self.path.truncate(here);
                }
            }
            Value::Object(fields) => {
                let depth = self.enter(enclosing)?;
                for (name, item) in fields {
                    self.path.push('.');
                    self.path.push_str(name);
                    self.walk(item, depth)?;
                    self.path.truncate(here);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn enter(&self, enclosing: usize) -> Result<usize, TooDeep> {
        let depth = enclosing + 1;
        if depth > self.max_depth {
            Err(TooDeep)
        } else {
            Ok(depth)
        }
    }
}

/// Whether `{`, `[` and `(` nest more than `max` deep in a GraphQL document, counted outside
/// strings, block strings and comments. It reads the text as the parser does, and where the
/// text is not valid GraphQL it reads on as code, which can only count more: the parser stops
/// at such a place, so nothing after it is nested any deeper for the parser.
pub(crate) fn nesting_exceeds(source: &str, max: usize) -> bool {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'#' => {
                while bytes.get(i).is_some_and(|b| !matches!(b, b'\n' | b'\r')) {
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(br#"""""#) => {
                // An unterminated block string is read by the parser as `""`, an empty
                // string, and what follows as more of the document.
                i = block_string_end(bytes, i + 3).unwrap_or(i + 2);
                continue;
            }
            b'"' => {
                if let Some(end) = string_end(bytes, i + 1) {
                    i = end;
                    continue;
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Just past the `"` closing a string whose text starts at `start`; `None` when it is not
/// closed on its line.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\n' | b'\r' => return None,
            b'\\' => match bytes.get(i + 1)? {
                b'\n' | b'\r' => return None,
                _ => i += 2,
            },
            _ => i += 1,
        }
    }
}

/// Just past the `"""` closing a block string whose text starts at `start` (`\"""` does not
/// close it); `None` when it is never closed.
fn block_string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while i < bytes.len() {
        if bytes[i..].starts_with(br#"\""""#) {
            i += 4;
        } else if bytes[i..].starts_with(br#"""""#) {
            return Some(i + 3);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deeper_than(source: &str, max: usize) -> bool {
        nesting_exceeds(source, max)
    }

    #[test]
    fn brackets_braces_and_parentheses_all_count() {
        assert!(!deeper_than("{ a(x: [{b: 1}]) { c } }", 4));
        assert!(deeper_than("{ a(x: [{b: [1]}]) { c } }", 4));
        assert!(!deeper_than("{ a } { b } { c }", 1));
    }

    #[test]
    fn brackets_in_strings_block_strings_and_comments_do_not_count() {
        let nested = "[".repeat(50);
        for source in [
            format!(r#"{{ a(x: "{nested}") }}"#),
            format!(r#"{{ a(x: "\"{nested}\\") }}"#),
            format!(r#"{{ a(x: """{nested} "" \""" {nested}""") }}"#),
            format!("{{ a # {nested}\n }}"),
        ] {
            assert!(!deeper_than(&source, 2), "{source}");
        }
    }

    #[test]
    fn closing_brackets_in_strings_do_not_hide_nesting() {
        let closers = "]".repeat(50);
        let deep = format!("{}1{}", "[".repeat(10), "]".repeat(10));
        assert!(deeper_than(
            &format!(r#"{{ a(x: "{closers}", y: {deep}) }}"#),
            8
        ));
        assert!(deeper_than(&format!("# {closers}\n{{ a(y: {deep}) }}"), 8));
        assert!(deeper_than(
            &format!(r#"{{ a(x: """{closers}""", y: {deep}) }}"#),
            8
        ));
    }

    #[test]
    fn text_the_parser_would_not_read_as_a_string_is_counted_as_code() {
        let deep = "[".repeat(10);
        // A string cut by a line end, and an unterminated block string (read as `""`).
        assert!(deeper_than(&format!("{{ a(x: \"abc\n{deep}\") }}"), 8));
        assert!(deeper_than(&format!(r#"{{ a(x: """ "{deep}) }}"#), 8));
        assert!(deeper_than(&format!("{{ a(x: \"\\\n{deep}\") }}"), 8));
    }

    #[test]
    fn variables_nested_deeper_than_the_limit_are_found_and_nul_is_named() {
        let mut walk = VariablesWalk {
            max_depth: 3,
            values: 0,
            nul: Vec::new(),
            path: "$v".to_owned(),
        };
        assert!(
            walk.walk(&serde_json::json!({"a": [{"b": "x\u{0}"}, "\u{0}"]}), 0)
                .is_ok()
        );
        assert_eq!(walk.nul, ["$v.a[0].b", "$v.a[1]"]);
        assert!(walk.walk(&serde_json::json!([[[[1]]]]), 0).is_err());
    }

    #[test]
    fn the_variables_length_is_their_compact_json() {
        let serde_json::Value::Object(map) = serde_json::json!({"a": [1, "x"]}) else {
            unreachable!()
        };
        assert_eq!(json_len(&map), r#"{"a":[1,"x"]}"#.len());
    }

    #[test]
    fn a_json_array_is_refused_as_a_batch_and_fields_are_named() {
        let batch = read_body(br#"[{"query": "{ a }"}]"#).unwrap_err();
        assert_eq!(batch.status(), StatusCode::BAD_REQUEST);
        assert!(batch.message().starts_with("Batched GraphQL requests"));
        let missing = read_body(br#"{"variables": {}}"#).unwrap_err();
        assert_eq!(missing.field_errors().unwrap()[0].field, "query");
        let variables = read_body(br#"{"query": "{ a }", "variables": [1]}"#).unwrap_err();
        assert_eq!(variables.field_errors().unwrap()[0].field, "variables");
    }
}
