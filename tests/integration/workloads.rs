//! The scheduler and workload controllers on hollow nodes (`orch agent --hollow`), through the real kubectl.

use std::time::Duration;

use crate::harness::{ready_nodes, Server};

const WAIT: Duration = Duration::from_secs(30);

/// `name node phase` per pod matching the selector, skipping pods being deleted.
fn pods(s: &Server, selector: &str) -> Vec<(String, String, String)> {
    let out = s.ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
    ]);
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() == 3)
        .map(|f| (f[0].clone(), f[1].clone(), f[2].clone()))
        .collect()
}

fn running_on(s: &Server, selector: &str) -> Vec<String> {
    pods(s, selector)
        .into_iter()
        .filter(|(_, node, phase)| phase == "Running" && !node.is_empty())
        .map(|(_, node, _)| node)
        .collect()
}

/// Deletes one pod matching `selector` and waits until `count` Running pods match again, none of them it.
fn deleted_pod_is_replaced(s: &Server, selector: &str, count: usize) {
    let victim = pods(s, selector)[0].0.clone();
    s.ok(&["delete", "pod", &victim, "--wait=false"]);
    s.eventually("a replacement pod", WAIT, || {
        let now = pods(s, selector);
        now.len() == count
            && !now.iter().any(|(name, _, _)| *name == victim)
            && now.iter().all(|(_, _, phase)| phase == "Running")
    });
}

fn replica_set(name: &str, replicas: u32, extra_pod_spec: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        resources:
          requests: {{cpu: 100m, memory: 64Mi}}
{extra_pod_spec}"#
    )
}

#[test]
fn pods_are_scheduled_onto_hollow_nodes_and_replicasets_heal() {
    let (s, _agent) = Server::with_hollow_nodes(3);
    s.eventually("a pod CIDR on every node", WAIT, || {
        let cidrs = s.ok(&["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"]);
        cidrs.split_whitespace().count() == 3
    });

    let path = s.write("rs.yaml", &replica_set("web", 3, ""));
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
    s.eventually("3 running pods", WAIT, || {
        running_on(&s, "app=web").len() == 3
    });
    let mut nodes = running_on(&s, "app=web");
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        3,
        "pods of one ReplicaSet spread over the nodes"
    );
    s.eventually("ReplicaSet status READY 3", WAIT, || {
        s.ok(&[
            "get",
            "rs",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.availableReplicas}",
        ]) == "3/3"
    });
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Scheduled",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("Successfully assigned default/web-"),
        "{events}"
    );

    deleted_pod_is_replaced(&s, "app=web", 3);

    let picky = s.write(
        "picky.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: picky\nspec:\n  nodeSelector: {disktype: ssd}\n  containers:\n  - name: main\n    image: busybox:1.36\n",
    );
    s.ok(&["apply", "-f", picky.to_str().unwrap()]);
    s.eventually("FailedScheduling for the pod no node matches", WAIT, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=picky,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .contains("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")
    });
    let condition = s.ok(&[
        "get",
        "pod",
        "picky",
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}"#,
    ]);
    assert_eq!(condition, "Unschedulable");
    // A node that gains the label makes the waiting pod schedulable.
    s.ok(&["label", "node", "node-1", "disktype=ssd"]);
    s.eventually("the picky pod on node-1", WAIT, || {
        s.ok(&[
            "get",
            "pod",
            "picky",
            "-o",
            "jsonpath={.spec.nodeName}/{.status.phase}",
        ]) == "node-1/Running"
    });
}

#[test]
fn pods_leave_a_node_that_stops_renewing_its_lease() {
    let s = Server::start_with(&["--node-monitor-grace-period", "12s"]);
    let _healthy = s.hollow_agent("stay", 2, &[]);
    let lost = s.hollow_agent("lost", 1, &[]);
    s.eventually("3 Ready hollow nodes", WAIT, || ready_nodes(&s) == 3);
    let tolerate_briefly = "      tolerations:\n      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}\n";
    let path = s.write("rs.yaml", &replica_set("app", 3, tolerate_briefly));
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
    s.eventually("3 running pods", WAIT, || {
        running_on(&s, "app=app").len() == 3
    });
    assert!(running_on(&s, "app=app").contains(&"lost-0".to_string()));

    lost.kill();
    s.eventually("lost-0 marked unreachable", Duration::from_secs(40), || {
        let ready = s.ok(&[
            "get",
            "node",
            "lost-0",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        let taints = s.ok(&[
            "get",
            "node",
            "lost-0",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ]);
        ready == "Unknown" && taints.contains("node.kubernetes.io/unreachable")
    });
    s.eventually("the node controller's NodeNotReady", WAIT, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=lost-0,reason=NodeNotReady",
            "-o",
            "jsonpath={.items[*].source.component}: {.items[*].message}",
        ]) == "node-controller: Node lost-0 status is now: NodeNotReady"
    });
    s.eventually("all 3 pods running on the healthy nodes", WAIT, || {
        let nodes = running_on(&s, "app=app");
        nodes.len() == 3 && nodes.iter().all(|n| n.starts_with("stay-"))
    });
    s.ok(&["delete", "node", "lost-0"]);
    s.eventually("the node controller's RemovingNode", WAIT, || {
        s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=lost-0,reason=RemovingNode",
            "-o",
            "jsonpath={.items[*].message}",
        ]) == "Node lost-0 event: Removing Node lost-0 from Controller"
    });
}

#[test]
fn deployment_rolls_out_records_history_undoes_and_cleans_up() {
    let (s, _agent) = Server::with_hollow_nodes(3);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
    ]);
    s.ok(&[
        "annotate",
        "deployment",
        "web",
        "kubernetes.io/change-cause=first release",
    ]);
    let status = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.availableReplicas}/{.status.updatedReplicas}"]),
        "3/3/3"
    );
    let first_rs = s.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(first_rs.split_whitespace().count(), 1, "{first_rs}");

    deleted_pod_is_replaced(&s, "app=web", 3);

    // kubectl edit: new image and 4 replicas.
    let editor = s.write(
        "editor.sh",
        "#!/bin/sh\nsed -i -e 's/busybox:1.36/busybox:1.37/' -e 's/replicas: 3/replicas: 4/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.kubectl_with(
        &["edit", "deployment", "web"],
        &[("KUBE_EDITOR", editor.to_str().unwrap())],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&[
        "annotate",
        "deployment",
        "web",
        "--overwrite",
        "kubernetes.io/change-cause=second release",
    ]);
    let status = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    s.eventually("4 pods of the new image", WAIT, || {
        let images = s.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ]);
        images
            .split_whitespace()
            .filter(|i| *i == "busybox:1.37")
            .count()
            == 4
            && images.split_whitespace().count() == 4
    });
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("1         first release"), "{history}");
    assert!(history.contains("2         second release"), "{history}");

    s.ok(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    let status = s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "busybox:1.36"
    );
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("\n3 "), "undo makes revision 3: {history}");
    assert!(!history.contains("\n1 "), "revision 1 became 3: {history}");
    let events = s.ok(&["describe", "deployment", "web"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    s.ok(&["delete", "deployment", "web"]);
    s.eventually("ReplicaSets and pods gone", WAIT, || {
        s.ok(&["get", "rs,pods", "-l", "app=web", "-o", "name"])
            .trim()
            .is_empty()
    });
}

#[test]
fn quota_limit_range_and_priority_admission_read_as_kubectl_prints_them() {
    let s = Server::start();
    s.ok(&["create", "quota", "compute", "--hard=pods=2,requests.cpu=1"]);
    let limits = s.write(
        "limits.yaml",
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    max: {cpu: \"1\"}\n    default: {cpu: 300m}\n    defaultRequest: {cpu: 200m}\n",
    );
    s.ok(&["apply", "-f", limits.to_str().unwrap()]);

    s.ok(&["run", "first", "--image=busybox:1.36"]);
    let resources = s.ok(&[
        "get",
        "pod",
        "first",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ]);
    assert_eq!(
        resources,
        r#"{"limits":{"cpu":"300m"},"requests":{"cpu":"200m"}}"#
    );
    let note = s.ok(&[
        "get",
        "pod",
        "first",
        "-o",
        r#"jsonpath={.metadata.annotations.kubernetes\.io/limit-ranger}"#,
    ]);
    assert_eq!(
        note,
        "LimitRanger plugin set: cpu request for container first; cpu limit for container first"
    );

    let greedy = s.write(
        "greedy.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: greedy\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    resources:\n      limits: {cpu: \"2\"}\n",
    );
    let err = s.fails(&["create", "-f", greedy.to_str().unwrap()]);
    assert!(
        err.contains("Error from server (Forbidden)") && err.contains("pods \"greedy\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"),
        "{err}"
    );

    s.ok(&["run", "second", "--image=busybox:1.36"]);
    let err = s.fails(&["run", "third", "--image=busybox:1.36"]);
    assert!(
        err.contains("pods \"third\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"),
        "{err}"
    );
    s.eventually("quota status counts the two pods", WAIT, || {
        s.ok(&[
            "get",
            "quota",
            "compute",
            "-o",
            "jsonpath={.status.used.pods}/{.status.used.requests\\.cpu}",
        ]) == "2/400m"
    });
    // Unbound pods go at once, and the quota controller gives their share back.
    s.ok(&["delete", "pod", "first"]);
    s.eventually("a freed slot admits the third pod", WAIT, || {
        s.kubectl(&["run", "third", "--image=busybox:1.36"])
            .status
            .success()
    });
    assert!(s
        .ok(&["get", "serviceaccount", "default", "-o", "name"])
        .contains("serviceaccount/default"));

    // Priority admission: a pod's class, else the global default, becomes its priority.
    s.ok(&["create", "namespace", "prio"]);
    let classes = s.write(
        "classes.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: fallback}\nvalue: 10\nglobalDefault: true\npreemptionPolicy: Never\n",
    );
    s.ok(&["apply", "-f", classes.to_str().unwrap()]);
    let pods = s.write(
        "prioritized.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: urgent, namespace: prio}\nspec:\n  priorityClassName: high\n  containers: [{name: main, image: busybox:1.36}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: prio}\nspec:\n  containers: [{name: main, image: busybox:1.36}]\n",
    );
    s.ok(&["apply", "-f", pods.to_str().unwrap()]);
    let priority = |pod: &str| {
        s.ok(&[
            "-n",
            "prio",
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.spec.priorityClassName}/{.spec.priority}/{.spec.preemptionPolicy}",
        ])
    };
    assert_eq!(priority("urgent"), "high/1000/PreemptLowerPriority");
    assert_eq!(priority("plain"), "fallback/10/Never");
    let ghost = s.write(
        "ghost.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ghost, namespace: prio}\nspec:\n  priorityClassName: nope\n  containers: [{name: main, image: busybox:1.36}]\n",
    );
    let err = s.fails(&["create", "-f", ghost.to_str().unwrap()]);
    assert!(
        err.contains("pods \"ghost\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );

    // Scoped quotas take only the pods of their scopes, in admission and in their status.
    let scoped = s.write(
        "scoped.yaml",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: high-pods, namespace: prio}\nspec:\n  hard: {pods: \"1\"}\n  scopeSelector:\n    matchExpressions: [{scopeName: PriorityClass, operator: In, values: [high]}]\n---\napiVersion: v1\nkind: ResourceQuota\nmetadata: {name: sized, namespace: prio}\nspec:\n  hard: {requests.cpu: \"1\"}\n  scopes: [NotBestEffort]\n",
    );
    s.ok(&["apply", "-f", scoped.to_str().unwrap()]);
    s.eventually(
        "the scoped quota counts only the high-priority pod",
        WAIT,
        || {
            s.ok(&[
                "-n",
                "prio",
                "get",
                "quota",
                "high-pods",
                "-o",
                "jsonpath={.status.used.pods}",
            ]) == "1"
        },
    );
    let more = s.write(
        "more.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: urgent2, namespace: prio}\nspec:\n  priorityClassName: high\n  containers: [{name: main, image: busybox:1.36}]\n",
    );
    let err = s.fails(&["create", "-f", more.to_str().unwrap()]);
    assert!(
        err.contains("pods \"urgent2\" is forbidden: exceeded quota: high-pods, requested: pods=1, used: pods=1, limited: pods=1"),
        "{err}"
    );
    // Out of both scopes: a BestEffort pod of the default class.
    s.ok(&["-n", "prio", "run", "plain2", "--image=busybox:1.36"]);
    let burstable = s.write(
        "burstable.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sized, namespace: prio}\nspec:\n  containers: [{name: main, image: busybox:1.36, resources: {limits: {memory: 64Mi}}}]\n",
    );
    let err = s.fails(&["create", "-f", burstable.to_str().unwrap()]);
    assert!(
        err.contains(
            "pods \"sized\" is forbidden: failed quota: sized: must specify requests.cpu for: main"
        ),
        "{err}"
    );
}

#[test]
fn claims_are_provisioned_on_first_use_or_bound_to_matching_volumes() {
    let (s, _agent) = Server::with_hollow_nodes(1);
    let default = s.ok(&["get", "storageclass"]);
    assert!(
        default.contains("local-path (default)") && default.contains("rancher.io/local-path"),
        "{default}"
    );

    let manifest = s.write(
        "claims.yaml",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 1Gi}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: manual-2g\nspec:\n  storageClassName: manual\n  capacity: {storage: 2Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp/manual-2g}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: static\nspec:\n  storageClassName: manual\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {storage: 500Mi}\n",
    );
    s.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    s.eventually("the static claim bound to the manual volume", WAIT, || {
        s.ok(&[
            "get",
            "pvc",
            "static",
            "-o",
            "jsonpath={.status.phase}/{.spec.volumeName}/{.status.capacity.storage}",
        ]) == "Bound/manual-2g/2Gi"
    });
    assert_eq!(
        s.ok(&[
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.spec.storageClassName}/{.status.phase}"
        ]),
        "local-path/Pending"
    );

    let pod = s.write(
        "user.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    volumeMounts: [{name: data, mountPath: /data}]\n  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: data}\n",
    );
    s.ok(&["apply", "-f", pod.to_str().unwrap()]);
    s.eventually(
        "the claim provisioned once its pod has a node",
        WAIT,
        || s.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]) == "Bound",
    );
    let volume = s.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let path = s.ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"]);
    let storage = s.data_dir().join("storage");
    assert!(
        path.starts_with(storage.to_str().unwrap()) && path.ends_with("_default_data"),
        "{path}"
    );
    let affinity = s.ok(&[
        "get",
        "pv",
        &volume,
        "-o",
        "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    assert_eq!(affinity, "node-0");

    s.ok(&["delete", "pod", "user"]);
    s.ok(&["delete", "pvc", "data"]);
    s.eventually(
        "the provisioned volume deleted with its claim",
        WAIT,
        || s.kubectl(&["get", "pv", &volume]).status.code() == Some(1),
    );
}

#[test]
fn orphans_are_adopted_by_a_recreated_owner_and_unselected_pods_released() {
    let (s, _agent) = Server::with_hollow_nodes(2);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let names = |s: &Server| {
        let mut pods: Vec<String> = pods(s, "app=web").into_iter().map(|p| p.0).collect();
        pods.sort();
        pods
    };
    let before = names(&s);
    let rs = s.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);

    s.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    s.eventually("the ReplicaSet orphaned", WAIT, || {
        s.ok(&[
            "get",
            "rs",
            &rs,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ])
        .is_empty()
    });
    // The same Deployment again adopts its old ReplicaSet instead of making another.
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    s.eventually("the ReplicaSet adopted", WAIT, || {
        s.ok(&[
            "get",
            "rs",
            &rs,
            "-o",
            "jsonpath={.metadata.ownerReferences[0].kind}",
        ]) == "Deployment"
    });
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(
        s.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        1
    );
    assert_eq!(names(&s), before, "no pod was replaced");

    // Its ReplicaSet deleted alone: the Deployment makes it again, and it adopts the orphaned pods.
    let old_uid = s.ok(&["get", "rs", &rs, "-o", "jsonpath={.metadata.uid}"]);
    s.ok(&["delete", "rs", &rs, "--cascade=orphan"]);
    s.eventually("the pods adopted by the new ReplicaSet", WAIT, || {
        let owners = s.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.ownerReferences[0].uid}",
        ]);
        let uid = s.kubectl(&["get", "rs", &rs, "-o", "jsonpath={.metadata.uid}"]);
        let uid = String::from_utf8_lossy(&uid.stdout).to_string();
        !uid.is_empty()
            && uid != old_uid
            && owners.split_whitespace().filter(|o| *o == uid).count() == 2
    });
    assert_eq!(names(&s), before, "no pod was replaced");

    // A pod relabelled out of the selector is released, and a replacement takes its place.
    let released = before[0].clone();
    s.ok(&["label", "pod", &released, "app=debug", "--overwrite"]);
    s.eventually("the pod released and replaced", WAIT, || {
        s.ok(&[
            "get",
            "pod",
            &released,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ])
        .is_empty()
            && pods(&s, "app=web").len() == 2
            && !names(&s).contains(&released)
    });
}
