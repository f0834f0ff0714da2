//! `ImageService`: the one API through which the agent and `orch images` obtain, list and delete images.
//! It owns the layout under `<data-dir>/agent/store`: the content store (`blobs/`, `index.json`), the layer
//! snapshots (`snapshots/<chain id>/`) and `images-meta.json` (when each image was last used, for GC, and
//! which auto-import files were already imported).
//!
//! Concurrency: pulls of different images run in parallel; what they download is pinned until the image is
//! recorded, so a removal or GC sweeping unreferenced content at the same time leaves it alone. Changes to
//! `index.json` and `images-meta.json` (read-modify-write) and sweeps are serialised by one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Buf;
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::credentials::{Auth, Credentials};
use super::distribution::RegistryClient;
use super::import;
use super::manifest::{self, Content, Descriptor, Manifest};
use super::reference::{Reference, DEFAULT_DOMAIN};
use super::registries::{Registries, Tls};
use super::store::ContentStore;
use super::unpack::{chain_id, snapshot_dir, unpack_snapshot};
use super::ImageError;

/// Docker Hub's registry API host, which serves `docker.io` images.
const HUB_API_HOST: &str = "registry-1.docker.io";
/// Images used this recently are never garbage collected: a pod may be about to start on a fresh pull
/// (kubelet's `ImageMinimumGCAge` default).
const GC_MIN_AGE: Duration = Duration::from_secs(120);
const META_FILE: &str = "images-meta.json";
/// A use recorded this recently is not recorded again: pods started together from one image rewrite the
/// metadata file once, not once each. Far below `GC_MIN_AGE`, which is what the record is for.
const USE_RESOLUTION: Duration = Duration::from_secs(10);
/// How many downloaded chunks may wait for the blocking writer.
const CHUNK_QUEUE: usize = 16;

/// An image on this node, ready to run: every layer unpacked.
#[derive(Debug, Clone)]
pub struct Image {
    /// Normalised, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// The config digest `sha256:…`.
    pub id: String,
    /// `<name>@sha256:<manifest or index digest>`, what Kubernetes shows as a container's imageID.
    pub repo_digest: String,
    pub config: ImageConfiguration,
    /// Unpacked snapshot directories, base layer first.
    pub layers: Vec<PathBuf>,
    /// Bytes of the config and the (compressed) layers, as registries count an image's size.
    pub size: u64,
}

/// What a pull reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is known: `total_bytes` of config and layers, of which `cached_bytes` are already here.
    Resolved {
        digest: String,
        total_bytes: u64,
        cached_bytes: u64,
    },
    Downloaded {
        done_bytes: u64,
        total_bytes: u64,
    },
    /// Layer `layer` (1-based) of `layers` is being unpacked.
    Unpacking {
        layer: usize,
        layers: usize,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The references that no longer exist.
    pub references: Vec<String>,
    /// Bytes of blobs and snapshots deleted because nothing referenced them any more.
    pub freed_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// How full the filesystem holding the store was when GC started.
    pub usage_percent: u8,
    /// What GC set out to free (0 when usage was below the high threshold).
    pub bytes_to_free: u64,
    /// References of the images removed, oldest use first.
    pub removed: Vec<String>,
    pub freed_bytes: u64,
}

#[derive(Debug, Default)]
pub struct ImportDirReport {
    pub imported: Vec<Image>,
    /// Files imported before and unchanged since (same size and mtime).
    pub unchanged: Vec<PathBuf>,
    /// Files that are not image tarballs by name (`.tar`, `.tar.gz`, `.tgz`, `.tar.zst`, `.tzst`).
    pub ignored: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, ImageError)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    /// Reference → unix seconds of its last pull, import or use.
    #[serde(default)]
    last_used: BTreeMap<String, u64>,
    /// Auto-imported file → its size and mtime when imported.
    #[serde(default)]
    imported: BTreeMap<String, FileStamp>,
    /// References imported from the agent's image directory: image GC never removes them, as k3s pins
    /// its airgap images, since an air-gapped node has nowhere to pull them from again.
    #[serde(default)]
    pinned: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    size: u64,
    mtime_ns: i128,
}

/// Cheap to clone and share: one `Arc` inside.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    store: ContentStore,
    snapshots: PathBuf,
    registries: Registries,
    /// Held for read-modify-write of index.json / images-meta.json, imports and sweeps.
    state: Mutex<()>,
    /// Digests and chain ids in use by running pulls → how many pulls use them.
    pins: Mutex<HashMap<String, usize>>,
}

/// One place a pull can fetch from, with what applies there.
#[derive(Debug, Clone)]
struct PullEndpoint {
    url: String,
    tls: Option<Tls>,
    /// registries.yaml credentials for this endpoint's host.
    config_auth: Option<Auth>,
    /// The repository path here (mirror rewrites applied).
    repo: String,
    /// The key pull secrets are matched against: the image's own name upstream, `host/repo` on a mirror.
    secret_key: String,
}

impl ImageService {
    /// `root` = `<data-dir>/agent/store`.
    pub fn open(root: &Path, registries: Registries) -> Result<Self, ImageError> {
        let store = ContentStore::open(root)?;
        let snapshots = root.join("snapshots");
        fs::create_dir_all(&snapshots).map_err(ImageError::io("creating", &snapshots))?;
        // Validate rewrite rules now rather than on the first pull through the mirror.
        for (registry, mirror) in &registries.mirrors {
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern).map_err(|e| ImageError::RegistriesConfig {
                    path: PathBuf::from(format!("mirrors.{registry}.rewrite")),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(ImageService {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                store,
                snapshots,
                registries,
                state: Mutex::new(()),
                pins: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The image if it is here with every layer unpacked (no network). Counts as a use for GC.
    pub fn local(&self, image: &str) -> Result<Option<Image>, ImageError> {
        let reference = Reference::parse(image)?;
        let Some(top) = self.inner.store.image(&reference)? else {
            return Ok(None);
        };
        match self.inner.build_image(&reference.to_string(), &top) {
            Ok(img) if img.layers.iter().all(|l| l.is_dir()) => {
                let _state = self.inner.lock_state();
                self.inner.record_use(&img.reference)?;
                Ok(Some(img))
            }
            Ok(_) | Err(ImageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pulls `image` from its registry (or mirrors) and unpacks it. Credentials: `creds` (the pod's pull
    /// secrets) first, then registries.yaml's for the endpoint, else anonymous. The error is containerd's
    /// wording around what the registry said.
    pub async fn pull(
        &self,
        image: &str,
        creds: &Credentials,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let wrap = |e: ImageError| ImageError::Pull {
            image: Reference::parse(image).map_or_else(|_| image.to_string(), |r| r.to_string()),
            cause: Box::new(e),
        };
        let reference = Reference::parse(image).map_err(wrap)?;
        self.pull_reference(&reference, creds, progress)
            .await
            .map_err(wrap)
    }

    async fn pull_reference(
        &self,
        reference: &Reference,
        creds: &Credentials,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let mut best: Option<ImageError> = None;
        for endpoint in self.inner.pull_endpoints(reference)? {
            let mut auths: Vec<Option<Auth>> = creds
                .lookup(&endpoint.secret_key)
                .into_iter()
                .cloned()
                .map(Some)
                .collect();
            auths.extend(endpoint.config_auth.clone().map(Some));
            if auths.is_empty() {
                auths.push(None);
            }
            for auth in auths {
                match self.pull_from(reference, &endpoint, auth, progress).await {
                    Ok(image) => return Ok(image),
                    Err(e) => {
                        tracing::debug!(endpoint = %endpoint.url, error = %e, "pull attempt failed");
                        let retry_auth = e.is_auth_failure();
                        if !e.is_remote() {
                            return Err(e);
                        }
                        // A registry's own answer says more than a failed connection elsewhere.
                        if best
                            .as_ref()
                            .is_none_or(|b| b.is_transport() || !e.is_transport())
                        {
                            best = Some(e);
                        }
                        if !retry_auth {
                            break;
                        }
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| ImageError::ManifestUnknown {
            reference: reference.to_string(),
            message: "no endpoint to pull from".into(),
        }))
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        endpoint: &PullEndpoint,
        auth: Option<Auth>,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Image, ImageError> {
        let inner = &self.inner;
        let client = RegistryClient::new(&endpoint.url, endpoint.tls.as_ref(), auth)?;
        let repo = endpoint.repo.as_str();
        let resolve_err = |e: ImageError| ImageError::Resolve {
            reference: reference.to_string(),
            cause: Box::new(e),
        };
        let object = reference
            .digest()
            .or(reference.tag())
            .unwrap_or(super::reference::DEFAULT_TAG);
        let (bytes, top) = client.manifest(repo, object).await.map_err(resolve_err)?;
        let mut pins = Pins::new(inner.clone());
        pins.add(&top);
        let content = manifest::parse(&top, &bytes)?;
        inner
            .store
            .write(&top, Some(bytes.len() as u64), bytes.as_slice())?;
        let (manifest_digest, manifest) = match content {
            Content::Manifest(m) => (top.clone(), m),
            Content::Index(index) => {
                let entry = manifest::select_platform(&index, manifest::host_arch())?;
                pins.add(&entry.digest);
                let (bytes, digest) = client
                    .manifest(repo, &entry.digest)
                    .await
                    .map_err(resolve_err)?;
                let Content::Manifest(m) = manifest::parse(&digest, &bytes)? else {
                    return Err(ImageError::Manifest {
                        digest,
                        reason: "an index entry is an index itself".into(),
                    });
                };
                inner
                    .store
                    .write(&digest, Some(bytes.len() as u64), bytes.as_slice())?;
                (digest, m)
            }
        };
        let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .collect();
        let total: u64 = blobs.iter().map(|d| d.size).sum();
        let mut done: u64 = blobs
            .iter()
            .filter(|d| inner.store.has(&d.digest))
            .map(|d| d.size)
            .sum();
        progress(Progress::Resolved {
            digest: manifest_digest.clone(),
            total_bytes: total,
            cached_bytes: done,
        });
        for blob in &blobs {
            pins.add(&blob.digest);
            if inner.store.has(&blob.digest) {
                continue;
            }
            self.download(&client, repo, blob, &mut |n| {
                done += n;
                progress(Progress::Downloaded {
                    done_bytes: done,
                    total_bytes: total,
                });
            })
            .await?;
        }
        let config = inner.load_config(&manifest)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let mut parent: Option<String> = None;
        for (i, (layer, diff_id)) in manifest.layers.iter().zip(&diff_ids).enumerate() {
            progress(Progress::Unpacking {
                layer: i + 1,
                layers: manifest.layers.len(),
            });
            let chain = chain_id(parent.as_deref(), diff_id);
            pins.add(&chain);
            let (inner2, layer, diff_id, parent2) = (
                inner.clone(),
                layer.clone(),
                diff_id.clone(),
                parent.clone(),
            );
            tokio::task::spawn_blocking(move || {
                inner2.unpack(parent2.as_deref(), &diff_id, &layer)
            })
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??;
            parent = Some(chain);
        }
        let inner2 = inner.clone();
        let (reference, top2) = (reference.clone(), top.clone());
        let image = tokio::task::spawn_blocking(move || inner2.record(&reference, &top2))
            .await
            .map_err(|e| ImageError::Task(e.to_string()))??;
        drop(pins);
        Ok(image)
    }

    /// Streams a blob into the store: the network side here, the hashing and writing on a blocking thread.
    async fn download(
        &self,
        client: &RegistryClient,
        repo: &str,
        blob: &Descriptor,
        on_bytes: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), ImageError> {
        let mut stream = client.blob(repo, &blob.digest).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(CHUNK_QUEUE);
        let inner = self.inner.clone();
        let (digest, size) = (blob.digest.clone(), blob.size);
        let writer = tokio::task::spawn_blocking(move || {
            inner.store.write(
                &digest,
                Some(size),
                ChannelReader {
                    rx,
                    buf: bytes::Bytes::new(),
                },
            )
        });
        let fed = async {
            while let Some(chunk) = stream.chunk().await? {
                on_bytes(chunk.len() as u64);
                if tx.send(chunk).await.is_err() {
                    break; // the writer stopped (too many bytes, disk error): its error says why
                }
            }
            Ok::<(), ImageError>(())
        }
        .await;
        drop(tx);
        let written = writer.await.map_err(|e| ImageError::Task(e.to_string()))?;
        fed?;
        written.map(|_| ())
    }

    /// Imports an OCI layout or docker-archive tarball (plain, gzip or zstd) and unpacks its images.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let _state = self.inner.lock_state();
        self.inner.import_locked(path)
    }

    /// Imports every image tarball in `dir` (the agent's `<data-dir>/agent/images/`) that was not imported
    /// before with the same size and mtime. One bad file does not stop the others.
    pub fn import_dir(&self, dir: &Path) -> Result<ImportDirReport, ImageError> {
        let mut report = ImportDirReport::default();
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
            Err(e) => return Err(ImageError::io("listing", dir)(e)),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let _state = self.inner.lock_state();
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !import::is_tarball_name(&name) {
                report.ignored.push(path);
                continue;
            }
            let meta = fs::metadata(&path).map_err(ImageError::io("inspecting", &path))?;
            let stamp = FileStamp {
                size: meta.len(),
                mtime_ns: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos() as i128),
            };
            let key = path.to_string_lossy().into_owned();
            if self.inner.read_meta()?.imported.get(&key) == Some(&stamp) {
                report.unchanged.push(path);
                continue;
            }
            match self.inner.import_locked(&path) {
                Ok(images) => {
                    self.inner.update_meta(|m| {
                        m.imported.insert(key, stamp);
                        m.pinned
                            .extend(images.iter().map(|image| image.reference.clone()));
                    })?;
                    report.imported.extend(images);
                }
                Err(e) => report.failed.push((path, e)),
            }
        }
        Ok(report)
    }

    /// Every image recorded here, by reference.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut out = Vec::new();
        for (reference, top) in self.inner.store.images()? {
            match self.inner.build_image(&reference, &top) {
                Ok(img) => out.push(img),
                Err(e) => tracing::warn!(%reference, error = %e, "image record is incomplete"),
            }
        }
        Ok(out)
    }

    /// Removes an image by reference, or by id (`sha256:<hex>`, or a unique hex prefix, as `docker rmi`),
    /// then deletes the blobs and snapshots no remaining image needs.
    pub fn remove(&self, image: &str) -> Result<Removed, ImageError> {
        let _state = self.inner.lock_state();
        let index = self.inner.store.images()?;
        let by_reference = Reference::parse(image)
            .ok()
            .map(|r| r.to_string())
            .filter(|r| index.contains_key(r));
        let references: Vec<String> = match by_reference {
            Some(r) => vec![r],
            None => self.inner.references_for_id(&index, image)?,
        };
        for r in &references {
            self.inner.store.remove_image(&Reference::parse(r)?)?;
        }
        self.inner.update_meta(|m| {
            for r in &references {
                m.last_used.remove(r);
                m.pinned.remove(r);
            }
        })?;
        let freed_bytes = self.inner.sweep()?;
        Ok(Removed {
            references,
            freed_bytes,
        })
    }

    /// Image GC: when the filesystem holding the store is at least `high_percent` full, removes the least
    /// recently used images whose id is not in `in_use` (and not used in the last two minutes, nor pinned
    /// by an import from the agent's image directory) until the usage is expected to be below
    /// `low_percent`, as kubelet's image GC does.
    pub fn garbage_collect(
        &self,
        in_use: &HashSet<String>,
        high_percent: u8,
        low_percent: u8,
    ) -> Result<GcReport, ImageError> {
        let (capacity, available) = disk_usage(&self.inner.root)?;
        self.collect(
            in_use,
            high_percent,
            low_percent,
            capacity,
            available,
            now_secs(),
        )
    }

    fn collect(
        &self,
        in_use: &HashSet<String>,
        high_percent: u8,
        low_percent: u8,
        capacity: u64,
        available: u64,
        now: u64,
    ) -> Result<GcReport, ImageError> {
        let usage_percent = if capacity == 0 {
            0
        } else {
            100 - (available.min(capacity) as u128 * 100 / capacity as u128) as u8
        };
        let mut report = GcReport {
            usage_percent,
            ..GcReport::default()
        };
        if usage_percent < high_percent {
            return Ok(report);
        }
        report.bytes_to_free =
            (capacity as u128 * (100 - low_percent.min(100)) as u128 / 100) as u64;
        report.bytes_to_free = report.bytes_to_free.saturating_sub(available);
        let _state = self.inner.lock_state();
        let meta = self.inner.read_meta()?;
        let mut by_id: BTreeMap<String, GcCandidate> = BTreeMap::new();
        for image in self.list()? {
            let used = meta.last_used.get(&image.reference).copied().unwrap_or(0);
            let c = by_id
                .entry(image.id.clone())
                .or_insert_with(|| GcCandidate {
                    id: image.id.clone(),
                    references: Vec::new(),
                    last_used: 0,
                    size: image.size,
                    pinned: false,
                });
            c.pinned |= meta.pinned.contains(&image.reference);
            c.references.push(image.reference);
            c.last_used = c.last_used.max(used);
        }
        let candidates: Vec<GcCandidate> = by_id.into_values().collect();
        let victims = plan_gc(&candidates, in_use, report.bytes_to_free, now);
        for victim in victims {
            for r in &victim.references {
                self.inner.store.remove_image(&Reference::parse(r)?)?;
                report.removed.push(r.clone());
            }
        }
        self.inner.update_meta(|m| {
            for r in &report.removed {
                m.last_used.remove(r);
            }
        })?;
        report.freed_bytes = self.inner.sweep()?;
        Ok(report)
    }
}

#[derive(Debug, Clone)]
struct GcCandidate {
    id: String,
    references: Vec<String>,
    last_used: u64,
    size: u64,
    /// One of its references came from the agent's image directory.
    pinned: bool,
}

/// Least recently used first, skipping pinned images and images in use (by id or reference) or used
/// within `GC_MIN_AGE`, until the chosen images' sizes add up to `bytes_to_free`.
fn plan_gc<'a>(
    candidates: &'a [GcCandidate],
    in_use: &HashSet<String>,
    bytes_to_free: u64,
    now: u64,
) -> Vec<&'a GcCandidate> {
    let mut order: Vec<&GcCandidate> = candidates
        .iter()
        .filter(|c| !c.pinned)
        .filter(|c| !in_use.contains(&c.id) && !c.references.iter().any(|r| in_use.contains(r)))
        .filter(|c| c.last_used + GC_MIN_AGE.as_secs() <= now)
        .collect();
    order.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.id.cmp(&b.id)));
    let mut freed = 0u64;
    let mut out = Vec::new();
    for c in order {
        if freed >= bytes_to_free {
            break;
        }
        freed += c.size;
        out.push(c);
    }
    out
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, ()> {
        // A panic while holding it leaves nothing half-done on disk that the next holder cannot handle.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join(META_FILE)
    }

    fn read_meta(&self) -> Result<Meta, ImageError> {
        let path = self.meta_path();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Index { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Meta::default()),
            Err(e) => Err(ImageError::io("reading", path)(e)),
        }
    }

    /// Records that `reference` is used now, unless a use within `USE_RESOLUTION` is recorded; the caller
    /// holds the state lock.
    fn record_use(&self, reference: &str) -> Result<(), ImageError> {
        let now = now_secs();
        let mut meta = self.read_meta()?;
        let recorded = meta.last_used.get(reference).copied();
        if recorded.is_some_and(|t| t <= now && now - t < USE_RESOLUTION.as_secs()) {
            return Ok(());
        }
        meta.touch(reference, now);
        self.write_meta(&meta)
    }

    /// Read-modify-write of the metadata file; the caller holds the state lock.
    fn update_meta(&self, f: impl FnOnce(&mut Meta)) -> Result<(), ImageError> {
        let mut meta = self.read_meta()?;
        f(&mut meta);
        self.write_meta(&meta)
    }

    /// Replaces the metadata file whole; the caller holds the state lock.
    fn write_meta(&self, meta: &Meta) -> Result<(), ImageError> {
        let path = self.meta_path();
        let tmp = self.root.join(format!(".{META_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(meta).map_err(|source| ImageError::Index {
            path: path.clone(),
            source,
        })?;
        fs::write(&tmp, bytes).map_err(ImageError::io("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(ImageError::io("renaming into", &path))
    }

    fn pull_endpoints(&self, reference: &Reference) -> Result<Vec<PullEndpoint>, ImageError> {
        let domain = reference.domain();
        let mut out = Vec::new();
        for ep in self.registries.endpoints(domain) {
            let host = ep.url.split_once("://").map_or("", |(_, h)| h);
            let host = host.split('/').next().unwrap_or(host).to_string();
            let repo = match ep.rewrite {
                Some(rules) => rewrite(rules, reference.path())?,
                None => reference.path().to_string(),
            };
            let upstream = host == domain || (domain == DEFAULT_DOMAIN && host == HUB_API_HOST);
            let endpoint = PullEndpoint {
                url: ep.url.clone(),
                tls: ep.config.and_then(|c| c.tls.clone()),
                config_auth: ep
                    .config
                    .and_then(|c| c.auth.as_ref())
                    .and_then(config_auth),
                secret_key: if upstream {
                    reference.name()
                } else {
                    format!("{host}/{repo}")
                },
                repo,
            };
            // containerd talks plain HTTP to a loopback registry when HTTPS fails there.
            let fallback =
                (upstream && ep.url.starts_with("https://") && is_loopback(&host)).then(|| {
                    PullEndpoint {
                        url: format!("http://{host}"),
                        ..endpoint.clone()
                    }
                });
            out.push(endpoint);
            out.extend(fallback);
        }
        Ok(out)
    }

    fn load_config(&self, manifest: &Manifest) -> Result<ImageConfiguration, ImageError> {
        let digest = &manifest.config.digest;
        let bytes = self.store.read(digest)?;
        let config =
            ImageConfiguration::from_reader(bytes.as_slice()).map_err(|e| ImageError::Config {
                digest: digest.clone(),
                reason: e.to_string(),
            })?;
        let diff_ids = config.rootfs().diff_ids().len();
        if diff_ids != manifest.layers.len() {
            return Err(ImageError::Config {
                digest: digest.clone(),
                reason: format!(
                    "{diff_ids} diff ids for {} layers in the manifest",
                    manifest.layers.len()
                ),
            });
        }
        Ok(config)
    }

    /// The platform manifest a stored manifest-or-index digest stands for on this node.
    fn resolve(&self, top: &str) -> Result<(String, Manifest), ImageError> {
        match manifest::parse(top, &self.store.read(top)?)? {
            Content::Manifest(m) => Ok((top.to_string(), m)),
            Content::Index(index) => {
                let entry = manifest::select_platform(&index, manifest::host_arch())?;
                match manifest::parse(&entry.digest, &self.store.read(&entry.digest)?)? {
                    Content::Manifest(m) => Ok((entry.digest.clone(), m)),
                    Content::Index(_) => Err(ImageError::Manifest {
                        digest: entry.digest.clone(),
                        reason: "an index entry is an index itself".into(),
                    }),
                }
            }
        }
    }

    fn build_image(&self, reference: &str, top: &str) -> Result<Image, ImageError> {
        let (_, manifest) = self.resolve(top)?;
        let config = self.load_config(&manifest)?;
        let mut parent: Option<String> = None;
        let mut layers = Vec::new();
        for diff_id in config.rootfs().diff_ids() {
            let chain = chain_id(parent.as_deref(), diff_id);
            layers.push(snapshot_dir(&self.snapshots, &chain));
            parent = Some(chain);
        }
        let name = Reference::parse(reference)?.name();
        Ok(Image {
            reference: reference.to_string(),
            id: manifest.config.digest.clone(),
            repo_digest: format!("{name}@{top}"),
            size: manifest.config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            config,
            layers,
        })
    }

    fn unpack(
        &self,
        parent: Option<&str>,
        diff_id: &str,
        layer: &Descriptor,
    ) -> Result<String, ImageError> {
        let blob = self.store.open_blob(&layer.digest)?;
        unpack_snapshot(
            &self.snapshots,
            parent,
            diff_id,
            Some(layer.media_type.as_str()).filter(|m| !m.is_empty()),
            std::io::BufReader::with_capacity(256 * 1024, blob),
        )
    }

    /// Unpacks every layer of a stored image (no-op for snapshots already there), then points the
    /// reference at it.
    fn record(&self, reference: &Reference, top: &str) -> Result<Image, ImageError> {
        let (_, manifest) = self.resolve(top)?;
        let config = self.load_config(&manifest)?;
        let mut parent: Option<String> = None;
        for (layer, diff_id) in manifest.layers.iter().zip(config.rootfs().diff_ids()) {
            parent = Some(self.unpack(parent.as_deref(), diff_id, layer)?);
        }
        let _state = self.lock_state();
        self.store.set_image(reference, top)?;
        self.update_meta(|m| m.touch(&reference.to_string(), now_secs()))?;
        self.build_image(&reference.to_string(), top)
    }

    /// Import with the state lock held by the caller (so no sweep removes the not-yet-named blobs).
    fn import_locked(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let mut out = Vec::new();
        for imported in import::import_tarball(&self.store, path)? {
            let (_, manifest) = self.resolve(&imported.digest)?;
            let config = self.load_config(&manifest)?;
            let mut parent: Option<String> = None;
            for (layer, diff_id) in manifest.layers.iter().zip(config.rootfs().diff_ids()) {
                parent = Some(self.unpack(parent.as_deref(), diff_id, layer)?);
            }
            self.store
                .set_image(&imported.reference, &imported.digest)?;
            let reference = imported.reference.to_string();
            self.update_meta(|m| m.touch(&reference, now_secs()))?;
            out.push(self.build_image(&reference, &imported.digest)?);
        }
        Ok(out)
    }

    fn references_for_id(
        &self,
        index: &BTreeMap<String, String>,
        id: &str,
    ) -> Result<Vec<String>, ImageError> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImageError::ImageNotFound(id.into()));
        }
        let mut ids: HashSet<String> = HashSet::new();
        let mut refs = Vec::new();
        for (reference, top) in index {
            let Ok((_, m)) = self.resolve(top) else {
                continue;
            };
            if m.config
                .digest
                .trim_start_matches("sha256:")
                .starts_with(hex)
            {
                ids.insert(m.config.digest.clone());
                refs.push(reference.clone());
            }
        }
        match ids.len() {
            0 => Err(ImageError::ImageNotFound(id.into())),
            1 => Ok(refs),
            _ => Err(ImageError::ImageNotFound(format!(
                "{id} (ambiguous: it prefixes {} image ids)",
                ids.len()
            ))),
        }
    }

    /// Deletes blobs and snapshots that no recorded image needs and no running pull pinned. Returns bytes
    /// freed. The caller holds the state lock.
    fn sweep(&self) -> Result<u64, ImageError> {
        let mut live_blobs: HashSet<String> = HashSet::new();
        let mut live_chains: HashSet<String> = HashSet::new();
        for top in self.store.images()?.into_values() {
            let Ok(bytes) = self.store.read(&top) else {
                continue;
            };
            live_blobs.insert(top.clone());
            let manifests: Vec<String> = match manifest::parse(&top, &bytes) {
                Ok(Content::Manifest(_)) => vec![top.clone()],
                Ok(Content::Index(i)) => i.manifests.into_iter().map(|d| d.digest).collect(),
                Err(_) => continue,
            };
            for digest in manifests {
                let Ok(bytes) = self.store.read(&digest) else {
                    continue;
                };
                live_blobs.insert(digest.clone());
                let Ok(Content::Manifest(m)) = manifest::parse(&digest, &bytes) else {
                    continue;
                };
                live_blobs.insert(m.config.digest.clone());
                live_blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
                if let Ok(config) = self.load_config(&m) {
                    let mut parent: Option<String> = None;
                    for diff_id in config.rootfs().diff_ids() {
                        let chain = chain_id(parent.as_deref(), diff_id);
                        live_chains.insert(chain.clone());
                        parent = Some(chain);
                    }
                }
            }
        }
        let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = 0u64;
        for digest in self.store.list()? {
            if live_blobs.contains(&digest) || pins.contains_key(&digest) {
                continue;
            }
            freed += self.store.size(&digest).unwrap_or(0);
            self.store.remove(&digest)?;
        }
        let entries =
            fs::read_dir(&self.snapshots).map_err(ImageError::io("listing", &self.snapshots))?;
        for entry in entries {
            let entry = entry.map_err(ImageError::io("listing", &self.snapshots))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // `.tmp-*` directories belong to unpacks in progress.
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let chain = format!("sha256:{name}");
            if live_chains.contains(&chain) || pins.contains_key(&chain) {
                continue;
            }
            let path = entry.path();
            freed += disk_bytes(&path);
            fs::remove_dir_all(&path).map_err(ImageError::io("removing", &path))?;
        }
        Ok(freed)
    }
}

impl Meta {
    fn touch(&mut self, reference: &str, now: u64) {
        self.last_used.insert(reference.to_string(), now);
    }
}

impl ImageError {
    /// The registry refused the credentials: another set may work.
    fn is_auth_failure(&self) -> bool {
        match self {
            ImageError::Resolve { cause, .. } => cause.is_auth_failure(),
            ImageError::Status { status, .. } | ImageError::Token { status, .. } => {
                status.as_u16() == 401 || status.as_u16() == 403
            }
            _ => false,
        }
    }

    /// Failed talking to or because of an endpoint: another endpoint may work.
    fn is_remote(&self) -> bool {
        match self {
            ImageError::Resolve { cause, .. } => cause.is_remote(),
            ImageError::Status { .. }
            | ImageError::Token { .. }
            | ImageError::Transport { .. }
            | ImageError::Tls { .. }
            | ImageError::ManifestUnknown { .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::SizeMismatch { .. }
            | ImageError::Manifest { .. } => true,
            _ => false,
        }
    }

    fn is_transport(&self) -> bool {
        match self {
            ImageError::Resolve { cause, .. } => cause.is_transport(),
            ImageError::Transport { .. } | ImageError::Tls { .. } => true,
            _ => false,
        }
    }
}

/// Holds pins on digests and chain ids for one pull; released on drop, whatever the outcome.
struct Pins {
    inner: Arc<Inner>,
    keys: Vec<String>,
}

impl Pins {
    fn new(inner: Arc<Inner>) -> Self {
        Pins {
            inner,
            keys: Vec::new(),
        }
    }

    fn add(&mut self, key: &str) {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        *pins.entry(key.to_string()).or_default() += 1;
        self.keys.push(key.to_string());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pins = self.inner.pins.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            if let Some(n) = pins.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(key);
                }
            }
        }
    }
}

/// Bridges downloaded chunks (async side) to the store's blocking `Read`.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    buf: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.buf = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// registries.yaml auth: `auth` (base64 `user:pass`) or username/password. Identity tokens (OAuth refresh
/// tokens) are not supported and yield no credentials.
fn config_auth(auth: &super::registries::Auth) -> Option<Auth> {
    if let Some(encoded) = auth.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Auth {
            username: username.into(),
            password: password.into(),
        });
    }
    auth.username.as_ref().map(|u| Auth {
        username: u.clone(),
        password: auth.password.clone().unwrap_or_default(),
    })
}

/// k3s' mirror rewrites: the first rule (in key order) whose regex matches the repository rewrites it.
fn rewrite(rules: &BTreeMap<String, String>, repo: &str) -> Result<String, ImageError> {
    for (pattern, replacement) in rules {
        let re = regex::Regex::new(pattern).map_err(|e| ImageError::RegistriesConfig {
            path: PathBuf::from("rewrite"),
            reason: e.to_string(),
        })?;
        if re.is_match(repo) {
            return Ok(re.replace_all(repo, replacement.as_str()).into_owned());
        }
    }
    Ok(repo.to_string())
}

fn is_loopback(host: &str) -> bool {
    let bare = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// (capacity, available) bytes of the filesystem holding `path`, as `df` reports them for non-root users.
fn disk_usage(path: &Path) -> Result<(u64, u64), ImageError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| ImageError::Io {
        context: "statvfs",
        path: path.into(),
        source: e.into(),
    })?;
    let frag = st.fragment_size() as u64;
    Ok((
        st.blocks() as u64 * frag,
        st.blocks_available() as u64 * frag,
    ))
}

/// Bytes a directory tree occupies on disk (allocated blocks, not apparent sizes; hard links counted once
/// per link, which overestimates only across snapshots that share none).
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let children = fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| disk_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0);
    own + children
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::image::import::tests::{
        docker_archive, layer_and_config, one_layer_archive, tarball,
    };
    use crate::agent::image::store::sha256_digest;
    use crate::agent::image::unpack::Compression;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The agent shares one service between tasks and spawns pulls: both must compile.
    #[allow(dead_code)]
    fn shareable_and_spawnable(s: Arc<ImageService>, c: Credentials) {
        tokio::spawn(async move { s.pull("busybox", &c, &|_| {}).await });
    }

    fn service() -> (tempfile::TempDir, ImageService) {
        let dir = tempfile::tempdir().unwrap();
        let s = ImageService::open(&dir.path().join("store"), Registries::default()).unwrap();
        (dir, s)
    }

    fn write_archive(dir: &Path, name: &str, tag: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, docker_archive(tag, Compression::Gzip)).unwrap();
        path
    }

    #[test]
    fn uses_close_together_rewrite_the_metadata_once() {
        use std::os::unix::fs::MetadataExt;
        let (dir, s) = service();
        s.import(&write_archive(
            dir.path(),
            "app.tar.gz",
            "example.com/app:v1",
        ))
        .unwrap();
        let inode = || fs::metadata(s.inner.meta_path()).unwrap().ino();
        let last_used = || s.inner.read_meta().unwrap().last_used["example.com/app:v1"];

        s.local("example.com/app:v1").unwrap().unwrap();
        let written = inode();
        s.local("example.com/app:v1").unwrap().unwrap();
        assert_eq!(inode(), written, "a use just recorded is not written again");

        let long_ago = now_secs() - GC_MIN_AGE.as_secs();
        s.inner
            .update_meta(|m| m.touch("example.com/app:v1", long_ago))
            .unwrap();
        s.local("example.com/app:v1").unwrap().unwrap();
        assert!(
            last_used() + USE_RESOLUTION.as_secs() > now_secs(),
            "an old record is brought up to date"
        );
    }

    #[test]
    fn import_list_local_remove() {
        let (dir, s) = service();
        let path = write_archive(dir.path(), "app.tar.gz", "example.com/app:v1");
        let images = s.import(&path).unwrap();
        assert_eq!(images.len(), 1);
        let img = &images[0];
        assert_eq!(img.reference, "example.com/app:v1");
        assert!(
            img.id.starts_with("sha256:") && img.repo_digest.starts_with("example.com/app@sha256:")
        );
        assert_eq!(img.layers.len(), 2);
        assert_eq!(fs::read(img.layers[0].join("bin/hello")).unwrap(), b"hi");
        assert_eq!(
            img.config.config().as_ref().unwrap().cmd().as_deref(),
            Some(&["sh".to_string()][..])
        );
        let local = s
            .local("example.com/app:v1")
            .unwrap()
            .expect("imported image is local");
        assert_eq!(local.id, img.id);
        assert!(s.local("example.com/app:v2").unwrap().is_none());

        // A second name for the same content, then removal by reference keeps the shared content.
        s.import(&write_archive(
            dir.path(),
            "again.tar.gz",
            "example.com/other:1",
        ))
        .unwrap();
        assert_eq!(s.list().unwrap().len(), 2);
        let removed = s.remove("example.com/app:v1").unwrap();
        assert_eq!(removed.references, ["example.com/app:v1"]);
        assert_eq!(
            removed.freed_bytes, 0,
            "the other name still needs every blob"
        );
        assert!(s.local("example.com/other:1").unwrap().is_some());

        // By id prefix: the last name goes, and with it every blob and snapshot.
        let short = &img.id["sha256:".len().."sha256:".len() + 12];
        let removed = s.remove(short).unwrap();
        assert_eq!(removed.references, ["example.com/other:1"]);
        assert!(removed.freed_bytes > 0);
        assert!(s.list().unwrap().is_empty());
        assert!(s.inner.store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(&s.inner.snapshots).unwrap().count(), 0);
        assert!(matches!(
            s.remove("example.com/app:v1"),
            Err(ImageError::ImageNotFound(_))
        ));
    }

    #[test]
    fn import_dir_skips_unchanged_files() {
        let (dir, s) = service();
        let images = dir.path().join("images");
        fs::create_dir(&images).unwrap();
        write_archive(&images, "a.tar.gz", "a.example/a:1");
        fs::write(images.join("notes.txt"), "not an image").unwrap();
        fs::write(images.join("broken.tar"), "not a tarball").unwrap();
        let first = s.import_dir(&images).unwrap();
        assert_eq!(first.imported.len(), 1);
        assert_eq!(first.ignored, [images.join("notes.txt")]);
        assert_eq!(first.failed.len(), 1);
        assert_eq!(first.failed[0].0, images.join("broken.tar"));
        let second = s.import_dir(&images).unwrap();
        assert!(second.imported.is_empty());
        assert_eq!(second.unchanged, [images.join("a.tar.gz")]);
        assert_eq!(second.failed.len(), 1, "a broken file is tried again");
        assert!(s
            .import_dir(&dir.path().join("missing"))
            .unwrap()
            .imported
            .is_empty());
    }

    /// A docker-archive of `b.example/b:1`, whose layer differs from [`write_archive`]'s.
    fn write_other_archive(dir: &Path) -> PathBuf {
        let path = dir.join("b.tar");
        fs::write(
            &path,
            one_layer_archive("bin/other", b"different", r#"["b.example/b:1"]"#),
        )
        .unwrap();
        path
    }

    #[test]
    fn gc_spares_images_from_the_agents_image_directory_until_removed_by_hand() {
        let (dir, s) = service();
        let images = dir.path().join("images");
        fs::create_dir(&images).unwrap();
        write_archive(&images, "airgap.tar", "a.example/airgap:1");
        s.import_dir(&images).unwrap();
        s.import(&write_other_archive(dir.path())).unwrap();
        let now = now_secs() + 3_600;
        // 95% used, everything must go: only the image imported by hand does.
        let r = s.collect(&HashSet::new(), 80, 0, 1000, 50, now).unwrap();
        assert_eq!(r.removed, ["b.example/b:1"]);
        assert!(s.local("a.example/airgap:1").unwrap().is_some());
        // Removing it by hand works, and unpins it.
        s.remove("a.example/airgap:1").unwrap();
        let _l = s.inner.lock_state();
        assert!(s.inner.read_meta().unwrap().pinned.is_empty());
    }

    fn candidate(id: &str, last_used: u64, size: u64) -> GcCandidate {
        GcCandidate {
            id: id.into(),
            references: vec![format!("r/{id}:latest")],
            last_used,
            size,
            pinned: false,
        }
    }

    #[test]
    fn gc_plan_is_lru_and_spares_used_images() {
        let now = 10_000;
        let c = vec![
            candidate("new", now - 10, 100),
            candidate("old", 1_000, 100),
            candidate("older", 500, 100),
            candidate("oldest-in-use", 1, 100),
            candidate("mid", 5_000, 100),
        ];
        let in_use = HashSet::from(["oldest-in-use".to_string()]);
        let ids = |v: Vec<&GcCandidate>| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(plan_gc(&c, &in_use, 150, now)), ["older", "old"]);
        assert_eq!(
            ids(plan_gc(&c, &in_use, 10_000, now)),
            ["older", "old", "mid"],
            "never in use, never younger than the minimum age"
        );
        assert!(plan_gc(&c, &in_use, 0, now).is_empty());
        let mut with_pinned = c.clone();
        with_pinned[2].pinned = true;
        assert_eq!(
            ids(plan_gc(&with_pinned, &in_use, 150, now)),
            ["old", "mid"],
            "a pinned image is never chosen"
        );
        let by_ref = HashSet::from(["r/older:latest".to_string()]);
        assert_eq!(ids(plan_gc(&c, &by_ref, 1, now)), ["oldest-in-use"]);
    }

    #[test]
    fn gc_removes_lru_images_above_threshold() {
        let (dir, s) = service();
        let a = s
            .import(&write_archive(dir.path(), "a.tar", "a.example/a:1"))
            .unwrap();
        s.import(&write_other_archive(dir.path())).unwrap();
        let now = now_secs() + 3_600;
        {
            let _l = s.inner.lock_state();
            s.inner
                .update_meta(|m| {
                    m.last_used.insert("a.example/a:1".into(), now - 600);
                    m.last_used.insert("b.example/b:1".into(), now - 900);
                })
                .unwrap();
        }
        // 50% used, high 80: nothing to do.
        let idle = s.collect(&HashSet::new(), 80, 70, 1000, 500, now).unwrap();
        assert_eq!((idle.usage_percent, idle.removed.len()), (50, 0));
        // 95% used: b is older, but in use; a goes.
        let in_use = HashSet::from([s.local("b.example/b:1").unwrap().unwrap().id]);
        let r = s.collect(&in_use, 80, 70, 1000, 50, now).unwrap();
        assert_eq!(r.usage_percent, 95);
        assert_eq!(r.bytes_to_free, 250);
        assert_eq!(r.removed, ["a.example/a:1"]);
        assert!(r.freed_bytes > 0);
        assert!(s.local("a.example/a:1").unwrap().is_none());
        assert!(
            a[0].layers.iter().all(|l| !l.exists()),
            "its snapshots are gone"
        );
        assert!(s.local("b.example/b:1").unwrap().is_some());
        assert!(s
            .garbage_collect(&HashSet::new(), 101, 100)
            .unwrap()
            .removed
            .is_empty());
    }

    #[test]
    fn endpoints_rewrites_loopback_fallback_and_secret_keys() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.example.com"]
    rewrite:
      "^library/(.*)": "hub/$1"
configs:
  "mirror.example.com":
    auth: {auth: "bTp1OnA="}
"#;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.yaml");
        fs::write(&file, yaml).unwrap();
        let s =
            ImageService::open(&dir.path().join("s"), Registries::load(&file).unwrap()).unwrap();
        let eps = s
            .inner
            .pull_endpoints(&Reference::parse("busybox").unwrap())
            .unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].repo, "hub/busybox");
        assert_eq!(eps[0].secret_key, "mirror.example.com/hub/busybox");
        assert_eq!(
            eps[0].config_auth,
            Some(Auth {
                username: "m".into(),
                password: "u:p".into()
            })
        );
        assert_eq!(eps[1].url, "https://registry-1.docker.io");
        assert_eq!(eps[1].repo, "library/busybox");
        assert_eq!(eps[1].secret_key, "docker.io/library/busybox");
        let local = s
            .inner
            .pull_endpoints(&Reference::parse("127.0.0.1:5000/app").unwrap())
            .unwrap();
        let urls: Vec<&str> = local.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]);
        assert!(is_loopback("localhost:5000") && is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    /// A registry speaking just enough HTTP/1.1 for a pull, behind Docker token auth: `/token` hands out a
    /// bearer token for user:pass, and everything under /v2/ wants it.
    async fn fake_token_registry(
        blobs: HashMap<String, (String, Vec<u8>)>,
    ) -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let blob_requests = Arc::new(AtomicUsize::new(0));
        let (counter, realm) = (blob_requests.clone(), format!("http://{addr}/token"));
        let blobs = Arc::new(blobs);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (blobs, counter, realm) = (blobs.clone(), counter.clone(), realm.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                        // A TLS ClientHello (the https attempt before the plain-HTTP fallback): hang up.
                        if head.first() == Some(&0x16) {
                            return;
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split(' ').nth(1).unwrap_or("").to_string();
                    let auth = text
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("authorization")
                                .then(|| v.trim().to_string())
                        })
                        .unwrap_or_default();
                    let basic = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode("user:pass")
                    );
                    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = if path
                        .starts_with("/token")
                    {
                        if auth == basic && path.contains("scope=repository%3Ateam%2Fapp%3Apull") {
                            ("200 OK", vec![], br#"{"token":"tok"}"#.to_vec())
                        } else {
                            (
                                "401 Unauthorized",
                                vec![],
                                br#"{"details":"incorrect username or password"}"#.to_vec(),
                            )
                        }
                    } else if auth != "Bearer tok" {
                        (
                                "401 Unauthorized",
                                vec![format!(
                                    r#"WWW-Authenticate: Bearer realm="{realm}",service="fake",scope="repository:team/app:pull""#
                                )],
                                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
                            )
                    } else {
                        let key = path.rsplit('/').next().unwrap_or("").to_string();
                        if path.contains("/blobs/") {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        match blobs.get(&key) {
                                Some((media, bytes)) => (
                                    "200 OK",
                                    vec![format!("Content-Type: {media}")],
                                    bytes.clone(),
                                ),
                                None => ("404 Not Found", vec![], br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec()),
                            }
                    };
                    let mut response = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for h in headers {
                        response.push_str(&h);
                        response.push_str("\r\n");
                    }
                    response.push_str("\r\n");
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                });
            }
        });
        (addr, blob_requests)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pulls_multi_arch_gzip_image_with_token_auth() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (layer, config) = layer_and_config("bin/tool", b"#!/bin/sh\n");
        let gz = tarball(&[("bin/tool", b"#!/bin/sh\n")], Compression::Gzip);
        assert_eq!(sha256_digest(&layer), {
            // The config names the uncompressed layer; the registry serves it gzipped.
            let v: serde_json::Value = serde_json::from_slice(&config).unwrap();
            v["rootfs"]["diff_ids"][0].as_str().unwrap().to_string()
        });
        let (cd, ld) = (sha256_digest(&config), sha256_digest(&gz));
        let image_manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{cd}","size":{}}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{ld}","size":{}}}]}}"#,
            manifest::DOCKER_MANIFEST,
            config.len(),
            gz.len()
        );
        let md = sha256_digest(image_manifest.as_bytes());
        let other = "sha256:9999999999999999999999999999999999999999999999999999999999999999";
        let list = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
            {{"mediaType":"{m}","digest":"{other}","size":5,"platform":{{"architecture":"s390x","os":"linux"}}}},
            {{"mediaType":"{m}","digest":"{md}","size":{n},"platform":{{"architecture":"{arch}","os":"linux"}}}}]}}"#,
            manifest::DOCKER_MANIFEST_LIST,
            m = manifest::DOCKER_MANIFEST,
            n = image_manifest.len(),
            arch = manifest::host_arch()
        );
        let ixd = sha256_digest(list.as_bytes());
        let blobs = HashMap::from([
            (
                "v1".to_string(),
                (
                    manifest::DOCKER_MANIFEST_LIST.to_string(),
                    list.into_bytes(),
                ),
            ),
            (
                md.clone(),
                (
                    manifest::DOCKER_MANIFEST.to_string(),
                    image_manifest.into_bytes(),
                ),
            ),
            (cd.clone(), ("application/octet-stream".to_string(), config)),
            (ld.clone(), ("application/octet-stream".to_string(), gz)),
        ]);
        let (addr, blob_requests) = fake_token_registry(blobs).await;
        let (_dir, s) = service();
        let image = format!("{addr}/team/app:v1");

        let wrong = Credentials::basic(&addr, "user", "nope");
        let e = s
            .pull(&image, &wrong, &|_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "failed to pull and unpack image \"{image}\": failed to resolve reference"
            )),
            "{e}"
        );
        assert!(
            e.contains("401 Unauthorized: incorrect username or password"),
            "{e}"
        );

        let seen = Mutex::new(Vec::new());
        let creds = Credentials::basic(&addr, "user", "pass");
        let img = s
            .pull(&image, &creds, &|p| seen.lock().unwrap().push(p))
            .await
            .unwrap();
        assert_eq!(img.reference, image);
        assert_eq!(
            img.repo_digest,
            format!("{addr}/team/app@{ixd}"),
            "the index digest"
        );
        assert_eq!(img.id, cd);
        assert_eq!(
            fs::read(img.layers[0].join("bin/tool")).unwrap(),
            b"#!/bin/sh\n"
        );
        let seen = seen.into_inner().unwrap();
        assert!(
            matches!(&seen[0], Progress::Resolved { digest, cached_bytes: 0, .. } if *digest == md)
        );
        assert!(seen.iter().any(|p| matches!(p, Progress::Downloaded { done_bytes, total_bytes } if done_bytes == total_bytes)));
        assert!(seen.contains(&Progress::Unpacking {
            layer: 1,
            layers: 1
        }));
        assert_eq!(blob_requests.load(Ordering::SeqCst), 2);

        // Everything is here: a second pull fetches manifests only.
        s.pull(&image, &creds, &|_| {}).await.unwrap();
        assert_eq!(blob_requests.load(Ordering::SeqCst), 2);
        let e = s
            .pull(&format!("{addr}/team/app:nope"), &creds, &|_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("team/app:nope") && e.contains("not found"),
            "{e}"
        );
    }
}
