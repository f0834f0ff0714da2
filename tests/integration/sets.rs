//! DaemonSets and StatefulSets on hollow nodes (`orch agent --hollow`), through the real kubectl: daemons
//! follow nodes joining, leaving and being tainted; stateful pods come and go in ordinal order with their
//! claims; both roll out, record history and roll back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::{ready_nodes, Server};

const WAIT: Duration = Duration::from_secs(30);

/// The nodes of the Running pods matching the selector that are not being deleted.
fn running_on(s: &Server, selector: &str) -> BTreeSet<String> {
    let out = s.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        r#"jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    ]);
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 2 && f[1] == "Running")
        .map(|f| f[0].to_string())
        .collect()
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn jsonpath(s: &Server, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &expr]);
    s.ok(&args)
}

const DAEMON_SET: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        resources:
          requests: {cpu: 10m, memory: 16Mi}
"#;

#[test]
fn daemonset_follows_nodes_taints_and_rolls_out() {
    let (s, _agent) = Server::with_hollow_nodes(2);
    let path = s.write("ds.yaml", DAEMON_SET);
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
    let status = s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(
        status.contains("daemon set \"agent\" successfully rolled out"),
        "{status}"
    );
    assert_eq!(running_on(&s, "app=agent"), set_of(&["node-0", "node-1"]));

    // Daemon pods are placed by the scheduler through a node affinity, and tolerate node problems.
    let affinity = jsonpath(
        &s,
        &["pods", "-l", "app=agent"],
        "{.items[0].spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].key}",
    );
    assert_eq!(affinity, "metadata.name");
    let tolerations = jsonpath(
        &s,
        &["pods", "-l", "app=agent"],
        "{.items[0].spec.tolerations[*].key}",
    );
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.contains(key), "{key} missing: {tolerations}");
    }
    let revision = jsonpath(
        &s,
        &["controllerrevisions", "-l", "app=agent"],
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    let pod_hashes = jsonpath(
        &s,
        &["pods", "-l", "app=agent"],
        "{.items[*].metadata.labels.controller-revision-hash}",
    );
    assert_eq!(
        pod_hashes.split_whitespace().collect::<BTreeSet<_>>(),
        BTreeSet::from([revision.as_str()])
    );

    // A third node joins: it gets a daemon.
    let extra = s.hollow_agent("extra", 1, &[]);
    s.eventually("a daemon on the new node", WAIT, || {
        running_on(&s, "app=agent") == set_of(&["extra-0", "node-0", "node-1"])
    });
    s.eventually("status counts 3 ready", WAIT, || {
        jsonpath(
            &s,
            &["ds", "agent"],
            "{.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberReady}/{.status.numberAvailable}/{.status.updatedNumberScheduled}",
        ) == "3/3/3/3/3"
    });

    // A node with a taint the daemon does not tolerate gets none, until the taint goes.
    let _tainted = s.hollow_agent("tainted", 1, &["--node-taint", "dedicated=db:NoSchedule"]);
    s.eventually("4 Ready hollow nodes", WAIT, || ready_nodes(&s) == 4);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        running_on(&s, "app=agent"),
        set_of(&["extra-0", "node-0", "node-1"])
    );
    assert_eq!(
        jsonpath(&s, &["ds", "agent"], "{.status.desiredNumberScheduled}"),
        "3"
    );
    s.ok(&["taint", "node", "tainted-0", "dedicated-"]);
    s.eventually("a daemon on the untainted node", WAIT, || {
        running_on(&s, "app=agent").contains("tainted-0")
    });

    // A node leaves: its daemon goes with it.
    extra.kill();
    s.ok(&["delete", "node", "extra-0"]);
    s.eventually("daemons on the remaining nodes only", WAIT, || {
        running_on(&s, "app=agent") == set_of(&["node-0", "node-1", "tainted-0"])
            && jsonpath(&s, &["ds", "agent"], "{.status.desiredNumberScheduled}") == "3"
    });

    // A new template rolls out node by node and is recorded; undo brings the old one back.
    s.ok(&["set", "image", "ds/agent", "main=busybox:1.37"]);
    let status = s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    s.eventually("every daemon on the new image", WAIT, || {
        let images = jsonpath(
            &s,
            &["pods", "-l", "app=agent"],
            "{.items[*].spec.containers[0].image}",
        );
        images.split_whitespace().collect::<Vec<_>>() == ["busybox:1.37"; 3]
    });
    let history = s.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    let second = s.ok(&["rollout", "history", "ds/agent", "--revision=2"]);
    assert!(second.contains("busybox:1.37"), "{second}");
    s.ok(&["rollout", "undo", "ds/agent"]);
    let status = s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        jsonpath(
            &s,
            &["ds", "agent"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "busybox:1.36"
    );
    s.eventually("every daemon back on the old image", WAIT, || {
        let images = jsonpath(
            &s,
            &["pods", "-l", "app=agent"],
            "{.items[*].spec.containers[0].image}",
        );
        images.split_whitespace().collect::<Vec<_>>() == ["busybox:1.36"; 3]
    });
    let history = s.ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "undo renumbers revision 1 as 3: {history}"
    );

    // Deleted with --cascade=orphan, its daemons stay; the same DaemonSet created again adopts them
    // instead of starting new ones.
    let names = |s: &Server| {
        jsonpath(s, &["pods", "-l", "app=agent"], "{.items[*].metadata.name}")
            .split_whitespace()
            .map(str::to_string)
            .collect::<BTreeSet<_>>()
    };
    let before = names(&s);
    s.ok(&["delete", "ds", "agent", "--cascade=orphan"]);
    s.eventually("the daemons are orphans", WAIT, || {
        jsonpath(
            &s,
            &["pods", "-l", "app=agent"],
            "{.items[*].metadata.ownerReferences}",
        )
        .is_empty()
    });
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
    let uid = jsonpath(&s, &["ds", "agent"], "{.metadata.uid}");
    s.eventually("the new DaemonSet adopted them", WAIT, || {
        let owners = jsonpath(
            &s,
            &["pods", "-l", "app=agent"],
            "{.items[*].metadata.ownerReferences[0].uid}",
        );
        owners.split_whitespace().collect::<Vec<_>>() == vec![uid.as_str(); 3]
    });
    let status = s.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(names(&s), before, "no daemon was replaced");

    s.ok(&["delete", "ds", "agent"]);
    s.eventually("daemons and revisions gone", WAIT, || {
        s.ok(&[
            "get",
            "pods,controllerrevisions",
            "-l",
            "app=agent",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    });
}

/// Watches pods with a label and records their transitions in order: `ADDED web-0`, `READY web-0`,
/// `TERMINATING web-2`, `DELETED web-2`. Stops when dropped.
struct PodWatch {
    events: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PodWatch {
    fn start(s: &Server, selector: &str) -> PodWatch {
        let kubeconfig = std::fs::read_to_string(s.kubeconfig()).unwrap();
        let path = format!(
            "/api/v1/namespaces/default/pods?watch=1&labelSelector={}",
            selector.replace('=', "%3D")
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (events, stop) = (events.clone(), stop.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async move {
                    let config = orch::client::RemoteConfig::from_kubeconfig(&kubeconfig).unwrap();
                    let client = orch::client::Client::remote(config).unwrap();
                    let mut stream = client.watch(&path).await.unwrap();
                    ready_tx.send(()).unwrap();
                    let mut seen = BTreeSet::new();
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(next) =
                            tokio::time::timeout(Duration::from_millis(100), stream.next()).await
                        else {
                            continue;
                        };
                        let Some(Ok(event)) = next else {
                            return;
                        };
                        let object = &event.object;
                        let name = object["metadata"]["name"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        let ready = object["status"]["conditions"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True");
                        let mut transitions = Vec::new();
                        match event.kind {
                            orch::client::WatchEventKind::Added => transitions.push("ADDED"),
                            orch::client::WatchEventKind::Deleted => transitions.push("DELETED"),
                            _ => {}
                        }
                        if ready {
                            transitions.push("READY");
                        }
                        if !object["metadata"]["deletionTimestamp"].is_null() {
                            transitions.push("TERMINATING");
                        }
                        for t in transitions {
                            // Each transition once per pod incarnation.
                            let key = format!("{t} {name} {}", object["metadata"]["uid"]);
                            if seen.insert(key) {
                                events.lock().unwrap().push(format!("{t} {name}"));
                            }
                        }
                    }
                });
            })
        };
        ready_rx.recv_timeout(WAIT).expect("the pod watch started");
        PodWatch {
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Where an event first happened.
    fn index(&self, event: &str) -> Option<usize> {
        self.events().iter().position(|e| e == event)
    }

    /// The pods in the order of their first event of this kind.
    fn order(&self, kind: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e.strip_prefix(kind).map(|n| n.trim().to_string()))
            .collect()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const STATEFUL_SET: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
"#;

#[test]
fn statefulset_orders_pods_keeps_claims_and_rolls_out() {
    let (s, _agent) = Server::with_hollow_nodes(2);
    let watch = PodWatch::start(&s, "app=web");
    let path = s.write("sts.yaml", STATEFUL_SET);
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
    let status = s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{status}"
    );

    // OrderedReady: each pod is created once its predecessor is Ready.
    assert_eq!(watch.order("ADDED"), ["web-0", "web-1", "web-2"]);
    for (before, after) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = watch.index(&format!("READY {before}")).unwrap();
        let added = watch.index(&format!("ADDED {after}")).unwrap();
        assert!(
            ready < added,
            "{after} before {before} was ready: {:?}",
            watch.events()
        );
    }

    // Stable identity and storage.
    let claims = jsonpath(&s, &["pvc"], "{.items[*].metadata.name}");
    assert_eq!(
        claims.split_whitespace().collect::<BTreeSet<_>>(),
        BTreeSet::from(["data-web-0", "data-web-1", "data-web-2"])
    );
    assert_eq!(
        jsonpath(
            &s,
            &["pvc", "data-web-1"],
            "{.metadata.labels.app}|{.metadata.ownerReferences}"
        ),
        "web|",
        "claims are kept (Retain): no owner"
    );
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "web-1"],
            "{.spec.hostname}.{.spec.subdomain} {.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.spec.volumes[0].persistentVolumeClaim.claimName}"
        ),
        "web-1.web web-1 1 data-web-1"
    );
    let update_revision = jsonpath(&s, &["sts", "web"], "{.status.updateRevision}");
    assert_eq!(
        jsonpath(&s, &["sts", "web"], "{.status.currentRevision}"),
        update_revision
    );
    assert_eq!(
        jsonpath(
            &s,
            &["pod", "web-2"],
            "{.metadata.labels.controller-revision-hash}"
        ),
        update_revision
    );
    assert_eq!(
        jsonpath(
            &s,
            &["sts", "web"],
            "{.status.replicas}/{.status.readyReplicas}/{.status.currentReplicas}/{.status.updatedReplicas}/{.status.availableReplicas}"
        ),
        "3/3/3/3/3"
    );

    // Scaling down removes the highest ordinals first, one after the other; the claims stay.
    s.ok(&["scale", "sts", "web", "--replicas=1"]);
    s.eventually("only web-0 left", WAIT, || {
        watch.index("DELETED web-1").is_some()
            && jsonpath(&s, &["pods", "-l", "app=web"], "{.items[*].metadata.name}") == "web-0"
    });
    let deleted_2 = watch.index("DELETED web-2").unwrap();
    let leaving_1 = watch
        .index("TERMINATING web-1")
        .or(watch.index("DELETED web-1"))
        .unwrap();
    assert!(
        deleted_2 < leaving_1,
        "web-1 went before web-2 was gone: {:?}",
        watch.events()
    );
    assert_eq!(
        jsonpath(&s, &["pvc"], "{.items[*].metadata.name}")
            .split_whitespace()
            .count(),
        3
    );

    // A new template replaces pods one at a time and is recorded; undo returns to the first.
    s.ok(&["scale", "sts", "web", "--replicas=2"]);
    let status = s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("2 new pods have been updated"), "{status}");
    s.ok(&["set", "image", "sts/web", "main=busybox:1.37"]);
    let status = s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("2 new pods have been updated"), "{status}");
    s.eventually("both pods on the new image", WAIT, || {
        jsonpath(
            &s,
            &["pods", "-l", "app=web"],
            "{.items[*].spec.containers[0].image}",
        ) == "busybox:1.37 busybox:1.37"
    });
    let new_revision = jsonpath(&s, &["sts", "web"], "{.status.updateRevision}");
    assert_ne!(new_revision, update_revision);
    s.eventually("the rollout completes", WAIT, || {
        jsonpath(&s, &["sts", "web"], "{.status.currentRevision}") == new_revision
    });
    let history = s.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    let first = s.ok(&["rollout", "history", "sts/web", "--revision=1"]);
    assert!(first.contains("busybox:1.36"), "{first}");
    s.ok(&["rollout", "undo", "sts/web"]);
    s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    s.eventually("both pods back on the old image", WAIT, || {
        jsonpath(
            &s,
            &["pods", "-l", "app=web"],
            "{.items[*].spec.containers[0].image}",
        ) == "busybox:1.36 busybox:1.36"
    });
    assert_eq!(
        jsonpath(&s, &["sts", "web"], "{.status.updateRevision}"),
        update_revision,
        "undo reuses the first revision"
    );
    let history = s.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 ") && !history.contains("\n1 "),
        "undo renumbers revision 1 as 3: {history}"
    );

    // Orphaned pods keep their identity: a StatefulSet created again adopts web-0 and web-1
    // rather than replacing them.
    let uids = || jsonpath(&s, &["pods", "-l", "app=web"], "{.items[*].metadata.uid}");
    let before = uids();
    s.ok(&["delete", "sts", "web", "--cascade=orphan"]);
    s.eventually("the pods are orphans", WAIT, || {
        jsonpath(
            &s,
            &["pods", "-l", "app=web"],
            "{.items[*].metadata.ownerReferences}",
        )
        .is_empty()
    });
    let two = s.write(
        "sts-2.yaml",
        &STATEFUL_SET.replace("replicas: 3", "replicas: 2"),
    );
    s.ok(&["apply", "-f", two.to_str().unwrap()]);
    let uid = jsonpath(&s, &["sts", "web"], "{.metadata.uid}");
    s.eventually("the new StatefulSet adopted them", WAIT, || {
        jsonpath(
            &s,
            &["pods", "-l", "app=web"],
            "{.items[*].metadata.ownerReferences[0].uid}",
        ) == format!("{uid} {uid}")
    });
    s.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert_eq!(uids(), before, "no pod was replaced");
}
