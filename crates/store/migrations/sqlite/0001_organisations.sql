-- Organisations: the tenants. Every tenant-owned table added later is keyed
-- by (org_id, id) and references this one.
CREATE TABLE organisations (
    id          BLOB PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
