//! `make bench` for the scheduler and controllers on hollow nodes: pods bound per second with 100 nodes,
//! and the time for a 100-replica Deployment to report 100/100 available.

use std::time::{Duration, Instant};

use common::{report, BenchServer};
use orch::client::{Client, WatchEventKind};
use serde_json::json;

mod common;

const NODES: usize = 100;
const PODS: usize = 2_000;
const CLIENTS: usize = 32;
const REPLICAS: i64 = 100;

async fn ready_nodes(client: &Client) -> usize {
    let nodes = client.get("/api/v1/nodes").await.unwrap();
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count()
}

async fn create_namespace(client: &Client, name: &str) {
    client
        .create("/api/v1/namespaces", &json!({"metadata": {"name": name}}))
        .await
        .unwrap();
}

/// Creates PODS pods at once and returns the pods bound per second from the first create to the last bind.
async fn scheduler_throughput(server: &BenchServer) -> f64 {
    let client = server.client();
    create_namespace(&client, "bench").await;
    let list = client.get("/api/v1/namespaces/bench/pods").await.unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream = client
        .watch(&format!(
            "/api/v1/namespaces/bench/pods?watch=1&resourceVersion={rv}"
        ))
        .await
        .unwrap();
    let started = Instant::now();
    let mut creators = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let client = server.client();
        creators.spawn(async move {
            for i in (worker..PODS).step_by(CLIENTS) {
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("p-{i}"), "labels": {"bench": "scheduler"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1.36",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
                client
                    .create("/api/v1/namespaces/bench/pods", &pod)
                    .await
                    .expect("create pod");
            }
        });
    }
    let mut bound = std::collections::HashSet::new();
    while bound.len() < PODS {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("pods keep getting bound")
            .expect("watch open")
            .expect("watch event");
        if event.kind == WatchEventKind::Modified && event.object["spec"]["nodeName"].is_string() {
            bound.insert(
                event.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
    }
    let elapsed = started.elapsed();
    while creators.join_next().await.is_some() {}
    PODS as f64 / elapsed.as_secs_f64()
}

async fn deployment_to_available(server: &BenchServer) -> Duration {
    let client = server.client();
    create_namespace(&client, "rollout").await;
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}}}});
    let started = Instant::now();
    client
        .create("/apis/apps/v1/namespaces/rollout/deployments", &deployment)
        .await
        .unwrap();
    loop {
        let d = client
            .get("/apis/apps/v1/namespaces/rollout/deployments/web")
            .await
            .unwrap();
        if d["status"]["availableReplicas"].as_i64() == Some(REPLICAS) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "deployment never became available"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let work = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        println!("orch control-plane benchmark on {NODES} hollow nodes");
        let (server, _) = BenchServer::start(work.path(), &[]).await;
        let mut agent = server.hollow_agent(NODES);
        let client = server.client();
        let joined = Instant::now();
        while ready_nodes(&client).await < NODES {
            assert!(
                joined.elapsed() < Duration::from_secs(60),
                "hollow nodes never became Ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "{:<44} {:>16}",
            "100 hollow nodes Ready after",
            format!("{:.1} s", joined.elapsed().as_secs_f64())
        );
        let rate = scheduler_throughput(&server).await;
        report(
            &format!("scheduler: pods bound/s ({PODS} pods)"),
            format!("{rate:.0}/s"),
            "≥ 500/s",
            rate >= 500.0,
        );
        let took = deployment_to_available(&server).await;
        report(
            "100-replica Deployment to 100/100 available",
            format!("{:.2} s", took.as_secs_f64()),
            "(hollow nodes)",
            true,
        );
        println!("  on a real node: measured by the agent benchmark (benches/agent.rs, as root)");
        let _ = agent.kill();
        let _ = agent.wait();
        server.stop();
    });
}
