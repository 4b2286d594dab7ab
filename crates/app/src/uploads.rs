//! Image uploads: the type is told by the bytes, never by the name; a thumbnail is made beside
//! the original; both go to the configured object storage.
//!
//! A few hundred bytes of PNG can claim a canvas of gigabytes, so an image's dimensions are read
//! from its header and held against a pixel budget before anything is decoded; decoding runs on
//! the blocking pool, a bounded number of images at a time, under an allocation limit derived
//! from the same budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use image::{GenericImageView as _, ImageDecoder as _, ImageError, ImageFormat};
use inkcart_domain::Actor;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::ports::ObjectStorage;
use crate::{AppError, AppResult, ErrorCode};

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

/// How uploaded images may be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLimits {
    /// Most pixels (width × height) an accepted image may have, told from its header.
    pub max_pixels: u64,
    /// Images decoded at once, each on a thread of the blocking pool.
    pub decode_concurrency: usize,
    /// How long an upload waits for a decoding slot before its 503; zero: not at all.
    pub decode_wait: Duration,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            decode_concurrency: std::thread::available_parallelism().map_or(1, usize::from),
            decode_wait: Duration::from_secs(5),
        }
    }
}

/// Bytes per pixel of 8-bit RGBA, the widest pixel most images decode to.
const RGBA8: u64 = 4;

impl ImageLimits {
    /// The most the decoded pixels may take: the pixel budget in 8-bit RGBA. An image with wider
    /// pixels (16 bits per channel) gets fewer of them.
    pub fn max_decoded_bytes(&self) -> u64 {
        self.max_pixels.saturating_mul(RGBA8)
    }

    /// The decoder's allocation limit: the decoded pixels, and as much again for its own
    /// buffers.
    fn max_alloc(&self) -> u64 {
        self.max_decoded_bytes().saturating_mul(2)
    }

    fn decode_limits(&self) -> image::Limits {
        let mut limits = image::Limits::no_limits();
        limits.max_alloc = Some(self.max_alloc());
        limits
    }

    /// Refuses an image whose header claims more than the budget.
    fn admit(&self, header: &Header) -> AppResult<()> {
        let pixels = u64::from(header.width) * u64::from(header.height);
        if pixels > self.max_pixels {
            return Err(AppError::TooLarge(format!(
                "The image is {}×{} pixels ({}); at most {} are accepted",
                header.width,
                header.height,
                megapixels(pixels),
                megapixels(self.max_pixels)
            )));
        }
        if header.decoded_bytes > self.max_decoded_bytes() {
            return Err(AppError::TooLarge(format!(
                "The image is {}×{} pixels of {} bytes each; decoded it would take {} MB, more than the {} MB accepted",
                header.width,
                header.height,
                header.decoded_bytes / pixels.max(1),
                header.decoded_bytes.div_ceil(1_000_000),
                self.max_decoded_bytes() / 1_000_000
            )));
        }
        Ok(())
    }
}

fn megapixels(pixels: u64) -> String {
    // Rounded to a tenth: 132,250,000 → "132.3 megapixels".
    let tenths = (pixels + 50_000) / 100_000;
    format!("{}.{} megapixels", tenths / 10, tenths % 10)
}

/// What an image's header tells before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    width: u32,
    height: u32,
    /// The size of the decoded pixels (width × height × bytes per pixel).
    decoded_bytes: u64,
}

/// The slots images are decoded in: at most `decode_concurrency` at once, each waiting at most
/// `decode_wait` for its turn.
#[derive(Debug)]
pub struct DecodeGate {
    slots: Arc<Semaphore>,
    wait: Duration,
    active: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicU64,
}

/// What the decoding slots have seen, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeStats {
    /// Images being decoded now.
    pub active: usize,
    /// The most images ever decoded at once.
    pub peak: usize,
    /// Decodes started since the process began.
    pub started: u64,
}

/// A decoding slot, held until dropped.
#[derive(Debug)]
pub struct DecodeSlot {
    _permit: OwnedSemaphorePermit,
}

/// Seconds a client is told to wait when every slot stayed taken.
const BUSY_RETRY_AFTER_SECS: u64 = 2;

impl DecodeGate {
    pub fn new(limits: &ImageLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.decode_concurrency.max(1))),
            wait: limits.decode_wait,
            active: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            started: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> DecodeStats {
        DecodeStats {
            active: self.active.load(Ordering::SeqCst),
            peak: self.peak.load(Ordering::SeqCst),
            started: self.started.load(Ordering::SeqCst),
        }
    }

    /// A decoding slot, waiting for one at most the configured time; then `Busy`.
    pub async fn slot(&self) -> AppResult<DecodeSlot> {
        let slots = Arc::clone(&self.slots);
        let permit = if self.wait.is_zero() {
            slots.try_acquire_owned().ok()
        } else {
            tokio::time::timeout(self.wait, slots.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
        };
        permit
            .map(|permit| DecodeSlot { _permit: permit })
            .ok_or_else(|| AppError::Busy {
                message: "Too many images are being processed; try again shortly".to_owned(),
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            })
    }

    /// Counts a decode from now until the guard is dropped.
    fn begin(self: &Arc<Self>) -> ActiveDecode {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        ActiveDecode(Arc::clone(self))
    }
}

struct ActiveDecode(Arc<DecodeGate>);

impl Drop for ActiveDecode {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

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

fn unreadable() -> AppError {
    AppError::BadRequest(
        ErrorCode::NotAnImage,
        "The image could not be read".to_owned(),
    )
}

fn decode_error(err: &ImageError) -> AppError {
    match err {
        ImageError::Limits(_) => AppError::TooLarge(
            "The image needs more memory to decode than uploads are allowed".to_owned(),
        ),
        _ => unreadable(),
    }
}

/// Reads the header only: dimensions and the size of the decoded pixels.
fn inspect(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> AppResult<Header> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits.decode_limits());
    let decoder = reader.into_decoder().map_err(|e| decode_error(&e))?;
    let (width, height) = decoder.dimensions();
    Ok(Header {
        width,
        height,
        decoded_bytes: decoder.total_bytes(),
    })
}

fn process(bytes: &[u8], format: ImageFormat, limits: &ImageLimits) -> AppResult<Processed> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits.decode_limits());
    let image = reader.decode().map_err(|e| decode_error(&e))?;
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

/// Uploaded images and the files they are stored as.
#[derive(Clone)]
pub struct Uploads {
    storage: Arc<dyn ObjectStorage>,
    limits: ImageLimits,
    /// The slots images are decoded in.
    decoding: Arc<DecodeGate>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Uploads {
    pub(crate) fn new(storage: Arc<dyn ObjectStorage>, limits: ImageLimits) -> Self {
        let decoding = Arc::new(DecodeGate::new(&limits));
        Self {
            storage,
            limits,
            decoding,
        }
    }

    /// Stores an image and its thumbnail (any signed-in user). An image whose header claims
    /// more than the pixel budget is refused before it is decoded.
    pub async fn upload_image(&self, actor: Actor, bytes: Bytes) -> AppResult<Upload> {
        let format = sniff(&bytes)
            .ok_or_else(|| AppError::BadRequest(ErrorCode::NotAnImage, NOT_AN_IMAGE.to_owned()))?;
        let (content_type, ext) = describe(format);
        let limits = &self.limits;
        let header = {
            let (input, limits) = (bytes.clone(), limits.clone());
            blocking(move || inspect(&input, format, &limits)).await?
        };
        limits.admit(&header)?;
        let slot = self.decoding.slot().await?;
        let processed = {
            let (input, limits, gate) = (bytes.clone(), limits.clone(), Arc::clone(&self.decoding));
            // The slot moves into the task: a request given up while its image decodes still
            // holds the slot until the decode ends.
            blocking(move || {
                let _slot = slot;
                let _decoding = gate.begin();
                process(&input, format, &limits)
            })
            .await?
        };
        // UUID v7 keys sort by upload time.
        let stem = Uuid::now_v7().to_string();
        let key = format!("{stem}.{ext}");
        let (thumb_type, thumb_ext) = describe(processed.thumbnail_format);
        let thumbnail_key = format!("{stem}_thumb.{thumb_ext}");
        let size = bytes.len() as u64;
        self.storage.put(&key, bytes, content_type).await?;
        self.storage
            .put(&thumbnail_key, Bytes::from(processed.thumbnail), thumb_type)
            .await?;
        tracing::info!(user = %actor.id, %key, size, "image uploaded");
        Ok(Upload {
            url: self.storage.public_url(&key),
            thumbnail_url: self.storage.public_url(&thumbnail_key),
            key,
            content_type,
            size,
            width: processed.width,
            height: processed.height,
            thumbnail_key,
        })
    }

    /// How image decoding is going (slots in use, the most ever in use).
    pub fn image_decoding(&self) -> &DecodeGate {
        &self.decoding
    }

    /// A stored file with its content type, for `/files/{key}`.
    pub async fn file(&self, key: &str) -> AppResult<(Bytes, &'static str)> {
        if !is_upload_key(key) {
            return Err(AppError::not_found("File"));
        }
        let bytes = self
            .storage
            .get(key)
            .await?
            .ok_or_else(|| AppError::not_found("File"))?;
        Ok((bytes, content_type_of(key)))
    }
}

/// Runs image work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AppError::internal(format!("image task failed: {e}")))?
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

    /// The CRC of a PNG chunk (type and data).
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A small real PNG whose header claims `width` × `height` (a decompression bomb's header).
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = png(8, 8);
        bytes[16..20].copy_from_slice(&width.to_be_bytes());
        bytes[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        bytes
    }

    fn encoded(image: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A small real JPEG whose frame header claims `width` × `height`.
    fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = encoded(
            image::DynamicImage::ImageRgb8(image::RgbImage::new(8, 8)),
            ImageFormat::Jpeg,
        );
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
        bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
        bytes
    }

    /// A small real GIF whose logical screen is `width` × `height`.
    fn gif_claiming(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = encoded(
            image::DynamicImage::ImageRgba8(image::RgbaImage::new(8, 8)),
            ImageFormat::Gif,
        );
        bytes[6..8].copy_from_slice(&width.to_le_bytes());
        bytes[8..10].copy_from_slice(&height.to_le_bytes());
        bytes
    }

    #[test]
    fn images_claiming_more_pixels_than_the_budget_are_refused_from_their_header() {
        let limits = ImageLimits::default();
        let bombs = [
            (
                png_claiming(11_500, 11_500),
                ImageFormat::Png,
                "11500×11500",
            ),
            (
                jpeg_claiming(65_000, 65_000),
                ImageFormat::Jpeg,
                "65000×65000",
            ),
            (
                gif_claiming(65_535, 65_535),
                ImageFormat::Gif,
                "65535×65535",
            ),
        ];
        for (bytes, format, size) in bombs {
            let header = inspect(&bytes, format, &limits).unwrap();
            match limits.admit(&header) {
                Err(AppError::TooLarge(message)) => {
                    assert!(message.contains(size), "{message}");
                    assert!(message.contains("at most 40.0 megapixels"), "{message}");
                }
                other => panic!("{format:?} bomb admitted: {other:?}"),
            }
        }
        let header = inspect(&png_claiming(11_500, 11_500), ImageFormat::Png, &limits).unwrap();
        let message = match limits.admit(&header) {
            Err(AppError::TooLarge(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message,
            "The image is 11500×11500 pixels (132.3 megapixels); at most 40.0 megapixels are accepted"
        );
    }

    #[test]
    fn an_image_at_the_budget_is_admitted_and_one_pixel_more_is_not() {
        let limits = ImageLimits {
            max_pixels: 100 * 100,
            ..ImageLimits::default()
        };
        let at = inspect(&png(100, 100), ImageFormat::Png, &limits).unwrap();
        assert_eq!(limits.admit(&at).ok(), Some(()));
        let over = inspect(&png(101, 100), ImageFormat::Png, &limits).unwrap();
        assert!(matches!(limits.admit(&over), Err(AppError::TooLarge(_))));
        assert!(process(&png(100, 100), ImageFormat::Png, &limits).is_ok());
    }

    #[test]
    fn pixels_of_sixteen_bits_per_channel_count_twice_against_the_budget() {
        let wide = encoded(
            image::DynamicImage::ImageRgba16(image::ImageBuffer::new(100, 100)),
            ImageFormat::Png,
        );
        let tight = ImageLimits {
            max_pixels: 15_000,
            ..ImageLimits::default()
        };
        let header = inspect(&wide, ImageFormat::Png, &tight).unwrap();
        assert_eq!(header.decoded_bytes, 100 * 100 * 8);
        assert!(matches!(tight.admit(&header), Err(AppError::TooLarge(_))));
        let roomy = ImageLimits {
            max_pixels: 20_000,
            ..ImageLimits::default()
        };
        assert_eq!(roomy.admit(&header).ok(), Some(()));
    }

    #[test]
    fn a_decoder_that_would_allocate_past_the_limit_is_stopped_with_too_large() {
        // The header check is skipped here: the allocation limit is the second line.
        let limits = ImageLimits {
            max_pixels: 10,
            ..ImageLimits::default()
        };
        assert!(matches!(
            process(&png(100, 100), ImageFormat::Png, &limits),
            Err(AppError::TooLarge(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_slot_taken_a_decode_waits_its_time_then_is_told_to_come_back() {
        let gate = DecodeGate::new(&ImageLimits {
            decode_concurrency: 1,
            decode_wait: Duration::from_secs(5),
            ..ImageLimits::default()
        });
        let held = gate.slot().await.unwrap();
        match gate.slot().await {
            Err(AppError::Busy {
                retry_after_secs, ..
            }) => assert!(retry_after_secs >= 1),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(held);
        assert!(gate.slot().await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_decode_gets_the_slot_when_it_is_freed() {
        let gate = Arc::new(DecodeGate::new(&ImageLimits {
            decode_concurrency: 1,
            decode_wait: Duration::from_secs(60),
            ..ImageLimits::default()
        }));
        let held = gate.slot().await.unwrap();
        let waiter = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.slot().await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[test]
    fn decodes_are_counted_while_they_run() {
        let gate = Arc::new(DecodeGate::new(&ImageLimits::default()));
        let first = gate.begin();
        let second = gate.begin();
        drop(first);
        assert_eq!(
            gate.stats(),
            DecodeStats {
                active: 1,
                peak: 2,
                started: 2
            }
        );
        drop(second);
        assert_eq!(gate.stats().active, 0);
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
        let processed =
            process(&png(1000, 500), ImageFormat::Png, &ImageLimits::default()).unwrap();
        assert_eq!((processed.width, processed.height), (1000, 500));
        let thumb = image::load_from_memory(&processed.thumbnail).unwrap();
        assert_eq!(thumb.dimensions(), (320, 160));
    }

    #[test]
    fn a_small_image_keeps_its_size_in_the_thumbnail() {
        let processed = process(&png(100, 40), ImageFormat::Png, &ImageLimits::default()).unwrap();
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
            process(&bytes, ImageFormat::Png, &ImageLimits::default()),
            Err(AppError::BadRequest(ErrorCode::NotAnImage, _))
        ));
    }
}
