//! Audit rows as stored, and how an append is described: the chain, how
//! many entries, and a function (from the `audit` crate, through the
//! engine) that seals entry `i` at position `seq` after `prev`. The store
//! calls it inside the transaction that holds the chain's head.

/// One stored audit entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub chain: String,
    pub seq: i64,
    pub at_micros: i64,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    /// Field names, space-separated.
    pub fields: String,
    pub request_id: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// One stored audit entry, borrowed from the row it was read from (see
/// [`crate::Store::scan_audit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRowRef<'a> {
    pub chain: &'a str,
    pub seq: i64,
    pub at_micros: i64,
    pub actor: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    /// Field names, space-separated.
    pub fields: &'a str,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

/// Reads the columns of `entry_columns!` (each backend's, in that order) by
/// position, each decoded as the migration's column type without asking
/// the driver to compare types first, borrowed from the row: a chain is
/// verified by reading every one of its rows, and looking columns up by
/// name, checking their types and copying them cost more than the hashing.
/// (A value that does not decode is still an error, never a panic.)
pub(crate) fn entry_ref_from_row<'r, R>(r: &'r R) -> crate::Result<AuditRowRef<'r>>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    &'r str: sqlx::Decode<'r, R::Database>,
    &'r [u8]: sqlx::Decode<'r, R::Database>,
    i64: sqlx::Decode<'r, R::Database>,
{
    Ok(AuditRowRef {
        chain: r.try_get_unchecked(0)?,
        seq: r.try_get_unchecked(1)?,
        at_micros: r.try_get_unchecked(2)?,
        actor: r.try_get_unchecked(3)?,
        on_behalf_of: r.try_get_unchecked(4)?,
        action: r.try_get_unchecked(5)?,
        target: r.try_get_unchecked(6)?,
        outcome: r.try_get_unchecked(7)?,
        fields: r.try_get_unchecked(8)?,
        request_id: r.try_get_unchecked(9)?,
        prev_hash: r.try_get_unchecked(10)?,
        hash: r.try_get_unchecked(11)?,
    })
}

impl AuditRowRef<'_> {
    pub fn to_row(&self) -> AuditRow {
        AuditRow {
            chain: self.chain.to_owned(),
            seq: self.seq,
            at_micros: self.at_micros,
            actor: self.actor.to_owned(),
            on_behalf_of: self.on_behalf_of.map(str::to_owned),
            action: self.action.to_owned(),
            target: self.target.to_owned(),
            outcome: self.outcome.to_owned(),
            fields: self.fields.to_owned(),
            request_id: self.request_id.map(str::to_owned),
            prev_hash: self.prev_hash.to_vec(),
            hash: self.hash.to_vec(),
        }
    }
}

/// A stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub chain: String,
    pub size: i64,
    pub head: Vec<u8>,
    pub at_micros: i64,
    pub jws: String,
}

/// Which entries of a chain to read; every member set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Such as `support_session:<uuid>`.
    pub on_behalf_of: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Entries at or after this time (unix microseconds).
    pub from_micros: Option<i64>,
    /// Entries before this time.
    pub until_micros: Option<i64>,
}

/// How far a sink has received one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkCursor {
    pub chain: String,
    /// Entries up to and including this position were delivered.
    pub entry_seq: i64,
    /// Checkpoints up to and including this size were delivered.
    pub checkpoint_size: i64,
}

/// Entries to append to one chain, in the same transaction as a change:
/// `seal(i, seq, prev)` seals entry `i` at position `seq` after `prev`.
pub struct AuditAppend<'a> {
    pub chain: &'a str,
    pub count: usize,
    pub seal: Box<dyn Fn(usize, i64, [u8; 32]) -> AuditRow + Send + Sync + 'a>,
}

impl std::fmt::Debug for AuditAppend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditAppend").field("chain", &self.chain).field("count", &self.count).finish()
    }
}

pub(crate) fn head_hash(bytes: Vec<u8>) -> crate::Result<[u8; 32]> {
    bytes.try_into().map_err(|_| crate::StoreError::Corrupt { what: "audit head", why: "hash is not 32 bytes".into() })
}
