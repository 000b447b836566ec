-- Backups: each organisation's escrow key (which seals its key versions
-- inside archives, and is itself never archived), the runs of scheduled and
-- manual backups, and drill reports kept as evidence.
CREATE TABLE backup_escrow (
    org_id      UUID PRIMARY KEY REFERENCES organisations (id),
    wrapped     BYTEA NOT NULL,
    kms_key_id  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE backup_runs (
    id           UUID PRIMARY KEY,
    schedule     TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    outcome      TEXT NOT NULL CHECK (outcome IN ('running', 'success', 'failure')),
    bytes        BIGINT,
    detail       TEXT NOT NULL
);

CREATE INDEX backup_runs_by_schedule ON backup_runs (schedule, started_at);

CREATE TABLE backup_drills (
    id              UUID PRIMARY KEY,
    backup_id       UUID,
    target          TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    restore_millis  BIGINT NOT NULL,
    total_millis    BIGINT NOT NULL,
    from_scratch    BOOLEAN NOT NULL,
    outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    report          TEXT NOT NULL
);

CREATE INDEX backup_drills_by_time ON backup_drills (started_at);
