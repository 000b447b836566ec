-- Service accounts: an organisation's applications, authenticating with a
-- client id and a secret stored only as its SHA-256; the Ed25519 keys that
-- sign access tokens (seeds wrapped by the KMS root key); revoked token
-- ids; and whether an organisation's tokens are encrypted (JWE).
CREATE TABLE service_accounts (
    org_id       UUID NOT NULL REFERENCES organisations (id),
    id           UUID NOT NULL,
    name         TEXT NOT NULL,
    client_id    TEXT NOT NULL UNIQUE,
    secret_hash  BYTEA NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    seed_wrapped  BYTEA NOT NULL,
    kms_key_id    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    retired_at    TIMESTAMPTZ
);

CREATE TABLE revoked_tokens (
    jti         TEXT PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);

ALTER TABLE organisations ADD COLUMN encrypted_tokens BOOLEAN NOT NULL DEFAULT FALSE;
