use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::{Email, UserId};

/// What a user may do across the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    Admin,
    Editor,
    #[default]
    Viewer,
}

/// The customer tier that decides the discount on orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tier {
    #[default]
    Guest,
    Regular,
    Premium,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Unknown {kind} `{value}`: expected one of {}", expected.join(", "))]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

macro_rules! string_enum {
    ($ty:ident, $kind:literal, $($variant:ident => $text:literal),+ $(,)?) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(Role, "role", Admin => "admin", Editor => "editor", Viewer => "viewer");
string_enum!(Tier, "tier", Guest => "guest", Regular => "regular", Premium => "premium");

/// A display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

pub const NAME_MAX_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserNameError {
    #[error("Name must not be empty")]
    Empty,
    #[error("Name must be at most 100 characters")]
    TooLong,
    #[error("Name must not contain control characters")]
    ControlCharacters,
}

impl UserName {
    pub fn parse(input: &str) -> Result<Self, UserNameError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(UserNameError::Empty);
        }
        if name.chars().count() > NAME_MAX_LEN {
            return Err(UserNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(UserNameError::ControlCharacters);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registered user, without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<UserName>,
    pub role: Role,
    pub tier: Tier,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// The account as the caller of a use case.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.id,
            role: self.role,
        }
    }
}

/// Who is asking: the authenticated caller of a use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub id: UserId,
    pub role: Role,
}

impl Actor {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the actor has at least the given role (admin > editor > viewer).
    pub fn has_role(&self, needed: Role) -> bool {
        rank(self.role) >= rank(needed)
    }

    /// A user's own account may be changed by that user or by an admin.
    pub fn may_modify_user(&self, target: UserId) -> bool {
        self.id == target || self.is_admin()
    }

    /// An account's email, role, tier and verification state are for its owner and admins;
    /// others see its public fields only (id, name, creation time).
    pub fn may_see_private(&self, target: UserId) -> bool {
        self.id == target || self.is_admin()
    }

    /// Role and tier are privileges: only an admin hands them out.
    pub fn may_change_privileges(&self) -> bool {
        self.is_admin()
    }
}

const fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Editor => 1,
        Role::Admin => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn actor(role: Role) -> Actor {
        Actor {
            id: UserId::from_uuid(Uuid::now_v7()),
            role,
        }
    }

    #[test]
    fn roles_and_tiers_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>().unwrap(), *tier);
        }
    }

    #[test]
    fn an_unknown_role_names_the_accepted_ones() {
        let err = "superuser".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unknown role `superuser`: expected one of admin, editor, viewer"
        );
    }

    #[test]
    fn new_users_are_viewers_in_the_guest_tier() {
        assert_eq!(Role::default(), Role::Viewer);
        assert_eq!(Tier::default(), Tier::Guest);
    }

    #[test]
    fn a_user_may_modify_only_their_own_account_unless_admin() {
        let viewer = actor(Role::Viewer);
        let editor = actor(Role::Editor);
        let admin = actor(Role::Admin);
        assert!(viewer.may_modify_user(viewer.id));
        assert!(!viewer.may_modify_user(editor.id));
        assert!(!editor.may_modify_user(viewer.id));
        assert!(admin.may_modify_user(viewer.id));
    }

    #[test]
    fn private_fields_are_for_the_owner_and_admins() {
        let viewer = actor(Role::Viewer);
        let editor = actor(Role::Editor);
        assert!(viewer.may_see_private(viewer.id));
        assert!(!viewer.may_see_private(editor.id));
        assert!(!editor.may_see_private(viewer.id));
        assert!(actor(Role::Admin).may_see_private(viewer.id));
    }

    #[test]
    fn only_admins_change_roles_and_tiers() {
        assert!(!actor(Role::Viewer).may_change_privileges());
        assert!(!actor(Role::Editor).may_change_privileges());
        assert!(actor(Role::Admin).may_change_privileges());
    }

    #[test]
    fn roles_are_ordered_admin_over_editor_over_viewer() {
        assert!(actor(Role::Admin).has_role(Role::Editor));
        assert!(actor(Role::Editor).has_role(Role::Editor));
        assert!(!actor(Role::Viewer).has_role(Role::Editor));
        assert!(!actor(Role::Editor).has_role(Role::Admin));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            UserName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert_eq!(UserName::parse("   "), Err(UserNameError::Empty));
        assert_eq!(
            UserName::parse(&"x".repeat(101)),
            Err(UserNameError::TooLong)
        );
        assert_eq!(
            UserName::parse("a\u{0}b"),
            Err(UserNameError::ControlCharacters)
        );
    }
}
