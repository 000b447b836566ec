//! Organisations: the tenants whose data Strongroom keeps apart.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::OrgId;

/// Why a value was refused; the message names the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The value's length is outside the allowed range.
    #[error("must be {min} to {max} characters long")]
    Length { min: usize, max: usize },
    /// The value contains a character outside the allowed set.
    #[error("may contain only {allowed}")]
    Charset { allowed: &'static str },
    /// The value is not one of a fixed set.
    #[error("must be one of: {expected}")]
    OneOf { expected: &'static str },
}

/// The URL-safe handle of an organisation: 3 to 63 characters of lowercase
/// ASCII letters, digits and inner hyphens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub const MIN: usize = 3;
    pub const MAX: usize = 63;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if !(Self::MIN..=Self::MAX).contains(&s.len()) {
            return Err(ParseError::Length { min: Self::MIN, max: Self::MAX });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !s.chars().all(allowed) || s.starts_with('-') || s.ends_with('-') {
            return Err(ParseError::Charset { allowed: "lowercase letters, digits and inner hyphens" });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrgSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The display name of an organisation: 1 to 200 characters, no control
/// characters, surrounding whitespace trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OrgName(String);

impl OrgName {
    pub const MAX: usize = 200;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() || s.chars().count() > Self::MAX {
            return Err(ParseError::Length { min: 1, max: Self::MAX });
        }
        if s.chars().any(char::is_control) {
            return Err(ParseError::Charset { allowed: "printable characters" });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for OrgName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether an organisation may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgStatus {
    Active,
    Suspended,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(ParseError::OneOf { expected: "active, suspended" }),
        }
    }
}

/// What is needed to create an organisation.
#[derive(Clone, Debug)]
pub struct NewOrganisation {
    pub slug: OrgSlug,
    pub name: OrgName,
}

/// An organisation as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Organisation {
    pub id: OrgId,
    pub slug: OrgSlug,
    pub name: OrgName,
    pub status: OrgStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_slug(input: &str, ok: bool) {
        assert_eq!(OrgSlug::parse(input).is_ok(), ok, "slug {input:?}");
    }

    #[test]
    fn slugs() {
        for (input, ok) in [
            ("acme", true),
            ("acme-care-42", true),
            ("ab", false),
            ("Acme", false),
            ("-acme", false),
            ("acme-", false),
            ("ac me", false),
            ("acmé", false),
            (&"a".repeat(63), true),
            (&"a".repeat(64), false),
        ] {
            check_slug(input, ok);
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(OrgName::parse("  Acme Care  ").map(|n| n.0), Ok("Acme Care".into()));
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse("a\u{0}b").is_err());
        assert!(OrgName::parse(&"é".repeat(200)).is_ok());
        assert!(OrgName::parse(&"é".repeat(201)).is_err());
    }

    #[test]
    fn status_round_trips() {
        for s in [OrgStatus::Active, OrgStatus::Suspended] {
            assert_eq!(OrgStatus::parse(s.as_str()), Ok(s));
        }
        assert!(OrgStatus::parse("deleted").is_err());
    }
}
