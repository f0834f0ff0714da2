//! Starts an `orch server` subprocess on a free port with its own data dir and kubeconfig, and runs kubectl
//! against it with an isolated HOME (so kubectl's discovery cache never leaks between tests).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Test nodes' hard eviction thresholds: kubelet's memory default, and disk thresholds low enough that a
/// build machine's nearly full disk does not put every test node under DiskPressure (kubelet's 10 % and
/// 15 % would). Tests of pressure pass their own `--kubelet-arg eviction-hard`, which wins.
const TEST_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<1%,nodefs.inodesFree<1%,imagefs.available<1%";

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Runs the embedded node agent (real containers, needs root); off for control-plane tests.
    agent: bool,
}

/// An `orch agent --hollow` process; killed when dropped.
pub struct HollowAgent {
    child: Child,
}

impl HollowAgent {
    /// SIGKILL: its nodes stop renewing their Leases.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HollowAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `orch agent` joined to a server, with its own data and run directories under the server's test
/// directory; killed when dropped, and its containers with it.
pub struct JoinedAgent {
    child: Child,
    pub data_dir: PathBuf,
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        clean_up_containers(&self.data_dir);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn require_kubectl() {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "kubectl is required on PATH for these tests: run `make test-deps` (apt-get install kubectl)");
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with extra flags (e.g. a short `--node-monitor-grace-period`).
    pub fn start_with(extra_args: &[&str]) -> Server {
        require_kubectl();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = Server {
            dir,
            port,
            child: None,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            agent: false,
        };
        server.spawn();
        server
    }

    /// A server with its embedded node agent, named `node`, running real containers. Its runtime state
    /// and containers' logs live in the test's directory and its registries.yaml is `registries_yaml`.
    pub fn with_agent(registries_yaml: &str, extra_args: &[&str]) -> Server {
        require_kubectl();
        remember_host_forwarding();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("registries.yaml"), registries_yaml).unwrap();
        let mut args: Vec<String> = vec![
            "--node-name".into(),
            "node".into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--run-dir".into(),
            dir.path().join("run").display().to_string(),
            "--container-log-root".into(),
            dir.path().join("log").display().to_string(),
            "--private-registry".into(),
            dir.path().join("registries.yaml").display().to_string(),
            "--eviction-hard".into(),
            TEST_EVICTION_HARD.into(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut server = Server {
            dir,
            port,
            child: None,
            extra_args: args,
            agent: true,
        };
        server.spawn();
        server
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        // An empty config file keeps a machine's /etc/orch/config.yaml out of the test.
        std::fs::write(self.dir.path().join("no-config.yaml"), "").unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args([
                "server",
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &self.port.to_string(),
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--config")
            .arg(self.dir.path().join("no-config.yaml"))
            .args(&self.extra_args)
            .args((!self.agent).then_some("--disable-agent"))
            .env("ORCH_CONFIG_FILE", self.dir.path().join("no-config.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("orch binary runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server did not become ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fresh server with `count` Ready hollow nodes named `node-<i>`.
    pub fn with_hollow_nodes(count: usize) -> (Server, HollowAgent) {
        let s = Server::start();
        let agent = s.hollow_agent("node", count, &[]);
        s.eventually("Ready hollow nodes", Duration::from_secs(60), || {
            ready_nodes(&s) == count
        });
        (s, agent)
    }

    /// Joins `count` hollow nodes named `<prefix>-<i>` with the server's token.
    pub fn hollow_agent(&self, prefix: &str, count: usize, extra: &[&str]) -> HollowAgent {
        let log =
            std::fs::File::create(self.dir.path().join(format!("agent-{prefix}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["agent", "--hollow", "--node-name", prefix])
            .args(["--count", &count.to_string()])
            .args(["--server", &format!("https://127.0.0.1:{}", self.port)])
            .arg("--token-file")
            .arg(self.data_dir().join("server/token"))
            .args(extra)
            .env("ORCH_CONFIG_FILE", self.dir.path().join("no-config.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("orch binary runs");
        HollowAgent { child }
    }

    /// Joins a real node agent named `name` (needs root), reaching the server on loopback with the token.
    pub fn join_agent(&self, name: &str, extra: &[&str]) -> JoinedAgent {
        remember_host_forwarding();
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("registries.yaml"), "").unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("agent-{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["agent", "--node-name", name, "--node-ip", "127.0.0.1"])
            .args(["--server", &format!("https://127.0.0.1:{}", self.port)])
            .arg("--token-file")
            .arg(self.data_dir().join("server/token"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--run-dir")
            .arg(dir.join("run"))
            .arg("--container-log-root")
            .arg(dir.join("log"))
            .arg("--private-registry")
            .arg(dir.join("registries.yaml"))
            .args(["--eviction-hard", TEST_EVICTION_HARD])
            .args(extra)
            .env("ORCH_CONFIG_FILE", self.dir.path().join("no-config.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("orch binary runs");
        JoinedAgent {
            child,
            data_dir: dir.join("data"),
        }
    }

    /// A client of the library speaking HTTP/2 to the server with the admin kubeconfig.
    pub fn client(&self) -> orch::client::Client {
        let text = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let config = orch::client::RemoteConfig::from_kubeconfig(&text).unwrap();
        orch::client::Client::remote(config).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, &[], None)
    }

    /// kubectl with `args`, this cluster's kubeconfig and a HOME of its own, to be run by the caller.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &home);
        cmd
    }

    pub fn kubectl_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&Path>,
    ) -> Output {
        let mut cmd = self.kubectl_command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(path) = stdin {
            cmd.stdin(std::fs::File::open(path).unwrap());
        }
        cmd.output().expect("kubectl runs")
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log())
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Polls until `f` returns true or fails after `timeout`, showing the cluster as it was then.
    pub fn eventually(&self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; cluster:\n{}\nserver log tail:\n{}",
                self.snapshot(),
                tail(&self.log())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Nodes (with taints), pods and the latest events, for a failure message.
    fn snapshot(&self) -> String {
        let show = |args: &[&str]| {
            let out = self.kubectl(&[&["--request-timeout=5s"], args].concat());
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let lines: Vec<&str> = text.lines().collect();
            let last = &lines[lines.len().saturating_sub(40)..];
            format!("$ kubectl {}\n{}\n", args.join(" "), last.join("\n"))
        };
        [
            show(&[
                "get",
                "nodes",
                "-o",
                "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,TAINTS:.spec.taints[*].key",
            ]),
            show(&["get", "pods", "-A", "-o", "wide"]),
            show(&["get", "events", "-A", "--sort-by=.lastTimestamp"]),
        ]
        .join("")
    }
}

/// How many nodes report Ready=True.
pub fn ready_nodes(s: &Server) -> usize {
    let out = s.ok(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    out.lines().filter(|l| *l == "True").count()
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if self.agent {
            clean_up_containers(&self.data_dir());
        }
    }
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// The host's IP forwarding before the first agent of this run turned it on.
static HOST_FORWARDING: OnceLock<String> = OnceLock::new();

fn remember_host_forwarding() {
    HOST_FORWARDING.get_or_init(|| std::fs::read_to_string(IP_FORWARD).unwrap_or_default());
}

/// Containers (and pause processes) outlive their agent by design; a finished test kills them, deletes its pods' network
/// interfaces, the node's bridge and the node's host rules (whose host ports would send traffic to pods that are gone) and
/// sets the host's IP forwarding back, unmounts what the agent mounted under its directories (overlay
/// roots, tmpfs volumes, network namespaces) so the temporary directory can go, and removes its pods'
/// cgroups.
pub fn clean_up_containers(data_dir: &Path) {
    orch::agent::network::remove_host_rules(orch::agent::network::DEFAULT_BRIDGE);
    if let Some(before) = HOST_FORWARDING.get().filter(|b| !b.is_empty()) {
        let _ = std::fs::write(IP_FORWARD, before.trim());
    }
    let containers = data_dir.join("agent/containers");
    // Twice: a shim that was starting when the server died reports its container a moment later.
    for _ in 0..2 {
        for entry in std::fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
        {
            let pid_file = entry.path().join("pid");
            let Ok(text) = std::fs::read_to_string(&pid_file) else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Some(pid) = v["pid"].as_i64() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The pause processes of pods that share their PID namespace outlive their agent too.
    let pods = data_dir.parent().map(|p| p.join("run/pods"));
    for pod in pods.iter().flat_map(std::fs::read_dir).flatten().flatten() {
        let record = std::fs::read_to_string(pod.path().join("pause.json")).unwrap_or_default();
        let pid = serde_json::from_str::<serde_json::Value>(&record).map(|v| v["pid"].as_i64());
        if let Ok(Some(pid)) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let run_dir = data_dir.parent().map(|p| p.join("run/netns"));
    for netns in run_dir
        .iter()
        .flat_map(std::fs::read_dir)
        .flatten()
        .flatten()
    {
        // Deleting the pod end of a veth pair deletes the host end on the bridge too.
        let _ = Command::new("nsenter")
            .arg(format!("--net={}", netns.path().display()))
            .args(["ip", "link", "del", "eth0"])
            .output();
    }
    // The agent keeps the node's bridge across restarts; the host gets rid of it with the test.
    let _ = Command::new("ip")
        .args(["link", "del", orch::agent::network::DEFAULT_BRIDGE])
        .output();
    std::thread::sleep(Duration::from_millis(200));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = data_dir.parent().unwrap_or(data_dir).display().to_string();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|t| t.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
    }
    // The pods' cgroups, empty once their processes are gone (the kernel may take a moment).
    let uids: std::collections::BTreeSet<String> = std::fs::read_dir(&containers)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("meta.json")).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .filter_map(|meta| meta["pod_uid"].as_str().map(str::to_string))
        .collect();
    let root = Path::new(orch::agent::kubelet::pod_cgroup::ROOT);
    for uid in uids {
        for _ in 0..10 {
            if orch::agent::kubelet::pod_cgroup::remove(root, &uid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A tmpfs of the test's own, shared or private, unmounted (with what propagated under it) when
/// dropped.
pub struct TestMount(tempfile::TempDir);

impl TestMount {
    pub fn new(propagation: nix::mount::MsFlags) -> TestMount {
        let dir = tempfile::tempdir().unwrap();
        mount_tmpfs(dir.path());
        nix::mount::mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .unwrap();
        TestMount(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Mounts a new tmpfs at `dir`.
pub fn mount_tmpfs(dir: &Path) {
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}
