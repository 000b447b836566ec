//! Exports: every profile of an organisation that the caller may see,
//! decrypted (or pseudonymised), and its audit trail, streamed page by page
//! as CSV or JSON lines, with one audit entry before the first byte and one
//! with the row count at the end.
//!
//! CSV cells that a spreadsheet would run as a formula (a text value
//! starting with `=`, `+`, `-`, `@`, a tab or a carriage return) are
//! neutralised with a leading `'`, as OWASP recommends; so is a cell that
//! starts with `'`, which makes the change reversible for imports.

use std::sync::Arc;

use bytes::Bytes;
use domain::{Action, FieldDef, FieldValue, OrgId};
use futures_util::stream::BoxStream;
use time::format_description::well_known::Rfc3339;

use crate::audit::{Pending, by, org_chain};
use crate::identity::Authorized;
use crate::profiles::{ProfileView, Visibility};
use crate::pseudonymise::Pseudonymiser;
use crate::{Engine, EngineError};

/// Records decrypted and sent per page: bounds the memory an export holds.
const PAGE: u32 = 50;
/// Pages encoded ahead of the reader.
const AHEAD: usize = 2;

/// An export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

impl ExportFormat {
    /// `csv` or `jsonl`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "csv" => Some(Self::Csv),
            "jsonl" => Some(Self::Jsonl),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Jsonl => "application/x-ndjson",
        }
    }
}

/// The export's bytes, in order; an error ends it.
pub type ExportStream = BoxStream<'static, Result<Bytes, EngineError>>;

/// Prefixes a CSV text cell that a spreadsheet would evaluate with `'`; a
/// cell that starts with `'` gets one too, so an import can undo it
/// exactly ([`crate::import::unneutralise`]).
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

fn time(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Encodes one page of an export (or its header) into one buffer: a
/// single CSV writer per page, not one per row.
enum Encoder {
    Csv(Box<csv::Writer<Vec<u8>>>),
    Jsonl(Vec<u8>),
}

fn csv_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Export(format!("csv: {e}"))
}

impl Encoder {
    fn new(format: ExportFormat, capacity: usize) -> Self {
        match format {
            ExportFormat::Csv => Self::Csv(Box::new(
                csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::with_capacity(capacity)),
            )),
            ExportFormat::Jsonl => Self::Jsonl(Vec::with_capacity(capacity)),
        }
    }

    /// The CSV header row from the schema's visible fields; nothing for
    /// JSON lines.
    fn header(&mut self, columns: &[FieldDef]) -> Result<(), EngineError> {
        if let Self::Csv(w) = self {
            let fixed = ["id", "revision", "created_at", "updated_at"];
            w.write_record(fixed.iter().copied().chain(columns.iter().map(|f| f.name.as_str()))).map_err(csv_error)?;
        }
        Ok(())
    }

    /// A CSV header row of fixed names; nothing for JSON lines.
    fn header_of(&mut self, names: &[&str]) -> Result<(), EngineError> {
        if let Self::Csv(w) = self {
            w.write_record(names).map_err(csv_error)?;
        }
        Ok(())
    }

    /// One audit entry: a CSV row (text cells neutralised, hashes in hex)
    /// or the JSON record the sinks ship.
    fn audit_row(&mut self, e: &::audit::Entry) -> Result<(), EngineError> {
        match self {
            Self::Csv(w) => {
                let fields = e.fields.join(" ");
                let cells = [
                    e.seq.to_string(),
                    crate::rfc3339_micros(e.at_micros),
                    neutralise(&e.actor).into_owned(),
                    neutralise(e.on_behalf_of.as_deref().unwrap_or("")).into_owned(),
                    neutralise(&e.action).into_owned(),
                    neutralise(&e.target).into_owned(),
                    neutralise(&e.outcome).into_owned(),
                    neutralise(&fields).into_owned(),
                    neutralise(e.request_id.as_deref().unwrap_or("")).into_owned(),
                    hex::encode(e.prev_hash),
                    hex::encode(e.hash),
                ];
                w.write_record(&cells).map_err(csv_error)
            }
            Self::Jsonl(out) => {
                serde_json::to_writer(&mut *out, &::audit::export::entry_record(e))
                    .map_err(|e| EngineError::Export(format!("json: {e}")))?;
                out.push(b'\n');
                Ok(())
            }
        }
    }

    fn row(&mut self, columns: &[FieldDef], view: &ProfileView) -> Result<(), EngineError> {
        match self {
            Self::Csv(w) => {
                let mut cells =
                    vec![view.id.to_string(), view.revision.to_string(), time(view.created_at), time(view.updated_at)];
                for f in columns {
                    cells.push(match view.fields.get(&f.name) {
                        None => String::new(),
                        Some(FieldValue::Text(s)) => neutralise(s).into_owned(),
                        Some(v @ (FieldValue::Number(_) | FieldValue::Bool(_))) => {
                            String::from_utf8_lossy(&v.to_bytes()).into_owned()
                        }
                    });
                }
                w.write_record(&cells).map_err(csv_error)
            }
            Self::Jsonl(out) => {
                let fields: serde_json::Map<String, serde_json::Value> =
                    view.fields.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect();
                let line = serde_json::json!({
                    "id": view.id.to_string(),
                    "revision": view.revision,
                    "created_at": time(view.created_at),
                    "updated_at": time(view.updated_at),
                    "fields": fields,
                });
                serde_json::to_writer(&mut *out, &line).map_err(|e| EngineError::Export(format!("json: {e}")))?;
                out.push(b'\n');
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<Vec<u8>, EngineError> {
        match self {
            Self::Csv(w) => w.into_inner().map_err(csv_error),
            Self::Jsonl(out) => Ok(out),
        }
    }
}

/// Where an export's pages come from.
enum Source {
    Profiles {
        schema: Arc<domain::Schema>,
        columns: Arc<Vec<FieldDef>>,
        visibility: Visibility,
        pseudonyms: Option<Arc<Pseudonymiser>>,
        after: Option<domain::ProfileId>,
        /// The next page, fetched while the last one was decrypted.
        ahead: Option<Vec<store::ProfileRow>>,
    },
    Audit {
        chain: String,
        /// The chain's size when the export began: entries after it (the
        /// export's own, say) are left for the next one.
        until: i64,
        after: i64,
    },
}

/// Audit entries per page of an audit export.
const AUDIT_PAGE: u32 = 1_000;

const AUDIT_COLUMNS: [&str; 11] =
    ["seq", "at", "actor", "on_behalf_of", "action", "target", "outcome", "fields", "request_id", "prev_hash", "hash"];

/// Decrypts (and, for a pseudonymised dataset, replaces) and encodes one
/// page of records.
async fn encode_profiles(
    engine: &Engine,
    schema: &domain::Schema,
    columns: &[FieldDef],
    visibility: Visibility,
    pseudonyms: Option<&Pseudonymiser>,
    page: &[store::ProfileRow],
    format: ExportFormat,
) -> Result<Vec<u8>, EngineError> {
    let mut encoder = Encoder::new(format, page.len() * 1024);
    let mut views = Vec::with_capacity(page.len());
    for row in page {
        let mut view = engine.decrypt_for(schema, row, visibility).await?;
        if let Some(p) = pseudonyms {
            // Nothing that links a row back to the real record: not its id,
            // its revision, its times, nor its place in creation order.
            for (name, value) in view.fields.iter_mut() {
                match schema.field_named(name.as_str()) {
                    Some(def) if def.classification.is_encrypted() => *value = p.value(view.id, def, value),
                    _ => {}
                }
            }
            view.id = p.id(view.id);
            view.revision = 1;
            (view.created_at, view.updated_at) = (p.started(), p.started());
        }
        views.push(view);
    }
    if pseudonyms.is_some() {
        views.sort_by_key(|v| v.id);
    }
    for view in &views {
        encoder.row(columns, view)?;
    }
    encoder.finish()
}

impl Source {
    /// The next page, encoded, and how many rows it holds; `None` at the end.
    async fn next_page(
        &mut self,
        engine: &Engine,
        org: OrgId,
        format: ExportFormat,
    ) -> Result<Option<(Vec<u8>, u64)>, EngineError> {
        match self {
            Self::Profiles { schema, columns, visibility, pseudonyms, after, ahead } => {
                let page = match ahead.take() {
                    Some(page) => page,
                    None => engine.store.list_profiles(org, *after, PAGE, &[]).await?,
                };
                let Some(last) = page.last() else { return Ok(None) };
                *after = Some(last.id);
                // The next page is asked for before this one is decrypted,
                // so the database works while this task does.
                let next = engine.store.list_profiles(org, *after, PAGE, &[]);
                let rows = page.len() as u64;
                // Decrypting is the work: half the page on another task, so
                // a second core takes it.
                let mut first = page;
                let second = first.split_off(first.len() / 2);
                let helper = {
                    let (engine, schema, columns) = (engine.clone(), Arc::clone(schema), Arc::clone(columns));
                    let (visibility, pseudonyms) = (*visibility, pseudonyms.clone());
                    tokio::spawn(async move {
                        encode_profiles(&engine, &schema, &columns, visibility, pseudonyms.as_deref(), &second, format)
                            .await
                    })
                };
                let here = encode_profiles(engine, schema, columns, *visibility, pseudonyms.as_deref(), &first, format);
                let (next, here) = tokio::join!(next, here);
                let there = helper.await.map_err(|e| EngineError::Export(format!("an export task failed: {e}")))?;
                *ahead = Some(next?);
                let mut encoded = here?;
                encoded.extend_from_slice(&there?);
                Ok(Some((encoded, rows)))
            }
            Self::Audit { chain, until, after } => {
                if *after >= *until {
                    return Ok(None);
                }
                let page = engine.store.audit_entries(chain, *after, AUDIT_PAGE).await?;
                let page: Vec<_> = page.into_iter().take_while(|r| r.seq <= *until).collect();
                let Some(last) = page.last() else { return Ok(None) };
                *after = last.seq;
                let mut encoder = Encoder::new(format, page.len() * 300);
                let rows = page.len() as u64;
                for row in page {
                    encoder.audit_row(&crate::audit::from_row(row))?;
                }
                Ok(Some((encoder.finish()?, rows)))
            }
        }
    }
}

impl Engine {
    /// Streams every profile the caller may see, in id order, decrypted
    /// (sensitive fields only for callers who read them). A
    /// `profile.export` entry is chained before the first byte, and
    /// `profile.export.end` with the row count (and the outcome) when the
    /// export ends, finished or broken off. At most a few pages are held.
    pub async fn export_profiles(&self, auth: &Authorized, format: ExportFormat) -> Result<ExportStream, EngineError> {
        self.profile_export(auth, format, None).await
    }

    /// Streams a pseudonymised dataset of every profile, in the export's
    /// format (so it imports into another organisation or deployment):
    /// each personal and sensitive value replaced by a consistent fake of
    /// its kind, ids replaced too, plain values kept. Needs the right to
    /// read sensitive fields, since every value is read to be replaced.
    /// Chained as `profile.pseudonymise` and `profile.pseudonymise.end`.
    pub async fn pseudonymise_profiles(
        &self,
        auth: &Authorized,
        format: ExportFormat,
    ) -> Result<ExportStream, EngineError> {
        self.require(auth, Action::ReadSensitive)?;
        self.profile_export(auth, format, Some(Pseudonymiser::new()?)).await
    }

    /// Streams the organisation's audit trail, oldest first, up to its
    /// head when the export began: CSV (one row per entry, hashes in hex)
    /// or JSON lines (the records the sinks ship), so a receiver can check
    /// the chain. Chained as `audit.export` and `audit.export.end`.
    pub async fn export_audit(&self, auth: &Authorized, format: ExportFormat) -> Result<ExportStream, EngineError> {
        self.require(auth, Action::ReadAudit)?;
        crate::support::check_unlimited(auth)?;
        let chain = org_chain(auth.org());
        let until = self.store.audit_size(&chain).await?;
        let mut header = Encoder::new(format, 256);
        header.header_of(&AUDIT_COLUMNS)?;
        let source = Source::Audit { chain, until, after: 0 };
        self.stream(auth, format, "audit.export", vec![format!("format:{}", format.as_str())], header, source).await
    }

    async fn profile_export(
        &self,
        auth: &Authorized,
        format: ExportFormat,
        pseudonyms: Option<Pseudonymiser>,
    ) -> Result<ExportStream, EngineError> {
        self.require(auth, Action::ReadProfiles)?;
        crate::support::check_unlimited(auth)?;
        let schema = self.schema_of(auth).await?;
        let visibility = Visibility::of(auth);
        let columns: Vec<FieldDef> =
            schema.fields.iter().filter(|f| visibility.shows(f.classification)).cloned().collect();
        let mut fields = vec![format!("format:{}", format.as_str())];
        fields.extend(columns.iter().map(|f| f.name.to_string()));
        let action = if pseudonyms.is_some() { "profile.pseudonymise" } else { "profile.export" };
        let mut header = Encoder::new(format, 256);
        header.header(&columns)?;
        let source = Source::Profiles {
            schema,
            columns: Arc::new(columns),
            visibility,
            pseudonyms: pseudonyms.map(Arc::new),
            after: None,
            ahead: None,
        };
        self.stream(auth, format, action, fields, header, source).await
    }

    /// Chains `action` before the first byte, then sends the header and
    /// every page from a task of its own, at most `AHEAD` pages ahead of
    /// the reader; chains `<action>.end` with the row count and outcome.
    async fn stream(
        &self,
        auth: &Authorized,
        format: ExportFormat,
        action: &'static str,
        fields: Vec<String>,
        header: Encoder,
        mut source: Source,
    ) -> Result<ExportStream, EngineError> {
        let org = auth.org();
        let target = format!("export:{}", uuid::Uuid::now_v7());
        let start = by(auth.principal(), action, target.clone(), fields);
        self.record(Pending::new(org_chain(org), vec![start])).await?;
        let header = header.finish()?;
        // `Ok(None)` marks the end: a stream that stops without it (the
        // producer died) ends with an error, never as if complete.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Option<Bytes>, EngineError>>(AHEAD);
        let engine = self.clone();
        let principal = auth.principal().clone();
        tokio::spawn(async move {
            let mut rows = 0u64;
            let result = async {
                if !header.is_empty() && tx.send(Ok(Some(Bytes::from(header)))).await.is_err() {
                    return Err(EngineError::Export("the export's reader went away".into()));
                }
                while let Some((bytes, n)) = source.next_page(&engine, org, format).await? {
                    rows += n;
                    if tx.send(Ok(Some(Bytes::from(bytes)))).await.is_err() {
                        return Err(EngineError::Export("the export's reader went away".into()));
                    }
                }
                Ok(())
            }
            .await;
            let mut end = by(&principal, &format!("{action}.end"), target, vec![format!("rows:{rows}")]);
            if result.is_err() {
                end.outcome = "failure".to_owned();
            }
            if let Err(e) = engine.record(Pending::new(org_chain(org), vec![end])).await {
                tracing::warn!(error = %e, "the end of an export could not be chained");
            }
            let _ = tx.send(result.map(|()| None)).await;
        });
        Ok(Box::pin(futures_util::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Ok(Some(bytes))) => Some((Ok(bytes), Some(rx))),
                Some(Ok(None)) => None,
                Some(Err(e)) => Some((Err(e), None)),
                None => Some((Err(EngineError::Export("the export stopped before its end".into())), None)),
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for cell in ["=1+2", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\rx"] {
            assert_eq!(neutralise(cell), format!("'{cell}"));
        }
        assert_eq!(neutralise("'quoted"), "''quoted");
        for cell in ["Ada", "a=b", "", "1-2"] {
            assert_eq!(neutralise(cell), cell);
        }
    }
}
