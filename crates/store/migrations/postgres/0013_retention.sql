-- Retention: each organisation's policy (JSON: which rules expire a
-- profile), and when and by whom it was last set.
CREATE TABLE retention_policies (
    org_id      UUID PRIMARY KEY REFERENCES organisations (id),
    policy      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
