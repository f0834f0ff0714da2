//! What a manifest blob means: an image index / Docker manifest list (one manifest per platform) or an image
//! manifest (config + layers), in either the OCI or the Docker schema 2 spelling, and which entry of an index
//! this node runs (linux and the Go name of the CPU architecture, as registries label platforms).
//!
//! The structs are deliberately small and lenient (unknown fields ignored, media types kept as strings):
//! registries in the wild mix Docker and OCI media types, and a strict model would refuse images containerd
//! accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ImageError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// The `Accept` header of a manifest request: every kind this module understands.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The OCI annotation naming an image in an OCI layout (a tag, or a full reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation with the full image name, which `ctr export` writes next to the OCI one.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    fn display(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Index(Index),
    Manifest(Manifest),
}

/// Parses a manifest blob by its `mediaType`, or, when it has none (allowed by OCI), by its shape.
pub fn parse(digest: &str, bytes: &[u8]) -> Result<Content, ImageError> {
    let bad = |reason: String| ImageError::Manifest {
        digest: digest.into(),
        reason,
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON manifest: {e}")))?;
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(m) if m.starts_with(DOCKER_SCHEMA1) => {
            return Err(bad(
                "Docker schema 1 manifests are not supported (push the image again with a current client)"
                    .into(),
            ))
        }
        Some(other) => return Err(bad(format!("unsupported media type {other:?}"))),
        None if probe.manifests.is_some() => true,
        None if probe.config.is_some() => false,
        None => return Err(bad("neither an image manifest nor an index".into())),
    };
    if probe.schema_version != Some(2) {
        return Err(bad(format!(
            "unsupported schemaVersion {:?}",
            probe.schema_version
        )));
    }
    if is_index {
        serde_json::from_slice(bytes)
            .map(Content::Index)
            .map_err(|e| bad(e.to_string()))
    } else {
        serde_json::from_slice(bytes)
            .map(Content::Manifest)
            .map_err(|e| bad(e.to_string()))
    }
}

/// Rust's name for the CPU architecture → the GOARCH registries use in platform fields.
pub fn goarch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The architecture this process runs on, in GOARCH terms.
pub fn host_arch() -> &'static str {
    goarch(std::env::consts::ARCH)
}

/// The index entry for linux/`arch`. When several match, the one whose variant is the architecture's
/// baseline (`v8` on arm64) or unset wins, as containerd's platform matcher orders them.
pub fn select_platform<'a>(index: &'a Index, arch: &str) -> Result<&'a Descriptor, ImageError> {
    let baseline = |v: &Option<String>| {
        matches!(
            (arch, v.as_deref()),
            (_, None) | ("arm64", Some("v8")) | ("amd64", Some("v1"))
        )
    };
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| baseline(&p.variant)))
        .or(candidates.first())
        .copied()
        .ok_or_else(|| ImageError::NoMatchingPlatform {
            want: format!("linux/{arch}"),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(Platform::display))
                .collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn entry(digest: &str, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 10,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(String::from),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn go_architecture_names() {
        assert_eq!(goarch("x86_64"), "amd64");
        assert_eq!(goarch("aarch64"), "arm64");
        assert_eq!(goarch("riscv64"), "riscv64");
    }

    #[test]
    fn picks_linux_and_this_architecture() {
        let index = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                entry(D1, "windows", "amd64", None),
                entry(D2, "linux", "arm", Some("v7")),
                entry(D1, "linux", "arm64", Some("v9")),
                entry(D2, "linux", "arm64", Some("v8")),
                entry(D1, "linux", "amd64", None),
                entry(D1, "unknown", "unknown", None),
            ],
        };
        assert_eq!(select_platform(&index, "amd64").unwrap().digest, D1);
        assert_eq!(
            select_platform(&index, "arm64").unwrap().digest,
            D2,
            "the baseline variant wins over a later one"
        );
        let e = select_platform(&index, "riscv64").unwrap_err().to_string();
        assert!(e.contains("no match for platform in manifest"), "{e}");
        assert!(
            e.contains("linux/riscv64") && e.contains("linux/arm/v7"),
            "{e}"
        );
    }

    #[test]
    fn parses_docker_and_oci_kinds() {
        let docker = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":7,"digest":"{D1}"}},
            "layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":9,"digest":"{D2}"}}]}}"#
        );
        let Content::Manifest(m) = parse(D1, docker.as_bytes()).unwrap() else {
            panic!("a Docker schema 2 manifest")
        };
        assert_eq!((m.config.digest.as_str(), m.layers[0].size), (D1, 9));
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","size":1,"digest":"{D1}","platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        assert!(matches!(
            parse(D1, list.as_bytes()).unwrap(),
            Content::Index(_)
        ));
        // OCI lets mediaType be absent: the shape decides.
        let bare = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse(D1, bare.as_bytes()).unwrap(),
            Content::Index(_)
        ));
        let schema1 = r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(parse(D1, schema1.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("schema 1"));
        let odd = r#"{"schemaVersion":2,"mediaType":"text/html"}"#;
        assert!(parse(D1, odd.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("unsupported media type"));
        assert!(parse(D1, b"<html>").is_err());
    }
}
