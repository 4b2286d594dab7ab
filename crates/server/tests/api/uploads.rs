use std::io::Cursor;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use inkcart::config::StorageConfig;

use crate::api_test;
use crate::support::{Login, TestApp, TestResponse};

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A PNG of noise, which does not compress: its size grows with its area.
fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let img = image::RgbaImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, d] = state.to_le_bytes();
        image::Rgba([a, b, c, d | 1])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([200, 100, 50]));
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

const BOUNDARY: &str = "inkcart-test-boundary";

fn multipart(field: &str, filename: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(
    app: &TestApp,
    user: Option<&Login>,
    field: &str,
    filename: &str,
    bytes: &[u8],
) -> TestResponse {
    let mut request = Request::builder()
        .method("POST")
        .uri("/api/v1/uploads")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
    if let Some(user) = user {
        request = request.header("authorization", format!("Bearer {}", user.token));
    }
    app.send(
        request
            .body(Body::from(multipart(field, filename, bytes)))
            .unwrap(),
    )
    .await
}

/// The path of a local file URL (`http://127.0.0.1:3000/files/<key>` → `/files/<key>`).
fn local_path(url: &str) -> String {
    url.split_once("/files/")
        .map(|(_, key)| format!("/files/{key}"))
        .unwrap()
}

api_test!(
    async fn an_image_is_stored_with_a_thumbnail_and_served_back(app) {
        let user = app.viewer("uploader@example.com").await;
        let original = png(800, 400);
        let r = upload(&app, Some(&user), "file", "photo.png", &original).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.body["contentType"], "image/png");
        assert_eq!(r.body["size"], original.len());
        assert_eq!((r.body["width"].as_u64(), r.body["height"].as_u64()), (Some(800), Some(400)));
        let key = r.body["key"].as_str().unwrap();
        assert!(key.ends_with(".png"));
        assert_eq!(uuid::Uuid::parse_str(key.trim_end_matches(".png")).unwrap().get_version_num(), 7);
        assert_eq!(r.body["url"], format!("http://127.0.0.1:3000/files/{key}"));

        let served = app.get(&local_path(r.body["url"].as_str().unwrap()), None).await;
        assert_eq!(served.status, 200);
        assert_eq!(served.header("content-type"), Some("image/png"));
        assert_eq!(served.header("cache-control"), Some("public, max-age=31536000, immutable"));
        let thumb = app.get(&local_path(r.body["thumbnailUrl"].as_str().unwrap()), None).await;
        assert_eq!(thumb.status, 200);
        let thumb_bytes = app_bytes(&app, &local_path(r.body["thumbnailUrl"].as_str().unwrap())).await;
        let decoded = image::load_from_memory(&thumb_bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 160));
        assert_eq!(app_bytes(&app, &local_path(r.body["url"].as_str().unwrap())).await, original);

        let jpg = upload(&app, Some(&user), "file", "x.jpeg", &jpeg(100, 50)).await;
        assert_eq!(jpg.body["contentType"], "image/jpeg");
        assert!(jpg.body["thumbnailUrl"].as_str().unwrap().ends_with("_thumb.jpg"));

        // A post can use the upload as its cover.
        let editor = app.editor().await;
        let post = app.post("/api/v1/posts", Some(&editor.token), serde_json::json!({"title": "Cover", "content": "x", "coverImageKey": key})).await;
        assert_eq!(post.body["coverImageKey"], key);
    }
);

async fn app_bytes(app: &TestApp, path: &str) -> Vec<u8> {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let response = app
        .router
        .clone()
        .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

api_test!(
    async fn a_file_that_is_not_an_image_is_refused_whatever_its_name(app) {
        let user = app.viewer("uploader@example.com").await;
        let executable = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00 this program cannot be run in DOS mode";
        upload(&app, Some(&user), "file", "cute-cat.png", executable)
            .await
            .assert_error(400, "BadRequest", "Only PNG, JPEG, WebP and GIF images are accepted");
        let mut broken = png(100, 100);
        broken.truncate(60);
        upload(&app, Some(&user), "file", "broken.png", &broken)
            .await
            .assert_error(400, "BadRequest", "The image could not be read");
    }
);

api_test!(
    async fn uploads_need_a_user_a_file_field_and_multipart(app) {
        upload(&app, None, "file", "a.png", &png(10, 10)).await.assert_error(401, "Unauthorized", "No token provided");
        let user = app.viewer("uploader@example.com").await;
        let missing = upload(&app, Some(&user), "picture", "a.png", &png(10, 10)).await;
        missing.assert_error(400, "ValidationError", "Validation failed");
        assert_eq!(missing.error_fields(), ["file"]);
        let json = app.post("/api/v1/uploads", Some(&user.token), serde_json::json!({"file": "x"})).await;
        json.assert_error(415, "UnsupportedMediaType", "Expected a multipart/form-data body with a `file` field");
        app.get("/files/../../etc/passwd", None).await.assert_error(404, "NotFound", "Route not found");
        app.get(&format!("/files/{}.png", uuid::Uuid::now_v7()), None).await.assert_error(404, "NotFound", "File not found");
        app.get("/files/jwt-secret", None).await.assert_error(404, "NotFound", "File not found");
    }
);

api_test!(
    async fn an_upload_over_the_limit_is_a_413(app, |c| c.upload_limit_bytes = 20_000) {
        let user = app.viewer("uploader@example.com").await;
        let big = noisy_png(200, 200);
        assert!(big.len() > 20_000);
        upload(&app, Some(&user), "file", "big.png", &big)
            .await
            .assert_error(413, "PayloadTooLarge", "Request body is too large");
        let small = upload(&app, Some(&user), "file", "small.png", &png(20, 20)).await;
        assert_eq!(small.status, 201, "{}", small.text);
    }
);

/// A local S3-compatible server (moto, from PyPI) for the length of a test.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_required() -> bool {
    std::env::var("INKCART_REQUIRE_S3").is_ok_and(|v| v == "1" || v == "true")
}

async fn start_moto() -> Option<Moto> {
    let available = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            !s3_required(),
            "INKCART_REQUIRE_S3=1 but moto is not installed (pip install 'moto[server]')"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n*** moto not installed: skipping the S3 test (pip install 'moto[server]') ***\n"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    let client = reqwest::Client::new();
    loop {
        if client
            .get(format!("{}/", moto.endpoint))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "moto did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(moto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_round_trip_through_an_s3_compatible_server() {
    inkcart::install_crypto_provider();
    let Some(moto) = start_moto().await else {
        return;
    };
    let bucket = "inkcart-test";
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{}/{bucket}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    // Objects are public to read, as a bucket behind a CDN or a public site would be.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]
    });
    let made_public = client
        .put(format!("{}/{bucket}?policy", moto.endpoint))
        .body(policy.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        made_public.status().is_success(),
        "{}",
        made_public.status()
    );
    let endpoint = moto.endpoint.clone();
    let app = TestApp::new(inkcart_store::testing::sqlite().await, move |c| {
        c.storage = StorageConfig::S3 {
            endpoint: Some(endpoint),
            bucket: bucket.to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id: Some("testing".to_owned()),
            secret_access_key: Some("testing".to_owned()),
            path_style: true,
            public_url: None,
        };
    });
    let user = app.viewer("uploader@example.com").await;
    let original = jpeg(640, 480);
    let r = upload(&app, Some(&user), "file", "photo.jpg", &original).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = r.body["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!(
            "{}/{bucket}/uploads/{}",
            moto.endpoint,
            r.body["key"].as_str().unwrap()
        )
    );
    let fetched = reqwest::get(url).await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["content-type"], "image/jpeg");
    assert_eq!(fetched.bytes().await.unwrap().to_vec(), original);
    let thumb = reqwest::get(r.body["thumbnailUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let decoded = image::load_from_memory(&thumb).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (320, 240));
    // Served through inkcart's own route as well.
    let via_inkcart = app_bytes(&app, &format!("/files/{}", r.body["key"].as_str().unwrap())).await;
    assert_eq!(via_inkcart, original);
}
