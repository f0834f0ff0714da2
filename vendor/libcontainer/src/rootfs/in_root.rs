//! orch: lookups and creations inside a container's rootfs for its mounts, confined to that rootfs by
//! `openat2(RESOLVE_IN_ROOT)` as pathrs's `Root` confines them, without pathrs's procfs round trips
//! (see ORCH_PATCH.md).
//!
//! Symlinks of the image are followed as if the rootfs were `/`; magic links are refused. Directories
//! made by [`InRoot::mkdir_all`] are created one component at a time with `mkdirat` and opened with
//! `O_NOFOLLOW`, so a component swapped for a symlink fails instead of leading out of the rootfs.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};

/// An open rootfs directory.
pub struct InRoot(OwnedFd);

impl InRoot {
    pub fn open(rootfs: &Path) -> nix::Result<Self> {
        let fd = nix::fcntl::open(
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        // SAFETY: open returned a new descriptor that nothing else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// An `O_PATH` handle on `path`, its trailing symlink followed.
    pub fn resolve(&self, path: &Path) -> nix::Result<OwnedFd> {
        self.open_in_root(path, OFlag::empty())
    }

    /// Makes the directory `path` and its missing parents (mode `mode`, less the umask) and returns an
    /// `O_PATH` handle on it. Fails if a component is not a directory, or not one yet to be made is `..`.
    pub fn mkdir_all(&self, path: &Path, mode: Mode) -> nix::Result<OwnedFd> {
        let components: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                Component::ParentDir => Some(OsStr::new("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
            })
            .collect();
        // The longest part of the path that exists: usually all of it, else all but the last component.
        let mut existing = components.len();
        let mut dir = loop {
            let prefix: std::path::PathBuf = components[..existing].iter().collect();
            match self.open_in_root(&prefix, OFlag::O_DIRECTORY) {
                Ok(fd) => break fd,
                Err(Errno::ENOENT) if existing > 0 => existing -= 1,
                Err(err) => return Err(err),
            }
        };
        for name in &components[existing..] {
            if *name == ".." {
                return Err(Errno::ENOENT);
            }
            match mkdirat(Some(dir.as_raw_fd()), *name, mode) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(err) => return Err(err),
            }
            let next = openat(
                Some(dir.as_raw_fd()),
                *name,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            // SAFETY: openat returned a new descriptor that nothing else owns.
            dir = unsafe { OwnedFd::from_raw_fd(next) };
        }
        Ok(dir)
    }

    /// Creates the file `path` (mode `mode`, less the umask) if it does not exist, with its missing
    /// parent directories (mode 0755). An existing file, or a symlink to one, is left as it is.
    pub fn create_file(&self, path: &Path, mode: Mode) -> nix::Result<()> {
        if self.resolve(path).is_ok() {
            return Ok(());
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Errno::EINVAL);
        };
        let parent = self.mkdir_all(parent, Mode::from_bits_truncate(0o755))?;
        match openat(
            Some(parent.as_raw_fd()),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        ) {
            // SAFETY: openat returned a new descriptor that nothing else owns; dropping closes it.
            Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EEXIST) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    fn open_in_root(&self, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | flags)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = openat2(self.0.as_raw_fd(), path, how)?;
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}
