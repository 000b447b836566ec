//! Streaming encryption for large payloads (file attachments, backups): the
//! STREAM construction over AES-256-GCM, with a per-file subkey from HKDF,
//! sans-IO encryptor and decryptor types that buffer at most one chunk, and
//! the length arithmetic for planning `Content-Length`.
//!
//! Layout: `header || chunk_0 || ... || chunk_n`, where the header is
//! `0x01 || salt (32) || nonce prefix (7)` and each chunk is AES-256-GCM
//! `ciphertext || tag (16)` of up to [`STREAM_CHUNK_LEN`] plaintext bytes,
//! under the nonce `prefix || u32 BE chunk index || last flag` with the header
//! as associated data. Every chunk but the last holds exactly
//! [`STREAM_CHUNK_LEN`] bytes; the last holds 1 to [`STREAM_CHUNK_LEN`] bytes,
//! or none when the whole plaintext is empty. `docs/security.md` records why.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::{Zeroize, Zeroizing};

use crate::{CryptoError, Key256, TAG_LEN, canonical, hkdf_sha256};

/// Plaintext bytes per chunk (64 KiB). Every chunk but the last is exactly
/// this long.
pub const STREAM_CHUNK_LEN: usize = 64 * 1024;

/// The format byte that opens a version-1 stream.
const FORMAT_V1: u8 = 0x01;
const SALT_LEN: usize = 32;
const PREFIX_LEN: usize = 7;
/// `format (1) || salt (32) || nonce prefix (7)`.
const HEADER_LEN: usize = 1 + SALT_LEN + PREFIX_LEN;
/// A sealed full chunk: plaintext plus tag.
const SEALED_CHUNK_LEN: usize = STREAM_CHUNK_LEN + TAG_LEN;
/// The HKDF `info` label; the caller's context follows it.
const SUBKEY_LABEL: &[u8] = b"strongroom/stream/v1";

/// The per-file subkey: HKDF-SHA256 with the header's salt, over the
/// caller's key, bound to the caller's context.
fn derive_subkey(key: &Key256, salt: &[u8], context: &[u8]) -> Result<Key256, CryptoError> {
    let info = canonical(&[SUBKEY_LABEL, context]);
    let (prk, okm) = hkdf_sha256(salt, key.expose_for_cipher(), &info, Key256::LEN)?;
    let (_prk, mut okm) = (Zeroizing::new(prk), Zeroizing::new(okm));
    Key256::from_slice(&mut okm)
}

/// Chunk `index`'s nonce: `prefix (7) || index (u32 BE) || last (1)`.
fn chunk_nonce(header: &[u8; HEADER_LEN], index: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..PREFIX_LEN].copy_from_slice(&header[1 + SALT_LEN..]);
    nonce[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    nonce[PREFIX_LEN + 4] = u8::from(last);
    nonce
}

fn cipher(subkey: &Key256) -> Aes256Gcm {
    Aes256Gcm::new(subkey.expose_for_cipher().into())
}

/// Encrypts a stream of plaintext pieces. Feed it with
/// [`update`](Self::update) and end it with [`finish`](Self::finish); write
/// every returned piece, in order. Dropping it without `finish` leaves a
/// stream that fails to decrypt (no final chunk).
pub struct StreamEncryptor {
    subkey: Key256,
    header: [u8; HEADER_LEN],
    header_written: bool,
    /// Plaintext not yet sealed: at most one chunk, wiped after sealing.
    buf: Zeroizing<Vec<u8>>,
    /// The index of the next chunk to seal.
    index: u32,
    /// Set when sealing failed; the stream cannot be continued.
    failed: Option<CryptoError>,
}

impl StreamEncryptor {
    /// Starts a stream under `key`, bound to `context` (for an attachment:
    /// the organisation, profile and attachment ids, canonically encoded).
    /// Draws a fresh salt and nonce prefix, so every stream has its own
    /// subkey even under one key and context.
    pub fn new(key: &Key256, context: &[u8]) -> Result<Self, CryptoError> {
        let mut header = [0u8; HEADER_LEN];
        header[0] = FORMAT_V1;
        crate::random_bytes(&mut header[1..])?;
        let subkey = derive_subkey(key, &header[1..=SALT_LEN], context)?;
        Ok(Self {
            subkey,
            header,
            header_written: false,
            buf: Zeroizing::new(Vec::with_capacity(STREAM_CHUNK_LEN)),
            index: 0,
            failed: None,
        })
    }

    /// Feeds plaintext; returns ciphertext ready to write: the header on the
    /// first call, then every chunk that is complete and known not to be the
    /// last. A full chunk is sealed only when more plaintext follows it, so
    /// at most one chunk stays buffered.
    pub fn update(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let chunks = (self.buf.len() + plaintext.len()).saturating_sub(1) / STREAM_CHUNK_LEN;
        let mut out = Vec::with_capacity(HEADER_LEN + chunks * SEALED_CHUNK_LEN);
        self.write_header(&mut out);
        let mut rest = plaintext;
        while !rest.is_empty() {
            if self.buf.len() == STREAM_CHUNK_LEN {
                // More plaintext follows the buffered chunk, so it is not the last.
                if let Err(e) = self.seal_into(&mut out, false) {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
            let take = rest.len().min(STREAM_CHUNK_LEN - self.buf.len());
            let (piece, tail) = rest.split_at(take);
            self.buf.extend_from_slice(piece);
            rest = tail;
        }
        Ok(out)
    }

    /// Seals what is buffered as the final chunk (empty if the whole stream
    /// was empty) and returns the remaining ciphertext, with the header if
    /// [`update`](Self::update) was never called.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut out = Vec::with_capacity(HEADER_LEN + self.buf.len() + TAG_LEN);
        self.write_header(&mut out);
        self.seal_into(&mut out, true)?;
        Ok(out)
    }

    fn write_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_written {
            out.extend_from_slice(&self.header);
            self.header_written = true;
        }
    }

    /// Seals the buffer as chunk `self.index` and appends it to `out`.
    fn seal_into(&mut self, out: &mut Vec<u8>, last: bool) -> Result<(), CryptoError> {
        let index = self.index;
        if !last {
            // A non-final chunk must leave an index for the final one.
            self.index = index.checked_add(1).ok_or(CryptoError::Malformed("stream longer than 2^32 chunks"))?;
        }
        let start = out.len();
        out.extend_from_slice(&self.buf);
        let sealed = cipher(&self.subkey).encrypt_inout_detached(
            &Nonce::from(chunk_nonce(&self.header, index, last)),
            &self.header,
            (&mut out[start..]).into(),
        );
        self.buf.zeroize();
        match sealed {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(_) => {
                out[start..].zeroize();
                out.truncate(start);
                Err(CryptoError::Malformed("chunk too long"))
            }
        }
    }
}

impl fmt::Debug for StreamEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncryptor")
            .field("chunks_sealed", &self.index)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// Decrypts a stream made by [`StreamEncryptor`], fed in pieces of any size.
/// It returns only authenticated plaintext, and a chunk only once it is known
/// whether that chunk is the last, so the caller must treat the output as
/// incomplete until [`finish`](Self::finish) succeeds. After any error it
/// refuses further input.
pub struct StreamDecryptor {
    state: DecryptState,
    /// Ciphertext not yet opened: part of the header, or at most one sealed
    /// chunk.
    buf: Vec<u8>,
    /// The index of the next chunk to open.
    index: u32,
}

enum DecryptState {
    /// Waiting for the header; the subkey needs its salt.
    Header {
        key: Key256,
        context: Vec<u8>,
    },
    Body {
        subkey: Key256,
        header: [u8; HEADER_LEN],
    },
    Failed(CryptoError),
}

impl StreamDecryptor {
    /// Prepares to decrypt a stream under `key` and `context`; the header
    /// comes from the input.
    pub fn new(key: &Key256, context: &[u8]) -> Self {
        Self {
            state: DecryptState::Header { key: key.clone(), context: context.to_vec() },
            buf: Vec::with_capacity(HEADER_LEN),
            index: 0,
        }
    }

    /// Feeds ciphertext; returns the plaintext of every chunk that is
    /// complete, authenticated, and followed by at least one more byte (so
    /// known not to be the last). On error nothing of this call is returned
    /// and the stream is abandoned.
    pub fn update(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // Sized up front so the plaintext is never copied by a reallocation.
        let chunks = (self.buf.len() + ciphertext.len()) / SEALED_CHUNK_LEN;
        let mut out = Vec::with_capacity(chunks * SEALED_CHUNK_LEN);
        match self.absorb(ciphertext, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                out.zeroize();
                self.state = DecryptState::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// Opens the buffered chunk as the final one. Fails if the input ended
    /// inside the header or a chunk, or if its last chunk is not sealed as
    /// final (truncated, or the final chunk dropped).
    pub fn finish(self) -> Result<Vec<u8>, CryptoError> {
        let (subkey, header) = match &self.state {
            DecryptState::Failed(e) => return Err(e.clone()),
            DecryptState::Header { .. } => return Err(CryptoError::Malformed("truncated stream header")),
            DecryptState::Body { subkey, header } => (subkey, header),
        };
        if self.buf.len() < TAG_LEN {
            return Err(CryptoError::Malformed("truncated stream"));
        }
        if self.buf.len() == TAG_LEN && self.index > 0 {
            // The encryptor seals an empty final chunk only for an empty stream.
            return Err(CryptoError::Malformed("empty final chunk"));
        }
        let mut out = Vec::with_capacity(self.buf.len());
        open_into(subkey, header, self.index, true, &self.buf, &mut out)?;
        Ok(out)
    }

    fn absorb(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let mut rest = ciphertext;
        if let DecryptState::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if let DecryptState::Header { .. } = self.state {
            let take = rest.len().min(HEADER_LEN - self.buf.len());
            let (piece, tail) = rest.split_at(take);
            self.buf.extend_from_slice(piece);
            rest = tail;
            if self.buf.len() < HEADER_LEN {
                return Ok(());
            }
            self.begin_body()?;
        }
        let DecryptState::Body { subkey, header } = &self.state else {
            return Err(CryptoError::Malformed("stream state"));
        };
        while !rest.is_empty() {
            if self.buf.len() == SEALED_CHUNK_LEN {
                // A byte follows the buffered chunk, so it must not be the last.
                let index = self.index;
                self.index = index.checked_add(1).ok_or(CryptoError::Malformed("stream longer than 2^32 chunks"))?;
                open_into(subkey, header, index, false, &self.buf, out)?;
                self.buf.clear();
            }
            let take = rest.len().min(SEALED_CHUNK_LEN - self.buf.len());
            let (piece, tail) = rest.split_at(take);
            self.buf.extend_from_slice(piece);
            rest = tail;
        }
        Ok(())
    }

    /// Checks the complete header in `buf` and derives the subkey.
    fn begin_body(&mut self) -> Result<(), CryptoError> {
        let header: [u8; HEADER_LEN] =
            self.buf.as_slice().try_into().map_err(|_| CryptoError::Malformed("truncated stream header"))?;
        if header[0] != FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown stream format"));
        }
        let DecryptState::Header { key, context } = &self.state else {
            return Err(CryptoError::Malformed("stream state"));
        };
        let subkey = derive_subkey(key, &header[1..=SALT_LEN], context)?;
        self.state = DecryptState::Body { subkey, header };
        self.buf.clear();
        self.buf.reserve_exact(SEALED_CHUNK_LEN);
        Ok(())
    }
}

/// Opens one sealed chunk and appends its plaintext to `out`; on failure
/// `out` is left as it was.
fn open_into(
    subkey: &Key256,
    header: &[u8; HEADER_LEN],
    index: u32,
    last: bool,
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let split = sealed.len().checked_sub(TAG_LEN).ok_or(CryptoError::Malformed("truncated chunk"))?;
    let (ciphertext, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::Malformed("truncated chunk"))?;
    let start = out.len();
    out.extend_from_slice(ciphertext);
    let opened = cipher(subkey).decrypt_inout_detached(
        &Nonce::from(chunk_nonce(header, index, last)),
        header,
        (&mut out[start..]).into(),
        &tag,
    );
    if opened.is_err() {
        // GCM checks the tag before decrypting: this is still ciphertext.
        out.truncate(start);
        return Err(CryptoError::Decrypt);
    }
    Ok(())
}

impl fmt::Debug for StreamDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            DecryptState::Header { .. } => "header",
            DecryptState::Body { .. } => "body",
            DecryptState::Failed(_) => "failed",
        };
        f.debug_struct("StreamDecryptor")
            .field("state", &state)
            .field("chunks_opened", &self.index)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The ciphertext length of a plaintext of `plaintext_len` bytes: the header
/// plus one tag per chunk (at least one chunk). Saturates above the format's
/// limit of 2^32 full chunks (256 TiB), which the encryptor refuses.
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    let chunk = STREAM_CHUNK_LEN as u64;
    let chunks = plaintext_len.div_ceil(chunk).max(1);
    (HEADER_LEN as u64).saturating_add(plaintext_len).saturating_add(chunks.saturating_mul(TAG_LEN as u64))
}

/// The plaintext length of a stream of `ciphertext_len` bytes, or
/// `Malformed` if no stream the encryptor makes has that length.
pub fn plaintext_len(ciphertext_len: u64) -> Result<u64, CryptoError> {
    let (sealed, tag) = (SEALED_CHUNK_LEN as u64, TAG_LEN as u64);
    let body =
        ciphertext_len.checked_sub(HEADER_LEN as u64).ok_or(CryptoError::Malformed("truncated stream header"))?;
    if body < tag {
        return Err(CryptoError::Malformed("truncated stream"));
    }
    // Every chunk but the last is full; the last is 1 to `sealed` bytes.
    let full = (body - 1) / sealed;
    let last = body - full * sealed;
    if last < tag || (last == tag && full > 0) {
        return Err(CryptoError::Malformed("impossible stream length"));
    }
    if full > u64::from(u32::MAX) {
        return Err(CryptoError::Malformed("stream longer than 2^32 chunks"));
    }
    Ok(body - (full + 1) * tag)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CHUNK: usize = STREAM_CHUNK_LEN;
    const LENGTHS: [usize; 6] = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5];

    fn key() -> Key256 {
        Key256::generate().unwrap_or_else(|e| panic!("{e}"))
    }

    fn plaintext(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        crate::random_bytes(&mut p).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// Encrypts in one call.
    fn encrypt(key: &Key256, context: &[u8], pt: &[u8]) -> Vec<u8> {
        let mut enc = StreamEncryptor::new(key, context).unwrap_or_else(|e| panic!("{e}"));
        let mut ct = enc.update(pt).unwrap_or_else(|e| panic!("{e}"));
        ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        ct
    }

    /// Decrypts in one call. Plaintext returned before an error counts as
    /// unreleased: the caller must wait for `finish`.
    fn decrypt(key: &Key256, context: &[u8], ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut dec = StreamDecryptor::new(key, context);
        let mut pt = dec.update(ct)?;
        pt.extend(dec.finish()?);
        Ok(pt)
    }

    /// Cuts `data` into pieces at the given lengths (taken modulo what is
    /// left), then the rest.
    fn pieces<'a>(mut data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        for cut in cuts {
            let (piece, rest) = data.split_at(cut % (data.len() + 1));
            out.push(piece);
            data = rest;
        }
        out.push(data);
        out
    }

    /// The byte ranges of each sealed chunk in a stream of `pt_len` bytes.
    fn chunk_ranges(pt_len: usize) -> Vec<std::ops::Range<usize>> {
        let chunks = pt_len.div_ceil(CHUNK).max(1);
        (0..chunks)
            .map(|i| {
                let start = HEADER_LEN + i * SEALED_CHUNK_LEN;
                let len = if i + 1 == chunks { pt_len - i * CHUNK + TAG_LEN } else { SEALED_CHUNK_LEN };
                start..start + len
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn round_trips_whatever_the_pieces(
            len in proptest::sample::select(LENGTHS.to_vec()),
            enc_cuts in proptest::collection::vec(0usize..2 * CHUNK, 0..6),
            dec_cuts in proptest::collection::vec(0usize..2 * CHUNK, 0..6),
        ) {
            let (k, ctx) = (key(), b"org/profile/attachment".as_slice());
            let pt = plaintext(len);
            let mut enc = StreamEncryptor::new(&k, ctx).unwrap_or_else(|e| panic!("{e}"));
            let mut ct = Vec::new();
            for piece in pieces(&pt, &enc_cuts) {
                ct.extend(enc.update(piece).unwrap_or_else(|e| panic!("{e}")));
                prop_assert!(enc.buf.len() <= CHUNK);
            }
            ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
            prop_assert_eq!(ct.len() as u64, ciphertext_len(len as u64));
            prop_assert_eq!(plaintext_len(ct.len() as u64), Ok(len as u64));

            let mut dec = StreamDecryptor::new(&k, ctx);
            let mut out = Vec::new();
            for piece in pieces(&ct, &dec_cuts) {
                out.extend(dec.update(piece).unwrap_or_else(|e| panic!("{e}")));
                prop_assert!(dec.buf.len() <= SEALED_CHUNK_LEN);
            }
            out.extend(dec.finish().unwrap_or_else(|e| panic!("{e}")));
            prop_assert!(out == pt);
        }

        #[test]
        fn a_flipped_bit_anywhere_in_a_long_stream_fails(bit in any::<usize>()) {
            // One stream for every case, to keep the test quick.
            static STREAM: std::sync::OnceLock<(Key256, Vec<u8>)> = std::sync::OnceLock::new();
            let (k, ct) = STREAM.get_or_init(|| {
                let k = key();
                let ct = encrypt(&k, b"ctx", &plaintext(2 * CHUNK + 5));
                (k, ct)
            });
            let mut ct = ct.clone();
            let bit = bit % (ct.len() * 8);
            ct[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decrypt(k, b"ctx", &ct).is_err());
        }
    }

    #[test]
    fn round_trips_byte_by_byte() {
        let (k, pt) = (key(), plaintext(300));
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let mut ct = Vec::new();
        for b in &pt {
            ct.extend(enc.update(std::slice::from_ref(b)).unwrap_or_else(|e| panic!("{e}")));
        }
        ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        let mut out = Vec::new();
        for b in &ct {
            out.extend(dec.update(std::slice::from_ref(b)).unwrap_or_else(|e| panic!("{e}")));
        }
        out.extend(dec.finish().unwrap_or_else(|e| panic!("{e}")));
        assert!(out == pt);
    }

    #[test]
    fn finish_alone_makes_the_header_and_one_empty_final_chunk() {
        let k = key();
        let enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let ct = enc.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ct.len(), HEADER_LEN + TAG_LEN);
        assert_eq!(ct.first(), Some(&FORMAT_V1));
        assert_eq!(decrypt(&k, b"ctx", &ct), Ok(Vec::new()));
    }

    #[test]
    fn the_format_is_as_documented() {
        // Open chunk 0 and the final chunk with the plain AEAD envelope, from
        // the documented derivation, nonce and associated data.
        let (k, pt) = (key(), plaintext(CHUNK + 10));
        let ct = encrypt(&k, b"ctx", &pt);
        let header = &ct[..HEADER_LEN];
        let info = canonical(&[&b"strongroom/stream/v1"[..], &b"ctx"[..]]);
        let (_, mut okm) = hkdf_sha256(&header[1..33], k.expose_for_cipher(), &info, 32).unwrap_or_default();
        let subkey = Key256::from_slice(&mut okm).unwrap_or_else(|e| panic!("{e}"));
        let ranges = chunk_ranges(pt.len());
        for (i, range) in ranges.iter().enumerate() {
            let last = i + 1 == ranges.len();
            let mut sealed = header[33..40].to_vec();
            sealed.extend_from_slice(&(i as u32).to_be_bytes());
            sealed.push(u8::from(last));
            sealed.extend_from_slice(&ct[range.clone()]);
            let opened = crate::open(&subkey, header, &sealed).unwrap_or_else(|e| panic!("chunk {i}: {e}"));
            assert!(opened.as_slice() == &pt[i * CHUNK..(i * CHUNK + CHUNK).min(pt.len())]);
        }
    }

    #[test]
    fn a_chunk_is_released_only_once_a_byte_follows_it() {
        let k = key();
        let pt = plaintext(CHUNK + 1);
        let ct = encrypt(&k, b"ctx", &pt);
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        let first = HEADER_LEN + SEALED_CHUNK_LEN;
        assert_eq!(dec.update(&ct[..first]).map(|p| p.len()), Ok(0));
        assert_eq!(dec.update(&ct[first..first + 1]).map(|p| p.len()), Ok(CHUNK));
        assert_eq!(dec.update(&ct[first + 1..]).map(|p| p.len()), Ok(0));
        assert_eq!(dec.finish().map(|p| p.len()), Ok(1));
    }

    #[test]
    fn an_encryptor_seals_a_full_chunk_only_once_more_plaintext_arrives() {
        let k = key();
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(enc.update(&plaintext(CHUNK)).map(|c| c.len()), Ok(HEADER_LEN));
        assert_eq!(enc.update(b"x").map(|c| c.len()), Ok(SEALED_CHUNK_LEN));
        assert_eq!(enc.finish().map(|c| c.len()), Ok(1 + TAG_LEN));
    }

    #[test]
    fn buffers_stay_within_a_chunk_when_fed_a_large_piece() {
        let k = key();
        let pt = plaintext(5 * CHUNK + 3);
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let mut ct = enc.update(&pt).unwrap_or_else(|e| panic!("{e}"));
        assert!(enc.buf.capacity() <= 2 * CHUNK, "encryptor buffer {}", enc.buf.capacity());
        ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        let out = dec.update(&ct).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.len(), 5 * CHUNK);
        assert!(dec.buf.capacity() <= 2 * CHUNK, "decryptor buffer {}", dec.buf.capacity());
    }

    #[test]
    fn truncation_at_a_chunk_boundary_is_detected_at_finish() {
        let k = key();
        let pt = plaintext(3 * CHUNK + 5);
        let ct = encrypt(&k, b"ctx", &pt);
        for chunks in 1..=3 {
            let cut = &ct[..HEADER_LEN + chunks * SEALED_CHUNK_LEN];
            let mut dec = StreamDecryptor::new(&k, b"ctx");
            let released = dec.update(cut).map(|p| p.len());
            assert_eq!(released, Ok((chunks - 1) * CHUNK), "{chunks} chunks");
            assert_eq!(dec.finish(), Err(CryptoError::Decrypt), "{chunks} chunks");
        }
        // Nothing after the header, or a cut inside the header or a chunk.
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + TAG_LEN - 1, HEADER_LEN + SEALED_CHUNK_LEN + 3] {
            assert!(decrypt(&k, b"ctx", &ct[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn dropping_the_final_chunk_is_detected() {
        let k = key();
        for len in [CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
            let ct = encrypt(&k, b"ctx", &plaintext(len));
            let ranges = chunk_ranges(len);
            let last = ranges.last().map(|r| r.start).unwrap_or_default();
            assert_eq!(decrypt(&k, b"ctx", &ct[..last]), Err(CryptoError::Decrypt), "length {len}");
        }
    }

    #[test]
    fn reordered_chunks_fail() {
        let k = key();
        let ct = encrypt(&k, b"ctx", &plaintext(3 * CHUNK + 5));
        let r = chunk_ranges(3 * CHUNK + 5);
        let mut swapped = ct[..HEADER_LEN].to_vec();
        for i in [1, 0, 2, 3] {
            swapped.extend_from_slice(&ct[r[i].clone()]);
        }
        assert_eq!(swapped.len(), ct.len());
        assert_eq!(decrypt(&k, b"ctx", &swapped), Err(CryptoError::Decrypt));
        // The final chunk moved forward, a full chunk put last.
        let mut moved = ct.clone();
        moved.truncate(HEADER_LEN);
        for i in [0, 1, 3, 2] {
            moved.extend_from_slice(&ct[r[i].clone()]);
        }
        assert!(decrypt(&k, b"ctx", &moved).is_err());
    }

    #[test]
    fn a_chunk_from_another_stream_under_the_same_key_and_context_fails() {
        let k = key();
        let len = 2 * CHUNK + 5;
        let (a, b) = (encrypt(&k, b"ctx", &plaintext(len)), encrypt(&k, b"ctx", &plaintext(len)));
        for range in chunk_ranges(len) {
            let mut mixed = a.clone();
            mixed[range.clone()].copy_from_slice(&b[range]);
            assert_eq!(decrypt(&k, b"ctx", &mixed), Err(CryptoError::Decrypt));
        }
        // B's header on A's chunks.
        let mut mixed = a.clone();
        mixed[..HEADER_LEN].copy_from_slice(&b[..HEADER_LEN]);
        assert_eq!(decrypt(&k, b"ctx", &mixed), Err(CryptoError::Decrypt));
    }

    #[test]
    fn the_wrong_context_or_key_fails() {
        let k = key();
        let ct = encrypt(&k, b"org-1/profile-1/att-1", b"hello");
        assert_eq!(decrypt(&k, b"org-1/profile-1/att-1", &ct), Ok(b"hello".to_vec()));
        assert_eq!(decrypt(&k, b"org-1/profile-1/att-2", &ct), Err(CryptoError::Decrypt));
        assert_eq!(decrypt(&k, b"", &ct), Err(CryptoError::Decrypt));
        assert_eq!(decrypt(&key(), b"org-1/profile-1/att-1", &ct), Err(CryptoError::Decrypt));
    }

    #[test]
    fn every_flipped_bit_of_a_short_stream_fails() {
        let k = key();
        let ct = encrypt(&k, b"ctx", b"a short attachment");
        for bit in 0..ct.len() * 8 {
            let mut bad = ct.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let expected = if bit < 8 { CryptoError::Malformed("unknown stream format") } else { CryptoError::Decrypt };
            assert_eq!(decrypt(&k, b"ctx", &bad), Err(expected), "bit {bit}");
        }
    }

    #[test]
    fn flipped_bits_at_chunk_edges_fail() {
        let k = key();
        let len = 2 * CHUNK + 5;
        let ct = encrypt(&k, b"ctx", &plaintext(len));
        for range in chunk_ranges(len) {
            // First and last body byte, first and last tag byte.
            let tag = range.end - TAG_LEN;
            for at in [range.start, tag - 1, tag, range.end - 1] {
                let mut bad = ct.clone();
                bad[at] ^= 0x80;
                assert_eq!(decrypt(&k, b"ctx", &bad), Err(CryptoError::Decrypt), "byte {at}");
            }
        }
        for at in 0..HEADER_LEN {
            let mut bad = ct.clone();
            bad[at] ^= 0x01;
            assert!(decrypt(&k, b"ctx", &bad).is_err(), "header byte {at}");
        }
    }

    #[test]
    fn nothing_is_accepted_after_an_error() {
        let k = key();
        let pt = plaintext(2 * CHUNK + 5);
        let mut ct = encrypt(&k, b"ctx", &pt);
        ct[HEADER_LEN] ^= 1;
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        assert_eq!(dec.update(&ct[..HEADER_LEN + SEALED_CHUNK_LEN + 1]), Err(CryptoError::Decrypt));
        assert_eq!(dec.update(&ct[HEADER_LEN + SEALED_CHUNK_LEN + 1..]), Err(CryptoError::Decrypt));
        assert_eq!(dec.finish(), Err(CryptoError::Decrypt));
    }

    #[test]
    fn an_empty_final_chunk_after_full_chunks_is_refused() {
        // Not something the encryptor makes: force it through the internals.
        let k = key();
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let mut ct = enc.update(&plaintext(CHUNK)).unwrap_or_else(|e| panic!("{e}"));
        enc.seal_into(&mut ct, false).unwrap_or_else(|e| panic!("{e}"));
        ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(ct.len(), HEADER_LEN + SEALED_CHUNK_LEN + TAG_LEN);
        assert_eq!(decrypt(&k, b"ctx", &ct), Err(CryptoError::Malformed("empty final chunk")));
        assert!(plaintext_len(ct.len() as u64).is_err());
    }

    #[test]
    fn the_chunk_counter_never_wraps() {
        let k = key();
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        enc.index = u32::MAX;
        assert!(enc.update(&plaintext(CHUNK)).is_ok());
        let overflow = Err(CryptoError::Malformed("stream longer than 2^32 chunks"));
        assert_eq!(enc.update(b"x"), overflow);
        assert_eq!(enc.finish(), overflow);

        // A last chunk at index 2^32 - 1 is still allowed.
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let mut ct = enc.update(&plaintext(CHUNK)).unwrap_or_else(|e| panic!("{e}"));
        enc.index = u32::MAX;
        ct.extend(enc.finish().unwrap_or_else(|e| panic!("{e}")));
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        assert_eq!(dec.update(&ct[..HEADER_LEN]), Ok(Vec::new()));
        dec.index = u32::MAX;
        assert_eq!(dec.update(&ct[HEADER_LEN..]), Ok(Vec::new()));
        assert_eq!(dec.finish().map(|p| p.len()), Ok(CHUNK));

        // The decryptor refuses a chunk after index 2^32 - 1.
        let mut dec = StreamDecryptor::new(&k, b"ctx");
        assert_eq!(dec.update(&ct), Ok(Vec::new()));
        dec.index = u32::MAX;
        assert_eq!(dec.update(&[0]), overflow);
    }

    #[test]
    fn a_bad_format_byte_is_malformed() {
        let k = key();
        let mut ct = encrypt(&k, b"ctx", b"x");
        ct[0] = 2;
        assert_eq!(decrypt(&k, b"ctx", &ct), Err(CryptoError::Malformed("unknown stream format")));
    }

    #[test]
    fn lengths_agree_with_real_streams_and_refuse_impossible_ones() {
        let k = key();
        for len in LENGTHS.into_iter().chain([2, 2 * CHUNK, 2 * CHUNK + 1]) {
            let ct = encrypt(&k, b"ctx", &plaintext(len));
            assert_eq!(ct.len() as u64, ciphertext_len(len as u64), "length {len}");
            assert_eq!(plaintext_len(ct.len() as u64), Ok(len as u64), "length {len}");
        }
        let (h, t, s) = (HEADER_LEN as u64, TAG_LEN as u64, SEALED_CHUNK_LEN as u64);
        for impossible in [0, h, h + t - 1, h + s + t, h + s + 1, h + 2 * s + t - 1] {
            assert!(plaintext_len(impossible).is_err(), "{impossible}");
        }
        // Inverse over a sweep, including the 256 TiB limit.
        let max = (u64::from(u32::MAX) + 1) * CHUNK as u64;
        for len in (0..5 * CHUNK as u64).step_by(4093).chain([max - 1, max]) {
            assert_eq!(plaintext_len(ciphertext_len(len)), Ok(len), "length {len}");
        }
        assert!(plaintext_len(ciphertext_len(max + 1)).is_err());
        assert_eq!(ciphertext_len(u64::MAX), u64::MAX);
    }

    #[test]
    fn debug_shows_no_key_or_plaintext() {
        let k = key();
        let mut enc = StreamEncryptor::new(&k, b"ctx").unwrap_or_else(|e| panic!("{e}"));
        let _ = enc.update(b"secret");
        assert_eq!(format!("{enc:?}"), "StreamEncryptor { chunks_sealed: 0, buffered: 6, .. }");
        let dec = StreamDecryptor::new(&k, b"ctx");
        assert_eq!(format!("{dec:?}"), "StreamDecryptor { state: \"header\", chunks_opened: 0, buffered: 0, .. }");
    }
}
