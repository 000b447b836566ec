//! Seeds profiles for benchmark W5 (`bench/backup`).
//!
//! ```text
//! seed_profiles --data-dir DIR [--profiles N] [--tasks N] [--database-url URL]
//! ```
//!
//! Creates (or opens) a deployment in dev mode in `DIR` (SQLite, or the
//! PostgreSQL database given by `--database-url` or `STRONGROOM_DATABASE_URL`),
//! an organisation `bench-w5` with an owner and an editor, and the W1 schema
//! (10 fields, 4 of them encrypted and 2 of those blind-indexed, about 1 KB
//! of values a profile), then creates `N` profiles (default 100,000, or
//! `PROFILES`) through the engine from `--tasks` concurrent tasks (default
//! 8). Every profile goes the way the API takes it: an authorisation
//! decision for a member, a fresh record key wrapped by the organisation key,
//! sealed fields, blind-index tokens and an audit entry in the same
//! transaction. Ends with one machine-readable line for `bench/backup`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use domain::{Action, DisplayName, Email, FieldDef, NewOrganisation, OrgName, OrgSlug, PlatformAction, Role};
use engine::{Authorized, Engine, NewUser, Principal};
use serde_json::{Map, Value, json};
use server::config::{Config, Overrides};

const USAGE: &str = "usage: seed_profiles --data-dir DIR [--profiles N] [--tasks N] [--database-url URL]";

const ORG: &str = "bench-w5";
const OWNER: &str = "owner@bench-w5.example";
const EDITOR: &str = "editor@bench-w5.example";

/// What the command line asks for.
#[derive(Debug)]
struct Args {
    data_dir: PathBuf,
    profiles: usize,
    tasks: usize,
    database_url: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut data_dir = None;
    let mut profiles = match std::env::var("PROFILES") {
        Ok(v) if !v.is_empty() => v.parse().with_context(|| format!("PROFILES={v}"))?,
        _ => 100_000usize,
    };
    let mut tasks = 8usize;
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
            "--profiles" => profiles = value.parse().with_context(|| format!("--profiles {value}"))?,
            "--tasks" => tasks = value.parse().with_context(|| format!("--tasks {value}"))?,
            "--database-url" => database_url = Some(value),
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(Args {
        data_dir: data_dir.with_context(|| format!("--data-dir is required\n{USAGE}"))?,
        profiles,
        tasks: tasks.max(1),
        database_url,
    })
}

/// The W1 profile: 4 encrypted fields (2 of them blind-indexed, one
/// sensitive free text that carries most of the kilobyte) and 6 plain ones.
fn schema() -> anyhow::Result<Vec<FieldDef>> {
    let fields = json!([
        { "name": "full_name", "type": "string", "required": true, "classification": "personal" },
        { "name": "email", "type": "email", "searchable": true, "classification": "personal" },
        { "name": "phone", "type": "phone", "searchable": true, "classification": "personal" },
        { "name": "notes", "type": "text", "classification": "sensitive" },
        { "name": "stage", "type": "enum", "values": ["applied", "interview", "offer", "hired"], "classification": "plain" },
        { "name": "score", "type": "number", "classification": "plain" },
        { "name": "remote", "type": "boolean", "classification": "plain" },
        { "name": "city", "type": "string", "classification": "plain" },
        { "name": "country", "type": "string", "classification": "plain" },
        { "name": "joined", "type": "date", "classification": "plain" }
    ]);
    serde_json::from_value(fields).context("the benchmark schema does not parse")
}

/// SplitMix64: cheap, deterministic values.
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
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items.get(self.below(items.len())).copied().unwrap_or("")
    }
}

const FIRST: &[&str] = &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"];
const LAST: &[&str] = &["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman"];
const CITIES: &[&str] = &["Lisbon", "Utrecht", "Gdansk", "Tampere", "Ghent", "Porto", "Lyon", "Brno", "Aarhus"];
const COUNTRIES: &[&str] = &["PT", "NL", "PL", "FI", "BE", "FR", "CZ", "DK"];
const STAGES: &[&str] = &["applied", "interview", "offer", "hired"];
const WORDS: &[&str] = &[
    "patient",
    "reported",
    "follow-up",
    "allergy",
    "medication",
    "review",
    "scheduled",
    "history",
    "declined",
    "consent",
    "referral",
    "specialist",
    "results",
    "pending",
    "stable",
    "improving",
    "dosage",
    "adjusted",
];

/// About 1 KB of field values for profile `i`; the notes make up most of it.
fn person(i: usize) -> Map<String, Value> {
    let mut rng = Rng(0x5eed_0005 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
    let mut notes = String::with_capacity(800);
    while notes.len() < 760 {
        if !notes.is_empty() {
            notes.push(' ');
        }
        notes.push_str(rng.pick(WORDS));
    }
    let value = json!({
        "full_name": format!("{first} {last}"),
        "email": format!("{}.{}.{i}@example.com", first.to_lowercase(), last.to_lowercase()),
        "phone": format!("+351 21 {:03} {:04}", rng.below(1_000), i % 10_000),
        "notes": notes,
        "stage": rng.pick(STAGES),
        "score": rng.below(1_000) as f64 / 100.0,
        "remote": rng.below(2) == 1,
        "city": rng.pick(CITIES),
        "country": rng.pick(COUNTRIES),
        "joined": format!("20{:02}-{:02}-{:02}", 10 + rng.below(15), 1 + rng.below(12), 1 + rng.below(28)),
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The account with this address, created (with no password) if missing.
async fn account(engine: &Engine, address: &str, name: &str) -> anyhow::Result<domain::UserId> {
    let email = Email::parse(address).map_err(|e| anyhow::anyhow!("{address}: {e}"))?;
    if let Some(user) = engine.user_by_email(&email).await? {
        return Ok(user.id);
    }
    let display_name = DisplayName::parse(name).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok(engine.create_user(&NewUser { email, display_name, is_operator: false }, None).await?.id)
}

/// A signed-in member as authentication would hand it to the API. There is
/// no session row behind it; what it may do is still decided by
/// `Engine::authorize` from the stored membership, and the audit trail
/// names the account.
fn member(user: domain::UserId) -> Principal {
    Principal {
        user,
        is_operator: false,
        session: domain::SessionId::from_uuid(uuid::Uuid::new_v4()),
        // Owners need a session that passed two-factor authentication.
        mfa_passed: true,
        service_account: None,
        support_session: None,
        acting_operator: None,
    }
}

/// The organisation, its two members and its schema; returns the editor's
/// authority to write profiles.
async fn prepare(engine: &Engine) -> anyhow::Result<Authorized> {
    let slug = OrgSlug::parse(ORG).map_err(|e| anyhow::anyhow!("{ORG}: {e}"))?;
    let org = match engine.list_orgs().await?.into_iter().find(|o| o.slug == slug) {
        Some(org) => org,
        None => {
            let name = OrgName::parse("Benchmark W5").map_err(|e| anyhow::anyhow!("{e}"))?;
            engine.create_org(&NewOrganisation { slug, name }).await?
        }
    };
    let owner = account(engine, OWNER, "W5 Owner").await?;
    let editor = account(engine, EDITOR, "W5 Editor").await?;
    // The way `strongroom member add` does it.
    let local_admin = engine.authorize_local_admin(PlatformAction::ManageUsers);
    engine.put_member_as_operator(&local_admin, org.id, owner, Role::Owner).await?;
    engine.put_member_as_operator(&local_admin, org.id, editor, Role::Editor).await?;

    let as_owner = engine.authorize(&member(owner), org.id, Action::ManageSchema).await?;
    // A second run on the same deployment keeps the schema it set.
    if engine.schema(&as_owner).await?.version == 0 {
        engine.put_schema(&as_owner, schema()?, Some(0)).await?;
    }
    Ok(engine.authorize(&member(editor), org.id, Action::WriteProfiles).await?)
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
    let auth = prepare(&engine).await?;
    eprintln!("seeding {} profiles into {ORG} from {} tasks", args.profiles, args.tasks);

    let started = Instant::now();
    // Each task takes the next index until none are left, so a slow task
    // never holds up the end.
    let next = Arc::new(AtomicUsize::new(0));
    let total = args.profiles;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.tasks {
        let (engine, auth, next) = (engine.clone(), auth.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                engine.create_profile(&auth, &person(i), None).await.with_context(|| format!("profile {i}"))?;
                let done = i + 1;
                if done % 10_000 == 0 {
                    eprintln!("  about {done} profiles created ({:.1} s)", started.elapsed().as_secs_f64());
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a seeding task panicked")??;
    }
    let seed_secs = started.elapsed().as_secs_f64();
    let signed = engine.checkpoint_chains().await?;
    engine.shutdown().await;

    eprintln!("seeded in {seed_secs:.1} s; signed {signed} checkpoints");
    // One machine-readable line for bench/backup.
    println!("profiles={total} seed_secs={seed_secs:.3}");
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
