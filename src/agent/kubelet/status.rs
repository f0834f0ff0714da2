//! The pod's status as kubelet reports it, computed from the runs of its containers: each container's
//! state, lastState, restartCount, ready, started, user and volumeMounts; the phase by kubelet's
//! `getPhase` rules, and the reason of a pod soft admission blocks; the PodReadyToStartContainers,
//! Initialized, ContainersReady and Ready conditions, Ready also waiting for the pod's readiness gates
//! (PodScheduled and the gates' conditions are other components' and are kept); a resize's
//! PodResizePending and PodResizeInProgress, and each container's allocated and actual resources.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, ContainerUser, LinuxContainerUser, Pod, PodCondition,
    PodIP, PodStatus, ResourceRequirements, VolumeMount, VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{is_sidecar, restart_policy, Run, Runs};
use super::resize::{self, ResizeState};
use super::volumes;
use crate::agent::runtime::{ContainerState, ProcessUser, Resources};
use crate::shim::ExitRecord;

/// Why a container has no running process, when it is not simply being created.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Why soft admission keeps a Pending pod from running (kubelet's canRunPod): the pod's reason and
/// message.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub reason: String,
    pub message: String,
}

/// What the pod worker knows beyond the container runs.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub runs: HashMap<String, Runs>,
    /// Per container: ErrImagePull, ImagePullBackOff, CreateContainerConfigError, CrashLoopBackOff, …
    pub waiting: HashMap<String, Waiting>,
    /// Per container: readiness as the probes see it (absent = no readiness probe).
    pub readiness: HashMap<String, bool>,
    /// Per container: the startup probe has succeeded (absent = no startup probe).
    pub started: HashMap<String, bool>,
    /// Per container: imageID (repo digest).
    pub image_ids: HashMap<String, String>,
    /// Per container: who the first process of its latest run is.
    pub users: HashMap<String, ProcessUser>,
    /// Per container: the cgroup limits its latest run has.
    pub limits: HashMap<String, Resources>,
    /// The pod's resize, pending or under way.
    pub resize: ResizeState,
    /// Per exited run (by container id): its termination message.
    pub termination_messages: HashMap<String, String>,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub failed_init: bool,
    /// The eviction manager's message when it evicted the pod.
    pub evicted: Option<String>,
    /// The pod ran past its activeDeadlineSeconds.
    pub deadline_exceeded: bool,
    /// Soft admission refuses to run the pod, which has not run anything yet (and so stays Pending).
    pub blocked: Option<Blocked>,
    /// The pod is being deleted and its containers have stopped: this status is its last, with a
    /// final phase whatever the restart policy.
    pub terminal: bool,
}

fn time(rfc3339: &str) -> Option<Time> {
    rfc3339.parse::<jiff::Timestamp>().ok().map(Time)
}

fn terminated(run: &Run, exit: &ExitRecord, message: Option<&String>) -> ContainerStateTerminated {
    // containerd's reason and message for a process that never ran, and its start time, which is
    // none: kubelet shows the zero Unix time.
    if let Some(error) = &exit.start_error {
        return ContainerStateTerminated {
            exit_code: exit.exit_code,
            reason: Some("StartError".into()),
            message: Some(error.clone()),
            started_at: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            finished_at: time(&exit.finished_at),
            container_id: Some(container_id(&run.id)),
            signal: None,
        };
    }
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerStateTerminated {
        exit_code: exit.exit_code,
        reason: Some(reason.into()),
        message: message.filter(|m| !m.is_empty()).cloned(),
        started_at: time(&exit.started_at),
        finished_at: time(&exit.finished_at),
        container_id: Some(container_id(&run.id)),
        signal: None,
    }
}

pub fn container_id(id: &str) -> String {
    format!("orch://{id}")
}

/// How a volume is mounted, as kubelet reports it: a read-only mount says whether its submounts are
/// read-only too.
fn volume_mount_status(m: &VolumeMount) -> VolumeMountStatus {
    let read_only = m.read_only == Some(true);
    let recursive = matches!(volumes::recursively_read_only(m), Ok(true));
    VolumeMountStatus {
        name: m.name.clone(),
        mount_path: m.mount_path.clone(),
        // kubelet's field is omitted when false.
        read_only: read_only.then_some(true),
        recursive_read_only: read_only
            .then(|| if recursive { "Enabled" } else { "Disabled" }.to_string()),
    }
}

fn container_user(user: &ProcessUser) -> ContainerUser {
    ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: user.uid.into(),
            gid: user.gid.into(),
            supplemental_groups: Some(
                user.supplemental_groups
                    .iter()
                    .map(|g| i64::from(*g))
                    .collect(),
            ),
        }),
    }
}

/// kubelet's convertContainerStatusResources: what `allocated` states, with the CPU request and the
/// limits the running container's cgroup has in their place. Below the least CPU the kernel can give
/// (2 shares, a 10m quota) allocation and cgroup count as the same, and the allocation stands.
fn container_resources(
    allocated: &ResourceRequirements,
    running: Option<&Resources>,
) -> ResourceRequirements {
    const MIN_CPU_REQUEST: i128 = 2;
    const MIN_CPU_LIMIT: i128 = 10;
    let mut resources = ResourceRequirements {
        requests: allocated.requests.clone(),
        limits: allocated.limits.clone(),
        ..Default::default()
    };
    let Some(actual) = running else {
        return resources;
    };
    let millis = |list: &Option<std::collections::BTreeMap<String, Quantity>>| {
        list.as_ref()
            .and_then(|l| l.get("cpu"))
            .and_then(|q| crate::api::quantity::parse_quantity(&q.0).ok())
            .map(|q| q.to_millis())
    };
    let cpu = |m: i128| {
        let q = crate::api::quantity::parse_quantity(&format!("{m}m")).expect("millicores parse");
        Quantity(q.to_string())
    };
    if let (Some(allocated), Some(shares)) = (millis(&allocated.requests), actual.cpu_shares) {
        let actual = if shares >= 2 {
            (i128::from(shares) * 1000 + 1023) / 1024
        } else {
            0
        };
        if !(allocated <= MIN_CPU_REQUEST && actual <= MIN_CPU_REQUEST) {
            if let Some(requests) = resources.requests.as_mut() {
                requests.insert("cpu".into(), cpu(actual));
            }
        }
    }
    if let Some(allocated) = millis(&allocated.limits) {
        let actual = match (actual.cpu_quota, actual.cpu_period) {
            (Some(quota), Some(period)) if quota > 0 && period > 0 => {
                i128::from(quota) * 1000 / i128::from(period)
            }
            _ => 0,
        };
        if !(allocated <= MIN_CPU_LIMIT && actual <= MIN_CPU_LIMIT) {
            if let Some(limits) = resources.limits.as_mut() {
                limits.insert("cpu".into(), cpu(actual));
            }
        }
    }
    let has_memory_limit = allocated
        .limits
        .as_ref()
        .is_some_and(|l| l.contains_key("memory"));
    if let (true, Some(bytes)) = (has_memory_limit, actual.memory_limit) {
        let q = crate::api::quantity::Quantity::from_units(
            i128::from(bytes),
            crate::api::quantity::QuantityFormat::BinarySi,
        );
        if let Some(limits) = resources.limits.as_mut() {
            limits.insert("memory".into(), Quantity(q.to_string()));
        }
    }
    resources
}

/// A container's allocatedResources and resources, once it has a run: its allocated requests, and
/// what it runs with.
fn with_resources(
    mut status: ContainerStatus,
    c: &Container,
    observed: &Observed,
) -> ContainerStatus {
    if status.container_id.is_none() {
        return status;
    }
    let allocated = c.resources.clone().unwrap_or_default();
    status.allocated_resources = allocated.requests.clone().filter(|r| !r.is_empty());
    let running = status
        .state
        .as_ref()
        .is_some_and(|s| s.running.is_some())
        .then(|| observed.limits.get(&c.name))
        .flatten();
    let resources = container_resources(&allocated, running);
    let stated = |l: &Option<std::collections::BTreeMap<String, Quantity>>| {
        l.as_ref().is_some_and(|l| !l.is_empty())
    };
    status.resources =
        (stated(&resources.requests) || stated(&resources.limits)).then_some(resources);
    status
}

fn waiting(reason: &str, message: Option<&str>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.into()),
            message: message.map(str::to_string),
        }),
        ..Default::default()
    }
}

/// When kubelet reports a container ready.
#[derive(Clone, Copy, PartialEq)]
enum ReadyWhen {
    /// Running, and its readiness probe (if any) passed: app containers and sidecars.
    Running,
    /// Exited with 0: init containers.
    Completed,
    /// Ephemeral containers, which kubelet does not probe.
    Never,
}

fn container_status(
    name: &str,
    image: &str,
    ready_when: ReadyWhen,
    observed: &Observed,
    not_started_reason: &str,
) -> ContainerStatus {
    let runs = observed.runs.get(name).cloned().unwrap_or_default();
    let mut status = ContainerStatus {
        name: name.into(),
        // The image as the runtime names it (docker.io/library/busybox:latest), as kubelet reports it.
        image: crate::agent::image::reference::Reference::parse(image)
            .map_or_else(|_| image.to_string(), |r| r.to_string()),
        image_id: observed.image_ids.get(name).cloned().unwrap_or_default(),
        restart_count: runs.latest.as_ref().map_or(0, |r| r.attempt as i32),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let message = |run: &Run| observed.termination_messages.get(&run.id);
    if let Some(prev) = &runs.previous {
        if let ContainerState::Exited(exit) = &prev.state {
            status.last_state = Some(ApiState {
                terminated: Some(terminated(prev, exit, message(prev))),
                ..Default::default()
            });
        }
    }
    let pending = observed.waiting.get(name);
    status.state = Some(match &runs.latest {
        None => match pending {
            Some(w) => waiting(&w.reason, Some(&w.message)),
            None => waiting(not_started_reason, None),
        },
        Some(run) => {
            status.container_id = Some(container_id(&run.id));
            status.user = observed.users.get(name).map(container_user);
            match &run.state {
                ContainerState::Created => waiting("ContainerCreating", None),
                ContainerState::Running(init_process) => {
                    let started = observed.started.get(name).copied().unwrap_or(true);
                    status.started = Some(started);
                    status.ready = ready_when == ReadyWhen::Running
                        && started
                        && observed.readiness.get(name).copied().unwrap_or(true);
                    ApiState {
                        running: Some(ContainerStateRunning {
                            started_at: jiff::Timestamp::from_second(init_process.started_at_unix)
                                .ok()
                                .map(Time),
                        }),
                        ..Default::default()
                    }
                }
                ContainerState::Exited(exit) => match pending {
                    // About to be restarted (back-off, or a failed pull of a new image): the last
                    // run becomes lastState.
                    Some(w) => {
                        status.last_state = Some(ApiState {
                            terminated: Some(terminated(run, exit, message(run))),
                            ..Default::default()
                        });
                        waiting(&w.reason, Some(&w.message))
                    }
                    None => {
                        // A finished init container counts as ready, as kubelet reports it.
                        status.ready = ready_when == ReadyWhen::Completed && exit.exit_code == 0;
                        ApiState {
                            terminated: Some(terminated(run, exit, message(run))),
                            ..Default::default()
                        }
                    }
                },
            }
        }
    });
    status
}

/// The conditions kubelet computes at every sync, which carry the generation of the pod it computed
/// them for.
const KUBELET_CONDITIONS: [&str; 4] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
];

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        ..Default::default()
    }
}

/// kubelet's getPhase over the container statuses. A running sidecar keeps the pod Running; one that
/// never ran yet keeps it Pending; one that ended counts for nothing.
fn phase(
    pod: &Pod,
    init_done: bool,
    statuses: &[ContainerStatus],
    sidecars: &[&ContainerStatus],
    failed_init: bool,
) -> &'static str {
    let spec = pod.spec.as_ref().expect("pods have a spec");
    if failed_init {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in sidecars {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if state.is_some_and(|st| st.waiting.is_some())
            && s.last_state.as_ref().is_none_or(|l| l.terminated.is_none())
        {
            waiting += 1;
        }
    }
    for s in statuses {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match restart_policy(spec) {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

/// A container still waiting in a pod that is over will never run: kubelet's status manager reports it
/// terminated, as a container it could not find.
fn never_to_run(status: &mut ContainerStatus) {
    if status.state.as_ref().is_some_and(|s| s.waiting.is_some()) {
        status.state = Some(ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was terminated".into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        });
        status.ready = false;
    }
}

/// kubelet's getPhase for a pod that is over: Succeeded when every app container succeeded, else Failed.
fn final_phase(statuses: &[ContainerStatus]) -> &'static str {
    let succeeded = statuses.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    if succeeded {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// kubelet's message for each readiness gate whose condition (set by another controller) is not True.
fn unmet_readiness_gates(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    conditions: &[PodCondition],
) -> Vec<String> {
    spec.readiness_gates
        .iter()
        .flatten()
        .filter_map(|gate| {
            let kind = &gate.condition_type;
            match conditions.iter().find(|c| &c.type_ == kind) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{kind}\" does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{kind}\" is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect()
}

/// The complete status to write for `pod`; `now` stamps conditions that change.
pub fn pod_status(pod: &Pod, observed: &Observed, now: jiff::Timestamp) -> PodStatus {
    let spec = pod.spec.as_ref().expect("pods have a spec");
    let old = pod.status.clone().unwrap_or_default();
    let generation = pod.metadata.generation;
    let status = |name: &str,
                  image: Option<&str>,
                  mounts: Option<&Vec<VolumeMount>>,
                  ready_when: ReadyWhen,
                  not_started: &str| {
        ContainerStatus {
            volume_mounts: mounts
                .filter(|m| !m.is_empty())
                .map(|m| m.iter().map(volume_mount_status).collect()),
            ..container_status(name, image.unwrap_or(""), ready_when, observed, not_started)
        }
    };
    let mut init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            // A sidecar is ready as its readiness probe says, as an app container.
            let ready_when = if is_sidecar(c) {
                ReadyWhen::Running
            } else {
                ReadyWhen::Completed
            };
            let status = status(
                &c.name,
                c.image.as_deref(),
                c.volume_mounts.as_ref(),
                ready_when,
                "PodInitializing",
            );
            with_resources(status, c, observed)
        })
        .collect();
    // kubelet: an app container not yet created waits with PodInitializing whenever the pod has init
    // containers, even once they are done.
    let app_reason = if init_statuses.is_empty() {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let mut statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let mounts = c.volume_mounts.as_ref();
            let status = status(
                &c.name,
                c.image.as_deref(),
                mounts,
                ReadyWhen::Running,
                app_reason,
            );
            with_resources(status, c, observed)
        })
        .collect();
    let mut ephemeral_statuses: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| {
            let mounts = c.volume_mounts.as_ref();
            status(
                &c.name,
                c.image.as_deref(),
                mounts,
                ReadyWhen::Never,
                app_reason,
            )
        })
        .collect();
    if observed.terminal {
        for status in init_statuses
            .iter_mut()
            .chain(statuses.iter_mut())
            .chain(ephemeral_statuses.iter_mut())
        {
            never_to_run(status);
        }
    }
    let inits: Vec<(bool, &ContainerStatus)> = spec
        .init_containers
        .iter()
        .flatten()
        .map(is_sidecar)
        .zip(&init_statuses)
        .collect();
    // kubelet: once an app container was created the pod stays initialized, though sidecars restart.
    let app_created = statuses.iter().any(|s| s.container_id.is_some());
    let init_complete = |&(sidecar, s): &(bool, &ContainerStatus)| {
        if sidecar {
            app_created || s.started == Some(true)
        } else {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        }
    };
    let init_done = inits.iter().all(init_complete);
    let sidecars: Vec<&ContainerStatus> = inits
        .iter()
        .filter(|(sidecar, _)| *sidecar)
        .map(|(_, s)| *s)
        .collect();
    let phase = match observed.evicted {
        Some(_) => "Failed",
        None if observed.deadline_exceeded => "Failed",
        None if observed.terminal => final_phase(&statuses),
        None => phase(pod, init_done, &statuses, &sidecars, observed.failed_init),
    };

    let pending_init: Vec<&str> = inits
        .iter()
        .filter(|init| !init_complete(init))
        .map(|(_, s)| s.name.as_str())
        .collect();
    let unready: Vec<&str> = sidecars
        .iter()
        .copied()
        .chain(&statuses)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    // Finished pods are not ready, whatever their containers were.
    let (ready_reason, ready_message) = match phase {
        "Succeeded" => ("PodCompleted".to_string(), None),
        "Failed" => ("PodFailed".to_string(), None),
        _ => (
            "ContainersNotReady".to_string(),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        ),
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let all_ready = !terminal && unready.is_empty();
    let mut conditions: Vec<PodCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            let kind = c.type_.as_str();
            !KUBELET_CONDITIONS.contains(&kind)
                && kind != resize::PENDING
                && kind != resize::IN_PROGRESS
        })
        .collect();
    // kubelet's: the sandbox (namespaces and address) is there, until the pod is over.
    let sandbox_ready = observed.pod_ip.is_some() && !terminal;
    conditions.push(condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    ));
    let initialized = if terminal && init_done {
        PodCondition {
            reason: (phase == "Succeeded").then(|| "PodCompleted".into()),
            ..condition("Initialized", true, None, None)
        }
    } else {
        condition(
            "Initialized",
            pending_init.is_empty(),
            Some("ContainersNotInitialized".into()),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_init.join(" ")
            )),
        )
    };
    conditions.push(initialized);
    if let Some(message) = &observed.evicted {
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.clone()),
            observed_generation: generation,
            ..Default::default()
        });
    }
    conditions.push(condition(
        "ContainersReady",
        all_ready,
        Some(ready_reason.clone()),
        ready_message.clone(),
    ));
    let unmet_gates = unmet_readiness_gates(spec, &conditions);
    conditions.push(if all_ready && !unmet_gates.is_empty() {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady".into()),
            Some(unmet_gates.join(", ")),
        )
    } else {
        condition("Ready", all_ready, Some(ready_reason), ready_message)
    });
    // A condition keeps its transition time until its status changes.
    let old_conditions = old.conditions.unwrap_or_default();
    for c in &mut conditions {
        let previous = old_conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(Time(now)),
        };
        c.last_probe_time = previous.and_then(|p| p.last_probe_time.clone());
        if KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
            c.observed_generation = generation;
        }
    }
    let resizing = [
        (resize::PENDING, &observed.resize.pending),
        (resize::IN_PROGRESS, &observed.resize.in_progress),
    ];
    for (kind, state) in resizing {
        if let Some(state) = state {
            conditions.push(state.to_pod_condition(kind));
        }
    }

    if observed.blocked.is_some() {
        // Waiting containers are not being created.
        for status in init_statuses.iter_mut().chain(statuses.iter_mut()) {
            if let Some(waiting) = status.state.as_mut().and_then(|s| s.waiting.as_mut()) {
                waiting.reason = Some("Blocked".into());
            }
        }
    }

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(observed.host_ip.clone()),
        host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: observed.host_ip.clone(),
        }]),
        pod_ip: observed.pod_ip.clone(),
        pod_ips: observed
            .pod_ip
            .as_ref()
            .map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: old.start_time.or(Some(Time(now))),
        init_container_statuses: if init_statuses.is_empty() {
            None
        } else {
            Some(init_statuses)
        },
        container_statuses: Some(statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
            .then_some(ephemeral_statuses),
        qos_class: old.qos_class,
        observed_generation: generation,
        reason: match (&observed.evicted, &observed.blocked) {
            (Some(_), _) => Some("Evicted".into()),
            (None, Some(blocked)) => Some(blocked.reason.clone()),
            (None, None) => observed
                .deadline_exceeded
                .then(|| super::active_deadline::REASON.into()),
        },
        message: match (&observed.evicted, &observed.blocked) {
            (Some(message), _) => Some(message.clone()),
            (None, Some(blocked)) => Some(blocked.message.clone()),
            (None, None) => observed
                .deadline_exceeded
                .then(|| super::active_deadline::MESSAGE.into()),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::InitProcess;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod(policy: &str, init: &[&str], containers: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(init.iter().map(c).collect()),
                containers: containers.iter().map(c).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn run(attempt: u32, state: ContainerState) -> Run {
        Run {
            id: format!("id{attempt}"),
            attempt,
            state,
            spec_hash: String::new(),
        }
    }

    fn running() -> ContainerState {
        ContainerState::Running(InitProcess {
            pid: 1,
            start_ticks: 1,
            started_at_unix: 1_700_000_000,
        })
    }

    fn exited(code: i32, oom: bool) -> ContainerState {
        ContainerState::Exited(ExitRecord {
            exit_code: code,
            oom_killed: oom,
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:00:05Z".into(),
            start_error: None,
        })
    }

    fn observed(runs: &[(&str, Option<Run>, Option<Run>)]) -> Observed {
        Observed {
            runs: runs
                .iter()
                .map(|(n, latest, previous)| {
                    (
                        n.to_string(),
                        Runs {
                            latest: latest.clone(),
                            previous: previous.clone(),
                        },
                    )
                })
                .collect(),
            host_ip: "10.0.0.1".into(),
            pod_ip: Some("10.42.0.5".into()),
            ..Default::default()
        }
    }

    /// The reason a container waits with (it must be waiting).
    fn waiting_reason(status: &ContainerStatus) -> &str {
        let state = status.state.as_ref().expect("a state");
        let waiting = state.waiting.as_ref().expect("waiting");
        waiting.reason.as_deref().unwrap_or_default()
    }

    fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn running_pod_is_ready_with_ips_and_conditions() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &[], &["a"]);
        let mut seen = observed(&[("a", Some(run(0, running())), None)]);
        let user = ProcessUser {
            uid: 1000,
            gid: 3000,
            supplemental_groups: vec![3000, 4000],
        };
        seen.users.insert("a".into(), user);
        let s = pod_status(&p, &seen, now);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.container_id.as_deref(), Some("orch://id0"));
        assert_eq!(cs.image, "docker.io/library/busybox:latest");
        assert_eq!(
            serde_json::to_value(&cs.user).unwrap(),
            serde_json::json!({"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": [3000, 4000]}})
        );
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
        let no_sandbox = pod_status(
            &p,
            &Observed {
                pod_ip: None,
                ..observed(&[])
            },
            now,
        );
        assert_eq!(
            cond(&no_sandbox, "PodReadyToStartContainers").status,
            "False"
        );
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn resources_report_the_allocation_and_what_the_running_container_has() {
        let now = jiff::Timestamp::now();
        let mut p = pod("Always", &[], &["a", "b"]);
        p.metadata.generation = Some(3);
        let allocated: ResourceRequirements = serde_json::from_value(serde_json::json!({
            "requests": {"cpu": "250m", "memory": "32Mi"},
            "limits": {"cpu": "500m", "memory": "64Mi"}}))
        .unwrap();
        for c in &mut p.spec.as_mut().unwrap().containers {
            c.resources = Some(allocated.clone());
        }
        let mut seen = observed(&[
            ("a", Some(run(0, running())), None),
            ("b", Some(run(0, exited(0, false))), None),
        ]);
        // a's cgroup still has what it had before a resize to the allocation.
        seen.limits.insert(
            "a".into(),
            Resources {
                memory_limit: Some(48 << 20),
                cpu_shares: Some(102),
                cpu_quota: Some(20_000),
                cpu_period: Some(100_000),
                pids_limit: None,
            },
        );
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        seen.resize.in_progress = Some(resize::ResizeCondition::next(
            None,
            None,
            String::new(),
            Some(3),
            t0,
        ));
        let s = pod_status(&p, &seen, now);
        let statuses = s.container_statuses.as_ref().unwrap();
        assert_eq!(
            serde_json::to_value(&statuses[0].allocated_resources).unwrap(),
            serde_json::json!({"cpu": "250m", "memory": "32Mi"})
        );
        assert_eq!(
            serde_json::to_value(&statuses[0].resources).unwrap(),
            serde_json::json!({"requests": {"cpu": "100m", "memory": "32Mi"},
                "limits": {"cpu": "200m", "memory": "48Mi"}})
        );
        assert_eq!(
            serde_json::to_value(&statuses[1].resources).unwrap(),
            serde_json::to_value(&allocated).unwrap(),
            "a container that does not run reports its allocation"
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(cond(&s, "Ready").observed_generation, Some(3));
        let resizing = cond(&s, "PodResizeInProgress");
        assert_eq!(
            (
                resizing.status.as_str(),
                resizing.last_transition_time.clone()
            ),
            ("True", Some(Time(t0)))
        );
        let waiting = pod_status(&p, &observed(&[]), now);
        let statuses = waiting.container_statuses.unwrap();
        assert!(statuses[0].resources.is_none() && statuses[0].allocated_resources.is_none());
        // Below the least the kernel gives, allocation and cgroup count as the same.
        let tiny: ResourceRequirements = serde_json::from_value(serde_json::json!({
            "requests": {"cpu": "1m"}, "limits": {"cpu": "5m"}}))
        .unwrap();
        let cgroup = Resources {
            cpu_shares: Some(2),
            cpu_quota: Some(1_000),
            cpu_period: Some(100_000),
            ..Default::default()
        };
        assert_eq!(container_resources(&tiny, Some(&cgroup)), tiny);
    }

    #[test]
    fn volume_mounts_report_whether_their_submounts_are_read_only_too() {
        let mut p = pod("Always", &[], &["a"]);
        let mount = |name: &str, read_only: Option<bool>, recursive: Option<&str>| VolumeMount {
            name: name.into(),
            mount_path: format!("/{name}"),
            read_only,
            recursive_read_only: recursive.map(str::to_string),
            ..Default::default()
        };
        p.spec.as_mut().unwrap().containers[0].volume_mounts = Some(vec![
            mount("rw", None, None),
            mount("ro", Some(true), None),
            mount("if-possible", Some(true), Some("IfPossible")),
            mount("enabled", Some(true), Some("Enabled")),
            mount("disabled", Some(true), Some("Disabled")),
        ]);
        let s = pod_status(&p, &observed(&[]), jiff::Timestamp::now());
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            serde_json::to_value(&cs.volume_mounts).unwrap(),
            serde_json::json!([
                {"name": "rw", "mountPath": "/rw"},
                {"name": "ro", "mountPath": "/ro", "readOnly": true, "recursiveReadOnly": "Disabled"},
                {"name": "if-possible", "mountPath": "/if-possible", "readOnly": true,
                 "recursiveReadOnly": "Enabled"},
                {"name": "enabled", "mountPath": "/enabled", "readOnly": true,
                 "recursiveReadOnly": "Enabled"},
                {"name": "disabled", "mountPath": "/disabled", "readOnly": true,
                 "recursiveReadOnly": "Disabled"},
            ])
        );
        // A container without mounts, or with an empty list, reports none.
        let mut empty = pod("Always", &[], &["a"]);
        empty.spec.as_mut().unwrap().containers[0].volume_mounts = Some(vec![]);
        let plain = pod_status(&empty, &observed(&[]), jiff::Timestamp::now());
        assert_eq!(plain.container_statuses.unwrap()[0].volume_mounts, None);
    }

    #[test]
    fn a_blocked_pod_stays_pending_with_its_containers_blocked() {
        let p = pod("Always", &["i"], &["a"]);
        let blocked = Observed {
            blocked: Some(Blocked {
                reason: "AppArmor".into(),
                message: "Cannot enforce AppArmor: AppArmor is not enabled on the host".into(),
            }),
            ..observed(&[])
        };
        let s = pod_status(&p, &blocked, jiff::Timestamp::now());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(s.reason.as_deref(), Some("AppArmor"));
        assert_eq!(
            s.message.as_deref(),
            Some("Cannot enforce AppArmor: AppArmor is not enabled on the host")
        );
        let reasons: Vec<_> = s
            .init_container_statuses
            .iter()
            .chain(&s.container_statuses)
            .flatten()
            .map(waiting_reason)
            .collect();
        assert_eq!(reasons, ["Blocked", "Blocked"]);
    }

    #[test]
    fn pending_init_containers_keep_the_pod_pending_and_uninitialized() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &["i"], &["a"]);
        let s = pod_status(&p, &observed(&[("i", Some(run(0, running())), None)]), now);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [i]")
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(waiting_reason(app), "PodInitializing");
    }

    #[test]
    fn ready_waits_for_every_readiness_gate_condition_to_be_true() {
        let now = jiff::Timestamp::now();
        let mut p = pod("Always", &[], &["a"]);
        p.spec.as_mut().unwrap().readiness_gates = Some(
            ["example.com/lb", "example.com/dns"]
                .map(|kind| k8s_openapi::api::core::v1::PodReadinessGate {
                    condition_type: kind.into(),
                })
                .into(),
        );
        let gate = |status: &str| PodCondition {
            type_: "example.com/lb".into(),
            status: status.into(),
            ..Default::default()
        };
        p.status = Some(PodStatus {
            conditions: Some(vec![gate("False")]),
            ..Default::default()
        });
        let o = observed(&[("a", Some(run(0, running())), None)]);
        let s = pod_status(&p, &o, now);
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ReadinessGatesNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "the status of pod readiness gate \"example.com/lb\" is not \"True\", but False, \
                 corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
            )
        );
        assert_eq!(cond(&s, "example.com/lb").status, "False", "kept as set");

        let mut conditions = vec![gate("True")];
        conditions.push(PodCondition {
            type_: "example.com/dns".into(),
            ..gate("True")
        });
        p.status = Some(PodStatus {
            conditions: Some(conditions),
            ..Default::default()
        });
        assert_eq!(cond(&pod_status(&p, &o, now), "Ready").status, "True");
    }

    #[test]
    fn a_failed_pod_is_unready_because_it_failed_and_a_succeeded_one_because_it_completed() {
        let now = jiff::Timestamp::now();
        let o = |code| observed(&[("a", Some(run(0, exited(code, false))), None)]);
        let failed = pod_status(&pod("Never", &[], &["a"]), &o(2), now);
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        for kind in ["ContainersReady", "Ready"] {
            assert_eq!(cond(&failed, kind).reason.as_deref(), Some("PodFailed"));
        }
        assert_eq!(cond(&failed, "Initialized").reason, None);
        let succeeded = pod_status(&pod("Never", &[], &["a"]), &o(0), now);
        assert_eq!(succeeded.phase.as_deref(), Some("Succeeded"));
        for kind in ["Initialized", "ContainersReady", "Ready"] {
            assert_eq!(
                cond(&succeeded, kind).reason.as_deref(),
                Some("PodCompleted")
            );
        }
        assert_eq!(cond(&succeeded, "Initialized").status, "True");
    }

    #[test]
    fn the_previous_runs_termination_message_stays_with_it_in_last_state() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &[], &["a"]);
        let mut o = observed(&[("a", Some(run(1, running())), Some(run(0, exited(3, false))))]);
        o.termination_messages
            .insert("id0".into(), "config missing".into());
        let s = pod_status(&p, &o, now);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.message.as_deref(), Some("config missing"));
    }

    #[test]
    fn app_containers_wait_with_pod_initializing_in_a_pod_with_init_containers() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &["i"], &["a"]);
        let s = pod_status(
            &p,
            &observed(&[("i", Some(run(0, exited(0, false))), None)]),
            now,
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        let waiting = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("PodInitializing"));
        let s = pod_status(&pod("Always", &[], &["a"]), &observed(&[]), now);
        let app = &s.container_statuses.as_ref().unwrap()[0];
        let waiting = app.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn a_deleted_pods_last_status_has_a_final_phase_whatever_its_restart_policy() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &[], &["a", "b"]);
        let mut o = observed(&[
            ("a", Some(run(0, exited(0, false))), None),
            ("b", Some(run(0, exited(0, false))), None),
        ]);
        o.terminal = true;
        assert_eq!(pod_status(&p, &o, now).phase.as_deref(), Some("Succeeded"));
        o.runs.get_mut("b").unwrap().latest = Some(run(0, exited(143, false)));
        let s = pod_status(&p, &o, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
        o.runs.get_mut("b").unwrap().latest = Some(run(0, ContainerState::Created));
        let s = pod_status(&p, &o, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let b = &s.container_statuses.as_ref().unwrap()[1];
        let terminated = b.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (terminated.exit_code, terminated.reason.as_deref()),
            (137, Some("ContainerStatusUnknown"))
        );
        o.terminal = false;
        assert_eq!(pod_status(&p, &o, now).phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn a_running_sidecar_keeps_the_pod_running_and_counts_in_its_readiness() {
        let now = jiff::Timestamp::now();
        let mut p = pod("Never", &["side"], &["a"]);
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].restart_policy =
            Some("Always".into());
        let mut o = observed(&[("side", Some(run(0, running())), None)]);
        o.started.insert("side".into(), false);
        let s = pod_status(&p, &o, now);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized").message.as_deref(),
            Some("containers with incomplete status: [side]")
        );
        o.started.insert("side".into(), true);
        o.readiness.insert("side".into(), false);
        o.runs = observed(&[
            ("side", Some(run(0, running())), None),
            ("a", Some(run(0, running())), None),
        ])
        .runs;
        let s = pod_status(&p, &o, now);
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(
            cond(&s, "ContainersReady").message.as_deref(),
            Some("containers with unready status: [side]")
        );
        o.readiness.insert("side".into(), true);
        let s = pod_status(&p, &o, now);
        assert_eq!(cond(&s, "Ready").status, "True");
        let side = &s.init_container_statuses.as_ref().unwrap()[0];
        assert!(side.ready && side.state.as_ref().unwrap().running.is_some());
        // The app is done; the sidecar still runs, then is stopped: only then is the pod over.
        o.runs.get_mut("a").unwrap().latest = Some(run(0, exited(0, false)));
        assert_eq!(pod_status(&p, &o, now).phase.as_deref(), Some("Running"));
        o.runs.get_mut("side").unwrap().latest = Some(run(0, exited(143, false)));
        assert_eq!(pod_status(&p, &o, now).phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn crash_loop_shows_waiting_with_the_last_termination() {
        let now = jiff::Timestamp::now();
        let p = pod("Always", &[], &["a"]);
        let mut o = observed(&[(
            "a",
            Some(run(3, exited(1, false))),
            Some(run(2, exited(1, false))),
        )]);
        o.waiting.insert(
            "a".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 40s restarting failed container=a".into(),
            },
        );
        let s = pod_status(&p, &o, now);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 3);
        assert_eq!(waiting_reason(cs), "CrashLoopBackOff");
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn an_evicted_pod_fails_with_kubelets_reason_and_a_disruption_target() {
        let now = jiff::Timestamp::now();
        let mut killed = observed(&[("a", Some(run(0, exited(137, false))), None)]);
        killed.evicted = Some("The node was low on resource: memory. ".into());
        let s = pod_status(&pod("Always", &[], &["a"]), &killed, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("Evicted"));
        assert_eq!(
            s.message.as_deref(),
            Some("The node was low on resource: memory. ")
        );
        let target = cond(&s, "DisruptionTarget");
        assert_eq!(
            (target.status.as_str(), target.reason.as_deref()),
            ("True", Some("TerminationByKubelet"))
        );
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
    }

    #[test]
    fn phases_of_finished_pods_follow_the_restart_policy() {
        let now = jiff::Timestamp::now();
        let ok = observed(&[("a", Some(run(0, exited(0, false))), None)]);
        let s = pod_status(&pod("Never", &[], &["a"]), &ok, now);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let oom = observed(&[("a", Some(run(0, exited(137, true))), None)]);
        let s = pod_status(&pod("Never", &[], &["a"]), &oom, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
        let mut failed_init = observed(&[]);
        failed_init.failed_init = true;
        let s = pod_status(&pod("Never", &["i"], &["a"]), &failed_init, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let p0 = pod("Always", &[], &["a"]);
        let first = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let o = observed(&[("a", Some(run(0, running())), None)]);
        let s1 = pod_status(&p0, &o, first);
        let mut p1 = p0.clone();
        p1.status = Some(s1);
        let later = jiff::Timestamp::from_second(1_700_000_100).unwrap();
        let s2 = pod_status(&p1, &o, later);
        assert_eq!(cond(&s2, "Ready").last_transition_time, Some(Time(first)));
        assert_eq!(s2.start_time, Some(Time(first)));
    }
}
