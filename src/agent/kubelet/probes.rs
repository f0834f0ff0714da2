//! Container probes and lifecycle hooks as kubelet runs them. Each running container with probes gets a
//! task: the startup probe first (nothing else runs until it succeeds), then readiness and liveness, each
//! with initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold and failureThreshold. Results
//! land in a table the pod status reads; a change re-queues the pod, and a failed liveness or startup probe
//! stops the container so that its restart policy takes over. Handlers: exec (in the container, through
//! `orch shim-exec`), httpGet (HTTPS without certificate checks, as kubelet), tcpSocket and grpc (the
//! gRPC health checking protocol) against the pod IP. Hooks run exec, httpGet and `sleep`; a tcpSocket
//! hook, which the API still accepts for old manifests, fails as kubelet fails it ("Cannot run handler").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{sync, Kubelet};
use crate::util::go_errors;

/// What the probes of one container found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeState {
    pub started: bool,
    pub ready: bool,
}

/// Probe results by container id.
#[derive(Default)]
pub struct ProbeResults {
    states: Mutex<HashMap<String, ProbeState>>,
}

impl ProbeResults {
    pub fn get(&self, id: &str) -> Option<ProbeState> {
        self.states.lock().expect("probe lock").get(id).copied()
    }

    /// Stores `state`; true when it changed.
    fn set(&self, id: &str, state: ProbeState) -> bool {
        self.states
            .lock()
            .expect("probe lock")
            .insert(id.to_string(), state)
            != Some(state)
    }

    pub fn forget(&self, id: &str) {
        self.states.lock().expect("probe lock").remove(id);
    }
}

/// What a handler needs to reach the container.
#[derive(Clone)]
pub struct Target {
    pub container_id: String,
    pub pod_ip: String,
    pub ports: HashMap<String, i32>,
}

/// The client of httpGet probes and hooks, shared by all of them. Like kubelet's prober it does not verify
/// certificates (a probe asks whether the server answers, not who it is: pods serve self-signed ones, for
/// their pod IP), takes no proxy from the environment, and keeps no connection between probes.
pub struct HttpProber {
    client: reqwest::Client,
}

impl HttpProber {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::limited(10))
            .user_agent("kube-probe/1.34")
            .build()?;
        Ok(HttpProber { client })
    }

    /// One GET: the response's status, or Go's `Get "URL": …` error when none came.
    async fn get(
        &self,
        http: &k8s_openapi::api::core::v1::HTTPGetAction,
        target: &Target,
        timeout: Duration,
    ) -> Result<u16, String> {
        let port = port_of(&http.port, target)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let url = format!("{scheme}://{host}:{port}{path}");
        let mut request = self.client.get(&url).timeout(timeout);
        for h in http.http_headers.iter().flatten() {
            request = request.header(h.name.as_str(), h.value.as_str());
        }
        match request.send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) => Err(format!("Get \"{url}\": {}", go_errors::request_error(&e))),
        }
    }
}

/// The fields shared by probe and hook handlers.
struct Handler<'a> {
    exec: Option<&'a Vec<String>>,
    http: Option<&'a k8s_openapi::api::core::v1::HTTPGetAction>,
    tcp: Option<&'a k8s_openapi::api::core::v1::TCPSocketAction>,
    grpc: Option<&'a k8s_openapi::api::core::v1::GRPCAction>,
    sleep_seconds: Option<i64>,
    /// Whether an httpGet that got an answer succeeds whatever its status: kubelet's hooks fail only
    /// when the request does, its probes also on a status outside 200-399.
    any_http_status: bool,
}

/// Why a handler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The exec handler's command exited with `code`, having written `output` (stdout and stderr).
    Exited {
        command: String,
        code: i32,
        output: String,
    },
    /// The exec handler's command outlived the timeout.
    TimedOut { command: String },
    /// Anything else, in kubelet's words ("HTTP probe failed with statuscode: 500", "dial tcp …").
    Other(String),
}

impl Failure {
    /// The text after "Liveness probe failed: ": kubelet shows an exec probe's output alone.
    fn probe_message(&self) -> String {
        match self {
            Failure::Exited { output, .. } => output.clone(),
            Failure::TimedOut { command } => format!("command {command:?} timed out"),
            Failure::Other(why) => why.clone(),
        }
    }

    /// The error part of kubelet's hook message, as the CRI's ExecSync words a failed command, except
    /// that its stderr after "exited with N: " is not kept apart from stdout here: the message that
    /// follows holds both.
    fn hook_error(&self) -> String {
        match self {
            Failure::Exited { command, code, .. } => {
                format!("command '{command}' exited with {code}: ")
            }
            Failure::TimedOut { command } => format!("command '{command}' timed out"),
            Failure::Other(why) => why.clone(),
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Other(why)
    }
}

fn port_of(port: &IntOrString, target: &Target) -> Result<i32, String> {
    match port {
        IntOrString::Int(p) => Ok(*p),
        IntOrString::String(name) => target
            .ports
            .get(name)
            .copied()
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("unknown port {name:?}")),
    }
}

/// Runs a handler once.
async fn run_handler(
    kubelet: &Kubelet,
    handler: Handler<'_>,
    target: &Target,
    timeout: Duration,
) -> Result<(), Failure> {
    if let Some(command) = handler.exec {
        let joined = command.join(" ");
        return match kubelet
            .runtime
            .exec(&target.container_id, command, timeout)
            .await
        {
            Ok(Some((0, _))) => Ok(()),
            Ok(Some((code, output))) => Err(Failure::Exited {
                command: joined,
                code,
                output,
            }),
            Ok(None) => Err(Failure::TimedOut { command: joined }),
            Err(e) => Err(Failure::Other(e.to_string())),
        };
    }
    if let Some(http) = handler.http {
        let status = kubelet.http_prober.get(http, target, timeout).await?;
        return if handler.any_http_status || (200..400).contains(&status) {
            Ok(())
        } else {
            Err(Failure::Other(format!(
                "HTTP probe failed with statuscode: {status}"
            )))
        };
    }
    if let Some(tcp) = handler.tcp {
        let port = port_of(&tcp.port, target)?;
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        let address = format!("{host}:{port}");
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(Failure::Other(go_errors::dial_error(&address, &e))),
            Err(_) => Err(Failure::Other(format!("dial tcp {address}: i/o timeout"))),
        };
    }
    if let Some(grpc) = handler.grpc {
        let service = grpc.service.as_deref().unwrap_or_default();
        return grpc_health_check(&target.pod_ip, grpc.port, service, timeout)
            .await
            .map(drop)
            .map_err(Failure::Other);
    }
    if let Some(seconds) = handler.sleep_seconds {
        tokio::time::sleep(Duration::from_secs(seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err(Failure::Other("invalid handler".into()))
}

/// The names of grpc.health.v1's ServingStatus values.
const SERVING_STATUS: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// kubelet's grpc probe: gRPC's health checking protocol (`grpc.health.v1.Health/Check` for `service`)
/// over plaintext HTTP/2 to the pod; Ok when the server answers SERVING.
async fn grpc_health_check(
    host: &str,
    port: i32,
    service: &str,
    timeout: Duration,
) -> Result<String, String> {
    use http_body_util::BodyExt;
    let address = format!("{host}:{port}");
    let check = async {
        let connect_failed = |e: &dyn std::fmt::Display| {
            format!(
                "timeout: failed to connect service \"{address}\" within {}s: {e}",
                timeout.as_secs()
            )
        };
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| connect_failed(&e))?;
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .map_err(|e| connect_failed(&e))?;
        tokio::spawn(connection);
        // HealthCheckRequest { string service = 1; } in a gRPC frame: uncompressed, length-prefixed.
        let mut message = Vec::new();
        if !service.is_empty() {
            message.push(0x0a);
            let mut len = service.len();
            while len >= 0x80 {
                message.push((len as u8 & 0x7f) | 0x80);
                len >>= 7;
            }
            message.push(len as u8);
            message.extend_from_slice(service.as_bytes());
        }
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let failed = |e: &dyn std::fmt::Display| format!("error: health rpc probe failed: {e}");
        let request = http::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "kube-probe/1.34")
            .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?;
        let trailers = body.trailers().cloned().unwrap_or_default();
        let field = |name: &str| {
            trailers
                .get(name)
                .or_else(|| headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let code = field("grpc-status").unwrap_or_else(|| "2".into());
        if code != "0" {
            let message = field("grpc-message").unwrap_or_default();
            return Err(failed(&format!(
                "rpc error: code = {code} desc = {message}"
            )));
        }
        // HealthCheckResponse { ServingStatus status = 1; } after the frame's 5 bytes.
        let bytes = body.to_bytes();
        let status = match bytes.get(5..) {
            Some([0x08, status, ..]) => usize::from(*status),
            _ => 0,
        };
        if status == 1 {
            Ok(String::new())
        } else {
            let name = SERVING_STATUS.get(status).copied().unwrap_or("UNKNOWN");
            Err(format!("service unhealthy (responded with \"{name}\")"))
        }
    };
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            ))
        })
}

fn probe_handler(p: &Probe) -> Handler<'_> {
    Handler {
        exec: p.exec.as_ref().and_then(|e| e.command.as_ref()),
        http: p.http_get.as_ref(),
        tcp: p.tcp_socket.as_ref(),
        grpc: p.grpc.as_ref(),
        sleep_seconds: None,
        any_http_status: false,
    }
}

fn hook_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h.exec.as_ref().and_then(|e| e.command.as_ref()),
        http: h.http_get.as_ref(),
        tcp: None,
        grpc: None,
        sleep_seconds: h.sleep.as_ref().map(|s| s.seconds),
        any_http_status: true,
    }
}

pub fn target(pod: &Pod, container: &Container, id: &str) -> Target {
    Target {
        container_id: id.to_string(),
        pod_ip: pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_else(|| "127.0.0.1".into()),
        ports: container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, p.container_port)))
            .collect(),
    }
}

/// Why a lifecycle hook did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookError {
    /// It failed; why, in the words kubelet logs it with ("Exec lifecycle hook ([…]) for Container …
    /// failed - error: …").
    Failed(String),
    /// It was still running when `limit` was over.
    Unfinished,
}

/// Runs `container`'s lifecycle hook to completion (or `limit`).
pub(crate) async fn run_hook(
    kubelet: &Kubelet,
    pod: &Pod,
    container: &Container,
    hook: &LifecycleHandler,
    target: &Target,
    limit: Duration,
) -> Result<(), HookError> {
    // kubelet gives a hook no timeout of its own: `limit` alone decides, so the handler's own timer
    // (an exec's, a GET's) is set past it and never fires first.
    let handler_timeout = limit + Duration::from_secs(1);
    let failure = match tokio::time::timeout(
        limit,
        run_handler(kubelet, hook_handler(hook), target, handler_timeout),
    )
    .await
    {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(failure)) => failure,
        Err(_) => return Err(HookError::Unfinished),
    };
    let (name, pod) = (&container.name, sync::pod_ref(pod));
    let error = failure.hook_error();
    Err(HookError::Failed(match (&hook.exec, &hook.http_get) {
        (Some(exec), _) => {
            let output = match &failure {
                Failure::Exited { output, .. } => output.as_str(),
                _ => "",
            };
            format!(
                "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod:?} failed - error: \
                 {error}, message: {output:?}",
                exec.command.as_deref().unwrap_or_default().join(" ")
            )
        }
        (None, Some(http)) => format!(
            "HTTP lifecycle hook ({}) for Container {name:?} in Pod {pod:?} failed - error: {error}",
            http.path.as_deref().unwrap_or_default()
        ),
        (None, None) => format!("Cannot run handler: {error}"),
    }))
}

struct Counters {
    successes: i32,
    failures: i32,
}

/// Probes one running container until it exits: started by the pod worker after a start, or for a
/// container the agent adopted after its restart (`started_at_unix` is when the container started).
pub(crate) fn spawn(
    kubelet: Arc<Kubelet>,
    pod: &Pod,
    container: &Container,
    id: &str,
    started_at_unix: i64,
) {
    let startup = container.startup_probe.clone();
    let readiness = container.readiness_probe.clone();
    let liveness = container.liveness_probe.clone();
    // An adopted container keeps what this node last reported for it, so that restarting the agent does
    // not turn ready pods unready (and take them out of their Services) until probes run again.
    let status = pod.status.as_ref();
    let reported = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .chain(status.and_then(|s| s.init_container_statuses.as_ref()))
        .flatten()
        .find(|s| s.container_id.as_deref() == Some(&super::status::container_id(id)));
    let initial = ProbeState {
        started: startup.is_none() || reported.is_some_and(|s| s.started == Some(true)),
        ready: readiness.is_none() || reported.is_some_and(|s| s.ready),
    };
    kubelet.probes.set(id, initial);
    if startup.is_none() && readiness.is_none() && liveness.is_none() {
        return;
    }
    let pod = pod.clone();
    let name = container.name.clone();
    let target = target(&pod, container, id);
    tokio::spawn(async move {
        let key = crate::client::informer::key_of(&pod.metadata);
        let mut state = initial;
        // initialDelaySeconds count from the container's start, as kubelet counts them.
        let age = Duration::from_secs(
            (jiff::Timestamp::now().as_second() - started_at_unix).max(0) as u64,
        );
        let started_at = tokio::time::Instant::now()
            .checked_sub(age)
            .unwrap_or_else(tokio::time::Instant::now);
        let mut counters: HashMap<&str, Counters> = HashMap::new();
        let mut next_run: HashMap<&str, tokio::time::Instant> = HashMap::new();
        let probes: Vec<(&str, Probe)> = [
            ("Startup", startup),
            ("Readiness", readiness),
            ("Liveness", liveness),
        ]
        .into_iter()
        .filter_map(|(k, p)| Some((k, p?)))
        .collect();
        for (kind, p) in &probes {
            next_run.insert(
                kind,
                started_at
                    + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            );
            counters.insert(
                kind,
                Counters {
                    successes: 0,
                    failures: 0,
                },
            );
        }
        loop {
            if !matches!(
                kubelet.runtime.state(&target.container_id),
                Ok(crate::agent::runtime::ContainerState::Running(_))
            ) {
                return;
            }
            let now = tokio::time::Instant::now();
            let due: Vec<&(&str, Probe)> = probes
                .iter()
                .filter(|(kind, _)| next_run[kind] <= now)
                .filter(|(kind, _)| {
                    *kind == "Startup" && !state.started || *kind != "Startup" && state.started
                })
                .collect();
            for (kind, probe) in due {
                let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
                next_run.insert(kind, now + period);
                let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
                let result = run_handler(&kubelet, probe_handler(probe), &target, timeout).await;
                let c = counters.get_mut(kind).expect("counted");
                match &result {
                    Ok(_) => {
                        c.successes += 1;
                        c.failures = 0;
                    }
                    Err(_) => {
                        c.failures += 1;
                        c.successes = 0;
                    }
                }
                let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
                let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
                if let Err(why) = &result {
                    kubelet.events.warning(
                        kubelet.clock.as_ref(),
                        &sync::container_involved(&pod, &name),
                        "Unhealthy",
                        &format!("{kind} probe failed: {}", why.probe_message()),
                    );
                }
                match *kind {
                    "Startup" if c.successes >= success_threshold => state.started = true,
                    "Readiness" if c.successes >= success_threshold => state.ready = true,
                    "Readiness" if c.failures >= failure_threshold => state.ready = false,
                    "Startup" | "Liveness" if c.failures >= failure_threshold => {
                        let spec = pod.spec.as_ref();
                        // A sidecar restarts whatever the pod's policy says.
                        let sidecar = spec
                            .and_then(|s| s.init_containers.as_ref())
                            .and_then(|inits| inits.iter().find(|c| c.name == name))
                            .is_some_and(super::plan::is_sidecar);
                        let restarts = sidecar
                            || spec.is_some_and(|s| super::plan::restart_policy(s) != "Never");
                        if restarts {
                            kubelet
                                .killed_for_restart
                                .lock()
                                .expect("lock")
                                .insert(target.container_id.clone());
                        }
                        kubelet.events.normal(
                            kubelet.clock.as_ref(),
                            &sync::container_involved(&pod, &name),
                            "Killing",
                            &format!(
                                "Container {name} failed {} probe{}",
                                kind.to_lowercase(),
                                if restarts { ", will be restarted" } else { "" }
                            ),
                        );
                        let grace =
                            sync::container_grace(&pod, probe.termination_grace_period_seconds);
                        kubelet
                            .stop_container(&pod, &name, &target.container_id, grace)
                            .await;
                        kubelet.queue.add(&key);
                        return;
                    }
                    _ => {}
                }
                if kubelet.probes.set(&target.container_id, state) {
                    kubelet.queue.add(&key);
                }
            }
            let wake = next_run
                .values()
                .min()
                .copied()
                .unwrap_or(now + Duration::from_secs(1));
            tokio::time::sleep_until(
                wake.max(now + Duration::from_millis(100))
                    .min(now + Duration::from_secs(1)),
            )
            .await;
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use k8s_openapi::api::core::v1::HTTPGetAction;

    use super::*;

    /// An HTTPS server on loopback whose self-signed certificate names another host; `/broken` answers 500.
    async fn self_signed_server() -> (u16, tokio::sync::watch::Sender<bool>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["example.invalid".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(crate::util::https::serve(
            listener,
            Arc::new(tls),
            |req: http::Request<hyper::body::Incoming>, _| async move {
                let status = if req.uri().path() == "/broken" {
                    http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    http::StatusCode::OK
                };
                let mut resp = http::Response::new(
                    http_body_util::Full::new(Bytes::from_static(b"ok"))
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                );
                *resp.status_mut() = status;
                resp
            },
            shutdown,
        ));
        (port, stop)
    }

    #[tokio::test]
    async fn https_probes_succeed_against_a_certificate_that_names_another_host() {
        let (port, _stop) = self_signed_server().await;
        let prober = HttpProber::new().unwrap();
        let target = Target {
            container_id: "c".into(),
            pod_ip: "127.0.0.1".into(),
            ports: [("https".to_string(), i32::from(port))].into(),
        };
        let healthy = HTTPGetAction {
            scheme: Some("HTTPS".into()),
            port: IntOrString::String("https".into()),
            path: Some("healthz".into()),
            ..Default::default()
        };
        let timeout = Duration::from_secs(5);
        assert_eq!(prober.get(&healthy, &target, timeout).await, Ok(200));
        let broken = HTTPGetAction {
            path: Some("/broken".into()),
            ..healthy
        };
        assert_eq!(prober.get(&broken, &target, timeout).await, Ok(500));
    }

    #[tokio::test]
    async fn a_get_nobody_answers_reads_as_gos_client_error() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = Target {
            container_id: "c".into(),
            pod_ip: "127.0.0.1".into(),
            ports: HashMap::new(),
        };
        let action = HTTPGetAction {
            port: IntOrString::Int(i32::from(port)),
            path: Some("healthz".into()),
            ..Default::default()
        };
        let got = HttpProber::new()
            .unwrap()
            .get(&action, &target, Duration::from_secs(5))
            .await;
        assert_eq!(
            got,
            Err(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            ))
        );
    }

    #[test]
    fn an_exec_probe_shows_its_output_and_a_hook_the_exit_too() {
        let exited = Failure::Exited {
            command: "cat /tmp/healthy".into(),
            code: 1,
            output: "cat: can't open '/tmp/healthy': No such file or directory\n".into(),
        };
        assert_eq!(
            exited.probe_message(),
            "cat: can't open '/tmp/healthy': No such file or directory\n"
        );
        assert_eq!(
            exited.hook_error(),
            "command 'cat /tmp/healthy' exited with 1: "
        );
        let slow = Failure::TimedOut {
            command: "sleep 5".into(),
        };
        assert_eq!(slow.probe_message(), "command \"sleep 5\" timed out");
        assert_eq!(slow.hook_error(), "command 'sleep 5' timed out");
    }

    /// A gRPC health server on loopback (HTTP/2 without TLS): the service "" is SERVING, "down" is
    /// NOT_SERVING, and any other is unknown to it (status NOT_FOUND, in trailers only).
    async fn grpc_health_server() -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let service = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let name =
                            String::from_utf8_lossy(body.get(7..).unwrap_or_default()).into_owned();
                        let mut trailers = http::HeaderMap::new();
                        let mut frames = Vec::new();
                        match name.as_str() {
                            "" | "down" => {
                                let status = if name.is_empty() { 1 } else { 2 };
                                let message = [0, 0, 0, 0, 2, 0x08, status];
                                frames.push(Frame::data(Bytes::copy_from_slice(&message)));
                                trailers.insert("grpc-status", "0".parse().unwrap());
                            }
                            _ => {
                                trailers.insert("grpc-status", "5".parse().unwrap());
                                trailers.insert("grpc-message", "unknown service".parse().unwrap());
                            }
                        }
                        frames.push(Frame::trailers(trailers));
                        let stream = futures_util::stream::iter(
                            frames.into_iter().map(Ok::<_, std::convert::Infallible>),
                        );
                        Ok::<_, std::convert::Infallible>(http::Response::new(StreamBody::new(
                            stream,
                        )))
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probes_ask_the_pods_health_service() {
        let port = i32::from(grpc_health_server().await);
        let timeout = Duration::from_secs(5);
        assert_eq!(
            grpc_health_check("127.0.0.1", port, "", timeout).await,
            Ok(String::new())
        );
        assert_eq!(
            grpc_health_check("127.0.0.1", port, "down", timeout).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".to_string())
        );
        let unknown = grpc_health_check("127.0.0.1", port, "other", timeout)
            .await
            .unwrap_err();
        assert!(unknown.contains("code = 5"), "{unknown}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = i32::from(closed.local_addr().unwrap().port());
        drop(closed);
        let refused = grpc_health_check("127.0.0.1", closed_port, "", timeout)
            .await
            .unwrap_err();
        assert!(
            refused.starts_with("timeout: failed to connect service"),
            "{refused}"
        );
    }
}
