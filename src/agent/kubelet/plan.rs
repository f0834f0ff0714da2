//! What to do next for a pod, from its spec and the runs of its containers — kubelet's
//! `computePodActions`: init containers one at a time in order, each to success (a sidecar, to its start,
//! then restarted beside the app containers until they are done); then every app container;
//! exited containers restarted as the restart policy says, behind the crash-loop back-off. Pure: the pod
//! worker carries the plan out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::backoff::{self, Backoff, Decision};
use crate::agent::runtime::ContainerState;
use crate::shim::ExitRecord;

/// One run of a pod's container, as the runtime reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub spec_hash: String,
}

/// The latest run of a container and the one before it (kubelet's lastState).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Runs {
    pub latest: Option<Run>,
    pub previous: Option<Run>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Start {
        container: String,
        init: bool,
        attempt: u32,
    },
    /// Stop a running container whose spec changed; it is then restarted whatever the restart policy.
    Kill { id: String, container: String },
    /// Stop a sidecar for good: the app containers it ran beside are done.
    Stop { id: String, container: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers waiting out a back-off: name → the delay being waited.
    pub backing_off: HashMap<String, Duration>,
    /// When to look again at the latest (the end of the shortest back-off).
    pub requeue: Option<Duration>,
    /// An init container failed for good (restartPolicy Never): the pod has failed.
    pub failed_init: bool,
}

pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

fn wants_restart(policy: &str, exit: &ExitRecord) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit.exit_code != 0,
        _ => true,
    }
}

fn elapsed(from: &str, to: jiff::Timestamp) -> Duration {
    from.parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| Duration::try_from(to.duration_since(t)).ok())
        .unwrap_or_default()
}

struct Context<'a> {
    pod_uid: &'a str,
    spec_hashes: &'a HashMap<String, String>,
    backoff: &'a Backoff,
    now: jiff::Timestamp,
}

/// Decides for an exited container that the policy restarts: start it again, or wait.
fn restart_or_wait(
    plan: &mut Plan,
    cx: &Context,
    container: &Container,
    init: bool,
    run: &Run,
    exit: &ExitRecord,
) {
    let since_finish = elapsed(&exit.finished_at, cx.now);
    let ran_for = exit
        .finished_at
        .parse::<jiff::Timestamp>()
        .map(|end| elapsed(&exit.started_at, end))
        .unwrap_or_default();
    let hash = cx
        .spec_hashes
        .get(&container.name)
        .map_or("", String::as_str);
    match cx.backoff.decide(
        &backoff::crash_key(cx.pod_uid, &container.name, hash),
        since_finish,
        ran_for,
    ) {
        Decision::Restart => plan.actions.push(Action::Start {
            container: container.name.clone(),
            init,
            attempt: run.attempt + 1,
        }),
        Decision::Wait { remaining, delay } => {
            plan.backing_off.insert(container.name.clone(), delay);
            plan.requeue = Some(plan.requeue.map_or(remaining, |r| r.min(remaining)));
        }
    }
}

/// A restartable init container (`restartPolicy: Always`): a sidecar that starts in the init order and
/// then runs beside the app containers for the pod's life.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What the kubelet knows of the runs beyond the runtime's records.
#[derive(Debug, Clone, Default)]
pub struct RunNotes {
    /// Runs the kubelet stopped itself to run them again (a changed spec, a failed liveness or startup
    /// probe when the pod restarts anything): they restart whatever their exit code, as kubelet's do.
    pub killed_for_restart: HashSet<String>,
    /// Running runs whose startup probe has not succeeded yet: a sidecar among them holds back the init
    /// containers after it.
    pub not_started: HashSet<String>,
}

/// The plan for a pod that is not being deleted. `spec_hashes` holds the current hash of each container's
/// spec, to notice one that changed under a running container.
pub fn plan(
    pod_uid: &str,
    spec: &PodSpec,
    runs: &HashMap<String, Runs>,
    spec_hashes: &HashMap<String, String>,
    notes: &RunNotes,
    backoff: &Backoff,
    now: jiff::Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let cx = Context {
        pod_uid,
        spec_hashes,
        backoff,
        now,
    };
    let policy = restart_policy(spec);
    let latest = |name: &str| runs.get(name).and_then(|r| r.latest.as_ref());
    // kubelet's sign that initialization is over: an app container was created.
    let initialized = spec.containers.iter().any(|c| latest(&c.name).is_some());
    // Every app container ended for good: the sidecars are stopped, and not restarted, so the pod ends.
    let app_done = policy != "Always"
        && spec.containers.iter().all(|c| match latest(&c.name) {
            Some(
                run @ Run {
                    state: ContainerState::Exited(exit),
                    ..
                },
            ) => !notes.killed_for_restart.contains(&run.id) && !wants_restart(policy, exit),
            _ => false,
        });
    // kubelet starts an ephemeral container once, even while the pod initializes, and never again;
    // not into a pod whose app containers are done.
    for ephemeral in spec.ephemeral_containers.iter().flatten() {
        if !app_done && latest(&ephemeral.name).is_none() {
            plan.actions.push(Action::Start {
                container: ephemeral.name.clone(),
                init: false,
                attempt: 0,
            });
        }
    }
    for init in spec.init_containers.iter().flatten() {
        if is_sidecar(init) {
            match latest(&init.name) {
                _ if app_done => {}
                None => {
                    plan.actions.push(Action::Start {
                        container: init.name.clone(),
                        init: true,
                        attempt: 0,
                    });
                    if !initialized {
                        return plan;
                    }
                }
                Some(
                    run @ Run {
                        state: ContainerState::Running(_) | ContainerState::Created,
                        ..
                    },
                ) => {
                    kill_if_changed(&mut plan, spec_hashes, init, run);
                    let starting = matches!(run.state, ContainerState::Created)
                        || notes.not_started.contains(&run.id);
                    if starting && !initialized {
                        return plan;
                    }
                }
                Some(
                    run @ Run {
                        state: ContainerState::Exited(exit),
                        ..
                    },
                ) => {
                    restart_or_wait(&mut plan, &cx, init, true, run, exit);
                    if !initialized {
                        return plan;
                    }
                }
            }
            continue;
        }
        match latest(&init.name) {
            None => {
                plan.actions.push(Action::Start {
                    container: init.name.clone(),
                    init: true,
                    attempt: 0,
                });
                return plan;
            }
            Some(Run {
                state: ContainerState::Created | ContainerState::Running(_),
                ..
            }) => return plan,
            Some(Run {
                state: ContainerState::Exited(exit),
                ..
            }) if exit.exit_code == 0 => continue,
            Some(
                run @ Run {
                    state: ContainerState::Exited(exit),
                    ..
                },
            ) => {
                // A failed init container is retried unless the pod never restarts anything.
                if policy == "Never" {
                    plan.failed_init = true;
                } else {
                    restart_or_wait(&mut plan, &cx, init, true, run, exit);
                }
                return plan;
            }
        }
    }
    if app_done {
        for sidecar in spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| is_sidecar(c))
        {
            if let Some(Run {
                id,
                state: ContainerState::Running(_) | ContainerState::Created,
                ..
            }) = latest(&sidecar.name)
            {
                plan.actions.push(Action::Stop {
                    id: id.clone(),
                    container: sidecar.name.clone(),
                });
            }
        }
        return plan;
    }
    for container in &spec.containers {
        match latest(&container.name) {
            None => plan.actions.push(Action::Start {
                container: container.name.clone(),
                init: false,
                attempt: 0,
            }),
            Some(
                run @ Run {
                    state: ContainerState::Running(_) | ContainerState::Created,
                    ..
                },
            ) => kill_if_changed(&mut plan, spec_hashes, container, run),
            Some(
                run @ Run {
                    state: ContainerState::Exited(exit),
                    ..
                },
            ) => {
                if notes.killed_for_restart.contains(&run.id) || wants_restart(policy, exit) {
                    restart_or_wait(&mut plan, &cx, container, false, run, exit);
                }
            }
        }
    }
    plan
}

/// Stops a container whose spec changed under it (it is then started again with the new one).
fn kill_if_changed(
    plan: &mut Plan,
    spec_hashes: &HashMap<String, String>,
    container: &Container,
    run: &Run,
) {
    if spec_hashes
        .get(&container.name)
        .is_some_and(|h| *h != run.spec_hash)
    {
        plan.actions.push(Action::Kill {
            id: run.id.clone(),
            container: container.name.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shim::InitProcess;

    fn spec(policy: &str, init: &[&str], containers: &[&str]) -> PodSpec {
        let c = |n: &&str| Container {
            name: n.to_string(),
            ..Default::default()
        };
        PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: if init.is_empty() {
                None
            } else {
                Some(init.iter().map(c).collect())
            },
            containers: containers.iter().map(c).collect(),
            ..Default::default()
        }
    }

    fn exited(code: i32, finished_secs_ago: i64, now: jiff::Timestamp) -> ContainerState {
        let finished = now - jiff::SignedDuration::from_secs(finished_secs_ago);
        ContainerState::Exited(ExitRecord {
            exit_code: code,
            oom_killed: false,
            started_at: (finished - jiff::SignedDuration::from_secs(1)).to_string(),
            finished_at: finished.to_string(),
            start_error: None,
        })
    }

    fn running() -> ContainerState {
        ContainerState::Running(InitProcess {
            pid: 1,
            start_ticks: 1,
            started_at_unix: 0,
        })
    }

    fn runs(list: &[(&str, u32, ContainerState)]) -> HashMap<String, Runs> {
        list.iter()
            .map(|(name, attempt, state)| {
                (
                    name.to_string(),
                    Runs {
                        latest: Some(Run {
                            id: format!("{name}-{attempt}"),
                            attempt: *attempt,
                            state: state.clone(),
                            spec_hash: "h".into(),
                        }),
                        previous: None,
                    },
                )
            })
            .collect()
    }

    fn starts(plan: &Plan) -> Vec<(String, bool, u32)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Start {
                    container,
                    init,
                    attempt,
                } => Some((container.clone(), *init, *attempt)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn init_containers_run_one_at_a_time_before_the_app_containers() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let s = spec("Always", &["i1", "i2"], &["a", "b"]);
        let none = HashMap::new();
        let p = plan(
            "u",
            &s,
            &none,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert_eq!(starts(&p), [("i1".into(), true, 0)]);
        let p = plan(
            "u",
            &s,
            &runs(&[("i1", 0, running())]),
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert!(p.actions.is_empty());
        let p = plan(
            "u",
            &s,
            &runs(&[("i1", 0, exited(0, 1, now))]),
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert_eq!(starts(&p), [("i2".into(), true, 0)]);
        let done = runs(&[("i1", 0, exited(0, 1, now)), ("i2", 0, exited(0, 1, now))]);
        let p = plan(
            "u",
            &s,
            &done,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert_eq!(starts(&p), [("a".into(), false, 0), ("b".into(), false, 0)]);
        let _ = none;
    }

    fn none_hashes() -> HashMap<String, String> {
        HashMap::new()
    }

    #[test]
    fn an_ephemeral_container_starts_once_even_during_initialization() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let mut s = spec("Always", &["i1"], &["a"]);
        s.ephemeral_containers = Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
            name: "debugger".into(),
            ..Default::default()
        }]);
        let plan_with = |runs: &HashMap<String, Runs>| {
            starts(&plan(
                "u",
                &s,
                runs,
                &none_hashes(),
                &RunNotes::default(),
                &b,
                now,
            ))
        };
        assert_eq!(
            plan_with(&runs(&[("i1", 0, running())])),
            [("debugger".into(), false, 0)]
        );
        // Ended, it is not restarted, whatever the pod's restart policy.
        let ended = runs(&[
            ("i1", 0, exited(0, 60, now)),
            ("a", 0, running()),
            ("debugger", 0, exited(1, 60, now)),
        ]);
        assert_eq!(plan_with(&ended), []);
    }

    #[test]
    fn a_failed_init_container_fails_a_never_pod_and_is_retried_otherwise() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let failed = runs(&[("i1", 0, exited(1, 1, now))]);
        let p = plan(
            "u",
            &spec("Never", &["i1"], &["a"]),
            &failed,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert!(p.failed_init && p.actions.is_empty());
        let p = plan(
            "u",
            &spec("OnFailure", &["i1"], &["a"]),
            &failed,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert_eq!(starts(&p), [("i1".into(), true, 1)]);
    }

    #[test]
    fn restart_policies_and_crash_loop_back_off() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let ok = runs(&[("a", 0, exited(0, 1, now))]);
        let bad = runs(&[("a", 0, exited(2, 1, now))]);
        assert!(plan(
            "u",
            &spec("Never", &[], &["a"]),
            &bad,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now
        )
        .actions
        .is_empty());
        assert!(plan(
            "u",
            &spec("OnFailure", &[], &["a"]),
            &ok,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now
        )
        .actions
        .is_empty());
        assert_eq!(
            starts(&plan(
                "u",
                &spec("OnFailure", &[], &["a"]),
                &bad,
                &none_hashes(),
                &RunNotes::default(),
                &b,
                now
            )),
            [("a".into(), false, 1)]
        );
        // The second crash, one second after finishing, waits out 10s.
        let again = runs(&[("a", 1, exited(2, 1, now))]);
        let p = plan(
            "u",
            &spec("Always", &[], &["a"]),
            &again,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.backing_off["a"], backoff::INITIAL);
        assert_eq!(p.requeue, Some(Duration::from_secs(9)));
        let later = runs(&[("a", 1, exited(2, 11, now))]);
        let p = plan(
            "u",
            &spec("Always", &[], &["a"]),
            &later,
            &none_hashes(),
            &RunNotes::default(),
            &b,
            now,
        );
        assert_eq!(starts(&p), [("a".into(), false, 2)]);
    }

    #[test]
    fn a_running_container_whose_spec_changed_is_killed() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let r = runs(&[("a", 0, running())]);
        let same: HashMap<String, String> = [("a".to_string(), "h".to_string())].into();
        assert!(plan(
            "u",
            &spec("Always", &[], &["a"]),
            &r,
            &same,
            &RunNotes::default(),
            &b,
            now
        )
        .actions
        .is_empty());
        let changed: HashMap<String, String> = [("a".to_string(), "other".to_string())].into();
        assert_eq!(
            plan(
                "u",
                &spec("Always", &[], &["a"]),
                &r,
                &changed,
                &RunNotes::default(),
                &b,
                now
            )
            .actions,
            [Action::Kill {
                id: "a-0".into(),
                container: "a".into()
            }]
        );
    }

    #[test]
    fn a_run_the_kubelet_stopped_to_restart_restarts_whatever_the_policy_with_a_back_off_per_spec()
    {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        // Stopped for a new spec (or a failed liveness probe) and exited 0 on SIGTERM: OnFailure alone
        // would leave it.
        let r = runs(&[("a", 0, exited(0, 1, now))]);
        let killed: HashSet<String> = ["a-0".to_string()].into();
        let hashes: HashMap<String, String> = [("a".to_string(), "v1".to_string())].into();
        let on_failure = spec("OnFailure", &[], &["a"]);
        assert!(
            plan("u", &on_failure, &r, &hashes, &RunNotes::default(), &b, now)
                .actions
                .is_empty()
        );
        let killed = RunNotes {
            killed_for_restart: killed,
            ..Default::default()
        };
        let p = plan("u", &on_failure, &r, &hashes, &killed, &b, now);
        assert_eq!(starts(&p), [("a".into(), false, 1)]);
        // Its next crash waits out a back-off, but a new spec starts afresh.
        let r = runs(&[("a", 1, exited(2, 1, now))]);
        let p = plan("u", &on_failure, &r, &hashes, &RunNotes::default(), &b, now);
        assert!(p.actions.is_empty() && p.backing_off.contains_key("a"));
        let fixed: HashMap<String, String> = [("a".to_string(), "v2".to_string())].into();
        let p = plan("u", &on_failure, &r, &fixed, &RunNotes::default(), &b, now);
        assert_eq!(starts(&p), [("a".into(), false, 2)]);
    }

    fn with_sidecar(mut s: PodSpec, name: &str) -> PodSpec {
        let inits = s.init_containers.get_or_insert_with(Vec::new);
        inits.insert(
            0,
            Container {
                name: name.into(),
                restart_policy: Some("Always".into()),
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn a_sidecar_starts_in_the_init_order_then_restarts_beside_the_app_until_it_is_done() {
        let now = jiff::Timestamp::now();
        let b = Backoff::default();
        let s = with_sidecar(spec("Never", &["i"], &["a"]), "side");
        let notes = RunNotes::default();
        let p = plan("u", &s, &HashMap::new(), &none_hashes(), &notes, &b, now);
        assert_eq!(starts(&p), [("side".into(), true, 0)]);
        // Running, but its startup probe has not succeeded: the next init container waits.
        let r = runs(&[("side", 0, running())]);
        let starting = RunNotes {
            not_started: ["side-0".to_string()].into(),
            ..Default::default()
        };
        assert!(plan("u", &s, &r, &none_hashes(), &starting, &b, now)
            .actions
            .is_empty());
        let p = plan("u", &s, &r, &none_hashes(), &notes, &b, now);
        assert_eq!(starts(&p), [("i".into(), true, 0)]);
        let r = runs(&[("side", 0, running()), ("i", 0, exited(0, 1, now))]);
        let p = plan("u", &s, &r, &none_hashes(), &notes, &b, now);
        assert_eq!(starts(&p), [("a".into(), false, 0)]);
        // Beside the app a sidecar that exits is restarted, even in a Never pod.
        let r = runs(&[
            ("side", 0, exited(0, 1, now)),
            ("i", 0, exited(0, 1, now)),
            ("a", 0, running()),
        ]);
        let p = plan("u", &s, &r, &none_hashes(), &notes, &b, now);
        assert_eq!(starts(&p), [("side".into(), true, 1)]);
        // The app is done: the sidecar is stopped, and not restarted once it has exited.
        let r = runs(&[
            ("side", 1, running()),
            ("i", 0, exited(0, 1, now)),
            ("a", 0, exited(0, 1, now)),
        ]);
        let p = plan("u", &s, &r, &none_hashes(), &notes, &b, now);
        assert_eq!(
            p.actions,
            [Action::Stop {
                id: "side-1".into(),
                container: "side".into()
            }]
        );
        let r = runs(&[
            ("side", 1, exited(143, 1, now)),
            ("i", 0, exited(0, 1, now)),
            ("a", 0, exited(0, 1, now)),
        ]);
        assert!(plan("u", &s, &r, &none_hashes(), &notes, &b, now)
            .actions
            .is_empty());
    }
}
