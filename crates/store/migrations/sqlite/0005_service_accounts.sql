-- Service accounts: an organisation's applications, authenticating with a
-- client id and a secret stored only as its SHA-256; the Ed25519 keys that
-- sign access tokens (seeds wrapped by the KMS root key); revoked token
-- ids; and whether an organisation's tokens are encrypted (JWE).
CREATE TABLE service_accounts (
    org_id       BLOB NOT NULL REFERENCES organisations (id),
    id           BLOB NOT NULL,
    name         TEXT NOT NULL,
    client_id    TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    PRIMARY KEY (org_id, id)
) STRICT;

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    seed_wrapped  BLOB NOT NULL,
    kms_key_id    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    retired_at    TEXT
) STRICT;

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;

ALTER TABLE organisations ADD COLUMN encrypted_tokens INTEGER NOT NULL DEFAULT 0 CHECK (encrypted_tokens IN (0, 1));
