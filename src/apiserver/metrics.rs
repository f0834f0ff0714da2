//! `metrics.k8s.io/v1beta1`, what `kubectl top` reads, shaped as metrics-server serves it but asked of
//! the nodes when a client asks instead of scraped ahead: NodeMetrics and PodMetrics (get and list, with
//! label and field selectors) made from each node's kubelet Summary — the embedded agent's in-process,
//! a joined node's from its kubelet endpoint. CPU is the rate over the node's last sampling period (the
//! `window`), memory the working set. As under metrics-server, only Running pods are shown, a pod once
//! every container it runs has a CPU rate; nodes that are not Ready, or do not answer in time, are left
//! out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::handlers::{list_options, table_response, wants_table};
use super::request::{RequestError, ResourceRequest, Verb};
use super::status::ApiError;
use super::{json_response, ApiServer, Body, Query, RequestContext};
use crate::api::meta::{self, format_time};
use crate::api::quantity::{Quantity, QuantityFormat};
use crate::api::resources::{self, ResourceInfo};
use crate::api::stats::{PodStats, Summary, CPU_SAMPLE_PERIOD, SUMMARY_PATH};

/// How long a node has to answer (metrics-server's kubelet request timeout).
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    r: &ResourceRequest,
    q: &Query,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    if !matches!(r.verb, Verb::Get | Verb::List) {
        return Err(ApiError::MethodNotAllowed(
            RequestError::MethodNotAllowed.to_string(),
        ));
    }
    let info = r.info;
    let namespace = r.namespace.as_deref();
    let now = server.registry().now();
    let is_node = info.kind == "NodeMetrics";
    if let Some(name) = &r.name {
        let mut item = if is_node {
            node_metrics_named(server, info, name).await?
        } else {
            pod_metrics_named(server, info, namespace.unwrap_or_default(), name).await?
        };
        if wants_table(&ctx.accept) {
            return Ok(table_response(info, &[item], 0, None, q, now));
        }
        item["kind"] = json!(info.kind);
        item["apiVersion"] = json!(info.api_version());
        return Ok(json_response(StatusCode::OK, &item));
    }
    let items = if is_node {
        node_metrics(server, q).await?
    } else {
        pod_metrics(server, namespace, q).await?
    };
    if wants_table(&ctx.accept) {
        return Ok(table_response(info, &items, 0, None, q, now));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": {}, "items": items}),
    ))
}

/// metrics-server's answer for an object that exists but has no metrics (a pod is named with its
/// namespace).
fn no_metrics(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("{}.{} \"{name}\" not found", info.singular, info.group),
        details: json!({"name": name, "group": info.group, "kind": info.singular}),
    }
}

fn core(plural: &str) -> &'static ResourceInfo {
    resources::find("", "v1", plural).expect("core resources are served")
}

/// The Summary of `node`: the embedded agent's read in-process, another's asked of its kubelet.
async fn node_summary(server: &ApiServer, node: &str) -> Result<Summary, ApiError> {
    if let Some(local) = server.node_summary.get().filter(|s| s.node_name() == node) {
        return Ok(local.summary());
    }
    let asked = async {
        let stream = Box::pin(super::kubelet::get(server, node, SUMMARY_PATH)).await?;
        let body: Vec<Bytes> = stream.collect().await;
        serde_json::from_slice(&body.concat())
            .map_err(|e| ApiError::Internal(format!("the summary of node {node}: {e}")))
    };
    tokio::time::timeout(NODE_TIMEOUT, asked)
        .await
        .map_err(|_| {
            ApiError::Internal(format!(
                "node {node} did not answer within {NODE_TIMEOUT:?}"
            ))
        })?
}

/// The pods of one node's Summary, by uid.
type PodsByUid = HashMap<String, PodStats>;

/// What the nodes named use, those that answered: the node's Summary and its pods by uid.
async fn summaries(
    server: &ApiServer,
    nodes: BTreeSet<String>,
) -> HashMap<String, (Summary, PodsByUid)> {
    let asked = nodes.into_iter().map(|node| async move {
        let summary = node_summary(server, &node).await;
        (node, summary)
    });
    futures_util::future::join_all(asked)
        .await
        .into_iter()
        .filter_map(|(node, summary)| match summary {
            Ok(mut summary) => {
                let pods = std::mem::take(&mut summary.pods)
                    .into_iter()
                    .map(|p| (p.pod_ref.uid.clone(), p))
                    .collect();
                Some((node, (summary, pods)))
            }
            Err(e) => {
                tracing::debug!(%node, error = %e, "reading the node's resource usage");
                None
            }
        })
        .collect()
}

/// Whether the node's Ready condition is True: a node that is not would keep `kubectl top` waiting on
/// a kubelet that does not answer.
fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn cpu(nano_cores: u64) -> String {
    Quantity::from_nano_units(i128::from(nano_cores), QuantityFormat::DecimalSi).to_string()
}

fn memory(bytes: u64) -> String {
    Quantity::from_units(i128::from(bytes), QuantityFormat::BinarySi).to_string()
}

fn window() -> String {
    format!("{}s", CPU_SAMPLE_PERIOD.as_secs())
}

/// The metrics' own metadata: the object's name, namespace and labels, created now (as metrics-server
/// stamps them).
fn metadata(obj: &Value, now: jiff::Timestamp) -> Value {
    let mut metadata = json!({
        "name": obj["metadata"]["name"],
        "creationTimestamp": format_time(now),
    });
    if let Some(namespace) = meta::namespace(obj) {
        metadata["namespace"] = json!(namespace);
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        metadata["labels"] = json!(labels);
    }
    metadata
}

/// A node's NodeMetrics, if its Summary has its CPU rate and memory.
fn node_item(node: &Value, summary: &Summary, now: jiff::Timestamp) -> Option<Value> {
    let stats = &summary.node;
    let cpu_stats = stats.cpu.as_ref()?;
    let nano_cores = cpu_stats.usage_nano_cores?;
    let working_set = stats.memory.as_ref()?.working_set_bytes?;
    Some(json!({
        "metadata": metadata(node, now),
        "timestamp": cpu_stats.time,
        "window": window(),
        "usage": {"cpu": cpu(nano_cores), "memory": memory(working_set)},
    }))
}

/// A pod's PodMetrics, if every container it runs has its CPU rate and memory.
fn pod_item(pod: &Value, stats: &PodStats, now: jiff::Timestamp) -> Option<Value> {
    let mut containers = Vec::new();
    let mut timestamp = None;
    for container in &stats.containers {
        let cpu_stats = container.cpu.as_ref()?;
        let nano_cores = cpu_stats.usage_nano_cores?;
        let working_set = container.memory.as_ref()?.working_set_bytes?;
        timestamp.get_or_insert_with(|| cpu_stats.time.clone());
        containers.push(json!({
            "name": container.name,
            "usage": {"cpu": cpu(nano_cores), "memory": memory(working_set)},
        }));
    }
    Some(json!({
        "metadata": metadata(pod, now),
        "timestamp": timestamp?,
        "window": window(),
        "containers": containers,
    }))
}

fn node_name_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// A pod metrics-server shows: bound to a node and running there.
fn is_running(pod: &Value) -> bool {
    node_name_of(pod).is_some() && pod["status"]["phase"] == "Running"
}

async fn node_metrics(server: &ApiServer, q: &Query) -> Result<Vec<Value>, ApiError> {
    let nodes = server
        .registry()
        .list(core("nodes"), None, &list_options(q)?)
        .await?
        .items;
    let names = nodes
        .iter()
        .filter(|n| is_ready(n))
        .filter_map(|n| meta::name(n).map(str::to_string))
        .collect();
    let summaries = summaries(server, names).await;
    let now = server.registry().now();
    Ok(nodes
        .iter()
        .filter_map(|node| node_item(node, &summaries.get(meta::name(node)?)?.0, now))
        .collect())
}

async fn node_metrics_named(
    server: &ApiServer,
    info: &ResourceInfo,
    name: &str,
) -> Result<Value, ApiError> {
    let node = server.registry().get(core("nodes"), None, name).await?;
    let summary = match is_ready(&node) {
        true => node_summary(server, name).await.ok(),
        false => None,
    };
    summary
        .and_then(|s| node_item(&node, &s, server.registry().now()))
        .ok_or_else(|| no_metrics(info, name))
}

async fn pod_metrics(
    server: &ApiServer,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Vec<Value>, ApiError> {
    let mut pods = server
        .registry()
        .list(core("pods"), namespace, &list_options(q)?)
        .await?
        .items;
    pods.retain(is_running);
    let nodes = pods
        .iter()
        .filter_map(|p| node_name_of(p).map(str::to_string))
        .collect();
    let summaries = summaries(server, nodes).await;
    let now = server.registry().now();
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let (_, by_uid) = summaries.get(node_name_of(pod)?)?;
            pod_item(pod, by_uid.get(meta::uid(pod)?)?, now)
        })
        .collect())
}

async fn pod_metrics_named(
    server: &ApiServer,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let pod = server
        .registry()
        .get(core("pods"), Some(namespace), name)
        .await?;
    let missing = || no_metrics(info, &format!("{namespace}/{name}"));
    let Some(node) = node_name_of(&pod).filter(|_| is_running(&pod)) else {
        return Err(missing());
    };
    let summary = node_summary(server, node).await.map_err(|_| missing())?;
    let uid = meta::uid(&pod).unwrap_or_default();
    summary
        .pods
        .iter()
        .find(|p| p.pod_ref.uid == uid)
        .and_then(|stats| pod_item(&pod, stats, server.registry().now()))
        .ok_or_else(missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::stats::{
        ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats,
    };

    fn container(name: &str, nano_cores: Option<u64>, working_set: Option<u64>) -> ContainerStats {
        ContainerStats {
            name: name.into(),
            start_time: None,
            cpu: Some(CpuStats {
                time: "2026-11-25T10:00:10Z".into(),
                usage_nano_cores: nano_cores,
                usage_core_nano_seconds: Some(1),
            }),
            memory: working_set.map(|bytes| MemoryStats {
                time: "2026-11-25T10:00:11Z".into(),
                working_set_bytes: Some(bytes),
                ..Default::default()
            }),
        }
    }

    fn now() -> jiff::Timestamp {
        "2026-11-25T10:00:12Z".parse().unwrap()
    }

    #[test]
    fn pod_metrics_are_shaped_as_metrics_server_serves_them() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                                      "labels": {"app": "web"}, "resourceVersion": "7"},
                         "spec": {"nodeName": "n1"}});
        let stats = PodStats {
            pod_ref: PodReference {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
            },
            containers: vec![
                container("app", Some(1_234_567), Some(20 * 1024 * 1024)),
                container("sidecar", Some(0), Some(12_345)),
            ],
        };
        assert_eq!(
            pod_item(&pod, &stats, now()).unwrap(),
            json!({
                "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                             "creationTimestamp": "2026-11-25T10:00:12Z"},
                "timestamp": "2026-11-25T10:00:10Z",
                "window": "10s",
                "containers": [
                    {"name": "app", "usage": {"cpu": "1234567n", "memory": "20Mi"}},
                    {"name": "sidecar", "usage": {"cpu": "0", "memory": "12345"}},
                ],
            })
        );
    }

    #[test]
    fn a_pod_is_shown_only_once_every_container_has_its_usage() {
        let pod = json!({"metadata": {"name": "web", "uid": "u1"}});
        let mut stats = PodStats {
            containers: vec![
                container("app", Some(1), Some(1)),
                container("new", None, Some(1)),
            ],
            ..Default::default()
        };
        assert!(pod_item(&pod, &stats, now()).is_none(), "no CPU rate yet");
        stats.containers[1] = container("new", Some(1), None);
        assert!(pod_item(&pod, &stats, now()).is_none(), "no memory");
        stats.containers.clear();
        assert!(pod_item(&pod, &stats, now()).is_none(), "nothing runs");
    }

    #[test]
    fn kubectl_get_shows_the_usage_summed_over_a_pods_containers() {
        let item = json!({"metadata": {"name": "web"}, "window": "10s", "containers": [
            {"name": "a", "usage": {"cpu": "250m", "memory": "10Mi"}},
            {"name": "b", "usage": {"cpu": "1234567n", "memory": "6Mi"}}]});
        assert_eq!(
            super::super::table::cells("PodMetrics", &item, now()),
            vec![
                json!("web"),
                json!("251234567n"),
                json!("16Mi"),
                json!("10s")
            ]
        );
        let node = json!({"metadata": {"name": "n1"}, "window": "10s",
                          "usage": {"cpu": "1500m", "memory": "3Gi"}});
        assert_eq!(
            super::super::table::cells("NodeMetrics", &node, now()),
            vec![json!("n1"), json!("1500m"), json!("3Gi"), json!("10s")]
        );
    }

    #[test]
    fn only_running_pods_on_a_node_and_ready_nodes_are_asked() {
        let pod = |phase: &str, node: &str| json!({"spec": {"nodeName": node}, "status": {"phase": phase}});
        assert!(is_running(&pod("Running", "n1")));
        assert!(!is_running(&pod("Pending", "n1")));
        assert!(!is_running(&pod("Running", "")));
        let node =
            |status: &str| json!({"status": {"conditions": [{"type": "Ready", "status": status}]}});
        assert!(is_ready(&node("True")));
        assert!(!is_ready(&node("Unknown")));
        assert!(!is_ready(&json!({})));
    }

    #[test]
    fn node_metrics_need_the_nodes_cpu_rate_and_memory() {
        let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}});
        let mut summary = Summary {
            node: NodeStats {
                node_name: "n1".into(),
                cpu: Some(CpuStats {
                    time: "2026-11-25T10:00:10Z".into(),
                    usage_nano_cores: Some(1_500_000_000),
                    usage_core_nano_seconds: None,
                }),
                memory: Some(MemoryStats {
                    time: "2026-11-25T10:00:11Z".into(),
                    working_set_bytes: Some(3 * 1024 * 1024 * 1024),
                    ..Default::default()
                }),
            },
            pods: Vec::new(),
        };
        let item = node_item(&node, &summary, now()).unwrap();
        assert_eq!(item["usage"], json!({"cpu": "1500m", "memory": "3Gi"}));
        assert_eq!(item["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert!(item["metadata"].get("namespace").is_none());
        summary.node.cpu.as_mut().unwrap().usage_nano_cores = None;
        assert!(node_item(&node, &summary, now()).is_none());
    }
}
