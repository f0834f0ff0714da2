//! Airgap import: image tarballs into the content store, with no registry. Two formats, each plain, gzip- or
//! zstd-compressed (detected by magic bytes):
//! - OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`; what `skopeo copy … oci-archive:` and
//!   `ctr export` write). An image is named by containerd's `io.containerd.image.name` annotation, else by
//!   `org.opencontainers.image.ref.name`: a full reference as is, a bare tag as `<file name>:<tag>` (the
//!   file's name minus its tarball extensions), so `busybox.tar` holding tag `1.36` is `busybox:1.36`.
//! - docker-archive (`manifest.json` with `Config`, `RepoTags`, `Layers` paths; `docker save`, `skopeo copy
//!   … docker-archive:`). Files are stored by the hash of their bytes and an OCI manifest is written for each
//!   image, so both formats end in the same place: a reference → manifest (or index) digest.
//!
//! The tarball is read twice (first the small metadata files, wherever they are, then the blobs they name)
//! rather than spooled to disk: tar has no index, and `manifest.json` usually comes last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path};

use serde::Deserialize;

use super::manifest::{
    self, Descriptor, Manifest, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
};
use super::reference::{validate_digest, Reference};
use super::store::{sha256_digest, ContentStore};
use super::unpack::Compression;
use super::ImageError;

/// Metadata files are small; a huge one is not what it claims to be.
const MAX_METADATA_BYTES: u64 = 16 << 20;
const TARBALL_EXTENSIONS: [&str; 7] = [
    ".tar.gz",
    ".tar.zst",
    ".tar.zstd",
    ".tgz",
    ".tzst",
    ".tar",
    ".oci",
];

/// One image found in a tarball: its name and the digest of its manifest (or index) in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub reference: Reference,
    pub digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndexFile {
    manifests: Vec<Descriptor>,
}

/// Whether a file name looks like an image tarball (what `<data-dir>/agent/images/` auto-imports).
pub fn is_tarball_name(name: &str) -> bool {
    !name.starts_with('.') && TARBALL_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
}

/// Imports every named image of the tarball at `path` into `store` and returns them. Blobs are verified:
/// OCI blobs against their file names, docker-archive layers later against the config's diff ids (when
/// unpacked).
pub fn import_tarball(store: &ContentStore, path: &Path) -> Result<Vec<Imported>, ImageError> {
    let err = |reason: String| ImageError::Import {
        path: path.into(),
        reason,
    };
    // Pass 1: the metadata files and the symlinks (docker save links repeated layers).
    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    for_each_entry(path, |name, entry| {
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name().ok().flatten() {
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = clean(&base) {
                        links.insert(name, t);
                    }
                }
            }
            _ if matches!(name.as_str(), "index.json" | "manifest.json" | "oci-layout") => {
                let mut bytes = Vec::new();
                Read::take(&mut *entry, MAX_METADATA_BYTES)
                    .read_to_end(&mut bytes)
                    .map_err(|e| err(format!("reading {name}: {e}")))?;
                metadata.insert(name, bytes);
            }
            _ => {}
        }
        Ok(())
    })?;
    let resolve = |p: &str| -> String {
        let mut p = clean(Path::new(p)).unwrap_or_default();
        for _ in 0..8 {
            match links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    };

    if let Some(bytes) = metadata.get("manifest.json") {
        let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(bytes).map_err(|e| {
            err(format!(
                "manifest.json is not a docker-archive manifest: {e}"
            ))
        })?;
        let needed: HashSet<String> = entries
            .iter()
            .flat_map(|e| std::iter::once(&e.config).chain(&e.layers))
            .map(|p| resolve(p))
            .collect();
        let stored = store_files(store, path, |name| needed.contains(name))?;
        let lookup = |p: &str| {
            let p = resolve(p);
            stored.get(&p).cloned().ok_or_else(|| {
                err(format!(
                    "{p} is named in manifest.json but not in the archive"
                ))
            })
        };
        let mut out = Vec::new();
        for entry in &entries {
            let tags = entry.repo_tags.clone().unwrap_or_default();
            if tags.is_empty() {
                continue;
            }
            let (config_digest, config_size) = lookup(&entry.config)?;
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let (digest, size) = lookup(layer)?;
                let mut head = [0u8; 4];
                let n = store
                    .open_blob(&digest)?
                    .read(&mut head)
                    .map_err(|e| err(format!("reading {layer}: {e}")))?;
                let media_type = match Compression::detect(None, &head[..n]) {
                    Compression::None => manifest::OCI_LAYER,
                    Compression::Gzip => manifest::OCI_LAYER_GZIP,
                    Compression::Zstd => manifest::OCI_LAYER_ZSTD,
                };
                layers.push(descriptor(media_type, digest, size));
            }
            let m = Manifest {
                schema_version: 2,
                media_type: Some(manifest::OCI_MANIFEST.into()),
                config: descriptor(manifest::OCI_CONFIG, config_digest, config_size),
                layers,
            };
            let json = serde_json::to_vec(&m).map_err(|e| err(e.to_string()))?;
            let digest = sha256_digest(&json);
            store.write(&digest, Some(json.len() as u64), json.as_slice())?;
            for tag in tags {
                let reference =
                    Reference::parse(&tag).map_err(|e| err(format!("RepoTags {tag:?}: {e}")))?;
                out.push(Imported {
                    reference,
                    digest: digest.clone(),
                });
            }
        }
        if out.is_empty() {
            return Err(err("no image in manifest.json has a RepoTags name".into()));
        }
        return Ok(out);
    }

    let Some(bytes) = metadata.get("index.json") else {
        return Err(err(
            "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)".into(),
        ));
    };
    let index: OciIndexFile = serde_json::from_slice(bytes)
        .map_err(|e| err(format!("index.json is not an OCI index: {e}")))?;
    store_files(store, path, |name| name.starts_with("blobs/"))?;
    let stem = tarball_stem(path);
    let mut out = Vec::new();
    for desc in &index.manifests {
        let name = desc
            .annotations
            .get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| desc.annotations.get(ANNOTATION_REF_NAME));
        let Some(name) = name else { continue };
        let full = if name.contains('/') || name.contains(':') || name.contains('@') {
            name.clone()
        } else {
            format!("{stem}:{name}")
        };
        let reference =
            Reference::parse(&full).map_err(|e| err(format!("image name {name:?}: {e}")))?;
        if !store.has(&desc.digest) {
            return Err(err(format!(
                "index.json names {} but the layout has no such blob",
                desc.digest
            )));
        }
        out.push(Imported {
            reference,
            digest: desc.digest.clone(),
        });
    }
    if out.is_empty() {
        return Err(err(format!(
            "no image in index.json carries a name ({ANNOTATION_REF_NAME} or {ANNOTATION_CONTAINERD_NAME})"
        )));
    }
    Ok(out)
}

fn descriptor(media_type: &str, digest: String, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

/// Stores the regular files `wanted` selects: `blobs/sha256/<hex>` verified against their names, other
/// paths under the hash of their bytes. Returns path → (digest, size).
fn store_files(
    store: &ContentStore,
    path: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, (String, u64)>, ImageError> {
    let mut stored = HashMap::new();
    for_each_entry(path, |name, entry| {
        if entry.header().entry_type() != tar::EntryType::Regular || !wanted(&name) {
            return Ok(());
        }
        let size = entry.header().size().unwrap_or(0);
        let named = name
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(alg, hex)| format!("{alg}:{hex}"))
            .filter(|d| validate_digest(d).is_ok());
        let result = match named {
            Some(digest) => store.write(&digest, Some(size), entry).map(|n| (digest, n)),
            None => store.insert(entry),
        }?;
        stored.insert(name, result);
        Ok(())
    })?;
    Ok(stored)
}

/// Runs `f` on every entry of the (possibly compressed) tarball with its cleaned relative path.
fn for_each_entry(
    path: &Path,
    mut f: impl FnMut(String, &mut tar::Entry<'_, Box<dyn Read>>) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let read_err = |e: io::Error| ImageError::Import {
        path: path.into(),
        reason: format!("not a readable tarball: {e}"),
    };
    let mut file = File::open(path).map_err(ImageError::io("opening", path))?;
    let mut head = [0u8; 4];
    let n = file
        .read(&mut head)
        .map_err(ImageError::io("reading", path))?;
    let stream = io::Cursor::new(head[..n].to_vec()).chain(file);
    let reader: Box<dyn Read> = match Compression::detect(None, &head[..n]) {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream).map_err(read_err)?),
    };
    let mut archive = tar::Archive::new(reader);
    let mut seen_any = false;
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        seen_any = true;
        let raw = entry.path().map_err(read_err)?.into_owned();
        if let Some(name) = clean(&raw) {
            f(name, &mut entry)?;
        }
    }
    if !seen_any {
        return Err(ImageError::Import {
            path: path.into(),
            reason: "empty or not a tar archive".into(),
        });
    }
    Ok(())
}

/// `./a/b/../c` → `a/c`; None for paths leaving the archive root.
fn clean(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// The file name without its tarball extensions: the repository for OCI images named only by a tag.
pub fn tarball_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for ext in [".gz", ".zst", ".zstd"] {
        if let Some(s) = name.strip_suffix(ext) {
            return strip_tar(s);
        }
    }
    strip_tar(&name)
}

fn strip_tar(name: &str) -> String {
    for ext in [".tar", ".tgz", ".tzst", ".oci"] {
        if let Some(s) = name.strip_suffix(ext) {
            return s.to_string();
        }
    }
    name.to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tarball builder for tests: entries in the given order, optionally compressed.
    pub(crate) fn tarball(entries: &[(&str, &[u8])], compression: Compression) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        let plain = builder.into_inner().unwrap();
        match compression {
            Compression::None => plain,
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut enc, &plain).unwrap();
                enc.finish().unwrap()
            }
            Compression::Zstd => zstd::stream::encode_all(plain.as_slice(), 1).unwrap(),
        }
    }

    /// A one-file layer (uncompressed tar) and the config naming it, as (layer, config json).
    pub(crate) fn layer_and_config(file: &str, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let layer = tarball(&[(file, content)], Compression::None);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"],"Env":["PATH=/bin"]}},
            "rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
            sha256_digest(&layer)
        );
        (layer, config.into_bytes())
    }

    /// An uncompressed docker-archive of one one-file layer; `repo_tags` is the manifest's JSON for it.
    pub(crate) fn one_layer_archive(file: &str, content: &[u8], repo_tags: &str) -> Vec<u8> {
        let (layer, config) = layer_and_config(file, content);
        let manifest =
            format!(r#"[{{"Config":"c.json","RepoTags":{repo_tags},"Layers":["l.tar"]}}]"#);
        tarball(
            &[
                ("l.tar", &layer),
                ("c.json", &config),
                ("manifest.json", manifest.as_bytes()),
            ],
            Compression::None,
        )
    }

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = ContentStore::open(dir.path().join("content")).unwrap();
        (dir, s)
    }

    pub(crate) fn docker_archive(tag: &str, compression: Compression) -> Vec<u8> {
        let (layer, _) = layer_and_config("bin/hello", b"hi");
        let d = sha256_digest(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},
            "rootfs":{{"type":"layers","diff_ids":["{d}","{d}"]}}}}"#
        );
        let config = config.as_bytes();
        let manifest = format!(
            r#"[{{"Config":"cfg.json","RepoTags":["{tag}"],"Layers":["abc/layer.tar","dup/layer.tar"]}}]"#
        );
        // `dup/layer.tar` is the same layer again under a second path, as docker save does for repeats.
        tarball(
            &[
                ("abc/layer.tar", &layer),
                ("dup/layer.tar", &layer),
                ("cfg.json", config),
                ("manifest.json", manifest.as_bytes()),
            ],
            compression,
        )
    }

    #[test]
    fn docker_archive_plain_gzip_zstd() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (dir, s) = store();
            let path = dir.path().join("app.tar");
            std::fs::write(&path, docker_archive("example.com/app:v1", compression)).unwrap();
            let imported = import_tarball(&s, &path).unwrap();
            assert_eq!(imported.len(), 1, "{compression:?}");
            assert_eq!(imported[0].reference.to_string(), "example.com/app:v1");
            let manifest::Content::Manifest(m) =
                manifest::parse(&imported[0].digest, &s.read(&imported[0].digest).unwrap())
                    .unwrap()
            else {
                panic!("a manifest was written")
            };
            assert_eq!(m.layers.len(), 2);
            assert_eq!(m.layers[0].media_type, manifest::OCI_LAYER);
            assert!(s.has(&m.config.digest) && s.has(&m.layers[0].digest));
        }
    }

    #[test]
    fn oci_layout_names_from_annotations() {
        let (dir, s) = store();
        let (layer, config) = layer_and_config("etc/motd", b"hello");
        let (ld, cd) = (sha256_digest(&layer), sha256_digest(&config));
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cd}","size":{}}},
            "layers":[{{"mediaType":"{}","digest":"{ld}","size":{}}}]}}"#,
            manifest::OCI_MANIFEST,
            manifest::OCI_CONFIG,
            config.len(),
            manifest::OCI_LAYER,
            layer.len()
        );
        let md = sha256_digest(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{m}","digest":"{md}","size":{n},"annotations":{{"{ANNOTATION_REF_NAME}":"1.0"}}}},
              {{"mediaType":"{m}","digest":"{md}","size":{n},"annotations":{{"{ANNOTATION_REF_NAME}":"reg.local:5000/team/app:2"}}}},
              {{"mediaType":"{m}","digest":"{md}","size":{n}}}]}}"#,
            m = manifest::OCI_MANIFEST,
            n = manifest.len()
        );
        let blob = |d: &str| format!("blobs/sha256/{}", d.strip_prefix("sha256:").unwrap());
        let entries = [
            (
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice(),
            ),
            ("index.json", index.as_bytes()),
            (&blob(&md), manifest.as_bytes()),
            (&blob(&cd), &config),
            (&blob(&ld), &layer),
        ];
        let path = dir.path().join("myapp.tar.zst");
        std::fs::write(&path, tarball(&entries, Compression::Zstd)).unwrap();
        let names: Vec<String> = import_tarball(&s, &path)
            .unwrap()
            .iter()
            .map(|i| i.reference.to_string())
            .collect();
        assert_eq!(
            names,
            ["docker.io/library/myapp:1.0", "reg.local:5000/team/app:2"]
        );
        assert!(s.has(&ld) && s.has(&cd) && s.has(&md));

        // A blob whose bytes do not match its name is refused.
        let tampered = [
            ("index.json", index.as_bytes()),
            (&blob(&md), b"not the manifest".as_slice()),
        ];
        let (dir2, s2) = store();
        let path = dir2.path().join("bad.tar");
        std::fs::write(&path, tarball(&tampered, Compression::None)).unwrap();
        let e = import_tarball(&s2, &path).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::DigestMismatch { .. } | ImageError::SizeMismatch { .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        let (dir, s) = store();
        let path = dir.path().join("x.tar");
        std::fs::write(&path, tarball(&[("hello.txt", b"hi")], Compression::Gzip)).unwrap();
        let e = import_tarball(&s, &path).unwrap_err().to_string();
        assert!(e.contains("neither an OCI image layout"), "{e}");
        std::fs::write(&path, b"garbage that is not a tarball at all").unwrap();
        assert!(import_tarball(&s, &path).is_err());
        let path = dir.path().join("untagged.tar");
        std::fs::write(&path, one_layer_archive("a", b"b", "null")).unwrap();
        let e = import_tarball(&s, &path).unwrap_err().to_string();
        assert!(e.contains("RepoTags"), "{e}");
    }

    #[test]
    fn names_and_extensions() {
        assert_eq!(tarball_stem(Path::new("/x/busybox.tar")), "busybox");
        assert_eq!(tarball_stem(Path::new("busybox.tar.gz")), "busybox");
        assert_eq!(tarball_stem(Path::new("app-1.tzst")), "app-1");
        assert!(is_tarball_name("a.tar.zst") && is_tarball_name("b.tgz"));
        assert!(!is_tarball_name("notes.txt") && !is_tarball_name(".hidden.tar"));
        assert_eq!(clean(Path::new("./a/../b/c")).as_deref(), Some("b/c"));
        assert_eq!(clean(Path::new("../etc")), None);
    }
}
