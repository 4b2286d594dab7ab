//! Users, sign-up, login, token refresh with rotation, logout, and account management.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use inkcart_domain::email::EmailError;
use inkcart_domain::ids::SessionFamilyId;
use inkcart_domain::{
    Actor, Email, FieldError, Password, RefreshTokenId, Role, Tier, User, UserId, UserName,
};
use sha2::{Digest, Sha256};

use crate::error::messages;
use crate::events::Event;
use crate::page::Page;
use crate::ports::{AccessToken, Claims, RefreshSession, TokenPurpose, UserQuery, UserSortField};
use std::sync::Arc;

use crate::blog::PostCaches;
use crate::events::EventLog;
use crate::ports::{
    Clock, EmailTokenRepo, LoginThrottle, Outbox, PasswordHasher, SessionRepo, Store, TokenIssuer,
    UserRepo,
};
use crate::{AppError, AppResult, Deps, ErrorCode, Settings};

/// Sign-up input, as received.
#[derive(Debug, Clone, Default)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Login {
    pub email: String,
    pub password: String,
    /// The client's address, to throttle failed logins per (address, email).
    pub client_ip: String,
}

/// A successful login or refresh.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: AccessToken,
    /// The opaque refresh token; only its hash is stored.
    pub refresh_token: String,
    pub user: User,
}

/// Changes to a user account. `None` leaves a field as it is; `name: Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<Option<String>>,
    pub password: Option<String>,
    pub role: Option<Role>,
    pub tier: Option<Tier>,
    /// The caller's own password (an admin's, when they change another account): required to
    /// change the email or the password.
    pub current_password: Option<String>,
}

/// Whether `create-admin` made a new account or promoted an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    Created,
    Promoted,
    AlreadyAdmin,
}

const REFRESH_TOKEN_BYTES: usize = 32;

/// Accounts and their credentials: sign-up, login, sessions and tokens, email verification and
/// password reset.
#[derive(Clone)]
pub struct Identity {
    store: Arc<dyn Store>,
    users: Arc<dyn UserRepo>,
    sessions: Arc<dyn SessionRepo>,
    email_tokens: Arc<dyn EmailTokenRepo>,
    hasher: Arc<dyn PasswordHasher>,
    tokens: Arc<dyn TokenIssuer>,
    clock: Arc<dyn Clock>,
    login_throttle: Arc<dyn LoginThrottle>,
    /// Read for how recently an account asked for an email.
    outbox: Arc<dyn Outbox>,
    events: EventLog,
    /// Posts show their author's name, so a change of name or a deletion clears them.
    post_caches: PostCaches,
    access_token_ttl: std::time::Duration,
    refresh_token_ttl: std::time::Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    pub(crate) fn new(
        deps: &Deps,
        settings: &Settings,
        events: EventLog,
        post_caches: PostCaches,
    ) -> Self {
        Self {
            store: Arc::clone(&deps.store),
            users: Arc::clone(&deps.users),
            sessions: Arc::clone(&deps.sessions),
            email_tokens: Arc::clone(&deps.email_tokens),
            hasher: Arc::clone(&deps.hasher),
            tokens: Arc::clone(&deps.tokens),
            clock: Arc::clone(&deps.clock),
            login_throttle: Arc::clone(&deps.login_throttle),
            outbox: Arc::clone(&deps.outbox),
            events,
            post_caches,
            access_token_ttl: settings.access_token_ttl,
            refresh_token_ttl: settings.refresh_token_ttl,
        }
    }

    /// Registers a new account (role `viewer`, tier `guest`).
    pub async fn sign_up(&self, input: SignUp) -> AppResult<User> {
        let mut errors = Vec::new();
        let email = parse_email(&input.email, &mut errors);
        let password = parse_password(&input.password, &mut errors);
        let name = parse_name(input.name.as_deref(), &mut errors);
        let (Some(email), Some(password), Some(name), true) =
            (email, password, name, errors.is_empty())
        else {
            return Err(AppError::Validation(errors));
        };
        self.create_user(email, &password, name, Role::default())
            .await
    }

    async fn create_user(
        &self,
        email: Email,
        password: &Password,
        name: Option<UserName>,
        role: Role,
    ) -> AppResult<User> {
        let hash = self.hasher.hash(password).await?;
        let now = self.clock.now();
        let user = User {
            id: UserId::generate(),
            email,
            name,
            role,
            tier: Tier::default(),
            email_verified: false,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin().await?;
        self.users.insert(tx.as_mut(), &user, &hash).await?;
        self.events
            .record(tx.as_mut(), &Event::UserRegistered { user_id: user.id })
            .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Creates an admin account, or promotes the account that already has this email.
    pub async fn ensure_admin(
        &self,
        email: &str,
        password: &str,
    ) -> AppResult<(User, AdminOutcome)> {
        let mut errors = Vec::new();
        let email = parse_email(email, &mut errors);
        let password = parse_password(password, &mut errors);
        let (Some(email), Some(password)) = (email, password) else {
            return Err(AppError::Validation(errors));
        };
        if let Some((mut user, _)) = self.users.find_credentials(&email).await? {
            if user.role == Role::Admin {
                return Ok((user, AdminOutcome::AlreadyAdmin));
            }
            user.role = Role::Admin;
            user.updated_at = self.clock.now();
            let mut tx = self.store.begin().await?;
            if !self.users.update(tx.as_mut(), &user, None).await? {
                return Err(AppError::not_found("User"));
            }
            tx.commit().await?;
            return Ok((user, AdminOutcome::Promoted));
        }
        let user = self
            .create_user(email, &password, None, Role::Admin)
            .await?;
        Ok((user, AdminOutcome::Created))
    }

    /// Checks email and password; failed attempts are throttled per (client address, email).
    pub async fn login(&self, input: Login) -> AppResult<Session> {
        let mut errors = Vec::new();
        if input.email.trim().is_empty() {
            errors.push(FieldError::new("email", "Email is required"));
        }
        if input.password.is_empty() {
            errors.push(FieldError::new("password", "Password is required"));
        }
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let now = self.clock.now();
        let normalized = input.email.trim().to_lowercase();
        let throttle_key = format!("{}|{normalized}", input.client_ip);
        // The attempt is counted before the password is checked, so that concurrent attempts
        // cannot all pass the count while the first ones are still hashing.
        if let Err(retry_after_secs) = self.login_throttle.reserve(&throttle_key, now).await {
            return Err(AppError::RateLimited {
                code: ErrorCode::TooManyLoginAttempts,
                message: messages::TOO_MANY_LOGIN_ATTEMPTS.to_owned(),
                retry_after_secs,
            });
        }
        let user = match self.check_credentials(&input).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                return Err(AppError::Unauthorized(
                    ErrorCode::InvalidCredentials,
                    messages::INVALID_CREDENTIALS.to_owned(),
                ));
            }
            Err(e) => {
                self.login_throttle.release(&throttle_key, now).await;
                return Err(e);
            }
        };
        self.login_throttle.clear(&throttle_key).await;
        let family = SessionFamilyId::generate();
        let started = self.start_refresh_session(&user, family, now, None).await;
        let refresh_token = unless_actor_gone(self.users.as_ref(), user.id, started)
            .await?
            .ok_or_else(|| {
                AppError::internal("a new session replaced no token, yet was refused")
            })?;
        let access = self.issue_access_token(&user, now)?;
        Ok(Session {
            access,
            refresh_token,
            user,
        })
    }

    /// The account whose password `input` gives, if any. An unknown email costs the time of a
    /// verification too, so that it cannot be told apart from a wrong password.
    async fn check_credentials(&self, input: &Login) -> AppResult<Option<User>> {
        let found = match Email::parse(&input.email) {
            Ok(email) => self.users.find_credentials(&email).await?,
            Err(_) => None,
        };
        match found {
            Some((user, hash)) => Ok(self
                .hasher
                .verify(&input.password, &hash)
                .await?
                .then_some(user)),
            None => {
                self.hasher.verify_dummy(&input.password).await?;
                Ok(None)
            }
        }
    }

    /// Checks the password of the caller again before a change of credentials. Wrong guesses
    /// are throttled per account like logins, so that a stolen access token cannot be turned
    /// into the password by guessing.
    async fn reauthenticate(&self, actor: Actor, password: Option<&str>) -> AppResult<()> {
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(AppError::field(
                "currentPassword",
                messages::CURRENT_PASSWORD_REQUIRED,
            ));
        };
        let now = self.clock.now();
        let key = format!("reauth|{}", actor.id);
        if let Err(retry_after_secs) = self.login_throttle.reserve(&key, now).await {
            return Err(AppError::RateLimited {
                code: ErrorCode::TooManyPasswordAttempts,
                message: messages::TOO_MANY_PASSWORD_ATTEMPTS.to_owned(),
                retry_after_secs,
            });
        }
        let checked = async {
            let hash = self
                .users
                .password_hash(actor.id)
                .await?
                .ok_or_else(AppError::invalid_token)?;
            self.hasher.verify(password, &hash).await
        }
        .await;
        match checked {
            Ok(true) => {
                self.login_throttle.clear(&key).await;
                Ok(())
            }
            Ok(false) => Err(AppError::field(
                "currentPassword",
                messages::CURRENT_PASSWORD_WRONG,
            )),
            Err(e) => {
                self.login_throttle.release(&key, now).await;
                Err(e)
            }
        }
    }

    /// Rotates a refresh token: the presented one is spent and a new one of the same family is
    /// returned. Presenting a spent token again revokes the whole family (it was stolen, or
    /// the legitimate holder's copy was), so the newer token dies too.
    pub async fn refresh(&self, refresh_token: &str) -> AppResult<Session> {
        if refresh_token.is_empty() {
            return Err(AppError::field("refreshToken", "Refresh token is required"));
        }
        let now = self.clock.now();
        let hash = hash_refresh_token(refresh_token);
        let session = self
            .sessions
            .find_by_hash(&hash)
            .await?
            .ok_or_else(AppError::invalid_token)?;
        if session.revoked_at.is_some() {
            return Err(AppError::invalid_token());
        }
        if session.used_at.is_some() {
            self.revoke_family_after_reuse(&session, now).await?;
            return Err(AppError::invalid_token());
        }
        if session.expires_at <= now {
            return Err(AppError::invalid_token());
        }
        let user = self
            .users
            .find(session.user_id)
            .await?
            .ok_or_else(AppError::invalid_token)?;
        let started = self
            .start_refresh_session(&user, session.family_id, now, Some(session.id))
            .await;
        let new_token = unless_actor_gone(self.users.as_ref(), user.id, started).await?;
        let Some(new_token) = new_token else {
            // Another request spent this token between our read and our update.
            self.revoke_family_after_reuse(&session, now).await?;
            return Err(AppError::invalid_token());
        };
        let access = self.issue_access_token(&user, now)?;
        Ok(Session {
            access,
            refresh_token: new_token,
            user,
        })
    }

    async fn revoke_family_after_reuse(
        &self,
        session: &RefreshSession,
        now: DateTime<Utc>,
    ) -> AppResult<()> {
        tracing::warn!(
            user_id = %session.user_id,
            family_id = %session.family_id,
            "refresh token reused: revoking its session family"
        );
        let mut tx = self.store.begin().await?;
        self.sessions
            .revoke_family(tx.as_mut(), session.family_id, now)
            .await?;
        tx.commit().await
    }

    /// Stores a new refresh token of `family`, spending `replaces` in the same transaction.
    /// Returns `None` when `replaces` was already spent.
    async fn start_refresh_session(
        &self,
        user: &User,
        family: SessionFamilyId,
        now: DateTime<Utc>,
        replaces: Option<RefreshTokenId>,
    ) -> AppResult<Option<String>> {
        let token = new_refresh_token()?;
        let ttl = chrono::Duration::from_std(self.refresh_token_ttl).map_err(AppError::internal)?;
        let session = RefreshSession {
            id: RefreshTokenId::generate(),
            user_id: user.id,
            family_id: family,
            token_hash: hash_refresh_token(&token),
            created_at: now,
            expires_at: now + ttl,
            used_at: None,
            revoked_at: None,
        };
        let mut tx = self.store.begin().await?;
        if let Some(old) = replaces
            && !self.sessions.mark_used(tx.as_mut(), old, now).await?
        {
            return Ok(None);
        }
        self.sessions.insert(tx.as_mut(), &session).await?;
        tx.commit().await?;
        Ok(Some(token))
    }

    fn issue_access_token(&self, user: &User, now: DateTime<Utc>) -> AppResult<AccessToken> {
        self.tokens.issue(user, now, self.access_token_ttl)
    }

    /// Checks a bearer token's signature and lifetime (no database read): who it was issued to.
    pub fn verify_token(&self, bearer: &str) -> AppResult<Claims> {
        self.tokens
            .verify(bearer)
            .ok_or_else(AppError::invalid_token)
    }

    /// The account behind a bearer token. The token must be valid and its account must still
    /// exist; role and email are the account's as stored, so a deletion or a change of role
    /// applies at once, not when the token expires. One read by primary key.
    pub async fn authenticate(&self, bearer: &str) -> AppResult<User> {
        let claims = self.verify_token(bearer)?;
        self.users
            .find(claims.user_id)
            .await?
            .ok_or_else(AppError::invalid_token)
    }

    /// Revokes the session of one refresh token, if it is the caller's.
    pub async fn logout(&self, actor: Actor, refresh_token: &str) -> AppResult<()> {
        if refresh_token.is_empty() {
            return Err(AppError::field("refreshToken", "Refresh token is required"));
        }
        let hash = hash_refresh_token(refresh_token);
        let Some(session) = self.sessions.find_by_hash(&hash).await? else {
            return Ok(());
        };
        if session.user_id != actor.id || session.revoked_at.is_some() {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        self.sessions
            .revoke_family(tx.as_mut(), session.family_id, self.clock.now())
            .await?;
        tx.commit().await
    }

    /// Revokes every session of the caller.
    pub async fn logout_all(&self, actor: Actor) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        self.sessions
            .revoke_all_for_user(tx.as_mut(), actor.id, self.clock.now())
            .await?;
        tx.commit().await
    }

    pub async fn get_user(&self, id: UserId) -> AppResult<User> {
        self.users
            .find(id)
            .await?
            .ok_or_else(|| AppError::not_found("User"))
    }

    /// Several users at once (for batch loading); unknown ids are left out.
    pub async fn users_by_ids(&self, ids: &[UserId]) -> AppResult<Vec<User>> {
        self.users.find_many(ids).await
    }

    /// Lists accounts. Others' emails and roles are for admins: a non-admin's search looks in
    /// names only, and filtering by role or sorting by email is refused them (either would
    /// reveal what the answer hides).
    pub async fn list_users(&self, actor: Actor, query: &UserQuery) -> AppResult<Page<User>> {
        let mut query = query.clone();
        if actor.is_admin() {
            query.search_email = true;
        } else {
            if query.role.is_some() || query.sort.field == UserSortField::Email {
                return Err(AppError::insufficient_permissions());
            }
            query.search_email = false;
        }
        self.users.list(&query).await
    }

    /// `PUT`: email and name are replaced as given (a missing name clears it).
    pub async fn replace_user(
        &self,
        actor: Actor,
        id: UserId,
        email: String,
        name: Option<String>,
        mut rest: UserChanges,
    ) -> AppResult<User> {
        rest.email = Some(email);
        rest.name = Some(name);
        self.update_user(actor, id, rest).await
    }

    /// `PATCH`: only the given fields change. Role and tier changes need an admin. A new email
    /// or password needs the caller's current password (an admin's own, for another account).
    /// A new email is unverified until its link is followed; the link goes to the new address
    /// and the previous one is told. A new password revokes every session of the account and
    /// voids the reset links on their way.
    pub async fn update_user(
        &self,
        actor: Actor,
        id: UserId,
        changes: UserChanges,
    ) -> AppResult<User> {
        if !actor.may_modify_user(id) {
            return Err(AppError::not_owner());
        }
        let mut user = self.get_user(id).await?;
        let name_before = user.name.clone();
        let email_before = user.email.clone();
        let mut errors = Vec::new();
        if let Some(email) = changes
            .email
            .as_deref()
            .and_then(|e| parse_email(e, &mut errors))
        {
            user.email = email;
        }
        if let Some(name) = changes
            .name
            .as_ref()
            .and_then(|n| parse_name(n.as_deref(), &mut errors))
        {
            user.name = name;
        }
        let password = changes
            .password
            .as_deref()
            .and_then(|p| parse_password(p, &mut errors));
        if !errors.is_empty() {
            return Err(AppError::Validation(errors));
        }
        let privileges_change = changes.role.is_some_and(|r| r != user.role)
            || changes.tier.is_some_and(|t| t != user.tier);
        if privileges_change && !actor.may_change_privileges() {
            return Err(AppError::insufficient_permissions());
        }
        let email_changed = user.email != email_before;
        if email_changed || password.is_some() {
            self.reauthenticate(actor, changes.current_password.as_deref())
                .await?;
        }
        if email_changed {
            if self.asked_within_interval("EmailChanged", user.id).await? {
                return Err(AppError::RateLimited {
                    code: ErrorCode::RateLimited,
                    message: "The email was changed less than a minute ago".to_owned(),
                    retry_after_secs: 60,
                });
            }
            user.email_verified = false;
        }
        user.role = changes.role.unwrap_or(user.role);
        user.tier = changes.tier.unwrap_or(user.tier);
        let now = self.clock.now();
        user.updated_at = now;
        let hash = match &password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let mut tx = self.store.begin().await?;
        if !self
            .users
            .update(tx.as_mut(), &user, hash.as_deref())
            .await?
        {
            return Err(AppError::not_found("User"));
        }
        if hash.is_some() {
            self.sessions
                .revoke_all_for_user(tx.as_mut(), user.id, now)
                .await?;
            self.email_tokens
                .consume_all(tx.as_mut(), user.id, TokenPurpose::ResetPassword, now)
                .await?;
        }
        if email_changed {
            self.events
                .record(
                    tx.as_mut(),
                    &Event::EmailChanged {
                        user_id: user.id,
                        previous_email: email_before.into_string(),
                    },
                )
                .await?;
        }
        let committed = tx.commit().await;
        if user.name != name_before {
            // Posts and lists show their author's name.
            self.post_caches.posts_changed();
        }
        committed?;
        Ok(user)
    }

    /// Deletes an account (admins only).
    pub async fn delete_user(&self, actor: Actor, id: UserId) -> AppResult<()> {
        if !actor.is_admin() {
            return Err(AppError::insufficient_permissions());
        }
        let mut tx = self.store.begin().await?;
        if !self.users.delete(tx.as_mut(), id).await? {
            return Err(AppError::not_found("User"));
        }
        let committed = tx.commit().await;
        // Their posts and comments went with them.
        self.post_caches.posts_changed();
        committed
    }
}

/// The account `id`; `NotFound` when there is none.
pub(crate) async fn find_user(users: &dyn UserRepo, id: UserId) -> AppResult<User> {
    users
        .find(id)
        .await?
        .ok_or_else(|| AppError::not_found("User"))
}

/// Passes `result` on, unless it failed because the account of `actor` is gone: deleted after
/// its token was checked, so that a foreign key refused the row (or the account was not found).
/// That is answered as a stale token, 401, never as the database's error.
pub(crate) async fn unless_actor_gone<T>(
    users: &dyn UserRepo,
    actor: UserId,
    result: AppResult<T>,
) -> AppResult<T> {
    match result {
        Err(AppError::Internal(_) | AppError::NotFound(_))
            if matches!(users.find(actor).await, Ok(None)) =>
        {
            Err(AppError::invalid_token())
        }
        other => other,
    }
}

fn parse_email(input: &str, errors: &mut Vec<FieldError>) -> Option<Email> {
    Email::parse(input)
        .map_err(|e| {
            let message = match e {
                EmailError::Empty => "Email is required",
                EmailError::Invalid => "Invalid email format",
            };
            errors.push(FieldError::new("email", message));
        })
        .ok()
}

fn parse_password(input: &str, errors: &mut Vec<FieldError>) -> Option<Password> {
    if input.is_empty() {
        errors.push(FieldError::new("password", "Password is required"));
        return None;
    }
    Password::parse(input)
        .map_err(|e| errors.push(FieldError::new("password", e.to_string())))
        .ok()
}

/// `None` → no name; `Some(None)` on failure is avoided by returning the outer `None`.
fn parse_name(input: Option<&str>, errors: &mut Vec<FieldError>) -> Option<Option<UserName>> {
    match input {
        None => Some(None),
        Some(raw) => UserName::parse(raw)
            .map(Some)
            .map_err(|e| errors.push(FieldError::new("name", e.to_string())))
            .ok(),
    }
}

fn new_refresh_token() -> AppResult<String> {
    let mut bytes = [0u8; REFRESH_TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal(format!("random source: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Refresh tokens carry 256 random bits, so a fast hash is enough to keep them unusable if the
/// table leaks (no dictionary to attack).
pub fn hash_refresh_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How often one account may ask for a verification or reset email.
pub const EMAIL_REQUEST_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

impl Identity {
    /// Whether `user` caused an `event` within [`EMAIL_REQUEST_INTERVAL`].
    async fn asked_within_interval(&self, event: &str, user: UserId) -> AppResult<bool> {
        let since = self.clock.now() - EMAIL_REQUEST_INTERVAL;
        let recent = self
            .outbox
            .count_since(event, user.as_uuid(), since)
            .await?;
        Ok(recent > 0)
    }

    /// Sends (through the outbox) a new verification link to the caller, at most once a minute.
    pub async fn request_email_verification(&self, actor: Actor) -> AppResult<()> {
        let user = self.get_user(actor.id).await?;
        if user.email_verified {
            return Err(AppError::conflict(
                ErrorCode::EmailAlreadyVerified,
                "Email is already verified",
            ));
        }
        if self
            .asked_within_interval("EmailVerificationRequested", user.id)
            .await?
        {
            return Err(AppError::RateLimited {
                code: ErrorCode::RateLimited,
                message: "A verification email was sent less than a minute ago".to_owned(),
                retry_after_secs: 60,
            });
        }
        let mut tx = self.store.begin().await?;
        self.events
            .record(
                tx.as_mut(),
                &Event::EmailVerificationRequested { user_id: user.id },
            )
            .await?;
        tx.commit().await
    }

    /// Spends a verification token and marks its user's email verified, if the account still
    /// has the address the token was sent to (a link to a previous address verifies nothing).
    pub async fn confirm_email(&self, token: &str) -> AppResult<()> {
        let record = self.usable_token(token, TokenPurpose::VerifyEmail).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !self
            .email_tokens
            .consume(tx.as_mut(), record.id, now)
            .await?
        {
            return Err(invalid_email_token());
        }
        // Conditional on the address in the same statement: an email change committing
        // meanwhile cannot be marked verified by a link to the previous address.
        if !self
            .email_tokens
            .mark_verified(tx.as_mut(), record.user_id, record.email.as_deref(), now)
            .await?
        {
            return Err(invalid_email_token());
        }
        tx.commit().await
    }

    /// Starts a password reset for `email`. Answers the same whether or not the account
    /// exists; sends at most one email a minute per account.
    pub async fn request_password_reset(&self, email: &str) -> AppResult<()> {
        let mut errors = Vec::new();
        let Some(email) = parse_email(email, &mut errors) else {
            return Err(AppError::Validation(errors));
        };
        let Some((user, _)) = self.users.find_credentials(&email).await? else {
            return Ok(());
        };
        if self
            .asked_within_interval("PasswordResetRequested", user.id)
            .await?
        {
            return Ok(());
        }
        let mut tx = self.store.begin().await?;
        self.events
            .record(
                tx.as_mut(),
                &Event::PasswordResetRequested { user_id: user.id },
            )
            .await?;
        tx.commit().await
    }

    /// Sets a new password with a reset token; every session of the account ends.
    pub async fn confirm_password_reset(&self, token: &str, new_password: &str) -> AppResult<()> {
        let mut errors = Vec::new();
        let password = parse_password(new_password, &mut errors).ok_or_else(|| {
            AppError::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldError::new("newPassword", e.message))
                    .collect(),
            )
        })?;
        let record = self
            .usable_token(token, TokenPurpose::ResetPassword)
            .await?;
        let hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !self
            .email_tokens
            .consume(tx.as_mut(), record.id, now)
            .await?
        {
            return Err(invalid_email_token());
        }
        // Only the password is written, and only while the account has the address the link
        // went to: a link sent to a previous address resets nothing, even racing the change.
        if !self
            .users
            .set_password(
                tx.as_mut(),
                record.user_id,
                &hash,
                record.email.as_deref(),
                now,
            )
            .await?
        {
            return Err(invalid_email_token());
        }
        self.sessions
            .revoke_all_for_user(tx.as_mut(), record.user_id, now)
            .await?;
        tx.commit().await
    }

    async fn usable_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
    ) -> AppResult<crate::ports::EmailToken> {
        if token.is_empty() {
            return Err(AppError::field("token", "token is required"));
        }
        let record = self
            .email_tokens
            .find_by_hash(&hash_refresh_token(token))
            .await?
            .filter(|t| t.purpose == purpose)
            .ok_or_else(invalid_email_token)?;
        if record.used_at.is_some() || record.expires_at <= self.clock.now() {
            return Err(invalid_email_token());
        }
        Ok(record)
    }
}

fn invalid_email_token() -> AppError {
    AppError::BadRequest(
        ErrorCode::InvalidEmailToken,
        "Invalid or expired token".to_owned(),
    )
}
