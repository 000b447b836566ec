-- A user's grant of support access to their own account, for a bounded
-- time (unix microseconds), which they can end at any time; and, on a
-- session, the operator acting as its user and the grant that allows it.
-- Such a session works only while its grant does.
CREATE TABLE account_grants (
    id               BLOB PRIMARY KEY NOT NULL,
    user_id          BLOB NOT NULL REFERENCES users (id),
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    ended_by         TEXT,
    end_notice_sent  INTEGER NOT NULL DEFAULT 0 CHECK (end_notice_sent IN (0, 1))
) STRICT;

CREATE INDEX account_grants_by_user ON account_grants (user_id);

ALTER TABLE sessions ADD COLUMN acting_operator BLOB;
ALTER TABLE sessions ADD COLUMN account_grant BLOB;
