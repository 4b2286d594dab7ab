use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inkcart_app::uploads::Upload;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{AuthUser, Json, Path};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadBody {
    /// The file's key (time-ordered); use it as a post's `coverImageKey`.
    pub key: String,
    pub url: String,
    #[schema(example = "image/png")]
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    pub width: u32,
    pub height: u32,
    /// A copy 320 pixels wide (or the original size when smaller).
    pub thumbnail_url: String,
}

impl From<Upload> for UploadBody {
    fn from(u: Upload) -> Self {
        Self {
            key: u.key,
            url: u.url,
            content_type: u.content_type.to_owned(),
            size: u.size,
            width: u.width,
            height: u.height,
            thumbnail_url: u.thumbnail_url,
        }
    }
}

/// The multipart form of an upload.
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "describes the multipart body for the OpenAPI document only"
)]
pub struct UploadForm {
    /// A PNG, JPEG, WebP or GIF image (told by its bytes, not its name).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Where uploads are posted (they have their own body limit).
pub const UPLOADS_PATH: &str = "/api/v1/uploads";

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large")
}

/// Uploads an image (any signed-in user). A thumbnail is made beside it.
///
/// The image's dimensions are read from its header and held against the pixel budget before
/// anything is decoded.
#[utoipa::path(post, path = "/api/v1/uploads", tag = "uploads",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    security(("bearer" = [])), responses(
    (status = 201, body = UploadBody),
    (status = 400, body = ErrorBody, description = "No `file` field, or not a PNG/JPEG/WebP/GIF image"),
    (status = 401, body = ErrorBody),
    (status = 413, body = ErrorBody, description = "Larger than the upload limit, or an image whose header claims more pixels than the pixel budget"),
    (status = 415, body = ErrorBody, description = "Not multipart/form-data"),
    (status = 503, body = ErrorBody, description = "Every image decoder stayed busy; try again after `Retry-After` seconds"),
))]
pub async fn upload(
    State(state): State<AppState>,
    auth: AuthUser,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadBody>)> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a multipart/form-data body with a `file` field",
        ));
    }
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut file: Option<Bytes> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        };
        if field.name() != Some("file") {
            continue;
        }
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
            }
        })?;
        file = Some(bytes);
        break;
    }
    let Some(bytes) = file else {
        return Err(ApiError::validation(vec![inkcart_domain::FieldError::new(
            "file",
            "file is required",
        )]));
    };
    if bytes.len() > state.http.upload_limit {
        return Err(too_large());
    }
    let upload = state.app.uploads().upload_image(auth.actor, bytes).await?;
    Ok((StatusCode::CREATED, Json(upload.into())))
}

pub const FILE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// A stored file (local storage). Keys never change content, so it may be cached forever.
#[utoipa::path(get, path = "/files/{key}", tag = "uploads", params(("key" = String, Path, description = "An upload's key")), responses(
    (status = 200, description = "The file", content_type = "image/*"),
    (status = 404, body = ErrorBody),
))]
pub async fn file(State(state): State<AppState>, Path(key): Path<String>) -> ApiResult<Response> {
    let (bytes, content_type) = state.app.uploads().file(&key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(FILE_CACHE_CONTROL),
            ),
        ],
        bytes,
    )
        .into_response())
}
