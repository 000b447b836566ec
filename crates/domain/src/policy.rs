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
}

impl Action {
    pub const ALL: [Action; 11] = [
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
    ];
}

/// Something an operator (platform staff) can do. None of these reaches an
/// organisation's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlatformAction {
    CreateOrg,
    ListOrgs,
    ManageUsers,
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
    fn auditors_never_read_data() {
        assert!(!role_permits(Role::Auditor, Action::ReadProfiles));
        assert!(!role_permits(Role::Auditor, Action::ReadSensitive));
    }
}
