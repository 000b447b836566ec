//! The audit trail: one hash chain per organisation plus a platform chain,
//! signed checkpoints, and verification that names the first bad entry.
//!
//! Architecture invariant: entries hold identifiers and field names, never a
//! personal value, so erasing personal data never breaks a chain. This
//! crate does no IO: the store keeps entries, the engine appends them.
//!
//! Entry hash, format 1: `SHA-256(canonical("strongroom/audit/v1", chain,
//! seq (u64 BE), time (unix microseconds, i64 BE), actor, on_behalf_of,
//! action, target, outcome, canonical(field names...), request id,
//! previous hash))`; the first entry's previous hash is 32 zero bytes.
//! A checkpoint is an EdDSA JWS over `{chain, size, head, at}`.

pub mod export;

use std::collections::HashMap;

use crypto::jose::{JoseError, SigningKey, VerifyingKeyEntry};
use serde_json::json;

/// The hash before the first entry of every chain.
pub const GENESIS: [u8; 32] = [0; 32];

/// One audit entry, as chained. Identifiers and names only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `org:<uuid>` or `platform`.
    pub chain: String,
    /// 1, 2, 3... within the chain.
    pub seq: u64,
    /// Unix time in microseconds.
    pub at_micros: i64,
    /// `user:<uuid>`, `service_account:<uuid>`, `cli`, `system`.
    pub actor: String,
    /// Whom the actor acted for, if anyone (support sessions).
    pub on_behalf_of: Option<String>,
    /// Such as `profile.create`, `profile.read`, `schema.update`.
    pub action: String,
    /// Such as `profile:<uuid>`.
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    /// Names of the fields changed or read, never their values.
    pub fields: Vec<String>,
    pub request_id: Option<String>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// What an entry records, before it has a place in a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub at_micros: i64,
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub fields: Vec<String>,
    pub request_id: Option<String>,
}

impl Draft {
    /// Places the draft after `prev_hash` at position `seq` of `chain`.
    pub fn seal(&self, chain: &str, seq: u64, prev_hash: [u8; 32]) -> Entry {
        let mut e = Entry {
            chain: chain.to_owned(),
            seq,
            at_micros: self.at_micros,
            actor: self.actor.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            outcome: self.outcome.clone(),
            fields: self.fields.clone(),
            request_id: self.request_id.clone(),
            prev_hash,
            hash: [0; 32],
        };
        e.hash = entry_hash(&e, seq);
        e
    }
}

/// The hash of an entry's content as if it sat at position `seq`.
fn entry_hash(e: &Entry, seq: u64) -> [u8; 32] {
    // The names come from the list; the view's stored text is not read.
    e.borrowed("").hash_at(seq, e.fields.iter().map(|f| f.as_bytes()))
}

impl Entry {
    /// This entry as the store holds it, with `fields` as its stored
    /// field names.
    fn borrowed<'a>(&'a self, fields: &'a str) -> StoredEntry<'a> {
        StoredEntry {
            chain: &self.chain,
            seq: self.seq,
            at_micros: self.at_micros,
            actor: &self.actor,
            on_behalf_of: self.on_behalf_of.as_deref(),
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            fields,
            request_id: self.request_id.as_deref(),
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
    }
}

/// An entry as the store holds it, borrowed from the row it was read
/// from, for verifying a chain without copying every entry.
#[derive(Clone, Copy, Debug)]
pub struct StoredEntry<'a> {
    pub chain: &'a str,
    pub seq: u64,
    pub at_micros: i64,
    pub actor: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    /// The field names as stored: separated by white space.
    pub fields: &'a str,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl StoredEntry<'_> {
    /// The hash its content should have at its own position.
    fn computed_hash(&self) -> [u8; 32] {
        self.hash_at(self.seq, self.fields.split_whitespace().map(str::as_bytes))
    }

    /// Entry hash, format 1 (see the crate's documentation), at position
    /// `seq` with these field names; `self.seq`, `self.fields` and
    /// `self.hash` are not read.
    fn hash_at<'f>(&self, seq: u64, fields: impl Iterator<Item = &'f [u8]> + Clone) -> [u8; 32] {
        crypto::CanonicalSha256::new()
            .part(b"strongroom/audit/v1")
            .part(self.chain.as_bytes())
            .part(&seq.to_be_bytes())
            .part(&self.at_micros.to_be_bytes())
            .part(self.actor.as_bytes())
            .part(self.on_behalf_of.unwrap_or("").as_bytes())
            .part(self.action.as_bytes())
            .part(self.target.as_bytes())
            .part(self.outcome.as_bytes())
            .nested(fields)
            .part(self.request_id.unwrap_or("").as_bytes())
            .part(self.prev_hash)
            .finish()
    }
}

/// A signed statement that a chain had `size` entries ending in `head`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub chain: String,
    pub size: u64,
    pub head: [u8; 32],
    pub at_micros: i64,
    /// The compact JWS (EdDSA) over the four members above.
    pub jws: String,
}

/// Signs a checkpoint of a chain's head.
pub fn sign_checkpoint(
    key: &SigningKey,
    chain: &str,
    size: u64,
    head: [u8; 32],
    at_micros: i64,
) -> Result<Checkpoint, JoseError> {
    let claims = json!({ "chain": chain, "size": size, "head": hex(&head), "at": at_micros });
    let jws = key.sign(&claims)?;
    Ok(Checkpoint { chain: chain.to_owned(), size, head, at_micros, jws })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is wrong with a chain: the first problem found, by position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The entry's content no longer matches its hash.
    #[error("entry {seq} was edited: its content does not match its hash")]
    Edited { seq: u64 },
    /// Entries are missing before this one.
    #[error("entries {from} to {to} were removed")]
    Removed { from: u64, to: u64 },
    /// The entry sealed at position `sealed_at` is now at `seq`.
    #[error("entry {seq} was moved: it was sealed as entry {sealed_at}")]
    Reordered { seq: u64, sealed_at: u64 },
    /// An entry that the chain never held, or a position held twice.
    #[error("entry {seq} was inserted: it does not follow the entry before it")]
    Inserted { seq: u64 },
    /// A checkpoint's signature fails, or the chain no longer has the head
    /// it signed.
    #[error("checkpoint at size {size} does not match: {why}")]
    Checkpoint { size: u64, why: &'static str },
}

/// What verification found in a sound chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: u64,
}

/// Verifies a chain, entries in stored order by `seq`, against its
/// checkpoints. Reports the first problem.
pub fn verify(entries: &[Entry], checkpoints: &[Checkpoint], keys: &[VerifyingKeyEntry]) -> Result<Verified, Broken> {
    // Where each stored hash sits, to tell a moved entry from a foreign one.
    let by_hash: HashMap<[u8; 32], u64> = entries.iter().map(|e| (e.hash, e.seq)).collect();
    let mut expected_seq = 1u64;
    let mut prev = GENESIS;
    for e in entries {
        if e.seq > expected_seq {
            return Err(Broken::Removed { from: expected_seq, to: e.seq - 1 });
        }
        if e.seq < expected_seq {
            return Err(Broken::Inserted { seq: e.seq });
        }
        if entry_hash(e, e.seq) != e.hash {
            // Sealed at another position, and its position rewritten? (Only
            // searched once, for the first bad entry.)
            let last = entries.last().map_or(0, |l| l.seq).max(entries.len() as u64);
            let sealed_at = |e: &Entry| (1..=last + 1).find(|&s| s != e.seq && entry_hash(e, s) == e.hash);
            if let Some(at) = sealed_at(e) {
                let next = usize::try_from(e.seq).ok().and_then(|i| entries.get(i));
                return Err(if at + 1 == e.seq {
                    // Everything from here was pushed down by one: the entry
                    // before was spliced in.
                    Broken::Inserted { seq: e.seq - 1 }
                } else if at == e.seq + 1 && next.is_none_or(|n| sealed_at(n) == Some(n.seq + 1)) {
                    // Pulled up by one: this entry's predecessor was taken out.
                    Broken::Removed { from: e.seq, to: e.seq }
                } else {
                    Broken::Reordered { seq: e.seq, sealed_at: at }
                });
            }
            return Err(Broken::Edited { seq: e.seq });
        }
        if e.prev_hash != prev {
            return Err(match by_hash.get(&e.prev_hash) {
                Some(&at) if at != e.seq.saturating_sub(1) => Broken::Reordered { seq: e.seq, sealed_at: at + 1 },
                _ => Broken::Inserted { seq: e.seq },
            });
        }
        prev = e.hash;
        expected_seq += 1;
    }
    let size = expected_seq - 1;
    let head_at =
        |n: u64| usize::try_from(n).ok().and_then(|n| n.checked_sub(1)).and_then(|i| entries.get(i)).map(|e| e.hash);
    check_checkpoints(checkpoints, keys, size, head_at)?;
    Ok(Verified { entries: size, checkpoints: checkpoints.len() as u64 })
}

/// Checks each checkpoint's signature and that the chain of `size` entries
/// still has, at the checkpoint's size, the head it signed.
fn check_checkpoints(
    checkpoints: &[Checkpoint],
    keys: &[VerifyingKeyEntry],
    size: u64,
    head_at: impl Fn(u64) -> Option<[u8; 32]>,
) -> Result<(), Broken> {
    for c in checkpoints {
        let claims = crypto::jose::verify_jws(&c.jws, keys)
            .map_err(|_| Broken::Checkpoint { size: c.size, why: "its signature does not verify" })?;
        let signed_size = claims.get("size").and_then(serde_json::Value::as_u64);
        let signed_head = claims.get("head").and_then(serde_json::Value::as_str);
        let signed_chain = claims.get("chain").and_then(serde_json::Value::as_str);
        if signed_size != Some(c.size) || signed_head != Some(hex(&c.head).as_str()) || signed_chain != Some(&c.chain) {
            return Err(Broken::Checkpoint { size: c.size, why: "its stored fields differ from what was signed" });
        }
        if c.size > size {
            return Err(Broken::Checkpoint { size: c.size, why: "the chain is shorter than the checkpoint" });
        }
        if c.size > 0 && head_at(c.size) != Some(c.head) {
            return Err(Broken::Checkpoint { size: c.size, why: "the entry it signed has another hash now" });
        }
    }
    Ok(())
}

/// Verifies a chain entry by entry as it is read, keeping only the hashes
/// its checkpoints name, so memory does not grow with the chain. It only
/// tells whether the chain is sound: at the first entry that does not
/// follow, the caller runs [`verify`] on the whole chain to name the
/// problem (which needs every entry at hand).
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev: [u8; 32],
    heads: HashMap<u64, Option<[u8; 32]>>,
}

impl ChainVerifier {
    /// A verifier for a chain with checkpoints at these sizes.
    pub fn new(checkpoint_sizes: impl IntoIterator<Item = u64>) -> Self {
        Self { expected_seq: 1, prev: GENESIS, heads: checkpoint_sizes.into_iter().map(|s| (s, None)).collect() }
    }

    /// Takes the next entry; false if it does not follow (wrong position,
    /// wrong link, or content that does not match its hash).
    pub fn push(&mut self, e: &Entry) -> bool {
        self.accept(e.seq, &e.prev_hash, &e.hash, || entry_hash(e, e.seq))
    }

    /// [`Self::push`] for an entry borrowed from the store's row.
    pub fn push_stored(&mut self, e: &StoredEntry<'_>) -> bool {
        self.accept(e.seq, e.prev_hash, e.hash, || e.computed_hash())
    }

    fn accept(&mut self, seq: u64, prev_hash: &[u8], hash: &[u8], computed: impl FnOnce() -> [u8; 32]) -> bool {
        let Ok(hash) = <[u8; 32]>::try_from(hash) else { return false };
        if seq != self.expected_seq || prev_hash != self.prev.as_slice() || computed() != hash {
            return false;
        }
        if let Some(head) = self.heads.get_mut(&seq) {
            *head = Some(hash);
        }
        self.prev = hash;
        self.expected_seq += 1;
        true
    }

    /// Checks the checkpoints against what was read.
    pub fn finish(self, checkpoints: &[Checkpoint], keys: &[VerifyingKeyEntry]) -> Result<Verified, Broken> {
        let size = self.expected_seq - 1;
        check_checkpoints(checkpoints, keys, size, |n| self.heads.get(&n).copied().flatten())?;
        Ok(Verified { entries: size, checkpoints: checkpoints.len() as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(i: u64) -> Draft {
        Draft {
            at_micros: 1_700_000_000_000_000 + i as i64,
            actor: "user:1".into(),
            on_behalf_of: None,
            action: "profile.update".into(),
            target: format!("profile:{i}"),
            outcome: "success".into(),
            fields: vec!["email".into(), "phone".into()],
            request_id: Some(format!("req-{i}")),
        }
    }

    fn chain(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 1..=n {
            let prev = out.last().map_or(GENESIS, |e| e.hash);
            out.push(draft(i).seal("org:a", i, prev));
        }
        out
    }

    fn key() -> SigningKey {
        SigningKey::from_seed(&[7; 32])
    }

    #[test]
    fn a_sound_chain_verifies_with_its_checkpoints() {
        let c = chain(10);
        let cp = sign_checkpoint(&key(), "org:a", 10, c[9].hash, 1).unwrap_or_else(|e| panic!("{e}"));
        let cp5 = sign_checkpoint(&key(), "org:a", 5, c[4].hash, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verify(&c, &[cp5, cp], &[key().verifying_entry()]), Ok(Verified { entries: 10, checkpoints: 2 }));
        assert_eq!(verify(&[], &[], &[]), Ok(Verified { entries: 0, checkpoints: 0 }));
    }

    #[test]
    fn the_streaming_verifier_agrees_with_the_whole_chain_check() {
        let keys = [key().verifying_entry()];
        let c = chain(10);
        let cps = [
            sign_checkpoint(&key(), "org:a", 5, c[4].hash, 1).unwrap_or_else(|e| panic!("{e}")),
            sign_checkpoint(&key(), "org:a", 10, c[9].hash, 1).unwrap_or_else(|e| panic!("{e}")),
        ];
        let run = |entries: &[Entry], cps: &[Checkpoint]| {
            let mut v = ChainVerifier::new(cps.iter().map(|c| c.size));
            entries.iter().all(|e| v.push(e)).then(|| v.finish(cps, &keys))
        };
        assert_eq!(run(&c, &cps), Some(Ok(Verified { entries: 10, checkpoints: 2 })));
        let mut edited = c.clone();
        edited[6].actor = "user:2".into();
        assert_eq!(run(&edited, &cps), None, "an edit stops it");
        let mut removed = c.clone();
        removed.remove(2);
        assert_eq!(run(&removed, &cps), None, "a gap stops it");
        // A chain cut after the checkpoint's size, or a forged checkpoint.
        assert_eq!(
            run(&c[..7], &cps),
            Some(Err(Broken::Checkpoint { size: 10, why: "the chain is shorter than the checkpoint" }))
        );
        let forged = sign_checkpoint(&key(), "org:a", 5, c[3].hash, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            run(&c, &[forged]),
            Some(Err(Broken::Checkpoint { size: 5, why: "the entry it signed has another hash now" }))
        );
    }

    #[test]
    fn the_entry_hash_is_format_1() {
        // Written out as the crate's documentation states it, so that a
        // change to how the hash is computed cannot change what it is.
        let e = draft(3).seal("org:a", 3, [9; 32]);
        let fields: Vec<&[u8]> = e.fields.iter().map(|f| f.as_bytes()).collect();
        let expected = crypto::sha256(&crypto::canonical(&[
            b"strongroom/audit/v1",
            b"org:a",
            &3u64.to_be_bytes(),
            &e.at_micros.to_be_bytes(),
            e.actor.as_bytes(),
            b"",
            e.action.as_bytes(),
            e.target.as_bytes(),
            e.outcome.as_bytes(),
            &crypto::canonical(&fields),
            e.request_id.as_deref().unwrap_or("").as_bytes(),
            &[9; 32],
        ]));
        assert_eq!(e.hash, expected);
        let joined = e.fields.join(" ");
        assert_eq!(e.borrowed(&joined).computed_hash(), expected);
    }

    #[test]
    fn borrowed_stored_entries_verify_like_owned_ones() {
        let c = chain(6);
        let joined: Vec<String> = c.iter().map(|e| e.fields.join(" ")).collect();
        let view = |i: usize| c[i].borrowed(&joined[i]);
        let mut v = ChainVerifier::new([6]);
        assert!((0..c.len()).all(|i| v.push_stored(&view(i))), "a sound chain");
        assert!(v.finish(&[], &[]).is_ok());

        let mut v = ChainVerifier::new([]);
        assert!(v.push_stored(&view(0)));
        let mut edited = view(1);
        edited.fields = "email";
        assert!(!v.push_stored(&edited), "a field name removed");
        let mut v = ChainVerifier::new([]);
        assert!(v.push_stored(&view(0)));
        let short = &c[1].hash[..31];
        assert!(!v.push_stored(&StoredEntry { hash: short, ..view(1) }), "a hash of the wrong length");
        let mut v = ChainVerifier::new([]);
        assert!(!v.push_stored(&view(1)), "an entry out of place");
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let keys = [key().verifying_entry()];
        let mut edited = chain(6);
        edited[2].target = "profile:other".into();
        assert_eq!(verify(&edited, &[], &keys), Err(Broken::Edited { seq: 3 }));

        let mut removed = chain(6);
        removed.remove(3);
        assert_eq!(verify(&removed, &[], &keys), Err(Broken::Removed { from: 4, to: 4 }));

        // Two entries swap positions (their seq rewritten to match).
        let mut swapped = chain(6);
        swapped.swap(2, 3);
        swapped[2].seq = 3;
        swapped[3].seq = 4;
        assert_eq!(verify(&swapped, &[], &keys), Err(Broken::Reordered { seq: 3, sealed_at: 4 }));

        // A forged entry with a correct hash of its own, spliced in.
        let c = chain(6);
        let mut inserted = c.clone();
        let forged = draft(99).seal("org:a", 4, c[2].hash);
        inserted.insert(3, forged);
        for (i, e) in inserted.iter_mut().enumerate().skip(4) {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(&inserted, &[], &keys), Err(Broken::Inserted { seq: 4 }));
        // Removed, with the later entries renumbered to close the gap.
        let mut closed = chain(6);
        closed.remove(3);
        for (i, e) in closed.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert_eq!(verify(&closed, &[], &keys), Err(Broken::Removed { from: 4, to: 4 }));

        // A whole re-chained history passes the links but not the checkpoint.
        let cp = sign_checkpoint(&key(), "org:a", 6, c[5].hash, 1).unwrap_or_else(|e| panic!("{e}"));
        let mut rechained = Vec::new();
        for (i, e) in c.iter().enumerate() {
            let mut d = draft(i as u64 + 1);
            if i == 1 {
                d.actor = "user:mallory".into();
            }
            let _ = e;
            let prev = rechained.last().map_or(GENESIS, |x: &Entry| x.hash);
            rechained.push(d.seal("org:a", i as u64 + 1, prev));
        }
        assert_eq!(
            verify(&rechained, std::slice::from_ref(&cp), &keys),
            Err(Broken::Checkpoint { size: 6, why: "the entry it signed has another hash now" })
        );

        // A checkpoint signed by another key, or edited after signing.
        let forged = sign_checkpoint(&SigningKey::from_seed(&[9; 32]), "org:a", 6, c[5].hash, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            verify(&c, &[forged], &keys),
            Err(Broken::Checkpoint { why: "its signature does not verify", .. })
        ));
        let mut edited_cp = cp;
        edited_cp.size = 5;
        edited_cp.head = c[4].hash;
        assert!(matches!(verify(&c, &[edited_cp], &keys), Err(Broken::Checkpoint { .. })));
    }
}
