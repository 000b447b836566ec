-- The audit trail: one hash chain per organisation ("org:<uuid>") and one
-- for the platform ("platform"). Entries hold identifiers and field names
-- only. `audit_heads` is the position and hash of each chain's last entry;
-- an append locks it in the writing transaction, so one chain has one
-- order. Checkpoints are signed (EdDSA JWS) statements of a chain's head.
CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY,
    seq    BIGINT NOT NULL CHECK (seq >= 0),
    hash   BYTEA NOT NULL
);

CREATE TABLE audit_entries (
    chain         TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    at_micros     BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    on_behalf_of  TEXT,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    fields        TEXT NOT NULL,
    request_id    TEXT,
    prev_hash     BYTEA NOT NULL,
    hash          BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE INDEX audit_entries_target ON audit_entries (chain, target, seq);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    size       BIGINT NOT NULL,
    head       BYTEA NOT NULL,
    at_micros  BIGINT NOT NULL,
    jws        TEXT NOT NULL,
    PRIMARY KEY (chain, size)
);
