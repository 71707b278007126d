//! SQLite store (placeholder).

/// The embedded default store.
#[derive(Debug)]
pub struct SqliteStore;
