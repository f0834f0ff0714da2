//! The storage layer in kine's role: keys, bytes and revisions, no API types. Every write appends to a log;
//! the revision of a write is its log id and becomes the object's `resourceVersion`. Writes are
//! compare-and-swap on the revision; watches are fed from the commit path and replay from the log.

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

pub use sqlite::{SqliteBackend, SqliteOptions};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stored value with its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that wrote this value (for a delete event: the revision of the delete).
    pub mod_revision: i64,
    pub create_revision: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// One change, in revision order. For deletes `kv.value` is the last value the key had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    #[error("revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("watcher fell behind the event stream")]
    WatcherTooSlow,
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// A page of a list: the values in key order, the revision the list was read at, and whether more keys follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    pub revision: i64,
    pub more: bool,
}

/// A stream of events for keys under a prefix; ends with an error item when it cannot continue.
pub type WatchReceiver = mpsc::Receiver<Result<Event, StoreError>>;

/// What any backing store offers. SQLite is the one implemented; the trait keeps room for etcd or PostgreSQL.
pub trait Backend: Send + Sync + 'static {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>, StoreError>>;
    /// Keys under `prefix` in order, after `start_after` if given, at most `limit` (0 = all).
    fn list<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ListPage, StoreError>>;
    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>)
        -> BoxFuture<'a, Result<i64, StoreError>>;
    /// Replaces the value if the key's current revision is `expected_revision`.
    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> BoxFuture<'a, Result<i64, StoreError>>;
    /// Deletes the key if its current revision is `expected_revision`; returns the deletion event's value.
    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected_revision: i64,
    ) -> BoxFuture<'a, Result<KeyValue, StoreError>>;
    /// Events for keys under `prefix` with revisions after `after_revision`, then live events.
    fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchReceiver, StoreError>;
    fn current_revision(&self) -> i64;
    fn compacted_revision(&self) -> i64;
    /// Removes history at or below `revision` that no live key needs; returns how many rows went.
    fn compact(&self, revision: i64) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// The smallest string greater than every string starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    String::from("\u{10ffff}")
}
