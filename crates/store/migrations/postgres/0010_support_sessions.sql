-- Support sessions: an operator's time-boxed access to one organisation's
-- data, requested with a reason and granted (or denied) by its owners or
-- admins. Times are unix microseconds, compared as integers. `profiles`
-- limits the session to those records (space-separated ids; empty: all).
-- `status` is requested, approved, denied or revoked; an approved session
-- is active until `expires_at`. `summary_sent` marks the end-of-session
-- summary as mailed, once.
CREATE TABLE support_sessions (
    org_id              UUID NOT NULL REFERENCES organisations (id),
    id                  UUID NOT NULL,
    operator_id         UUID NOT NULL REFERENCES users (id),
    reason              TEXT NOT NULL,
    write               BOOLEAN NOT NULL,
    profiles            TEXT NOT NULL,
    duration_secs       BIGINT NOT NULL CHECK (duration_secs > 0),
    status              TEXT NOT NULL CHECK (status IN ('requested', 'approved', 'denied', 'revoked')),
    requested_at        BIGINT NOT NULL,
    decided_by          UUID,
    decided_at          BIGINT,
    expires_at          BIGINT,
    ended_at            BIGINT,
    ended_by            TEXT,
    summary_sent        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (org_id, id)
);

CREATE INDEX support_sessions_active ON support_sessions (org_id, status, expires_at);
