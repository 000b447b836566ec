-- Off-host audit sinks: how far each sink has received each chain (entries
-- up to `entry_seq`, checkpoints up to `checkpoint_size`), so delivery
-- resumes where it stopped; and which instance delivers to a sink now (a
-- lease that another instance may take once it has expired).
CREATE TABLE audit_sink_cursors (
    sink             TEXT NOT NULL,
    chain            TEXT NOT NULL,
    entry_seq        INTEGER NOT NULL CHECK (entry_seq >= 0),
    checkpoint_size  INTEGER NOT NULL CHECK (checkpoint_size >= 0),
    PRIMARY KEY (sink, chain)
) STRICT;

CREATE TABLE audit_sink_leases (
    sink          TEXT PRIMARY KEY NOT NULL,
    holder        TEXT NOT NULL,
    until_micros  INTEGER NOT NULL
) STRICT;
