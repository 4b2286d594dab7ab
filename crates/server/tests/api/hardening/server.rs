//! Hardening: the server and its resources. Image decompression bombs and the decoding bound.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse};

// ---------------------------------------------------------------------------------------------
// Uploads: decompression bombs and the decoding bound.

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

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A PNG whose header claims 11,500 × 11,500 pixels (529 MB decoded) over a few bytes of data:
/// the review's bomb, as far as anything that reads its header can tell.
fn png_bomb() -> Vec<u8> {
    let mut bytes = png(8, 8);
    bytes[16..20].copy_from_slice(&11_500u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&11_500u32.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

const BOUNDARY: &str = "inkcart-hardening-boundary";

async fn upload(app: &TestApp, user: &Login, bytes: &[u8]) -> TestResponse {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    app.send(
        Request::builder()
            .method("POST")
            .uri("/api/v1/uploads")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::AUTHORIZATION, format!("Bearer {}", user.token))
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

api_test!(
    async fn a_png_bomb_is_refused_from_its_header_without_being_decoded(app) {
        let user = app.viewer("bomber@example.com").await;
        let decoding = || app.state.app.image_decoding().stats();
        for _ in 0..4 {
            upload(&app, &user, &png_bomb()).await.assert_error(
                413,
                "PayloadTooLarge",
                "The image is 11500×11500 pixels (132.3 megapixels); at most 40.0 megapixels are accepted",
            );
        }
        assert_eq!(decoding().started, 0, "a bomb reached the decoder");
        let normal = upload(&app, &user, &png(64, 48)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
        assert_eq!((normal.body["width"].as_u64(), normal.body["height"].as_u64()), (Some(64), Some(48)));
        assert_eq!(decoding().started, 1);
    }
);

api_test!(
    async fn concurrent_uploads_never_decode_more_images_at_once_than_the_bound(app, |c| {
        c.upload_decode_concurrency = 2;
        c.upload_decode_wait = Duration::from_secs(60);
    }) {
        let user = app.viewer("busy@example.com").await;
        let image = png(700, 700);
        let uploads = (0..8).map(|_| upload(&app, &user, &image));
        for response in futures::future::join_all(uploads).await {
            assert_eq!(response.status, 201, "{}", response.text);
        }
        let stats = app.state.app.image_decoding().stats();
        assert_eq!(stats.started, 8);
        assert!(stats.peak <= 2, "{} images were decoded at once", stats.peak);
        assert_eq!(stats.active, 0);
        let normal = upload(&app, &user, &png(10, 10)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
    }
);

api_test!(
    async fn with_every_decoding_slot_taken_an_upload_gets_a_503_with_retry_after(app, |c| {
        c.upload_decode_concurrency = 1;
        c.upload_decode_wait = Duration::ZERO;
    }) {
        let user = app.viewer("patient@example.com").await;
        // The only slot is taken, as by a long decode.
        let held = app.state.app.image_decoding().slot().await.unwrap();
        let busy = upload(&app, &user, &png(32, 32)).await;
        busy.assert_error(503, "ServiceUnavailable", "Too many images are being processed; try again shortly");
        assert_eq!(busy.header("retry-after"), Some("2"));
        assert_eq!(app.state.app.image_decoding().stats().started, 0);
        drop(held);
        let normal = upload(&app, &user, &png(32, 32)).await;
        assert_eq!(normal.status, 201, "{}", normal.text);
    }
);
