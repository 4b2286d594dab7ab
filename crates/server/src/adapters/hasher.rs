use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use inkcart_app::ports::PasswordHasher;
use inkcart_app::{AppError, AppResult};
use inkcart_domain::Password;

/// argon2id with the crate's recommended parameters (19 MiB, 2 passes), run on the blocking
/// pool so that hashing never stalls the async workers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Argon2Hasher;

fn hash_blocking(password: &str) -> AppResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::internal(format!("password hashing failed: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(format!("hashing task failed: {e}")))?
}

/// A hash of a random password, verified against when the email is unknown.
fn dummy_hash() -> AppResult<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_blocking("an unguessable placeholder password 7Qx")?;
    Ok(DUMMY.get_or_init(|| hash))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> AppResult<String> {
        let password = password.expose().to_owned();
        blocking(move || hash_blocking(&password)).await
    }

    async fn verify(&self, password: &str, hash: &str) -> AppResult<bool> {
        let (password, hash) = (password.to_owned(), hash.to_owned());
        blocking(move || {
            match Argon2::default().verify_password(password.as_bytes(), hash.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(e) => Err(AppError::internal(format!(
                    "stored password hash unusable: {e}"
                ))),
            }
        })
        .await
    }

    async fn verify_dummy(&self, password: &str) -> AppResult<()> {
        let password = password.to_owned();
        blocking(move || {
            let hash = dummy_hash()?;
            let _ = Argon2::default().verify_password(password.as_bytes(), hash);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let hasher = Argon2Hasher;
        let password = Password::parse("Secret123").unwrap();
        let hash = hasher.hash(&password).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("Secret123", &hash).await.unwrap());
        assert!(!hasher.verify("Secret124", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = Argon2Hasher;
        let password = Password::parse("Secret123").unwrap();
        assert_ne!(
            hasher.hash(&password).await.unwrap(),
            hasher.hash(&password).await.unwrap()
        );
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_internal_error() {
        let err = Argon2Hasher
            .verify("Secret123", "not-a-hash")
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Internal(_)));
    }
}
