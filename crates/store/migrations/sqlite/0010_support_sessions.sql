-- Support sessions: an operator's time-boxed access to one organisation's
-- data, requested with a reason and granted (or denied) by its owners or
-- admins. Times are unix microseconds, compared as integers. `profiles`
-- limits the session to those records (space-separated ids; empty: all).
-- `status` is requested, approved, denied or revoked; an approved session
-- is active until `expires_at`. `summary_sent` marks the end-of-session
-- summary as mailed, once.
CREATE TABLE support_sessions (
    org_id              BLOB NOT NULL REFERENCES organisations (id),
    id                  BLOB NOT NULL,
    operator_id         BLOB NOT NULL REFERENCES users (id),
    reason              TEXT NOT NULL,
    write               INTEGER NOT NULL CHECK (write IN (0, 1)),
    profiles            TEXT NOT NULL,
    duration_secs       INTEGER NOT NULL CHECK (duration_secs > 0),
    status              TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'denied', 'revoked')),
    requested_at        INTEGER NOT NULL,
    decided_by          BLOB,
    decided_at          INTEGER,
    expires_at          INTEGER,
    ended_at            INTEGER,
    ended_by            TEXT,
    summary_sent        INTEGER NOT NULL DEFAULT 0 CHECK (summary_sent IN (0, 1)),
    PRIMARY KEY (org_id, id)
) STRICT;

CREATE INDEX support_sessions_active ON support_sessions (org_id, status, expires_at);
