//! The archive format, version 1: a plain header naming the backup and its
//! wrapped data key, then one STREAM-encrypted, zstd-compressed sequence of
//! records (tables, rows, blobs, manifest). Documented in `docs/backup-format.md`.
//!
//! Writing and reading are push-style and incremental, so memory stays flat
//! whatever the archive's size: the writer takes one record at a time, the
//! reader takes ciphertext in pieces and yields the records it completes.

use std::io::Write;

use crypto::Key256;
use crypto::stream::{StreamDecryptor, StreamEncryptor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::dump::{ColumnKind, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// The first bytes of every archive.
pub const MAGIC: &[u8; 8] = b"SRBACKUP";
/// The newest format this build writes; it reads every format up to it.
pub const FORMAT_VERSION: u16 = 1;
/// Longest accepted header (JSON), and longest record.
const MAX_HEADER: u32 = 64 * 1024;
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// zstd level: 3 is zstd's default, fast with a good ratio.
const ZSTD_LEVEL: i32 = 3;
/// The largest piece of a blob in one record.
pub const BLOB_PIECE: usize = 64 * 1024;

/// What goes wrong reading an archive. Messages name the problem, never
/// the content.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a Strongroom backup archive (bad magic bytes)")]
    NotAnArchive,
    #[error("archive format version {0} is newer than this build reads (up to {FORMAT_VERSION}); upgrade Strongroom")]
    NewerFormat(u16),
    #[error("the archive is truncated: {0}")]
    Truncated(&'static str),
    #[error("the archive is corrupt: {0}")]
    Corrupt(String),
    #[error("the archive failed authentication: it was altered, truncated, or the key is wrong")]
    Decrypt,
    #[error("the archive's manifest does not match its content: {0}")]
    Manifest(String),
}

/// The plain header: what a listing shows without any key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: u16,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `sqlite` or `postgres`.
    pub source_backend: String,
    /// The newest store migration of the deployment that wrote it.
    pub schema_version: i64,
    pub strongroom_version: String,
    pub kms_backend: String,
    pub kms_key_id: String,
    /// The data key, wrapped by the root key with context
    /// `{backup-key, <id>, 1}`, base64.
    pub wrapped_key: String,
    /// Why the backup was made: a schedule's name, or `manual`.
    pub schedule: String,
}

impl Header {
    /// The header's bytes as written: magic, version, length, JSON.
    pub fn encode(&self) -> Result<Vec<u8>, FormatError> {
        let json = serde_json::to_vec(self).map_err(|e| FormatError::Corrupt(e.to_string()))?;
        let len = u32::try_from(json.len()).map_err(|_| FormatError::Corrupt("header too long".into()))?;
        let mut out = Vec::with_capacity(14 + json.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.format.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&json);
        Ok(out)
    }

    /// Parses a header from the start of `bytes`: `None` while more bytes
    /// are needed, else the header and its encoded length.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Header, usize)>, FormatError> {
        if bytes.len() < 8 {
            return if MAGIC.starts_with(bytes) { Ok(None) } else { Err(FormatError::NotAnArchive) };
        }
        if &bytes[..8] != MAGIC {
            return Err(FormatError::NotAnArchive);
        }
        if bytes.len() < 14 {
            return Ok(None);
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version > FORMAT_VERSION {
            return Err(FormatError::NewerFormat(version));
        }
        if version == 0 {
            return Err(FormatError::Corrupt("format version 0".into()));
        }
        let len = u32::from_be_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]);
        if len > MAX_HEADER {
            return Err(FormatError::Corrupt("header longer than 64 KiB".into()));
        }
        let end = 14 + len as usize;
        if bytes.len() < end {
            return Ok(None);
        }
        let header: Header = serde_json::from_slice(&bytes[14..end])
            .map_err(|e| FormatError::Corrupt(format!("header is not valid: {e}")))?;
        if header.format != version {
            return Err(FormatError::Corrupt("header and framing disagree on the format version".into()));
        }
        Ok(Some((header, end)))
    }
}

/// The context the body's stream is bound to: the whole encoded header, so
/// any change to it fails decryption.
pub fn stream_context(encoded_header: &[u8]) -> Vec<u8> {
    crypto::canonical(&[b"strongroom/backup/v1", encoded_header])
}

/// The associated data that seals an organisation key version inside an
/// archive under the organisation's escrow key.
pub fn escrow_aad(org: Uuid, version: i64) -> Vec<u8> {
    crypto::canonical(&[b"strongroom/backup/org-key/v1", org.as_bytes(), &version.to_be_bytes()])
}

/// One section's line in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SectionSummary {
    pub name: String,
    pub rows: u64,
    /// SHA-256 over the section's encoded rows, hex.
    pub sha256: String,
}

/// The last record: what the archive holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub sections: Vec<SectionSummary>,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// SHA-256 over every blob record, hex.
    pub blobs_sha256: String,
    /// Attachments whose blob was deleted while the backup ran; a restore
    /// drops their rows.
    pub missing_blobs: Vec<(Uuid, Uuid)>,
    /// Organisations whose key versions are sealed under an escrow key.
    pub escrowed_orgs: Vec<Uuid>,
}

impl Manifest {
    pub fn rows(&self, table: &str) -> u64 {
        self.sections.iter().find(|s| s.name == table).map_or(0, |s| s.rows)
    }
}

/// A record of the body.
#[derive(Debug)]
pub enum Record {
    /// A table begins; its columns as archived.
    Table {
        name: String,
        columns: Vec<(String, ColumnKind)>,
    },
    Row(Vec<Value>),
    /// The table ends, with its row count and hash.
    TableEnd {
        rows: u64,
        sha256: [u8; 32],
    },
    /// A blob begins: its key and length.
    Blob {
        key: String,
        len: u64,
    },
    /// A piece of the current blob.
    BlobPiece(Vec<u8>),
    Manifest(Manifest),
}

const T_TABLE: u8 = b'T';
const T_ROW: u8 = b'R';
const T_TABLE_END: u8 = b'E';
const T_BLOB: u8 = b'B';
const T_PIECE: u8 = b'P';
const T_MANIFEST: u8 = b'M';

/// Encodes rows and other records into a compressed, encrypted stream
/// written to `W`, hashing the ciphertext as it goes.
pub struct Writer<W: Write> {
    z: zstd::stream::write::Encoder<'static, Sealer<W>>,
    section: Option<(Sha256, u64, Vec<ColumnKind>)>,
    blob_hash: Sha256,
    scratch: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for Writer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// The innermost layer: STREAM encryption into the output, with a running
/// SHA-256 of everything written (header included).
pub struct Sealer<W: Write> {
    enc: Option<StreamEncryptor>,
    out: W,
    hash: Sha256,
    written: u64,
}

impl<W: Write> std::fmt::Debug for Sealer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("written", &self.written).finish_non_exhaustive()
    }
}

impl<W: Write> Sealer<W> {
    fn emit(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hash.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let enc = self.enc.as_mut().ok_or_else(|| std::io::Error::other("archive stream already finished"))?;
        let ct = enc.update(buf).map_err(std::io::Error::other)?;
        self.emit(&ct)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn put_u16(out: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    let n = u16::try_from(n).map_err(|_| std::io::Error::other("name too long for the archive"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_u32(out: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    let n = u32::try_from(n).map_err(|_| std::io::Error::other("value too long for the archive"))?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

/// Encodes one row's values (after its tag).
fn encode_values(out: &mut Vec<u8>, values: &[Value]) -> std::io::Result<()> {
    for v in values {
        match v {
            Value::Null => out.push(0),
            Value::Int(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Bool(b) => {
                out.push(2);
                out.push(u8::from(*b));
            }
            Value::Text(s) => {
                out.push(3);
                put_u32(out, s.len())?;
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(4);
                put_u32(out, b.len())?;
                out.extend_from_slice(b);
            }
            Value::Uuid(u) => {
                out.push(5);
                out.extend_from_slice(u.as_bytes());
            }
            Value::Time(t) => {
                out.push(6);
                out.extend_from_slice(&t.unix_timestamp_nanos().to_be_bytes());
            }
        }
    }
    Ok(())
}

impl<W: Write> Writer<W> {
    /// Writes the header to `out` and starts the body under `key`.
    pub fn new(header: &Header, key: &Key256, out: W) -> std::io::Result<Self> {
        let encoded = header.encode().map_err(std::io::Error::other)?;
        let enc = StreamEncryptor::new(key, &stream_context(&encoded)).map_err(std::io::Error::other)?;
        let mut sealer = Sealer { enc: Some(enc), out, hash: Sha256::new(), written: 0 };
        sealer.emit(&encoded)?;
        let z = zstd::stream::write::Encoder::new(sealer, ZSTD_LEVEL)?;
        Ok(Self { z, section: None, blob_hash: Sha256::new(), scratch: Vec::with_capacity(4096) })
    }

    fn record(&mut self, tag: u8) -> std::io::Result<()> {
        let len = self.scratch.len();
        // What the reader would refuse is never written.
        if len > MAX_RECORD {
            return Err(std::io::Error::other("a record longer than 64 MiB cannot be archived"));
        }
        let mut head = [0u8; 5];
        head[0] = tag;
        head[1..]
            .copy_from_slice(&u32::try_from(len).map_err(|_| std::io::Error::other("record too long"))?.to_be_bytes());
        self.z.write_all(&head)?;
        self.z.write_all(&self.scratch)?;
        Ok(())
    }

    /// Starts a table's section.
    pub fn begin_table(&mut self, name: &str, columns: &[(&str, ColumnKind)]) -> std::io::Result<()> {
        self.scratch.clear();
        put_u16(&mut self.scratch, name.len())?;
        self.scratch.extend_from_slice(name.as_bytes());
        put_u16(&mut self.scratch, columns.len())?;
        for (c, kind) in columns {
            put_u16(&mut self.scratch, c.len())?;
            self.scratch.extend_from_slice(c.as_bytes());
            self.scratch.push(kind.code());
        }
        self.record(T_TABLE)?;
        self.section = Some((Sha256::new(), 0, columns.iter().map(|(_, k)| *k).collect()));
        Ok(())
    }

    /// Writes one row of the current table.
    pub fn row(&mut self, values: &[Value]) -> std::io::Result<()> {
        let Some((hash, rows, kinds)) = self.section.as_mut() else {
            return Err(std::io::Error::other("a row outside a table section"));
        };
        if values.len() != kinds.len() || values.iter().zip(kinds.iter()).any(|(v, k)| !v.fits(*k)) {
            return Err(std::io::Error::other("a row that does not match its table's columns"));
        }
        self.scratch.clear();
        encode_values(&mut self.scratch, values)?;
        hash.update((self.scratch.len() as u64).to_be_bytes());
        hash.update(&self.scratch);
        *rows += 1;
        self.record(T_ROW)
    }

    /// Ends the current table; returns its summary.
    pub fn end_table(&mut self, name: &str) -> std::io::Result<SectionSummary> {
        let Some((hash, rows, _)) = self.section.take() else {
            return Err(std::io::Error::other("no table section to end"));
        };
        let digest: [u8; 32] = hash.finalize().into();
        self.scratch.clear();
        self.scratch.extend_from_slice(&rows.to_be_bytes());
        self.scratch.extend_from_slice(&digest);
        self.record(T_TABLE_END)?;
        Ok(SectionSummary { name: name.to_owned(), rows, sha256: hex::encode(digest) })
    }

    /// Starts a blob of `len` bytes; its pieces follow.
    pub fn begin_blob(&mut self, key: &str, len: u64) -> std::io::Result<()> {
        self.scratch.clear();
        put_u16(&mut self.scratch, key.len())?;
        self.scratch.extend_from_slice(key.as_bytes());
        self.scratch.extend_from_slice(&len.to_be_bytes());
        self.blob_hash.update(&self.scratch);
        self.record(T_BLOB)
    }

    /// Writes a piece of the current blob (at most [`BLOB_PIECE`] bytes).
    pub fn blob_piece(&mut self, piece: &[u8]) -> std::io::Result<()> {
        if piece.len() > BLOB_PIECE {
            return Err(std::io::Error::other("a blob piece longer than 64 KiB"));
        }
        self.blob_hash.update(piece);
        let mut head = [0u8; 5];
        head[0] = T_PIECE;
        head[1..].copy_from_slice(
            &u32::try_from(piece.len()).map_err(|_| std::io::Error::other("piece too long"))?.to_be_bytes(),
        );
        self.z.write_all(&head)?;
        self.z.write_all(piece)
    }

    /// The running hash of blob records, for the manifest.
    pub fn blobs_sha256(&self) -> String {
        hex::encode(self.blob_hash.clone().finalize())
    }

    /// Writes the manifest, ends compression and encryption, and returns
    /// the output with the archive's length and SHA-256.
    pub fn finish(mut self, manifest: &Manifest) -> std::io::Result<(W, u64, [u8; 32])> {
        self.scratch = serde_json::to_vec(manifest).map_err(std::io::Error::other)?;
        self.record(T_MANIFEST)?;
        let mut sealer = self.z.finish()?;
        let enc = sealer.enc.take().ok_or_else(|| std::io::Error::other("archive stream already finished"))?;
        let tail = enc.finish().map_err(std::io::Error::other)?;
        sealer.emit(&tail)?;
        sealer.out.flush()?;
        let digest: [u8; 32] = sealer.hash.finalize().into();
        Ok((sealer.out, sealer.written, digest))
    }
}

/// Reads an archive pushed in pieces: the header first (no key needed),
/// then, once [`Reader::unlock`]ed, the records.
pub struct Reader {
    pending: Vec<u8>,
    header: Option<(Header, Vec<u8>)>,
    dec: Option<StreamDecryptor>,
    z: zstd::stream::write::Decoder<'static, Vec<u8>>,
    /// Decompressed bytes not yet parsed.
    plain: Vec<u8>,
    pos: usize,
    state: ReadState,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

/// What the reader checks as it goes.
#[derive(Default)]
struct ReadState {
    section: Option<(String, Vec<ColumnKind>, Sha256, u64)>,
    sections: Vec<SectionSummary>,
    blob_hash: Sha256,
    blob_left: u64,
    blobs: u64,
    blob_bytes: u64,
    manifest_seen: bool,
}

impl Reader {
    pub fn new() -> Result<Self, FormatError> {
        let z = zstd::stream::write::Decoder::new(Vec::new()).map_err(|e| FormatError::Corrupt(e.to_string()))?;
        Ok(Self {
            pending: Vec::new(),
            header: None,
            dec: None,
            z,
            plain: Vec::new(),
            pos: 0,
            state: ReadState::default(),
        })
    }

    /// Feeds bytes before the header is complete; returns the header once
    /// it is. Bytes after the header are kept for the body.
    pub fn feed_header(&mut self, bytes: &[u8]) -> Result<Option<&Header>, FormatError> {
        self.pending.extend_from_slice(bytes);
        if self.header.is_none() {
            match Header::decode(&self.pending)? {
                None => return Ok(None),
                Some((header, len)) => {
                    let encoded = self.pending[..len].to_vec();
                    self.pending.drain(..len);
                    self.header = Some((header, encoded));
                }
            }
        }
        Ok(self.header.as_ref().map(|(h, _)| h))
    }

    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref().map(|(h, _)| h)
    }

    /// Supplies the data key; the body can be read from now on.
    pub fn unlock(&mut self, key: &Key256) -> Result<Vec<Record>, FormatError> {
        let Some((_, encoded)) = &self.header else { return Err(FormatError::Truncated("no complete header")) };
        self.dec = Some(StreamDecryptor::new(key, &stream_context(encoded)));
        let pending = std::mem::take(&mut self.pending);
        self.feed(&pending)
    }

    /// Feeds body ciphertext; returns the records it completes, checked.
    pub fn feed(&mut self, ciphertext: &[u8]) -> Result<Vec<Record>, FormatError> {
        let Some(dec) = self.dec.as_mut() else {
            self.pending.extend_from_slice(ciphertext);
            return Ok(Vec::new());
        };
        let plain = dec.update(ciphertext).map_err(|_| FormatError::Decrypt)?;
        self.decompress(&plain)
    }

    fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<Record>, FormatError> {
        self.z.write_all(compressed).map_err(|e| FormatError::Corrupt(format!("decompression failed: {e}")))?;
        self.z.flush().map_err(|e| FormatError::Corrupt(format!("decompression failed: {e}")))?;
        let out = std::mem::take(self.z.get_mut());
        self.plain.extend_from_slice(&out);
        self.parse()
    }

    /// Ends the input: checks authentication of the last chunk and that the
    /// archive ended on its manifest. Returns the remaining records.
    pub fn finish(mut self) -> Result<Vec<Record>, FormatError> {
        let Some(dec) = self.dec.take() else { return Err(FormatError::Truncated("the body never started")) };
        let tail = dec.finish().map_err(|e| match e {
            crypto::CryptoError::Malformed(_) => FormatError::Truncated("the encrypted body is cut short"),
            _ => FormatError::Decrypt,
        })?;
        let mut records = self.decompress(&tail)?;
        self.z.flush().map_err(|e| FormatError::Corrupt(format!("decompression failed: {e}")))?;
        let out = std::mem::take(self.z.get_mut());
        self.plain.extend_from_slice(&out);
        records.extend(self.parse()?);
        if !self.state.manifest_seen {
            return Err(FormatError::Truncated("the manifest is missing"));
        }
        if self.pos != self.plain.len() {
            return Err(FormatError::Corrupt("bytes after the manifest".into()));
        }
        Ok(records)
    }

    fn parse(&mut self) -> Result<Vec<Record>, FormatError> {
        let mut records = Vec::new();
        loop {
            let rest = &self.plain[self.pos..];
            if rest.len() < 5 {
                break;
            }
            let tag = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len > MAX_RECORD {
                return Err(FormatError::Corrupt("a record longer than 64 MiB".into()));
            }
            if rest.len() < 5 + len {
                break;
            }
            let body = rest[5..5 + len].to_vec();
            self.pos += 5 + len;
            if self.state.manifest_seen {
                return Err(FormatError::Corrupt("a record after the manifest".into()));
            }
            let record = if tag == T_PIECE { self.piece(body)? } else { self.check(tag, &body)? };
            records.push(record);
        }
        // Keep the buffer small: drop what was parsed.
        if self.pos > 0 && self.pos == self.plain.len() {
            self.plain.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 {
            self.plain.drain(..self.pos);
            self.pos = 0;
        }
        Ok(records)
    }

    /// A piece of the current blob, kept as read (blobs are the bulk of
    /// an archive: no second copy).
    fn piece(&mut self, body: Vec<u8>) -> Result<Record, FormatError> {
        let st = &mut self.state;
        let n = body.len() as u64;
        if n > st.blob_left {
            return Err(FormatError::Corrupt("a blob longer than declared".into()));
        }
        st.blob_left -= n;
        st.blob_bytes += n;
        st.blob_hash.update(&body);
        Ok(Record::BlobPiece(body))
    }

    fn check(&mut self, tag: u8, body: &[u8]) -> Result<Record, FormatError> {
        let st = &mut self.state;
        if st.blob_left > 0 {
            return Err(FormatError::Corrupt("a blob ends early".into()));
        }
        let mut cur = Cursor { b: body, at: 0 };
        let record = match tag {
            T_TABLE => {
                if st.section.is_some() {
                    return Err(FormatError::Corrupt("a table begins inside another".into()));
                }
                let name = cur.str16()?;
                let n = cur.u16()?;
                let mut columns = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    let c = cur.str16()?;
                    let kind = ColumnKind::from_code(cur.u8()?)
                        .ok_or_else(|| FormatError::Corrupt(format!("unknown column type in {name}")))?;
                    columns.push((c, kind));
                }
                st.section = Some((name.clone(), columns.iter().map(|(_, k)| *k).collect(), Sha256::new(), 0));
                Record::Table { name, columns }
            }
            T_ROW => {
                let Some((name, kinds, hash, rows)) = st.section.as_mut() else {
                    return Err(FormatError::Corrupt("a row outside a table".into()));
                };
                let mut values = Vec::with_capacity(kinds.len());
                for kind in kinds.iter() {
                    let v = cur.value()?;
                    if !v.fits(*kind) {
                        return Err(FormatError::Corrupt(format!("a value of the wrong type in {name}")));
                    }
                    values.push(v);
                }
                hash.update((body.len() as u64).to_be_bytes());
                hash.update(body);
                *rows += 1;
                Record::Row(values)
            }
            T_TABLE_END => {
                let Some((name, _, hash, rows)) = st.section.take() else {
                    return Err(FormatError::Corrupt("a table end outside a table".into()));
                };
                let declared = cur.u64()?;
                let digest: [u8; 32] = cur.take(32)?.try_into().map_err(|_| FormatError::Truncated("hash"))?;
                let computed: [u8; 32] = hash.finalize().into();
                if declared != rows || digest != computed {
                    return Err(FormatError::Manifest(format!("section {name}: rows or hash differ")));
                }
                st.sections.push(SectionSummary { name, rows, sha256: hex::encode(digest) });
                Record::TableEnd { rows, sha256: digest }
            }
            T_BLOB => {
                if st.section.is_some() {
                    return Err(FormatError::Corrupt("a blob inside a table".into()));
                }
                let key = cur.str16()?;
                let len = cur.u64()?;
                st.blob_hash.update(body);
                st.blob_left = len;
                st.blobs += 1;
                Record::Blob { key, len }
            }
            T_MANIFEST => {
                if st.section.is_some() {
                    return Err(FormatError::Corrupt("the manifest inside a table".into()));
                }
                let manifest: Manifest = serde_json::from_slice(body)
                    .map_err(|e| FormatError::Corrupt(format!("the manifest is not valid: {e}")))?;
                cur.at = body.len();
                if manifest.sections != st.sections {
                    return Err(FormatError::Manifest("the sections read differ from the manifest".into()));
                }
                if manifest.blobs != st.blobs
                    || manifest.blob_bytes != st.blob_bytes
                    || manifest.blobs_sha256 != hex::encode(st.blob_hash.clone().finalize())
                {
                    return Err(FormatError::Manifest("the blobs read differ from the manifest".into()));
                }
                st.manifest_seen = true;
                Record::Manifest(manifest)
            }
            other => return Err(FormatError::Corrupt(format!("unknown record type {other}"))),
        };
        if cur.at != body.len() {
            return Err(FormatError::Corrupt("a record with trailing bytes".into()));
        }
        Ok(record)
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(FormatError::Truncated("a record"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FormatError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn str16(&mut self) -> Result<String, FormatError> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FormatError::Corrupt("a name that is not UTF-8".into()))
    }
    fn value(&mut self) -> Result<Value, FormatError> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Value::Int(i64::from_be_bytes(a))
            }
            2 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(FormatError::Corrupt("a boolean that is neither 0 nor 1".into())),
            },
            3 => {
                let n = self.u32()? as usize;
                Value::Text(
                    String::from_utf8(self.take(n)?.to_vec())
                        .map_err(|_| FormatError::Corrupt("text that is not UTF-8".into()))?,
                )
            }
            4 => {
                let n = self.u32()? as usize;
                Value::Bytes(self.take(n)?.to_vec())
            }
            5 => {
                let s = self.take(16)?;
                Value::Uuid(Uuid::from_slice(s).map_err(|_| FormatError::Truncated("a uuid"))?)
            }
            6 => {
                let s = self.take(16)?;
                let mut a = [0u8; 16];
                a.copy_from_slice(s);
                Value::Time(
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from_be_bytes(a))
                        .map_err(|_| FormatError::Corrupt("a time out of range".into()))?,
                )
            }
            other => return Err(FormatError::Corrupt(format!("unknown value type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            format: FORMAT_VERSION,
            id: Uuid::now_v7(),
            created_at: OffsetDateTime::now_utc(),
            source_backend: "sqlite".into(),
            schema_version: 12,
            strongroom_version: "test".into(),
            kms_backend: "local".into(),
            kms_key_id: "k".into(),
            wrapped_key: String::new(),
            schedule: "manual".into(),
        }
    }

    fn archive(key: &Key256) -> Vec<u8> {
        let mut w = Writer::new(&header(), key, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        w.begin_table("t", &[("a", ColumnKind::Int), ("b", ColumnKind::Text)]).unwrap_or_else(|e| panic!("{e}"));
        let mut sections = Vec::new();
        for i in 0..1000 {
            w.row(&[Value::Int(i), Value::Text(format!("row {i}"))]).unwrap_or_else(|e| panic!("{e}"));
        }
        sections.push(w.end_table("t").unwrap_or_else(|e| panic!("{e}")));
        w.begin_blob("k/1", 5).unwrap_or_else(|e| panic!("{e}"));
        w.blob_piece(b"hello").unwrap_or_else(|e| panic!("{e}"));
        let blobs_sha256 = w.blobs_sha256();
        let manifest = Manifest { sections, blobs: 1, blob_bytes: 5, blobs_sha256, ..Manifest::default() };
        w.finish(&manifest).unwrap_or_else(|e| panic!("{e}")).0
    }

    fn read(bytes: &[u8], key: &Key256, piece: usize) -> Result<Vec<Record>, FormatError> {
        let mut r = Reader::new()?;
        let mut records = Vec::new();
        let mut unlocked = false;
        for chunk in bytes.chunks(piece) {
            if unlocked {
                records.extend(r.feed(chunk)?);
            } else if r.feed_header(chunk)?.is_some() {
                records.extend(r.unlock(key)?);
                unlocked = true;
            }
        }
        records.extend(r.finish()?);
        Ok(records)
    }

    #[test]
    fn round_trip_in_any_piece_size() {
        let key = Key256::generate().unwrap_or_else(|e| panic!("{e}"));
        let bytes = archive(&key);
        for piece in [1, 7, 4096, bytes.len()] {
            let records = read(&bytes, &key, piece).unwrap_or_else(|e| panic!("{e}"));
            let rows = records.iter().filter(|r| matches!(r, Record::Row(_))).count();
            assert_eq!(rows, 1000);
            assert!(matches!(records.last(), Some(Record::Manifest(_))));
        }
    }

    #[test]
    fn tampering_truncation_wrong_key_and_newer_format_fail() {
        let key = Key256::generate().unwrap_or_else(|e| panic!("{e}"));
        let bytes = archive(&key);
        let mut flipped = bytes.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        assert!(matches!(read(&flipped, &key, 4096), Err(FormatError::Decrypt)));
        let cut = &bytes[..bytes.len() - 10];
        assert!(read(cut, &key, 4096).is_err());
        let other = Key256::generate().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read(&bytes, &other, 4096), Err(FormatError::Decrypt)));
        let mut newer = bytes.clone();
        newer[9] = 2;
        assert!(matches!(read(&newer, &key, 4096), Err(FormatError::NewerFormat(2))));
        let mut header_changed = bytes.clone();
        // A byte inside the header's JSON (the schedule name's last letter).
        let pos = header_changed.windows(6).position(|w| w == b"manual").unwrap_or_else(|| panic!("no schedule"));
        header_changed[pos] = b'M';
        assert!(read(&header_changed, &key, 4096).is_err());
        assert!(matches!(read(b"not an archive", &key, 4096), Err(FormatError::NotAnArchive)));
    }

    #[test]
    fn a_section_missing_from_the_body_fails_the_manifest_check() {
        let key = Key256::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut w = Writer::new(&header(), &key, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        w.begin_table("t", &[("a", ColumnKind::Int)]).unwrap_or_else(|e| panic!("{e}"));
        w.row(&[Value::Int(1)]).unwrap_or_else(|e| panic!("{e}"));
        let written = w.end_table("t").unwrap_or_else(|e| panic!("{e}"));
        let claimed = SectionSummary { name: "profiles".into(), rows: 10, sha256: written.sha256.clone() };
        let blobs_sha256 = w.blobs_sha256();
        let manifest = Manifest { sections: vec![written, claimed], blobs_sha256, ..Manifest::default() };
        let bytes = w.finish(&manifest).unwrap_or_else(|e| panic!("{e}")).0;
        assert!(matches!(read(&bytes, &key, 4096), Err(FormatError::Manifest(_))));
    }

    #[test]
    fn a_row_that_does_not_fit_its_columns_is_refused_when_written() {
        let key = Key256::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut w = Writer::new(&header(), &key, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        w.begin_table("t", &[("a", ColumnKind::Int)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(w.row(&[Value::Text("x".into())]).is_err());
        assert!(w.row(&[Value::Int(1), Value::Int(2)]).is_err());
    }
}
