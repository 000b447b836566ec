-- Profiles: each organisation's versioned schema (field definitions only,
-- never values); profile records whose personal and sensitive values are
-- ciphertext under a per-record key, itself wrapped by the organisation
-- key; exact-match lookup terms (blind-index tokens for encrypted fields,
-- the normalised value for plain ones); and attachments, whose bytes live
-- encrypted in the blob store and whose names are stored encrypted.
CREATE TABLE profile_schemas (
    org_id      UUID NOT NULL REFERENCES organisations (id),
    version     BIGINT NOT NULL CHECK (version >= 1),
    fields      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (org_id, version)
);

CREATE TABLE profiles (
    org_id          UUID NOT NULL REFERENCES organisations (id),
    id              UUID NOT NULL,
    revision        BIGINT NOT NULL CHECK (revision >= 1),
    schema_version  BIGINT NOT NULL,
    owner_user_id   UUID REFERENCES users (id),
    record_key      BYTEA NOT NULL,
    key_version     BIGINT NOT NULL CHECK (key_version >= 1),
    field_names     TEXT NOT NULL,
    plain           TEXT NOT NULL,
    sealed          BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    updated_by      TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE INDEX profiles_owner ON profiles (owner_user_id) WHERE owner_user_id IS NOT NULL;
CREATE INDEX profiles_key_version ON profiles (org_id, key_version);

CREATE TABLE profile_terms (
    org_id      UUID NOT NULL,
    field       TEXT NOT NULL,
    term        BYTEA NOT NULL,
    profile_id  UUID NOT NULL,
    PRIMARY KEY (org_id, field, term, profile_id),
    FOREIGN KEY (org_id, profile_id) REFERENCES profiles (org_id, id) ON DELETE CASCADE
);

CREATE INDEX profile_terms_profile ON profile_terms (org_id, profile_id);

CREATE TABLE attachments (
    org_id        UUID NOT NULL,
    profile_id    UUID NOT NULL,
    id            UUID NOT NULL,
    name_token    BYTEA NOT NULL,
    name_sealed   BYTEA NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL CHECK (size >= 0),
    blob_key      TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    created_by    TEXT NOT NULL,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, profile_id, name_token),
    FOREIGN KEY (org_id, profile_id) REFERENCES profiles (org_id, id) ON DELETE CASCADE
);
