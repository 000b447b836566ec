//! The SQLite implementation of the audit trail: appends under the chain's
//! head row (SQLite has one writer at a time), reads in chain order.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use crate::Result;
use crate::audit::{
    AuditAppend, AuditQuery, AuditRow, AuditRowRef, CheckpointRow, SinkCursor, entry_ref_from_row, head_hash,
};
use crate::sqlite::SqliteStore;

macro_rules! entry_columns {
    () => {
        "chain, seq, at_micros, actor, on_behalf_of, action, target, outcome, fields, request_id, prev_hash, hash"
    };
}

fn entry_from_row(r: &SqliteRow) -> Result<AuditRow> {
    Ok(entry_ref_from_row(r)?.to_row())
}

fn checkpoint_from_row(r: &SqliteRow) -> Result<CheckpointRow> {
    Ok(CheckpointRow {
        chain: r.try_get("chain")?,
        size: r.try_get("size")?,
        head: r.try_get("head")?,
        at_micros: r.try_get("at_micros")?,
        jws: r.try_get("jws")?,
    })
}

/// Appends entries to a chain inside `tx`, holding its head.
pub(crate) async fn append_in(tx: &mut Transaction<'_, Sqlite>, a: &AuditAppend<'_>) -> Result<()> {
    if a.count == 0 {
        return Ok(());
    }
    // One statement makes the head if the chain is new and reads it.
    let head = sqlx::query(
        "INSERT INTO audit_heads (chain, seq, hash) VALUES (?1, 0, ?2) \
         ON CONFLICT (chain) DO UPDATE SET chain = excluded.chain RETURNING seq, hash",
    )
    .bind(a.chain)
    .bind(&[0u8; 32][..])
    .fetch_one(&mut **tx)
    .await?;
    let mut seq: i64 = head.try_get("seq")?;
    let mut prev = head_hash(head.try_get("hash")?)?;
    for i in 0..a.count {
        seq += 1;
        let row = (a.seal)(i, seq, prev);
        sqlx::query(concat!(
            "INSERT INTO audit_entries (",
            entry_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))
        .bind(&row.chain)
        .bind(row.seq)
        .bind(row.at_micros)
        .bind(&row.actor)
        .bind(&row.on_behalf_of)
        .bind(&row.action)
        .bind(&row.target)
        .bind(&row.outcome)
        .bind(&row.fields)
        .bind(&row.request_id)
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut **tx)
        .await?;
        prev = head_hash(row.hash)?;
    }
    sqlx::query("UPDATE audit_heads SET seq = ?1, hash = ?2 WHERE chain = ?3")
        .bind(seq)
        .bind(&prev[..])
        .bind(a.chain)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn append_audit(&self, a: &AuditAppend<'_>) -> Result<()> {
        self.append_audit_batch(std::slice::from_ref(a)).await
    }

    /// Several appends in one transaction (group commit). The caller
    /// orders them by chain, so concurrent batches lock heads in the same
    /// order.
    pub(crate) async fn append_audit_batch(&self, appends: &[AuditAppend<'_>]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for a in appends {
            append_in(&mut tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn audit_entries(&self, chain: &str, after: i64, limit: u32) -> Result<Vec<AuditRow>> {
        sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE chain = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ))
        .bind(chain)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    pub(crate) async fn audit_search(
        &self,
        chain: &str,
        q: &AuditQuery,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE chain = ?1 AND seq > ?2 AND (?3 IS NULL OR actor = ?3) AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR target = ?5) AND (?6 IS NULL OR at_micros >= ?6) AND (?7 IS NULL OR at_micros < ?7) AND (?9 IS NULL OR on_behalf_of = ?9) ORDER BY seq LIMIT ?8"
        ))
        .bind(chain)
        .bind(after)
        .bind(&q.actor)
        .bind(&q.action)
        .bind(&q.target)
        .bind(q.from_micros)
        .bind(q.until_micros)
        .bind(i64::from(limit))
        .bind(&q.on_behalf_of)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    pub(crate) async fn scan_audit(
        &self,
        chain: &str,
        after: i64,
        f: &mut (dyn FnMut(AuditRowRef<'_>) -> bool + Send),
    ) -> Result<()> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE chain = ?1 AND seq > ?2 ORDER BY seq"
        ))
        .bind(chain)
        .bind(after)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            if !f(entry_ref_from_row(&row)?) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) async fn audit_entries_for(
        &self,
        chain: &str,
        target: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        sqlx::query(concat!(
            "SELECT ",
            entry_columns!(),
            " FROM audit_entries WHERE chain = ?1 AND target = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"
        ))
        .bind(chain)
        .bind(target)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(entry_from_row)
        .collect()
    }

    pub(crate) async fn audit_chains(&self) -> Result<Vec<(String, i64, Vec<u8>)>> {
        sqlx::query("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("chain")?, r.try_get("seq")?, r.try_get("hash")?)))
            .collect()
    }

    pub(crate) async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (chain, size, head, at_micros, jws) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (chain, size) DO NOTHING",
        )
        .bind(&c.chain)
        .bind(c.size)
        .bind(&c.head)
        .bind(c.at_micros)
        .bind(&c.jws)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn checkpoints(&self, chain: &str) -> Result<Vec<CheckpointRow>> {
        sqlx::query("SELECT chain, size, head, at_micros, jws FROM audit_checkpoints WHERE chain = ?1 ORDER BY size")
            .bind(chain)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkpoint_from_row)
            .collect()
    }
    pub(crate) async fn checkpoints_after(&self, chain: &str, size: i64, limit: u32) -> Result<Vec<CheckpointRow>> {
        sqlx::query(
            "SELECT chain, size, head, at_micros, jws FROM audit_checkpoints WHERE chain = ?1 AND size > ?2
             ORDER BY size LIMIT ?3",
        )
        .bind(chain)
        .bind(size)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(checkpoint_from_row)
        .collect()
    }

    pub(crate) async fn sink_cursors(&self, sink: &str) -> Result<Vec<SinkCursor>> {
        sqlx::query("SELECT chain, entry_seq, checkpoint_size FROM audit_sink_cursors WHERE sink = ?1 ORDER BY chain")
            .bind(sink)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SinkCursor {
                    chain: r.try_get("chain")?,
                    entry_seq: r.try_get("entry_seq")?,
                    checkpoint_size: r.try_get("checkpoint_size")?,
                })
            })
            .collect()
    }

    pub(crate) async fn advance_sink_cursor(&self, sink: &str, c: &SinkCursor) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_sink_cursors (sink, chain, entry_seq, checkpoint_size) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sink, chain) DO UPDATE SET
                 entry_seq = max(audit_sink_cursors.entry_seq, excluded.entry_seq),
                 checkpoint_size = max(audit_sink_cursors.checkpoint_size, excluded.checkpoint_size)",
        )
        .bind(sink)
        .bind(&c.chain)
        .bind(c.entry_seq)
        .bind(c.checkpoint_size)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(crate) async fn take_sink_lease(
        &self,
        sink: &str,
        holder: &str,
        now_micros: i64,
        until_micros: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO audit_sink_leases (sink, holder, until_micros) VALUES (?1, ?2, ?4)
             ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder, until_micros = excluded.until_micros
             WHERE audit_sink_leases.holder = excluded.holder OR audit_sink_leases.until_micros < ?3",
        )
        .bind(sink)
        .bind(holder)
        .bind(now_micros)
        .bind(until_micros)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn release_sink_lease(&self, sink: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM audit_sink_leases WHERE sink = ?1 AND holder = ?2")
            .bind(sink)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
