//! Organisations through the engine (each created with version 1 of its
//! key, atomically) and the store's repository API, the same on both
//! backends.

use domain::{NewOrganisation, OrgName, OrgSlug, OrgStatus};
use store::StoreError;
use testkit::{TestDb, backend_tests};

fn new_org(slug: &str, name: &str) -> NewOrganisation {
    match (OrgSlug::parse(slug), OrgName::parse(name)) {
        (Ok(slug), Ok(name)) => NewOrganisation { slug, name },
        other => panic!("bad fixture: {other:?}"),
    }
}

backend_tests! {
    async fn organisations_round_trip(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}"));
        let acme = engine.create_org(&new_org("acme-care", "Acme Care")).await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(acme.status, OrgStatus::Active);
        let beta = engine.create_org(&new_org("beta-learn", "Beta Learning")).await.unwrap_or_else(|e| panic!("{e:#}"));
        engine.shutdown().await;
        let store = db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));

        let got = store.get_org(acme.id).await.ok().flatten();
        assert_eq!(got.as_ref(), Some(&acme), "read back equal, timestamps included");
        let by_slug = store.find_org_by_slug(&beta.slug).await.ok().flatten();
        assert_eq!(by_slug.map(|o| o.id), Some(beta.id));
        let all: Vec<_> = store.list_orgs().await.unwrap_or_default().into_iter().map(|o| o.slug.to_string()).collect();
        assert_eq!(all, ["acme-care", "beta-learn"]);
        assert!(store.get_org(domain::OrgId::new()).await.is_ok_and(|o| o.is_none()));
        store.close().await;
    }

    async fn a_taken_slug_is_a_conflict(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert!(engine.create_org(&new_org("acme-care", "Acme")).await.is_ok());
        let again = engine.create_org(&new_org("acme-care", "Other")).await;
        assert!(matches!(again, Err(engine::EngineError::Store(StoreError::Conflict { .. }))), "{again:?}");
        assert_eq!(engine.list_orgs().await.map(|l| l.len()).ok(), Some(1), "nothing half-written");
        engine.shutdown().await;
        let store = db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(store.all_org_keys().await.map(|k| k.len()).ok(), Some(1), "no key left without its organisation");
        store.close().await;
    }

    async fn data_survives_a_restart(backend) {
        let db = TestDb::new(backend).await.unwrap_or_else(|e| panic!("{e:#}"));
        let engine = db.open_engine().await.unwrap_or_else(|e| panic!("{e:#}"));
        let org = engine.create_org(&new_org("acme-care", "Acme")).await.unwrap_or_else(|e| panic!("{e:#}"));
        engine.shutdown().await;
        let reopened = db.open_store().await.unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(reopened.get_org(org.id).await.ok().flatten(), Some(org));
        reopened.close().await;
    }
}
