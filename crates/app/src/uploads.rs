//! Image uploads: the type is told by the bytes, never by the name; a thumbnail is made beside
//! the original; both go to the configured object storage.

use bytes::Bytes;
use image::{GenericImageView as _, ImageFormat};
use inkcart_domain::Actor;
use uuid::Uuid;

use crate::{App, AppError, AppResult};

/// A stored upload and where to fetch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub key: String,
    pub url: String,
    pub content_type: &'static str,
    pub size: u64,
    pub width: u32,
    pub height: u32,
    pub thumbnail_key: String,
    pub thumbnail_url: String,
}

pub const THUMBNAIL_WIDTH: u32 = 320;
/// Larger images are refused before decoding (a few bytes can claim a huge canvas).
const MAX_DIMENSION: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

pub const NOT_AN_IMAGE: &str = "Only PNG, JPEG, WebP and GIF images are accepted";

/// The image format, from the file's first bytes.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(ImageFormat::Png),
        [0xFF, 0xD8, 0xFF, ..] => Some(ImageFormat::Jpeg),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(ImageFormat::Gif),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some(ImageFormat::WebP),
        _ => None,
    }
}

fn describe(format: ImageFormat) -> (&'static str, &'static str) {
    match format {
        ImageFormat::Jpeg => ("image/jpeg", "jpg"),
        ImageFormat::Gif => ("image/gif", "gif"),
        ImageFormat::WebP => ("image/webp", "webp"),
        _ => ("image/png", "png"),
    }
}

/// Whether `key` has the shape of an upload's key: `<uuid>[_thumb].<png|jpg|gif|webp>`.
pub fn is_upload_key(key: &str) -> bool {
    let Some((stem, ext)) = key.rsplit_once('.') else {
        return false;
    };
    let id = stem.strip_suffix("_thumb").unwrap_or(stem);
    matches!(ext, "png" | "jpg" | "gif" | "webp") && id.len() == 36 && Uuid::parse_str(id).is_ok()
}

/// The content type of a stored file, from its extension.
pub fn content_type_of(key: &str) -> &'static str {
    match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

struct Processed {
    width: u32,
    height: u32,
    thumbnail: Vec<u8>,
    thumbnail_format: ImageFormat,
}

fn process(bytes: &[u8], format: ImageFormat) -> AppResult<Processed> {
    let unreadable = || AppError::BadRequest("The image could not be read".to_owned());
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|_| unreadable())?;
    let (width, height) = image.dimensions();
    let thumb = if width > THUMBNAIL_WIDTH {
        let h = (u64::from(height) * u64::from(THUMBNAIL_WIDTH)).div_ceil(u64::from(width));
        image.thumbnail_exact(
            THUMBNAIL_WIDTH,
            u32::try_from(h.max(1)).map_err(|_| unreadable())?,
        )
    } else {
        image
    };
    // JPEG stays JPEG; the others (which may carry transparency) become PNG.
    let thumbnail_format = if format == ImageFormat::Jpeg {
        ImageFormat::Jpeg
    } else {
        ImageFormat::Png
    };
    let thumb = if thumbnail_format == ImageFormat::Jpeg {
        image::DynamicImage::ImageRgb8(thumb.to_rgb8())
    } else {
        thumb
    };
    let mut out = std::io::Cursor::new(Vec::new());
    thumb
        .write_to(&mut out, thumbnail_format)
        .map_err(|e| AppError::internal(format!("encoding a thumbnail: {e}")))?;
    Ok(Processed {
        width,
        height,
        thumbnail: out.into_inner(),
        thumbnail_format,
    })
}

impl App {
    /// Stores an image and its thumbnail (any signed-in user).
    pub async fn upload_image(&self, actor: Actor, bytes: Bytes) -> AppResult<Upload> {
        let format = sniff(&bytes).ok_or_else(|| AppError::BadRequest(NOT_AN_IMAGE.to_owned()))?;
        let (content_type, ext) = describe(format);
        let input = bytes.clone();
        let processed = tokio::task::spawn_blocking(move || process(&input, format))
            .await
            .map_err(|e| AppError::internal(format!("image task failed: {e}")))??;
        // UUID v7 keys sort by upload time.
        let stem = Uuid::now_v7().to_string();
        let key = format!("{stem}.{ext}");
        let (thumb_type, thumb_ext) = describe(processed.thumbnail_format);
        let thumbnail_key = format!("{stem}_thumb.{thumb_ext}");
        let size = bytes.len() as u64;
        self.deps.storage.put(&key, bytes, content_type).await?;
        self.deps
            .storage
            .put(&thumbnail_key, Bytes::from(processed.thumbnail), thumb_type)
            .await?;
        tracing::info!(user = %actor.id, %key, size, "image uploaded");
        Ok(Upload {
            url: self.deps.storage.public_url(&key),
            thumbnail_url: self.deps.storage.public_url(&thumbnail_key),
            key,
            content_type,
            size,
            width: processed.width,
            height: processed.height,
            thumbnail_key,
        })
    }

    /// A stored file with its content type, for `/files/{key}`.
    pub async fn file(&self, key: &str) -> AppResult<(Bytes, &'static str)> {
        if !is_upload_key(key) {
            return Err(AppError::not_found("File"));
        }
        let bytes = self
            .deps
            .storage
            .get(key)
            .await?
            .ok_or_else(|| AppError::not_found("File"))?;
        Ok((bytes, content_type_of(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_pixel(width, height, image::Rgba([10, 20, 30, 255]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba8(img)
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn formats_are_told_by_their_bytes() {
        assert_eq!(sniff(&png(1, 1)), Some(ImageFormat::Png));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(b"GIF89a...."), Some(ImageFormat::Gif));
        assert_eq!(
            sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(sniff(b"MZ\x90\x00 an executable"), None);
        assert_eq!(sniff(b"\x7FELF"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn a_wide_image_gets_a_320_pixel_thumbnail_in_proportion() {
        let processed = process(&png(1000, 500), ImageFormat::Png).unwrap();
        assert_eq!((processed.width, processed.height), (1000, 500));
        let thumb = image::load_from_memory(&processed.thumbnail).unwrap();
        assert_eq!(thumb.dimensions(), (320, 160));
    }

    #[test]
    fn a_small_image_keeps_its_size_in_the_thumbnail() {
        let processed = process(&png(100, 40), ImageFormat::Png).unwrap();
        let thumb = image::load_from_memory(&processed.thumbnail).unwrap();
        assert_eq!(thumb.dimensions(), (100, 40));
    }

    #[test]
    fn upload_keys_have_one_shape() {
        let id = Uuid::now_v7();
        assert!(is_upload_key(&format!("{id}.png")));
        assert!(is_upload_key(&format!("{id}_thumb.jpg")));
        assert!(!is_upload_key(&format!("../{id}.png")));
        assert!(!is_upload_key(&format!("{id}.exe")));
        assert!(!is_upload_key("passwd"));
    }

    #[test]
    fn a_truncated_image_is_refused() {
        let mut bytes = png(50, 50);
        bytes.truncate(40);
        assert!(matches!(
            process(&bytes, ImageFormat::Png),
            Err(AppError::BadRequest(_))
        ));
    }
}
