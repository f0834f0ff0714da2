//! What survives `kill -9`: every acknowledged write of 10,000 concurrent creates, and watches that resume
//! from their resourceVersion.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::Server;

/// Creates this many ConfigMaps at once and kills the server while they are in flight.
const CONCURRENT_CREATES: usize = 10_000;
/// Parallel HTTP/2 connections the creates are spread over.
const CONNECTIONS: usize = 16;

#[test]
fn acknowledged_creates_survive_kill_9_and_watches_resume() {
    let mut s = Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pid = s.pid();
    let acknowledged: Vec<String> = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(s.client());
        }
        let done = Arc::new(AtomicUsize::new(0));
        let mut creates = tokio::task::JoinSet::new();
        for i in 0..CONCURRENT_CREATES {
            let client = clients[i % CONNECTIONS].clone();
            let done = done.clone();
            creates.spawn(async move {
                let name = format!("cm-{i}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}});
                let result = client
                    .create("/api/v1/namespaces/default/configmaps", &body)
                    .await;
                done.fetch_add(1, Ordering::Relaxed);
                result.ok().map(|_| name)
            });
        }
        // SIGKILL once a good share is acknowledged, with thousands still in flight.
        while done.load(Ordering::Relaxed) < CONCURRENT_CREATES / 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let mut acknowledged = Vec::new();
        while let Some(result) = creates.join_next().await {
            acknowledged.extend(result.unwrap());
        }
        acknowledged
    });
    s.kill();
    assert!(
        acknowledged.len() >= CONCURRENT_CREATES / 3 && acknowledged.len() < CONCURRENT_CREATES,
        "the kill must land mid-way: {} of {CONCURRENT_CREATES} acknowledged",
        acknowledged.len()
    );
    s.spawn();
    let names = s.ok(&["get", "cm", "-o", "jsonpath={.items[*].metadata.name}"]);
    let stored: std::collections::HashSet<&str> = names.split_whitespace().collect();
    for name in &acknowledged {
        assert!(
            stored.contains(name.as_str()),
            "acknowledged create {name} lost after kill -9"
        );
    }

    // A watch from a revision before the crash replays what came after it.
    let list_rv = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ]);
    let list: serde_json::Value = serde_json::from_str(&list_rv).unwrap();
    let rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    s.kill();
    s.spawn();
    s.ok(&["create", "configmap", "after-restart"]);
    let events = s.ok(&["get", "--raw", &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1")]);
    assert!(
        events.contains("\"ADDED\"") && events.contains("after-restart"),
        "{events}"
    );
    assert_eq!(
        events.lines().count(),
        1,
        "only the create after {rv} is replayed: {events}"
    );
}
