//! Support sessions as stored: who asked for access to which organisation,
//! why, for how long and to what, and what became of the request.

use domain::{OrgId, ProfileId, UserId};

/// Where a support session stands. An approved session is active until
/// it expires or is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupportStatus {
    Requested,
    Approved,
    Denied,
    Revoked,
}

impl SupportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => Self::Requested,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// One support session. Times are unix microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupportSessionRow {
    pub org_id: OrgId,
    pub id: uuid::Uuid,
    pub operator: UserId,
    pub reason: String,
    /// Read-write, not only read.
    pub write: bool,
    /// The records it is limited to; empty: all of the organisation's.
    pub profiles: Vec<ProfileId>,
    pub duration_secs: i64,
    pub status: SupportStatus,
    pub requested_at: i64,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// `user:<uuid>` of whoever revoked it.
    pub ended_by: Option<String>,
    pub summary_sent: bool,
}

impl SupportSessionRow {
    /// Approved and not yet expired at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.status == SupportStatus::Approved && self.expires_at.is_some_and(|t| t > now)
    }
}

/// A user's grant of support access to their own account. Times are unix
/// microseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountGrantRow {
    pub id: uuid::Uuid,
    pub user: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    /// `user:<uuid>` of whoever ended it.
    pub ended_by: Option<String>,
    pub end_notice_sent: bool,
}

impl AccountGrantRow {
    /// Not ended and not expired at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.ended_at.is_none() && self.expires_at > now
    }
}

pub(crate) fn profiles_text(p: &[ProfileId]) -> String {
    p.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
}

pub(crate) fn parse_profiles(text: &str) -> crate::Result<Vec<ProfileId>> {
    text.split_whitespace()
        .map(|t| {
            t.parse().map_err(|_| crate::StoreError::Corrupt { what: "support session", why: "bad profile id".into() })
        })
        .collect()
}

pub(crate) fn parse_status(text: &str) -> crate::Result<SupportStatus> {
    SupportStatus::parse(text)
        .ok_or_else(|| crate::StoreError::Corrupt { what: "support session", why: format!("status {text:?}") })
}
