//! The lifecycle of a versioned key.

use serde::Serialize;

use crate::ParseError;

/// Where a key version is in its life: the active version encrypts, retired
/// versions still decrypt, destroyed versions are gone for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    Retired,
    Destroyed,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            "destroyed" => Ok(Self::Destroyed),
            _ => Err(ParseError::OneOf { expected: "active, retired, destroyed" }),
        }
    }
}
