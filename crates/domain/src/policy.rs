//! Permissions: what each role may do in its organisation, and what
//! operators may do on the platform. One table, consulted by the engine's
//! single authorisation function for every caller; anything not listed is
//! denied.

use crate::Role;

/// Something a member can do inside one organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// See the organisation's name and settings.
    ViewOrg,
    /// List the members and their roles.
    ListMembers,
    /// Add, change or remove members other than owners.
    ManageMembers,
    /// Add, change or remove owners.
    ManageOwners,
    /// Read profiles' plain and personal fields.
    ReadProfiles,
    /// Read fields classified sensitive.
    ReadSensitive,
    /// Create and change profiles.
    WriteProfiles,
    /// Change the organisation's schema.
    ManageSchema,
    /// Read the organisation's audit trail.
    ReadAudit,
    /// Create and revoke service accounts.
    ManageServiceAccounts,
    /// Change organisation settings (such as requiring 2FA of everyone).
    ManageSettings,
    /// See, approve, deny and revoke operators' support sessions.
    ManageSupport,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::ViewOrg,
        Action::ListMembers,
        Action::ManageMembers,
        Action::ManageOwners,
        Action::ReadProfiles,
        Action::ReadSensitive,
        Action::WriteProfiles,
        Action::ManageSchema,
        Action::ReadAudit,
        Action::ManageServiceAccounts,
        Action::ManageSettings,
        Action::ManageSupport,
    ];
}

/// Something an operator (platform staff) can do. None of these reaches an
/// organisation's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlatformAction {
    CreateOrg,
    ListOrgs,
    /// Rename, suspend or resume an organisation.
    ManageOrgs,
    ManageUsers,
    /// Ask an organisation for a support session.
    RequestSupport,
    /// See backup runs and drill reports (never their content).
    ViewBackups,
    /// Offboard an organisation: hand its data over, destroy its keys and
    /// remove its rows (the command line only).
    OffboardOrgs,
}

/// Whether a role may take an action. The whole permission matrix.
pub fn role_permits(role: Role, action: Action) -> bool {
    use Action as A;
    match role {
        Role::Owner => true,
        Role::Admin => !matches!(action, A::ManageOwners),
        Role::Editor => matches!(action, A::ViewOrg | A::ReadProfiles | A::ReadSensitive | A::WriteProfiles),
        Role::Viewer => matches!(action, A::ViewOrg | A::ReadProfiles),
        Role::Auditor => matches!(action, A::ViewOrg | A::ListMembers | A::ReadAudit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix, spelled out: (role, actions it may take).
    fn expected(role: Role) -> Vec<Action> {
        use Action as A;
        match role {
            Role::Owner => A::ALL.to_vec(),
            Role::Admin => A::ALL.into_iter().filter(|a| *a != A::ManageOwners).collect(),
            Role::Editor => vec![A::ViewOrg, A::ReadProfiles, A::ReadSensitive, A::WriteProfiles],
            Role::Viewer => vec![A::ViewOrg, A::ReadProfiles],
            Role::Auditor => vec![A::ViewOrg, A::ListMembers, A::ReadAudit],
        }
    }

    // claim 001.6 004.15
    #[test]
    fn permission_matrix() {
        for role in Role::ALL {
            for action in Action::ALL {
                assert_eq!(role_permits(role, action), expected(role).contains(&action), "{role:?} {action:?}");
            }
        }
    }

    #[test]
    fn scopes_parse_and_grant_only_their_actions() {
        assert_eq!(
            Scope::parse_list("org:read  members:read org:read"),
            Some(vec![Scope::OrgRead, Scope::MembersRead])
        );
        assert_eq!(Scope::parse_list("admin"), None);
        assert!(Scope::ALL.iter().all(|s| !s.permits(Action::ManageMembers) && !s.permits(Action::ManageOwners)));
        assert!(Scope::ProfilesReadSensitive.permits(Action::ReadSensitive));
        assert!(!Scope::ProfilesRead.permits(Action::ReadSensitive));
    }

    #[test]
    fn auditors_never_read_data() {
        assert!(!role_permits(Role::Auditor, Action::ReadProfiles));
        assert!(!role_permits(Role::Auditor, Action::ReadSensitive));
    }
}

/// What a service account's token may do in its organisation (OAuth
/// scopes). Anything not granted by a scope is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `org:read`: see the organisation.
    OrgRead,
    /// `members:read`: list members.
    MembersRead,
    /// `profiles:read`: read profiles' plain and personal fields.
    ProfilesRead,
    /// `profiles:read-sensitive`: also read sensitive fields.
    ProfilesReadSensitive,
    /// `profiles:write`: create and change profiles.
    ProfilesWrite,
    /// `audit:read`: read the audit trail.
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 6] = [
        Scope::OrgRead,
        Scope::MembersRead,
        Scope::ProfilesRead,
        Scope::ProfilesReadSensitive,
        Scope::ProfilesWrite,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgRead => "org:read",
            Self::MembersRead => "members:read",
            Self::ProfilesRead => "profiles:read",
            Self::ProfilesReadSensitive => "profiles:read-sensitive",
            Self::ProfilesWrite => "profiles:write",
            Self::AuditRead => "audit:read",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Parses a space-separated scope list (RFC 6749 §3.3).
    pub fn parse_list(s: &str) -> Option<Vec<Self>> {
        let mut out = Vec::new();
        for part in s.split_whitespace() {
            let scope = Self::parse(part)?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        Some(out)
    }

    /// Whether this scope allows an action.
    pub fn permits(self, action: Action) -> bool {
        use Action as A;
        matches!(
            (self, action),
            (Self::OrgRead, A::ViewOrg)
                | (Self::MembersRead, A::ListMembers)
                | (Self::ProfilesRead, A::ReadProfiles)
                | (Self::ProfilesReadSensitive, A::ReadProfiles | A::ReadSensitive)
                | (Self::ProfilesWrite, A::WriteProfiles)
                | (Self::AuditRead, A::ReadAudit)
        )
    }
}

/// Joins scopes as a space-separated list.
pub fn scope_list(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
