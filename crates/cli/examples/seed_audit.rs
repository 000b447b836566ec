//! Seeds a long audit chain for benchmark W6 (`bench/audit`).
//!
//! ```text
//! seed_audit --data-dir DIR --bytes-out FILE [--entries N] [--batch N]
//!            [--chain NAME] [--database-url URL]
//! ```
//!
//! Creates (or opens) a deployment in dev mode in `DIR` (SQLite, or the
//! PostgreSQL database given by `--database-url` or `STRONGROOM_DATABASE_URL`),
//! appends `N` (default 1,000,000) realistic entries to one chain (default
//! the platform chain) in batches of `--batch` (default 5,000) entries per
//! transaction, then signs checkpoints. `FILE` receives, one after another,
//! the canonical encodings that `audit::verify` hashes for every entry that
//! `strongroom audit verify` will check (the format-1 encoding documented in
//! `crates/audit/src/lib.rs`), so `sha256sum FILE` hashes the same bytes.
//! Every encoding is checked against the entry's stored hash as it is
//! written, so the file cannot drift from the real format unnoticed.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use audit::{Draft, Entry};
use server::config::{Config, Overrides};
use store::{AuditAppend, Store};

const USAGE: &str = "usage: seed_audit --data-dir DIR --bytes-out FILE [--entries N] [--batch N] [--chain NAME] \
                     [--database-url URL]";

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    data_dir: PathBuf,
    bytes_out: PathBuf,
    entries: usize,
    batch: usize,
    chain: String,
    database_url: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut data_dir = None;
    let mut bytes_out = None;
    let mut entries = 1_000_000usize;
    let mut batch = 5_000usize;
    let mut chain = engine::PLATFORM_CHAIN.to_owned();
    let mut database_url = std::env::var("STRONGROOM_DATABASE_URL").ok().filter(|u| !u.is_empty());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--data-dir" => data_dir = Some(PathBuf::from(value)),
            "--bytes-out" => bytes_out = Some(PathBuf::from(value)),
            "--entries" => entries = value.parse().with_context(|| format!("--entries {value}"))?,
            "--batch" => batch = value.parse().with_context(|| format!("--batch {value}"))?,
            "--chain" => chain = value,
            "--database-url" => database_url = Some(value),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(Args {
        data_dir: data_dir.with_context(|| format!("--data-dir is required\n{USAGE}"))?,
        bytes_out: bytes_out.with_context(|| format!("--bytes-out is required\n{USAGE}"))?,
        entries,
        batch: batch.max(1),
        chain,
        database_url,
    })
}

/// SplitMix64: cheap, deterministic choices for actions and field names.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len().max(1)))
    }
}

/// Actions as a profile service logs them, weighted towards reads.
const ACTIONS: &[&str] = &[
    "profile.read",
    "profile.read",
    "profile.read",
    "profile.read",
    "profile.read",
    "profile.read",
    "profile.update",
    "profile.update",
    "profile.create",
    "profile.delete",
];

const FIELDS: &[&str] = &["email", "phone", "full_name", "date_of_birth", "address", "national_id", "notes", "iban"];

/// Makes the drafts of the next batch: one of a few thousand users acting
/// on one of a hundred thousand profiles, 2 or 3 field names, a request id.
#[derive(Debug)]
struct Drafts {
    rng: Rng,
    users: Vec<String>,
    profiles: Vec<String>,
    at_micros: i64,
}

impl Drafts {
    fn new(entries: usize) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        // Spread the history over the past, about 1 ms apart.
        let span = i64::try_from(entries).unwrap_or(i64::MAX / 2_000).saturating_mul(1_000);
        Self {
            rng: Rng(0x5eed_a0d1),
            users: (0..2_000).map(|_| format!("user:{}", uuid::Uuid::new_v4())).collect(),
            profiles: (0..100_000).map(|_| format!("profile:{}", uuid::Uuid::new_v4())).collect(),
            at_micros: now.saturating_sub(span),
        }
    }

    fn next(&mut self) -> Draft {
        let step = i64::try_from(self.rng.below(1_000)).unwrap_or(0);
        self.at_micros += 500 + step;
        let field_count = 2 + self.rng.below(2);
        let mut fields: Vec<String> = Vec::with_capacity(field_count);
        while fields.len() < field_count {
            let f = self.rng.pick(FIELDS).copied().unwrap_or("email");
            if !fields.iter().any(|x| x == f) {
                fields.push(f.to_owned());
            }
        }
        Draft {
            at_micros: self.at_micros,
            actor: self.rng.pick(&self.users).cloned().unwrap_or_default(),
            on_behalf_of: None,
            action: self.rng.pick(ACTIONS).copied().unwrap_or("profile.read").to_owned(),
            target: self.rng.pick(&self.profiles).cloned().unwrap_or_default(),
            outcome: "success".to_owned(),
            fields,
            request_id: Some(uuid::Uuid::new_v4().to_string()),
        }
    }
}

/// The bytes `audit`'s `entry_hash` (format 1) hashes for an entry at its
/// own position: `canonical("strongroom/audit/v1", chain, seq, time, actor,
/// on_behalf_of, action, target, outcome, canonical(fields), request id,
/// previous hash)`.
fn encoding(e: &Entry) -> Vec<u8> {
    let fields: Vec<&[u8]> = e.fields.iter().map(|f| f.as_bytes()).collect();
    let seq = e.seq.to_be_bytes();
    let at = e.at_micros.to_be_bytes();
    crypto::canonical(&[
        b"strongroom/audit/v1",
        e.chain.as_bytes(),
        &seq,
        &at,
        e.actor.as_bytes(),
        e.on_behalf_of.as_deref().unwrap_or("").as_bytes(),
        e.action.as_bytes(),
        e.target.as_bytes(),
        e.outcome.as_bytes(),
        &crypto::canonical(&fields),
        e.request_id.as_deref().unwrap_or("").as_bytes(),
        &e.prev_hash,
    ])
}

/// The encoding of `e`, refused if it does not hash to the entry's hash.
fn checked_encoding(e: &Entry) -> anyhow::Result<Vec<u8>> {
    let bytes = encoding(e);
    if crypto::sha256(&bytes) != e.hash {
        bail!("the encoding of {} entry {} does not hash to its stored hash: the audit format changed", e.chain, e.seq);
    }
    Ok(bytes)
}

/// Appends `args.entries` entries to the chain, writing each one's encoding
/// to `out` once its batch has committed. Returns the bytes written.
async fn seed(store: &Store, args: &Args, out: &mut impl Write) -> anyhow::Result<u64> {
    let mut drafts = Drafts::new(args.entries);
    let mut written = 0u64;
    let mut done = 0usize;
    let started = Instant::now();
    while done < args.entries {
        let count = args.batch.min(args.entries - done);
        let batch: Vec<Draft> = (0..count).map(|_| drafts.next()).collect();
        // The store calls `seal` once per entry, in order, inside the
        // transaction; the encodings wait here until it commits.
        let encoded: Mutex<Vec<anyhow::Result<Vec<u8>>>> = Mutex::new(Vec::with_capacity(count));
        let chain = args.chain.as_str();
        let seal = |i: usize, seq: i64, prev: [u8; 32]| {
            // The store asks only for indexes below `count`.
            let sealed = batch[i].seal(chain, u64::try_from(seq).unwrap_or(0), prev);
            if let Ok(mut list) = encoded.lock() {
                list.push(checked_encoding(&sealed));
            }
            engine::to_row(sealed)
        };
        store.append_audit(&AuditAppend { chain, count, seal: Box::new(seal) }).await?;
        let encoded = encoded.into_inner().map_err(|_| anyhow::anyhow!("a seal call panicked"))?;
        if encoded.len() != count {
            bail!("the store sealed {} entries of a batch of {count}", encoded.len());
        }
        for bytes in encoded {
            let bytes = bytes?;
            out.write_all(&bytes)?;
            written += bytes.len() as u64;
        }
        done += count;
        if done % 100_000 < count || done == args.entries {
            eprintln!("  {done} entries appended ({:.1} s)", started.elapsed().as_secs_f64());
        }
    }
    Ok(written)
}

/// Appends the encodings of a chain's stored entries, read back as
/// verification reads them. Returns (entries, bytes).
async fn copy_chain(store: &Store, chain: &str, out: &mut impl Write) -> anyhow::Result<(u64, u64)> {
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut after = 0;
    loop {
        let page = store.audit_entries(chain, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in page {
            let encoded = checked_encoding(&engine::from_row(row))?;
            out.write_all(&encoded)?;
            entries += 1;
            bytes += encoded.len() as u64;
        }
    }
    Ok((entries, bytes))
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: Some(args.data_dir.clone()),
        dev: true,
        database_url: args.database_url.clone(),
        ..Default::default()
    };
    let config = Config::load(&overrides)?;
    let engine = server::open_engine(&config, true).await?;
    // The engine keeps its store to itself; a second pool on the same
    // database does the bulk appends.
    let store = server::open_store(&config, engine.keys().kms()).await?;
    let path = &args.bytes_out;
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // Entries already in the chain (a deployment records some events of
    // its own) come first, as verification reads them.
    let (before, before_bytes) = copy_chain(&store, &args.chain, &mut out).await?;
    eprintln!("seeding {} entries into chain {} ({})", args.entries, args.chain, store.backend_name());
    let started = Instant::now();
    let mut bytes = before_bytes + seed(&store, args, &mut out).await?;
    let seeded_secs = started.elapsed().as_secs_f64();
    let signed = engine.checkpoint_chains().await?;

    // Every other chain that verification will check, and a check that
    // nothing else wrote to the seeded chain meanwhile.
    let seeded = before + args.entries as u64;
    let mut entries = seeded;
    for (chain, size, _) in store.audit_chains().await? {
        if chain == args.chain {
            if u64::try_from(size).ok() != Some(seeded) {
                bail!("chain {chain} holds {size} entries, not the {seeded} written to the bytes file");
            }
        } else if size > 0 {
            let (n, b) = copy_chain(&store, &chain, &mut out).await?;
            eprintln!("  also chain {chain}: {n} entries");
            entries += n;
            bytes += b;
        }
    }
    out.flush()?;
    store.close().await;
    engine.shutdown().await;

    eprintln!("seeded in {seeded_secs:.1} s; signed {signed} checkpoints");
    // One machine-readable line for bench/audit.
    println!("entries={entries} bytes={bytes} checkpoints={signed} seed_secs={seeded_secs:.3}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(&args))
}
