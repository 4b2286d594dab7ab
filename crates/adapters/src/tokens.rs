use std::time::Duration;

use chrono::{DateTime, Utc};
use inkcart_app::ports::{AccessToken, Claims, TokenIssuer};
use inkcart_app::{AppError, AppResult};
use inkcart_domain::{User, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// HS256 access tokens with the claims of API.md: `sub`, `email`, `role`, `iat`, `exp`, `jti`.
pub struct JwtIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtIssuer(<secret>)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct JwtClaims {
    sub: Uuid,
    email: String,
    role: String,
    iat: i64,
    exp: i64,
    jti: Uuid,
}

impl JwtIssuer {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

impl TokenIssuer for JwtIssuer {
    fn issue(&self, user: &User, now: DateTime<Utc>, ttl: Duration) -> AppResult<AccessToken> {
        let ttl_secs = i64::try_from(ttl.as_secs()).map_err(AppError::internal)?;
        let claims = JwtClaims {
            sub: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            iat: now.timestamp(),
            exp: now.timestamp() + ttl_secs,
            jti: Uuid::now_v7(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::internal(format!("signing a token failed: {e}")))?;
        Ok(AccessToken {
            token,
            expires_in: ttl,
        })
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        let data = decode::<JwtClaims>(token, &self.decoding, &self.validation).ok()?;
        Some(Claims {
            user_id: UserId::from_uuid(data.claims.sub),
            email: data.claims.email,
            role: data.claims.role.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inkcart_domain::{Email, Role, Tier};

    fn user() -> User {
        User {
            id: UserId::from_uuid(Uuid::now_v7()),
            email: Email::parse("a@b.io").unwrap(),
            name: None,
            role: Role::Editor,
            tier: Tier::Guest,
            email_verified: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn an_issued_token_verifies_to_its_user_and_role() {
        let issuer = JwtIssuer::new(&[7; 32]);
        let user = user();
        let token = issuer
            .issue(&user, Utc::now(), Duration::from_secs(900))
            .unwrap();
        assert_eq!(token.expires_in, Duration::from_secs(900));
        let claims = issuer.verify(&token.token).unwrap();
        assert_eq!(claims.user_id, user.id);
        assert_eq!(claims.role, Role::Editor);
        assert_eq!(claims.email, "a@b.io");
    }

    #[test]
    fn expired_forged_and_garbage_tokens_are_refused() {
        let issuer = JwtIssuer::new(&[7; 32]);
        let expired = issuer
            .issue(
                &user(),
                Utc::now() - chrono::Duration::hours(1),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(issuer.verify(&expired.token).is_none());
        let forged = JwtIssuer::new(&[8; 32])
            .issue(&user(), Utc::now(), Duration::from_secs(60))
            .unwrap();
        assert!(issuer.verify(&forged.token).is_none());
        assert!(issuer.verify("not.a.jwt").is_none());
    }
}
