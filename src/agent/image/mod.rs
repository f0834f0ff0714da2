//! Images on a node: what a pod's `image:` string means (`reference.rs`), which endpoints to pull from and
//! with which credentials and TLS settings (`registries.rs`, k3s' `registries.yaml`), where image content
//! lives (`store.rs`, a content-addressed blob store plus the reference → manifest index), and how layers
//! become root filesystems (`unpack.rs`, one snapshot directory per layer chain, shared between images).

pub mod reference;
pub mod registries;
pub mod store;
pub mod unpack;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("layer entry {path:?}: {reason}")]
    UnsafeEntry { path: PathBuf, reason: &'static str },
    #[error("registries config {path}: {reason}")]
    RegistriesConfig { path: PathBuf, reason: String },
    #[error("image index {path}: {source}")]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ImageError {
    fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io {
            context,
            path,
            source,
        }
    }
}
