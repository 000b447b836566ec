-- Invitations: an organisation invites an address to a role; the token
-- (stored as its SHA-256) goes by mail, works once and expires.
CREATE TABLE invitations (
    org_id       BLOB NOT NULL REFERENCES organisations (id),
    id           BLOB NOT NULL,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'auditor')),
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    accepted_at  TEXT,
    PRIMARY KEY (org_id, id)
) STRICT;
