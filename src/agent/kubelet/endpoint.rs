//! kubelet's HTTPS endpoint on a joined node (kubelet's `--port`, 10250 by default): what the API server can
//! only get from the node itself. It serves with a certificate the server issues (kept under
//! `<data-dir>/agent/tls` across restarts and renewed in place 90 days before it expires), and accepts only
//! callers holding a client certificate from the cluster CA, as the API server does when it dials it. It
//! answers kubelet's `GET /containerLogs/{namespace}/{pod}/{container}` (`kubectl logs` for pods here,
//! with `pods/log`'s query), `/exec/{namespace}/{pod}/{container}` and `/attach/…` (exec and attach
//! sessions, which the API server relays from `pods/exec` and `pods/attach`),
//! `/portForward/{namespace}/{pod}` (port-forward sessions, relayed from `pods/portforward`),
//! `GET /stats/summary` (what the node and its containers use, for `metrics.k8s.io`) and `GET /healthz`. Sessions come as a GET upgraded to a WebSocket, as the API server sends them, or as a
//! POST upgraded to SPDY/3.1, as kubelet also takes them. The server's embedded agent needs none of this:
//! the API server reads its logs and usage and runs its exec, attach and port-forward sessions
//! in-process.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Pod;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use super::exec::NodeExec;
use super::logs::NodeLogs;
use super::portforward::NodePortForward;
use super::stats::NodeSummary;
use crate::agent::AgentError;
use crate::api::exec::{self, ExecOptions};
use crate::api::kubelet::{
    ServingCertificate, ServingCertificateRequest, SERVING_CERTIFICATE_PATH,
};
use crate::api::logs::{LogOptions, PodLogs};
use crate::api::portforward;
use crate::api::stats::{Summary, SummaryProvider};
use crate::client::{Api, Client};
use crate::streaming::{self, exec::PodExec, portforward::PodPortForward};
use crate::util::certificate;
use crate::util::upgrade::Upgrade;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(code: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(message.into()).boxed_unsync());
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn summary_response(summary: &Summary) -> Result<Response<Body>, (StatusCode, String)> {
    let body = serde_json::to_vec(summary)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// What the endpoint answers from: the node's container logs, exec sessions, port-forwarding and usage.
pub struct NodeStreams {
    pub logs: NodeLogs,
    pub exec: NodeExec,
    pub port_forward: NodePortForward,
    pub summary: Arc<NodeSummary>,
}

/// The endpoint's certificate and key between starts, under `<data-dir>/agent/tls`.
const CERTIFICATE_FILE: &str = "kubelet-serving.crt";
const KEY_FILE: &str = "kubelet-serving.key";
/// How often the certificate's remaining validity is looked at while the endpoint serves.
const RENEWAL_CHECK: Duration = Duration::from_secs(6 * 3600);

/// Serves with this node's certificate (kept from an earlier start while it is current for the node's
/// name and address, else issued by the server), binds `port` on every address (as kubelet's default
/// `--address` does) and serves until `shutdown`, renewing the certificate in place before it expires.
/// `ca_pem` is the cluster CA the agent pinned at join; only client certificates it signed are let in.
pub async fn start(
    client: Client,
    streams: NodeStreams,
    node_ip: IpAddr,
    port: u16,
    ca_pem: &str,
    certificate_dir: PathBuf,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let certificates = Certificates {
        client: client.clone(),
        request: ServingCertificateRequest {
            node_name: streams.logs.node_name.clone(),
            addresses: vec![node_ip],
        },
        dir: certificate_dir,
    };
    let issued = match certificates.stored() {
        Some(stored) => stored,
        None => certificates.renew().await?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = certified_key(&issued, &provider).map_err(AgentError::Config)?;
    let serving = Arc::new(ServingKey(RwLock::new(Arc::new(key))));
    let tls = tls_config(serving.clone(), ca_pem, provider.clone()).map_err(AgentError::Config)?;
    let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        AgentError::Config(format!("binding the kubelet endpoint on {address}: {e}"))
    })?;
    tracing::info!(%address, "kubelet endpoint is serving");
    tokio::spawn(certificates.keep_current(serving, provider, shutdown.clone()));
    let endpoint = Arc::new(Endpoint {
        client,
        logs: streams.logs,
        exec: Arc::new(streams.exec),
        port_forward: streams.port_forward,
        summary: streams.summary,
    });
    let handle = move |req, _certificate| {
        let endpoint = endpoint.clone();
        async move { endpoint.handle(req).await }
    };
    Ok(tokio::spawn(crate::util::https::serve(
        listener,
        Arc::new(tls),
        handle,
        shutdown,
    )))
}

/// Where the endpoint's certificate comes from and is kept.
struct Certificates {
    client: Client,
    request: ServingCertificateRequest,
    dir: PathBuf,
}

impl Certificates {
    /// The names the certificate must carry.
    fn wanted(&self) -> Vec<String> {
        let addresses = self.request.addresses.iter().map(IpAddr::to_string);
        std::iter::once(self.request.node_name.clone())
            .chain(addresses)
            .collect()
    }

    /// The kept certificate, if it is still current for this node.
    fn stored(&self) -> Option<ServingCertificate> {
        stored_certificate(&self.dir, &self.wanted())
    }

    /// A new certificate from the server, kept for the next start.
    async fn renew(&self) -> Result<ServingCertificate, AgentError> {
        let answer = self
            .client
            .request(
                Method::POST,
                SERVING_CERTIFICATE_PATH,
                Some(&serde_json::to_value(&self.request).expect("a request serializes")),
                "application/json",
            )
            .await?;
        let issued: ServingCertificate = serde_json::from_value(answer)
            .map_err(|e| AgentError::Config(format!("the server's serving certificate: {e}")))?;
        keep_certificate(&self.dir, &issued).map_err(|e| {
            AgentError::Config(format!(
                "keeping the serving certificate in {}: {e}",
                self.dir.display()
            ))
        })?;
        Ok(issued)
    }

    /// Renews the certificate the endpoint serves with once it nears expiry, until `shutdown`. Failures
    /// are retried at the next check, while the current certificate is still valid.
    async fn keep_current(
        self,
        serving: Arc<ServingKey>,
        provider: Arc<rustls::crypto::CryptoProvider>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RENEWAL_CHECK) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if self.stored().is_some() {
                continue;
            }
            let renewed = self
                .renew()
                .await
                .and_then(|issued| certified_key(&issued, &provider).map_err(AgentError::Config));
            match renewed {
                Ok(key) => {
                    *serving.0.write().expect("serving key lock") = Arc::new(key);
                    tracing::info!("renewed the kubelet endpoint's serving certificate");
                }
                Err(e) => tracing::warn!(error = %e, "renewing the kubelet serving certificate"),
            }
        }
    }
}

/// The certificate kept in `dir`, if it is far from expiry and carries every one of `wanted`.
fn stored_certificate(dir: &Path, wanted: &[String]) -> Option<ServingCertificate> {
    let certificate = std::fs::read_to_string(dir.join(CERTIFICATE_FILE)).ok()?;
    let key = std::fs::read_to_string(dir.join(KEY_FILE)).ok()?;
    certificate::is_current(Some(&certificate), wanted)
        .then_some(ServingCertificate { certificate, key })
}

/// Keeps `issued` in `dir`, the key readable by root only; each file is replaced whole.
fn keep_certificate(dir: &Path, issued: &ServingCertificate) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for (name, text, mode) in [
        (KEY_FILE, &issued.key, 0o600),
        (CERTIFICATE_FILE, &issued.certificate, 0o644),
    ] {
        let partial = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&partial)?;
        std::io::Write::write_all(&mut file, text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&partial, dir.join(name))?;
    }
    Ok(())
}

/// The certificate the endpoint presents, replaced in place when it is renewed.
#[derive(Debug)]
struct ServingKey(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServingKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("serving key lock").clone())
    }
}

fn certified_key(
    issued: &ServingCertificate,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("serving key: {e}"))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// TLS that presents `serving` and demands a client certificate from the cluster CA.
fn tls_config(
    serving: Arc<ServingKey>,
    ca_pem: &str,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ServerConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| format!("cluster CA: {e}"))?)
            .map_err(|e| format!("cluster CA: {e}"))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

struct Endpoint {
    client: Client,
    logs: NodeLogs,
    exec: Arc<dyn PodExec>,
    port_forward: NodePortForward,
    summary: Arc<NodeSummary>,
}

impl Endpoint {
    async fn handle<B>(&self, mut req: Request<B>) -> Response<Body> {
        let path = req.uri().path().to_string();
        // Streaming sessions come as a GET upgraded to a WebSocket, or as a POST upgraded to SPDY.
        let streaming = ["/exec/", "/attach/", "/portForward/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
        if !(req.method() == Method::GET || streaming && req.method() == Method::POST) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed");
        }
        if path == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let answer = match parts.as_slice() {
            ["containerLogs", namespace, pod, container] => {
                self.container_logs(namespace, pod, container, &query).await
            }
            [verb @ ("exec" | "attach"), namespace, pod, container] => {
                let attach = *verb == "attach";
                self.exec(namespace, pod, container, &query, attach, &mut req)
                    .await
            }
            ["portForward", namespace, pod] => self.port_forward(namespace, pod, &mut req).await,
            ["stats", "summary"] => summary_response(&self.summary.summary()),
            _ => Err((StatusCode::NOT_FOUND, "404 page not found".to_string())),
        };
        answer.unwrap_or_else(|(code, message)| text(code, message))
    }

    /// The pod, if it is on this node.
    async fn pod_here(&self, namespace: &str, name: &str) -> Result<Pod, (StatusCode, String)> {
        let pod: Pod = match Api::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
        {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("pod {namespace}/{name} not found"),
                ))
            }
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node != Some(self.logs.node_name.as_str()) {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "pod {namespace}/{name} is not on node {:?}",
                    self.logs.node_name
                ),
            ));
        }
        Ok(pod)
    }

    async fn exec<B>(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        query: &[(String, String)],
        attach: bool,
        req: &mut Request<B>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let values = |key: &str| {
            query
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let options = if attach {
            ExecOptions::resolve_attach(&pod, Some(container), values)
        } else {
            ExecOptions::resolve(&pod, Some(container), values)
        }
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let upgrade =
            Upgrade::accept(req, exec::PROTOCOLS).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        streaming::exec::start(self.exec.clone(), &pod, options, upgrade)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))
    }

    async fn port_forward<B>(
        &self,
        namespace: &str,
        name: &str,
        req: &mut Request<B>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let dial = self
            .port_forward
            .locate(&pod)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let upgrade = Upgrade::accept(req, portforward::PROTOCOLS)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let response = upgrade.response();
        let pod = format!("{namespace}/{name}");
        tokio::spawn(async move {
            if let Some(connection) = upgrade.connection().await {
                streaming::portforward::serve(dial, pod, connection.into_pipe()).await;
            }
        });
        Ok(response)
    }

    async fn container_logs(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        query: &[(String, String)],
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let lookup = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let options = LogOptions::resolve(&pod, Some(container), lookup)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let stream = self
            .logs
            .stream(&pod, options)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?
            .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(names: &[&str], days: i64) -> ServingCertificate {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let end = jiff::Zoned::now()
            .checked_add(jiff::Span::new().days(days))
            .unwrap();
        params.not_after =
            rcgen::date_time_ymd(end.year().into(), end.month() as u8, end.day() as u8);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        ServingCertificate {
            certificate: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    #[test]
    fn a_kept_certificate_is_reused_only_while_current_for_the_nodes_names() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("agent/tls");
        let wanted = ["worker".to_string(), "10.0.0.7".to_string()];
        assert_eq!(stored_certificate(&tls, &wanted), None);

        let issued = issue(&["worker", "10.0.0.7"], 365);
        keep_certificate(&tls, &issued).unwrap();
        assert_eq!(stored_certificate(&tls, &wanted), Some(issued.clone()));
        let mode = |name| {
            std::fs::metadata(tls.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERTIFICATE_FILE), 0o644);
        // The node's address changed: the certificate no longer names it.
        assert_eq!(
            stored_certificate(&tls, &["worker".to_string(), "10.0.0.8".to_string()]),
            None
        );
        // Close to expiry: renewed, not reused.
        keep_certificate(&tls, &issue(&["worker", "10.0.0.7"], 30)).unwrap();
        assert_eq!(stored_certificate(&tls, &wanted), None);
        // What is kept serves as a TLS certificate.
        let provider = rustls::crypto::ring::default_provider();
        assert!(certified_key(&issued, &provider).is_ok());
    }
}
