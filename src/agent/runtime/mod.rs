//! The container runtime of one node. A container is two directories: its records on disk under
//! `<data-dir>/agent/containers/<id>` (the agent's `meta.json`, the shim's `pid` and `exit` files, the
//! container's `termination-log`, and the overlay's `upper/` and `work/`), and its OCI bundle on the run
//! dir's tmpfs under `<run-dir>/bundles/<id>` (config.json, a link to the node's copy of the seccomp
//! program, the overlay `rootfs/` mount point over the image's layers and the node's init layer, the
//! shim's own record and log) — as containerd keeps
//! bundles in /run: a reboot ends every container, and the files only a running container needs cost no
//! disk writes. Each container is run by its own shim process (src/shim), forked by the node's shim
//! launcher. The agent never calls libcontainer's build/start itself; it has shims started, reads their
//! files and signals container inits. Because the files and the shims outlive the agent, a restarted
//! agent finds every container as it left it:
//! [`Runtime::list`] and [`Runtime::state`] are all it needs.
//!
//! The metadata of every container is read from disk once, when the runtime is opened, and kept in memory
//! beside the files: a pod's sync must not read every container of the node. Clones share that index, so
//! one node opens its runtime once.

mod exec;
pub mod launcher;
mod mount_targets;
mod propagation;
pub mod seccomp;
pub mod spec;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

pub use exec::{ExecProcess, ExecStreams};
pub use launcher::ShimLauncher;
pub use spec::{
    BindAccess, ContainerConfig, MountKind, MountPropagation, MountSpec, Resources, Seccomp,
    SharedNamespace,
};

use crate::shim::{self, Durability, ExitRecord, InitProcess, EXIT_FILE, PID_FILE, SHIM_FILE};

const META_FILE: &str = "meta.json";
/// The node's init layer, below every image in every container's root (see [`make_init_layer`]).
const INIT_LAYER: &str = ".init-layer";
/// What every container's spec mounts over, as empty files and directories in the init layer.
const INIT_LAYER_DIRECTORIES: [&str; 4] = ["dev", "proc", "sys", "etc"];
const INIT_LAYER_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];
const SHIM_LOG: &str = "shim.log";
const TERMINATION_LOG: &str = "termination-log";
/// How long a shim may take to report that its container started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("cannot load seccomp profile {path:?}: {message}")]
    SeccompProfile { path: PathBuf, message: String },
    /// containerd's words for a mount asking for propagation the node's mount of its source lacks.
    #[error(
        "path {path:?} is mounted on {mount_point:?} but it is not a {} mount",
        .propagation.node_mount_needed()
    )]
    Propagation {
        path: PathBuf,
        mount_point: PathBuf,
        propagation: MountPropagation,
    },
    #[error("container {0} not found")]
    NotFound(String),
    #[error("starting container {id}: {message}")]
    Start { id: String, message: String },
    #[error("mounting the root filesystem of {id}: {source}")]
    Mount { id: String, source: nix::Error },
    #[error("signalling container {id}: {source}")]
    Signal { id: String, source: nix::Error },
    #[error("container {0} is still running")]
    StillRunning(String),
    #[error(transparent)]
    Shim(#[from] shim::ShimError),
    #[error("libcontainer: {0}")]
    Container(#[from] libcontainer::error::LibcontainerError),
}

fn io_err(
    context: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io {
        context,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `<data-dir>/agent/containers`.
    pub containers_dir: PathBuf,
    /// libcontainer's state root, on tmpfs (`/run/orch/containers`): a reboot ends every container.
    pub state_root: PathBuf,
    /// The containers' OCI bundles, on tmpfs (`/run/orch/bundles`).
    pub bundles_dir: PathBuf,
    /// The `orch` executable the shim launcher (`orch shim-launcher`) and exec sessions (`orch shim-exec`)
    /// run as.
    pub shim_executable: PathBuf,
    /// Containers' logs rotate past this size, keeping this many files (kubelet's containerLogMaxSize
    /// and containerLogMaxFiles).
    pub log_max_bytes: u64,
    pub log_max_files: u32,
}

/// What the agent records about a container beside its bundle, so that a restarted agent knows which pod
/// and container spec it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container: String,
    /// Which run of this container of the pod it is (0 first): the restart count once it ran.
    pub attempt: u32,
    pub init_container: bool,
    pub image: String,
    pub image_id: String,
    pub image_ref: String,
    pub log_path: PathBuf,
    /// A symbolic link to the log, made and removed with the container (kubelet's
    /// `/var/log/containers/…`).
    #[serde(default)]
    pub log_link: Option<PathBuf>,
    pub created_at: String,
    /// A hash of the container's spec, to notice a changed spec (e.g. a new image) of a running container.
    pub spec_hash: String,
    /// The container's stdin stays open for attach sessions (`stdin: true`).
    #[serde(default)]
    pub stdin: bool,
    /// ... and is closed when the first attach session that wrote to it ends (`stdinOnce: true`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Who the container's first process is (None: recorded by an agent that did not say).
    #[serde(default)]
    pub user: Option<ProcessUser>,
    /// The cgroup limits the container has now: those it was created with, or a resize's since (None:
    /// recorded by an agent that did not say).
    #[serde(default)]
    pub resources: Option<Resources>,
}

/// The identity a container's first process starts with: kubelet's `containerStatuses[].user.linux`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// The bundle exists but no shim has reported a process yet.
    Created,
    Running(InitProcess),
    Exited(ExitRecord),
}

#[derive(Clone)]
pub struct Runtime {
    config: RuntimeConfig,
    /// The metadata of every container with a bundle, by id.
    index: Arc<Mutex<HashMap<String, ContainerMeta>>>,
    /// The files of the seccomp programs compiled from the profiles containers were given, by the
    /// profile's JSON: a node's containers share a few profiles, and compiling one takes milliseconds.
    seccomp_programs: Arc<Mutex<HashMap<String, PathBuf>>>,
    /// Forks the containers' shims.
    launcher: Arc<ShimLauncher>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        for dir in [
            &config.containers_dir,
            &config.state_root,
            &config.bundles_dir,
        ] {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        let dir = &config.containers_dir;
        let mut index = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io_err("listing", dir))? {
            let entry = entry.map_err(io_err("listing", dir))?;
            if let Ok(Some(meta)) = read_json::<ContainerMeta>(&entry.path().join(META_FILE)) {
                index.insert(meta.id.clone(), meta);
            }
        }
        Ok(Runtime {
            launcher: Arc::new(ShimLauncher::new(config.shim_executable.clone())),
            config,
            index: Arc::new(Mutex::new(index)),
            seccomp_programs: Default::default(),
        })
    }

    fn indexed(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerMeta>> {
        self.index.lock().expect("container index lock")
    }

    /// Where the container's records and overlay layers live.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.config.containers_dir.join(id)
    }

    /// Where the container's OCI bundle lives.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.config.bundles_dir.join(id)
    }

    /// Where the container's shim serves attach sessions while the container runs (on tmpfs, and short
    /// enough for a socket path).
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.config.state_root.join(format!("{id}.attach"))
    }

    /// Writes a new container's metadata and bundle: an overlay root over `layers` (lowest first), with
    /// the targets of the container's mounts made in it, and config.json. Nothing runs yet.
    pub fn create(
        &self,
        meta: &ContainerMeta,
        config: &ContainerConfig,
        layers: &[PathBuf],
    ) -> Result<(), RuntimeError> {
        let dir = self.dir(&meta.id);
        let bundle = self.bundle(&meta.id);
        let termination_log = dir.join(TERMINATION_LOG);
        let mut config = std::borrow::Cow::Borrowed(config);
        if let Some(destination) = config.termination_log.clone() {
            config.to_mut().mounts.push(MountSpec {
                destination,
                kind: MountKind::Bind {
                    source: termination_log.clone(),
                    access: BindAccess::ReadWrite,
                    propagation: MountPropagation::Private,
                },
            });
        }
        propagation::check(&config.mounts)?;
        let spec = spec::build(&config)?;
        for path in [dir.join("upper"), dir.join("work"), bundle.join("rootfs")] {
            fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        }
        if config.termination_log.is_some() {
            // Any user of the container may write its message; the umask would take that away.
            fs::write(&termination_log, b"")
                .and_then(|()| {
                    fs::set_permissions(&termination_log, fs::Permissions::from_mode(0o666))
                })
                .map_err(io_err("creating", &termination_log))?;
        }
        shim::write_atomic(
            &dir.join(META_FILE),
            &serde_json::to_vec_pretty(meta).expect("serialisable"),
            Durability::Synced,
        )?;
        self.indexed().insert(meta.id.clone(), meta.clone());
        // As kubelet treats it: a convenience for log collectors, which no container waits for.
        if let Some(link) = &meta.log_link {
            if let Err(e) = link_log(&meta.log_path, link) {
                tracing::warn!(container = %meta.id, error = %e, "linking the container's log");
            }
        }
        mount_overlay(&meta.id, &dir, &bundle, layers)?;
        mount_targets::prepare(
            &bundle.join("rootfs"),
            spec.mounts().as_deref().unwrap_or_default(),
            spec.process().as_ref().map_or(Path::new("/"), |p| p.cwd()),
        );
        let config_path = bundle.join("config.json");
        spec.save(&config_path)
            .map_err(|e| RuntimeError::Spec(format!("writing {}: {e}", config_path.display())))?;
        if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            // A link to the node's copy of the program: its 10 KB stay in the tmpfs's memory once.
            let program = self.seccomp_program(profile)?;
            let path = bundle.join(shim::SECCOMP_PROGRAM_FILE);
            fs::hard_link(&program, &path).map_err(io_err("linking", &path))?;
        }
        Ok(())
    }

    /// The file of the BPF program `profile` compiles to (`<bundles-dir>/.seccomp-<hash>.bpf`), compiled
    /// and written once per profile and agent.
    fn seccomp_program(&self, profile: &LinuxSeccomp) -> Result<PathBuf, RuntimeError> {
        use sha2::Digest;
        let key = serde_json::to_string(profile).expect("a profile serializes");
        let mut programs = self.seccomp_programs.lock().expect("seccomp programs lock");
        // Gone only if the run dir was cleared under a running agent; it is written again then.
        if let Some(path) = programs.get(&key).filter(|path| path.exists()) {
            return Ok(path.clone());
        }
        let program = libcontainer::seccomp::compile_seccomp(profile)
            .map_err(|e| RuntimeError::Spec(format!("compiling the seccomp profile: {e}")))?;
        let hash = hex::encode(&sha2::Sha256::digest(&program)[..8]);
        let path = self.config.bundles_dir.join(format!(".seccomp-{hash}.bpf"));
        // Through a rename, so that no bundle ever links a program cut short; on the run dir's tmpfs,
        // which a reboot clears, there is nothing to flush.
        shim::write_atomic(&path, &program, Durability::Unsynced)?;
        programs.insert(key, path.clone());
        Ok(path)
    }

    /// The file the container's termination message is written to (see
    /// [`ContainerConfig::termination_log`]); it goes with the container.
    pub fn termination_log(&self, id: &str) -> PathBuf {
        self.dir(id).join(TERMINATION_LOG)
    }

    /// Starts the container's shim and waits for it to report the container's process.
    pub async fn start(&self, id: &str) -> Result<InitProcess, RuntimeError> {
        let (dir, bundle) = (self.dir(id), self.bundle(id));
        let meta = self.meta(id)?;
        let shim_log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(bundle.join(SHIM_LOG))
            .map_err(io_err("opening", bundle.join(SHIM_LOG)))?;
        let (report_w, report) =
            tokio::net::unix::pipe::pipe().map_err(io_err("creating", "a pipe"))?;
        let report_w = report_w
            .into_blocking_fd()
            .map_err(io_err("creating", "a pipe"))?;
        let args = shim::ShimArgs {
            id: id.to_string(),
            bundle: bundle.clone(),
            records: dir.clone(),
            state_root: self.config.state_root.clone(),
            log: meta.log_path.clone(),
            log_max_bytes: self.config.log_max_bytes,
            log_max_files: self.config.log_max_files,
            attach_socket: Some(self.attach_socket(id)),
            stdin: meta.stdin,
            stdin_once: meta.stdin_once,
        };
        self.launcher.launch(&args, &report_w, &shim_log)?;
        // The write end is the launcher's and then the shim's alone now: the shim's report, or the end of
        // both, ends the read.
        drop((report_w, shim_log));
        let mut line = String::new();
        let read =
            tokio::time::timeout(START_TIMEOUT, BufReader::new(report).read_line(&mut line)).await;
        let start_error = |message: String| RuntimeError::Start {
            id: id.to_string(),
            message,
        };
        match read {
            Err(_) => return Err(start_error("the shim did not report within 60s".into())),
            Ok(Err(e)) => return Err(start_error(format!("reading the shim's report: {e}"))),
            Ok(Ok(_)) => {}
        }
        let line = line.trim();
        if let Some(message) = line.strip_prefix("error ") {
            return Err(start_error(message.to_string()));
        }
        if !line.starts_with("started ") {
            let log = fs::read_to_string(bundle.join(SHIM_LOG)).unwrap_or_default();
            return Err(start_error(format!(
                "the shim exited without a report: {}",
                log.lines().last().unwrap_or("no output")
            )));
        }
        read_json::<InitProcess>(&dir.join(PID_FILE))?
            .ok_or_else(|| start_error("the shim reported no pid file".into()))
    }

    /// Records the cgroup limits a resize gave the container (CRI's UpdateContainerResources keeps them
    /// in the container's spec), or the spec hash an older agent's record is known by under this one's.
    pub fn update_meta(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerMeta),
    ) -> Result<(), RuntimeError> {
        let mut meta = self.meta(id)?;
        change(&mut meta);
        shim::write_atomic(
            &self.dir(id).join(META_FILE),
            &serde_json::to_vec_pretty(&meta).expect("serialisable"),
            Durability::Synced,
        )?;
        self.indexed().insert(id.to_string(), meta);
        Ok(())
    }

    pub fn meta(&self, id: &str) -> Result<ContainerMeta, RuntimeError> {
        self.indexed()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.into()))
    }

    /// Every container with a bundle, in no particular order.
    pub fn list(&self) -> Vec<ContainerMeta> {
        self.indexed().values().cloned().collect()
    }

    /// The containers of one pod, in no particular order.
    pub fn list_pod(&self, pod_uid: &str) -> Vec<ContainerMeta> {
        self.indexed()
            .values()
            .filter(|m| m.pod_uid == pod_uid)
            .cloned()
            .collect()
    }

    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(RuntimeError::NotFound(id.into()));
        }
        if let Some(exit) = read_json::<ExitRecord>(&dir.join(EXIT_FILE))? {
            return Ok(ContainerState::Exited(exit));
        }
        match read_unflushed::<InitProcess>(&dir.join(PID_FILE))? {
            None => Ok(ContainerState::Created),
            Some(init) if init.is_alive() => Ok(ContainerState::Running(init)),
            // The init is gone and its shim is draining the last output before it records the exit.
            Some(init) if self.shim_alive(id) => Ok(ContainerState::Running(init)),
            Some(init) => {
                // The shim may have recorded the exit just before it ended.
                if let Some(exit) = read_json::<ExitRecord>(&dir.join(EXIT_FILE))? {
                    return Ok(ContainerState::Exited(exit));
                }
                // A shim that died with its container leaves no record: report what containerd does
                // for an unknown exit.
                Ok(ContainerState::Exited(ExitRecord {
                    exit_code: 255,
                    oom_killed: false,
                    started_at: jiff::Timestamp::from_second(init.started_at_unix)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    finished_at: jiff::Timestamp::now().to_string(),
                    start_error: None,
                }))
            }
        }
    }

    /// Sends `signal` to the container's init; a container that is not running is left alone.
    pub fn signal(&self, id: &str, signal: nix::sys::signal::Signal) -> Result<(), RuntimeError> {
        if let ContainerState::Running(init) = self.state(id)? {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(init.pid), signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(source) => {
                    return Err(RuntimeError::Signal {
                        id: id.into(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Resolves once the container's init has exited and its exit record is written.
    pub async fn wait(&self, id: &str) -> Result<ExitRecord, RuntimeError> {
        loop {
            match self.state(id)? {
                ContainerState::Exited(exit) => return Ok(exit),
                ContainerState::Running(init) => {
                    if let Ok(fd) = shim::pidfd_open(init.pid) {
                        // SAFETY: the AsyncFd owns the OwnedFd, which stays open until it is dropped.
                        let registered = unsafe {
                            tokio::io::unix::AsyncFd::register_with_interest(
                                fd,
                                tokio::io::Interest::READABLE,
                            )
                        };
                        if let Ok(async_fd) = registered {
                            let _ = async_fd.readable().await;
                        }
                    }
                    // The shim writes the record after the last output is drained: usually within a
                    // millisecond, so the first looks come quickly.
                    let mut pause = Duration::from_millis(1);
                    let deadline = std::time::Instant::now() + Duration::from_secs(2);
                    while !self.dir(id).join(EXIT_FILE).exists()
                        && std::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(50));
                    }
                }
                ContainerState::Created => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`: the init is pid 1 of the container's pid namespace, so its
    /// death takes every other process of the container with it.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ExitRecord, RuntimeError> {
        if let ContainerState::Exited(exit) = self.state(id)? {
            return Ok(exit);
        }
        self.signal(id, nix::sys::signal::Signal::SIGTERM)?;
        if let Ok(result) = tokio::time::timeout(grace, self.wait(id)).await {
            return result;
        }
        self.signal(id, nix::sys::signal::Signal::SIGKILL)?;
        self.wait(id).await
    }

    /// Removes a container that is not running: unmounts its root, deletes what libcontainer left (a
    /// container stuck in `created` whose shim died), the bundle, the records and, as kubelet removes a
    /// container's log with it, the log, its rotated parts and its link.
    pub fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if dir.exists() {
            if let ContainerState::Running(_) = self.state(id)? {
                return Err(RuntimeError::StillRunning(id.into()));
            }
        }
        self.discard_bundle(id)?;
        if let Ok(meta) = self.meta(id) {
            remove_log(&meta);
        }
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("removing", &dir)(e))
            }
            _ => {}
        }
        self.indexed().remove(id);
        Ok(())
    }

    /// Records that the container's process could not be started, as an exit with containerd's code for
    /// it (128), so that the pod's restart policy applies as to any other exit. What the attempt left
    /// (libcontainer's state, the root mount, the bundle) goes; the records and the log stay with the run.
    pub fn record_start_failure(&self, id: &str, message: &str) -> Result<(), RuntimeError> {
        // A shim that did not report in time may still start the container: it goes first, so that
        // what it built is deleted below rather than left running beside the next attempt.
        if let Ok(Some(shim)) = read_unflushed::<InitProcess>(&self.bundle(id).join(SHIM_FILE)) {
            if shim.is_alive() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(shim.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.discard_bundle(id)?;
        // containerd makes a container's log when it creates the container: a run that never started
        // has an empty one, which `kubectl logs --previous` shows as such.
        if let Ok(meta) = self.meta(id) {
            if let Some(dir) = meta.log_path.parent() {
                let _ = fs::create_dir_all(dir);
            }
            let _ = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&meta.log_path);
        }
        let now = jiff::Timestamp::now().to_string();
        let record = ExitRecord {
            exit_code: 128,
            oom_killed: false,
            started_at: now.clone(),
            finished_at: now,
            start_error: Some(message.to_string()),
        };
        shim::write_atomic(
            &self.dir(id).join(EXIT_FILE),
            &serde_json::to_vec(&record).expect("serialisable"),
            Durability::Synced,
        )?;
        Ok(())
    }

    /// Deletes what a container's start made besides its records: libcontainer's state (when no live
    /// shim is deleting it), the root mount and the bundle.
    fn discard_bundle(&self, id: &str) -> Result<(), RuntimeError> {
        let bundle = self.bundle(id);
        let state = self.config.state_root.join(id);
        // A live shim has recorded the exit and is deleting the container itself; a dead one left it.
        if state.exists() && !self.shim_alive(id) {
            // Only a state file means there is a container to delete; without one the shim already did.
            let loaded = state
                .join("state.json")
                .exists()
                .then(|| libcontainer::container::Container::load(state.clone()));
            if let Some(Ok(mut leftover)) = loaded {
                let _ = leftover.delete(true);
            }
            let _ = fs::remove_dir_all(&state);
        }
        let rootfs = bundle.join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(source) => {
                return Err(RuntimeError::Mount {
                    id: id.into(),
                    source,
                })
            }
        }
        match fs::remove_dir_all(&bundle) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err("removing", &bundle)(e))
            }
            _ => Ok(()),
        }
    }

    /// Whether the container's shim is still running.
    fn shim_alive(&self, id: &str) -> bool {
        read_unflushed::<InitProcess>(&self.bundle(id).join(SHIM_FILE))
            .ok()
            .flatten()
            .is_some_and(|shim| shim.is_alive())
    }

    /// Whether a container that shows as `Created` has no shim working on it any more: it will never start
    /// and must be removed. Only meaningful when this agent is not starting it itself (after a restart).
    pub fn is_abandoned(&self, id: &str) -> bool {
        !self.shim_alive(id)
    }
}

/// `link` pointing at `log` (which the shim makes later), replacing whatever a crash left there.
fn link_log(log: &Path, link: &Path) -> Result<(), RuntimeError> {
    if let Some(dir) = link.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    match fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_err("replacing", link)(e))
        }
        _ => {}
    }
    std::os::unix::fs::symlink(log, link).map_err(io_err("linking", link))
}

/// Deletes a container's log, its rotated parts and its link (only while the link still points at this
/// log: a name cut to 255 bytes can be another run's). What cannot be deleted is only a warning, so
/// that it never keeps the container itself.
fn remove_log(meta: &ContainerMeta) {
    let link = meta
        .log_link
        .as_ref()
        .filter(|link| fs::read_link(link).is_ok_and(|target| target == meta.log_path));
    let parts = shim::rotated_parts(&meta.log_path);
    for file in parts.iter().chain([&meta.log_path]).chain(link) {
        if let Err(e) = fs::remove_file(file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(container = %meta.id, file = %file.display(), error = %e, "removing a log");
            }
        }
    }
}

/// Mounts the container's root on the bundle's `rootfs/`: `layers` under the upper and work directories
/// in `dir`.
fn mount_overlay(
    id: &str,
    dir: &Path,
    bundle: &Path,
    layers: &[PathBuf],
) -> Result<(), RuntimeError> {
    let rootfs = bundle.join("rootfs");
    if is_mount_point(&rootfs) {
        return Ok(());
    }
    let init_layer = bundle.with_file_name(INIT_LAYER);
    // Made on first use, and again if the run dir was cleared under a running agent.
    if !init_layer.exists() {
        make_init_layer(&init_layer)?;
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .chain([&init_layer])
        .map(|p| p.display().to_string())
        .collect();
    let lower = lower.join(":");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        dir.join("upper").display(),
        dir.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| RuntimeError::Mount {
        id: id.into(),
        source,
    })
}

/// Makes the node's init layer where it is missing: the lowest layer of every container's root, with empty
/// mount points for what every container mounts (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`,
/// `/dev`, `/proc`, `/sys`), as Docker's init layer holds them. An image that has them hides them; one
/// that lacks them (busybox has no /etc/hosts) would otherwise have them made in each container's upper
/// directory: new inodes, and a copy-up of /etc, on the data dir's disk for every container started.
/// It lives on the run dir's tmpfs and is only ever added to, never changed under a mounted root.
fn make_init_layer(layer: &Path) -> Result<(), RuntimeError> {
    // Modes set outright: they are what an image without these paths shows, whatever the agent's umask.
    let directories = std::iter::once(layer.to_path_buf())
        .chain(INIT_LAYER_DIRECTORIES.iter().map(|d| layer.join(d)));
    for path in directories {
        fs::create_dir_all(&path)
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
            .map_err(io_err("creating", &path))?;
    }
    for file in INIT_LAYER_FILES {
        let path = layer.join(file);
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|_| fs::set_permissions(&path, fs::Permissions::from_mode(0o644)))
            .map_err(io_err("creating", &path))?;
    }
    Ok(())
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(m), Some(Ok(parent))) => m.dev() != parent.dev(),
        _ => false,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RuntimeError::Io {
                context: "parsing",
                path: path.into(),
                source: e.into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// A record the shim writes without a flush: after a power loss it may be empty or cut short, and the
/// process it named is gone then, so such a record counts as none.
fn read_unflushed<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

/// A fresh container id: 32 hex digits, short enough for libcontainer's socket paths under the state root.
pub fn new_container_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
