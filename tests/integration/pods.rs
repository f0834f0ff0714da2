//! Real pods on a real node, as root: `orch server` with its embedded agent pulls from a loopback
//! `docker-registry` with an imagePullSecret, runs init and app containers under orch shims, and reports
//! what kubectl shows — Running/Ready, CrashLoopBackOff, ImagePullBackOff with the registry's message,
//! OOMKilled — while container output lands in CRI log files. Killing the server with `kill -9` leaves
//! the containers running, and the restarted agent adopts them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use orch::agent::kubelet::pod_cgroup::{self, controller_dir, ROOT};

use crate::harness::{clean_up_containers, free_port, mount_tmpfs, ready_nodes, Server, TestMount};
use crate::registry::{busybox_archive, busybox_archive_with, push_busybox, Registry};
use crate::runtime::require_root;

/// Every agent test uses the host's `orch0` bridge and the first podCIDR: one at a time.
static NODE: Mutex<()> = Mutex::new(());

fn node_lock() -> std::sync::MutexGuard<'static, ()> {
    NODE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The real node to this test alone, Ready, with busybox imported: where most pod tests start.
fn busybox_node() -> (std::sync::MutexGuard<'static, ()>, Server) {
    require_root();
    let lock = node_lock();
    let s = Server::with_agent("", &[]);
    ready_node(&s);
    import_busybox(&s);
    (lock, s)
}

fn jsonpath(s: &Server, pod: &str, path: &str) -> String {
    let out = s.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the pod's first container waits with CreateContainerConfigError; its waiting state.
fn config_error_of(s: &Server, pod: &str) -> String {
    let waiting = "{.status.containerStatuses[0].state.waiting}";
    s.eventually(
        &format!("{pod} waits on its config"),
        Duration::from_secs(30),
        || jsonpath(s, pod, waiting).contains("CreateContainerConfigError"),
    );
    jsonpath(s, pod, waiting)
}

/// A file of the pod cgroup of pod `uid` in `controller`'s hierarchy, trimmed.
fn pod_cgroup_file(uid: &str, controller: &str, file: &str) -> String {
    cgroup_file(&pod_cgroup::path(uid), controller, file)
}

/// A file of the cgroup at `relative`, on the hierarchy of `controller`.
fn cgroup_file(relative: &str, controller: &str, file: &str) -> String {
    let path = controller_dir(Path::new(ROOT), controller, relative).join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// `kubectl apply` of `manifest`, written to the test's directory as `file_name`.
fn apply(s: &Server, file_name: &str, manifest: &str) {
    let file = s.write(file_name, manifest);
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
}

/// Waits (up to a minute) for the pod's Ready condition.
fn wait_ready(s: &Server, pod: &str) {
    s.eventually(&format!("{pod} is Ready"), Duration::from_secs(60), || {
        jsonpath(s, pod, "{.status.conditions[?(@.type==\"Ready\")].status}") == "True"
    });
}

fn ready_node(s: &Server) {
    s.eventually("the node is Ready", Duration::from_secs(60), || {
        jsonpath_node(s).contains("True")
    });
}

fn jsonpath_node(s: &Server) -> String {
    node_jsonpath(s, "{.status.conditions[?(@.type==\"Ready\")].status}")
}

/// `path` of the test's node, as kubectl's jsonpath output prints it.
fn node_jsonpath(s: &Server, path: &str) -> String {
    let out = s.kubectl(&["get", "node", "node", "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn log_of(s: &Server, pod: &str, container: &str, attempt: u32) -> String {
    let uid = jsonpath(s, pod, "{.metadata.uid}");
    let path = s
        .dir
        .path()
        .join("log/pods")
        .join(format!("default_{pod}_{uid}"))
        .join(container)
        .join(format!("{attempt}.log"));
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn registry_with_busybox() -> (Registry, String) {
    let registry = Registry::start(Some(("user", "pass")));
    push_busybox(&registry, "busybox:latest");
    let image = format!("{}/busybox:latest", registry.host());
    (registry, image)
}

#[test]
fn pods_pull_with_a_secret_run_init_containers_and_log_their_output() {
    require_root();
    let _node = node_lock();
    let (registry, image) = registry_with_busybox();
    let s = Server::with_agent("", &[]);
    ready_node(&s);
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.host()),
        "--docker-username=user",
        "--docker-password=pass",
    ]);
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "wrongcred",
        &format!("--docker-server={}", registry.host()),
        "--docker-username=user",
        "--docker-password=wrong",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "app-secret",
        "--from-literal=password=s3cret",
    ]);
    s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=GREETING=hello",
    ]);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  imagePullSecrets: [{{name: regcred}}]
  initContainers:
  - name: prepare
    image: {image}
    command: [sh, -c, "echo prepared > /work/ready"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: {image}
    command: [sh, -c, "cat /work/ready; echo $GREETING $PASSWORD from $(hostname); sleep 1000"]
    envFrom: [{{configMapRef: {{name: settings}}}}]
    env: [{{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: app-secret, key: password}}}}}}]
    volumeMounts: [{{name: work, mountPath: /work}}]
  volumes: [{{name: work, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: bad-pull}}
spec:
  imagePullSecrets: [{{name: wrongcred}}]
  containers: [{{name: app, image: "{image}"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: crash}}
spec:
  imagePullSecrets: [{{name: regcred}}]
  containers:
  - name: app
    image: {image}
    command: [sh, -c, "echo boom; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  imagePullSecrets: [{{name: regcred}}]
  containers:
  - name: app
    image: {image}
    command: [sh, -c, "tail /dev/zero"]
    resources: {{limits: {{memory: 16Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: farewell}}
spec:
  restartPolicy: Never
  imagePullSecrets: [{{name: regcred}}]
  containers:
  - name: default-path
    image: {image}
    command: [sh, -c, "echo done well > /dev/termination-log"]
  - name: own-path
    image: {image}
    command: [sh, -c, "echo failed on purpose > /tmp/reason; exit 3"]
    terminationMessagePath: /tmp/reason
    securityContext: {{runAsUser: 1000}}
  - name: from-log
    image: {image}
    command: [sh, -c, "echo last words; exit 2"]
    terminationMessagePolicy: FallbackToLogsOnError
"#
    );
    apply(&s, "pods.yaml", &manifest);

    s.eventually("web is Ready", Duration::from_secs(90), || {
        jsonpath(
            &s,
            "web",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    assert_eq!(jsonpath(&s, "web", "{.status.phase}"), "Running");
    let ip = jsonpath(&s, "web", "{.status.podIP}");
    assert!(ip.starts_with("10.42.0."), "pod IP {ip:?}");
    assert_eq!(
        jsonpath(
            &s,
            "web",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        ),
        "Completed"
    );
    assert!(jsonpath(&s, "web", "{.status.containerStatuses[0].imageID}").contains("@sha256:"));
    s.eventually("web's output in its log", Duration::from_secs(20), || {
        let log = log_of(&s, "web", "app", 0);
        log.contains(" stdout F prepared") && log.contains(" stdout F hello s3cret from web")
    });
    // Where log collectors find it, as on a kubelet node: /var/log/containers/<pod>_<ns>_<container>-<id>.log.
    let id = jsonpath(&s, "web", "{.status.containerStatuses[0].containerID}");
    let id = id.split_once("://").expect("runtime://id").1;
    let link = s
        .dir
        .path()
        .join(format!("log/containers/web_default_app-{id}.log"));
    assert_eq!(
        std::fs::read_to_string(&link).unwrap(),
        log_of(&s, "web", "app", 0)
    );
    // kubectl logs through the API server's pods/log.
    let logs = s.ok(&["logs", "web", "-c", "app"]);
    assert_eq!(logs, "prepared\nhello s3cret from web\n");
    assert_eq!(s.ok(&["logs", "web", "-c", "prepare"]), "");
    let stamped = s.ok(&["logs", "web", "-c", "app", "--tail=1", "--timestamps"]);
    assert!(
        stamped.ends_with("Z hello s3cret from web\n"),
        "{stamped:?}"
    );
    assert!(s
        .fails(&["logs", "web", "-c", "nope"])
        .contains("container nope is not valid for pod web"));
    let describe = s.ok(&["describe", "pod", "web"]);
    for event in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(describe.contains(event), "{event} missing in:\n{describe}");
    }
    let pulled = describe
        .lines()
        .find(|l| l.contains("Successfully pulled image"))
        .unwrap_or_else(|| panic!("no pull event in:\n{describe}"));
    assert!(
        pulled.contains(" including waiting). Image size: ") && pulled.ends_with(" bytes."),
        "{pulled}"
    );
    // As kubelet's: each names the container it is about and the node it came from.
    let node = s.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    // As k3s: the server's own node has the control-plane roles.
    let roles = s.ok(&["get", "nodes", "--no-headers", "-o", "wide"]);
    assert_eq!(
        roles.split_whitespace().nth(2),
        Some("control-plane,master"),
        "{roles}"
    );
    let started = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,reason=Started",
        "--no-headers",
        "-o",
        "custom-columns=SUBOBJECT:.involvedObject.fieldPath,HOST:.source.host,MESSAGE:.message",
    ]);
    let mut started: Vec<String> = started
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    started.sort();
    assert_eq!(
        started,
        [
            format!("spec.containers{{app}} {node} Started container app"),
            format!("spec.initContainers{{prepare}} {node} Started container prepare"),
        ]
    );

    s.eventually(
        "bad-pull backs off with the registry's message",
        Duration::from_secs(60),
        || {
            let reason = jsonpath(
                &s,
                "bad-pull",
                "{.status.containerStatuses[0].state.waiting.reason}",
            );
            reason == "ImagePullBackOff" || reason == "ErrImagePull"
        },
    );
    let describe = s.ok(&["describe", "pod", "bad-pull"]);
    assert!(
        describe.contains("401 Unauthorized") && describe.contains("authentication required"),
        "{describe}"
    );
    s.eventually("ImagePullBackOff", Duration::from_secs(30), || {
        jsonpath(
            &s,
            "bad-pull",
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "ImagePullBackOff"
    });
    // As kubelet words it: the back-off names the pull error it waits out.
    let backing_off = jsonpath(
        &s,
        "bad-pull",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        backing_off.starts_with(&format!(
            "Back-off pulling image \"{image}\": ErrImagePull: "
        )) && backing_off.contains("401 Unauthorized"),
        "{backing_off}"
    );
    s.eventually("the back-off events", Duration::from_secs(30), || {
        let describe = s.ok(&["describe", "pod", "bad-pull"]);
        describe.contains("Error: ImagePullBackOff")
            && describe.contains(&format!("Back-off pulling image \"{image}\""))
    });

    s.eventually("crash loops", Duration::from_secs(60), || {
        let restarts: u32 = jsonpath(&s, "crash", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .unwrap_or(0);
        restarts >= 2
            && jsonpath(
                &s,
                "crash",
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == "CrashLoopBackOff"
    });
    assert_eq!(
        jsonpath(
            &s,
            "crash",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        ),
        "1"
    );
    // The logs of runs older than the previous one go with their containers, as kubelet removes them.
    let uid = jsonpath(&s, "crash", "{.metadata.uid}");
    let log_dir = s
        .dir
        .path()
        .join(format!("log/pods/default_crash_{uid}/app"));
    let mut logs = Vec::new();
    s.eventually(
        "only the last two runs keep logs",
        Duration::from_secs(30),
        || {
            logs = file_names(&log_dir);
            logs.len() == 2 && !logs.iter().any(|l| l == "0.log")
        },
    );
    for log in &logs {
        let text = std::fs::read_to_string(log_dir.join(log)).unwrap();
        assert!(text.contains(" stdout F boom"), "{log}: {text}");
    }
    assert_eq!(s.ok(&["logs", "crash", "--previous"]), "boom\n");
    // Following a run that has exited returns what it wrote and ends.
    assert!(s.ok(&["logs", "-f", "crash"]).starts_with("boom"));
    let message = jsonpath(
        &s,
        "crash",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(
        message.starts_with("back-off 10s") || message.starts_with("back-off 20s"),
        "{message}"
    );
    assert!(s
        .ok(&["describe", "pod", "crash"])
        .contains("Back-off restarting failed container app"));

    s.eventually("hog is OOM-killed", Duration::from_secs(60), || {
        jsonpath(&s, "hog", "{.status.phase}") == "Failed"
    });
    assert_eq!(
        jsonpath(
            &s,
            "hog",
            "{.status.containerStatuses[0].state.terminated.reason}"
        ),
        "OOMKilled"
    );
    assert_eq!(
        jsonpath(
            &s,
            "hog",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "137"
    );

    // Termination messages: from the default file, from a file of the container's choosing written by
    // a user other than root, and from the log's end when the file is empty and the container failed.
    s.eventually("farewell's containers end", Duration::from_secs(60), || {
        jsonpath(&s, "farewell", "{.status.phase}") == "Failed"
    });
    let message = |container: &str| {
        jsonpath(
            &s,
            "farewell",
            &format!(
                "{{.status.containerStatuses[?(@.name==\"{container}\")].state.terminated.message}}"
            ),
        )
    };
    assert_eq!(message("default-path"), "done well\n");
    assert_eq!(message("own-path"), "failed on purpose\n");
    assert!(
        message("from-log").contains("last words"),
        "{}",
        message("from-log")
    );

    // Deleting a pod stops its container (sleep ignores SIGTERM as pid 1: the grace period ends it).
    s.ok(&[
        "delete",
        "pod",
        "web",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ]);
    let running = std::fs::read_dir(s.data_dir().join("agent/containers"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("meta.json")).is_ok_and(|m| m.contains("\"web\""))
        })
        .count();
    assert_eq!(running, 0, "web's containers are removed");
}

#[test]
fn containers_survive_a_killed_agent_and_are_adopted_after_restart() {
    // An image imported from a tarball runs with imagePullPolicy Never: no registry at all.
    let (_node, mut s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    readinessProbe: {exec: {command: ["true"]}, initialDelaySeconds: 4, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: finisher}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sh, -c, "sleep 6; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: counter}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "for i in 1 2 3; do echo line $i; sleep 1; done"]
"#;
    apply(&s, "pods.yaml", manifest);
    for pod in ["survivor", "finisher"] {
        s.eventually(&format!("{pod} runs"), Duration::from_secs(60), || {
            jsonpath(&s, pod, "{.status.phase}") == "Running"
        });
    }
    // `kubectl logs -f` streams a running container's output until it exits.
    s.eventually("counter runs", Duration::from_secs(30), || {
        jsonpath(&s, "counter", "{.status.phase}") == "Running"
    });
    assert_eq!(s.ok(&["logs", "-f", "counter"]), "line 1\nline 2\nline 3\n");
    let ready_since = r#"{.status.conditions[?(@.type=="Ready")].lastTransitionTime}"#;
    s.eventually("survivor is ready", Duration::from_secs(30), || {
        jsonpath(&s, "survivor", "{.status.containerStatuses[0].ready}") == "true"
    });
    let survivor_ready_since = jsonpath(&s, "survivor", ready_since);
    let survivor_id = jsonpath(&s, "survivor", "{.status.containerStatuses[0].containerID}");
    let id = survivor_id.trim_start_matches("orch://").to_string();
    let pid_file = s.data_dir().join("agent/containers").join(&id).join("pid");
    let pid: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pid_file).unwrap()).unwrap();
    let pid = pid["pid"].as_i64().unwrap() as i32;
    let launchers = shim_launchers_of(s.pid());
    assert_eq!(launchers.len(), 1, "one shim launcher per agent");

    s.kill(); // SIGKILL: server and embedded agent gone at once
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
        "the container outlived its agent"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", launchers[0])).exists(),
        "the shim launcher ended with its agent"
    );
    // The runtime state is on the tmpfs the agent mounted on its run dir (on disk here), which the
    // restarted agent must take as it is rather than cover with a new one.
    let run_dir = s.dir.path().join("run");
    assert_eq!(
        nix::sys::statfs::statfs(&run_dir)
            .unwrap()
            .filesystem_type(),
        nix::sys::statfs::TMPFS_MAGIC
    );
    assert!(run_dir.join("containers").join(&id).is_dir());
    // A pod cgroup the killed agent had not removed yet, of a pod that is gone.
    let orphan = pod_cgroup::path("0f0f0f0f-dead-4bad-8bad-0f0f0f0f0f0f");
    let orphan_dirs: Vec<_> = ["memory", "cpu"]
        .iter()
        .map(|c| controller_dir(Path::new(ROOT), c, &orphan))
        .collect();
    for dir in &orphan_dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    s.spawn();
    s.eventually(
        "finisher's exit is reported",
        Duration::from_secs(60),
        || jsonpath(&s, "finisher", "{.status.phase}") == "Failed",
    );
    assert_eq!(
        jsonpath(
            &s,
            "finisher",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3"
    );
    // Give the restarted agent a few syncs: the survivor must not be restarted.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        jsonpath(&s, "survivor", "{.status.containerStatuses[0].containerID}"),
        survivor_id
    );
    assert_eq!(
        jsonpath(
            &s,
            "survivor",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(jsonpath(&s, "survivor", "{.status.phase}"), "Running");
    // Its readiness probe's initial delay counts from the container's start, not the agent's, and it
    // stays ready meanwhile: the Ready condition never changed (not even False for a moment).
    assert_eq!(
        jsonpath(&s, "survivor", "{.status.containerStatuses[0].ready}"),
        "true"
    );
    assert_eq!(jsonpath(&s, "survivor", ready_since), survivor_ready_since);
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
    // Housekeeping removes the orphan's cgroup, and only it.
    s.eventually(
        "the orphaned pod cgroup is removed",
        Duration::from_secs(30),
        || orphan_dirs.iter().all(|d| !d.exists()),
    );
    let survivor_uid = jsonpath(&s, "survivor", "{.metadata.uid}");
    assert!(controller_dir(Path::new(ROOT), "memory", &pod_cgroup::path(&survivor_uid)).is_dir());
}

/// The pids of the `orch shim-launcher` children of process `parent`.
fn shim_launchers_of(parent: u32) -> Vec<u32> {
    // Each thread lists the children it started.
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).unwrap();
    let children: Vec<String> = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .collect();
    children
        .iter()
        .flat_map(|list| list.split_whitespace())
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == b"shim-launcher")
            })
        })
        .collect()
}

fn import_busybox(s: &Server) {
    import_busybox_into(s, &s.data_dir());
}

fn import_busybox_into(s: &Server, data_dir: &std::path::Path) {
    let archive = s.dir.path().join("busybox.tar");
    busybox_archive(&archive);
    import_archive(&archive, data_dir);
}

/// `orch images import` of `archive` into the node whose data directory is `data_dir`.
fn import_archive(archive: &Path, data_dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["images", "import"])
        .arg(archive)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn probes_decide_readiness_and_restarts_and_hooks_run() {
    let (_node, s) = busybox_node();
    let host_dir = s.dir.path().join("hostdir");
    std::fs::create_dir_all(&host_dir).unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "sleep 3; echo ok > /ready; sleep 1000"]
    readinessProbe: {{exec: {{command: [cat, /ready]}}, periodSeconds: 1, failureThreshold: 1}}
  - name: listener
    image: busybox:latest
    imagePullPolicy: Never
    command: [nc, -ll, -p, "8080", -e, "true"]
    ports: [{{name: service, containerPort: 8080}}]
    readinessProbe: {{tcpSocket: {{port: service}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: live}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "sleep 2; echo dead > /dead; sleep 1000"]
    livenessProbe: {{exec: {{command: [sh, -c, "! cat /dead"]}}, periodSeconds: 1, failureThreshold: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "sleep 1; cat /host/post; sleep 1000"]
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /host/post"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo stopping > /host/prestop"]}}}}
  - name: web
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "exec httpd -f -vv -p 8081 -h /host 2>>/host/web.log"]
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      preStop: {{httpGet: {{path: /missing, port: 8081}}}}
  - name: failing
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo s3cret; exit 3"]}}}}
  - name: slow
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    lifecycle:
      preStop: {{exec: {{command: [sleep, "60"]}}}}
  - name: tcp
    image: busybox:latest
    imagePullPolicy: Never
    command: [nc, -ll, -p, "8082", -e, "true"]
    lifecycle:
      preStop: {{tcpSocket: {{port: 8082}}}}
  volumes: [{{name: host, hostPath: {{path: {host}, type: Directory}}}}]
"#,
        host = host_dir.display()
    );
    apply(&s, "probes.yaml", &manifest);

    s.eventually(
        "probed runs but is not ready yet",
        Duration::from_secs(60),
        || jsonpath(&s, "probed", "{.status.phase}") == "Running",
    );
    assert_eq!(
        jsonpath(
            &s,
            "probed",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "False",
        "the readiness probe fails for the first 3 seconds"
    );
    s.eventually("probed becomes ready", Duration::from_secs(30), || {
        jsonpath(
            &s,
            "probed",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "True"
    });
    assert_eq!(
        jsonpath(&s, "probed", "{.status.containerStatuses[*].ready}"),
        "true true"
    );
    // kubelet shows an exec probe's output, nothing else.
    let described = s.ok(&["describe", "pod", "probed"]);
    assert!(
        described.contains(
            "Readiness probe failed: cat: can't open '/ready': No such file or directory"
        ),
        "{described}"
    );

    s.eventually(
        "live is restarted by its liveness probe",
        Duration::from_secs(60),
        || {
            jsonpath(&s, "live", "{.status.containerStatuses[0].restartCount}")
                .parse::<u32>()
                .unwrap_or(0)
                >= 1
        },
    );
    let described = s.ok(&["describe", "pod", "live"]);
    assert!(
        described.contains("Container app failed liveness probe, will be restarted")
            && described.contains("Liveness probe failed: dead"),
        "{described}"
    );

    s.eventually(
        "the postStart hook ran before the app read its file",
        Duration::from_secs(30),
        || log_of(&s, "hooks", "app", 0).contains(" stdout F started"),
    );
    s.ok(&["delete", "pod", "hooks", "--wait=true", "--timeout=60s"]);
    assert_eq!(
        std::fs::read_to_string(host_dir.join("prestop")).unwrap_or_default(),
        "stopping\n",
        "the preStop hook ran before the container stopped"
    );
    // An HTTP hook fails only when its request does; kubelet takes any answer, a 404 too.
    let web_log = std::fs::read_to_string(host_dir.join("web.log")).unwrap_or_default();
    assert!(
        web_log.contains("url:/missing") && web_log.contains("response:404"),
        "the web container's preStop GET reached it: {web_log}"
    );
    // A failed hook is an event without its why: a hook's command and output can hold secrets. One cut
    // short by the end of the grace period (slow's) is no failure. kubelet cannot run a tcpSocket hook,
    // though its port listens.
    let failed_hooks = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hooks,reason=FailedPreStopHook",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.fieldPath}={.message};{end}",
    ]);
    let mut failed_hooks: Vec<&str> = failed_hooks.split_terminator(';').collect();
    failed_hooks.sort_unstable();
    assert_eq!(
        failed_hooks,
        [
            "spec.containers{failing}=PreStopHook failed",
            "spec.containers{tcp}=PreStopHook failed"
        ]
    );
    assert!(!s.ok(&["get", "events", "-o", "yaml"]).contains("s3cret"));
}

#[test]
fn a_pods_containers_share_namespaces_shm_and_cgroup_limits() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: pair}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "echo from-a > /dev/shm/token; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; sleep 1000"]
    resources: {requests: {cpu: 50m}, limits: {cpu: 100m, memory: 20Mi}}
  - name: b
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "until cat /dev/shm/token 2>/dev/null; do sleep 0.1; done; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; sleep 1000"]
    resources: {requests: {cpu: 100m}, limits: {cpu: 200m, memory: 12Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname; sleep 1000"]
"#;
    apply(&s, "pair.yaml", manifest);
    wait_ready(&s, "pair");
    let logs = |container: &str| {
        let mut text = String::new();
        s.eventually(
            &format!("{container} printed its namespaces"),
            Duration::from_secs(20),
            || {
                text = s.ok(&["logs", "pair", "-c", container]);
                text.lines().count() >= 3
            },
        );
        text
    };
    let (a, b) = (logs("a"), logs("b"));
    let a_lines: Vec<&str> = a.lines().collect();
    let b_lines: Vec<&str> = b.lines().collect();
    assert_eq!(
        b_lines[0], "from-a",
        "b reads what a wrote to the pod's /dev/shm"
    );
    assert_eq!(
        a_lines[..3],
        b_lines[1..4],
        "same IPC and UTS namespaces, same hostname"
    );
    assert!(
        a_lines[0].starts_with("ipc:[") && a_lines[1].starts_with("uts:["),
        "{a}"
    );
    assert_eq!(a_lines[2], "pair");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_ne!(
        a_lines[0],
        host_ipc.to_string_lossy(),
        "not the host's IPC namespace"
    );

    // The pod cgroup holds the sum of its containers' limits, as kubelet sets it.
    let uid = jsonpath(&s, "pair", "{.metadata.uid}");
    if Path::new(ROOT).join("memory").is_dir() {
        assert_eq!(
            pod_cgroup_file(&uid, "memory", "memory.limit_in_bytes"),
            (32 << 20).to_string()
        );
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.cfs_quota_us"), "30000");
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.shares"), "153");
    } else {
        assert_eq!(
            pod_cgroup_file(&uid, "memory", "memory.max"),
            (32 << 20).to_string()
        );
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.max"), "30000 100000");
    }

    // A hostNetwork pod has the node's network and UTS namespaces, hostname and address.
    s.eventually(
        "hostnet printed its namespaces",
        Duration::from_secs(60),
        || s.ok(&["logs", "hostnet"]).lines().count() >= 3,
    );
    let host = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    let expected = format!(
        "{}\n{}\n{}\n",
        host("net").display(),
        host("uts").display(),
        nix::unistd::gethostname().unwrap().to_string_lossy()
    );
    assert_eq!(s.ok(&["logs", "hostnet"]), expected);
    assert_eq!(jsonpath(&s, "hostnet", "{.status.podIP}"), "127.0.0.1");

    // Deleting the pod releases its namespaces, /dev/shm and cgroup. While the directory of network
    // namespaces is read-only, removing the pod's network fails; housekeeping tries again later.
    let run_dir = s.dir.path().join("run");
    let netns_dir = run_dir.join("netns");
    let remount = |flags: nix::mount::MsFlags| {
        let flags = flags | nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(None::<&str>, &netns_dir, None::<&str>, flags, None::<&str>).unwrap();
    };
    let bridge_ports = Path::new("/sys/class/net")
        .join(orch::agent::network::DEFAULT_BRIDGE)
        .join("brif");
    assert_eq!(
        file_names(&bridge_ports).len(),
        1,
        "pair's veth on the bridge"
    );
    remount(nix::mount::MsFlags::MS_RDONLY);
    s.ok(&["delete", "pod", "pair", "--wait=true"]);
    // The pod's other namespaces go after its network in the release of the pod.
    s.eventually(
        "the pod's IPC and UTS namespace files are gone",
        Duration::from_secs(30),
        || !run_dir.join("ipcns").join(&uid).exists() && !run_dir.join("utsns").join(&uid).exists(),
    );
    assert!(netns_dir.join(&uid).exists());
    remount(nix::mount::MsFlags::empty());
    s.eventually(
        "the pod's network namespace file is gone",
        Duration::from_secs(30),
        || !netns_dir.join(&uid).exists(),
    );
    // Its veth pair goes with the namespace (hostnet has none): the bridge has no port left.
    s.eventually(
        "the pod's veth is off the bridge",
        Duration::from_secs(30),
        || file_names(&bridge_ports).is_empty(),
    );
    // Its logs went with it, and their links.
    assert!(!s
        .dir
        .path()
        .join(format!("log/pods/default_pair_{uid}"))
        .exists());
    let links = file_names(&s.dir.path().join("log/containers"));
    assert!(links.iter().all(|l| !l.starts_with("pair_")), "{links:?}");
    assert!(
        links.iter().any(|l| l.starts_with("hostnet_default_app-")),
        "{links:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&uid),
        "a mount of the deleted pod is left: {mounts}"
    );
    assert!(!controller_dir(Path::new(ROOT), "memory", &pod_cgroup::path(&uid)).exists());
}

#[test]
fn container_logs_rotate_at_the_size_and_count_set_by_kubelet_args() {
    use std::io::{BufRead, Read};
    require_root();
    let _node = node_lock();
    // As k3s users cap logs on a small disk.
    let s = Server::with_agent(
        "",
        &[
            "--kubelet-arg",
            "container-log-max-size=1Ki",
            "--kubelet-arg",
            "container-log-max-files=3",
        ],
    );
    ready_node(&s);
    import_busybox(&s);
    // The last line is not UTF-8 (Latin-1 "café"): a program may print any bytes.
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "echo waiting; until test -e /go; do sleep 0.1; done; i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); sleep 0.05; done; printf 'caf\\351\\n'"]
"#;
    apply(&s, "chatty.yaml", manifest);
    wait_ready(&s, "chatty");
    let mut expected: Vec<u8> = (0..100)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    expected.extend_from_slice(b"caf\xe9\n");
    // Followed from before the first rotation to the container's end, through every rotation (a
    // part is rotated away about every second, while the follower reads five times a second).
    let mut follow = s
        .kubectl_command(&["logs", "-f", "chatty"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut followed = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut first = Vec::new();
    followed.read_until(b'\n', &mut first).unwrap();
    assert_eq!(first, b"waiting\n");
    s.ok(&["exec", "chatty", "--", "touch", "/go"]);
    let mut rest = Vec::new();
    followed.read_to_end(&mut rest).unwrap();
    follow.wait().unwrap();
    assert!(
        rest == expected,
        "followed: {}",
        String::from_utf8_lossy(&rest)
    );
    let logs = s.kubectl(&["logs", "chatty"]);
    assert!(logs.status.success(), "{logs:?}");
    assert!(
        logs.stdout.ends_with(b"line 99\ncaf\xe9\n"),
        "{}",
        String::from_utf8_lossy(&logs.stdout)
    );
    let uid = jsonpath(&s, "chatty", "{.metadata.uid}");
    let dir = s
        .dir
        .path()
        .join(format!("log/pods/default_chatty_{uid}/app"));
    let files = file_names(&dir);
    assert_eq!(files, ["0.log", "0.log.1", "0.log.2"]);
    for file in &files {
        let size = std::fs::metadata(dir.join(file)).unwrap().len();
        assert!(size <= 1024 + 64, "{file} has {size} bytes");
    }
    // The oldest part kept is older than the newer one, and the first lines are gone.
    let first_line = |file: &str| -> u32 {
        let text = String::from_utf8_lossy(&std::fs::read(dir.join(file)).unwrap()).into_owned();
        let line = text.lines().next().unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(first_line("0.log.2") < first_line("0.log.1"));
    assert!(first_line("0.log.1") < first_line("0.log"));
    assert!(first_line("0.log.2") > 0);
}

#[test]
fn node_pressure_taints_the_node_and_evicts_its_pods_but_not_critical_ones() {
    require_root();
    let _node = node_lock();
    // Less than 100Ti of memory available: this node is always under memory pressure. The threshold
    // comes as k3s users pass kubelet flags.
    let s = Server::with_agent(
        "",
        &["--kubelet-arg", "eviction-hard=memory.available<100Ti"],
    );
    ready_node(&s);
    import_busybox(&s);
    let condition = |field: &str| {
        node_jsonpath(
            &s,
            &format!("{{.status.conditions[?(@.type==\"MemoryPressure\")].{field}}}"),
        )
    };
    s.eventually("MemoryPressure=True", Duration::from_secs(30), || {
        condition("status") == "True"
    });
    assert_eq!(condition("reason"), "KubeletHasInsufficientMemory");
    // kubectl describe node finds the kubelet's events (about the node by name) and the node
    // controller's (by UID), in the order they came.
    s.eventually("the node's events", Duration::from_secs(30), || {
        let describe = s.ok(&["describe", "node", "node"]);
        let events = describe.split("Events:").nth(1).unwrap_or_default();
        let at = |text: &str| events.find(text);
        [
            "Starting kubelet.",
            "Node node status is now: NodeHasSufficientMemory",
            "Node node status is now: NodeReady",
            "Node node event: Registered Node node in Controller",
            "Node node status is now: NodeHasInsufficientMemory",
            "Attempting to reclaim memory",
        ]
        .iter()
        .all(|text| at(text).is_some())
            && at("NodeHasSufficientMemory") < at("NodeHasInsufficientMemory")
    });
    s.eventually("the memory-pressure taint", Duration::from_secs(30), || {
        s.ok(&["get", "node", "node", "-o", "jsonpath={.spec.taints}"])
            .contains(r#""effect":"NoSchedule","key":"node.kubernetes.io/memory-pressure""#)
    });

    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: blocked}
spec:
  containers: [{name: app, image: busybox:latest, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  tolerations: [{key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: critical}
spec:
  priorityClassName: system-node-critical
  terminationGracePeriodSeconds: 1
  tolerations: [{key: node.kubernetes.io/memory-pressure, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
"#;
    apply(&s, "pressure.yaml", manifest);
    // A BestEffort pod bound to the node without the scheduler is refused by the kubelet itself.
    let bypass = r#"apiVersion: v1
kind: Pod
metadata: {name: bypass}
spec:
  nodeName: node
  containers: [{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}]
"#;
    apply(&s, "bypass.yaml", bypass);
    s.eventually("bypass is rejected", Duration::from_secs(30), || {
        jsonpath(&s, "bypass", "{.status.phase}") == "Failed"
    });
    assert_eq!(jsonpath(&s, "bypass", "{.status.reason}"), "Evicted");
    assert_eq!(
        jsonpath(&s, "bypass", "{.status.message}"),
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    assert_eq!(jsonpath(&s, "bypass", "{.status.containerStatuses}"), "");

    // The pod without the toleration stays Pending, for the reason kubectl shows.
    s.eventually("blocked is unschedulable", Duration::from_secs(30), || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=blocked",
        ])
        .contains("untolerated taint {node.kubernetes.io/memory-pressure: }")
    });
    assert_eq!(jsonpath(&s, "blocked", "{.status.phase}"), "Pending");

    // The pod that tolerated the taint is evicted: killed at once and failed as kubelet fails it.
    s.eventually("victim is evicted", Duration::from_secs(60), || {
        jsonpath(&s, "victim", "{.status.reason}") == "Evicted"
    });
    assert_eq!(jsonpath(&s, "victim", "{.status.phase}"), "Failed");
    let message = jsonpath(&s, "victim", "{.status.message}");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 100Ti, available: "
        ),
        "{message}"
    );
    assert_eq!(
        jsonpath(
            &s,
            "victim",
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
        ),
        "TerminationByKubelet"
    );
    s.eventually(
        "victim's container was killed",
        Duration::from_secs(30),
        || {
            jsonpath(
                &s,
                "victim",
                "{.status.containerStatuses[0].state.terminated.exitCode}",
            ) == "137"
        },
    );
    let described = s.ok(&["describe", "pod", "victim"]);
    assert!(
        described.contains("Status:       Failed") && described.contains("Reason:       Evicted"),
        "{described}"
    );
    assert!(s
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=victim,reason=Evicted"
        ])
        .contains("The node was low on resource: memory."));
    // A critical pod is never chosen while the pressure lasts (at least one more eviction round).
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(jsonpath(&s, "critical", "{.status.phase}"), "Running");
    s.ok(&[
        "delete",
        "pod",
        "critical",
        "victim",
        "blocked",
        "bypass",
        "--wait=false",
    ]);
}

#[test]
fn the_kubelet_admits_pods_bound_past_the_scheduler_only_when_they_fit() {
    require_root();
    let _node = node_lock();
    let s = Server::with_agent("", &["--max-pods", "3"]);
    ready_node(&s);
    import_busybox(&s);
    let bound = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: node\n  \
             terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - {{name: app, image: \
             busybox:latest, imagePullPolicy: Never, command: [sleep, \"1000\"], \
             resources: {{requests: {{cpu: 10m}}}}}}\n"
        )
    };
    let apply_named = |name: &str, manifest: String| {
        apply(&s, &format!("{name}.yaml"), &manifest);
    };
    let rejected = |name: &str| {
        s.eventually(
            &format!("{name} is rejected"),
            Duration::from_secs(30),
            || jsonpath(&s, name, "{.status.phase}") == "Failed",
        );
        (
            jsonpath(&s, name, "{.status.reason}"),
            jsonpath(&s, name, "{.status.message}"),
        )
    };
    let capacity = node_jsonpath(&s, "{.status.allocatable.cpu}");
    let millicores: i64 = match capacity.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => capacity.parse::<i64>().unwrap() * 1000,
    };

    // More CPU than the node has: refused with kubelet's numbers, shown by kubectl as the status.
    apply_named(
        "greedy",
        bound("greedy", "").replace("cpu: 10m", "cpu: \"64\""),
    );
    assert_eq!(
        rejected("greedy"),
        (
            "OutOfcpu".to_string(),
            format!(
                "Pod was rejected: Node didn't have enough resource: cpu, requested: 64000, \
                 used: 0, capacity: {millicores}"
            )
        )
    );
    assert!(s.ok(&["get", "pod", "greedy"]).contains("OutOfcpu"));
    assert!(s
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=greedy,reason=OutOfcpu,type=Warning"
        ])
        .contains("Node didn't have enough resource: cpu"));

    // A node selector the node does not match.
    apply_named(
        "elsewhere",
        bound("elsewhere", "  nodeSelector: {disk: ssd}\n"),
    );
    assert_eq!(
        rejected("elsewhere"),
        (
            "NodeAffinity".to_string(),
            "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node \
             affinity/selector"
                .to_string()
        )
    );

    // --max-pods 3: three pods run (the failed ones hold nothing), the fourth is refused.
    for name in ["first", "second", "third"] {
        apply_named(name, bound(name, ""));
    }
    for name in ["first", "second", "third"] {
        s.eventually(
            &format!("{name} is Running"),
            Duration::from_secs(60),
            || jsonpath(&s, name, "{.status.phase}") == "Running",
        );
    }
    apply_named("fourth", bound("fourth", ""));
    assert_eq!(
        rejected("fourth"),
        (
            "OutOfpods".to_string(),
            "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 3, \
             capacity: 3"
                .to_string()
        )
    );
    // Room is made once a pod is gone.
    s.ok(&["delete", "pod", "first"]);
    apply_named("fifth", bound("fifth", ""));
    s.eventually("fifth is Running", Duration::from_secs(60), || {
        jsonpath(&s, "fifth", "{.status.phase}") == "Running"
    });
    s.ok(&[
        "delete",
        "pod",
        "greedy",
        "elsewhere",
        "second",
        "third",
        "fourth",
        "fifth",
        "--wait=false",
    ]);
}

#[test]
fn a_joined_agent_serves_logs_exec_attach_and_port_forward_of_its_pods_to_kubectl_through_the_server(
) {
    require_root();
    let _node = node_lock();
    let s = Server::start();
    let port = free_port().to_string();
    let agent = s.join_agent("worker", &["--kubelet-arg", &format!("port={port}")]);
    import_busybox_into(&s, &agent.data_dir);
    s.eventually("the joined node is Ready", Duration::from_secs(60), || {
        ready_nodes(&s) == 1
    });
    let nodes = s.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.split_whitespace().nth(2), Some("<none>"), "{nodes}");
    // The endpoint's certificate is kept for the agent's next start, its key for root only.
    let tls = agent.data_dir.join("agent/tls");
    assert!(tls.join("kubelet-serving.crt").is_file());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(tls.join("kubelet-serving.key"))
                .unwrap()
                .permissions()
        ) & 0o777,
        0o600
    );
    assert_eq!(
        s.ok(&[
            "get",
            "node",
            "worker",
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"
        ]),
        port
    );
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never,
     command: [sh, -c, "mkdir /www && echo hello from $(hostname) > /www/index.html &&
       httpd -p 127.0.0.1:8080 -h /www && for i in 1 2 3; do echo line-$i; done; sleep 1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never,
     command: [sh, -c, "echo first; sleep 3; echo last"]}
"#;
    apply(&s, "logs.yaml", manifest);
    s.eventually("talker is Running", Duration::from_secs(60), || {
        jsonpath(&s, "talker", "{.status.phase}") == "Running"
    });
    s.eventually("talker's output", Duration::from_secs(20), || {
        s.kubectl(&["logs", "talker"]).stdout == b"line-1\nline-2\nline-3\n"
    });
    assert_eq!(s.ok(&["logs", "talker", "--tail=1"]), "line-3\n");
    assert!(s.ok(&["logs", "talker", "--timestamps"]).lines().all(|l| l
        .split_once(' ')
        .is_some_and(|(ts, _)| ts.parse::<jiff::Timestamp>().is_ok())));
    // Errors the node's kubelet answers come back as kubectl prints the API server's.
    let previous = s.fails(&["logs", "talker", "--previous"]);
    assert!(
        previous.contains(r#"previous terminated container "app" in pod "talker" not found"#),
        "{previous}"
    );
    // Follow streams through the proxy until the container exits.
    s.eventually("slow is Running", Duration::from_secs(60), || {
        jsonpath(&s, "slow", "{.status.phase}") == "Running"
    });
    let followed = s.ok(&["logs", "-f", "slow"]);
    assert_eq!(followed, "first\nlast\n");
    // --since-time: from the time the last line was written, three seconds after the first.
    let stamped = s.ok(&["logs", "slow", "--timestamps"]);
    let last = stamped
        .lines()
        .last()
        .and_then(|l| l.split_once(' '))
        .unwrap()
        .0;
    let since = format!("--since-time={last}");
    assert_eq!(s.ok(&["logs", "slow", &since]), "last\n", "{stamped}");

    // exec: the server relays the session to the node's kubelet endpoint, from either of kubectl's
    // transports.
    let input = s.write("exec-input.txt", "piped\n");
    for websockets in ["true", "false"] {
        let out = s.kubectl_with(
            &[
                "exec",
                "-i",
                "talker",
                "--",
                "sh",
                "-c",
                "cat; echo err >&2; exit 4",
            ],
            &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)],
            Some(&input),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "piped\n",
            "websockets={websockets}: {stderr}"
        );
        assert!(
            stderr.starts_with("err\n"),
            "websockets={websockets}: {stderr}"
        );
        assert!(
            stderr.contains("command terminated with exit code 4"),
            "websockets={websockets}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(4), "websockets={websockets}");
    }

    // attach: relayed like exec (`kubectl run -i` attaches to the new pod's stdin and output).
    let out = s.kubectl_with(
        &[
            "run",
            "reader",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=busybox:latest",
            "--image-pull-policy=Never",
            "--",
            "sh",
            "-c",
            "cat; echo stdin ended",
        ],
        &[],
        Some(&input),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("piped\nstdin ended\n"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // port-forward: the server relays the tunneled SPDY session to the node's kubelet endpoint.
    let forward = PortForward::start(&s, "talker", &[8080], &[]);
    let index = forward.get(8080, "/");
    assert!(index.ends_with("\r\n\r\nhello from talker\n"), "{index}");
    drop(forward);

    // The endpoint itself: the cluster CA vouches for its certificate (issued for the node's IP), and it
    // lets in only callers with a client certificate from that CA, like the admin's.
    let endpoint = format!("https://127.0.0.1:{port}");
    let direct = s.ok(&[
        "--server",
        &endpoint,
        "get",
        "--raw",
        "/containerLogs/default/talker/app?tailLines=2",
    ]);
    assert_eq!(direct, "line-2\nline-3\n");
    let summary: serde_json::Value =
        serde_json::from_str(&s.ok(&["--server", &endpoint, "get", "--raw", "/stats/summary"]))
            .unwrap();
    assert_eq!(summary["node"]["nodeName"], "worker", "{summary}");

    // kubectl top: the server reads the node's usage from its kubelet endpoint, once the node has
    // sampled the container's CPU counter twice.
    s.eventually("kubectl top shows talker", Duration::from_secs(45), || {
        let out = s.kubectl(&["top", "pod", "talker", "--no-headers"]);
        String::from_utf8_lossy(&out.stdout).starts_with("talker ")
    });
    let node = s.ok(&["top", "node", "--no-headers"]);
    assert!(
        node.starts_with("worker ") && node.lines().count() == 1,
        "{node}"
    );
    let anonymous = s.write("anonymous.kubeconfig", "apiVersion: v1\nkind: Config\n");
    let refused = s.kubectl(&[
        "--kubeconfig",
        anonymous.to_str().unwrap(),
        "--server",
        &endpoint,
        "--insecure-skip-tls-verify",
        "--token",
        "not-a-certificate",
        "get",
        "--raw",
        "/healthz",
    ]);
    // The handshake fails (Go reports the closed connection as EOF): nothing is served.
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    s.ok(&["delete", "pod", "talker", "slow", "--wait=false"]);
}

/// One row of `kubectl top pod --containers --no-headers`: pod, container, millicores, MiB.
fn top_rows(text: &str) -> Vec<(String, String, u64, u64)> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |field: &str, unit: &str| -> u64 {
                field
                    .strip_suffix(unit)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{field:?} in {line:?}"))
            };
            (
                fields[0].to_string(),
                fields[1].to_string(),
                number(fields[2], "m"),
                number(fields[3], "Mi"),
            )
        })
        .collect()
}

#[test]
fn kubectl_top_shows_what_containers_and_the_node_use() {
    let (_lock, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: busy, labels: {app: busy}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: spin, image: busybox:latest, imagePullPolicy: Never, command: [sh, -c, "while :; do :; done"]}
  - {name: hold, image: busybox:latest, imagePullPolicy: Never,
     command: [sh, -c, "dd if=/dev/zero of=/dev/shm/held bs=1M count=48 && sleep 1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: idle, labels: {app: idle}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {no-such-node: "true"}
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
"#;
    // Discovery lists the metrics API, read-only, as metrics-server registers it.
    let resources = s.ok(&[
        "api-resources",
        "--api-group=metrics.k8s.io",
        "-o",
        "wide",
        "--no-headers",
    ]);
    let row = |name: &str| {
        resources
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {resources}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(resources.lines().count(), 2, "{resources}");
    assert_eq!(
        row("nodes"),
        "nodes metrics.k8s.io/v1beta1 false NodeMetrics get,list"
    );
    assert_eq!(
        row("pods"),
        "pods metrics.k8s.io/v1beta1 true PodMetrics get,list"
    );

    apply(&s, "top.yaml", manifest);
    wait_ready(&s, "busy");
    wait_ready(&s, "idle");
    // A CPU rate needs two samples of a container's counter, taken 10 s apart.
    let mut top = String::new();
    s.eventually(
        "kubectl top shows both pods",
        Duration::from_secs(45),
        || {
            let out = s.kubectl(&["top", "pod", "--containers", "--no-headers"]);
            top = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success() && top.lines().count() == 3
        },
    );
    let rows = top_rows(&top);
    let row = |pod: &str, container: &str| {
        rows.iter()
            .find(|r| r.0 == pod && r.1 == container)
            .cloned()
            .unwrap_or_else(|| panic!("{pod}/{container} in {top}"))
    };
    let (_, _, spin_cpu, _) = row("busy", "spin");
    assert!(
        (200..=1100).contains(&spin_cpu),
        "a busy loop uses about one core: {top}"
    );
    let (_, _, hold_cpu, hold_memory) = row("busy", "hold");
    assert!(hold_cpu < 100, "{top}");
    assert!(
        (48..100).contains(&hold_memory),
        "48 MiB written to the pod's shm: {top}"
    );
    let (_, _, idle_cpu, _) = row("idle", "app");
    assert!(idle_cpu < 50, "{top}");

    // Without --containers kubectl sums a pod's containers; a label selector picks the pods.
    let busy = s.ok(&["top", "pod", "-l", "app=busy", "--no-headers"]);
    let fields: Vec<&str> = busy.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"busy"), "{busy}");
    assert_eq!(busy.lines().count(), 1, "{busy}");
    let raw: serde_json::Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/idle",
    ]))
    .unwrap();
    assert_eq!(raw["kind"], "PodMetrics", "{raw}");
    assert_eq!(raw["window"], "10s", "{raw}");
    assert_eq!(raw["metadata"]["labels"]["app"], "idle", "{raw}");
    assert_eq!(raw["containers"][0]["name"], "app", "{raw}");

    // The node: its CPU includes the busy loop's, its memory is what the machine cannot reclaim.
    let node = s.ok(&["top", "node", "--no-headers"]);
    let fields: Vec<&str> = node.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{node}");
    assert_eq!(fields[0], "node", "{node}");
    let node_cpu: u64 = fields[1].trim_end_matches('m').parse().unwrap();
    assert!(node_cpu >= spin_cpu / 2, "{node} vs {top}");
    assert!(
        fields[2].ends_with('%') && fields[4].ends_with('%'),
        "{node}"
    );
    let node_memory: u64 = fields[3].trim_end_matches("Mi").parse().unwrap();
    assert!(node_memory >= hold_memory, "{node}");

    // What has no metrics is not found, and the API cannot be written or watched.
    let missing = s.fails(&["top", "pod", "nosuch"]);
    assert!(missing.contains(r#"pods "nosuch" not found"#), "{missing}");
    let pending = s.fails(&["top", "pod", "nowhere"]);
    assert!(
        pending.contains(r#"podmetrics.metrics.k8s.io "default/nowhere" not found"#),
        "a pod that runs nowhere has no metrics: {pending}"
    );
    let table = s.ok(&["get", "podmetrics", "idle"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CPU", "MEMORY", "WINDOW"], "{table}");
    let watch = s.fails(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/pods?watch=true",
    ]);
    assert!(
        watch.contains("MethodNotAllowed") || watch.contains("405"),
        "{watch}"
    );

    // A pod that is gone is no longer shown.
    s.ok(&["delete", "pod", "busy", "--wait=true"]);
    let after = s.ok(&["top", "pod", "--no-headers"]);
    assert!(
        after.starts_with("idle ") && after.lines().count() == 1,
        "{after}"
    );
    s.ok(&["delete", "pod", "idle", "nowhere", "--wait=false"]);
}

/// Runs kubectl on a terminal of `rows`×`cols`, as a user at a shell would; what it showed there.
fn kubectl_on_terminal(
    s: &Server,
    args: &[&str],
    env: &[(&str, &str)],
    rows: u16,
    cols: u16,
) -> (Option<i32>, String) {
    use std::io::Read;
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
    let slave = |fd: &std::os::fd::OwnedFd| std::process::Stdio::from(fd.try_clone().unwrap());
    let mut child = s
        .kubectl_command(args)
        .envs(env.iter().copied())
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .expect("kubectl runs");
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once kubectl, the last holder of the terminal, has gone.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            shown.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kubectl {args:?} did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    (status.code(), reader.join().unwrap())
}

#[test]
fn kubectl_exec_runs_commands_with_stdin_exit_codes_and_a_terminal() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"],
     env: [{name: GREETING, value: hello}], workingDir: /work,
     securityContext: {runAsUser: 1000, runAsGroup: 1000}}
---
apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: ["true"]}
"#;
    apply(&s, "exec.yaml", manifest);
    s.eventually("shell is Running", Duration::from_secs(60), || {
        jsonpath(&s, "shell", "{.status.phase}") == "Running"
    });

    // kubectl's own transport (WebSocket), then its fallback, which older kubectls always use (SPDY).
    for websockets in ["true", "false"] {
        let env = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)];
        let transport = format!("KUBECTL_REMOTE_COMMAND_WEBSOCKETS={websockets}");
        let exec = |args: &[&str], stdin: Option<&Path>| s.kubectl_with(args, &env, stdin);

        // Both output streams, and the command's exit code as kubectl's; the command runs as the
        // container's user in its working directory (which the image lacks: it is made, as runc does).
        let out = exec(
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "echo out $GREETING $(hostname) $(id -u) $(pwd); echo err >&2; exit 3",
            ],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "out hello shell 1000 /work\n",
            "{transport}: {stderr}"
        );
        assert!(stderr.starts_with("err\n"), "{transport}: {stderr}");
        assert!(
            stderr.contains("command terminated with exit code 3"),
            "{transport}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(3), "{transport}");

        // stdin until its end, and output larger than one message.
        let input = s.write("input.txt", "line one\nline two\n");
        let out = exec(&["exec", "-i", "shell", "--", "wc", "-l"], Some(&input));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "2",
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let big = exec(
            &[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "head -c 200000 /dev/zero | tr '\\0' x",
            ],
            None,
        );
        assert_eq!(big.stdout.len(), 200_000, "{transport}");
        assert!(big.stdout.iter().all(|b| *b == b'x'), "{transport}");

        // A terminal: the command's controlling one, sized as the user's, named in TERM as containerd
        // names it.
        let (code, shown) = kubectl_on_terminal(
            &s,
            &[
                "exec",
                "-it",
                "shell",
                "--",
                "sh",
                "-c",
                "tty; stty size; echo term=$TERM; exit 5",
            ],
            &env,
            30,
            100,
        );
        assert!(shown.contains("/dev/pts/"), "{transport}: {shown}");
        assert!(shown.contains("term=xterm"), "{transport}: {shown}");
        assert!(shown.contains("30 100"), "{transport}: {shown}");
        assert_eq!(code, Some(5), "{transport}: {shown}");
    }

    // A background process that keeps the output open does not keep the session open.
    let mut detached = s
        .kubectl_command(&[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "sleep 1000 & echo started",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while detached.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = detached.kill();
            panic!("kubectl exec waited for the background process");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut started = String::new();
    std::io::Read::read_to_string(&mut detached.stdout.take().unwrap(), &mut started).unwrap();
    assert_eq!(started, "started\n");

    // What cannot run.
    let missing = s.kubectl(&["exec", "shell", "--", "no-such-command"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-command"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    s.eventually("done has Succeeded", Duration::from_secs(60), || {
        jsonpath(&s, "done", "{.status.phase}") == "Succeeded"
    });
    let completed = s.fails(&["exec", "done", "--", "true"]);
    assert!(
        completed.contains("cannot exec into a container in a completed pod"),
        "{completed}"
    );
    s.ok(&["delete", "pod", "shell", "done", "--wait=false"]);
}

/// `kubectl port-forward` while it runs: the local port it listens on for each pod port.
struct PortForward {
    child: std::process::Child,
    local: std::collections::HashMap<u16, u16>,
}

impl PortForward {
    /// Starts `kubectl port-forward pod/<pod> :<port>…` and waits until it listens on every port.
    fn start(s: &Server, pod: &str, ports: &[u16], env: &[(&str, &str)]) -> PortForward {
        use std::io::BufRead;
        let target = format!("pod/{pod}");
        let specs: Vec<String> = ports.iter().map(|p| format!(":{p}")).collect();
        let mut args = vec!["port-forward", target.as_str()];
        args.extend(specs.iter().map(String::as_str));
        let mut cmd = s.kubectl_command(&args);
        cmd.envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl starts");
        let stdout = child.stdout.take().unwrap();
        let (lines, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
        let mut local = std::collections::HashMap::new();
        while local.len() < ports.len() {
            let Ok(line) = listening.recv_timeout(Duration::from_secs(30)) else {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "kubectl port-forward never listened: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            };
            // "Forwarding from 127.0.0.1:43527 -> 8080"
            if let Some((from, to)) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.split_once(" -> "))
            {
                local.insert(to.parse().unwrap(), from.parse().unwrap());
            }
        }
        PortForward { child, local }
    }

    /// An HTTP/1.0 GET of `path` through the forward of pod port `port`: the whole answer.
    fn get(&self, port: u16, path: &str) -> String {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.local[&port])).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(conn, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer)
            .expect("the answer ends with the connection");
        answer
    }

    /// How kubectl ended by itself within 30 s, with what it printed on stderr.
    fn exit(mut self) -> (Option<i32>, String) {
        use std::io::Read;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = self.child.try_wait().unwrap();
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        (status.and_then(|s| s.code()), stderr)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busybox's httpd serving `index.html` and 200,000 numbered lines as `/big`, on the pod's loopback only.
const LOOPBACK_HTTPD: &str = "mkdir /www && echo hello from $(hostname) > /www/index.html && \
    seq 1 200000 > /www/big && exec httpd -f -p 127.0.0.1:8080 -h /www";

fn numbered_lines() -> String {
    (1..=200_000).map(|i| format!("{i}\n")).collect()
}

#[test]
fn kubectl_port_forward_reaches_a_port_on_the_pods_loopback() {
    let (_node, s) = busybox_node();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sh, -c, "{LOOPBACK_HTTPD}"]}}
"#
    );
    apply(&s, "web.yaml", &manifest);
    s.eventually("web is Running", Duration::from_secs(60), || {
        jsonpath(&s, "web", "{.status.phase}") == "Running"
    });
    // The SPDY session tunneled in a WebSocket (kubectl's default), then on a connection upgraded to
    // SPDY itself (its fallback).
    for websockets in ["true", "false"] {
        let forward = PortForward::start(
            &s,
            "web",
            &[8080, 9999],
            &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)],
        );
        let index = forward.get(8080, "/");
        assert!(index.starts_with("HTTP/1.1 200 OK"), "{index}");
        assert!(index.ends_with("\r\n\r\nhello from web\n"), "{index}");
        // An answer of many frames, on a second connection of the same session.
        let big = forward.get(8080, "/big");
        let body = big
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        assert!(body == numbered_lines(), "{} bytes", body.len());
        // Nothing listens on 9999: the node's error ends kubectl's session, as kubelet's does.
        let refused = std::net::TcpStream::connect(("127.0.0.1", forward.local[&9999]));
        let (code, stderr) = forward.exit();
        drop(refused);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("error forwarding port 9999 to pod default/web")
                && stderr.to_lowercase().contains("connection refused"),
            "websockets={websockets}: {stderr}"
        );
    }

    // A hostNetwork pod shares the node's loopback: its port is dialed there.
    let port = free_port();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hostweb}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sh, -c,
     "mkdir /www && echo hello from the node > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"]}}
"#
    );
    apply(&s, "hostweb.yaml", &manifest);
    s.eventually("hostweb is Running", Duration::from_secs(60), || {
        jsonpath(&s, "hostweb", "{.status.phase}") == "Running"
    });
    // httpd may still be binding when the pod turns Running; a refused port would end kubectl's session.
    s.eventually("hostweb listens", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let forward = PortForward::start(&s, "hostweb", &[port], &[]);
    let index = forward.get(port, "/");
    assert!(index.ends_with("\r\n\r\nhello from the node\n"), "{index}");
    drop(forward);
    s.ok(&["delete", "pod", "web", "hostweb", "--wait=false"]);
}

#[test]
fn kubectl_run_and_attach_join_the_containers_own_process() {
    let (_node, s) = busybox_node();
    let run = |name: &str| {
        vec![
            "run".to_string(),
            name.to_string(),
            "--rm".into(),
            "--restart=Never".into(),
            "--image=busybox:latest".into(),
            "--image-pull-policy=Never".into(),
        ]
    };
    // `kubectl run -i`: the container's stdin (stdinOnce) gets what kubectl reads, then its end, over
    // both of kubectl's transports.
    let input = s.write("attach-input.txt", "hello\nworld\n");
    for (name, websockets) in [("reader-websocket", "true"), ("reader-spdy", "false")] {
        let mut args = run(name);
        args.extend(["-i", "--", "sh", "-c", "cat; echo stdin ended"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)];
        let out = s.kubectl_with(&args, &env, Some(&input));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("hello\nworld\nstdin ended\n"),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.eventually("--rm deleted the pod", Duration::from_secs(30), || {
            !s.kubectl(&["get", "pod", name]).status.success()
        });
    }

    // `kubectl run -it`: the container runs on its own terminal, which takes the user's size and is
    // named in TERM, as containerd names it.
    let mut args = run("terminal");
    args.extend(
        [
            "-it",
            "--",
            "sh",
            "-c",
            "for i in $(seq 100); do [ \"$(stty size)\" = '30 100' ] && break; sleep 0.1; done; \
             tty; stty size; echo term=$TERM",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, shown) = kubectl_on_terminal(&s, &args, &[], 30, 100);
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert!(shown.contains("30 100"), "{shown}");
    assert!(shown.contains("term=xterm"), "{shown}");
    assert_eq!(code, Some(0), "{shown}");

    // `kubectl attach` to a running container: its output from then on, stdout and stderr apart.
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never,
     command: [sh, -c, "i=0; while true; i=$((i+1)); do echo tick $i; echo tock $i >&2; sleep 0.2; done"]}
"#;
    apply(&s, "ticker.yaml", manifest);
    s.eventually("ticker is Running", Duration::from_secs(60), || {
        jsonpath(&s, "ticker", "{.status.phase}") == "Running"
    });
    let mut attached = s
        .kubectl_command(&["attach", "ticker"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, shown) = std::sync::mpsc::channel();
    for (output, name) in [
        (
            Box::new(attached.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            "stdout",
        ),
        (Box::new(attached.stderr.take().unwrap()), "stderr"),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(output)).map_while(Result::ok)
            {
                let _ = lines.send((name, line));
            }
        });
    }
    // The container's stdout and stderr arrive apart (kubectl may first say the prompt is not shown).
    let (mut ticks, mut tocks) = (false, false);
    while !(ticks && tocks) {
        let (name, line) = shown
            .recv_timeout(Duration::from_secs(30))
            .expect("kubectl attach shows the container's output");
        ticks |= name == "stdout" && line.starts_with("tick ");
        tocks |= name == "stderr" && line.starts_with("tock ");
        assert!(!(name == "stdout" && line.starts_with("tock ")), "{line}");
    }
    let _ = attached.kill();
    let _ = attached.wait();
    s.ok(&["delete", "pod", "ticker", "--wait=false"]);
}

/// A container whose program cannot be started is a run that ended (reason StartError, code 128, the
/// runtime's message) as with containerd, so the restart policy applies: Never fails the pod, Always
/// restarts it with back-off. Nothing of the failed start stays mounted. An image name that does not
/// parse waits as InvalidImageName. Programs are looked up as runc looks them up, and a program only its
/// owner may run (mode 0700) runs as root.
#[test]
fn a_container_that_cannot_start_ends_its_run_with_start_error() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [/no/such/program]}
---
apiVersion: v1
kind: Pod
metadata: {name: unfound}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [nosuch, arg]}
---
apiVersion: v1
kind: Pod
metadata: {name: private}
spec:
  restartPolicy: Never
  initContainers:
  - {name: write, image: busybox:latest, imagePullPolicy: Never, volumeMounts: [{name: bin, mountPath: /x}],
     command: [sh, -c, "printf '#!/bin/sh\\necho private ran\\n' > /x/p && chmod 700 /x/p"]}
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [/x/p],
     volumeMounts: [{name: bin, mountPath: /x}]}
  volumes: [{name: bin, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: again}
spec:
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [/no/such/program]}
---
apiVersion: v1
kind: Pod
metadata: {name: misnamed}
spec:
  containers:
  - {name: app, image: "Bad Image::x"}
"#;
    apply(&s, "start-error.yaml", manifest);
    s.eventually("once fails", Duration::from_secs(60), || {
        jsonpath(&s, "once", "{.status.phase}") == "Failed"
    });
    let terminated = |pod: &str, state: &str, field: &str| {
        jsonpath(
            &s,
            pod,
            &format!("{{.status.containerStatuses[0].{state}.terminated.{field}}}"),
        )
    };
    assert_eq!(terminated("once", "state", "reason"), "StartError");
    assert_eq!(terminated("once", "state", "exitCode"), "128");
    assert_eq!(
        terminated("once", "state", "startedAt"),
        "1970-01-01T00:00:00Z"
    );
    // In runc's words (Go's exec.LookPath), without libcontainer's wrapping.
    assert_eq!(
        terminated("once", "state", "message"),
        r#"failed to start container "app": exec: "/no/such/program": stat /no/such/program: no such file or directory"#
    );
    s.eventually("unfound fails", Duration::from_secs(60), || {
        jsonpath(&s, "unfound", "{.status.phase}") == "Failed"
    });
    assert_eq!(
        terminated("unfound", "state", "message"),
        r#"failed to start container "app": exec: "nosuch": executable file not found in $PATH"#
    );
    s.eventually("private runs", Duration::from_secs(60), || {
        jsonpath(&s, "private", "{.status.phase}") == "Succeeded"
    });
    assert_eq!(s.ok(&["logs", "private"]), "private ran\n");
    // Its container ran, so it keeps a root until deleted; the check below is for those that never ran.
    s.ok(&["delete", "pod", "private"]);
    s.eventually("again restarts", Duration::from_secs(60), || {
        jsonpath(&s, "again", "{.status.containerStatuses[0].restartCount}")
            .parse::<u32>()
            .is_ok_and(|n| n >= 1)
    });
    s.eventually("again backs off", Duration::from_secs(60), || {
        jsonpath(
            &s,
            "again",
            "{.status.containerStatuses[0].state.waiting.reason}",
        ) == "CrashLoopBackOff"
    });
    assert_eq!(terminated("again", "lastState", "reason"), "StartError");
    // A run that never started wrote nothing, and says so.
    assert_eq!(s.ok(&["logs", "again", "--previous"]), "");
    // The same failure again counts up one event, as kubelet's do.
    s.eventually(
        "again's failed starts in one event",
        Duration::from_secs(30),
        || {
            let counts = s.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=again,reason=Failed",
                "-o",
                "jsonpath={range .items[*]}{.count}{\"\\n\"}{end}",
            ]);
            let counts: Vec<&str> = counts.lines().collect();
            counts.len() == 1 && counts[0].parse::<u32>().is_ok_and(|n| n >= 2)
        },
    );
    // An image name that does not parse is reported as such, not pulled over and over.
    let waiting = "{.status.containerStatuses[0].state.waiting.reason}";
    s.eventually("misnamed waits", Duration::from_secs(30), || {
        jsonpath(&s, "misnamed", waiting) == "InvalidImageName"
    });
    s.eventually("the once pod's event", Duration::from_secs(30), || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=once",
        ])
        .contains("/no/such/program")
    });
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let data_dir = s.data_dir().display().to_string();
    let run_dir = s.dir.path().join("run").display().to_string();
    let roots = mounts
        .lines()
        .filter(|l| l.contains("/rootfs ") && (l.contains(&data_dir) || l.contains(&run_dir)))
        .count();
    assert_eq!(
        roots, 0,
        "root mounts of containers that never ran:\n{mounts}"
    );
}

/// A pod ends as kubelet ends it: past its activeDeadlineSeconds it fails (DeadlineExceeded) and its
/// container is stopped; a deleted pod that a finalizer keeps shows a final phase and its container's
/// end instead of Running; a second delete with a shorter grace period shortens the stop.
#[test]
fn pods_fail_past_their_deadline_and_deleted_ones_report_how_they_ended() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: kept, finalizers: [example.com/keep]}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
"#;
    apply(&s, "endings.yaml", manifest);
    let exit_code = "{.status.containerStatuses[0].state.terminated.exitCode}";
    s.eventually("limited fails", Duration::from_secs(60), || {
        jsonpath(&s, "limited", "{.status.phase}") == "Failed"
    });
    assert_eq!(
        jsonpath(&s, "limited", "{.status.reason}"),
        "DeadlineExceeded"
    );
    // sleep, the container's pid 1, ignores SIGTERM: the grace period ends in SIGKILL.
    s.eventually(
        "limited's container is stopped",
        Duration::from_secs(30),
        || jsonpath(&s, "limited", exit_code) == "137",
    );
    // The last status still names the image and the user the container ran.
    let identity =
        "{.status.containerStatuses[0].imageID} {.status.containerStatuses[0].user.linux.uid}";
    let ran = jsonpath(&s, "limited", identity);
    assert!(
        ran.starts_with("docker.io/library/busybox@sha256:"),
        "{ran}"
    );
    assert!(ran.ends_with(" 0"), "{ran}");
    s.eventually("the limited pod's event", Duration::from_secs(30), || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=limited",
        ])
        .contains("DeadlineExceeded")
    });

    s.eventually("kept runs", Duration::from_secs(60), || {
        jsonpath(&s, "kept", "{.status.phase}") == "Running"
    });
    s.ok(&["delete", "pod", "kept", "--wait=false"]);
    s.eventually("kept reports its end", Duration::from_secs(30), || {
        jsonpath(&s, "kept", exit_code) == "137"
    });
    assert_eq!(jsonpath(&s, "kept", "{.status.phase}"), "Failed");
    let ran = jsonpath(&s, "kept", identity);
    assert!(
        ran.starts_with("docker.io/library/busybox@sha256:"),
        "{ran}"
    );
    s.ok(&[
        "patch",
        "pod",
        "kept",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    s.eventually("kept is gone", Duration::from_secs(30), || {
        !s.kubectl(&["get", "pod", "kept"]).status.success()
    });

    // A second delete with a shorter grace period cuts the first one's short.
    let slow = r#"apiVersion: v1
kind: Pod
metadata: {name: slow-stop}
spec:
  terminationGracePeriodSeconds: 120
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
"#;
    apply(&s, "slow.yaml", slow);
    s.eventually("slow-stop runs", Duration::from_secs(60), || {
        jsonpath(&s, "slow-stop", "{.status.phase}") == "Running"
    });
    s.ok(&["delete", "pod", "slow-stop", "--wait=false"]);
    std::thread::sleep(Duration::from_secs(1));
    let started = std::time::Instant::now();
    s.ok(&[
        "delete",
        "pod",
        "slow-stop",
        "--grace-period=1",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the shorter grace period was not honoured: {:?}",
        started.elapsed()
    );
}

/// kubelet's least grace periods: a container always has 2 s between SIGTERM and SIGKILL, even when its
/// pod asks for no grace period at all; and a force-deleted pod, gone from the API at once, still gets its
/// preStop hook and its SIGTERM on the node.
#[test]
fn containers_get_kubelets_least_grace_period_even_when_force_deleted() {
    let (_node, s) = busybox_node();
    let host_dir = s.dir.path().join("hostdir");
    std::fs::create_dir_all(&host_dir).unwrap();
    // The handler ends the container with its own code, a little after SIGTERM: 137 would mean SIGKILL
    // came first.
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: no-grace, finalizers: [example.com/keep]}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "trap 'sleep 1; exit 3' TERM; while :; do sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {{name: forced}}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "trap 'echo term > /host/term; exit 0' TERM; while :; do sleep 0.2; done"]
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, "echo stopping > /host/prestop"]}}}}
  volumes: [{{name: host, hostPath: {{path: {host}, type: Directory}}}}]
"#,
        host = host_dir.display()
    );
    apply(&s, "grace.yaml", &manifest);
    for pod in ["no-grace", "forced"] {
        s.eventually(&format!("{pod} runs"), Duration::from_secs(60), || {
            jsonpath(&s, pod, "{.status.phase}") == "Running"
        });
    }

    s.ok(&["delete", "pod", "no-grace", "--wait=false"]);
    s.eventually("no-grace reports its end", Duration::from_secs(30), || {
        !jsonpath(
            &s,
            "no-grace",
            "{.status.containerStatuses[0].state.terminated.exitCode}",
        )
        .is_empty()
    });
    assert_eq!(
        jsonpath(
            &s,
            "no-grace",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "3",
        "SIGKILL came before the container's SIGTERM handler could end it"
    );
    s.ok(&[
        "patch",
        "pod",
        "no-grace",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    s.ok(&["delete", "pod", "forced", "--grace-period=0", "--force"]);
    s.eventually(
        "the force-deleted pod's preStop hook and SIGTERM handler ran",
        Duration::from_secs(30),
        || host_dir.join("prestop").exists() && host_dir.join("term").exists(),
    );
}

/// A native sidecar (an init container with `restartPolicy: Always`) starts before the app container,
/// runs beside it, and is stopped once the app is done, so that a run-to-completion pod completes.
#[test]
fn a_sidecar_runs_beside_the_app_and_stops_when_it_is_done() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: with-sidecar}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox:latest
    imagePullPolicy: Never
    restartPolicy: Always
    command: [sh, -c, "echo side started > /shared/side; exec sleep 1000"]
    volumeMounts: [{name: shared, mountPath: /shared}]
    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "cat /shared/side; sleep 3"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  volumes: [{name: shared, emptyDir: {}}]
"#;
    apply(&s, "sidecar.yaml", manifest);
    s.eventually(
        "the app runs beside its ready sidecar",
        Duration::from_secs(60),
        || {
            jsonpath(&s, "with-sidecar", "{.status.phase}") == "Running"
                && jsonpath(
                    &s,
                    "with-sidecar",
                    "{.status.initContainerStatuses[0].ready}",
                ) == "true"
                && !jsonpath(
                    &s,
                    "with-sidecar",
                    "{.status.containerStatuses[0].state.running}",
                )
                .is_empty()
        },
    );
    assert_eq!(
        jsonpath(
            &s,
            "with-sidecar",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "True"
    );
    s.eventually("the pod completes", Duration::from_secs(60), || {
        jsonpath(&s, "with-sidecar", "{.status.phase}") == "Succeeded"
    });
    assert_eq!(
        jsonpath(
            &s,
            "with-sidecar",
            "{.status.initContainerStatuses[0].state.terminated.exitCode}"
        ),
        "137",
        "the sidecar was stopped (sleep ignores SIGTERM as pid 1)"
    );
    assert_eq!(
        s.ok(&["logs", "with-sidecar", "-c", "app"]),
        "side started\n",
        "the app started after its sidecar"
    );
}

/// Capabilities as containerd sets them: a non-root process has none, dropping ALL starts, and a
/// privileged container gets what the node itself holds. The cgroup filesystem is read-only inside an
/// unprivileged container, even to root (it could lift its own limits). hostPID shares the node's process
/// namespace. A BestEffort container is the OOM killer's first choice. The first container already sees
/// the pod's and the node's addresses through the downward API.
#[test]
fn the_security_context_and_host_pid_take_effect_and_env_sees_the_pods_addresses() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: dropped}
spec:
  securityContext: {runAsUser: 1000}
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "grep CapEff /proc/self/status; echo pod=$POD_IP host=$HOST_IP; echo oom=$(cat /proc/self/oom_score_adj); sleep 1000"]
    securityContext: {capabilities: {drop: [ALL]}}
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
---
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "grep CapEff /proc/self/status; sleep 1000"]
    securityContext: {privileged: true}
---
apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      echo -1 > /sys/fs/cgroup/cpu/cpu.cfs_quota_us && echo CapEff lifted its limit
      mkdir /sys/fs/cgroup/mine && echo CapEff wrote the cgroup tmpfs
      echo CapEff done; sleep 1000
    resources: {limits: {cpu: 100m}}
---
apiVersion: v1
kind: Pod
metadata: {name: host-pid}
spec:
  hostPID: true
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "echo CapEff $(readlink /proc/self/ns/pid) $(cat /proc/self/oom_score_adj); sleep 1000"]
    resources: {limits: {cpu: 100m, memory: 64Mi}}
"#;
    apply(&s, "capabilities.yaml", manifest);
    for pod in ["dropped", "privileged", "limited", "host-pid"] {
        s.eventually(&format!("{pod} runs"), Duration::from_secs(60), || {
            jsonpath(&s, pod, "{.status.phase}") == "Running"
                && s.ok(&["logs", pod]).contains("CapEff")
        });
    }
    let dropped = s.ok(&["logs", "dropped"]);
    assert!(dropped.contains("CapEff:\t0000000000000000"), "{dropped}");
    let pod_ip = jsonpath(&s, "dropped", "{.status.podIP}");
    let host_ip = jsonpath(&s, "dropped", "{.status.hostIP}");
    assert!(
        dropped.contains(&format!("pod={pod_ip} host={host_ip}")) && pod_ip.starts_with("10.42."),
        "{dropped}"
    );
    assert!(
        dropped.contains("oom=1000\n"),
        "BestEffort goes first: {dropped}"
    );
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let held = own.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let privileged = s.ok(&["logs", "privileged"]);
    assert_eq!(
        privileged.lines().next(),
        Some(held),
        "the node's own capabilities"
    );
    s.eventually("limited tried its cgroups", Duration::from_secs(30), || {
        s.ok(&["logs", "limited"]).contains("CapEff done")
    });
    let limited = s.ok(&["logs", "limited"]);
    assert!(
        !limited.contains("lifted") && !limited.contains("wrote"),
        "{limited}"
    );
    assert_eq!(
        limited.matches("Read-only file system").count(),
        2,
        "{limited}"
    );
    // Guaranteed goes last: kubelet's -997, unless the node may not go below its own value (without
    // CAP_SYS_RESOURCE, as on some hosts; the agent has the test's then).
    let may_lower = held
        .split_whitespace()
        .nth(1)
        .and_then(|mask| u64::from_str_radix(mask, 16).ok())
        .is_some_and(|mask| mask & (1 << 24) != 0);
    let own_adj = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let guaranteed = if may_lower { "-997" } else { own_adj.trim() };
    // The containers' values are theirs alone: their shims keep the node's.
    let own: i32 = own_adj.trim().parse().unwrap();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "orch-shim" {
            let adj = std::fs::read_to_string(entry.path().join("oom_score_adj")).unwrap();
            assert!(adj.trim().parse::<i32>().unwrap() <= own, "a shim at {adj}");
        }
    }
    let host_pid = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(
        s.ok(&["logs", "host-pid"]),
        format!("CapEff {} {guaranteed}\n", host_pid.display())
    );
}

/// A pod that runs as a user other than root can use its volumes as on Kubernetes: its fsGroup owns the
/// secret's files (readable through the group) and the emptyDir (new files take the group), and a
/// local-path volume's directory is writable by anyone, as k3s's provisioner makes it.
#[test]
fn a_pod_not_running_as_root_uses_its_volumes_through_its_fs_group() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {PASS: s3cret}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: grouped}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000}
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      cat /s/PASS; echo
      echo x > /e/made && ls -ln /e/made
      echo y > /p/made && echo claim written
      id -G; echo done; sleep 1000
    volumeMounts: [{name: s, mountPath: /s}, {name: e, mountPath: /e}, {name: p, mountPath: /p}]
  volumes:
  - {name: s, secret: {secretName: creds, defaultMode: 0400}}
  - {name: e, emptyDir: {}}
  - {name: p, persistentVolumeClaim: {claimName: data}}
"#;
    apply(&s, "fs-group.yaml", manifest);
    s.eventually("grouped ran its checks", Duration::from_secs(60), || {
        s.kubectl(&["logs", "grouped"]).stdout.ends_with(b"done\n")
    });
    let log = s.ok(&["logs", "grouped"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "s3cret", "{log}");
    let made: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((made[2], made[3]), ("1000", "2000"), "{log}");
    assert_eq!(lines[2], "claim written", "{log}");
    assert_eq!(lines[3], "3000 2000", "{log}");
}

/// Groups as containerd gives them: a container joins the groups its image's /etc/group lists its user
/// in, unless the pod's supplementalGroupsPolicy is Strict, and the group a PersistentVolume names; its
/// status says who its process is. A user named in the image cannot be checked against runAsNonRoot.
#[test]
fn containers_join_the_groups_their_image_lists_their_user_in_unless_the_policy_is_strict() {
    let (_node, s) = busybox_node();
    let archive = s.dir.path().join("with-users.tar");
    busybox_archive_with(
        &archive,
        "with-users:latest",
        &[
            (
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            ),
            (
                "/etc/group",
                "root:x:0:\nwheel:x:10:root\napp:x:1000:\nextra:x:50000:app\n",
            ),
        ],
        "app",
    );
    import_archive(&archive, &s.data_dir());
    let manifest = format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: shared
  annotations: {{pv.beta.kubernetes.io/gid: "7000"}}
spec:
  storageClassName: manual
  capacity: {{storage: 1Mi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {dir}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: shared}}
spec:
  storageClassName: manual
  volumeName: shared
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: merged}}
spec:
  securityContext: {{supplementalGroups: [4000]}}
  containers:
  - name: app
    image: with-users:latest
    imagePullPolicy: Never
    command: [sh, -c, 'grep ^Groups: /proc/self/status; echo $HOME; sleep 1000']
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  volumes:
  - {{name: shared, persistentVolumeClaim: {{claimName: shared}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: strict}}
spec:
  securityContext: {{runAsGroup: 3000, supplementalGroups: [4000], supplementalGroupsPolicy: Strict}}
  containers:
  - name: app
    image: with-users:latest
    imagePullPolicy: Never
    command: [sh, -c, 'grep ^Groups: /proc/self/status; sleep 1000']
---
apiVersion: v1
kind: Pod
metadata: {{name: unverifiable}}
spec:
  securityContext: {{runAsNonRoot: true}}
  containers:
  - {{name: app, image: with-users:latest, imagePullPolicy: Never, command: [sleep, "1000"]}}
"#,
        dir = s.dir.path().join("shared").display()
    );
    apply(&s, "groups.yaml", &manifest);
    wait_ready(&s, "merged");
    wait_ready(&s, "strict");
    let user_of = |pod: &str| -> serde_json::Value {
        let out = s.ok(&["get", "pod", pod, "-o", "json"]);
        let pod: serde_json::Value = serde_json::from_str(&out).unwrap();
        pod["status"]["containerStatuses"][0]["user"].clone()
    };
    let kernel_groups = |pod: &str| -> Vec<String> {
        let log = s.ok(&["logs", pod]);
        let line = log.lines().next().unwrap_or_default().to_string();
        line.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    // The image's user, its group from /etc/group, the pod's group and the volume's.
    assert_eq!(
        user_of("merged"),
        serde_json::json!({"linux": {"uid": 1000, "gid": 1000,
            "supplementalGroups": [1000, 4000, 7000, 50000]}})
    );
    assert_eq!(kernel_groups("merged"), ["1000", "4000", "7000", "50000"]);
    assert_eq!(s.ok(&["logs", "merged"]).lines().nth(1), Some("/home/app"));
    assert_eq!(
        user_of("strict"),
        serde_json::json!({"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4000]}})
    );
    assert_eq!(kernel_groups("strict"), ["3000", "4000"]);
    let refused = config_error_of(&s, "unverifiable");
    assert!(
        refused.contains("container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"),
        "{refused}"
    );
    assert_eq!(
        node_jsonpath(&s, "{.status.features.supplementalGroupsPolicy}"),
        "true"
    );
}

/// recursiveReadOnly as on Kubernetes: a read-only hostPath mount leaves a mount under its source
/// writable, and a recursively read-only one does not; the node says its runtime makes such mounts, and
/// the container's status says which of its mounts are.
#[test]
fn recursively_read_only_mounts_keep_the_mounts_under_them_read_only() {
    let (_node, s) = busybox_node();
    let tree = s.dir.path().join("tree");
    let disk = tree.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    // A disk mounted under the hostPath, as on a node; the server's clean-up unmounts it.
    nix::mount::mount(
        Some("tmpfs"),
        &disk,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: trees}}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      for d in /ro /rro; do
        touch $d/top 2>/dev/null && echo "$d top writable" || echo "$d top read-only"
        touch $d/disk/file 2>/dev/null && echo "$d disk writable" || echo "$d disk read-only"
      done
      sleep 1000
    volumeMounts:
    - {{name: tree, mountPath: /ro, readOnly: true}}
    - {{name: tree, mountPath: /rro, readOnly: true, recursiveReadOnly: Enabled}}
    - {{name: tree, mountPath: /rw}}
  volumes:
  - {{name: tree, hostPath: {{path: {tree}}}}}
"#,
        tree = tree.display()
    );
    apply(&s, "trees.yaml", &manifest);
    wait_ready(&s, "trees");
    s.eventually("trees tried its mounts", Duration::from_secs(30), || {
        s.ok(&["logs", "trees"]).lines().count() == 4
    });
    assert_eq!(
        s.ok(&["logs", "trees"]),
        "/ro top read-only\n/ro disk writable\n/rro top read-only\n/rro disk read-only\n"
    );
    let mounts = jsonpath(
        &s,
        "trees",
        "{range .status.containerStatuses[0].volumeMounts[*]}{.mountPath}={.recursiveReadOnly} {end}",
    );
    assert_eq!(mounts, "/ro=Disabled /rro=Enabled /rw= ");
    assert_eq!(
        node_jsonpath(
            &s,
            "{.status.runtimeHandlers[0].features.recursiveReadOnlyMounts}"
        ),
        "true"
    );
}

/// A Localhost seccomp profile is a file under the node's `agent/seccomp` directory, applied to the
/// containers that name it, as kubelet and containerd apply it; one that is missing fails the container's
/// creation with the file's name.
#[test]
fn containers_run_under_the_localhost_seccomp_profile_they_name() {
    let (_node, s) = busybox_node();
    let profiles = s.data_dir().join("agent/seccomp/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: confined}
spec:
  securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}}
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'mkdir /made 2>&1; touch /file && echo touched; sleep 1000']
  - name: free
    image: busybox:latest
    imagePullPolicy: Never
    securityContext: {seccompProfile: {type: RuntimeDefault}}
    command: [sh, -c, 'mkdir /made && echo made; sleep 1000']
---
apiVersion: v1
kind: Pod
metadata: {name: unprofiled}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/missing.json}}
"#;
    apply(&s, "seccomp.yaml", manifest);
    wait_ready(&s, "confined");
    s.eventually("both containers tried", Duration::from_secs(30), || {
        s.ok(&["logs", "confined", "-c", "app"]).contains("touched")
            && s.ok(&["logs", "confined", "-c", "free"]).contains("made")
    });
    assert_eq!(
        s.ok(&["logs", "confined", "-c", "app"]),
        "mkdir: can't create directory '/made': Operation not permitted\ntouched\n"
    );
    let waiting = "{.status.containerStatuses[0].state.waiting}";
    s.eventually(
        "unprofiled fails to be created",
        Duration::from_secs(30),
        || jsonpath(&s, "unprofiled", waiting).contains("CreateContainerError"),
    );
    let missing = profiles.join("missing.json");
    let waiting = jsonpath(&s, "unprofiled", waiting);
    assert!(
        waiting.contains(&format!(
            "cannot load seccomp profile \\\"{}\\\"",
            missing.display()
        )),
        "{waiting}"
    );
}

/// A pod asking for an AppArmor profile waits, Pending and Blocked, as kubelet keeps it on a host without
/// AppArmor (as these test machines are); one that asks for Unconfined runs.
#[test]
fn a_pod_asking_for_apparmor_waits_blocked_where_it_cannot_be_enforced() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: armored}
spec:
  securityContext: {appArmorProfile: {type: RuntimeDefault}}
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: unarmored}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    securityContext: {appArmorProfile: {type: Unconfined}}
"#;
    apply(&s, "apparmor.yaml", manifest);
    wait_ready(&s, "unarmored");
    let why =
        "{.status.phase} {.status.reason} {.status.containerStatuses[0].state.waiting.reason}";
    s.eventually("armored is blocked", Duration::from_secs(30), || {
        jsonpath(&s, "armored", why) == "Pending AppArmor Blocked"
    });
    assert!(
        !orch::agent::kubelet::apparmor::host_enabled(),
        "this test needs a host without AppArmor, where kubelet refuses any profile"
    );
    let expected = "Cannot enforce AppArmor: AppArmor is not enabled on the host";
    assert_eq!(jsonpath(&s, "armored", "{.status.message}"), expected);
    assert!(s.ok(&["describe", "pod", "armored"]).contains(expected));
}

/// ConfigMap and downwardAPI volumes follow their sources while the pod runs, laid out as kubelet's
/// atomic writer lays them out (names linked into `..data`, which a reloader can watch); a subPath
/// mount of a key keeps the file the container started with.
#[test]
fn projected_files_follow_their_sources_through_one_data_link() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {greeting: v1}
---
apiVersion: v1
kind: Pod
metadata: {name: reader, labels: {app: reader}}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    volumeMounts:
    - {name: conf, mountPath: /conf}
    - {name: conf, mountPath: /pinned/greeting, subPath: greeting}
    - {name: info, mountPath: /info}
  volumes:
  - {name: conf, configMap: {name: conf}}
  - name: info
    downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
"#;
    apply(&s, "projected.yaml", manifest);
    wait_ready(&s, "reader");
    let in_reader = |script: &str| s.ok(&["exec", "reader", "--", "sh", "-c", script]);
    let layout = in_reader(
        "busybox readlink /conf/greeting; busybox readlink /conf/..data; cat /conf/greeting",
    );
    let layout: Vec<&str> = layout.lines().collect();
    assert_eq!(layout[0], "..data/greeting", "{layout:?}");
    assert!(layout[1].starts_with("..20"), "{layout:?}");
    assert_eq!(layout[2], "v1", "{layout:?}");

    s.ok(&[
        "patch",
        "configmap",
        "conf",
        "-p",
        r#"{"data":{"greeting":"v2"}}"#,
    ]);
    s.ok(&["label", "pod", "reader", "tier=web"]);
    s.eventually(
        "the new greeting and label in the volumes",
        Duration::from_secs(60),
        || {
            let seen = in_reader("cat /conf/greeting; echo; cat /info/labels");
            seen.starts_with("v2\n") && seen.contains("tier=\"web\"")
        },
    );
    let swapped = in_reader("busybox readlink /conf/..data");
    assert_ne!(
        swapped.trim(),
        layout[1],
        "..data still points where it did"
    );
    assert_eq!(in_reader("cat /pinned/greeting"), "v1");
}

/// After the node reboots — every process, mount, namespace and the bridge gone, the data disk kept —
/// the agent gives each pod a new sandbox (SandboxChanged) and restarts what its policy restarts.
#[test]
fn pods_come_back_after_the_node_reboots() {
    let (_node, mut s) = busybox_node();
    for (pod, policy) in [("always", "Always"), ("once", "Never")] {
        s.ok(&[
            "run",
            pod,
            "--image=busybox:latest",
            "--image-pull-policy=Never",
            &format!("--restart={policy}"),
            "--",
            "sleep",
            "1000",
        ]);
    }
    wait_ready(&s, "always");
    wait_ready(&s, "once");
    let ip = jsonpath(&s, "always", "{.status.podIP}");

    s.kill();
    clean_up_containers(&s.data_dir());
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "orch0"])
        .status();
    s.spawn();
    ready_node(&s);
    s.eventually("always runs again", Duration::from_secs(60), || {
        jsonpath(&s, "always", "{.status.containerStatuses[0].restartCount}") == "1"
            && jsonpath(&s, "always", "{.status.containerStatuses[0].ready}") == "true"
    });
    assert_eq!(jsonpath(&s, "always", "{.status.podIP}"), ip);
    s.eventually("once is over", Duration::from_secs(60), || {
        jsonpath(&s, "once", "{.status.phase}") == "Failed"
    });
    s.eventually("the SandboxChanged event", Duration::from_secs(30), || {
        s.ok(&["describe", "pod", "always"])
            .contains("Pod sandbox changed, it will be killed and re-created.")
    });
}

/// `kubectl debug` adds an ephemeral container to a running pod: it runs once beside the others, sees
/// the processes of the container it targets, takes stdin from `-i`, reports its own status and events
/// and keeps its log; the API refuses to change it afterwards.
#[test]
fn kubectl_debug_runs_an_ephemeral_container_in_the_targets_processes() {
    let (_node, s) = busybox_node();
    s.ok(&[
        "run",
        "target",
        "--image=busybox:latest",
        "--image-pull-policy=Never",
        "--",
        "sleep",
        "1000",
    ]);
    wait_ready(&s, "target");
    let debug = |name: &str| {
        vec![
            "debug".to_string(),
            "target".into(),
            "--image=busybox:latest".into(),
            "--image-pull-policy=Never".into(),
            "--profile=general".into(),
            "--target=target".into(),
            format!("--container={name}"),
        ]
    };
    let mut args = debug("look");
    args.extend(["--", "sh", "-c", "busybox ps -o comm,args; exit 3"].map(String::from));
    s.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let ended = "{.status.ephemeralContainerStatuses[0].state.terminated.exitCode}";
    s.eventually("the debugger ran", Duration::from_secs(60), || {
        jsonpath(&s, "target", ended) == "3"
    });
    let seen = s.ok(&["logs", "target", "-c", "look"]);
    assert!(seen.contains("sleep 1000"), "{seen}");
    assert_eq!(
        jsonpath(
            &s,
            "target",
            "{.status.ephemeralContainerStatuses[0].ready}"
        ),
        "false"
    );
    // Once ended it stays ended, beside a target that runs on untouched.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        jsonpath(
            &s,
            "target",
            "{.status.ephemeralContainerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert_eq!(
        jsonpath(&s, "target", "{.status.containerStatuses[0].restartCount}"),
        "0"
    );
    s.eventually("the debugger's events", Duration::from_secs(30), || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=target,involvedObject.fieldPath=spec.ephemeralContainers{look}",
        ])
        .contains("Started container look")
    });

    let script = s.write("debug-stdin", "echo typed in; exit 0\n");
    let mut args = debug("typing");
    args.extend(["-i", "--", "sh"].map(String::from));
    let out = s.kubectl_with(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[],
        Some(&script),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("typed in"),
        "{out:?}"
    );

    // Its environment may come from a ConfigMap nothing else in the pod reads.
    s.ok(&[
        "create",
        "configmap",
        "debug-env",
        "--from-literal=LEVEL=verbose",
    ]);
    s.ok(&[
        "patch",
        "pod",
        "target",
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        r#"{"spec":{"ephemeralContainers":[{"name":"env","image":"busybox:latest","imagePullPolicy":"Never",
            "command":["sh","-c","echo level=$LEVEL"],"envFrom":[{"configMapRef":{"name":"debug-env"}}]}]}}"#,
    ]);
    s.eventually("the env debugger ran", Duration::from_secs(60), || {
        s.kubectl(&["logs", "target", "-c", "env"]).stdout == b"level=verbose\n"
    });

    // Added once, never changed.
    let changed = s.fails(&[
        "patch",
        "pod",
        "target",
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        r#"{"spec":{"ephemeralContainers":[{"name":"look","image":"busybox:other"}]}}"#,
    ]);
    assert!(
        changed.contains("existing ephemeral containers \"look\" may not be changed"),
        "{changed}"
    );
}

/// With shareProcessNamespace the pod's containers see each other's processes, under the pod's pause
/// process as PID 1, which goes with the pod.
#[test]
fn containers_of_a_pod_that_shares_its_process_namespace_see_each_other() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: shared-pids}
spec:
  shareProcessNamespace: true
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
  - name: b
    image: busybox:latest
    imagePullPolicy: Never
    securityContext: {capabilities: {add: [SYS_PTRACE]}}
    command:
    - sh
    - -c
    - |
      sleep 2
      for p in /proc/[0-9]*; do read -r name < $p/comm; echo "$p $name"; done
      echo "pause root: $(ls /proc/1/root)"
      echo listed; sleep 1000
"#;
    apply(&s, "shared-pids.yaml", manifest);
    s.eventually("b listed the processes", Duration::from_secs(60), || {
        String::from_utf8_lossy(&s.kubectl(&["logs", "shared-pids", "-c", "b"]).stdout)
            .contains("listed")
    });
    let listed = s.ok(&["logs", "shared-pids", "-c", "b"]);
    assert!(listed.lines().any(|l| l == "/proc/1 orch"), "{listed}");
    // Even with CAP_SYS_PTRACE, PID 1 leads nowhere on the node: its root is empty.
    assert!(listed.lines().any(|l| l == "pause root: "), "{listed}");
    assert!(
        listed.lines().any(|l| l.ends_with(" sleep")),
        "a's sleep: {listed}"
    );
    let pause = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    c.split(|b| *b == 0).nth(1) == Some(b"pause".as_slice())
                        && c.starts_with(env!("CARGO_BIN_EXE_orch").as_bytes())
                })
            })
            .count()
    };
    assert_eq!(pause(), 1, "the pod's pause process");
    s.ok(&[
        "delete",
        "pod",
        "shared-pids",
        "--wait=true",
        "--timeout=60s",
    ]);
    s.eventually(
        "the pause process ends with its pod",
        Duration::from_secs(30),
        || pause() == 0,
    );
}

/// A volume whose ConfigMap is missing fails its set-up (FailedMount) and is retried with a growing
/// delay, as kubelet retries it, not at every sync; the pod starts once the ConfigMap exists.
#[test]
fn a_volume_that_cannot_be_set_up_is_retried_with_back_off_until_it_can() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: late-volume}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "echo $(cat /config/greeting); sleep 1000"]
    volumeMounts: [{name: config, mountPath: /config}]
  volumes: [{name: config, configMap: {name: late}}]
"#;
    apply(&s, "late.yaml", manifest);
    let failures = || -> u64 {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "reason=FailedMount,involvedObject.name=late-volume",
            "-o",
            "jsonpath={.items[*].count}",
        ])
        .split_whitespace()
        .filter_map(|c| c.parse::<u64>().ok())
        .sum()
    };
    s.eventually("the set-up fails", Duration::from_secs(30), || {
        failures() > 0
    });
    std::thread::sleep(Duration::from_secs(6));
    let failed = failures();
    assert!(
        (2..=6).contains(&failed),
        "{failed} attempts in about 6 s: retries are not spaced out"
    );
    s.ok(&[
        "create",
        "configmap",
        "late",
        "--from-literal=greeting=hello",
    ]);
    s.eventually("the pod starts", Duration::from_secs(60), || {
        jsonpath(&s, "late-volume", "{.status.phase}") == "Running"
    });
    s.eventually("it read its volume", Duration::from_secs(30), || {
        s.kubectl(&["logs", "late-volume"]).stdout == b"hello\n"
    });
}

/// A pod that writes more to its disk emptyDir than its sizeLimit is evicted with kubelet's message, as
/// local-storage limits are enforced on Kubernetes.
#[test]
fn a_pod_past_its_empty_dir_size_limit_is_evicted() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: filler}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "dd if=/dev/zero of=/scratch/fill bs=1M count=3; sleep 1000"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes: [{name: scratch, emptyDir: {sizeLimit: 1Mi}}]
"#;
    apply(&s, "filler.yaml", manifest);
    s.eventually("filler is evicted", Duration::from_secs(60), || {
        jsonpath(&s, "filler", "{.status.phase}") == "Failed"
    });
    assert_eq!(jsonpath(&s, "filler", "{.status.reason}"), "Evicted");
    assert_eq!(
        jsonpath(&s, "filler", "{.status.message}"),
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
    );
}

/// A network namespace standing for the world off the node, linked to the node by a veth pair (`.1/30` on
/// the node, `.2/30` in the world, in a documentation range the host routes nowhere) and with no route
/// back to any pod; it serves `dir` over HTTP on port 8080. Removed with its server when dropped, and
/// what an interrupted run left is removed before.
struct World {
    ip_tool: PathBuf,
    node_ip: String,
    ip: String,
    server: Option<std::process::Child>,
}

impl World {
    const NAME: &str = "orch-test-world";

    fn create(dir: &Path) -> World {
        let ip_tool = crate::registry::require("ip");
        let busybox = crate::registry::require("busybox");
        let run =
            |args: &[&str]| crate::registry::run(std::process::Command::new(&ip_tool).args(args));
        let mut world = World {
            ip_tool: ip_tool.clone(),
            node_ip: String::new(),
            ip: String::new(),
            server: None,
        };
        // What an interrupted run left, before its address counts as the host's.
        world.remove();
        // These machines' own network can be a documentation range (192.0.2.0/24 here): take one the
        // host has no address or route in.
        let routes = run(&["-4", "route", "show", "table", "all"]);
        let prefix = ["203.0.113", "198.51.100", "192.0.2"]
            .into_iter()
            .find(|p| !routes.contains(&format!("{p}.")))
            .unwrap_or_else(|| panic!("every documentation range is in use here:\n{routes}"));
        world.node_ip = format!("{prefix}.1");
        world.ip = format!("{prefix}.2");
        let name = Self::NAME;
        run(&["netns", "add", name]);
        run(&[
            "link",
            "add",
            "orch-world",
            "type",
            "veth",
            "peer",
            "name",
            "world",
            "netns",
            name,
        ]);
        run(&[
            "addr",
            "add",
            &format!("{}/30", world.node_ip),
            "dev",
            "orch-world",
        ]);
        run(&["link", "set", "orch-world", "up"]);
        run(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/30", world.ip),
            "dev",
            "world",
        ]);
        run(&["-n", name, "link", "set", "world", "up"]);
        world.server = Some(
            std::process::Command::new(&ip_tool)
                .args(["netns", "exec", name])
                .arg(&busybox)
                .args([
                    "httpd",
                    "-f",
                    "-vv",
                    "-p",
                    &format!("{}:8080", world.ip),
                    "-h",
                ])
                .arg(dir)
                .stderr(std::fs::File::create(dir.join("access.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let address: std::net::SocketAddr = format!("{}:8080", world.ip).parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the world's server never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        world
    }

    /// What `url` answers to a client in the world.
    fn fetch(&self, url: &str) -> String {
        crate::registry::run(
            std::process::Command::new(&self.ip_tool)
                .args(["netns", "exec", Self::NAME])
                .arg(crate::registry::require("busybox"))
                .args(["wget", "-q", "-O-", url]),
        )
    }

    /// The namespace with what runs in it, and the node's end of the pair.
    fn remove(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        let ip = |args: &[&str]| {
            std::process::Command::new(&self.ip_tool)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for pid in ip(&["netns", "pids", Self::NAME]).split_whitespace() {
            if let Ok(pid) = pid.parse() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        ip(&["netns", "del", Self::NAME]);
        ip(&["link", "del", "orch-world"]);
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Pods reach addresses off the cluster through the node, from the node's address (the world has no
/// route back to pods), and the world reaches a pod's hostPort on the node's address with its own
/// address kept, as with k3s's flannel and portmap; the node reaches it on 127.0.0.1 as well.
#[test]
fn pods_reach_the_world_and_the_world_reaches_their_host_ports() {
    let (_node, s) = busybox_node();
    let site = s.dir.path().join("world");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("hello"), "hello from the world\n").unwrap();
    let world = World::create(&site);
    let host_port = free_port();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: visitor}}
spec:
  restartPolicy: Never
  containers:
  # Not `-T`: this busybox's wget crashes with a timeout set.
  - {{name: app, image: busybox:latest, imagePullPolicy: Never,
     command: [wget, -q, -O-, "http://{world_ip}:8080/hello"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: served}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "mkdir /www && echo hello from a pod > /www/index.html && exec httpd -f -vv -p 80 -h /www"]
    ports: [{{containerPort: 80, hostPort: {host_port}}}]
"#,
        world_ip = world.ip
    );
    apply(&s, "world.yaml", &manifest);
    s.eventually("the visitor is done", Duration::from_secs(60), || {
        matches!(
            jsonpath(&s, "visitor", "{.status.phase}").as_str(),
            "Succeeded" | "Failed"
        )
    });
    assert_eq!(
        s.ok(&["logs", "visitor"]),
        "hello from the world\n",
        "{}",
        s.ok(&["describe", "pod", "visitor"])
    );
    let access = std::fs::read_to_string(site.join("access.log")).unwrap();
    assert!(
        access
            .lines()
            .any(|l| l.contains(&format!("{}:", world.node_ip)) && l.contains("url:/hello")),
        "the request came from the node's address: {access}"
    );

    wait_ready(&s, "served");
    let on_node = format!("http://{}:{host_port}/", world.node_ip);
    assert_eq!(world.fetch(&on_node), "hello from a pod\n");
    let served = s.ok(&["logs", "served"]);
    assert!(
        served.contains(world.ip.as_str()) && served.contains("url:/"),
        "the pod saw the world's own address: {served}"
    );
    // From the node itself, too, on its address and on 127.0.0.1.
    let on_loopback = format!("http://127.0.0.1:{host_port}/");
    for url in [&on_node, &on_loopback] {
        let out = std::process::Command::new(crate::registry::require("busybox"))
            .args(["wget", "-q", "-O-", url])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from a pod\n",
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(world);
}

/// A pod's sysctls, kubelet's safe ones and those the node allows besides (`--kubelet-arg
/// allowed-unsafe-sysctls`), are set in the pod's own network and IPC namespaces before its containers
/// start; a pod asking for one the node does not allow is rejected as kubelet rejects it. A subPathExpr
/// mounts the part of a volume its container's environment names, and one naming a variable without a
/// value keeps the container waiting with kubelet's message.
#[test]
fn pods_get_their_sysctls_and_sub_path_exprs_take_names_from_the_environment() {
    require_root();
    let _node = node_lock();
    let s = Server::with_agent("", &["--kubelet-arg", "allowed-unsafe-sysctls=kernel.msg*"]);
    ready_node(&s);
    import_busybox(&s);
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: tuned}
spec:
  securityContext:
    sysctls:
    - {name: net.ipv4.ip_unprivileged_port_start, value: "0"}
    - {name: net/ipv4/ping_group_range, value: "0 2147483647"}
    - {name: kernel.shm_rmid_forced, value: "1"}
    - {name: kernel.msgmax, value: "4096"}
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command:
    - sh
    - -c
    - |
      cd /proc/sys
      echo values $(cat net/ipv4/ip_unprivileged_port_start kernel/shm_rmid_forced kernel/msgmax) \
        "$(cat net/ipv4/ping_group_range)"
      echo own > /mine/file; echo in $(ls /whole)
      sleep 1000
    env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
    volumeMounts:
    - {name: shared, mountPath: /mine, subPathExpr: "pods/$(POD_NAME)"}
    - {name: shared, mountPath: /whole}
  volumes: [{name: shared, emptyDir: {}}]
---
apiVersion: v1
kind: Pod
metadata: {name: greedy}
spec:
  securityContext: {sysctls: [{name: net.core.somaxconn, value: "4096"}]}
  containers: [{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: unnamed}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    volumeMounts: [{name: shared, mountPath: /mine, subPathExpr: "pods/$(NOT_SET)"}]
  volumes: [{name: shared, emptyDir: {}}]
"#;
    let host_values = ["net/ipv4/ip_unprivileged_port_start", "kernel/msgmax"]
        .map(|p| std::fs::read_to_string(Path::new("/proc/sys").join(p)).unwrap());
    apply(&s, "sysctls.yaml", manifest);
    s.eventually("tuned reports", Duration::from_secs(60), || {
        jsonpath(&s, "tuned", "{.status.phase}") == "Running"
            && s.ok(&["logs", "tuned"]).contains("in ")
    });
    assert_eq!(
        s.ok(&["logs", "tuned"]),
        "values 0 1 4096 0\t2147483647\nin pods\n"
    );
    let uid = jsonpath(&s, "tuned", "{.metadata.uid}");
    let written = s
        .data_dir()
        .join("agent/pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/shared/pods/tuned/file");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "own\n");
    assert_eq!(
        ["net/ipv4/ip_unprivileged_port_start", "kernel/msgmax"]
            .map(|p| std::fs::read_to_string(Path::new("/proc/sys").join(p)).unwrap()),
        host_values,
        "the node's own values stay"
    );

    s.eventually("greedy is rejected", Duration::from_secs(30), || {
        jsonpath(&s, "greedy", "{.status.phase}") == "Failed"
    });
    assert_eq!(
        jsonpath(&s, "greedy", "{.status.reason}"),
        "SysctlForbidden"
    );
    assert_eq!(
        jsonpath(&s, "greedy", "{.status.message}"),
        r#"Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted"#
    );

    let waiting = config_error_of(&s, "unnamed");
    assert!(waiting.contains("missing value for NOT_SET"), "{waiting}");
    let describe = s.ok(&["describe", "pod", "unnamed"]);
    assert!(
        describe.contains("Error: missing value for NOT_SET"),
        "{describe}"
    );
}

/// setHostnameAsFQDN gives the pod's kernel its fully qualified name. What the node cannot do fails
/// where kubectl shows it instead of running the pod otherwise than asked: a RuntimeClass and a user
/// namespace fail its sandbox.
#[test]
fn the_hostname_can_be_qualified_and_what_the_node_cannot_do_fails_visibly() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: qualified}
spec:
  subdomain: db
  setHostnameAsFQDN: true
  containers:
  - {name: app, image: busybox:latest, imagePullPolicy: Never,
     command: [sh, -c, 'echo "$(hostname) $(cat /etc/hostname) $HOSTNAME"; sleep 1000']}
---
apiVersion: v1
kind: Pod
metadata: {name: gpu}
spec:
  runtimeClassName: nvidia
  containers: [{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: userns}
spec:
  hostUsers: false
  containers: [{name: app, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}]
"#;
    apply(&s, "unsupported.yaml", manifest);
    s.eventually("qualified reports", Duration::from_secs(60), || {
        jsonpath(&s, "qualified", "{.status.phase}") == "Running"
            && s.ok(&["logs", "qualified"]).contains("svc")
    });
    let fqdn = "qualified.db.default.svc.cluster.local";
    assert_eq!(
        s.ok(&["logs", "qualified"]),
        format!("{fqdn} {fqdn} {fqdn}\n")
    );
    for (pod, message) in [
        (
            "gpu",
            r#"Failed to create pod sandbox: runtimeclass.node.k8s.io "nvidia" not found"#,
        ),
        (
            "userns",
            "Failed to create pod sandbox: the node's runtime does not support user namespaces",
        ),
    ] {
        s.eventually(
            &format!("{pod} fails its sandbox"),
            Duration::from_secs(30),
            || s.ok(&["describe", "pod", pod]).contains(message),
        );
        assert_eq!(jsonpath(&s, pod, "{.status.phase}"), "Pending");
    }
}

/// mountPropagation as containerd sets it up: a privileged container's mount under its Bidirectional
/// volume reaches the node, and a mount the node makes later reaches a HostToContainer mount of the
/// same directory but not one without propagation; a source the node does not share fails the
/// container as containerd fails it.
#[test]
fn mounts_propagate_between_the_node_and_containers_as_they_ask() {
    let (_node, s) = busybox_node();
    let shared = TestMount::new(nix::mount::MsFlags::MS_SHARED);
    let private = TestMount::new(nix::mount::MsFlags::MS_PRIVATE);
    // Waits for the node's word that its late mount is there (a file on the volume itself, which every
    // mount of it shows), then looks into that mount.
    let watch = |name: &str, propagation: &str| {
        format!(
            r#"  - name: {name}
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'for i in $(seq 300); do [ -e /data/go ] && break; sleep 0.1; done; [ -e /data/late/mark ] && echo seen || echo unseen; sleep 1000']
    volumeMounts: [{{name: data, mountPath: /data, mountPropagation: {propagation}}}]
"#
        )
    };
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: propagating}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: maker
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'for d in /data /scratch; do mkdir -p $d/inner && mount -t tmpfs inner $d/inner && touch $d/inner/mark; done; sleep 1000']
    securityContext: {{privileged: true}}
    volumeMounts:
    - {{name: data, mountPath: /data, mountPropagation: Bidirectional}}
    - {{name: scratch, mountPath: /scratch, mountPropagation: Bidirectional}}
{}{}  volumes: [{{name: data, hostPath: {{path: {}}}}}, {{name: scratch, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: unshared}}
spec:
  containers:
  - name: app
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    securityContext: {{privileged: true}}
    volumeMounts: [{{name: data, mountPath: /data, mountPropagation: Bidirectional}}]
  volumes: [{{name: data, hostPath: {{path: {}}}}}]
"#,
        watch("watcher", "HostToContainer"),
        watch("blind", "None"),
        shared.path().display(),
        private.path().display(),
    );
    apply(&s, "propagating.yaml", &manifest);
    wait_ready(&s, "propagating");
    // Made once every container runs, so that none started with it already there.
    let late = shared.path().join("late");
    std::fs::create_dir(&late).unwrap();
    mount_tmpfs(&late);
    std::fs::write(late.join("mark"), "").unwrap();
    std::fs::write(shared.path().join("go"), "").unwrap();
    s.eventually("the watchers' verdicts", Duration::from_secs(60), || {
        !s.kubectl(&["logs", "propagating", "-c", "blind"])
            .stdout
            .is_empty()
    });
    assert!(
        shared.path().join("inner/mark").exists(),
        "the container's mount reached the node"
    );
    // The pods' directory is shared, as kubelet makes its root directory, so an emptyDir propagates
    // too, whatever the host's mounts; the pod's teardown unmounts what its container left there.
    let uid = jsonpath(&s, "propagating", "{.metadata.uid}");
    let pod_dir = s.data_dir().join("agent/pods").join(&uid);
    let scratch = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch");
    assert!(
        scratch.join("inner/mark").exists(),
        "the emptyDir's mount reached the node"
    );
    assert_eq!(s.ok(&["logs", "propagating", "-c", "watcher"]), "seen\n");
    assert_eq!(s.ok(&["logs", "propagating", "-c", "blind"]), "unseen\n");
    let waiting = "{.status.containerStatuses[0].state.waiting}";
    s.eventually("unshared's refusal", Duration::from_secs(30), || {
        jsonpath(&s, "unshared", waiting).contains("CreateContainerError")
    });
    let expected = format!(
        "path \"{0}\" is mounted on \"{0}\" but it is not a shared mount",
        private.path().display()
    );
    assert_eq!(
        jsonpath(
            &s,
            "unshared",
            "{.status.containerStatuses[0].state.waiting.message}"
        ),
        expected
    );
    s.ok(&["delete", "pod", "propagating", "unshared", "--wait=true"]);
    s.eventually("the pod's directory to go", Duration::from_secs(30), || {
        !pod_dir.exists()
    });
    let left = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!left.contains(&uid), "mounts left behind: {left}");
}

/// Pod-level resources bound the pod as a whole, whatever its containers state: the API fills in their
/// requests from the limits (no container requests anything) and makes the pod Guaranteed, the pod
/// cgroup gets the limits and the shares, and a container without limits sees the pod's through the
/// downward API.
#[test]
fn pod_level_resources_bound_the_pod_and_stand_in_for_its_containers_limits() {
    let (_node, s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: pooled}
spec:
  resources: {limits: {cpu: 400m, memory: 48Mi}}
  containers:
  - name: a
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'echo $MEMORY_MI $CPU_MILLIS; sleep 1000']
    env:
    - name: MEMORY_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: CPU_MILLIS
      valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}
  - {name: b, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "1000"]}
"#;
    apply(&s, "pooled.yaml", manifest);
    wait_ready(&s, "pooled");
    // A container without limits of its own sees the pod's through the downward API.
    assert_eq!(s.ok(&["logs", "pooled", "-c", "a"]), "48 400\n");
    assert_eq!(
        jsonpath(&s, "pooled", "{.spec.resources.requests}"),
        r#"{"cpu":"400m","memory":"48Mi"}"#
    );
    assert_eq!(jsonpath(&s, "pooled", "{.status.qosClass}"), "Guaranteed");
    let uid = jsonpath(&s, "pooled", "{.metadata.uid}");
    if Path::new(ROOT).join("memory").is_dir() {
        assert_eq!(
            pod_cgroup_file(&uid, "memory", "memory.limit_in_bytes"),
            (48 << 20).to_string()
        );
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.cfs_quota_us"), "40000");
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.shares"), "409");
    } else {
        assert_eq!(
            pod_cgroup_file(&uid, "memory", "memory.max"),
            (48 << 20).to_string()
        );
        assert_eq!(pod_cgroup_file(&uid, "cpu", "cpu.max"), "40000 100000");
    }
}

/// A field of the status of the pod's container `container`.
fn container_status_field(s: &Server, pod: &str, container: &str, path: &str) -> String {
    jsonpath(
        s,
        pod,
        &format!("{{.status.containerStatuses[?(@.name==\"{container}\")].{path}}}"),
    )
}

/// `reason:message` of the pod's condition `kind` (`:` when it has none).
fn condition_of(s: &Server, pod: &str, kind: &str) -> String {
    jsonpath(
        s,
        pod,
        &format!(
            "{{.status.conditions[?(@.type==\"{kind}\")].reason}}:{{.status.conditions[?(@.type==\"{kind}\")].message}}"
        ),
    )
}

/// kubectl's arguments for resizing `pod` with a strategic merge `patch`.
fn resize_patch<'a>(pod: &'a str, patch: &'a str) -> [&'a str; 7] {
    ["patch", "pod", pod, "--subresource", "resize", "-p", patch]
}

/// A file of the cgroup of a pod's container's current run, on the hierarchy of `controller`.
fn container_cgroup_file(
    s: &Server,
    pod: &str,
    container: &str,
    controller: &str,
    file: &str,
) -> String {
    let uid = jsonpath(s, pod, "{.metadata.uid}");
    let id = container_status_field(s, pod, container, "containerID");
    let relative = pod_cgroup::container_path(&uid, id.trim_start_matches("orch://"));
    cgroup_file(&relative, controller, file)
}

#[test]
fn pods_are_resized_in_place_as_the_node_has_room_and_restart_only_where_their_policy_says() {
    let (_node, mut s) = busybox_node();
    let manifest = r#"apiVersion: v1
kind: Pod
metadata: {name: elastic}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; sleep 1000']
    resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 200m, memory: 64Mi}}
  - name: b
    image: busybox:latest
    imagePullPolicy: Never
    command: [sleep, "1000"]
    resizePolicy: [{resourceName: memory, restartPolicy: RestartContainer}]
    resources: {requests: {cpu: 100m, memory: 16Mi}, limits: {cpu: 100m, memory: 32Mi}}
"#;
    apply(&s, "elastic.yaml", manifest);
    wait_ready(&s, "elastic");
    let of_a = |path: &str| container_status_field(&s, "elastic", "a", path);
    let of_b = |path: &str| container_status_field(&s, "elastic", "b", path);
    assert_eq!(
        of_a("allocatedResources"),
        r#"{"cpu":"100m","memory":"32Mi"}"#
    );
    assert_eq!(
        of_a("resources"),
        r#"{"limits":{"cpu":"200m","memory":"64Mi"},"requests":{"cpu":"100m","memory":"32Mi"}}"#
    );
    assert_eq!(jsonpath(&s, "elastic", "{.status.observedGeneration}"), "1");
    let v1 = Path::new(ROOT).join("cpu").is_dir();
    let (quota_file, memory_file) = if v1 {
        ("cpu.cfs_quota_us", "memory.limit_in_bytes")
    } else {
        ("cpu.max", "memory.max")
    };
    let quota = |q: &str| {
        if v1 {
            q.to_string()
        } else {
            format!("{q} 100000")
        }
    };
    let uid = jsonpath(&s, "elastic", "{.metadata.uid}");
    assert_eq!(pod_cgroup_file(&uid, "cpu", quota_file), quota("30000"));

    // Without a restart: the containers' and the pod's cgroups get the new limits, the status says so.
    s.ok(&resize_patch("elastic", r#"{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"150m"},"limits":{"cpu":"300m","memory":"96Mi"}}}]}}"#));
    s.eventually("a's resize", Duration::from_secs(20), || {
        of_a("resources.limits.cpu") == "300m"
    });
    assert_eq!(of_a("allocatedResources.cpu"), "150m");
    assert_eq!(of_a("restartCount"), "0");
    assert_eq!(
        container_cgroup_file(&s, "elastic", "a", "cpu", quota_file),
        quota("30000")
    );
    assert_eq!(
        container_cgroup_file(&s, "elastic", "a", "memory", memory_file),
        (96u64 << 20).to_string()
    );
    assert_eq!(pod_cgroup_file(&uid, "cpu", quota_file), quota("40000"));
    assert_eq!(
        pod_cgroup_file(&uid, "memory", memory_file),
        (128u64 << 20).to_string()
    );
    assert_eq!(jsonpath(&s, "elastic", "{.metadata.generation}"), "2");
    assert_eq!(jsonpath(&s, "elastic", "{.status.observedGeneration}"), "2");
    let conditions = jsonpath(&s, "elastic", "{.status.conditions[*].type}");
    assert!(!conditions.contains("PodResize"), "{conditions}");
    let completed = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=elastic,reason=ResizeCompleted",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        completed.starts_with(r#"Pod resize completed: {"containers":[{"name":"a","resources":{"limits":{"cpu":"300m","memory":"96Mi"}"#),
        "{completed}"
    );

    // b's memory changes only with a restart, as its policy says.
    s.ok(&resize_patch(
        "elastic",
        r#"{"spec":{"containers":[{"name":"b","resources":{"limits":{"memory":"48Mi"}}}]}}"#,
    ));
    s.eventually("b's restart", Duration::from_secs(30), || {
        of_b("restartCount") == "1" && of_b("resources.limits.memory") == "48Mi"
    });
    assert_eq!(
        container_cgroup_file(&s, "elastic", "b", "memory", memory_file),
        (48u64 << 20).to_string()
    );
    let killing = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=elastic,reason=Killing",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert_eq!(killing, "Container b resize requires restart");
    assert_eq!(of_a("restartCount"), "0");

    // More than the node has: Infeasible, and nothing changes until the resize is taken back.
    s.ok(&resize_patch("elastic", r#"{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"100"},"limits":{"cpu":"100"}}}]}}"#));
    let pending = || condition_of(&s, "elastic", "PodResizePending");
    s.eventually("an infeasible resize", Duration::from_secs(20), || {
        pending().starts_with(
            "Infeasible:Node didn't have enough capacity: cpu, requested: 100100, capacity: ",
        )
    });
    assert_eq!(of_a("allocatedResources.cpu"), "150m");
    assert_eq!(
        container_cgroup_file(&s, "elastic", "a", "cpu", quota_file),
        quota("30000")
    );
    s.ok(&resize_patch("elastic", r#"{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"150m"},"limits":{"cpu":"300m"}}}]}}"#));
    s.eventually("the pending resize to go", Duration::from_secs(20), || {
        pending() == ":"
    });

    // Room another pod holds: Deferred until it finishes (looked at again then, not at the next
    // 10-second resync).
    let capacity = node_jsonpath(&s, "{.status.allocatable.cpu}");
    let capacity: u64 = match capacity.strip_suffix('m') {
        Some(millis) => millis.parse().unwrap(),
        None => capacity.parse::<u64>().unwrap() * 1000,
    };
    let hog = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - {{name: h, image: busybox:latest, imagePullPolicy: Never, command: [sleep, "6"], resources: {{requests: {{cpu: {}m}}}}}}
"#,
        capacity - 500
    );
    apply(&s, "hog.yaml", &hog);
    wait_ready(&s, "hog");
    s.ok(&resize_patch("elastic", r#"{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"600m"},"limits":{"cpu":"600m"}}}]}}"#));
    let deferred = format!(
        "Deferred:Node didn't have enough resource: cpu, requested: 700, used: {}, capacity: {capacity}",
        capacity - 500
    );
    s.eventually("a deferred resize", Duration::from_secs(20), || {
        pending() == deferred
    });
    assert_eq!(of_a("allocatedResources.cpu"), "150m");
    s.eventually("hog to finish", Duration::from_secs(20), || {
        jsonpath(&s, "hog", "{.status.phase}") == "Succeeded"
    });
    s.eventually(
        "the deferred resize once the room is free",
        Duration::from_secs(7),
        || pending() == ":" && of_a("resources.limits.cpu") == "600m",
    );
    assert_eq!(of_a("allocatedResources.cpu"), "600m");

    // Memory below what the container uses (40 MiB in its /dev/shm) cannot be set: an Error, kept
    // until the resize is taken back.
    s.ok(&resize_patch(
        "elastic",
        r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"memory":"36Mi"}}}]}}"#,
    ));
    let in_progress = || condition_of(&s, "elastic", "PodResizeInProgress");
    s.eventually("a resize that cannot be applied", Duration::from_secs(20), || {
        in_progress().starts_with(r#"Error:attempting to set container "a" memory limit (37748736) below current usage ("#)
    });
    assert_eq!(
        container_cgroup_file(&s, "elastic", "a", "memory", memory_file),
        (96u64 << 20).to_string()
    );
    s.ok(&resize_patch(
        "elastic",
        r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"memory":"96Mi"}}}]}}"#,
    ));
    s.eventually(
        "the failed resize to be taken back",
        Duration::from_secs(20),
        || in_progress() == ":",
    );

    // The API server refuses what a resize cannot do, and a plain update of resources.
    let removed = s.fails(&resize_patch(
        "elastic",
        r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":null}}}]}}"#,
    ));
    assert!(
        removed.contains(
            "spec.containers[0].resources.limits: Forbidden: resource limits cannot be removed"
        ),
        "{removed}"
    );
    let plain = s.fails(&[
        "patch",
        "pod",
        "elastic",
        "-p",
        r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"400m"}}}]}}"#,
    ]);
    assert!(
        plain.contains("pod updates may not change fields other than"),
        "{plain}"
    );
    assert_eq!(of_a("restartCount"), "0");

    // A resize is charged to the namespace's quota with what it grows by.
    apply(
        &s,
        "quota.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: cpu-cap}\nspec: {hard: {limits.cpu: \"1\"}}\n",
    );
    let over = s.fails(&resize_patch(
        "elastic",
        r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1"}}}]}}"#,
    ));
    assert!(
        over.contains("exceeded quota: cpu-cap, requested: limits.cpu=400m, used: limits.cpu=700m, limited: limits.cpu=1"),
        "{over}"
    );
    s.ok(&["delete", "resourcequota", "cpu-cap"]);

    // A restarted agent goes on with what it allocated, restarts nothing, and finds the resize it could
    // not make still infeasible.
    s.ok(&resize_patch("elastic", r#"{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"100"},"limits":{"cpu":"100"}}}]}}"#));
    s.eventually("an infeasible resize", Duration::from_secs(20), || {
        pending().starts_with("Infeasible:")
    });
    let ids = jsonpath(&s, "elastic", "{.status.containerStatuses[*].containerID}");
    s.kill();
    s.spawn();
    s.eventually(
        "the restarted agent's node",
        Duration::from_secs(30),
        || node_jsonpath(&s, r#"{.status.conditions[?(@.type=="Ready")].status}"#) == "True",
    );
    std::thread::sleep(Duration::from_secs(3));
    let of_a = |path: &str| container_status_field(&s, "elastic", "a", path);
    assert_eq!(
        jsonpath(&s, "elastic", "{.status.containerStatuses[*].containerID}"),
        ids
    );
    assert_eq!(of_a("allocatedResources.cpu"), "600m");
    assert_eq!(of_a("resources.limits.cpu"), "600m");
    assert_eq!(
        container_cgroup_file(&s, "elastic", "a", "cpu", quota_file),
        quota("60000")
    );
    assert!(condition_of(&s, "elastic", "PodResizePending").starts_with("Infeasible:"));
}
