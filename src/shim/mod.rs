//! The shim: the one process per container that owns it, forked by the node's shim launcher
//! ([`launcher`]). It is the only caller of libcontainer's build/start (RUNTIME_NOTES.md: inside the
//! multi-threaded agent they race and deadlock), so it runs single-threaded with no async runtime. It
//! detaches from the launcher and the agent (setsid + fork), becomes the child subreaper so the
//! container's init is its child, starts the container with stdout/stderr on pipes (or on a terminal,
//! when config.json asks for one), tells the agent `started <pid>` (or `error <message>`) on its stdout,
//! then copies the container's output into a CRI-format log file, and to attach sessions, until the
//! init exits, and writes the exit record atomically into the container's records before deleting the
//! container. The agent may die and restart meanwhile: nothing here needs it.

pub mod attach;
pub mod exec;
pub mod launcher;
mod log;
pub mod pause;
mod workload;

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, setsid, ForkResult, Pid};
use serde::{Deserialize, Serialize};

pub use log::{rotated_parts, rotated_path, CriLogWriter, Stream};

/// The file in the container's records directory the shim writes the init's pid and start time to.
pub const PID_FILE: &str = "pid";
/// The file in the bundle the shim writes its own pid and start time to, first thing: a container whose
/// shim is gone will never start or record an exit.
pub const SHIM_FILE: &str = "shim";
/// The file in the container's records directory holding the [`ExitRecord`] once the container has
/// exited.
pub const EXIT_FILE: &str = "exit";
/// The file in the bundle holding the BPF program the agent compiled from config.json's seccomp profile,
/// which the container's init loads instead of compiling the profile itself.
pub const SECCOMP_PROGRAM_FILE: &str = "seccomp.bpf";
/// How long output is still drained after the init exited: the pid namespace is gone by then, but a
/// process outside it could hold a pipe (e.g. one the container passed on); never wait for it forever.
const DRAIN_AFTER_EXIT_MS: u16 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: &'static str,
        source: nix::Error,
    },
    #[error("{}", workload::failure_message(.0))]
    Container(#[from] libcontainer::error::LibcontainerError),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShimError {
    let context = context.into();
    move |source| ShimError::Io { context, source }
}

fn sys_err(context: &'static str) -> impl FnOnce(nix::Error) -> ShimError {
    move |source| ShimError::Sys { context, source }
}

/// How a container ended, as the shim observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal number for a signalled init, as containerd reports it.
    pub exit_code: i32,
    /// The container's cgroup recorded an OOM kill.
    pub oom_killed: bool,
    /// RFC 3339 times.
    pub started_at: String,
    pub finished_at: String,
    /// Why the process never ran, when starting it failed (kubelet's StartError).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

/// A process (the container's init, or its shim) by pid and start time in clock ticks since boot (field
/// 22 of /proc/<pid>/stat), which tells a reused pid from the original one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitProcess {
    pub pid: i32,
    pub start_ticks: u64,
    /// Seconds since the Unix epoch when the shim saw it start.
    pub started_at_unix: i64,
}

impl InitProcess {
    /// The same process is still alive (not just some process with its pid).
    pub fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of /proc/<pid>/stat, after the parenthesised command name (which may contain spaces).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); field 22 is the 20th from here.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// What the shim is told about its container: the launcher receives it from the agent ([`launcher`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimArgs {
    /// The container id (libcontainer's id, also the name of its bundle and records directories).
    pub id: String,
    /// The OCI bundle (config.json, rootfs/), where the shim also records itself: on tmpfs, like
    /// everything a reboot ends.
    pub bundle: PathBuf,
    /// The container's directory on disk, where the shim records the init's pid and its exit: what the
    /// agent reports about the container after a reboot.
    pub records: PathBuf,
    /// libcontainer's state root (on tmpfs: a reboot removes every container).
    pub state_root: PathBuf,
    /// The CRI-format log file for the container's stdout and stderr.
    pub log: PathBuf,
    /// Rotate the log file when it grows past this many bytes.
    pub log_max_bytes: u64,
    /// Log files kept, the current one included.
    pub log_max_files: u32,
    /// Serve attach sessions on this Unix socket while the container runs.
    pub attach_socket: Option<PathBuf>,
    /// Keep the container's stdin open for attach sessions (the container's `stdin: true`) instead of
    /// giving it /dev/null.
    pub stdin: bool,
    /// Close the container's stdin when the first attach session that wrote to it ends.
    pub stdin_once: bool,
}

/// The container's stdio as the shim holds it once the container started.
struct Stdio {
    /// What to copy into the log: stdout and stderr, or the terminal.
    outputs: [Option<(OwnedFd, Stream)>; 2],
    /// The shim's end of the container's stdin, when it is kept open.
    stdin: Option<OwnedFd>,
    /// The terminal's master end.
    terminal: Option<OwnedFd>,
}

/// Runs the shim. Returns the process exit code for the first (reporting) process; the detached shim
/// calls `exit` itself.
pub fn run(args: ShimArgs) -> i32 {
    // The agent reads our stdout until it sees the start report; our stderr is the shim's own log.
    if let Err(e) = setsid() {
        report(&format!("error setsid: {e}"));
        return 1;
    }
    // Fork so the launcher's child exits at once and the shim is reparented away from it: then the
    // launcher never waits for a container, and killing the agent's process group cannot reach it.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            report(&format!("error fork: {e}"));
            return 1;
        }
    }
    let code = match supervise(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shim {}: {e}", args.id);
            1
        }
    };
    std::process::exit(code)
}

/// One line to the agent on stdout; afterwards stdout points to /dev/null so that a gone agent can never
/// make a later write fail.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

fn supervise(args: &ShimArgs) -> Result<(), ShimError> {
    let me = std::process::id() as i32;
    let shim = InitProcess {
        pid: me,
        start_ticks: start_ticks(me).unwrap_or(0),
        started_at_unix: jiff::Timestamp::now().as_second(),
    };
    write_atomic(
        &args.bundle.join(SHIM_FILE),
        &serde_json::to_vec(&shim).expect("serialisable"),
        Durability::Unsynced,
    )?;
    nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("PR_SET_CHILD_SUBREAPER"))?;
    let BundleConfig { process, linux } = BundleConfig::read(&args.bundle);
    if let Some(profile) = linux.seccomp {
        register_seccomp_program(&args.bundle, profile);
    }
    let (started, stdio) = match start(args, process.terminal) {
        Ok(started) => started,
        Err(e) => {
            report(&format!("error {}", one_line(&e.to_string())));
            return Err(e);
        }
    };
    let init = InitProcess {
        pid: started.as_raw(),
        start_ticks: start_ticks(started.as_raw()).unwrap_or(0),
        started_at_unix: jiff::Timestamp::now().as_second(),
    };
    let started_at = jiff::Timestamp::now().to_string();
    write_atomic(
        &args.records.join(PID_FILE),
        &serde_json::to_vec(&init).expect("serialisable"),
        Durability::Unsynced,
    )?;
    report(&format!("started {}", init.pid));

    let mut log = CriLogWriter::open(&args.log, args.log_max_bytes, args.log_max_files)?;
    let stdin = stdio.stdin.map(|fd| attach::Stdin {
        fd,
        once: args.stdin_once,
    });
    let mut hub = match &args.attach_socket {
        Some(path) => Some(attach::Hub::listen(path, stdin, stdio.terminal)?),
        None => None,
    };
    // Starting the container (config.json, libcontainer's state) took a few hundred KB that the allocator
    // would otherwise keep, dirty and private, for as long as the container runs: once per container.
    // SAFETY: mi_collect only returns free memory to the OS.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let status = copy_output_until_exit(started, stdio.outputs, hub.as_mut(), &mut log)?;
    drop(hub);
    let exit_code = match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        _ => 255,
    };
    let oom_killed = linux.cgroups_path.is_some_and(|p| oom_kills(&p) > 0);
    let record = ExitRecord {
        exit_code,
        oom_killed,
        started_at,
        finished_at: jiff::Timestamp::now().to_string(),
        start_error: None,
    };
    write_atomic(
        &args.records.join(EXIT_FILE),
        &serde_json::to_vec(&record).expect("serialisable"),
        Durability::Synced,
    )?;
    let mut container = Container::load(args.state_root.join(&args.id))?;
    container.delete(true)?;
    Ok(())
}

/// Starts the container on pipes, or on a terminal when its config.json asks for one.
fn start(args: &ShimArgs, terminal: bool) -> Result<(Pid, Stdio), ShimError> {
    if terminal {
        return start_on_terminal(args);
    }
    let (out_r, out_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let (container_stdin, stdin) = if args.stdin {
        let (r, w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
        (r, Some(w))
    } else {
        let devnull = File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
        (OwnedFd::from(devnull), None)
    };
    let builder = builder(args)?
        .with_stdin(container_stdin)
        .with_stdout(out_w)
        .with_stderr(err_w);
    let pid = start_container(args, builder)?;
    let stdio = Stdio {
        outputs: [Some((out_r, Stream::Stdout)), Some((err_r, Stream::Stderr))],
        stdin,
        terminal: None,
    };
    Ok((pid, stdio))
}

/// libcontainer creates the terminal inside the container (so it is the init's controlling terminal) and
/// sends its master end over a console socket; what the terminal shows is the container's stdout.
fn start_on_terminal(args: &ShimArgs) -> Result<(Pid, Stdio), ShimError> {
    let socket = args.state_root.join(format!("{}.console", args.id));
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(io_err(format!("listening on {}", socket.display())))?;
    let started = builder(args)
        .map(|builder| builder.with_console_socket(Some(&socket)))
        .and_then(|builder| start_container(args, builder))
        .and_then(|pid| match receive_terminal(&listener) {
            Ok(master) => Ok((pid, master)),
            Err(e) => {
                // A container whose terminal nobody holds is of no use: do not leave it running.
                if let Ok(mut container) = Container::load(args.state_root.join(&args.id)) {
                    let _ = container.delete(true);
                }
                Err(e)
            }
        });
    let _ = fs::remove_file(&socket);
    let (pid, master) = started?;
    let reader = master.try_clone().map_err(io_err("dup of the terminal"))?;
    let stdin = if args.stdin {
        Some(master.try_clone().map_err(io_err("dup of the terminal"))?)
    } else {
        None
    };
    let stdio = Stdio {
        outputs: [Some((reader, Stream::Stdout)), None],
        stdin,
        terminal: Some(master),
    };
    Ok((pid, stdio))
}

fn builder(args: &ShimArgs) -> Result<ContainerBuilder, ShimError> {
    Ok(
        ContainerBuilder::new(args.id.clone(), SyscallType::default())
            .with_executor(workload::DefaultSignalsExecutor)
            .with_root_path(&args.state_root)?
            .validate_id()?,
    )
}

/// What the shim needs from the container's config.json. Only these fields are built; serde skips the rest
/// unparsed, which libcontainer reads in full itself.
#[derive(Default, Deserialize)]
#[serde(default)]
struct BundleConfig {
    process: BundleProcess,
    linux: BundleLinux,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct BundleProcess {
    /// The container runs on a terminal.
    terminal: bool,
}

#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct BundleLinux {
    /// Where the kernel counts OOM kills.
    cgroups_path: Option<String>,
    /// The profile the container's init loads.
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl BundleConfig {
    fn read(bundle: &Path) -> BundleConfig {
        fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }
}

/// Hands libcontainer the program the agent compiled from `profile` (the bundle's
/// [`SECCOMP_PROGRAM_FILE`]), so that the container's init loads it rather than compiling the profile
/// again; without the file, libcontainer compiles it as usual.
pub fn register_seccomp_program(bundle: &Path, profile: oci_spec::runtime::LinuxSeccomp) {
    if let Ok(program) = fs::read(bundle.join(SECCOMP_PROGRAM_FILE)) {
        libcontainer::seccomp::register_precompiled(profile, program);
    }
}

/// The terminal master libcontainer sent to the console socket.
fn receive_terminal(listener: &UnixListener) -> Result<OwnedFd, ShimError> {
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(30_000u16)).map_err(sys_err("poll"))?;
    if ready == 0 {
        return Err(io_err("receiving the terminal")(std::io::Error::other(
            "the container sent no terminal within 30s",
        )));
    }
    let (stream, _) = listener
        .accept()
        .map_err(io_err("accepting on the console socket"))?;
    let fds = receive_fds(stream.as_raw_fd()).map_err(io_err("receiving the terminal"))?;
    fds.into_iter().next().ok_or_else(|| {
        io_err("receiving the terminal")(std::io::Error::other("no descriptor sent"))
    })
}

/// The descriptors sent with SCM_RIGHTS in one message on the Unix socket `socket` (libcontainer sends the
/// terminal's name as the payload).
pub fn receive_fds(socket: RawFd) -> std::io::Result<Vec<OwnedFd>> {
    let mut name = [0u8; 4096];
    receive_with_fds(socket, &mut name).map(|(_, fds)| fds)
}

/// One message on the Unix socket `socket`: its payload, written into `payload`, and the descriptors sent
/// with it (at most two). A payload of 0 bytes on a SOCK_SEQPACKET socket means the peer closed its end.
pub fn receive_with_fds(
    socket: RawFd,
    payload: &mut [u8],
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(payload)];
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let msg = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let fds: Vec<OwnedFd> = msg
        .cmsgs()
        .map_err(std::io::Error::from)?
        .filter_map(|c| match c {
            ControlMessageOwned::ScmRights(fds) => Some(fds),
            _ => None,
        })
        .flatten()
        // SAFETY: the kernel just installed these descriptors in this process for us.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a message or its descriptors did not fit",
        ));
    }
    Ok((msg.bytes, fds))
}

fn start_container(args: &ShimArgs, builder: ContainerBuilder) -> Result<Pid, ShimError> {
    let mut container = builder
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()?;
    if let Err(e) = container.start() {
        // A built but unstarted init blocks forever: never leave one behind.
        let _ = container.delete(true);
        return Err(e.into());
    }
    container.pid().ok_or_else(|| ShimError::Io {
        context: "container started without a pid".into(),
        source: std::io::Error::other("no pid"),
    })
}

/// Copies the container's output into the log (and to attach sessions, while serving them) until the init
/// has exited and its output is closed (or [`DRAIN_AFTER_EXIT_MS`] passed), reaping the init and any
/// orphan reparented to the shim.
fn copy_output_until_exit(
    init: Pid,
    mut pipes: [Option<(OwnedFd, Stream)>; 2],
    mut hub: Option<&mut attach::Hub>,
    log: &mut CriLogWriter,
) -> Result<WaitStatus, ShimError> {
    let pidfd = pidfd_open(init.as_raw()).map_err(io_err("pidfd_open"))?;
    let mut exit: Option<WaitStatus> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if exit.is_some() && pipes.iter().all(Option::is_none) {
            break;
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::with_capacity(3);
        for (i, p) in pipes.iter().enumerate() {
            if let Some((fd, _)) = p {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if exit.is_none() {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        let hub_from = fds.len();
        if let Some(hub) = hub.as_deref_mut() {
            fds.extend(
                hub.poll_fds()
                    .into_iter()
                    .map(|(fd, flags)| PollFd::new(fd, flags)),
            );
        }
        let timeout = if exit.is_some() {
            PollTimeout::from(DRAIN_AFTER_EXIT_MS)
        } else {
            PollTimeout::NONE
        };
        let ready = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("poll")(e)),
        };
        if ready == 0 {
            break; // drained long enough after exit
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if let Some(hub) = hub.as_deref_mut() {
            hub.ready(&revents[hub_from..]);
        }
        for (slot, i) in which.iter().enumerate() {
            if revents[slot].is_empty() {
                continue;
            }
            let (fd, stream) = pipes[*i].as_ref().expect("polled pipe");
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                // A terminal whose processes are all gone reads EIO.
                Ok(0) | Err(nix::errno::Errno::EIO) => {
                    log.finish(*stream)?;
                    pipes[*i] = None;
                }
                Ok(n) => {
                    log.write(*stream, &buf[..n])?;
                    if let Some(hub) = hub.as_deref_mut() {
                        hub.broadcast(*stream, &buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(sys_err("reading container output")(e)),
            }
        }
        if exit.is_none() && hub_from > which.len() && !revents[which.len()].is_empty() {
            exit = Some(reap(init)?);
        }
    }
    for (_, stream) in pipes.iter().flatten() {
        log.finish(*stream)?;
    }
    // Orphans the subreaper inherited.
    while let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) =
        waitpid(None, Some(WaitPidFlag::WNOHANG))
    {}
    Ok(exit.expect("loop ends only after the init exited"))
}

fn reap(init: Pid) -> Result<WaitStatus, ShimError> {
    loop {
        match waitpid(init, None) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Ok(status),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys_err("waitpid")(e)),
        }
    }
}

/// A pidfd: pollable, readable once the process exited, and never confused with a later process that
/// reuses the pid.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// OOM kills the kernel counted in the cgroup: `oom_kill` in memory.events (v2) or memory.oom_control (v1).
pub fn oom_kills(cgroup: &str) -> u64 {
    let relative = cgroup.trim_start_matches('/');
    let candidates = [
        format!("/sys/fs/cgroup/{relative}/memory.events"),
        format!("/sys/fs/cgroup/memory/{relative}/memory.oom_control"),
    ];
    candidates
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .filter_map(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse().ok())
            })
        })
        .max()
        .unwrap_or(0)
}

/// Whether a record written by [`write_atomic`] must survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Flushed to disk before it replaces the old file: an exit code, a container's metadata.
    Synced,
    /// Only all or nothing: records of running processes, which a power loss ends anyway. Not waiting for
    /// the disk keeps them off the path of every container start.
    Unsynced,
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see all or nothing.
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<(), ShimError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    file.write_all(bytes)
        .and_then(|()| match durability {
            Durability::Synced => file.sync_all(),
            Durability::Unsynced => Ok(()),
        })
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_config_takes_terminal_cgroup_and_seccomp_from_config_json() {
        let bundle = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": true, "args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "cgroupsPath": "/orch/pod1/c1",
                "namespaces": [{"type": "mount"}],
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                            "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}]},
            },
        });
        fs::write(
            bundle.path().join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
        let BundleConfig { process, linux } = BundleConfig::read(bundle.path());
        assert!(process.terminal);
        assert_eq!(linux.cgroups_path.as_deref(), Some("/orch/pod1/c1"));
        let seccomp = linux.seccomp.expect("the seccomp profile");
        assert_eq!(
            seccomp.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        assert_eq!(
            seccomp.syscalls().as_ref().unwrap()[0].names(),
            &["read".to_string(), "write".to_string()]
        );

        let BundleConfig { process, linux } = BundleConfig::read(&bundle.path().join("gone"));
        assert!(!process.terminal && linux.cgroups_path.is_none() && linux.seccomp.is_none());
    }

    #[test]
    fn start_ticks_reads_field_22_of_our_own_stat() {
        let ours = start_ticks(std::process::id() as i32).expect("own stat");
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        assert_eq!(fields[19].parse::<u64>().unwrap(), ours);
        assert!(InitProcess {
            pid: std::process::id() as i32,
            start_ticks: ours,
            started_at_unix: 0
        }
        .is_alive());
        assert!(!InitProcess {
            pid: std::process::id() as i32,
            start_ticks: ours + 1,
            started_at_unix: 0
        }
        .is_alive());
    }

    #[test]
    fn write_atomic_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        write_atomic(&path, b"first version, longer", Durability::Synced).unwrap();
        write_atomic(&path, b"second", Durability::Unsynced).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }
}
