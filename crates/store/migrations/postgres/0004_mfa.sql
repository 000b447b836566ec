-- Two-factor authentication: TOTP seeds encrypted under a platform key
-- (itself wrapped by the KMS root key), the last accepted time step so a
-- code is never accepted twice, hashed single-use recovery codes, and an
-- organisation policy requiring 2FA of every member.
CREATE TABLE platform_keys (
    purpose     TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    wrapped     BYTEA NOT NULL,
    kms_key_id  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (purpose, version)
);

CREATE TABLE user_totp (
    user_id       UUID PRIMARY KEY REFERENCES users (id),
    seed          BYTEA NOT NULL,
    key_version   INTEGER NOT NULL,
    confirmed_at  TIMESTAMPTZ,
    last_step     BIGINT,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id),
    code_hash  BYTEA NOT NULL,
    used_at    TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

ALTER TABLE organisations ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT FALSE;
