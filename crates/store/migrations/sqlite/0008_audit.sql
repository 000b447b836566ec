-- The audit trail: one hash chain per organisation ("org:<uuid>") and one
-- for the platform ("platform"). Entries hold identifiers and field names
-- only. `audit_heads` is the position and hash of each chain's last entry;
-- an append locks it in the writing transaction, so one chain has one
-- order. Checkpoints are signed (EdDSA JWS) statements of a chain's head.
CREATE TABLE audit_heads (
    chain  TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL CHECK (seq >= 0),
    hash   BLOB NOT NULL
) STRICT;

CREATE TABLE audit_entries (
    chain         TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    at_micros     INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    on_behalf_of  TEXT,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    fields        TEXT NOT NULL,
    request_id    TEXT,
    prev_hash     BLOB NOT NULL,
    hash          BLOB NOT NULL,
    PRIMARY KEY (chain, seq)
) STRICT;

CREATE INDEX audit_entries_target ON audit_entries (chain, target, seq);

CREATE TABLE audit_checkpoints (
    chain      TEXT NOT NULL,
    size       INTEGER NOT NULL,
    head       BLOB NOT NULL,
    at_micros  INTEGER NOT NULL,
    jws        TEXT NOT NULL,
    PRIMARY KEY (chain, size)
) STRICT;
