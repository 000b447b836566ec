//! The use cases of Strongroom, one place for every caller (API, console,
//! CLI): authorise, validate, encrypt, store, audit.
//!
//! Architecture invariant: authorisation is decided here, by one policy
//! function, for every caller; `server` authenticates but does not decide.
//! Today the engine owns the store and answers readiness; the use cases
//! arrive with identity, keys and profiles.

use store::Store;

/// Why the engine cannot serve requests right now.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// The store does not answer.
    #[error("the {backend} store is unreachable")]
    Store {
        backend: &'static str,
        source: store::StoreError,
    },
}

/// The application core shared by every interface.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
}

impl Engine {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.store.backend_name()
    }

    /// Whether every dependency needed to serve requests answers.
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.ping().await.map_err(|source| NotReady::Store {
            backend: self.store.backend_name(),
            source,
        })
    }

    /// Closes the store once in-flight work has finished.
    pub async fn shutdown(&self) {
        self.store.close().await;
    }
}
