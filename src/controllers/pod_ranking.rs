//! Which pods a ReplicaSet deletes first when it scales down: Kubernetes 1.34's
//! `ActivePodsWithRanks` order (`pkg/controller/controller_utils.go`) and the ReplicaSet
//! controller's `getPodsToDelete`. LogarithmicScaleDown is GA in 1.34, so ready and creation
//! times compare in powers-of-two buckets, with the UID breaking ties inside a bucket to spread
//! deletions randomly; the `controller.kubernetes.io/pod-deletion-cost` annotation is honoured.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::rollout::{is_pod_active, is_pod_ready, stable_sort_by_less};

/// Pods with a lower cost are deleted first; missing or invalid values count as 0.
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The pods to delete to remove `diff` replicas from `filtered` (the ReplicaSet's active pods),
/// best candidates first. `related` are the active and inactive pods of every ReplicaSet sharing
/// the same controller (all of a Deployment's): pods on a node crowded with related pods go first.
pub fn pods_to_delete<'a>(
    filtered: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    // Deleting all of them needs no ranking.
    if diff >= filtered.len() {
        return filtered.to_vec();
    }
    let mut ranked = rank_for_deletion(filtered, related, now);
    ranked.truncate(diff);
    ranked
}

/// `pods` ordered from the first to delete to the last.
pub fn rank_for_deletion<'a>(pods: &[&'a Pod], related: &[&Pod], now: Timestamp) -> Vec<&'a Pod> {
    let mut on_node: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in related.iter().filter(|p| is_pod_active(p)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(node_name(p)).copied().unwrap_or(0)))
        .collect();
    stable_sort_by_less(&mut ranked, &|a: &(&Pod, usize), b: &(&Pod, usize)| {
        delete_first(a.0, a.1, b.0, b.1, now)
    });
    ranked.into_iter().map(|(p, _)| p).collect()
}

/// Kubernetes' `ActivePodsWithRanks.Less`: whether `a` (with `rank_a` related pods on its node)
/// should be deleted before `b`.
fn delete_first(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> bool {
    // 1. Unassigned before assigned.
    let (node_a, node_b) = (node_name(a), node_name(b));
    if node_a != node_b && (node_a.is_empty() || node_b.is_empty()) {
        return node_a.is_empty();
    }
    // 2. Pending before Unknown before Running.
    let (phase_a, phase_b) = (phase_ordinal(a), phase_ordinal(b));
    if phase_a != phase_b {
        return phase_a < phase_b;
    }
    // 3. Not ready before ready.
    let (ready_a, ready_b) = (is_pod_ready(a), is_pod_ready(b));
    if ready_a != ready_b {
        return !ready_a;
    }
    // 4. Lower deletion cost first.
    let (cost_a, cost_b) = (deletion_cost(a), deletion_cost(b));
    if cost_a != cost_b {
        return cost_a < cost_b;
    }
    // 5. More related pods on the same node first.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    // 6. Ready for less time first, compared in log2 buckets.
    if ready_a && ready_b {
        let (since_a, since_b) = (ready_since(a), ready_since(b));
        if since_a != since_b {
            return newer_first(since_a, since_b, a, b, now);
        }
    }
    // 7. More container restarts first, sidecars breaking ties.
    let (restarts_a, restarts_b) = (max_restarts(a), max_restarts(b));
    if restarts_a != restarts_b {
        return restarts_a > restarts_b;
    }
    // 8. Created more recently first, compared in log2 buckets.
    let (created_a, created_b) = (creation(a), creation(b));
    if created_a != created_b {
        return newer_first(created_a, created_b, a, b, now);
    }
    false
}

/// For two different times: a missing one (Go's zero time) first, then the later one, or, when
/// both fall in the same power-of-two bucket of age, the lower UID.
fn newer_first(
    t_a: Option<Timestamp>,
    t_b: Option<Timestamp>,
    a: &Pod,
    b: &Pod,
    now: Timestamp,
) -> bool {
    let (Some(t_a), Some(t_b)) = (t_a, t_b) else {
        return t_a.is_none();
    };
    match log2_age_bucket(t_a, now) - log2_age_bucket(t_b, now) {
        0 => a.metadata.uid.as_deref().unwrap_or("") < b.metadata.uid.as_deref().unwrap_or(""),
        diff => diff < 0,
    }
}

/// `int64(math.Log2(float64(now - t)))` over nanoseconds, -1 for a time not in the past. Go's
/// Log2 is reproduced (frexp, exact at powers of two) because truncating it decides the bucket.
fn log2_age_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now
        .duration_since(t)
        .as_nanos()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    if nanos <= 0 {
        return -1;
    }
    go_log2(nanos as f64) as i64
}

fn go_log2(x: f64) -> f64 {
    // frexp for a positive normal x: x = frac * 2^exp with frac in [0.5, 1).
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i64 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    frac.ln() * (1.0 / std::f64::consts::LN_2) + exp as f64
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

/// The pod's `controller.kubernetes.io/pod-deletion-cost`: an int32 without `+` or leading zeros,
/// anything else reading as 0.
pub fn deletion_cost(pod: &Pod) -> i32 {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST_ANNOTATION))
    else {
        return 0;
    };
    let valid_start = match value.as_bytes().first() {
        Some(b'-') => true,
        Some(b'0') => value == "0",
        Some(b'1'..=b'9') => true,
        _ => false,
    };
    if !valid_start {
        return 0;
    }
    value.parse().unwrap_or(0)
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

fn creation(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// (highest restart count of regular containers, highest of restartable init containers).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: BTreeSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular.max(0), sidecar.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: &str = "2024-05-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// A pod described by the fields the ranking reads.
    fn pod(name: &str, fields: Value) -> Pod {
        let get = |k: &str| fields.get(k).cloned().unwrap_or(Value::Null);
        let ready = get("readySince");
        let conditions = if ready.is_null() {
            json!([{"type": "Ready", "status": "False"}])
        } else {
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": ready}])
        };
        let mut annotations = serde_json::Map::new();
        if let Some(cost) = fields.get("cost") {
            annotations.insert(POD_DELETION_COST_ANNOTATION.into(), cost.clone());
        }
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "uid": get("uid").as_str().unwrap_or(name),
                "creationTimestamp": fields.get("created").cloned().unwrap_or(json!("2024-05-01T00:00:00Z")),
                "annotations": annotations
            },
            "spec": {
                "nodeName": fields.get("node").cloned().unwrap_or(json!("n1")),
                "containers": [{"name": "c"}],
                "initContainers": [{"name": "sidecar", "restartPolicy": "Always"}, {"name": "init"}]
            },
            "status": {
                "phase": fields.get("phase").cloned().unwrap_or(json!("Running")),
                "conditions": conditions,
                "containerStatuses": [{"name": "c", "restartCount": get("restarts").as_i64().unwrap_or(0),
                    "image": "i", "imageID": "", "ready": true}],
                "initContainerStatuses": [
                    {"name": "sidecar", "restartCount": get("sidecarRestarts").as_i64().unwrap_or(0), "image": "i", "imageID": "", "ready": true},
                    {"name": "init", "restartCount": get("initRestarts").as_i64().unwrap_or(0), "image": "i", "imageID": "", "ready": false}
                ]
            }
        }))
        .unwrap()
    }

    fn order(pods: &[Pod], related: &[Pod]) -> Vec<String> {
        let refs: Vec<&Pod> = pods.iter().collect();
        let related: Vec<&Pod> = related.iter().collect();
        rank_for_deletion(&refs, &related, now())
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn each_criterion_in_precedence_order() {
        let ready = json!("2024-05-01T11:00:00Z");
        let cases: Vec<(&str, Value, Value)> = vec![
            (
                "unassigned first",
                json!({"node": "", "readySince": ready}),
                json!({"node": "n1", "phase": "Pending"}),
            ),
            (
                "pending before unknown",
                json!({"phase": "Pending", "readySince": ready}),
                json!({"phase": "Unknown"}),
            ),
            (
                "unknown before running",
                json!({"phase": "Unknown", "readySince": ready}),
                json!({"phase": "Running"}),
            ),
            (
                "not ready first",
                json!({"cost": "-5"}),
                json!({"readySince": ready}),
            ),
            (
                "cheaper first",
                json!({"cost": "-5", "readySince": "2024-01-01T00:00:00Z"}),
                json!({"readySince": ready}),
            ),
            (
                "ready for less time first",
                json!({"readySince": "2024-05-01T11:59:00Z", "restarts": 0}),
                json!({"readySince": ready, "restarts": 9}),
            ),
            (
                "more restarts first",
                json!({"readySince": ready, "restarts": 3, "created": "2020-01-01T00:00:00Z"}),
                json!({"readySince": ready, "restarts": 1}),
            ),
            (
                "sidecar restarts break restart ties",
                json!({"restarts": 1, "sidecarRestarts": 2}),
                json!({"restarts": 1, "sidecarRestarts": 1, "initRestarts": 9}),
            ),
            (
                "newer first",
                json!({"created": "2024-05-01T11:00:00Z"}),
                json!({"created": "2024-04-01T00:00:00Z"}),
            ),
        ];
        for (what, first, second) in cases {
            let pods = [pod("b", second.clone()), pod("a", first.clone())];
            assert_eq!(order(&pods, &[]), ["a", "b"], "{what}");
            let pods = [pod("a", first), pod("b", second)];
            assert_eq!(order(&pods, &[]), ["a", "b"], "{what} (reversed input)");
        }
    }

    #[test]
    fn crowded_nodes_go_first() {
        let ready = json!("2024-05-01T11:00:00Z");
        let a = pod("a", json!({"node": "busy", "readySince": ready}));
        let b = pod("b", json!({"node": "quiet", "readySince": ready}));
        let related = [
            a.clone(),
            b.clone(),
            pod("sibling", json!({"node": "busy"})),
            pod("gone", json!({"node": "quiet", "phase": "Succeeded"})),
            pod("gone2", json!({"node": "quiet", "phase": "Failed"})),
        ];
        assert_eq!(order(&[b.clone(), a.clone()], &related), ["a", "b"]);
        // Rank yields to the deletion cost.
        let cheap = pod(
            "b",
            json!({"node": "quiet", "readySince": ready, "cost": "-1"}),
        );
        assert_eq!(order(&[a, cheap], &related), ["b", "a"]);
    }

    #[test]
    fn times_compare_in_log_buckets_with_uid_ties() {
        // 60 and 70 minutes ago share the bucket floor(log2(ns)) = 41: the UID decides.
        let a = pod(
            "a",
            json!({"readySince": "2024-05-01T11:00:00Z", "uid": "zzz"}),
        );
        let b = pod(
            "b",
            json!({"readySince": "2024-05-01T10:50:00Z", "uid": "aaa"}),
        );
        assert_eq!(order(&[a.clone(), b.clone()], &[]), ["b", "a"]);
        // Same for creation times when both pods are not ready.
        let c = pod(
            "c",
            json!({"created": "2024-05-01T11:00:00Z", "uid": "zzz"}),
        );
        let d = pod(
            "d",
            json!({"created": "2024-05-01T10:50:00Z", "uid": "aaa"}),
        );
        assert_eq!(order(&[c, d], &[]), ["d", "c"]);
        // Identical ready times fall through to restarts.
        let e = pod(
            "e",
            json!({"readySince": "2024-05-01T11:00:00Z", "restarts": 1, "uid": "aaa"}),
        );
        let f = pod(
            "f",
            json!({"readySince": "2024-05-01T11:00:00Z", "restarts": 2, "uid": "zzz"}),
        );
        assert_eq!(order(&[e, f], &[]), ["f", "e"]);

        let base = now();
        let ago = |nanos: i64| {
            base.checked_sub(jiff::SignedDuration::from_nanos(nanos))
                .unwrap()
        };
        assert_eq!(log2_age_bucket(ago(1 << 40), base), 40);
        assert_eq!(log2_age_bucket(ago((1 << 40) - 1), base), 39);
        assert_eq!(log2_age_bucket(ago(1), base), 0);
        assert_eq!(log2_age_bucket(base, base), -1);
        assert_eq!(
            log2_age_bucket(
                base.checked_add(jiff::SignedDuration::from_secs(5))
                    .unwrap(),
                base
            ),
            -1
        );
    }

    #[test]
    fn deletion_cost_parsing() {
        let with_cost = |c: &str| pod("p", json!({"cost": c}));
        assert_eq!(deletion_cost(&with_cost("100")), 100);
        assert_eq!(deletion_cost(&with_cost("-2147483648")), i32::MIN);
        assert_eq!(deletion_cost(&with_cost("0")), 0);
        for invalid in ["+10", "007", "", "abc", "2147483648", "1.5"] {
            assert_eq!(deletion_cost(&with_cost(invalid)), 0, "{invalid:?}");
        }
        assert_eq!(deletion_cost(&pod("p", json!({}))), 0);
    }

    #[test]
    fn picks_only_as_many_as_needed() {
        let pods = [
            pod("ready-old", json!({"readySince": "2024-01-01T00:00:00Z"})),
            pod("pending", json!({"phase": "Pending"})),
            pod("ready-new", json!({"readySince": "2024-05-01T11:59:30Z"})),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let names = |v: Vec<&Pod>| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(pods_to_delete(&refs, &refs, 2, now())),
            ["pending", "ready-new"]
        );
        assert_eq!(
            names(pods_to_delete(&refs, &refs, 3, now())),
            ["ready-old", "pending", "ready-new"],
            "all: input order"
        );
        assert!(pods_to_delete(&refs, &refs, 0, now()).is_empty());
    }
}
