//! Images on a node: what a pod's `image:` string means (`reference.rs`), which endpoints to pull from and
//! with which credentials and TLS settings (`registries.rs`, k3s' `registries.yaml`; `credentials.rs`, a
//! pod's imagePullSecrets), how content is fetched (`distribution.rs`, the registry HTTP API) or imported
//! (`import.rs`, airgap tarballs), what manifests mean (`manifest.rs`, platform selection), where image
//! content lives (`store.rs`, a content-addressed blob store plus the reference → manifest index), and how
//! layers become root filesystems (`unpack.rs`, one snapshot directory per layer chain, shared between
//! images). `service.rs` is the one API the agent and `orch images` use.

pub mod credentials;
pub mod distribution;
pub mod import;
pub mod manifest;
pub mod reference;
pub mod registries;
pub mod service;
pub mod store;
pub mod unpack;

pub use credentials::Credentials;
pub use service::{GcReport, Image, ImageService, Progress, Removed};

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
    /// The outermost error of a pull, worded as containerd's so `kubectl describe` reads the same.
    // `cause`, not `source`: the message already holds it, and error-chain printers must not repeat it.
    #[error("failed to pull and unpack image \"{image}\": {cause}")]
    Pull {
        image: String,
        cause: Box<ImageError>,
    },
    #[error("failed to resolve reference \"{reference}\": {cause}")]
    Resolve {
        reference: String,
        cause: Box<ImageError>,
    },
    /// A registry answered with an error status; `message` is what its body (or challenge) said.
    #[error(
        "unexpected status from {method} request to {url}: {status}{}",
        suffix(message)
    )]
    Status {
        method: &'static str,
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("{reference}: not found{}", suffix(message))]
    ManifestUnknown { reference: String, message: String },
    #[error(
        "failed to fetch oauth token from {realm}: {status}{}",
        suffix(message)
    )]
    Token {
        realm: String,
        status: reqwest::StatusCode,
        message: String,
    },
    /// The request never got an HTTP answer (connection refused, TLS, timeout); `message` says why: a
    /// refused connect to an IP address in Go's words, as containerd's errors read, else the cause chain.
    #[error("{method} {url}: {message}")]
    Transport {
        method: &'static str,
        url: String,
        message: String,
    },
    #[error("TLS for {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("no match for platform in manifest: not found (want {want}, have [{}])", available.join(", "))]
    NoMatchingPlatform {
        want: String,
        available: Vec<String>,
    },
    #[error("manifest {digest}: {reason}")]
    Manifest { digest: String, reason: String },
    #[error("image config {digest}: {reason}")]
    Config { digest: String, reason: String },
    #[error("image {0:?}: not found")]
    ImageNotFound(String),
    #[error("image pull secret: {0}")]
    Credentials(String),
    #[error("import {path}: {reason}")]
    Import { path: PathBuf, reason: String },
    #[error("background task failed: {0}")]
    Task(String),
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
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
