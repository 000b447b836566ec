-- A user's grant of support access to their own account, for a bounded
-- time (unix microseconds), which they can end at any time; and, on a
-- session, the operator acting as its user and the grant that allows it.
-- Such a session works only while its grant does.
CREATE TABLE account_grants (
    id               UUID PRIMARY KEY NOT NULL,
    user_id          UUID NOT NULL REFERENCES users (id),
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    ended_by         TEXT,
    end_notice_sent  BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX account_grants_by_user ON account_grants (user_id);

ALTER TABLE sessions ADD COLUMN acting_operator UUID;
ALTER TABLE sessions ADD COLUMN account_grant UUID;
