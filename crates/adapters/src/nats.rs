//! Events out to NATS JetStream: `inkcart.events.<Type>`, with the event id as the message id
//! so that the broker drops a second publish of one event.

use std::time::Duration;

use async_nats::jetstream;
use async_trait::async_trait;
use inkcart_app::ports::{EventPublisher, OutboxEvent};
use inkcart_app::{AppError, AppResult};

pub const STREAM: &str = "INKCART_EVENTS";

pub struct NatsPublisher {
    js: jetstream::Context,
}

impl std::fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsPublisher")
    }
}

impl NatsPublisher {
    /// Connects and makes sure the stream exists.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(url).await?;
        let js = jetstream::new(client);
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["inkcart.events.>".to_owned()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the NATS stream {STREAM}: {e}"))?;
        Ok(Self { js })
    }
}

#[async_trait]
impl EventPublisher for NatsPublisher {
    async fn publish(&self, event: &OutboxEvent) -> AppResult<()> {
        let subject = format!("inkcart.events.{}", event.kind);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
        let body = serde_json::json!({
            "id": event.id,
            "type": event.kind,
            "subjectId": event.subject_id,
            "createdAt": event.created_at,
            "data": event.payload,
        });
        let ack = self
            .js
            .publish_with_headers(subject, headers, body.to_string().into())
            .await
            .map_err(|e| AppError::Unavailable(format!("NATS publish: {e}")))?;
        ack.await
            .map_err(|e| AppError::Unavailable(format!("NATS acknowledgement: {e}")))?;
        Ok(())
    }
}
