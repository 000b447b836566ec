-- Two-factor authentication: TOTP seeds encrypted under a platform key
-- (itself wrapped by the KMS root key), the last accepted time step so a
-- code is never accepted twice, hashed single-use recovery codes, and an
-- organisation policy requiring 2FA of every member.
CREATE TABLE platform_keys (
    purpose     TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    wrapped     BLOB NOT NULL,
    kms_key_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (purpose, version)
) STRICT;

CREATE TABLE user_totp (
    user_id       BLOB PRIMARY KEY NOT NULL REFERENCES users (id),
    seed          BLOB NOT NULL,
    key_version   INTEGER NOT NULL,
    confirmed_at  TEXT,
    last_step     INTEGER,
    created_at    TEXT NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
    user_id    BLOB NOT NULL REFERENCES users (id),
    code_hash  BLOB NOT NULL,
    used_at    TEXT,
    PRIMARY KEY (user_id, code_hash)
) STRICT;

ALTER TABLE organisations ADD COLUMN require_mfa INTEGER NOT NULL DEFAULT 0 CHECK (require_mfa IN (0, 1));
