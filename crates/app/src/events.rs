//! Domain events: written to the outbox in the transaction of the change they describe, then
//! turned into jobs and published by the relay.

use std::sync::Arc;

use inkcart_domain::{CommentId, EventId, OrderId, PostId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::{Clock, JobKind, Outbox, OutboxEvent, Tx};
use crate::{AppError, AppResult};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Event {
    UserRegistered {
        user_id: UserId,
    },
    EmailVerificationRequested {
        user_id: UserId,
    },
    PasswordResetRequested {
        user_id: UserId,
    },
    /// The account's address changed: the new one gets a verification link, the previous one
    /// (carried here, as the account no longer knows it) is told.
    EmailChanged {
        user_id: UserId,
        previous_email: String,
    },
    OrderCreated {
        order_id: OrderId,
        user_id: UserId,
    },
    OrderPaid {
        order_id: OrderId,
        user_id: UserId,
    },
    OrderShipped {
        order_id: OrderId,
        user_id: UserId,
    },
    OrderCancelled {
        order_id: OrderId,
        user_id: UserId,
    },
    CommentAdded {
        comment_id: CommentId,
        post_id: PostId,
        author_id: UserId,
    },
}

impl Event {
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::EmailVerificationRequested { .. } => "EmailVerificationRequested",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::EmailChanged { .. } => "EmailChanged",
            Self::OrderCreated { .. } => "OrderCreated",
            Self::OrderPaid { .. } => "OrderPaid",
            Self::OrderShipped { .. } => "OrderShipped",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::CommentAdded { .. } => "CommentAdded",
        }
    }

    /// The jobs the event causes, each enqueued once per event by the relay. An event that
    /// causes none is recorded as already dispatched ([`EventLog::outbox_event`]): the relay
    /// would only read it back and mark it, a second write of every such event (an order's, for
    /// one) on the path of the writes that record them.
    pub const fn jobs(&self) -> &'static [JobKind] {
        match self {
            Self::UserRegistered { .. } => &[JobKind::WelcomeEmail, JobKind::VerificationEmail],
            Self::EmailVerificationRequested { .. } => &[JobKind::VerificationEmail],
            Self::PasswordResetRequested { .. } => &[JobKind::PasswordResetEmail],
            Self::EmailChanged { .. } => &[JobKind::VerificationEmail, JobKind::EmailChangedNotice],
            Self::OrderPaid { .. } => &[JobKind::OrderConfirmationEmail],
            Self::OrderShipped { .. } => &[JobKind::OrderShippedEmail],
            Self::OrderCreated { .. } | Self::OrderCancelled { .. } | Self::CommentAdded { .. } => {
                &[]
            }
        }
    }

    /// The id of the aggregate the event is about (a user, an order or a comment, as its kind
    /// says).
    pub const fn subject(&self) -> Uuid {
        match self {
            Self::UserRegistered { user_id }
            | Self::EmailVerificationRequested { user_id }
            | Self::PasswordResetRequested { user_id }
            | Self::EmailChanged { user_id, .. } => user_id.as_uuid(),
            Self::OrderCreated { order_id, .. }
            | Self::OrderPaid { order_id, .. }
            | Self::OrderShipped { order_id, .. }
            | Self::OrderCancelled { order_id, .. } => order_id.as_uuid(),
            Self::CommentAdded { comment_id, .. } => comment_id.as_uuid(),
        }
    }
}

/// Where the features record their events: the outbox, stamped by the clock.
#[derive(Clone)]
pub(crate) struct EventLog {
    outbox: Arc<dyn Outbox>,
    clock: Arc<dyn Clock>,
}

impl EventLog {
    pub(crate) fn new(outbox: Arc<dyn Outbox>, clock: Arc<dyn Clock>) -> Self {
        Self { outbox, clock }
    }

    /// Writes `event` to the outbox in `tx`.
    pub(crate) async fn record(&self, tx: &mut dyn Tx, event: &Event) -> AppResult<()> {
        self.outbox.record(tx, &self.outbox_event(event)?).await
    }

    /// `event` as the outbox stores it, for a write that records it itself: dispatched as it is
    /// written when it causes no job ([`Event::jobs`]), still published to a broker.
    pub(crate) fn outbox_event(&self, event: &Event) -> AppResult<OutboxEvent> {
        let now = self.clock.now();
        Ok(OutboxEvent {
            id: EventId::generate(),
            kind: event.kind().to_owned(),
            subject_id: event.subject(),
            payload: serde_json::to_value(event).map_err(AppError::internal)?,
            created_at: now,
            dispatched_at: event.jobs().is_empty().then_some(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_their_type_and_camel_case_fields() {
        let id = Uuid::nil();
        let json = serde_json::to_value(Event::OrderPaid {
            order_id: OrderId::from_uuid(id),
            user_id: UserId::from_uuid(id),
        })
        .unwrap();
        assert_eq!(json["type"], "OrderPaid");
        assert_eq!(json["orderId"], id.to_string());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back.kind(), "OrderPaid");
    }
}
