-- Invitations: an organisation invites an address to a role; the token
-- (stored as its SHA-256) goes by mail, works once and expires.
CREATE TABLE invitations (
    org_id       UUID NOT NULL REFERENCES organisations (id),
    id           UUID NOT NULL,
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'editor', 'viewer', 'auditor')),
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    accepted_at  TIMESTAMPTZ,
    PRIMARY KEY (org_id, id)
);
