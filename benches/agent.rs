//! `make bench` for the node agent (root): pod create → Ready latency with the image present (50 pods one
//! by one, 50 at once), container start through orch's shim against `runc run` on the same bundle, the
//! memory of the server with its embedded agent idle and per extra running pod, and how many `sleep` pods
//! one node runs (`ORCH_BENCH_NODE_PODS`, default 1,000).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ms, percentile, report, BenchServer};
use orch::agent::runtime::{
    new_container_id, ContainerConfig, ContainerMeta, Resources, Runtime, RuntimeConfig,
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

async fn is_ready(client: &Client, name: &str) -> bool {
    let Ok(p) = client
        .get(&format!("/api/v1/namespaces/default/pods/{name}"))
        .await
    else {
        return false;
    };
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Creates the pods and returns, for each, the time from its create call to Ready.
async fn create_and_wait(client: &Client, names: &[String]) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for name in names {
        let client = client.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            client
                .create("/api/v1/namespaces/default/pods", &pod(&name))
                .await
                .unwrap();
            while !is_ready(&client, &name).await {
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "{name} never became Ready"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started.elapsed()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
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

/// create + start + wait + delete of `/bin/true` through orch's shim, and through `runc run` on the same
/// bundle; medians in ms.
async fn start_costs(dir: &Path, layer: &Path) -> (Duration, Duration) {
    let runtime = Runtime::new(RuntimeConfig {
        containers_dir: dir.join("containers"),
        state_root: dir.join("state"),
        shim_executable: env!("CARGO_BIN_EXE_orch").into(),
        log_max_bytes: 1 << 20,
    })
    .unwrap();
    let config = |id: &str| ContainerConfig {
        args: vec!["true".into()],
        env: vec!["PATH=/bin".into(), "HOME=/root".into()],
        hostname: "bench".into(),
        cgroup_path: format!("/orch-bench/{id}"),
        resources: Resources {
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
            ..Default::default()
        },
        seccomp: true,
        ..Default::default()
    };
    let mut orch_runs = Vec::new();
    let mut bundle_for_runc = None;
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
            created_at: String::new(),
            spec_hash: String::new(),
        };
        let started = Instant::now();
        runtime
            .create(&meta, &config(&id), &[layer.to_path_buf()])
            .unwrap();
        runtime.start(&id).await.unwrap();
        runtime.wait(&id).await.unwrap();
        runtime.remove(&id).unwrap();
        orch_runs.push(started.elapsed());
        if bundle_for_runc.is_none() {
            // The same config.json (with a rootfs copy, since ours is an overlay mount) for runc.
            let spec = orch::agent::runtime::spec::build(&config("runc")).unwrap();
            let bundle = dir.join("runc-bundle");
            std::fs::create_dir_all(&bundle).unwrap();
            Command::new("cp")
                .args(["-a"])
                .arg(layer)
                .arg(bundle.join("rootfs"))
                .status()
                .unwrap();
            spec.save(bundle.join("config.json")).unwrap();
            bundle_for_runc = Some(bundle);
        }
    }
    let bundle = bundle_for_runc.unwrap();
    assert!(
        Command::new("runc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "missing runc: run make test-deps (apt-get install runc)"
    );
    let mut runc_runs = Vec::new();
    for i in 0..START_RUNS {
        let started = Instant::now();
        let out = Command::new("runc")
            .args(["--root"])
            .arg(dir.join("runc-state"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("bench-{i}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "runc run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        runc_runs.push(started.elapsed());
    }
    orch_runs.sort();
    runc_runs.sort();
    (percentile(&orch_runs, 0.5), percentile(&runc_runs, 0.5))
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the agent benchmark runs real containers: run it as root"
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let work = tempfile::tempdir().unwrap();
        let layer = busybox_layer(work.path());

        let (shim, runc) = start_costs(work.path(), &layer).await;
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

        let (server, _) = BenchServer::start_with_agent(
            work.path(),
            // A /24 podCIDR holds 253 pods: 1,000 need a /21.
            &["--max-pods", "1100", "--node-cidr-mask-size", "21"],
        )
        .await;
        let client = server.client().await;
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

        let mut one_by_one = Vec::new();
        for i in 0..LATENCY_PODS {
            one_by_one.extend(create_and_wait(&client, &[format!("seq-{i}")]).await);
        }
        latency_report("one by one", one_by_one);
        let names: Vec<String> = (0..LATENCY_PODS).map(|i| format!("par-{i}")).collect();
        latency_report("50 at once", create_and_wait(&client, &names).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let with_pods = server.rss_kib();
        let running = 2 * LATENCY_PODS;
        let per_pod = (with_pods.saturating_sub(idle)) as f64 / running as f64;
        report(
            "server + agent RSS idle",
            format!("{:.1} MB", idle as f64 / 1024.0),
            "-",
            true,
        );
        report(
            &format!("RSS per extra running pod ({running} pods)"),
            format!("{:.0} KB", per_pod),
            "≤ 1 MB",
            per_pod <= 1024.0,
        );
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
        delete_all(&client).await;
        server.stop();
        clean_up(work.path());
    });
}

/// Containers outlive the server by design: kill what is left and unmount under the work dir.
fn clean_up(dir: &Path) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for f in {0}/data/agent/containers/*/pid; do kill -9 $(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' $f) 2>/dev/null; done; sleep 1; \
             grep -o ' {0}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            dir.display()
        ))
        .status();
}
