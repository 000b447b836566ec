//! Schema migrations (claim 002.3): applied at start and recorded with
//! checksums; an edited or unknown migration refuses the start, by name,
//! both through the store API and through `strongroom serve`.

use sqlx::Connection;
use testkit::{Backend, TestDb, backend_tests};

use crate::strongroom;

/// Runs one statement directly on the test database, as someone with a
/// database shell would.
async fn tamper(db: &TestDb, sql: &'static str) {
    let result = match db.backend {
        Backend::Sqlite => {
            let options = db.raw_sqlite_options().await.unwrap_or_else(|e| panic!("{e:#}"));
            match sqlx::SqliteConnection::connect_with(&options).await {
                Ok(mut c) => sqlx::query(sql).execute(&mut c).await.map(drop),
                Err(e) => Err(e),
            }
        }
        Backend::Postgres => {
            let url = db.database_url.clone().unwrap_or_default();
            match sqlx::PgConnection::connect(&url).await {
                Ok(mut c) => sqlx::query(sql).execute(&mut c).await.map(drop),
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        panic!("tamper {sql}: {e}");
    }
}

/// `strongroom serve` on this database, expected to refuse to start.
fn serve_refuses(db: &TestDb) -> (i32, String) {
    let data_dir = db.data_dir();
    let mut args = vec!["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap_or("")];
    if let Some(url) = &db.database_url {
        args.extend(["--database-url", url.as_str()]);
    }
    let (code, _, stderr) = strongroom(&args, &[]);
    (code, stderr)
}

backend_tests! {
    // claim 001.5 002.3
    async fn migrations_are_applied_and_recorded_with_checksums(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let store = db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
        let applied = store.applied_migrations().await.unwrap_or_default();
        assert_eq!(applied.first().map(|a| (a.version, a.name.as_str())), Some((1, "organisations")));
        assert!(applied.iter().all(|a| a.checksum.len() == 64), "{applied:?}");
        store.close().await;
        let again = db.open_store().await.unwrap_or_else(|e| panic!("a second start applies nothing: {e:#}"));
        assert_eq!(again.applied_migrations().await.unwrap_or_default(), applied);
        again.close().await;
    }

    // claim 002.3
    async fn an_edited_migration_is_refused_by_name(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        db.open_store().await.unwrap_or_else(|e| panic!("{e:#}")).close().await;
        // The recorded checksum no longer matches the binary's migration text:
        // exactly what a start sees after someone edits a released migration.
        tamper(&db, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1").await;
        let err = db.open_store().await.err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("0001_organisations") && err.contains("edited"), "{err}");
        let (code, stderr) = serve_refuses(&db);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("migration 0001_organisations was edited"), "{stderr}");
    }

    // claim 002.3
    async fn a_migration_from_a_newer_release_is_refused(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        db.open_store().await.unwrap_or_else(|e| panic!("{e:#}")).close().await;
        let sql = match backend {
            Backend::Sqlite => "INSERT INTO schema_migrations VALUES (999, 'future', 'x', '2030-01-01T00:00:00Z')",
            Backend::Postgres => "INSERT INTO schema_migrations VALUES (999, 'future', 'x', now())",
        };
        tamper(&db, sql).await;
        let (code, stderr) = serve_refuses(&db);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("0999_future") && stderr.contains("newer release"), "{stderr}");
    }
}
