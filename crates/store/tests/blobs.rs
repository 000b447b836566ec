//! The blob store on its real backends: a temporary local folder and, with
//! the `s3` feature, moto's S3. moto is started by `scripts/test`, which
//! exports `STRONGROOM_TEST_AWS_ENDPOINT` and the `AWS_*` credentials;
//! without them the S3 tests fail, never skip. Every S3 test makes its own
//! bucket, so tests run in parallel.

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use sha2::{Digest, Sha256};
use store::blobs::{BlobConfig, BlobError, BlobKey, BlobStore, PART_SIZE};

fn key(k: &str) -> BlobKey {
    BlobKey::new(k).unwrap_or_else(|e| panic!("{k}: {e}"))
}

/// `len` bytes of a deterministic pattern, generated chunk by chunk as the
/// stream is read (never held whole), in chunks of an odd size so part
/// boundaries fall inside chunks.
fn generated(len: usize, seed: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
    const CHUNK: usize = 65_537;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    stream::iter(std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK);
        left -= n;
        let mut chunk = Vec::with_capacity(n);
        for _ in 0..n {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.push(state as u8);
        }
        Some(Ok(Bytes::from(chunk)))
    }))
}

/// The SHA-256 and length of a stream, read chunk by chunk.
async fn digest<E: std::fmt::Debug>(mut s: impl Stream<Item = Result<Bytes, E>> + Unpin) -> ([u8; 32], u64) {
    let mut hash = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("reading: {e:?}"));
        len += chunk.len() as u64;
        hash.update(&chunk);
    }
    (hash.finalize().into(), len)
}

/// `ok` bytes of the pattern, then an I/O error: a client that went away.
fn failing_after(ok: usize) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
    let failure = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away");
    generated(ok, 7).chain(stream::iter([Err(failure)]))
}

async fn round_trip(store: &BlobStore, k: &BlobKey, len: usize, seed: u64) {
    let written = store.put(k, generated(len, seed)).await.unwrap_or_else(|e| panic!("put {len}: {e}"));
    assert_eq!(written, len as u64);
    assert_eq!(store.head(k).await.unwrap_or_else(|e| panic!("head: {e}")), Some(len as u64));
    let expected = digest(generated(len, seed)).await;
    let got = digest(store.get(k).await.unwrap_or_else(|e| panic!("get {len}: {e}"))).await;
    assert_eq!(got, expected, "content of a {len}-byte blob");
}

async fn check_round_trips(store: &BlobStore) {
    round_trip(store, &key("orgs/o1/blobs/empty"), 0, 1).await;
    round_trip(store, &key("orgs/o1/blobs/small"), 1234, 2).await;
    // Exactly one part, then just over it: the edges of the single-write path.
    round_trip(store, &key("orgs/o1/blobs/one-part"), PART_SIZE, 3).await;
    round_trip(store, &key("orgs/o1/blobs/large"), 20_000_000, 4).await;
    // Overwrite: the new content replaces the old.
    round_trip(store, &key("orgs/o1/blobs/small"), 99, 5).await;
}

async fn check_missing_and_delete(store: &BlobStore) {
    let k = key("orgs/o2/blobs/b1");
    assert!(matches!(store.get(&k).await, Err(BlobError::NotFound)), "get of a missing key");
    assert_eq!(store.head(&k).await.unwrap_or_else(|e| panic!("{e}")), None);
    store.delete(&k).await.unwrap_or_else(|e| panic!("delete of a missing key: {e}"));

    round_trip(store, &k, 10, 1).await;
    store.delete(&k).await.unwrap_or_else(|e| panic!("delete: {e}"));
    assert_eq!(store.head(&k).await.unwrap_or_else(|e| panic!("{e}")), None);
    assert!(matches!(store.get(&k).await, Err(BlobError::NotFound)), "get after delete");
    store.delete(&k).await.unwrap_or_else(|e| panic!("second delete: {e}"));
}

async fn check_delete_prefix(store: &BlobStore) {
    for k in ["orgs/a/blobs/1", "orgs/a/blobs/2", "orgs/a/profiles/p/3", "orgs/ab/blobs/1", "orgs/b/blobs/1"] {
        round_trip(store, &key(k), 5, 1).await;
    }
    assert_eq!(store.delete_prefix("orgs/a").await.unwrap_or_else(|e| panic!("{e}")), 3);
    for k in ["orgs/a/blobs/1", "orgs/a/blobs/2", "orgs/a/profiles/p/3"] {
        assert_eq!(store.head(&key(k)).await.unwrap_or_else(|e| panic!("{e}")), None, "{k} survived");
    }
    // Segment-wise: orgs/ab is not under orgs/a.
    for k in ["orgs/ab/blobs/1", "orgs/b/blobs/1"] {
        assert_eq!(store.head(&key(k)).await.unwrap_or_else(|e| panic!("{e}")), Some(5), "{k} was deleted");
    }
    assert_eq!(store.delete_prefix("orgs/a/").await.unwrap_or_else(|e| panic!("{e}")), 0);
    assert!(matches!(store.delete_prefix("").await, Err(BlobError::InvalidKey(_))));
    assert!(matches!(store.delete_prefix("../orgs").await, Err(BlobError::InvalidKey(_))));
}

/// A body failing before the first part is full, and one failing after two
/// parts went out: neither leaves an object, and a blob already under the
/// key keeps its content.
async fn check_failing_body(store: &BlobStore) {
    for (name, ok) in [("early", 1000), ("late", 2 * PART_SIZE + 12_345)] {
        let k = key(&format!("orgs/o3/blobs/{name}"));
        let err = store.put(&k, failing_after(ok)).await;
        assert!(matches!(err, Err(BlobError::Body(_))), "{name}: {err:?}");
        assert_eq!(store.head(&k).await.unwrap_or_else(|e| panic!("{e}")), None, "{name} left an object");
        assert!(matches!(store.get(&k).await, Err(BlobError::NotFound)));
    }
    let k = key("orgs/o3/blobs/kept");
    round_trip(store, &k, 777, 9).await;
    assert!(store.put(&k, failing_after(PART_SIZE + 1)).await.is_err());
    let got = digest(store.get(&k).await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(got, digest(generated(777, 9)).await, "a failed upload changed the existing blob");
}

/// Handlers run on a multi-threaded runtime: every future must be `Send`.
#[allow(dead_code)]
fn futures_are_send(store: &BlobStore, k: &BlobKey) {
    fn send<T: Send>(_: T) {}
    send(store.put(k, generated(1, 1)));
    send(store.get(k));
    send(store.head(k));
    send(store.delete(k));
    send(store.delete_prefix("x"));
    send(store.health());
    send(BlobStore::open(&BlobConfig::Local { root: "x".into() }));
}

#[test]
fn keys_are_validated() {
    for bad in ["../x", "/x", "A", "", "x/../y", "x//y", "x/", "a.txt", "a b", "a_b"] {
        assert!(matches!(BlobKey::new(bad), Err(BlobError::InvalidKey(_))), "{bad:?} accepted");
    }
    for good in ["orgs/0b6f1c2e-5a2d-4a44-9d6e-2a3c1f7e8d90/blobs/7c9e6679-7425-40de-944b-e07fc1f90ae7", "x"] {
        assert_eq!(key(good).as_str(), good);
    }
}

mod local {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use super::*;

    async fn fresh() -> (tempfile::TempDir, PathBuf, BlobStore) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("data").join("blobs");
        let store = BlobStore::open(&BlobConfig::Local { root: root.clone() }).await.unwrap_or_else(|e| panic!("{e}"));
        (dir, root, store)
    }

    /// Every file under `dir`, staging files of uploads included.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let path = entry.path();
            if path.is_dir() { out.extend(files(&path)) } else { out.push(path) }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips() {
        let (_dir, _, store) = fresh().await;
        check_round_trips(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_keys_and_idempotent_delete() {
        let (_dir, _, store) = fresh().await;
        check_missing_and_delete(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_prefix() {
        let (_dir, root, store) = fresh().await;
        check_delete_prefix(&store).await;
        // Emptied directories are removed too.
        assert!(!root.join("orgs/a").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_body_leaves_nothing() {
        let (_dir, root, store) = fresh().await;
        check_failing_body(&store).await;
        let left: Vec<_> = files(&root).into_iter().filter(|f| !f.ends_with("orgs/o3/blobs/kept")).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_root_is_created_private_and_blobs_are_owner_only() {
        let (_dir, root, store) = fresh().await;
        let mode = |p: &Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{e}")).permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        round_trip(&store, &key("orgs/x/blobs/small"), 10, 1).await;
        round_trip(&store, &key("orgs/x/blobs/large"), PART_SIZE + 1, 1).await;
        assert_eq!(mode(&root.join("orgs/x/blobs/small")), 0o600);
        assert_eq!(mode(&root.join("orgs/x/blobs/large")), 0o600);
        store.health().await.unwrap_or_else(|e| panic!("{e}"));
        let debug = format!("{store:?}");
        assert!(debug.contains("local") && debug.contains(&*root.to_string_lossy()), "{debug}");
        assert_eq!(store.backend_name(), "local");
    }

    #[tokio::test]
    async fn a_root_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path().join("blobs");
        std::fs::create_dir(&root).unwrap_or_else(|e| panic!("{e}"));
        for mode in [0o755, 0o750, 0o701] {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("{e}"));
            let err = BlobStore::open(&BlobConfig::Local { root: root.clone() }).await;
            assert!(matches!(err, Err(BlobError::Config { setting: "root", .. })), "{mode:o}: {err:?}");
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap_or_else(|e| panic!("{e}"));
        BlobStore::open(&BlobConfig::Local { root }).await.unwrap_or_else(|e| panic!("{e}"));
    }
}

#[cfg(feature = "s3")]
mod s3 {
    use super::*;

    /// A peer setting from the environment, or a failure naming it.
    fn peer_env(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test, which starts the peer"))
    }

    fn http() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A new bucket on moto (which takes unsigned requests) and a store on
    /// it, under a key prefix unless `prefix` is `None`.
    async fn fresh(prefix: Option<&str>) -> (String, String, BlobStore) {
        let endpoint = peer_env("STRONGROOM_TEST_AWS_ENDPOINT");
        let bucket = format!("blobs-{}", uuid::Uuid::new_v4());
        let res = http().put(format!("{endpoint}/{bucket}")).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(res.status().is_success(), "creating bucket {bucket}: {}", res.status());
        let store = BlobStore::open(&BlobConfig::S3 {
            bucket: bucket.clone(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint.clone()),
            allow_http: true,
            prefix: prefix.map(str::to_owned),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        (endpoint, bucket, store)
    }

    /// The raw ListObjectsV2 and ListMultipartUploads answers for the bucket.
    async fn raw_listing(endpoint: &str, bucket: &str) -> (String, String) {
        let get = |q: &'static str| {
            let url = format!("{endpoint}/{bucket}?{q}");
            async move {
                let res = http().get(url).send().await.unwrap_or_else(|e| panic!("{e}"));
                assert!(res.status().is_success(), "{q}: {}", res.status());
                res.text().await.unwrap_or_else(|e| panic!("{e}"))
            }
        };
        (get("list-type=2").await, get("uploads").await)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips() {
        let (endpoint, bucket, store) = fresh(Some("strongroom")).await;
        check_round_trips(&store).await;
        // The prefix is applied.
        let (objects, _) = raw_listing(&endpoint, &bucket).await;
        assert!(objects.contains("<Key>strongroom/orgs/o1/blobs/large</Key>"), "{objects}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn round_trips_without_a_prefix() {
        let (endpoint, bucket, store) = fresh(None).await;
        round_trip(&store, &key("orgs/o1/blobs/small"), 1234, 2).await;
        round_trip(&store, &key("orgs/o1/blobs/large"), 2 * PART_SIZE + 3, 2).await;
        let (objects, _) = raw_listing(&endpoint, &bucket).await;
        assert!(objects.contains("<Key>orgs/o1/blobs/large</Key>"), "{objects}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missing_keys_and_idempotent_delete() {
        let (_, _, store) = fresh(Some("strongroom")).await;
        check_missing_and_delete(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_prefix() {
        let (_, _, store) = fresh(Some("strongroom")).await;
        check_delete_prefix(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_body_leaves_nothing() {
        let (endpoint, bucket, store) = fresh(Some("strongroom")).await;
        check_failing_body(&store).await;
        let (objects, uploads) = raw_listing(&endpoint, &bucket).await;
        assert_eq!(objects.matches("<Key>").count(), 1, "{objects}");
        assert!(!uploads.contains("<Upload>"), "multipart uploads left open: {uploads}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_needs_the_bucket_and_debug_shows_no_credentials() {
        let (endpoint, bucket, store) = fresh(None).await;
        store.health().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.backend_name(), "s3");
        let debug = format!("{store:?}");
        assert!(debug.contains(&bucket), "{debug}");
        let secret = peer_env("AWS_SECRET_ACCESS_KEY");
        assert!(!debug.contains(&format!("\"{secret}\"")), "{debug}");

        let missing = BlobStore::open(&BlobConfig::S3 {
            bucket: format!("missing-{}", uuid::Uuid::new_v4()),
            region: "us-east-1".into(),
            endpoint: Some(endpoint),
            allow_http: true,
            prefix: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let err = missing.health().await;
        assert!(matches!(err, Err(BlobError::Unavailable(_))), "{err:?}");
        // The service's XML error body (request ids, echoed keys) is cut off.
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!message.contains('<') && message.contains("404"), "{message}");
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let endpoint = peer_env("STRONGROOM_TEST_AWS_ENDPOINT");
        let config = |bucket: &str, endpoint: Option<&str>, allow_http: bool, prefix: Option<&str>| BlobConfig::S3 {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: endpoint.map(str::to_owned),
            allow_http,
            prefix: prefix.map(str::to_owned),
        };
        for (c, setting) in [
            (config("Bad_Bucket", None, false, None), "bucket"),
            (config("ok-bucket", Some(&endpoint), false, None), "endpoint"),
            (config("ok-bucket", Some("ftp://x"), true, None), "endpoint"),
            (config("ok-bucket", None, false, Some("../x")), "prefix"),
        ] {
            let err = BlobStore::open(&c).await;
            assert!(matches!(err, Err(BlobError::Config { setting: s, .. }) if s == setting), "{c:?}: {err:?}");
        }
    }
}
