//! What survives `kill -9`: every acknowledged write, and watches that resume from their resourceVersion.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::Server;

#[test]
fn acknowledged_creates_survive_kill_9_and_watches_resume() {
    let mut s = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for worker in 0..6 {
            let stop = stop.clone();
            let acknowledged = acknowledged.clone();
            let s = &s;
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w{worker}-{i}");
                    if s.kubectl(&["create", "configmap", &name, "--from-literal=k=v"])
                        .status
                        .success()
                    {
                        acknowledged.lock().unwrap().push(name);
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(3));
        // SIGKILL while creates are in flight; the workers see failures from here on.
        let killed = std::process::Command::new("kill")
            .args(["-9", &s.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    s.kill();
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 10,
        "too few creates to prove anything: {}",
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
