//! `make bench` for the API server: cold start to /readyz, idle RSS, creates/s with p50/p99 over 32
//! concurrent clients, watch delivery latency, and the database size after 1,000,000 updates of 1,000
//! objects. Each figure is printed with its goal, and write throughput also against a reference measured in
//! the same run: plain SQLite doing one fsync'd transaction per insert, which is what group commit beats.
//!
//! `ORCH_BENCH_UPDATES` overrides the number of updates (default 1,000,000).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{ms, percentile, report, BenchServer};
use orch::client::WatchEventKind;
use serde_json::json;

mod common;

const CLIENTS: usize = 32;
const CREATES: usize = 20_000;
const WATCHED_CREATES: usize = 1_000;
const OBJECTS: usize = 1_000;

/// Plain SQLite, WAL, synchronous=FULL, one transaction per insert: the write path without group commit.
fn sqlite_reference_inserts_per_second(dir: &Path) -> f64 {
    let conn = rusqlite::Connection::open(dir.join("reference.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute(
        "CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, value BLOB)",
        [],
    )
    .unwrap();
    let value = vec![b'x'; 300];
    let started = Instant::now();
    let n = 2_000;
    for i in 0..n {
        conn.execute(
            "INSERT INTO log (key, value) VALUES (?1, ?2)",
            rusqlite::params![format!("/k/{i}"), value],
        )
        .unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn creates(server: &BenchServer) -> (f64, Vec<Duration>) {
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.client());
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (worker, client) in clients.into_iter().enumerate() {
        workers.spawn(async move {
            let mut latencies = Vec::with_capacity(CREATES / CLIENTS);
            for i in 0..CREATES / CLIENTS {
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("c-{worker}-{i}")}, "data": {"k": "v"}});
                let t = Instant::now();
                client
                    .create("/api/v1/namespaces/default/configmaps", &body)
                    .await
                    .expect("create");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.unwrap());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

/// Watch delivery: the time from a create's acknowledgement to its event on an open watch (an event that
/// arrives before the acknowledgement counts as zero), and the whole create → event time.
async fn watch_latency(server: &BenchServer) -> (Vec<Duration>, Vec<Duration>) {
    let writer = server.client();
    let watcher = server.client();
    let list = writer
        .get("/api/v1/namespaces/kube-public/configmaps")
        .await
        .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut stream = watcher
        .watch(&format!(
            "/api/v1/namespaces/kube-public/configmaps?watch=1&resourceVersion={rv}"
        ))
        .await
        .unwrap();
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                if event.kind == WatchEventKind::Added {
                    let mut a = arrivals.lock().unwrap();
                    a.push(Instant::now());
                    if a.len() == WATCHED_CREATES {
                        return;
                    }
                }
            }
        })
    };
    let mut sent = Vec::new();
    let mut acked = Vec::new();
    for i in 0..WATCHED_CREATES {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("w-{i}")}});
        sent.push(Instant::now());
        writer
            .create("/api/v1/namespaces/kube-public/configmaps", &body)
            .await
            .unwrap();
        acked.push(Instant::now());
        // One at a time, so each event's arrival is attributable to its create.
        while arrivals.lock().unwrap().len() <= i {
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
    reader.await.unwrap();
    let arrivals = arrivals.lock().unwrap().clone();
    let mut delivery: Vec<Duration> = arrivals
        .iter()
        .zip(&acked)
        .map(|(a, k)| a.saturating_duration_since(*k))
        .collect();
    let mut end_to_end: Vec<Duration> = arrivals.iter().zip(&sent).map(|(a, s)| *a - *s).collect();
    delivery.sort();
    end_to_end.sort();
    (delivery, end_to_end)
}

async fn updates(server: &BenchServer, total: usize) -> Duration {
    let client = server.client();
    for i in 0..OBJECTS {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("u-{i}"), "namespace": "kube-node-lease"},
            "data": {"counter": "0", "payload": "x".repeat(200)}});
        client
            .create("/api/v1/namespaces/kube-node-lease/configmaps", &body)
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CLIENTS {
        let client = server.client();
        workers.spawn(async move {
            let mut n = worker;
            while n < total {
                let path = format!(
                    "/api/v1/namespaces/kube-node-lease/configmaps/u-{}",
                    n % OBJECTS
                );
                client
                    .merge_patch(&path, &json!({"data": {"counter": n.to_string()}}))
                    .await
                    .expect("update");
                n += CLIENTS;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    started.elapsed()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let updates_total: usize = std::env::var("ORCH_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let work = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        println!("orch API server benchmark ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let (server, first_start) = BenchServer::start(work.path(), &[]).await;
        report("cold start to /readyz (first start, new PKI)", format!("{:.0} ms", ms(first_start)), "≤ 300 ms", first_start <= Duration::from_millis(300));
        server.stop();
        let (server, restart) = BenchServer::start(work.path(), &[]).await;
        report("cold start to /readyz (existing data dir)", format!("{:.0} ms", ms(restart)), "≤ 300 ms", restart <= Duration::from_millis(300));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.rss_kib();
        report("idle RSS", format!("{:.1} MB", rss as f64 / 1024.0), "≤ 30 MB", rss <= 30 * 1024);

        let reference = sqlite_reference_inserts_per_second(work.path());
        let (rate, latencies) = creates(&server).await;
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        report(&format!("creates/s ({CLIENTS} clients, {CREATES} creates)"), format!("{rate:.0}/s"), "≥ 2000/s", rate >= 2000.0);
        println!("{:<44} {:>16}   reference: plain SQLite, one fsync'd insert per transaction", "  vs reference", format!("{:.1}× ({reference:.0}/s)", rate / reference));
        report("create latency p50", format!("{:.2} ms", ms(p50)), "", true);
        report("create latency p99", format!("{:.2} ms", ms(p99)), "≤ 50 ms", p99 <= Duration::from_millis(50));

        let (delivery, end_to_end) = watch_latency(&server).await;
        let p99 = percentile(&delivery, 0.99);
        report("watch delivery after ack p99", format!("{:.2} ms", ms(p99)), "≤ 10 ms", p99 <= Duration::from_millis(10));
        report("create → watch event p50", format!("{:.2} ms", ms(percentile(&end_to_end, 0.5))), "", true);
        report("create → watch event p99", format!("{:.2} ms", ms(percentile(&end_to_end, 0.99))), "", true);
        server.stop();

        let db_dir = work.path().join("data/server/db");
        let (server, _) = BenchServer::start(work.path(), &["--datastore-compaction-interval", "2"]).await;
        let took = updates(&server, updates_total).await;
        report(&format!("updates/s ({updates_total} of {OBJECTS} objects)"), format!("{:.0}/s", updates_total as f64 / took.as_secs_f64()), "", true);
        // Two compaction rounds: one to remove the history, one more to reuse its pages.
        tokio::time::sleep(Duration::from_secs(5)).await;
        server.stop();
        let db = file_size(&db_dir.join("state.db")) + file_size(&db_dir.join("state.db-wal"));
        let conn = rusqlite::Connection::open(db_dir.join("state.db")).unwrap();
        let live: i64 = conn
            .query_row("SELECT sum(length(l.key) + length(l.value)) FROM current c JOIN log l ON l.id = c.rev", [], |r| r.get(0))
            .unwrap();
        let ratio = db as f64 / live as f64;
        report("DB size after updates (incl. WAL)", format!("{:.1} MB", db as f64 / 1e6), "", true);
        report("  vs live data", format!("{ratio:.2}× ({:.1} MB)", live as f64 / 1e6), "≤ 2×", ratio <= 2.0);
    });
}
