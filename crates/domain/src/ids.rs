use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// The id of a user (UUID v7, time-ordered).
    UserId
);
id_type!(
    /// The id of a refresh-token session family: every token rotated from one login shares it.
    SessionFamilyId
);
id_type!(
    /// The id of a post.
    PostId
);
id_type!(
    /// The id of a comment.
    CommentId
);
id_type!(
    /// The id of a product.
    ProductId
);
id_type!(
    /// The id of an order.
    OrderId
);
id_type!(
    /// The id of a payment taken for an order.
    PaymentId
);
id_type!(
    /// The id of a background job.
    JobId
);
id_type!(
    /// The id of an event in the outbox.
    EventId
);
id_type!(
    /// The id of a stored refresh token.
    RefreshTokenId
);
id_type!(
    /// The id of a single-use token sent by email.
    EmailTokenId
);
