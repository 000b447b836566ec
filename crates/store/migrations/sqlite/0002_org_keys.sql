-- Organisation keys: one row per version, wrapped by the KMS root key under
-- the context {purpose: org-key, scope: org id, version}. Destroying an
-- organisation's keys (crypto-shredding) clears `wrapped` for good.
CREATE TABLE org_keys (
    org_id       BLOB NOT NULL REFERENCES organisations (id),
    version      INTEGER NOT NULL CHECK (version >= 1),
    wrapped      BLOB,
    kms_backend  TEXT NOT NULL,
    kms_key_id   TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('active', 'retired', 'destroyed')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (org_id, version),
    CHECK ((state = 'destroyed') = (wrapped IS NULL))
) STRICT;
