//! What the benchmarks share: an `orch server` subprocess with its own data dir, clients for it, and
//! the report format (figure, goal, met or missed).

// Each benchmark binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use orch::client::{Client, RemoteConfig};

pub struct BenchServer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl BenchServer {
    /// Starts `orch server` without its node agent and returns it with the time until /readyz answered.
    pub async fn start(dir: &Path, extra: &[&str]) -> (BenchServer, Duration) {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Self::start_raw(dir, &args).await
    }

    /// Starts `orch server` with its embedded agent as node `bench` (needs root); runtime state and logs
    /// under `dir`.
    pub async fn start_with_agent(dir: &Path, extra: &[&str]) -> (BenchServer, Duration) {
        let run_dir = dir.join("run").display().to_string();
        let log_root = dir.join("log").display().to_string();
        let registries = dir.join("no-registries.yaml").display().to_string();
        let mut args = vec![
            "--node-name",
            "bench",
            "--node-ip",
            "127.0.0.1",
            "--run-dir",
            run_dir.as_str(),
            "--container-log-root",
            log_root.as_str(),
            "--private-registry",
            registries.as_str(),
        ];
        args.extend_from_slice(extra);
        Self::start_raw(dir, &args).await
    }

    async fn start_raw(dir: &Path, extra: &[&str]) -> (BenchServer, Duration) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(dir.join("no-config.yaml"), "").unwrap();
        let kubeconfig = dir.join("kubeconfig.yaml");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_orch"))
            .args(["server", "--bind-address", "127.0.0.1", "--log", "warn"])
            .args(["--https-listen-port", &port.to_string()])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .arg("--config")
            .arg(dir.join("no-config.yaml"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("orch binary runs");
        let server = BenchServer {
            dir: dir.to_path_buf(),
            port,
            child,
        };
        loop {
            if let Some(client) = server.try_client() {
                if let Ok(resp) = client
                    .send(Method::GET, "/readyz", Bytes::new(), "text/plain")
                    .await
                {
                    if resp.status().is_success() {
                        return (server, started.elapsed());
                    }
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server never became ready"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn try_client(&self) -> Option<Client> {
        let text = std::fs::read_to_string(self.dir.join("kubeconfig.yaml")).ok()?;
        let config = RemoteConfig::from_kubeconfig(&text).ok()?;
        Client::remote(config).ok()
    }

    pub fn client(&self) -> Client {
        self.try_client().expect("client from kubeconfig")
    }

    /// `orch agent --hollow --count N` joined to this server.
    pub fn hollow_agent(&self, count: usize) -> Child {
        Command::new(env!("CARGO_BIN_EXE_orch"))
            .args([
                "agent",
                "--hollow",
                "--node-name",
                "hollow",
                "--log",
                "warn",
            ])
            .args(["--count", &count.to_string()])
            .args(["--server", &format!("https://127.0.0.1:{}", self.port)])
            .arg("--token-file")
            .arg(self.dir.join("data/server/token"))
            .env("ORCH_CONFIG_FILE", self.dir.join("no-config.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("orch binary runs")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server with SIGTERM and waits for it, as dropping it does.
    pub fn stop(self) {}
}

/// Stopped when dropped, after a failed check (a panic) too: a server left running keeps the ports,
/// the pods and the host rules of the next run. Killed when it does not stop within a minute.
impl Drop for BenchServer {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while matches!(self.child.try_wait(), Ok(None)) {
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn report(name: &str, value: String, goal: &str, met: bool) {
    println!(
        "{name:<44} {value:>16}   goal {goal:<14} {}",
        if met { "ok" } else { "MISSED" }
    );
}
