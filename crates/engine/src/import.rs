//! Imports: profiles from a CSV file (the export's format), every row
//! checked against the schema before anything is written. With any bad row
//! nothing is written, unless the caller asks to skip bad rows; the report
//! names each bad row and field, never a value.

use std::path::Path;

use domain::{Action, FieldType};
use serde_json::{Map, Value};

use crate::audit::{Pending, by, org_chain};
use crate::identity::Authorized;
use crate::{Engine, EngineError};

/// Records written per transaction.
const BATCH: usize = 500;
/// Problems kept in a report; the rest are only counted.
const MAX_PROBLEMS: usize = 1000;
/// Columns an export adds that an import ignores (new records get new ids).
const METADATA: [&str; 4] = ["id", "revision", "created_at", "updated_at"];

/// One bad cell or row: where, and which rule; never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The record's line in the file (the header is line 1).
    pub line: u64,
    /// The field (JSON pointer), or empty for the whole row.
    pub field: String,
    pub rule: &'static str,
    pub message: String,
}

/// What an import found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Records in the file.
    pub rows: u64,
    /// Records that passed every check.
    pub valid: u64,
    /// Records written.
    pub written: u64,
    /// Bad rows, at most 1,000 listed.
    pub problems: Vec<RowProblem>,
    /// Problems beyond those listed.
    pub more_problems: u64,
}

impl ImportReport {
    pub fn refused(&self) -> bool {
        self.valid < self.rows && self.written == 0
    }
}

/// Undoes the export's formula neutralisation: one leading `'` goes.
pub fn unneutralise(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

fn import_error(message: String) -> EngineError {
    EngineError::Import(message)
}

/// The fields of one record, typed by the schema, and the cells that could
/// not be typed.
fn record_fields(
    header: &[Column],
    record: &csv::StringRecord,
    schema: &domain::Schema,
) -> (Map<String, Value>, Vec<domain::Violation>) {
    let mut map = Map::new();
    let mut errors = Vec::new();
    for (column, cell) in header.iter().zip(record.iter()) {
        let Column::Field(name) = column else { continue };
        if cell.is_empty() {
            continue;
        }
        let Some(def) = schema.field_named(name) else { continue };
        let cell = unneutralise(cell);
        let value = match def.kind {
            FieldType::Number => match cell.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    errors.push(domain::Violation {
                        path: format!("/{name}"),
                        rule: "type",
                        message: format!("{name} must be a number"),
                    });
                    continue;
                }
            },
            FieldType::Boolean => match cell {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    errors.push(domain::Violation {
                        path: format!("/{name}"),
                        rule: "type",
                        message: format!("{name} must be true or false"),
                    });
                    continue;
                }
            },
            _ => Value::String(cell.to_owned()),
        };
        map.insert(name.clone(), value);
    }
    (map, errors)
}

/// Every problem of one record: cells of the wrong type, then what the
/// schema says of the rest (each field named once).
fn check(
    header: &[Column],
    record: &csv::StringRecord,
    schema: &domain::Schema,
) -> (Map<String, Value>, Vec<domain::Violation>) {
    let (map, mut problems) = record_fields(header, record, schema);
    if let Err(more) = schema.validate_new(&map) {
        for p in more {
            if !problems.iter().any(|q| q.path == p.path) {
                problems.push(p);
            }
        }
    }
    (map, problems)
}

enum Column {
    Metadata,
    Field(String),
}

/// Where an import's CSV comes from: it is read twice.
#[derive(Debug, Clone)]
pub enum ImportSource<'a> {
    /// A file (the command line), read a record at a time.
    File(&'a Path),
    /// A request body already in memory (the API, within its size limit).
    Bytes(bytes::Bytes),
}

fn reader(source: &ImportSource<'_>) -> Result<csv::Reader<Box<dyn std::io::Read + Send>>, EngineError> {
    let input: Box<dyn std::io::Read + Send> = match source {
        ImportSource::File(path) => {
            Box::new(std::fs::File::open(path).map_err(|e| import_error(format!("cannot read the file: {e}")))?)
        }
        ImportSource::Bytes(bytes) => Box::new(std::io::Cursor::new(bytes.clone())),
    };
    Ok(csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input))
}

fn line_of(record: &csv::StringRecord, fallback: u64) -> u64 {
    record.position().map_or(fallback, |p| p.line())
}

impl Engine {
    /// Imports profiles from CSV (a file or a request body): a header row of field
    /// names (the export's metadata columns are ignored), one record per
    /// row. Every row is checked first. With any bad row nothing is written
    /// and the report says why, unless `skip_invalid`, which writes the
    /// good rows and reports the rest. Each record written is chained as a
    /// `profile.create`; the import itself as `profile.import` with its
    /// counts. The file is read twice, a record at a time.
    pub async fn import_profiles(
        &self,
        auth: &Authorized,
        source: ImportSource<'_>,
        skip_invalid: bool,
    ) -> Result<ImportReport, EngineError> {
        self.require(auth, Action::WriteProfiles)?;
        crate::support::check_unlimited(auth)?;
        let schema = self.schema_of(auth).await?;
        if schema.fields.is_empty() {
            return Err(import_error("the organisation has no profile schema yet".into()));
        }
        let mut csv = reader(&source)?;
        let header: Vec<Column> = {
            let names = csv.headers().map_err(|e| import_error(format!("the header row: {e}")))?.clone();
            let mut columns = Vec::new();
            for (i, name) in names.iter().enumerate() {
                if METADATA.contains(&name) {
                    columns.push(Column::Metadata);
                } else if schema.field_named(name).is_some() {
                    columns.push(Column::Field(name.to_owned()));
                } else {
                    // By position: a file without a header row would put a
                    // record's values here, and none is ever echoed.
                    return Err(import_error(format!(
                        "header column {} names no field of the schema (is the header row missing?)",
                        i + 1
                    )));
                }
            }
            columns
        };
        let mut report = ImportReport::default();
        let mut record = csv::StringRecord::new();
        // Pass 1: check everything, write nothing.
        while csv.read_record(&mut record).map_err(|e| import_error(format!("line {}: {e}", report.rows + 2)))? {
            report.rows += 1;
            let line = line_of(&record, report.rows + 1);
            let (_, problems) = check(&header, &record, &schema);
            if problems.is_empty() {
                report.valid += 1;
            }
            for p in problems {
                if report.problems.len() < MAX_PROBLEMS {
                    report.problems.push(RowProblem { line, field: p.path, rule: p.rule, message: p.message });
                } else {
                    report.more_problems += 1;
                }
            }
        }
        let clean = report.valid == report.rows;
        if clean || skip_invalid {
            // Pass 2: write the good rows, each with its own audit entry.
            let mut csv = reader(&source)?;
            // Written BATCH at a time, each batch in one transaction.
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let more = csv.read_record(&mut record).map_err(|e| import_error(format!("the file changed: {e}")))?;
                if more {
                    let (map, problems) = check(&header, &record, &schema);
                    if problems.is_empty() {
                        batch.push(map);
                    }
                }
                if batch.len() >= BATCH || (!more && !batch.is_empty()) {
                    match self.create_profiles(auth, &batch).await {
                        Ok(n) => report.written += n as u64,
                        Err(e) => {
                            // Earlier batches are committed: say how many, in
                            // the trail and the error.
                            let fields = vec![
                                format!("rows:{}", report.rows),
                                format!("written:{}", report.written),
                                format!("invalid:{}", report.rows - report.valid),
                            ];
                            let mut entry = by(
                                auth.principal(),
                                "profile.import",
                                format!("import:{}", uuid::Uuid::now_v7()),
                                fields,
                            );
                            entry.outcome = "failure".to_owned();
                            self.record(Pending::new(org_chain(auth.org()), vec![entry])).await?;
                            return Err(import_error(format!(
                                "stopped after writing {} of {} records: {e}",
                                report.written, report.valid
                            )));
                        }
                    }
                    batch.clear();
                }
                if !more {
                    break;
                }
            }
        }
        let fields = vec![
            format!("rows:{}", report.rows),
            format!("written:{}", report.written),
            format!("invalid:{}", report.rows - report.valid),
        ];
        let mut entry = by(auth.principal(), "profile.import", format!("import:{}", uuid::Uuid::now_v7()), fields);
        if !clean && !skip_invalid {
            entry.outcome = "failure".to_owned();
        }
        self.record(Pending::new(org_chain(auth.org()), vec![entry])).await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::neutralise;

    #[test]
    fn unneutralise_undoes_neutralise_for_every_value() {
        for v in ["=1+2", "+41", "-2", "@x", "\tx", "'quoted", "''twice", "plain", "", "a'b"] {
            assert_eq!(unneutralise(&neutralise(v)), v, "{v:?}");
        }
    }
}
