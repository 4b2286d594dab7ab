//! Object storage through `object_store`: a local directory by default, or any S3-compatible
//! service.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use inkcart_app::ports::ObjectStorage;
use inkcart_app::{AppError, AppResult};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutOptions, PutPayload,
};

/// Files live under `uploads/` in the store; URLs are `<public base>/<key>`.
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    public_base: String,
    /// S3 keeps the content type with the object; a local directory cannot.
    with_attributes: bool,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("public_base", &self.public_base)
            .finish_non_exhaustive()
    }
}

/// Where an S3-compatible bucket is and how to reach it.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub path_style: bool,
}

impl Storage {
    /// A local directory; files are served by inkcart at `<public_url>/files/<key>`.
    pub fn local(dir: &std::path::Path, public_url: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
            public_base: format!("{}/files", public_url.trim_end_matches('/')),
            with_attributes: false,
        })
    }

    /// An S3-compatible bucket. `public_base` is where clients fetch objects (a CDN, or the
    /// bucket's own URL by default).
    pub fn s3(settings: &S3Settings, public_base: Option<&str>) -> anyhow::Result<Self> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_virtual_hosted_style_request(!settings.path_style);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let default_base = match (&settings.endpoint, settings.path_style) {
            (Some(endpoint), true) => {
                format!("{}/{}", endpoint.trim_end_matches('/'), settings.bucket)
            }
            (Some(endpoint), false) => {
                endpoint.replacen("://", &format!("://{}.", settings.bucket), 1)
            }
            (None, _) => format!(
                "https://{}.s3.{}.amazonaws.com",
                settings.bucket, settings.region
            ),
        };
        Ok(Self {
            store: Arc::new(builder.build()?),
            public_base: format!(
                "{}/uploads",
                public_base.unwrap_or(&default_base).trim_end_matches('/')
            ),
            with_attributes: true,
        })
    }

    fn path(key: &str) -> AppResult<Path> {
        Path::parse(format!("uploads/{key}")).map_err(|_| AppError::not_found("File"))
    }
}

fn storage_error(err: object_store::Error) -> AppError {
    tracing::error!(error = %err, "object storage failed");
    AppError::Unavailable("File storage unavailable".to_owned())
}

#[async_trait]
impl ObjectStorage for Storage {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> AppResult<()> {
        let mut options = PutOptions::default();
        if self.with_attributes {
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
            attributes.insert(
                Attribute::CacheControl,
                "public, max-age=31536000, immutable".to_owned().into(),
            );
            options.attributes = attributes;
        }
        self.store
            .put_opts(&Self::path(key)?, PutPayload::from(bytes), options)
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> AppResult<Option<Bytes>> {
        match self.store.get(&Self::path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(storage_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(storage_error(err)),
        }
    }

    fn public_url(&self, key: &str) -> String {
        format!("{}/{key}", self.public_base)
    }

    async fn put_report(&self, name: &str, bytes: Bytes, content_type: &str) -> AppResult<()> {
        let path = Path::parse(format!("reports/{name}"))
            .map_err(|e| AppError::internal(format!("bad report name {name}: {e}")))?;
        let mut options = PutOptions::default();
        if self.with_attributes {
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, content_type.to_owned().into());
            options.attributes = attributes;
        }
        self.store
            .put_opts(&path, PutPayload::from(bytes), options)
            .await
            .map_err(storage_error)?;
        Ok(())
    }
}
