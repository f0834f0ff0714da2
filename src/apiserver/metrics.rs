//! `metrics.k8s.io/v1beta1`, what `kubectl top` reads, shaped as metrics-server serves it but asked of
//! the nodes when a client asks instead of scraped ahead: NodeMetrics and PodMetrics (get and list, with
//! label and field selectors) made from each node's kubelet Summary — the embedded agent's in-process,
//! a joined node's from its kubelet endpoint. CPU is the rate over the node's last sampling period (the
//! `window`), memory the working set. As under metrics-server, a pod is shown once every container it
//! runs has a CPU rate, and a node that does not answer in time is left out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::handlers::{list_options, table_response, wants_table};
use super::request::Target;
use super::status::ApiError;
use super::{json_response, ApiServer, Body, Query, RequestContext};
use crate::api::meta::{self, format_time};
use crate::api::quantity::{Quantity, QuantityFormat};
use crate::api::resources::{self, ResourceInfo};
use crate::api::stats::{PodStats, Summary, CPU_SAMPLE_PERIOD, SUMMARY_PATH};
use crate::registry::RegistryError;

/// How long a node has to answer (metrics-server's kubelet request timeout).
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    method: &Method,
    target: &Target,
    q: &Query,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    let Target::Resource {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    } = target
    else {
        return Err(ApiError::not_found_path());
    };
    let info = resources::find_node_reported(group, version, plural)
        .filter(|info| subresource.is_none() && (info.namespaced || namespace.is_none()))
        .ok_or_else(ApiError::not_found_path)?;
    if *method != Method::GET || q.flag("watch") {
        return Err(ApiError::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let namespace = namespace.as_deref();
    let now = server.registry().now();
    let mut items = match (info.kind, name) {
        ("NodeMetrics", Some(name)) => vec![node_metrics_named(server, info, name).await?],
        ("NodeMetrics", None) => node_metrics(server, q).await?,
        (_, Some(name)) => {
            vec![pod_metrics_named(server, info, namespace.unwrap_or_default(), name).await?]
        }
        (_, None) => pod_metrics(server, namespace, q).await?,
    };
    if wants_table(&ctx.accept) {
        return Ok(table_response(info, &items, 0, None, q, now));
    }
    if name.is_some() {
        if let Some(mut item) = items.pop() {
            item["kind"] = json!(info.kind);
            item["apiVersion"] = json!(info.api_version());
            return Ok(json_response(StatusCode::OK, &item));
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": info.list_kind(), "apiVersion": info.api_version(), "metadata": {}, "items": items}),
    ))
}

fn not_found(info: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        message: format!("{}.{} \"{name}\" not found", info.singular, info.group),
        details: json!({"name": name, "group": info.group, "kind": info.plural}),
    }
}

fn core(plural: &str) -> &'static ResourceInfo {
    resources::find("", "v1", plural).expect("core resources are served")
}

/// The Summary of `node`: the embedded agent's read in-process, another's asked of its kubelet.
async fn node_summary(server: &ApiServer, node: &str) -> Result<Summary, String> {
    if let Some(local) = server.node_summary.get().filter(|s| s.node_name() == node) {
        let local = local.clone();
        return tokio::task::spawn_blocking(move || local.summary())
            .await
            .map_err(|e| e.to_string());
    }
    let asked = async {
        let stream = Box::pin(super::kubelet::get(server, node, SUMMARY_PATH))
            .await
            .map_err(|e| e.to_string())?;
        let body: Vec<Bytes> = stream.collect().await;
        serde_json::from_slice(&body.concat()).map_err(|e| e.to_string())
    };
    tokio::time::timeout(NODE_TIMEOUT, asked)
        .await
        .map_err(|_| format!("no answer within {NODE_TIMEOUT:?}"))?
}

/// The Summaries of `nodes` that answered, by node name.
async fn summaries(server: &ApiServer, nodes: BTreeSet<String>) -> HashMap<String, Summary> {
    let asked = nodes.into_iter().map(|node| async move {
        let summary = node_summary(server, &node).await;
        (node, summary)
    });
    futures_util::future::join_all(asked)
        .await
        .into_iter()
        .filter_map(|(node, summary)| match summary {
            Ok(summary) => Some((node, summary)),
            Err(e) => {
                tracing::debug!(%node, error = %e, "reading the node's resource usage");
                None
            }
        })
        .collect()
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

fn pod_stats<'s>(summary: &'s Summary, pod: &Value) -> Option<&'s PodStats> {
    let uid = meta::uid(pod)?;
    summary.pods.iter().find(|p| p.pod_ref.uid == uid)
}

async fn node_metrics(server: &ApiServer, q: &Query) -> Result<Vec<Value>, ApiError> {
    let nodes = server
        .registry()
        .list(core("nodes"), None, &list_options(q)?)
        .await?
        .items;
    let names = nodes
        .iter()
        .filter_map(|n| meta::name(n).map(str::to_string))
        .collect();
    let summaries = summaries(server, names).await;
    let now = server.registry().now();
    Ok(nodes
        .iter()
        .filter_map(|node| node_item(node, summaries.get(meta::name(node)?)?, now))
        .collect())
}

async fn node_metrics_named(
    server: &ApiServer,
    info: &ResourceInfo,
    name: &str,
) -> Result<Value, ApiError> {
    let node = match server.registry().get(core("nodes"), None, name).await {
        Err(RegistryError::NotFound { .. }) => return Err(not_found(info, name)),
        other => other?,
    };
    let summary = node_summary(server, name).await.ok();
    summary
        .and_then(|s| node_item(&node, &s, server.registry().now()))
        .ok_or_else(|| not_found(info, name))
}

async fn pod_metrics(
    server: &ApiServer,
    namespace: Option<&str>,
    q: &Query,
) -> Result<Vec<Value>, ApiError> {
    let pods = server
        .registry()
        .list(core("pods"), namespace, &list_options(q)?)
        .await?
        .items;
    let nodes = pods
        .iter()
        .filter_map(|p| node_name_of(p).map(str::to_string))
        .collect();
    let summaries = summaries(server, nodes).await;
    let now = server.registry().now();
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let summary = summaries.get(node_name_of(pod)?)?;
            pod_item(pod, pod_stats(summary, pod)?, now)
        })
        .collect())
}

async fn pod_metrics_named(
    server: &ApiServer,
    info: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let pod = match server
        .registry()
        .get(core("pods"), Some(namespace), name)
        .await
    {
        Err(RegistryError::NotFound { .. }) => return Err(not_found(info, name)),
        other => other?,
    };
    let Some(node) = node_name_of(&pod) else {
        return Err(not_found(info, name));
    };
    let summary = node_summary(server, node).await.ok();
    summary
        .and_then(|s| pod_item(&pod, pod_stats(&s, &pod)?, server.registry().now()))
        .ok_or_else(|| not_found(info, name))
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
