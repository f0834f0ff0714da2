//! `make bench` for the node agent (root): pod create → Ready latency with the image present (50 pods one
//! by one, 50 at once), container start through orch's shim against `runc run` on the same bundle, the
//! memory of the server with its embedded agent idle and per extra running pod, and how many `sleep` pods
//! one node runs (`ORCH_BENCH_NODE_PODS`, default 1,000).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ms, percentile, report, BenchServer};
use orch::agent::runtime::{
    new_container_id, ContainerConfig, ContainerMeta, Resources, Runtime, RuntimeConfig, Seccomp,
    ShimLauncher,
};
use orch::client::Client;
use serde_json::json;

mod common;

const LATENCY_PODS: usize = 50;
const START_RUNS: usize = 30;

/// A busybox root filesystem layer: static busybox plus the applets the pods use.
fn busybox_layer(dir: &Path) -> PathBuf {
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
    for applet in ["sh", "sleep", "true"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    layer
}

/// A docker-archive tarball of the layer as `busybox:latest`, for `orch images import`.
fn busybox_archive(layer: &Path, out: &Path) {
    let mut layer_tar = tar::Builder::new(Vec::new());
    layer_tar.follow_symlinks(false);
    layer_tar.append_dir_all(".", layer).unwrap();
    let layer_bytes = layer_tar.into_inner().unwrap();
    let diff_id = orch::agent::image::store::sha256_digest(&layer_bytes);
    let config = json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let manifest =
        json!([{"Config": "config.json", "RepoTags": ["busybox:latest"], "Layers": ["layer.tar"]}]);
    let mut archive = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, bytes) in [
        ("config.json", config_bytes),
        ("layer.tar", layer_bytes),
        ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    archive.finish().unwrap();
}

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "app", "image": "busybox:latest",
                    "imagePullPolicy": "Never", "command": ["sleep", "100000"]}]}})
}

fn is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Creates the pods (all at once) and returns, for each, the time from its create call to Ready as one
/// watch sees it: polling each pod would compete with the node for the same two cores.
async fn create_and_wait(client: &Client, names: &[String]) -> Vec<Duration> {
    let list = client.get("/api/v1/namespaces/default/pods").await.unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = client
        .watch(&format!(
            "/api/v1/namespaces/default/pods?watch=1&resourceVersion={rv}"
        ))
        .await
        .unwrap();
    let created = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let creates: Vec<_> = names
        .iter()
        .map(|name| {
            let (client, created, name) = (client.clone(), created.clone(), name.clone());
            tokio::spawn(async move {
                created.lock().unwrap().insert(name.clone(), Instant::now());
                client
                    .create("/api/v1/namespaces/default/pods", &pod(&name))
                    .await
                    .unwrap();
            })
        })
        .collect();
    let mut ready = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while ready.len() < names.len() {
        let event = tokio::time::timeout_at(deadline.into(), watch.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} pods became Ready", ready.len(), names.len()))
            .expect("the pod watch ended")
            .unwrap();
        let name = event.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        let started = created.lock().unwrap().get(name).copied();
        if let Some(started) = started {
            if is_ready(&event.object) && !ready.contains_key(name) {
                ready.insert(name.to_string(), started.elapsed());
            }
        }
    }
    for create in creates {
        create.await.unwrap();
    }
    ready.into_values().collect()
}

async fn delete_all(client: &Client) {
    client
        .send(
            http::Method::DELETE,
            "/api/v1/namespaces/default/pods",
            bytes::Bytes::new(),
            "application/json",
        )
        .await
        .unwrap();
    loop {
        let list = client.get("/api/v1/namespaces/default/pods").await.unwrap();
        if list["items"].as_array().is_none_or(|i| i.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the node has released every pod: pods leave the API before their teardown ends, which
/// removes the containers first, then the network namespaces (whose veths the kernel frees in the
/// background), and the pod cgroups last.
async fn wait_for_released_pods(data_dir: &Path) {
    let containers = data_dir.join("agent/containers");
    let namespaces = data_dir.with_file_name("run").join("netns");
    let bridge_ports = Path::new("/sys/class/net")
        .join(orch::agent::network::DEFAULT_BRIDGE)
        .join("brif");
    let count_in = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let started = Instant::now();
    loop {
        let left = [
            count_in(&containers),
            count_in(&namespaces),
            count_in(&bridge_ports),
            pod_cgroups(),
        ];
        if left == [0; 4] {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "pods left on the node: {} containers in {}, {} network namespaces in {}, {} ports in {}, \
             {} pod cgroups",
            left[0],
            containers.display(),
            left[1],
            namespaces.display(),
            left[2],
            bridge_ports.display(),
            left[3]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pod cgroups the node holds, in the v1 memory hierarchy (hybrid layout) or the unified one.
fn pod_cgroups() -> usize {
    ["/sys/fs/cgroup/memory/orch", "/sys/fs/cgroup/orch"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("pod"))
        })
        .count()
}

/// How many memory cgroups the kernel holds, removed ones it has not freed yet included (/proc/cgroups).
fn memory_cgroups() -> i64 {
    let table = std::fs::read_to_string("/proc/cgroups").unwrap();
    table
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.first() == Some(&"memory")).then(|| fields[2].parse().unwrap())
        })
        .expect("a memory controller in /proc/cgroups")
}

/// Time from creating a Deployment of `replicas` sleep pods to all of them available.
async fn deployment_available(client: &Client, replicas: u32) -> Duration {
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod("web")["spec"].clone()}}});
    let started = Instant::now();
    client
        .create("/apis/apps/v1/namespaces/default/deployments", &deployment)
        .await
        .unwrap();
    loop {
        let d = client
            .get("/apis/apps/v1/namespaces/default/deployments/web")
            .await
            .unwrap();
        if d["status"]["availableReplicas"].as_u64() == Some(replicas.into()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the Deployment never became available: {}",
            d["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many container shims run on this machine, and their proportional set size together: what they
/// cost beyond the memory they share with each other and the shim launcher.
fn shims_pss_kib() -> (usize, u64) {
    let mut count = 0;
    let mut pss = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let proc_dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(proc_dir.join("comm")) else {
            continue;
        };
        if comm.trim_end().as_bytes() != orch::shim::launcher::SHIM_PROCESS_NAME.to_bytes() {
            continue;
        }
        let Ok(rollup) = std::fs::read_to_string(proc_dir.join("smaps_rollup")) else {
            continue;
        };
        count += 1;
        pss += rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (count, pss)
}

/// CPU time the whole machine has spent busy so far (every process and the kernel's own threads, from
/// /proc/stat): what a phase costs, which its latency on two cores follows from.
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().map(|&i| fields[i]).sum();
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    Duration::from_millis(busy * 1000 / ticks_per_second)
}

fn latency_report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let p99 = percentile(&samples, 0.99);
    report(
        &format!("pod create → Ready p50 ({label})"),
        format!("{:.1} ms", ms(p50)),
        "≤ 100 ms",
        p50 <= Duration::from_millis(100),
    );
    report(
        &format!("pod create → Ready p99 ({label})"),
        format!("{:.1} ms", ms(p99)),
        "≤ 300 ms",
        p99 <= Duration::from_millis(300),
    );
}

fn bench_config(args: &[&str], cgroup: &str) -> ContainerConfig {
    ContainerConfig {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        hostname: "bench".into(),
        cgroup_path: cgroup.into(),
        resources: Resources {
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
            ..Default::default()
        },
        seccomp: Seccomp::RuntimeDefault,
        ..Default::default()
    }
}

/// An OCI bundle (a copy of the layer as its root, and orch's config.json) that runc and the shim share.
fn bundle(dir: &Path, layer: &Path, name: &str, args: &[&str]) -> PathBuf {
    let bundle = dir.join(name);
    std::fs::create_dir_all(&bundle).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(layer)
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "copying the layer into {}",
        bundle.display()
    );
    orch::agent::runtime::spec::build(&bench_config(args, &format!("/orch-bench/{name}")))
        .unwrap()
        .save(bundle.join("config.json"))
        .unwrap();
    bundle
}

fn require_runc() {
    assert!(
        Command::new("runc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "missing runc: run make test-deps (apt-get install runc)"
    );
}

/// One run of the bundle by an orch shim, from asking the node's shim launcher for it to the shim's exit
/// after it recorded the container's exit and deleted it: what `runc run` does for the same bundle.
fn shim_run(launcher: &ShimLauncher, bundle: &Path, state: &Path, id: &str) -> Duration {
    let started = Instant::now();
    let (report_r, report_w) = nix::unistd::pipe().unwrap();
    let log = std::fs::File::create(state.join(format!("{id}.shim.log"))).unwrap();
    let args = orch::shim::ShimArgs {
        id: id.into(),
        bundle: bundle.into(),
        records: bundle.into(),
        state_root: state.into(),
        log: state.join(format!("{id}.log")),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
        attach_socket: None,
        stdin: false,
        stdin_once: false,
    };
    launcher.launch(&args, &report_w, &log).unwrap();
    drop((report_w, log));
    let mut report = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(report_r)),
        &mut report,
    )
    .unwrap();
    assert!(report.starts_with("started "), "orch shim: {report}");
    let shim: orch::shim::InitProcess =
        serde_json::from_slice(&std::fs::read(bundle.join(orch::shim::SHIM_FILE)).unwrap())
            .unwrap();
    if let Ok(fd) = orch::shim::pidfd_open(shim.pid) {
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&fd),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
    }
    let elapsed = started.elapsed();
    assert!(
        bundle.join(orch::shim::EXIT_FILE).exists(),
        "the shim recorded no exit"
    );
    for file in [
        orch::shim::EXIT_FILE,
        orch::shim::PID_FILE,
        orch::shim::SHIM_FILE,
    ] {
        let _ = std::fs::remove_file(bundle.join(file));
    }
    elapsed
}

fn runc_run(bundle: &Path, state: &Path, id: &str, detach: bool) -> Duration {
    let started = Instant::now();
    let out = Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .args(detach.then_some("--detach"))
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // A detached container keeps runc's stdio: a pipe would stay open as long as it runs.
        .stderr(if detach {
            std::process::Stdio::null()
        } else {
            std::process::Stdio::piped()
        })
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Medians of `/bin/true` run START_RUNS times on the same bundle through an orch shim and `runc run`,
/// alternating so that both see the same machine; and of the whole lifecycle through orch's Runtime
/// (overlay root over the layer, config.json, shim, exit record, removal).
async fn start_costs(dir: &Path, layer: &Path) -> (Duration, Duration, Duration) {
    require_runc();
    let bundle = bundle(dir, layer, "true-bundle", &["true"]);
    let (shim_state, runc_state) = (dir.join("shim-state"), dir.join("runc-state"));
    std::fs::create_dir_all(&shim_state).unwrap();
    let launcher = ShimLauncher::new(env!("CARGO_BIN_EXE_orch").into());
    let (mut shim_runs, mut runc_runs) = (Vec::new(), Vec::new());
    for i in 0..START_RUNS {
        shim_runs.push(shim_run(
            &launcher,
            &bundle,
            &shim_state,
            &format!("shim-{i}"),
        ));
        runc_runs.push(runc_run(&bundle, &runc_state, &format!("runc-{i}"), false));
    }

    let runtime = Runtime::new(RuntimeConfig {
        containers_dir: dir.join("containers"),
        state_root: dir.join("state"),
        bundles_dir: dir.join("bundles"),
        shim_executable: env!("CARGO_BIN_EXE_orch").into(),
        log_max_bytes: 1 << 20,
        log_max_files: 2,
    })
    .unwrap();
    let mut lifecycles = Vec::new();
    for _ in 0..START_RUNS {
        let id = new_container_id();
        let meta = ContainerMeta {
            id: id.clone(),
            pod_uid: "bench".into(),
            pod_namespace: "default".into(),
            pod_name: "bench".into(),
            container: "c".into(),
            attempt: 0,
            init_container: false,
            image: "busybox".into(),
            image_id: String::new(),
            image_ref: String::new(),
            log_path: dir.join(format!("{id}.log")),
            log_link: None,
            created_at: String::new(),
            spec_hash: String::new(),
            stdin: false,
            stdin_once: false,
            user: None,
            resources: None,
        };
        let started = Instant::now();
        runtime
            .create(
                &meta,
                &bench_config(&["true"], &format!("/orch-bench/{id}")),
                &[layer.to_path_buf()],
            )
            .unwrap();
        runtime.start(&id).await.unwrap();
        runtime.wait(&id).await.unwrap();
        runtime.remove(&id).unwrap();
        lifecycles.push(started.elapsed());
    }
    for runs in [&mut shim_runs, &mut runc_runs, &mut lifecycles] {
        runs.sort();
    }
    (
        percentile(&shim_runs, 0.5),
        percentile(&runc_runs, 0.5),
        percentile(&lifecycles, 0.5),
    )
}

/// The floor under "50 pods at once": 50 `runc run --detach` of `sleep` started together on this machine,
/// each measured from the common start to its container running. Returns (p50, p99).
fn runc_at_once(dir: &Path, layer: &Path) -> (Duration, Duration) {
    let shared = bundle(dir, layer, "sleep-bundle", &["sleep", "100000"]);
    let state = dir.join("runc-state");
    // Each container needs a cgroup of its own, so a config of its own; the root is shared.
    let bundles: Vec<PathBuf> = (0..LATENCY_PODS)
        .map(|i| {
            let own = dir.join(format!("sleep-{i}"));
            std::fs::create_dir_all(&own).unwrap();
            let mut spec = orch::agent::runtime::spec::build(&bench_config(
                &["sleep", "100000"],
                &format!("/orch-bench/sleep-{i}"),
            ))
            .unwrap();
            let mut root = spec.root().clone().unwrap();
            root.set_path(shared.join("rootfs"));
            spec.set_root(Some(root));
            spec.save(own.join("config.json")).unwrap();
            own
        })
        .collect();
    let starts: Vec<_> = bundles
        .into_iter()
        .enumerate()
        .map(|(i, bundle)| {
            let state = state.clone();
            std::thread::spawn(move || runc_run(&bundle, &state, &format!("sleep-{i}"), true))
        })
        .collect();
    let mut took: Vec<Duration> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    for i in 0..LATENCY_PODS {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "--force", &format!("sleep-{i}")])
            .output();
    }
    took.sort();
    (percentile(&took, 0.5), percentile(&took, 0.99))
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the agent benchmark runs real containers: run it as root"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The agent turns IP forwarding on; the host gets its own setting back at the end.
    let forwarding = std::fs::read_to_string(IP_FORWARD).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let work = tempfile::tempdir().unwrap();
        // Dropped after the server (declared later) and before the work dir: when a check fails too.
        let _clean_up = CleanUp {
            dir: work.path().to_path_buf(),
            forwarding,
        };
        let layer = busybox_layer(work.path());

        let (shim, runc, lifecycle) = start_costs(work.path(), &layer).await;
        report(
            "container start, orch shim (median)",
            format!("{:.1} ms", ms(shim)),
            &format!("≤ runc {:.1} ms", ms(runc)),
            shim <= runc.mul_f64(1.1),
        );
        println!(
            "{:<44} {:>16}",
            "  ratio orch shim / runc",
            format!("{:.2}×", shim.as_secs_f64() / runc.as_secs_f64())
        );
        println!(
            "{:<44} {:>16}",
            "  create→remove via Runtime (overlay root)",
            format!("{:.1} ms", ms(lifecycle))
        );
        let (runc_p50, runc_p99) = runc_at_once(work.path(), &layer);
        println!(
            "{:<44} {:>16}",
            "  reference: 50 runc run -d at once p50/p99",
            format!("{:.0}/{:.0} ms", ms(runc_p50), ms(runc_p99))
        );

        let (server, _) = BenchServer::start_with_agent(
            work.path(),
            // A /24 podCIDR holds 253 pods: 1,000 need a /21. Disk thresholds of 1 %: kubelet's
            // 10/15 % would put a build machine's nearly full disk under DiskPressure.
            &[
                "--max-pods",
                "1100",
                "--node-cidr-mask-size",
                "21",
                "--eviction-hard",
                "memory.available<100Mi,nodefs.available<1%,nodefs.inodesFree<1%,imagefs.available<1%",
            ],
        )
        .await;
        let client = server.client();
        let archive = work.path().join("busybox.tar");
        busybox_archive(&layer, &archive);
        let out = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["images", "import"])
            .arg(&archive)
            .arg("--data-dir")
            .arg(server.data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The node is Ready once its podCIDR is assigned and the kubelet started.
        let warm = create_and_wait(&client, &["warmup".to_string()]).await;
        println!(
            "{:<44} {:>16}",
            "  first pod (network setup)",
            format!("{:.1} ms", ms(warm[0]))
        );
        delete_all(&client).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = server.rss_kib();
        let idle_memory_cgroups = memory_cgroups();

        let mut one_by_one = Vec::new();
        for i in 0..LATENCY_PODS {
            one_by_one.extend(create_and_wait(&client, &[format!("seq-{i}")]).await);
        }
        latency_report("one by one", one_by_one);
        let names: Vec<String> = (0..LATENCY_PODS).map(|i| format!("par-{i}")).collect();
        let busy_before = machine_busy();
        let at_once = create_and_wait(&client, &names).await;
        let busy = machine_busy().saturating_sub(busy_before);
        println!(
            "{:<44} {:>16}",
            "  machine CPU per pod, 50 at once",
            format!("{:.1} ms", ms(busy) / LATENCY_PODS as f64)
        );
        let mut sorted = at_once.clone();
        sorted.sort();
        println!(
            "{:<44} {:>16}",
            "  ratio p99 / runc's 50 at once p99",
            format!(
                "{:.2}×",
                percentile(&sorted, 0.99).as_secs_f64() / runc_p99.as_secs_f64()
            )
        );
        latency_report("50 at once", at_once);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let with_pods = server.rss_kib();
        let running = 2 * LATENCY_PODS;
        let server_per_pod = (with_pods.saturating_sub(idle)) as f64 / running as f64;
        let (shims, shims_pss) = shims_pss_kib();
        assert!(shims >= running, "{shims} shims for {running} containers");
        let shim_per_pod = shims_pss as f64 / running as f64;
        let per_pod = server_per_pod + shim_per_pod;
        report(
            "server + agent RSS idle",
            format!("{:.1} MB", idle as f64 / 1024.0),
            "-",
            true,
        );
        report(
            &format!("memory per extra running pod ({running} pods)"),
            format!("{:.0} KB", per_pod),
            "≤ 1 MB",
            per_pod <= 1024.0,
        );
        println!(
            "{:<44} {:>16}",
            "  server + agent RSS per pod",
            format!("{:.0} KB", server_per_pod)
        );
        println!(
            "{:<44} {:>16}",
            "  its container's shim (PSS)",
            format!("{:.0} KB", shim_per_pod)
        );
        delete_all(&client).await;
        // The Deployment is timed on a quiet node, not beside the teardown of the pods above.
        wait_for_released_pods(&server.data_dir()).await;
        // The kernel frees a removed cgroup in the background once nothing is charged to it any more.
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "{:<44} {:>16}",
            format!("  memory cgroups kept after {running} pods removed"),
            memory_cgroups() - idle_memory_cgroups
        );

        let took = deployment_available(&client, 100).await;
        report(
            "100-replica Deployment → 100 available",
            format!("{:.2} s", took.as_secs_f64()),
            "≤ 5 s",
            took <= Duration::from_secs(5),
        );
        client
            .delete(
                "/apis/apps/v1/namespaces/default/deployments/web",
                &json!({"propagationPolicy": "Foreground"}),
            )
            .await
            .unwrap();
        delete_all(&client).await;

        let target: usize = std::env::var("ORCH_BENCH_NODE_PODS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let names: Vec<String> = (0..target).map(|i| format!("many-{i}")).collect();
        let started = Instant::now();
        for chunk in names.chunks(50) {
            create_and_wait(&client, chunk).await;
        }
        report(
            &format!(
                "sleep pods Ready on one node ({:.0} s)",
                started.elapsed().as_secs_f64()
            ),
            format!("{target}"),
            "1,000 pods",
            target >= 1000,
        );
        let deleting = Instant::now();
        delete_all(&client).await;
        // The kubelet releases what the pods had (network, cgroups) before the server goes.
        wait_for_released_pods(&server.data_dir()).await;
        println!(
            "{:<44} {:>16}",
            format!("  {target} pods deleted at once → released"),
            format!("{:.1} s", deleting.elapsed().as_secs_f64())
        );
        server.stop();
    });
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Puts the host back as the benchmark found it when dropped, at the end or when a check failed.
/// Containers outlive the server by design: what is left is killed, and what is mounted under the work
/// dir (the pods' roots and network namespaces, whose veths go with them) unmounted. The node's host rules,
/// its bridge and the pod cgroups go too, and IP forwarding is set back to `forwarding`.
struct CleanUp {
    dir: PathBuf,
    forwarding: String,
}

impl Drop for CleanUp {
    fn drop(&mut self) {
        use orch::agent::network::{remove_host_rules, DEFAULT_BRIDGE};
        remove_host_rules(DEFAULT_BRIDGE);
        if !self.forwarding.is_empty() {
            let _ = std::fs::write(IP_FORWARD, self.forwarding.trim());
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "for f in {0}/data/agent/containers/*/pid; do [ -e \"$f\" ] || continue; kill -9 $(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' $f) 2>/dev/null; done; sleep 1; \
                 grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l; \
                 find /sys/fs/cgroup/*/orch /sys/fs/cgroup/orch -mindepth 1 -depth -type d -path '*/orch/pod*' -exec rmdir {{}} + 2>/dev/null; \
                 ip link del {1} 2>/dev/null",
                self.dir.display(),
                DEFAULT_BRIDGE
            ))
            .status();
    }
}
