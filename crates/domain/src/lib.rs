//! The vocabulary of Strongroom: typed identifiers and parsed value types.
//!
//! Architecture invariant: this crate does no IO and knows nothing of HTTP,
//! SQL or key backends. A value of a type here has already been validated:
//! constructors parse, there are no setters.

mod id;
mod key;
mod org;
mod policy;
mod retention;
mod schema;
mod user;

pub use id::{OrgId, ProfileId, ServiceAccountId, SessionId, UserId};
pub use key::KeyState;
pub use org::{NewOrganisation, OrgName, OrgSlug, OrgStatus, Organisation, ParseError};
pub use policy::{Action, PlatformAction, Scope, role_permits, scope_list};
pub use retention::{DateRule, Expiry, MAX_RETENTION_DAYS, RetentionPolicy, parse_date};
pub use schema::{
    Classification, FieldDef, FieldName, FieldType, FieldValue, Fields, MAX_FIELDS, Patch, RESERVED_NAMES, Schema,
    Violation,
};
pub use user::{DisplayName, Email, Role};
