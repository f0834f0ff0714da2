//! Layers onto directories: decompression (plain, gzip, zstd — by media type, else by magic bytes), the
//! tar entries with their metadata, and OCI whiteouts. Snapshots live in `<snapshots>/<chain-id hex>/`: one
//! directory per layer holding only that layer's changes, so images sharing a base share its directories and
//! overlayfs stacks them (whiteouts become overlay's 0:0 char devices and `trusted.overlay.opaque`).
//!
//! Layer content is hostile: every entry path is resolved beneath the root with symlinks interpreted as if
//! the root were `/` (the kernel's `RESOLVE_IN_ROOT`), so neither `..` nor a symlink planted by this or an
//! earlier layer can place a file outside it. The tar crate's `unpack_in` does not guarantee that.

use std::collections::{HashSet, VecDeque};
use std::ffi::{CString, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::EntryType;

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Linux's limit on symlinks followed in one lookup (ELOOP).
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The media type decides when it names a compression (OCI `+gzip`/`+zstd`, Docker `.tar.gzip`); otherwise
    /// (plain-tar types, or docker-archive tarballs that carry none) the first bytes do.
    pub fn detect(media_type: Option<&str>, head: &[u8]) -> Self {
        match media_type {
            Some(m) if m.ends_with("+gzip") || m.ends_with(".gzip") => return Compression::Gzip,
            Some(m) if m.ends_with("+zstd") || m.ends_with(".zstd") => return Compression::Zstd,
            _ => {}
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What a whiteout entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// The layer is applied onto the lower layers' files: whiteouts delete them (a flattened rootfs).
    Delete,
    /// The layer gets a directory of its own for overlayfs: whiteouts are recorded the way overlay reads them.
    Overlay,
}

/// The OCI chain id: the layer's own diff id at the bottom, then sha256 of `"<parent chain> <diff id>"`.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(p) => super::store::sha256_digest(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Unpacks the layer `diff_id` stacked on `parent` (a chain id) into its snapshot unless it is there already,
/// and returns the snapshot's chain id. The layer is checked against its diff id before the snapshot
/// appears, so a half-written or tampered layer never becomes visible under a chain id.
pub fn unpack_snapshot(
    snapshots: &Path,
    parent: Option<&str>,
    diff_id: &str,
    media_type: Option<&str>,
    layer: impl Read,
) -> Result<String, ImageError> {
    let chain = chain_id(parent, diff_id);
    let dir = snapshot_dir(snapshots, &chain);
    if dir.is_dir() {
        return Ok(chain);
    }
    let tmp = snapshots.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&tmp).map_err(ImageError::io("creating", &tmp))?;
    let result = apply_layer(&tmp, media_type, layer, Whiteouts::Overlay).and_then(|actual| {
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                expected: diff_id.into(),
                actual,
            });
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => Ok(()),
            // A concurrent pull of an image sharing this layer won the race: its snapshot is as good.
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            Err(e) => Err(ImageError::io("renaming into", &dir)(e)),
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| chain)
}

pub fn snapshot_dir(snapshots: &Path, chain: &str) -> PathBuf {
    snapshots.join(chain.strip_prefix("sha256:").unwrap_or(chain))
}

/// Applies one (possibly compressed) layer tarball onto `root` and returns its diff id, the sha256 of the
/// uncompressed tar stream.
pub fn apply_layer(
    root: &Path,
    media_type: Option<&str>,
    mut layer: impl Read,
    whiteouts: Whiteouts,
) -> Result<String, ImageError> {
    let read_err = |source| ImageError::Io {
        context: "reading layer for",
        path: root.into(),
        source,
    };
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match layer.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
    let stream = io::Cursor::new(head[..n].to_vec()).chain(layer);
    let tar: Box<dyn Read> = match Compression::detect(media_type, &head[..n]) {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(stream).map_err(read_err)?),
    };
    let mut hashing = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(&mut hashing);
    let mut applier = Applier {
        root,
        whiteouts,
        is_root: is_root(),
        written: HashSet::new(),
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(read_err)? {
        applier.apply(entry.map_err(read_err)?)?;
    }
    applier.finish()?;
    // The tar reader stops at the end-of-archive blocks; the diff id covers every byte, padding included.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    Ok(format!("sha256:{}", hex::encode(hashing.hasher.finalize())))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

struct Applier<'a> {
    root: &'a Path,
    whiteouts: Whiteouts,
    is_root: bool,
    /// Paths this layer wrote: whiteouts and opaque markers hide lower layers only, never the layer's own files.
    written: HashSet<PathBuf>,
    /// Directory mtimes are set last: creating their children would change them again.
    dirs: Vec<(PathBuf, i64)>,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry
            .path()
            .map_err(|e| self.io_err("reading entry path of", self.root, e))?
            .into_owned();
        let unsafe_entry = |reason| ImageError::UnsafeEntry {
            path: raw.clone(),
            reason,
        };
        let rel = clean_relative(&raw).ok_or_else(|| unsafe_entry("path escapes the root"))?;
        let Some(name) = rel.file_name().map(OsString::from) else {
            return Ok(()); // the root itself ("./"): its metadata belongs to the runtime
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        let parent = self.resolve(parent_rel, true)?;
        let name_str = name.to_string_lossy();

        if name_str == OPAQUE_MARKER {
            return self.opaque(&parent);
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_entry("whiteout names no entry"));
            }
            return self.whiteout(&parent.join(hidden));
        }

        let target = parent.join(&name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header
            .mode()
            .map_err(|e| self.io_err("reading mode of", &target, e))?
            & 0o7777;
        let io_err = |ctx, e| ImageError::Io {
            context: ctx,
            path: target.clone(),
            source: e,
        };
        match kind {
            EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_any(&target)?;
                    fs::create_dir(&target).map_err(|e| io_err("creating", e))?;
                }
                Err(_) => fs::create_dir(&target).map_err(|e| io_err("creating", e))?,
            },
            EntryType::Regular | EntryType::Continuous => {
                remove_any(&target)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| io_err("creating", e))?;
                io::copy(&mut entry, &mut file).map_err(|e| io_err("writing", e))?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| io_err("reading link of", e))?;
                let link = link.ok_or_else(|| unsafe_entry("symlink without a target"))?;
                remove_any(&target)?;
                // The target is stored verbatim: it is only ever followed through `resolve` here, and by
                // processes inside the container, whose root it is.
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(|e| io_err("creating symlink", e))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| io_err("reading link of", e))?;
                let link = link.ok_or_else(|| unsafe_entry("hard link without a target"))?;
                let link_rel = clean_relative(&link)
                    .ok_or_else(|| unsafe_entry("hard link target escapes the root"))?;
                let source = match (link_rel.parent(), link_rel.file_name()) {
                    (Some(p), Some(n)) => self.resolve(p, false)?.join(n),
                    _ => return Err(unsafe_entry("hard link to the root")),
                };
                remove_any(&target)?;
                fs::hard_link(&source, &target).map_err(|e| io_err("hard-linking", e))?;
                // A hard link shares the inode: its metadata is the source's, already applied.
                self.written.insert(rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let node_kind = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                if node_kind != libc::S_IFIFO && !self.is_root {
                    return Ok(()); // as rootless containerd: device nodes need CAP_MKNOD
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_any(&target)?;
                mknod(&target, node_kind | 0o600, libc::makedev(major, minor))?;
            }
            // pax and GNU long-name headers are consumed by the tar crate; anything else has no file to make.
            _ => return Ok(()),
        }
        self.metadata(&mut entry, &target, kind, mode)?;
        self.written.insert(rel);
        Ok(())
    }

    fn metadata<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        target: &Path,
        kind: EntryType,
        mode: u32,
    ) -> Result<(), ImageError> {
        let header = entry.header();
        let io_err = |ctx, e| ImageError::Io {
            context: ctx,
            path: target.into(),
            source: e,
        };
        let c = cpath(target)?;
        if self.is_root {
            let uid = header.uid().map_err(|e| io_err("reading uid of", e))?;
            let gid = header.gid().map_err(|e| io_err("reading gid of", e))?;
            // SAFETY: c is a valid NUL-terminated path; lchown does not follow a final symlink.
            if unsafe { libc::lchown(c.as_ptr(), uid as libc::uid_t, gid as libc::gid_t) } != 0 {
                return Err(io_err("chowning", io::Error::last_os_error()));
            }
        }
        // After chown, which clears setuid/setgid bits. Symlink modes mean nothing on Linux.
        if kind != EntryType::Symlink {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(target, fs::Permissions::from_mode(mode))
                .map_err(|e| io_err("chmodding", e))?;
        }
        if let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| io_err("reading pax headers of", e))?
        {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    // Best effort, as containerd: filesystems without xattrs (or `security.*` without
                    // privilege) must not fail the pull.
                    let _ = set_xattr(&c, name, ext.value_bytes());
                }
            }
        }
        let mtime = entry.header().mtime().unwrap_or(0) as i64;
        if kind == EntryType::Directory {
            self.dirs.push((target.into(), mtime));
        } else {
            set_mtime(&c, mtime).map_err(|e| io_err("setting mtime of", e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ImageError> {
        for (dir, mtime) in self.dirs.iter().rev() {
            set_mtime(&cpath(dir)?, *mtime).map_err(|e| ImageError::Io {
                context: "setting mtime of",
                path: dir.clone(),
                source: e,
            })?;
        }
        Ok(())
    }

    fn whiteout(&mut self, target: &Path) -> Result<(), ImageError> {
        if self.written.contains(&self.relative(target)) {
            return Ok(());
        }
        match self.whiteouts {
            Whiteouts::Delete => remove_any(target),
            Whiteouts::Overlay => {
                remove_any(target)?;
                mknod(target, libc::S_IFCHR | 0o600, libc::makedev(0, 0))
            }
        }
    }

    fn opaque(&mut self, dir: &Path) -> Result<(), ImageError> {
        match self.whiteouts {
            Whiteouts::Delete => {
                let entries = fs::read_dir(dir).map_err(ImageError::io("listing", dir))?;
                for entry in entries {
                    let path = entry.map_err(ImageError::io("listing", dir))?.path();
                    if !self.written.contains(&self.relative(&path)) {
                        remove_any(&path)?;
                    }
                }
                Ok(())
            }
            Whiteouts::Overlay => {
                set_xattr(&cpath(dir)?, "trusted.overlay.opaque", b"y").map_err(|e| {
                    ImageError::Io {
                        context: "marking opaque",
                        path: dir.into(),
                        source: e,
                    }
                })
            }
        }
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(self.root).unwrap_or(path).to_path_buf()
    }

    fn io_err(&self, context: &'static str, path: &Path, source: io::Error) -> ImageError {
        ImageError::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// The real path of `rel` beneath the root, following symlinks as if the root were `/` (absolute targets
    /// start at the root, `..` stops there). With `create`, missing directories are made (tar streams need
    /// not list parents first).
    fn resolve(&self, rel: &Path, create: bool) -> Result<PathBuf, ImageError> {
        let mut todo: VecDeque<OsString> = rel.iter().map(OsString::from).collect();
        let mut done: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(comp) = todo.pop_front() {
            match comp.as_bytes() {
                b"" | b"." | b"/" => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let mut here: PathBuf = self
                .root
                .iter()
                .chain(done.iter().map(|c| c.as_os_str()))
                .collect();
            here.push(&comp);
            match fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(ImageError::UnsafeEntry {
                            path: rel.into(),
                            reason: "too many levels of symlinks",
                        });
                    }
                    let target =
                        fs::read_link(&here).map_err(ImageError::io("reading link", &here))?;
                    if target.is_absolute() {
                        done.clear();
                    }
                    for c in target.iter().rev() {
                        todo.push_front(c.into());
                    }
                }
                Ok(m) if m.is_dir() => done.push(comp),
                Ok(_) => {
                    return Err(ImageError::UnsafeEntry {
                        path: rel.into(),
                        reason: "a parent is not a directory",
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&here).map_err(ImageError::io("creating", &here))?;
                    done.push(comp);
                }
                Err(e) => {
                    return Err(ImageError::Io {
                        context: "resolving",
                        path: here,
                        source: e,
                    })
                }
            }
        }
        Ok(self
            .root
            .iter()
            .chain(done.iter().map(|c| c.as_os_str()))
            .collect())
    }
}

/// The entry path relative to the root, with `.` and a leading `/` dropped; `None` when `..` climbs out.
fn clean_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Removes whatever is at `path` (never following a symlink there); nothing there is fine.
fn remove_any(path: &Path) -> Result<(), ImageError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(ImageError::io("removing", path))
}

fn cpath(path: &Path) -> Result<CString, ImageError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ImageError::UnsafeEntry {
        path: path.into(),
        reason: "NUL byte in path",
    })
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), ImageError> {
    let c = cpath(path)?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), mode, dev) } != 0 {
        return Err(ImageError::Io {
            context: "mknod",
            path: path.into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn set_xattr(path: &CString, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both strings are NUL-terminated and value points to value.len() readable bytes.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_mtime(path: &CString, mtime: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: path is NUL-terminated, times holds the two timespecs utimensat reads.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    /// A tar layer built in memory, entry by entry.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }
        fn entry(
            mut self,
            kind: EntryType,
            path: &str,
            link: Option<&str>,
            data: &[u8],
            mode: u32,
        ) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // set_path refuses `..`, which hostile layers contain: write the raw name.
            let name = &mut h.as_gnu_mut().unwrap().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }
        fn dir(self, path: &str) -> Self {
            self.entry(EntryType::Directory, path, None, b"", 0o755)
        }
        fn file(self, path: &str, data: &str) -> Self {
            self.entry(EntryType::Regular, path, None, data.as_bytes(), 0o644)
        }
        fn symlink(self, path: &str, target: &str) -> Self {
            self.entry(EntryType::Symlink, path, Some(target), b"", 0o777)
        }
        fn hardlink(self, path: &str, target: &str) -> Self {
            self.entry(EntryType::Link, path, Some(target), b"", 0o644)
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn read(root: &Path, p: &str) -> String {
        fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn layers_stack_with_whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let base = Layer::new()
            .dir("etc/")
            .file("etc/passwd", "root")
            .file("etc/motd", "hi")
            .dir("var/cache/")
            .file("var/cache/a", "old")
            .file("bin/tool", "#!") // no parent entry: created implicitly
            .bytes();
        let diff = apply_layer(&root, None, base.as_slice(), Whiteouts::Delete).unwrap();
        assert_eq!(diff, crate::agent::image::store::sha256_digest(&base));
        let meta = fs::metadata(root.join("etc/motd")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        assert_eq!(meta.mtime(), 1_600_000_000);
        assert_eq!(
            fs::metadata(root.join("etc")).unwrap().mtime(),
            1_600_000_000,
            "dir mtimes set last"
        );

        let top = Layer::new()
            .file("etc/.wh.motd", "")
            .dir("var/cache/")
            .file("var/cache/.wh..wh..opq", "")
            .file("var/cache/b", "new")
            .file("new", "x")
            .file(".wh.new", "") // a whiteout never hides the layer's own files
            .hardlink("etc/passwd-link", "etc/passwd")
            .bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&top).unwrap();
        let diff = apply_layer(
            &root,
            Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            gz.finish().unwrap().as_slice(),
            Whiteouts::Delete,
        )
        .unwrap();
        assert_eq!(
            diff,
            crate::agent::image::store::sha256_digest(&top),
            "diff id is over the uncompressed tar"
        );
        assert!(!root.join("etc/motd").exists());
        assert!(!root.join("etc/.wh.motd").exists());
        assert!(
            !root.join("var/cache/a").exists(),
            "opaque dir hides lower entries"
        );
        assert_eq!(read(&root, "var/cache/b"), "new");
        assert_eq!(read(&root, "new"), "x");
        let (a, b) = (
            fs::metadata(root.join("etc/passwd")).unwrap(),
            fs::metadata(root.join("etc/passwd-link")).unwrap(),
        );
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    }

    #[test]
    fn compression_detected_by_media_type_and_magic() {
        use Compression::{Gzip, Zstd};
        assert_eq!(
            Compression::detect(
                Some("application/vnd.docker.image.rootfs.diff.tar.gzip"),
                b""
            ),
            Gzip
        );
        assert_eq!(
            Compression::detect(Some("application/vnd.oci.image.layer.v1.tar+zstd"), b""),
            Zstd
        );
        assert_eq!(
            Compression::detect(Some("application/vnd.oci.image.layer.v1.tar"), b"ustar"),
            Compression::None
        );
        assert_eq!(Compression::detect(None, &[0x1f, 0x8b, 8, 0]), Gzip);
        assert_eq!(Compression::detect(None, &[0x28, 0xb5, 0x2f, 0xfd]), Zstd);

        let tmp = tempfile::tempdir().unwrap();
        let tar = Layer::new().file("f", "zstd!").bytes();
        let zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
        // No media type (a docker-archive layer): the magic bytes decide.
        apply_layer(tmp.path(), None, zst.as_slice(), Whiteouts::Delete).unwrap();
        assert_eq!(read(tmp.path(), "f"), "zstd!");
    }

    #[test]
    fn nothing_escapes_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();

        let e = apply_layer(
            &root,
            None,
            Layer::new().file("../evil", "x").bytes().as_slice(),
            Whiteouts::Delete,
        )
        .unwrap_err();
        assert!(e.to_string().contains("escapes the root"), "{e}");
        assert!(!tmp.path().join("evil").exists());

        // A symlink planted by one layer, written through by the next: absolute and relative targets both
        // resolve inside the root, as the container would see them.
        let abs = outside.to_str().unwrap();
        let lower = Layer::new()
            .symlink("abs", abs)
            .symlink("rel", "../../../..")
            .symlink("etc", "/")
            .bytes();
        apply_layer(&root, None, lower.as_slice(), Whiteouts::Delete).unwrap();
        let upper = Layer::new()
            .file("abs/pwned", "x")
            .file("rel/tmp-pwned", "x")
            .file("etc/passwd", "x")
            .hardlink("hl", "rel/etc/passwd")
            .bytes();
        apply_layer(&root, None, upper.as_slice(), Whiteouts::Delete).unwrap();
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        assert!(
            root.join(abs.trim_start_matches('/'))
                .join("pwned")
                .is_file(),
            "absolute target re-rooted"
        );
        assert!(root.join("tmp-pwned").is_file(), "`..` stops at the root");
        assert_eq!(read(&root, "passwd"), "x");
        assert_eq!(
            fs::metadata(root.join("hl")).unwrap().ino(),
            fs::metadata(root.join("passwd")).unwrap().ino()
        );
        // The symlink entries themselves are kept verbatim.
        assert_eq!(fs::read_link(root.join("etc")).unwrap(), Path::new("/"));

        let e = apply_layer(
            &root,
            None,
            Layer::new()
                .hardlink("x", "../../etc/shadow")
                .bytes()
                .as_slice(),
            Whiteouts::Delete,
        )
        .unwrap_err();
        assert!(e.to_string().contains("escapes the root"), "{e}");
        let lp = Layer::new()
            .symlink("loop", "loop")
            .file("loop/x", "")
            .bytes();
        let e = apply_layer(&root, None, lp.as_slice(), Whiteouts::Delete).unwrap_err();
        assert!(e.to_string().contains("too many levels"), "{e}");
    }

    #[test]
    fn snapshots_are_per_chain_and_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let snaps = tmp.path().join("snapshots");
        fs::create_dir(&snaps).unwrap();
        let base = Layer::new()
            .dir("d/")
            .file("d/a", "1")
            .file("gone", "1")
            .bytes();
        let base_diff = crate::agent::image::store::sha256_digest(&base);
        let c0 = unpack_snapshot(&snaps, None, &base_diff, None, base.as_slice()).unwrap();
        assert_eq!(c0, base_diff, "the bottom chain id is the diff id");
        // Present: the layer is not read again.
        assert_eq!(
            unpack_snapshot(&snaps, None, &base_diff, None, io::empty()).unwrap(),
            c0
        );

        let top = Layer::new()
            .file(".wh.gone", "")
            .dir("d/")
            .file("d/.wh..wh..opq", "")
            .file("d/b", "2")
            .bytes();
        let top_diff = crate::agent::image::store::sha256_digest(&top);
        let wrong = crate::agent::image::store::sha256_digest(b"other");
        let e = unpack_snapshot(&snaps, Some(&c0), &wrong, None, top.as_slice()).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        assert_eq!(
            fs::read_dir(&snaps).unwrap().count(),
            1,
            "a failed unpack leaves nothing behind"
        );

        if !is_root() {
            // Overlay whiteouts are char devices, which need CAP_MKNOD; the agent runs as root.
            let e =
                unpack_snapshot(&snaps, Some(&c0), &top_diff, None, top.as_slice()).unwrap_err();
            assert!(e.to_string().contains("mknod"), "{e}");
            return;
        }
        let c1 = unpack_snapshot(&snaps, Some(&c0), &top_diff, None, top.as_slice()).unwrap();
        assert_eq!(c1, chain_id(Some(&c0), &top_diff));
        assert_ne!(c1, top_diff);
        let dir = snapshot_dir(&snaps, &c1);
        let wh = fs::symlink_metadata(dir.join("gone")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &wh.file_type()
        ));
        assert_eq!(wh.rdev(), 0);
        assert_eq!(read(&dir, "d/b"), "2");
        assert!(
            read(&snapshot_dir(&snaps, &c0), "d/a") == "1",
            "the lower snapshot is untouched"
        );
        let mut buf = [0u8; 4];
        let c = cpath(&dir.join("d")).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: NUL-terminated strings and a buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        // tmpfs and ext4 keep trusted.* for root; overlay needs it too, so a filesystem without it is unusable.
        assert_eq!(&buf[..n.max(0) as usize], b"y");
    }
}
