//! The content store: blobs (manifests, configs, compressed layers) by sha256 digest under
//! `<root>/blobs/sha256/<hex>`, and the image index `<root>/index.json` that maps a normalised reference to
//! its manifest digest. A blob only appears under its name after its content was hashed and matched, so a
//! reader never sees a partial or corrupt blob: writes go to `<root>/ingest/`, are fsynced, then renamed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::reference::{validate_digest, Reference};
use super::ImageError;

pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&dir).map_err(ImageError::io("creating", &dir))?;
        }
        Ok(ContentStore { root })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        validate_digest(digest)?;
        match digest.strip_prefix("sha256:") {
            Some(hex) => Ok(self.root.join("blobs/sha256").join(hex)),
            None => Err(ImageError::InvalidDigest {
                digest: digest.into(),
                reason: "only sha256 blobs are stored",
            }),
        }
    }

    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::NotFound(digest.into()),
            _ => ImageError::Io {
                context: "opening",
                path,
                source: e,
            },
        })
    }

    /// Stores what `content` yields as the blob `digest`, refusing it unless the bytes hash to that digest
    /// (and number `size`, when the manifest gave one). Returns the size. A blob already present is not read
    /// again: content-addressing makes any second copy identical.
    pub fn write(
        &self,
        digest: &str,
        size: Option<u64>,
        mut content: impl Read,
    ) -> Result<u64, ImageError> {
        let path = self.blob_path(digest)?;
        if let Ok(meta) = fs::metadata(&path) {
            return Ok(meta.len());
        }
        let tmp = self
            .root
            .join("ingest")
            .join(uuid::Uuid::new_v4().to_string());
        let result = self.ingest(&tmp, digest, size, &mut content).and_then(|n| {
            fs::rename(&tmp, &path).map_err(ImageError::io("renaming into", &path))?;
            sync_dir(path.parent().unwrap_or(&self.root))?;
            Ok(n)
        });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Stores content whose digest is not known in advance (a docker-archive layer named by path), under
    /// the digest its bytes hash to. Returns (digest, size).
    pub fn insert(&self, mut content: impl Read) -> Result<(String, u64), ImageError> {
        let tmp = self
            .root
            .join("ingest")
            .join(uuid::Uuid::new_v4().to_string());
        let result = (|| {
            let mut file = File::create(&tmp).map_err(ImageError::io("creating", &tmp))?;
            let mut hashing = HashingWriter {
                inner: &mut file,
                hasher: Sha256::new(),
            };
            let size = io::copy(&mut content, &mut hashing)
                .map_err(ImageError::io("reading content for", &tmp))?;
            let digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
            file.sync_all().map_err(ImageError::io("syncing", &tmp))?;
            let path = self.blob_path(&digest)?;
            fs::rename(&tmp, &path).map_err(ImageError::io("renaming into", &path))?;
            sync_dir(path.parent().unwrap_or(&self.root))?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &str) -> Result<u64, ImageError> {
        let path = self.blob_path(digest)?;
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => ImageError::NotFound(digest.into()),
                _ => ImageError::Io {
                    context: "inspecting",
                    path,
                    source: e,
                },
            })
    }

    /// A whole (small) blob: manifests and configs.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::Io {
                context: "reading blob",
                path: digest.into(),
                source: e,
            })?;
        Ok(bytes)
    }

    fn ingest(
        &self,
        tmp: &Path,
        digest: &str,
        size: Option<u64>,
        content: &mut dyn Read,
    ) -> Result<u64, ImageError> {
        let mut file = File::create(tmp).map_err(ImageError::io("creating", tmp))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ImageError::Io {
                        context: "reading content for",
                        path: tmp.into(),
                        source: e,
                    })
                }
            };
            total += n as u64;
            // Stop a registry that sends more than it announced before it fills the disk.
            if let Some(want) = size.filter(|&w| total > w) {
                return Err(ImageError::SizeMismatch {
                    digest: digest.into(),
                    expected: want,
                    actual: total,
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(ImageError::io("writing", tmp))?;
        }
        if let Some(want) = size.filter(|&w| total != w) {
            return Err(ImageError::SizeMismatch {
                digest: digest.into(),
                expected: want,
                actual: total,
            });
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                expected: digest.into(),
                actual,
            });
        }
        file.sync_all().map_err(ImageError::io("syncing", tmp))?;
        Ok(total)
    }

    /// Returns whether the blob existed.
    pub fn remove(&self, digest: &str) -> Result<bool, ImageError> {
        let path = self.blob_path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImageError::Io {
                context: "removing",
                path,
                source: e,
            }),
        }
    }

    /// Every stored blob's digest, sorted; names that are not digests (strays) are skipped.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(ImageError::io("listing", &dir))? {
            let entry = entry.map_err(ImageError::io("listing", &dir))?;
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if validate_digest(&digest).is_ok() {
                out.push(digest);
            }
        }
        out.sort();
        Ok(out)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Normalised reference → manifest digest for every image on the node.
    pub fn images(&self) -> Result<BTreeMap<String, String>, ImageError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Index { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::Io {
                context: "reading",
                path,
                source: e,
            }),
        }
    }

    pub fn image(&self, reference: &Reference) -> Result<Option<String>, ImageError> {
        Ok(self.images()?.remove(&reference.to_string()))
    }

    /// Points `reference` at a manifest that must already be stored, so the index never names missing content.
    pub fn set_image(&self, reference: &Reference, manifest: &str) -> Result<(), ImageError> {
        if !self.has(manifest) {
            return Err(ImageError::NotFound(manifest.into()));
        }
        let mut images = self.images()?;
        images.insert(reference.to_string(), manifest.into());
        self.write_index(&images)
    }

    /// Returns the manifest digest the reference pointed at; the blobs stay until garbage collection.
    pub fn remove_image(&self, reference: &Reference) -> Result<Option<String>, ImageError> {
        let mut images = self.images()?;
        let old = images.remove(&reference.to_string());
        if old.is_some() {
            self.write_index(&images)?;
        }
        Ok(old)
    }

    fn write_index(&self, images: &BTreeMap<String, String>) -> Result<(), ImageError> {
        let path = self.index_path();
        let tmp = self
            .root
            .join("ingest")
            .join(format!("index-{}", uuid::Uuid::new_v4()));
        let bytes = serde_json::to_vec_pretty(images).map_err(|source| ImageError::Index {
            path: path.clone(),
            source,
        })?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::Io {
                context: "writing",
                path: tmp,
                source: e,
            });
        }
        fs::rename(&tmp, &path).map_err(ImageError::io("renaming into", &path))?;
        sync_dir(&self.root)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A rename is durable only once the directory holding the new name is synced.
fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ImageError::io("syncing", dir))
}

/// `sha256:<hex>` of some bytes, the digest a blob with that content is stored under.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        (dir, store)
    }

    fn ingest_is_empty(s: &ContentStore) -> bool {
        fs::read_dir(s.root.join("ingest"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn write_verifies_then_serves() {
        let (_d, s) = store();
        let data = b"hello layer".as_slice();
        let digest = sha256_digest(data);
        assert!(!s.has(&digest));
        assert_eq!(s.write(&digest, Some(data.len() as u64), data).unwrap(), 11);
        assert!(s.has(&digest));
        let mut back = Vec::new();
        s.open_blob(&digest)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        assert_eq!(s.list().unwrap(), vec![digest.clone()]);
        // Present already: the reader is not consumed.
        assert_eq!(s.write(&digest, None, io::empty()).unwrap(), 11);
        assert!(s.remove(&digest).unwrap());
        assert!(!s.remove(&digest).unwrap());
        assert!(matches!(s.open_blob(&digest), Err(ImageError::NotFound(_))));
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn refuses_mismatches() {
        let (_d, s) = store();
        let digest = sha256_digest(b"expected");
        let e = s.write(&digest, None, b"tampered".as_slice()).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        assert!(e.to_string().contains(&digest));
        let e = s
            .write(&digest, Some(3), b"expected".as_slice())
            .unwrap_err();
        assert!(
            matches!(e, ImageError::SizeMismatch { expected: 3, .. }),
            "{e}"
        );
        let e = s
            .write(&digest, Some(100), b"expected".as_slice())
            .unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::SizeMismatch {
                    expected: 100,
                    actual: 8,
                    ..
                }
            ),
            "{e}"
        );
        assert!(!s.has(&digest));
        assert!(ingest_is_empty(&s), "failed writes leave no temp files");
        let e = s.write("sha256:../../etc", None, io::empty()).unwrap_err();
        assert!(matches!(e, ImageError::InvalidDigest { .. }));
        let e = s
            .write(&format!("sha512:{}", "a".repeat(128)), None, io::empty())
            .unwrap_err();
        assert!(e.to_string().contains("only sha256"), "{e}");
    }

    #[test]
    fn insert_names_content_by_its_hash() {
        let (_d, s) = store();
        let (digest, size) = s.insert(b"unnamed layer".as_slice()).unwrap();
        assert_eq!(digest, sha256_digest(b"unnamed layer"));
        assert_eq!((size, s.size(&digest).unwrap()), (13, 13));
        assert_eq!(s.read(&digest).unwrap(), b"unnamed layer");
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn index_maps_references_to_manifests() {
        let (_d, s) = store();
        let manifest = br#"{"schemaVersion":2}"#.as_slice();
        let digest = sha256_digest(manifest);
        let busybox = Reference::parse("busybox").unwrap();
        assert!(matches!(
            s.set_image(&busybox, &digest),
            Err(ImageError::NotFound(_))
        ));
        s.write(&digest, None, manifest).unwrap();
        s.set_image(&busybox, &digest).unwrap();
        assert_eq!(
            s.image(&Reference::parse("docker.io/library/busybox:latest").unwrap())
                .unwrap(),
            Some(digest.clone())
        );
        let reopened = ContentStore::open(s.root.clone()).unwrap();
        assert_eq!(
            reopened.images().unwrap().into_iter().collect::<Vec<_>>(),
            vec![(busybox.to_string(), digest.clone())]
        );
        assert_eq!(s.remove_image(&busybox).unwrap(), Some(digest.clone()));
        assert_eq!(s.image(&busybox).unwrap(), None);
        assert!(s.has(&digest), "removing an image leaves its blobs to GC");
        assert!(ingest_is_empty(&s));
    }
}
