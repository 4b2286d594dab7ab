//! Shapes shared by several routes: users, pages, timestamps, answers from a cache.

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use inkcart_app::Shared;
use inkcart_app::page::Page;
use inkcart_domain::{Actor, FieldError, Role, Tier, User};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use uuid::Uuid;

/// A `200` JSON answer of the body `to_body` makes of a shared (cached) value. The body is
/// encoded on the entry's first read and kept with it: later reads of the same entry send the
/// same bytes without building or serializing the body again.
pub fn shared_json<T, B>(
    value: &Shared<T>,
    to_body: impl FnOnce(&T) -> B,
) -> Result<Response, crate::error::ApiError>
where
    B: Serialize + 'static,
{
    let bytes = value
        .encoded::<B, _>(|v| serde_json::to_vec(&to_body(v)).map(Bytes::from))
        .map_err(crate::error::ApiError::internal)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response())
}

/// RFC 3339 in UTC with milliseconds: `2026-11-27T10:30:00.123Z`.
pub fn ts<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// [`ts`] for an optional timestamp (`null` when absent).
pub fn ts_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ts(t, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleDto {
    Admin,
    Editor,
    Viewer,
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Editor => Self::Editor,
            Role::Viewer => Self::Viewer,
        }
    }
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Self {
        match role {
            RoleDto::Admin => Self::Admin,
            RoleDto::Editor => Self::Editor,
            RoleDto::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TierDto {
    Guest,
    Regular,
    Premium,
}

impl From<Tier> for TierDto {
    fn from(tier: Tier) -> Self {
        match tier {
            Tier::Guest => Self::Guest,
            Tier::Regular => Self::Regular,
            Tier::Premium => Self::Premium,
        }
    }
}

impl From<TierDto> for Tier {
    fn from(tier: TierDto) -> Self {
        match tier {
            TierDto::Guest => Self::Guest,
            TierDto::Regular => Self::Regular,
            TierDto::Premium => Self::Premium,
        }
    }
}

/// A user account as the API shows it (never with credentials). `email`, `role`, `tier`,
/// `emailVerified` and `updatedAt` are shown to the account's owner and to admins only; others
/// see the public fields (`id`, `name`, `createdAt`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "019abcde-0000-7000-8000-000000000001",
    "email": "user@example.com",
    "name": "Ada Lovelace",
    "role": "viewer",
    "tier": "guest",
    "emailVerified": false,
    "createdAt": "2026-11-27T10:30:00.123Z",
    "updatedAt": "2026-11-27T10:30:00.123Z"
}))]
pub struct UserBody {
    pub id: Uuid,
    /// Owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub email: Option<String>,
    pub name: Option<String>,
    /// Owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub role: Option<RoleDto>,
    /// Owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub tier: Option<TierDto>,
    /// Owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub email_verified: Option<bool>,
    #[serde(serialize_with = "ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// Owner and admins only.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ts_opt")]
    #[schema(value_type = String, format = DateTime, required = false)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl UserBody {
    /// Every field: for the account's owner and admins.
    pub fn full(u: User) -> Self {
        Self {
            id: u.id.as_uuid(),
            name: u.name.map(|n| n.as_str().to_owned()),
            created_at: u.created_at,
            email: Some(u.email.into_string()),
            role: Some(u.role.into()),
            tier: Some(u.tier.into()),
            email_verified: Some(u.email_verified),
            updated_at: Some(u.updated_at),
        }
    }

    /// The public fields only.
    pub fn public(u: User) -> Self {
        Self {
            id: u.id.as_uuid(),
            name: u.name.map(|n| n.as_str().to_owned()),
            created_at: u.created_at,
            email: None,
            role: None,
            tier: None,
            email_verified: None,
            updated_at: None,
        }
    }

    /// What `viewer` may see of `u`.
    pub fn for_viewer(u: User, viewer: &Actor) -> Self {
        if viewer.may_see_private(u.id) {
            Self::full(u)
        } else {
            Self::public(u)
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    pub page: u64,
    pub limit: u64,
    pub total: u64,
    pub total_pages: u64,
}

/// An offset-paginated list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

impl<T: ToSchema> Paged<T> {
    pub fn from_page<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Self {
        let meta = PageMeta {
            page: page.page,
            limit: page.limit,
            total: page.total,
            total_pages: page.total_pages(),
        };
        Self {
            data: page.items.into_iter().map(f).collect(),
            meta,
        }
    }
}

/// A query parameter's text longer than `max` characters is a validation error on `field`
/// (the document states the same `maxLength`).
pub fn check_len(field: &str, value: Option<&str>, max: usize, errors: &mut Vec<FieldError>) {
    if value.is_some_and(|v| v.chars().count() > max) {
        errors.push(FieldError::new(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
}

/// Longest `search` a list takes: a handful of words, never a document.
pub const SEARCH_MAX: usize = 200;

/// A strict list of objects: serde would also take each object written as an array of its
/// field values (`[["id", 2]]`), which the document does not allow.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Vec::<ObjectOnly<T>>::deserialize(deserializer)
        .map(|items| items.into_iter().map(|o| o.0).collect())
}

/// `T` read from a JSON object only.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// `Option<Option<T>>` for PATCH bodies: a missing field is `None`, `null` is `Some(None)`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
