//! The composition root of `orch server`: configuration → store → registry → API server (HTTPS) → ready,
//! then the control loops; plus the PKI, the token and the admin kubeconfig.

pub mod kubeconfig;
pub mod pki;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::apiserver::{ApiServer, Authenticator, User};
use crate::client::Client;
use crate::registry::{Registry, ServiceAllocator};
use crate::store::{Backend, SqliteBackend, SqliteOptions};
use crate::util::cidr::{CidrError, Ipv4Cidr};
use crate::util::SystemClock;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("certificates: {0}")]
    Pki(#[from] pki::PkiError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] crate::client::ClientError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub https_listen_port: u16,
    pub bind_address: IpAddr,
    pub advertise_address: Option<IpAddr>,
    pub tls_san: Vec<String>,
    pub token: Option<String>,
    pub write_kubeconfig: Option<PathBuf>,
    pub write_kubeconfig_mode: Option<u32>,
    pub node_name: String,
    pub service_cidr: String,
    pub service_node_port_range: (u16, u16),
    pub cluster_dns: IpAddr,
    pub controllers: crate::controllers::ControllerConfig,
    pub scheduler: crate::scheduler::SchedulerProfile,
    /// Store history older than this many revisions is compacted.
    pub compaction_retention: i64,
    pub compaction_interval: Duration,
}

/// A running server: its address and the handle that stops it.
pub struct RunningServer {
    pub address: SocketAddr,
    pub token: String,
    pub api: Arc<ApiServer>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// A client that calls this server in-process, for the embedded node agent.
    pub fn local_client(&self) -> Client {
        Client::in_process(self.api.clone(), User::admin()).with_user_agent("orch-agent/v1")
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
    let server_dir = config.data_dir.join("server");
    let backend: Arc<dyn Backend> = Arc::new(SqliteBackend::open(SqliteOptions::new(
        server_dir.join("db").join("state.db"),
    ))?);

    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        host_name(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    if let Some(ip) = config.advertise_address {
        sans.push(ip.to_string());
    }
    if !config.bind_address.is_unspecified() {
        sans.push(config.bind_address.to_string());
    }
    let service_cidr: Ipv4Cidr = config
        .service_cidr
        .parse()
        .map_err(|e: CidrError| ServerError::Config(format!("--service-cidr: {e}")))?;
    if service_cidr.prefix_len() > 30 {
        return Err(ServerError::Config(format!(
            "--service-cidr {service_cidr} leaves no address for services: want /30 or larger"
        )));
    }
    let kubernetes_ip = service_cidr
        .nth(1)
        .expect("a /30 or larger has a first address");
    sans.push(kubernetes_ip.to_string());
    sans.extend(config.tls_san.iter().cloned());
    sans.dedup();
    let pki = pki::Pki::ensure(&server_dir, &sans, config.token.as_deref())?;

    let registry = Arc::new(Registry::new(
        backend.clone(),
        Arc::new(SystemClock),
        ServiceAllocator::new(service_cidr, config.service_node_port_range),
    ));
    let auth = Authenticator::new(vec![
        (pki.token.clone(), User::admin()),
        (pki.token_secret().to_string(), User::admin()),
    ]);
    let address = SocketAddr::new(config.bind_address, config.https_listen_port);
    let advertised = config
        .advertise_address
        .map(|ip| SocketAddr::new(ip, config.https_listen_port))
        .unwrap_or(address);
    let api = Arc::new(
        ApiServer::new(registry.clone(), auth, advertised.to_string())
            .with_ca_bundle(pki.ca_cert_pem.clone())
            .with_kubelet_credentials(Arc::new(
                pki.kubelet_credentials().map_err(ServerError::Tls)?,
            )),
    );
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen {
            addr: address,
            source,
        })?;
    let address = listener
        .local_addr()
        .map_err(|source| ServerError::Listen {
            addr: address,
            source,
        })?;
    let tls = Arc::new(pki.tls_config().map_err(ServerError::Tls)?);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(crate::apiserver::listener::serve_tls(
        api.clone(),
        listener,
        tls,
        shutdown_rx.clone(),
    ))];

    let client = Client::in_process(api.clone(), User::admin());
    bootstrap(&client, kubernetes_ip.to_string(), config.https_listen_port).await?;

    if let Some(path) = &config.write_kubeconfig {
        let host = match config.bind_address {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let text = kubeconfig::render(
            &format!("https://{host}:{}", address.port()),
            &pki.ca_cert_pem,
            &pki.admin_cert_pem,
            &pki.admin_key_pem,
        );
        write_file(path, &text, config.write_kubeconfig_mode.unwrap_or(0o600))?;
    }

    tasks.push(tokio::spawn(run_control_loops(
        client.clone(),
        config.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(compaction_loop(
        backend,
        config.compaction_retention,
        config.compaction_interval,
        shutdown_rx,
    )));
    Ok(RunningServer {
        address,
        token: pki.token.clone(),
        api,
        shutdown,
        tasks,
    })
}

fn write_file(path: &std::path::Path, text: &str, mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The namespaces every cluster has, and the `kubernetes` Service in `default`.
async fn bootstrap(client: &Client, kubernetes_ip: String, port: u16) -> Result<(), ServerError> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        client
            .ensure("/api/v1/namespaces", &json!({"metadata": {"name": ns}}))
            .await?;
    }
    client
        .ensure(
            "/api/v1/namespaces/default/services",
            &json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"clusterIP": kubernetes_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                             "sessionAffinity": "None", "type": "ClusterIP"}}),
        )
        .await?;
    client
        .ensure(
            "/apis/storage.k8s.io/v1/storageclasses",
            &json!({"metadata": {"name": crate::controllers::persistent_volume::LOCAL_PATH_CLASS,
                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                    "provisioner": crate::api::meta::LOCAL_PATH_PROVISIONER,
                    "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .await?;
    Ok(())
}

/// Lease that decides which server runs the scheduler and controllers.
const LEADER_LEASE: &str = "orch-controllers";
const LEASE_DURATION: Duration = Duration::from_secs(15);
const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(2);

/// Once this server leads, runs the scheduler and controllers until shutdown or lost leadership.
async fn run_control_loops(client: Client, config: ServerConfig, shutdown: watch::Receiver<bool>) {
    let clock: Arc<dyn crate::util::Clock> = Arc::new(SystemClock);
    let (leading_tx, mut leading) = watch::channel(false);
    let election = crate::client::leader::LeaderElection {
        client: client.clone(),
        namespace: "kube-system".into(),
        name: LEADER_LEASE.into(),
        identity: format!("{}_{}", config.node_name, uuid::Uuid::new_v4()),
        lease_duration: LEASE_DURATION,
        renew_interval: LEASE_RENEW_INTERVAL,
    };
    let election = tokio::spawn(election.run(clock.clone(), leading_tx, shutdown.clone()));
    let mut server_shutdown = shutdown.clone();
    tokio::select! {
        result = leading.wait_for(|l| *l) => if result.is_err() { return },
        _ = server_shutdown.wait_for(|s| *s) => return,
    }
    let (stop_tx, stop) = watch::channel(false);
    let informers = Arc::new(crate::client::SharedInformers::new(&client));
    let mut tasks = crate::scheduler::start(
        client.clone(),
        informers.clone(),
        clock.clone(),
        config.scheduler.clone(),
        stop.clone(),
    );
    tasks.extend(crate::controllers::start(crate::controllers::Context {
        client,
        informers,
        clock,
        config: config.controllers.clone(),
        shutdown: stop,
    }));
    tokio::select! {
        _ = leading.wait_for(|l| !*l) => {}
        _ = server_shutdown.wait_for(|s| *s) => {}
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let _ = election.await;
}

async fn compaction_loop(
    backend: Arc<dyn Backend>,
    retention: i64,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let target = backend.current_revision() - retention;
        if target > backend.compacted_revision() {
            match backend.compact(target).await {
                Ok(removed) => tracing::debug!(removed, target, "compacted"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
    }
}

/// For unit tests of code that talks to the API: a real API server on a temporary store, reached with
/// the in-process client (no socket, no TLS), with the given clock.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use serde_json::json;

    use crate::apiserver::{ApiServer, Authenticator, User};
    use crate::client::Client;
    use crate::registry::{Registry, ServiceAllocator};
    use crate::store::{SqliteBackend, SqliteOptions};
    use crate::util::Clock;

    /// The client and the directory holding the store (dropping it removes the store).
    pub async fn in_process(clock: Arc<dyn Clock>) -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("state.db"));
        options.full_sync = false;
        let backend = Arc::new(SqliteBackend::open(options).unwrap());
        let services = ServiceAllocator::new("10.43.0.0/16".parse().unwrap(), (30000, 32767));
        let registry = Arc::new(Registry::new(backend, clock, services));
        let api = Arc::new(ApiServer::new(
            registry,
            Authenticator::new(Vec::new()),
            "127.0.0.1:6443".into(),
        ));
        let client = Client::in_process(api, User::admin());
        client
            .ensure(
                "/api/v1/namespaces",
                &json!({"metadata": {"name": "default"}}),
            )
            .await
            .unwrap();
        (dir, client)
    }
}
