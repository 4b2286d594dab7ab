//! Sending email: over SMTP (lettre), or, with no SMTP configured, as `.eml` files in the data
//! dir, so that a developer can open what would have been sent.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use inkcart_app::ports::{Mail, Mailer};
use inkcart_app::{AppError, AppResult};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain, then upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a local relay or a test server only).
    None,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Builds the message lettre sends (and the file mailer writes).
fn message(from: &Mailbox, mail: &Mail) -> AppResult<Message> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| AppError::internal(format!("bad recipient {}: {e}", mail.to)))?;
    let body = MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone());
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone());
    let message = if mail.attachments.is_empty() {
        builder.multipart(body)
    } else {
        let mut mixed = MultiPart::mixed().multipart(body);
        for attachment in &mail.attachments {
            let content_type = ContentType::parse(&attachment.content_type)
                .map_err(|e| AppError::internal(format!("bad attachment type: {e}")))?;
            let part: SinglePart = Attachment::new(attachment.filename.clone())
                .body(attachment.bytes.clone(), content_type);
            mixed = mixed.singlepart(part);
        }
        builder.multipart(mixed)
    };
    message.map_err(|e| AppError::internal(format!("building an email failed: {e}")))
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(settings: &SmtpSettings, from: Mailbox) -> anyhow::Result<Self> {
        let builder = match settings.tls {
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)?,
            SmtpTls::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(Duration::from_secs(30)));
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> AppResult<()> {
        let message = message(&self.from, mail)?;
        self.transport
            .send(message)
            .await
            .map_err(|e| AppError::internal(format!("SMTP: {e}")))?;
        tracing::info!(to = %mail.to, subject = %mail.subject, "email sent");
        Ok(())
    }
}

/// Writes each message as an `.eml` file (the embedded default).
#[derive(Debug)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir, from })
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &Mail) -> AppResult<()> {
        let bytes = message(&self.from, mail)?.formatted();
        let path = self.dir.join(format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            uuid::Uuid::now_v7().simple()
        ));
        // Written aside and renamed, so that a crash never leaves half a message behind.
        let partial = path.with_extension("eml.part");
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(|e| AppError::internal(format!("writing {}: {e}", partial.display())))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| AppError::internal(format!("renaming {}: {e}", partial.display())))?;
        tracing::info!(to = %mail.to, subject = %mail.subject, file = %path.display(), "email written (no SMTP configured)");
        Ok(())
    }
}
