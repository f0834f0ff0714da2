//! The container runtime on its own, as root: real containers under orch shims from a busybox root
//! filesystem, their CRI logs, exit codes, stop escalation, OOM kills, and removal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use orch::agent::runtime::{
    new_container_id, BindAccess, ContainerConfig, ContainerMeta, ContainerState, MountKind,
    MountPropagation, MountSpec, Resources, Runtime, RuntimeConfig, Seccomp,
};
use orch::util::rlimit::OpenFilesLimit;

use crate::harness::{mount_tmpfs, TestMount};

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers and must run as root (CI runs them as root)"
    );
}

/// A one-layer root filesystem: static busybox and its applets, as an unpacked image snapshot would be.
pub fn busybox_layer(dir: &Path) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "missing /bin/busybox: run make test-deps (apt-get install busybox-static)"
    );
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::copy(busybox, layer.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "sleep", "echo", "cat", "true", "false", "ls", "tail", "env", "id", "hostname",
        "head", "dd",
    ] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    layer
}

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: Runtime,
    layer: PathBuf,
    logs: PathBuf,
}

/// A runtime's directories under `dir`: the records, and the run side a reboot clears (`run`, `bundles`).
fn runtime_config(dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        containers_dir: dir.join("containers"),
        state_root: dir.join("run"),
        bundles_dir: dir.join("bundles"),
        shim_executable: env!("CARGO_BIN_EXE_orch").into(),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
    }
}

fn fixture() -> Fixture {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layer = busybox_layer(dir.path());
    let runtime = Runtime::new(runtime_config(dir.path())).unwrap();
    let logs = dir.path().join("logs");
    Fixture {
        _dir: dir,
        runtime,
        layer,
        logs,
    }
}

impl Fixture {
    fn create(&self, args: &[&str], resources: Resources) -> String {
        self.create_with(args, |config| config.resources = resources)
    }

    /// A container of `args`, with its config changed by `adjust`.
    fn create_with(&self, args: &[&str], adjust: impl FnOnce(&mut ContainerConfig)) -> String {
        let id = new_container_id();
        let meta = ContainerMeta {
            id: id.clone(),
            pod_uid: "uid-1".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            container: "c".into(),
            attempt: 0,
            init_container: false,
            image: "busybox".into(),
            image_id: "sha256:x".into(),
            image_ref: "busybox@sha256:x".into(),
            log_path: self.logs.join(format!("{id}.log")),
            log_link: Some(
                self.logs
                    .join("containers")
                    .join(format!("p_default_c-{id}.log")),
            ),
            created_at: String::new(),
            spec_hash: String::new(),
            stdin: false,
            stdin_once: false,
            user: None,
            resources: None,
        };
        let mut config = ContainerConfig {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into(), "HOME=/root".into()],
            hostname: "p".into(),
            cgroup_path: format!("/orch-test/{id}"),
            seccomp: Seccomp::RuntimeDefault,
            ..Default::default()
        };
        adjust(&mut config);
        self.runtime
            .create(&meta, &config, std::slice::from_ref(&self.layer))
            .unwrap();
        id
    }

    /// Starts the container and waits for it to exit.
    async fn run_to_exit(&self, id: &str) -> orch::shim::ExitRecord {
        self.runtime.start(id).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.runtime.wait(id))
            .await
            .unwrap_or_else(|_| panic!("container {id} did not exit: {}", self.log(id)))
            .unwrap()
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{id}.log"))).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_runs_logs_in_cri_format_and_reports_its_exit_code() {
    let f = fixture();
    let id = f.create(
        &[
            "sh",
            "-c",
            "echo hello from $(hostname); echo oops >&2; exit 3",
        ],
        Resources::default(),
    );
    assert_eq!(f.runtime.state(&id).unwrap(), ContainerState::Created);
    let exit = f.run_to_exit(&id).await;
    assert_eq!(exit.exit_code, 3);
    assert!(!exit.oom_killed);
    let log = f.log(&id);
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F hello from p")),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.ends_with(" stderr F oops")), "{log}");
    // Reached through its link too, and both go with the container.
    let link = f
        .logs
        .join("containers")
        .join(format!("p_default_c-{id}.log"));
    assert_eq!(std::fs::read_to_string(&link).unwrap(), log);
    f.runtime.remove(&id).unwrap();
    assert!(f.runtime.list().is_empty());
    assert!(!f.logs.join(format!("{id}.log")).exists());
    assert!(
        link.symlink_metadata().is_err(),
        "{} is left",
        link.display()
    );
}

/// `kubectl logs` reads a run's log where the run recorded it, not where the node's log root would
/// put it now: a container made before an upgrade moved the logs keeps its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_the_log_a_run_recorded() {
    use futures_util::StreamExt;
    use orch::api::logs::{LogOptions, PodLogs};

    let f = fixture();
    let id = f.create(&["echo", "from the old place"], Resources::default());
    f.run_to_exit(&id).await;
    let moved_root = tempfile::tempdir().unwrap();
    let logs = orch::agent::kubelet::logs::NodeLogs {
        node_name: "node".into(),
        log_root: moved_root.path().to_path_buf(),
        runtime: f.runtime.clone(),
    };
    let mut pod = k8s_openapi::api::core::v1::Pod::default();
    pod.metadata.name = Some("p".into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some("uid-1".into());
    let options = LogOptions {
        container: "c".into(),
        ..LogOptions::default()
    };
    let stream = logs.stream(&pod, options).unwrap();
    let chunks: Vec<_> = stream.collect().await;
    assert_eq!(chunks.concat(), b"from the old place\n");
    f.runtime.remove(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seccomp_profile_compiled_once_by_the_runtime_is_loaded_in_every_container() {
    let f = fixture();
    let ids: Vec<String> = (0..2)
        .map(|_| {
            f.create(
                &[
                    "sh",
                    "-c",
                    "grep -E '^Seccomp(_filters)?:' /proc/self/status",
                ],
                Resources::default(),
            )
        })
        .collect();
    let programs: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            std::fs::read(f.runtime.bundle(id).join(orch::shim::SECCOMP_PROGRAM_FILE)).unwrap()
        })
        .collect();
    assert!(!programs[0].is_empty() && programs[0].len().is_multiple_of(8));
    assert_eq!(programs[0], programs[1]);
    // One copy on the node: the bundles link the same file.
    let inode = |id: &String| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(f.runtime.bundle(id).join(orch::shim::SECCOMP_PROGRAM_FILE))
            .unwrap()
            .ino()
    };
    assert_eq!(inode(&ids[0]), inode(&ids[1]));
    for id in &ids {
        let exit = f.run_to_exit(id).await;
        assert_eq!(exit.exit_code, 0, "{}", f.log(id));
        // Mode 2 is a filter; one filter, the container's own (the shim runs unfiltered).
        let log = f.log(id);
        assert!(log.contains("stdout F Seccomp:\t2"), "{log}");
        assert!(log.contains("stdout F Seccomp_filters:\t1"), "{log}");
        f.runtime.remove(id).unwrap();
    }

    // The init loads the program the runtime wrote, not its own compilation of config.json's profile:
    // a program compiled without mkdir allowed makes mkdir fail although config.json allows it.
    let id = f.create(
        &["sh", "-c", "mkdir /tmp/made && echo made || echo refused"],
        Resources::default(),
    );
    let bundle = f.runtime.bundle(&id);
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).unwrap();
    let mut profile = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    let syscalls = profile
        .syscalls()
        .clone()
        .unwrap()
        .into_iter()
        .map(|mut rule| {
            let names = rule.names().iter().filter(|n| !n.starts_with("mkdir"));
            rule.set_names(names.cloned().collect());
            rule
        })
        .filter(|rule| !rule.names().is_empty())
        .collect();
    profile.set_syscalls(Some(syscalls));
    let program = libcontainer::seccomp::compile_seccomp(&profile).unwrap();
    // Replaced, not written through the link, which would change the program of every container.
    let path = bundle.join(orch::shim::SECCOMP_PROGRAM_FILE);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, program).unwrap();
    f.run_to_exit(&id).await;
    let log = f.log(&id);
    assert!(log.contains("stdout F refused"), "{log}");
    f.runtime.remove(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_escalates_to_sigkill_when_sigterm_is_ignored() {
    let f = fixture();
    // pid 1 of a pid namespace ignores signals it has no handler for: SIGTERM does nothing to `sleep`.
    let id = f.create(&["sleep", "1000"], Resources::default());
    let init = f.runtime.start(&id).await.unwrap();
    assert!(init.is_alive());
    assert!(matches!(
        f.runtime.state(&id).unwrap(),
        ContainerState::Running(_)
    ));
    assert!(
        f.runtime.remove(&id).is_err(),
        "a running container is not removed"
    );
    let exit = f
        .runtime
        .stop(&id, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(exit.exit_code, 137);
    assert!(!init.is_alive());
    f.runtime.remove(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let f = fixture();
    let id = f.create(
        &["sh", "-c", "tail /dev/zero"],
        Resources {
            memory_limit: Some(16 << 20),
            ..Default::default()
        },
    );
    f.runtime.start(&id).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), f.runtime.wait(&id))
        .await
        .expect("the OOM killer ends it")
        .unwrap();
    assert_eq!(exit.exit_code, 137, "{exit:?}");
    assert!(exit.oom_killed, "{exit:?}");
    f.runtime.remove(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_a_command_inside_the_running_container() {
    let f = fixture();
    let id = f.create(
        &["sh", "-c", "echo inside > /tmp/marker; sleep 1000"],
        Resources::default(),
    );
    f.runtime.start(&id).await.unwrap();
    let command = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut result = None;
    for _ in 0..50 {
        result = f
            .runtime
            .exec(
                &id,
                &command(&["cat", "/tmp/marker"]),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        if result.as_ref().is_some_and(|(code, _)| *code == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, output) = result.expect("finished in time");
    assert_eq!((code, output.trim()), (0, "inside"));
    let (code, output) = f
        .runtime
        .exec(
            &id,
            &command(&["sh", "-c", "hostname; exit 4"]),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((code, output.trim()), (4, "p"));
    let timed_out = f
        .runtime
        .exec(&id, &command(&["sleep", "30"]), Duration::from_millis(500))
        .await
        .unwrap();
    assert!(timed_out.is_none());
    f.runtime.stop(&id, Duration::ZERO).await.unwrap();
    f.runtime.remove(&id).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_shim_died_reports_an_unknown_exit() {
    let f = fixture();
    let id = f.create(&["sleep", "1000"], Resources::default());
    let init = f.runtime.start(&id).await.unwrap();
    assert!(!f.runtime.is_abandoned(&id), "its shim supervises it");
    let shim: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.runtime.bundle(&id).join(orch::shim::SHIM_FILE)).unwrap(),
    )
    .unwrap();
    // `ps -e` and `top` show a shim as one, not as the launcher it was forked from.
    let shim_pid = shim["pid"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{shim_pid}/comm")).unwrap();
    assert_eq!(comm, "orch-shim\n");
    let kill = |pid: i64| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap()
    };
    kill(shim_pid);
    kill(init.pid as i64);
    let exit = tokio::time::timeout(Duration::from_secs(10), f.runtime.wait(&id))
        .await
        .expect("the exit is reported without a shim")
        .unwrap();
    assert_eq!(exit.exit_code, 255);
    assert!(f.runtime.is_abandoned(&id));
    f.runtime.remove(&id).unwrap();
}

/// A reboot takes the run dir's tmpfs (bundles and libcontainer's state) and every process; the records on
/// disk still tell how each container ended, and the container can be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_records_on_disk_outlive_the_bundles_on_the_run_dir() {
    let f = fixture();
    let exited = f.create(&["sh", "-c", "exit 7"], Resources::default());
    f.run_to_exit(&exited).await;
    let running = f.create(&["sleep", "1000"], Resources::default());
    let init = f.runtime.start(&running).await.unwrap();

    let (bundle, records) = (f.runtime.bundle(&exited), f.runtime.dir(&exited));
    for file in [
        "config.json",
        orch::shim::SECCOMP_PROGRAM_FILE,
        orch::shim::SHIM_FILE,
    ] {
        assert!(bundle.join(file).exists(), "{file} is in the bundle");
        assert!(!records.join(file).exists(), "{file} is not on disk");
    }
    for file in ["meta.json", orch::shim::PID_FILE, orch::shim::EXIT_FILE] {
        assert!(records.join(file).exists(), "{file} is on disk");
    }

    // The reboot: every process of the running container ends, and the tmpfs with it.
    let shim: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(f.runtime.bundle(&running).join(orch::shim::SHIM_FILE)).unwrap(),
    )
    .unwrap();
    for pid in [shim["pid"].as_i64().unwrap() as i32, init.pid] {
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    while init.is_alive() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for id in [&exited, &running] {
        let rootfs = f.runtime.bundle(id).join("rootfs");
        nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    for run_side in ["bundles", "run"] {
        std::fs::remove_dir_all(f._dir.path().join(run_side)).unwrap();
    }
    // ... and its cgroups, which its shim never deleted.
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join("orch-test").join(&running));
    }

    let after_reboot = Runtime::new(runtime_config(f._dir.path())).unwrap();
    let mut listed: Vec<String> = after_reboot.list().into_iter().map(|m| m.id).collect();
    listed.sort();
    let mut expected = vec![exited.clone(), running.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    match after_reboot.state(&exited).unwrap() {
        ContainerState::Exited(exit) => assert_eq!(exit.exit_code, 7),
        other => panic!("the exited container is {other:?}"),
    }
    match after_reboot.state(&running).unwrap() {
        ContainerState::Exited(exit) => assert_eq!(exit.exit_code, 255, "an unknown exit"),
        other => panic!("the container running at the reboot is {other:?}"),
    }
    // The pid record is written without a flush: a power loss can leave it empty. The container then
    // never started as far as anyone can tell, and nothing will start it now.
    std::fs::write(after_reboot.dir(&running).join(orch::shim::PID_FILE), b"").unwrap();
    assert_eq!(
        after_reboot.state(&running).unwrap(),
        ContainerState::Created
    );
    assert!(after_reboot.is_abandoned(&running));
    for id in [&exited, &running] {
        after_reboot.remove(id).unwrap();
        assert!(!after_reboot.dir(id).exists());
    }
    assert!(after_reboot.list().is_empty());

    // A runtime that outlived the clearing of its run side writes its seccomp program there again.
    let id = f.create(&["true"], Resources::default());
    let exit = f.run_to_exit(&id).await;
    assert_eq!(exit.exit_code, 0, "{}", f.log(&id));
    f.runtime.remove(&id).unwrap();
}

/// A container's processes start with no signal ignored, as runc's do, although the shim that starts them
/// ignores SIGPIPE: a loop writing into a pipe whose reader is gone ends by SIGPIPE instead of spinning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_processes_start_with_no_signal_ignored() {
    // Only the two signals below SIGRTMIN that the C library keeps for itself may be ignored.
    fn assert_none_ignored(status: &str) {
        let ignored = status
            .lines()
            .find_map(|l| l.split("SigIgn:\t").nth(1))
            .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
            .unwrap_or_else(|| panic!("no SigIgn in {status}"));
        assert_eq!(ignored & !(0b11 << 31), 0, "ignored signals {ignored:#x}");
    }
    let f = fixture();
    let pipeline = "while true; do echo y; done | head -n 1";
    for command in [&["sh", "-c", pipeline][..], &["cat", "/proc/self/status"]] {
        let id = f.create(command, Resources::default());
        let exit = f.run_to_exit(&id).await;
        assert_eq!(exit.exit_code, 0, "{}", f.log(&id));
        if command[0] == "cat" {
            assert_none_ignored(&f.log(&id));
        }
        f.runtime.remove(&id).unwrap();
    }

    let id = f.create(&["sleep", "1000"], Resources::default());
    f.runtime.start(&id).await.unwrap();
    let exec = |command: &[&str]| {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let runtime = f.runtime.clone();
        let id = id.clone();
        async move {
            runtime
                .exec(&id, &command, Duration::from_secs(20))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{command:?} did not end"))
        }
    };
    let (code, output) = exec(&["sh", "-c", pipeline]).await;
    assert_eq!((code, output.as_str()), (0, "y\n"));
    let (code, status) = exec(&["cat", "/proc/self/status"]).await;
    assert_eq!(code, 0, "{status}");
    assert_none_ignored(&status);
    f.runtime.stop(&id, Duration::ZERO).await.unwrap();
    f.runtime.remove(&id).unwrap();
}

/// The container's processes get the open-files limit they are given (the one orch started with), not
/// the raised one of the shim that starts them; and a command exec'd in the container runs with the
/// container's process settings (limits, user, working directory), as runc's exec does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_and_exec_processes_get_the_containers_limits_user_and_directory() {
    let f = fixture();
    let given = OpenFilesLimit {
        soft: 1000,
        hard: 2000,
    };
    let id = f.create_with(&["sleep", "1000"], |config| {
        config.open_files = Some(given);
        (config.uid, config.gid) = (1000, 1000);
        config.cwd = "/tmp".into();
    });
    f.runtime.start(&id).await.unwrap();
    let limits = |pid: i32| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .skip(3)
            .take(2)
            .map(|n| n.parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    };
    let ContainerState::Running(init) = f.runtime.state(&id).unwrap() else {
        panic!("not running");
    };
    assert_eq!(limits(init.pid), [1000, 2000]);
    let (code, output) = f
        .runtime
        .exec(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "ulimit -n; ulimit -Hn; id -u; pwd".into(),
            ],
            Duration::from_secs(20),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((code, output.as_str()), (0, "1000\n2000\n1000\n/tmp\n"));
    f.runtime.stop(&id, Duration::ZERO).await.unwrap();
    f.runtime.remove(&id).unwrap();
}

fn read_only_bind(source: &Path, destination: &str) -> MountSpec {
    MountSpec {
        destination: destination.into(),
        kind: MountKind::Bind {
            source: source.into(),
            access: BindAccess::ReadOnly,
            propagation: MountPropagation::Private,
        },
    }
}

/// Mount propagation as containerd sets it up: a mount the node makes under a shared source reaches
/// the container through a HostToContainer or Bidirectional mount of it, not through a private one,
/// and one the container makes under its Bidirectional mount reaches the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_mounts_pass_on_mounts_as_their_propagation_says() {
    let f = fixture();
    // A shared mount of the test's own, as systemd leaves a node's mounts.
    let shared = TestMount::new(nix::mount::MsFlags::MS_SHARED);
    let source = shared.path();
    let bind = |destination: &str, propagation| MountSpec {
        destination: destination.into(),
        kind: MountKind::Bind {
            source: source.into(),
            access: BindAccess::ReadWrite,
            propagation,
        },
    };
    let script = "mkdir /both/from-container && mount -t tmpfs c /both/from-container \
        && touch /both/from-container/mark || exit 9; \
        for i in $(seq 200); do [ -e /slave/from-host/mark ] && break; sleep 0.1; done; \
        for m in private slave both; do [ -e /$m/from-host/mark ] && echo $m sees || echo $m blind; done";
    let id = f.create_with(&["sh", "-c", script], |config| {
        config.privileged = true;
        config.mounts = vec![
            bind("/private", MountPropagation::Private),
            bind("/slave", MountPropagation::HostToContainer),
            bind("/both", MountPropagation::Bidirectional),
        ];
    });
    f.runtime.start(&id).await.unwrap();
    let from_container = source.join("from-container/mark");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !from_container.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the container's mount never reached the node: {}",
            f.log(&id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from_host = source.join("from-host");
    std::fs::create_dir(&from_host).unwrap();
    mount_tmpfs(&from_host);
    std::fs::write(from_host.join("mark"), "").unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), f.runtime.wait(&id))
        .await
        .unwrap()
        .unwrap();
    let log = f.log(&id);
    assert_eq!(exit.exit_code, 0, "{log}");
    for line in ["private blind", "slave sees", "both sees"] {
        assert!(log.contains(&format!(" stdout F {line}")), "{line}: {log}");
    }
    f.runtime.remove(&id).unwrap();
}

/// The image's symlinks lead a mount's target inside the container's root, never out to the host: here
/// the image's `/etc` is an absolute symlink to a path that also exists on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_targets_resolve_through_the_images_symlinks_inside_its_root() {
    let f = fixture();
    let host = tempfile::tempdir().unwrap();
    let image_etc = f.layer.join(host.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&image_etc).unwrap();
    std::fs::remove_dir(f.layer.join("etc")).unwrap();
    std::os::unix::fs::symlink(host.path(), f.layer.join("etc")).unwrap();
    let sources = tempfile::tempdir().unwrap();
    let hosts = sources.path().join("hosts");
    std::fs::write(&hosts, "mounted hosts\n").unwrap();
    let config_dir = sources.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(config_dir.join("key"), "mounted key\n").unwrap();

    let id = f.create_with(&["cat", "/etc/hosts", "/etc/app/config/key"], |config| {
        config.mounts = vec![
            read_only_bind(&hosts, "/etc/hosts"),
            read_only_bind(&config_dir, "/etc/app/config"),
        ];
    });
    let exit = f.run_to_exit(&id).await;
    let log = f.log(&id);
    assert_eq!(exit.exit_code, 0, "{log}");
    assert!(log.contains(" stdout F mounted hosts"), "{log}");
    assert!(log.contains(" stdout F mounted key"), "{log}");
    let on_host: Vec<_> = std::fs::read_dir(host.path()).unwrap().collect();
    assert!(on_host.is_empty(), "created on the host: {on_host:?}");
    f.runtime.remove(&id).unwrap();
}

/// `memory.stat` of the container's cgroup (`/orch-test/<id>`): the memory hierarchy's on the hybrid
/// layout, the unified one's on cgroup v2.
fn memory_stat(id: &str) -> std::collections::HashMap<String, u64> {
    let v1 = Path::new("/sys/fs/cgroup/memory/orch-test").join(id);
    let dir = if v1.is_dir() {
        v1
    } else {
        Path::new("/sys/fs/cgroup/orch-test").join(id)
    };
    std::fs::read_to_string(dir.join("memory.stat"))
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Filesystem metadata the init wrote while making targets in the overlay's upper directory was charged
/// to the container's memory cgroup, and, cached after the container was removed, kept that cgroup alive
/// in the kernel. The runtime makes them before the container starts. Made by the init, they showed as
/// `dirty 4096` in 7 of 10 runs here: a new directory block is charged to whoever brings its page into
/// the cache, unless the page is still cached from the block's earlier use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_targets_are_made_outside_the_containers_memory_cgroup() {
    let f = fixture();
    let sources = tempfile::tempdir().unwrap();
    let hosts = sources.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let id = f.create_with(&["sleep", "60"], |config| {
        config.mounts = vec![
            read_only_bind(&hosts, "/etc/hosts"),
            read_only_bind(sources.path(), "/data/volume"),
        ];
        config.cwd = "/work/dir".into();
    });
    f.runtime.start(&id).await.unwrap();
    let stat = memory_stat(&id);
    let dirty = stat.get("dirty").or(stat.get("file_dirty")).copied();
    assert_eq!(
        dirty,
        Some(0),
        "written from the container's cgroup: {stat:?}"
    );
    f.runtime.stop(&id, Duration::from_secs(0)).await.unwrap();
    f.runtime.remove(&id).unwrap();
}

/// What every container mounts over (`/etc/hosts`, `/etc/resolv.conf`, `/proc`, `/sys`, `/dev`) comes from
/// the node's init layer below the image, so an image without them runs, and nothing is made for them in
/// the container's upper directory on the data dir's disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_points_an_image_lacks_come_from_the_init_layer_not_the_containers_upper_directory() {
    let f = fixture();
    for bare in ["etc", "proc", "sys", "dev"] {
        std::fs::remove_dir(f.layer.join(bare)).unwrap();
    }
    let sources = tempfile::tempdir().unwrap();
    let (hosts, resolv) = (
        sources.path().join("hosts"),
        sources.path().join("resolv.conf"),
    );
    std::fs::write(&hosts, "mounted hosts\n").unwrap();
    std::fs::write(&resolv, "nameserver 10.43.0.10\n").unwrap();
    let id = f.create_with(
        &[
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf; ls -d /proc/self /sys/fs; ls -ld /etc",
        ],
        |config| {
            config.mounts.push(read_only_bind(&hosts, "/etc/hosts"));
            config
                .mounts
                .push(read_only_bind(&resolv, "/etc/resolv.conf"));
        },
    );
    let exit = f.run_to_exit(&id).await;
    let log = f.log(&id);
    assert_eq!(exit.exit_code, 0, "{log}");
    for line in [
        "mounted hosts",
        "nameserver 10.43.0.10",
        "/proc/self",
        "/sys/fs",
    ] {
        assert!(log.contains(&format!(" stdout F {line}")), "{log}");
    }
    assert!(log.contains(" stdout F drwxr-xr-x "), "{log}");
    let upper: Vec<_> = std::fs::read_dir(f.runtime.dir(&id).join("upper"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(upper.is_empty(), "made in the upper directory: {upper:?}");
    f.runtime.remove(&id).unwrap();
}
