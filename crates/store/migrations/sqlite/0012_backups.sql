-- Backups: each organisation's escrow key (which seals its key versions
-- inside archives, and is itself never archived), the runs of scheduled and
-- manual backups, and drill reports kept as evidence.
CREATE TABLE backup_escrow (
    org_id      BLOB PRIMARY KEY NOT NULL REFERENCES organisations (id),
    wrapped     BLOB NOT NULL,
    kms_key_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE backup_runs (
    id           BLOB PRIMARY KEY NOT NULL,
    schedule     TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT NOT NULL CHECK (outcome IN ('running', 'success', 'failure')),
    bytes        INTEGER,
    detail       TEXT NOT NULL
) STRICT;

CREATE INDEX backup_runs_by_schedule ON backup_runs (schedule, started_at);

CREATE TABLE backup_drills (
    id              BLOB PRIMARY KEY NOT NULL,
    backup_id       BLOB,
    target          TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    restore_millis  INTEGER NOT NULL,
    total_millis    INTEGER NOT NULL,
    from_scratch    INTEGER NOT NULL CHECK (from_scratch IN (0, 1)),
    outcome         TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    report          TEXT NOT NULL
) STRICT;

CREATE INDEX backup_drills_by_time ON backup_drills (started_at);
