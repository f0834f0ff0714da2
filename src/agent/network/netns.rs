//! Named namespaces as `ip netns` keeps them: a namespace stays alive because it is bind-mounted on a file,
//! `<netns_dir>/<id>` for a pod's network namespace (and, through the same functions, the kubelet's files
//! for a pod's IPC and UTS namespaces). Everything here runs on dedicated threads, because namespace membership is
//! per thread and the agent is a multi-threaded tokio process that must never fork: a thread that
//! `unshare`s or `setns`es ends when its work is done, so no runtime worker ever changes namespace.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, CloneFlags};

use super::NetworkError;

/// Makes `dir` a shared mount point, as iproute2 does for /run/netns. Containers get mount namespaces that
/// are copies of the agent's; with a shared (or, inside them, slave) mount, unmounting a pod's namespace
/// file here also unmounts the copies, so the namespace is really freed instead of lingering in every
/// mount namespace created while it existed.
pub fn prepare_dir(dir: &Path) -> Result<(), NetworkError> {
    fs::create_dir_all(dir).map_err(NetworkError::io("creating", dir))?;
    crate::util::mounts::make_rshared(dir).map_err(NetworkError::sys("making shared", dir))
}

/// Whether `path` is a network namespace mount (the file alone is left behind by a crash before the mount).
pub fn exists(path: &Path) -> Result<bool, NetworkError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(NetworkError::io("opening", path)(e)),
    };
    let stat =
        nix::sys::statfs::fstatfs(file.as_fd()).map_err(NetworkError::sys("statfs", path))?;
    Ok(stat.filesystem_type().0 == libc::NSFS_MAGIC)
}

/// Creates a new network namespace bound at `path`, unless one is already there.
pub(super) async fn ensure(path: &Path) -> Result<(), NetworkError> {
    ensure_namespace(path, CloneFlags::CLONE_NEWNET, || Ok(())).await
}

/// A kernel parameter to set in a namespace: its dotted name (`net.ipv4.tcp_syncookies`, where a dot
/// inside a part is written as `/`) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// `name` with its dots and slashes swapped: a dotted sysctl name as its path under /proc/sys, and a
/// slash-separated one in its dotted form.
pub fn swap_separators(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '.' => '/',
            '/' => '.',
            c => c,
        })
        .collect()
}

/// Writes `sysctls` under /proc/sys, where the calling thread's namespaces decide whose they are: for a
/// thread inside a pod's namespace.
pub fn set_sysctls(sysctls: &[Sysctl]) -> Result<(), NetworkError> {
    for sysctl in sysctls {
        let relative = swap_separators(&sysctl.name);
        let failed = |source| NetworkError::Sysctl {
            name: sysctl.name.clone(),
            value: sysctl.value.clone(),
            source,
        };
        let relative = Path::new(&relative);
        // Only a file under /proc/sys, and never a new one: the agent writes as the node's root.
        if !relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(failed(std::io::ErrorKind::InvalidInput.into()));
        }
        fs::OpenOptions::new()
            .write(true)
            .open(Path::new("/proc/sys").join(relative))
            .and_then(|mut file| std::io::Write::write_all(&mut file, sysctl.value.as_bytes()))
            .map_err(failed)?;
    }
    Ok(())
}

/// Sets the hostname of the calling thread's UTS namespace.
pub fn set_hostname(name: &str) -> Result<(), NetworkError> {
    nix::unistd::sethostname(name).map_err(|e| NetworkError::Hostname(name.to_string(), e))
}

/// Creates a new namespace of `kind` (CLONE_NEWNET, CLONE_NEWIPC or CLONE_NEWUTS) bound at `path`, unless
/// one is already there. `inside` runs in the new namespace before it is bound (a UTS namespace's
/// hostname, an IPC namespace's sysctls): when it fails, nothing is bound.
pub async fn ensure_namespace<F>(
    path: &Path,
    kind: CloneFlags,
    inside: F,
) -> Result<(), NetworkError>
where
    F: FnOnce() -> Result<(), NetworkError> + Send + 'static,
{
    if exists(path)? {
        return Ok(());
    }
    let proc_name = if kind == CloneFlags::CLONE_NEWIPC {
        "ipc"
    } else if kind == CloneFlags::CLONE_NEWUTS {
        "uts"
    } else {
        "net"
    };
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(NetworkError::io("creating", path))?;
    let target = path.to_path_buf();
    on_thread(path, move || {
        // Affects this thread only, which ends right after.
        unshare(kind).map_err(NetworkError::sys("unshare for", &target))?;
        inside()?;
        mount(
            Some(format!("/proc/thread-self/ns/{proc_name}").as_str()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(NetworkError::sys(
            "bind-mounting the new namespace on",
            &target,
        ))
    })
    .await
}

/// Unmounts and deletes the namespace file; a missing one is not an error. The namespace itself lives on
/// while processes are still in it.
pub fn remove(path: &Path) -> Result<(), NetworkError> {
    // MNT_DETACH: an open fd on the file (a concurrent setns) must not make removal fail.
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(NetworkError::sys("unmounting", path)(e)),
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(NetworkError::io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Runs `f` on a new thread that has joined the network namespace at `path`; sockets `f` creates (netlink
/// included) stay bound to that namespace after the thread is gone.
pub(super) async fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetworkError> + Send + 'static,
{
    let netns = fs::File::open(path).map_err(NetworkError::io("opening", path))?;
    let target = path.to_path_buf();
    on_thread(path, move || {
        setns(netns.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(NetworkError::sys("setns into", &target))?;
        drop(netns);
        f()
    })
    .await
}

/// An unconnected TCP socket of the network namespace at `path`, to reach what listens on that namespace's
/// own loopback (port-forward). A socket belongs to the namespace it was created in, so it is created on a
/// thread inside it and connected from anywhere.
pub async fn tcp_socket(path: &Path) -> Result<tokio::net::TcpSocket, NetworkError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let target = path.to_path_buf();
    let fd = run_in(path, move || {
        socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(NetworkError::sys("creating a socket in", &target))
    })
    .await?;
    Ok(tokio::net::TcpSocket::from_std_stream(
        std::net::TcpStream::from(fd),
    ))
}

/// unshare(2) with its flags zero-extended. The kernel reads them as an unsigned long, but glibc's
/// wrapper (which nix calls) takes an int and hands the register on as it is, and optimized code may leave
/// the upper half dirty: release builds got EINVAL for a plain CLONE_NEWUTS (strace showed
/// `CLONE_NEWUTS|0x27800000000`).
fn unshare(flags: CloneFlags) -> nix::Result<()> {
    let flags = flags.bits() as u32 as libc::c_ulong;
    // SAFETY: unshare takes no pointers; the flags are a plain integer.
    let result = unsafe { libc::syscall(libc::SYS_unshare, flags) };
    Errno::result(result).map(drop)
}

async fn on_thread<T, F>(path: &Path, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NetworkError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("orch-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(NetworkError::io("spawning a namespace thread for", path))?;
    rx.await
        .map_err(|_| NetworkError::ThreadPanicked(PathBuf::from(path)))?
}

/// Moves the calling thread (a test's own) into new namespaces of `flags` plus a mount namespace whose
/// mounts do not propagate to the host, so that what the test mounts and links stays out of the host and
/// ends with the thread.
#[cfg(test)]
pub(crate) fn enter_scratch_namespaces(flags: CloneFlags) {
    unshare(flags | CloneFlags::CLONE_NEWNS).unwrap_or_else(|e| {
        panic!(
            "unshare({flags:?} | CLONE_NEWNS) failed ({e}): these tests need root (CAP_SYS_ADMIN); run \
             `cargo test` as root"
        )
    });
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("making / private in the test's mount namespace");
}
