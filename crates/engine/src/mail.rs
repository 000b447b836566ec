//! Outgoing mail (password resets, later invitations and notices) over
//! SMTP with lettre: TLS or STARTTLS to remote relays, plain SMTP only to a
//! relay on this host. Messages carry what the recipient needs and nothing
//! else; sending happens in the background so callers' timing reveals
//! nothing.

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// How to reach the SMTP relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The sender address.
    pub from: String,
}

/// Transport security to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Implicit TLS (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    StartTls,
    /// No TLS: only for a relay on this host.
    Plain,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    #[error("mail is not configured ([smtp] in the configuration)")]
    NotConfigured,
    #[error("bad address or message: {0}")]
    Message(String),
    #[error("the SMTP relay refused or could not be reached: {0}")]
    Transport(String),
}

/// The mail sender of a deployment.
#[derive(Clone)]
pub struct Mailer {
    inner: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("configured", &self.inner.is_some()).finish()
    }
}

impl Mailer {
    /// No relay: every send fails with `NotConfigured`.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn new(settings: &SmtpSettings) -> Result<Self, MailError> {
        let from: Mailbox = settings.from.parse().map_err(|e| MailError::Message(format!("smtp.from: {e}")))?;
        let tls = || TlsParameters::new(settings.host.clone()).map_err(|e| MailError::Transport(e.to_string()));
        let transport = match settings.security {
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
                .port(settings.port)
                .tls(Tls::Wrapper(tls()?))
                .build(),
            SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
                .port(settings.port)
                .tls(Tls::Required(tls()?))
                .build(),
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host).port(settings.port).build()
            }
        };
        Ok(Self { inner: Some((transport, from)) })
    }

    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    /// Sends a plain-text message and waits for the relay's answer.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let (transport, from) = self.inner.as_ref().ok_or(MailError::NotConfigured)?;
        let to: Mailbox = to.parse().map_err(|e| MailError::Message(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Message(e.to_string()))?;
        transport.send(message).await.map(drop).map_err(|e| MailError::Transport(describe(&e)))
    }

    /// Sends in the background; failures are logged (without the message,
    /// and without the relay's text, which may repeat the address).
    pub fn send_later(&self, to: String, subject: &'static str, body: String) {
        let mailer = self.clone();
        tokio::spawn(async move {
            match mailer.send(&to, subject, body).await {
                Ok(()) => metrics::counter!("strongroom_mail_sent_total", "kind" => subject).increment(1),
                Err(e) => {
                    metrics::counter!("strongroom_mail_failed_total", "kind" => subject).increment(1);
                    tracing::warn!(error = %e, kind = subject, "mail not sent");
                }
            }
        });
    }
}

/// What went wrong with the relay, by kind and reply code only: a relay's
/// reply text often repeats the recipient's address.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let kind = if e.is_permanent() {
        "permanent error"
    } else if e.is_transient() {
        "temporary error"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_tls() {
        "TLS failure"
    } else {
        "connection or protocol failure"
    };
    match e.status() {
        Some(code) => format!("relay answered {kind} (code {code})"),
        None => format!("relay: {kind}"),
    }
}
