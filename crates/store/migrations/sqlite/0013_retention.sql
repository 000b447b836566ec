-- Retention: each organisation's policy (JSON: which rules expire a
-- profile), and when and by whom it was last set.
CREATE TABLE retention_policies (
    org_id      BLOB PRIMARY KEY NOT NULL REFERENCES organisations (id),
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;
