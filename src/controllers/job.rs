//! The Job controller, as Kubernetes 1.34's `pkg/controller/job`: runs a Job's pods to completion —
//! at most `parallelism` at a time until `completions` have succeeded (NonIndexed), or one success
//! per completion index (Indexed: the index in an annotation and a label, hostname `<job>-<i>`,
//! `JOB_COMPLETION_INDEX` in every container) — replaces failed pods after an exponential backoff
//! (10 s doubling, at most 6 min), and fails the Job past `backoffLimit` or
//! `activeDeadlineSeconds`. A suspended Job has no pods; resuming restarts its clock.
//!
//! Pods are counted the way Kubernetes counts them: each carries the
//! `batch.kubernetes.io/job-tracking` finalizer until the controller has recorded it, first by UID
//! in `status.uncountedTerminatedPods`, then — once the finalizer is gone — in
//! `succeeded`/`failed`. So a restart neither loses nor double-counts a pod, and anyone may delete
//! finished pods. A Job ends in two steps, as in 1.34: the interim `SuccessCriteriaMet` or
//! `FailureTarget` condition first, then `Complete` or `Failed` once no pod is left uncounted or
//! terminating.
//!
//! Orphan pods its selector matches are adopted (with the tracking finalizer), and pods it controls that
//! the selector no longer matches are released, as Kubernetes' ControllerRefManager does.
//!
//! Not implemented: podFailurePolicy rules, backoffLimitPerIndex and successPolicy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::json;

use super::cron_schedule::is_job_finished;
use super::expectations::Expectations;
use super::pod_ranking::rank_for_deletion;
use super::rollout::controller_ref;
use super::rollout::{
    filter_active_pods, is_pod_ready, slow_start_batches, SLOW_START_INITIAL_BATCH_SIZE,
};
use super::{
    controller_key, controller_of, has_controller, queue_adopters, run_workers, Claim, Context,
    ControllerError, ADOPTION_RECHECK,
};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, WorkQueue};

/// Keeps a finished pod until the controller has counted it.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// An Indexed Job pod's completion index, as an annotation and a label.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// `spec.managedBy` of Jobs this controller manages (unset means the same).
const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";
const DEFAULT_POD_FAILURE_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
const MAX_POD_FAILURE_BACKOFF: SignedDuration = SignedDuration::from_secs(360);
/// Pods created or deleted per sync, so one big Job does not starve the others.
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// UIDs in `status.uncountedTerminatedPods` at once, which keeps the status small.
const MAX_UNCOUNTED_PODS: usize = 500;
const WORKERS: usize = 4;

const COMPLETE: &str = "Complete";
const FAILED: &str = "Failed";
const SUSPENDED: &str = "Suspended";
const FAILURE_TARGET: &str = "FailureTarget";
const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);
const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);

struct Controller {
    ctx: Context,
    recorder: Recorder,
    expectations: Expectations,
    /// Per Job, the UIDs of pods whose finalizer this controller removed and the pod informer has
    /// not yet shown without it: they are counted already.
    finalizer_removals: Mutex<HashMap<String, HashSet<String>>>,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    /// Per Job, the resourceVersion of the last status written: a Job in the informer older than
    /// that would count pods a second time.
    written: Mutex<HashMap<String, u64>>,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "job-controller"),
        expectations: Expectations::new(),
        finalizer_removals: Mutex::new(HashMap::new()),
        backoff: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
    });
    {
        let queue = queue.clone();
        ctx.informers.jobs.on_change(move |change| {
            queue.add(&key_of(&change.object().metadata));
        });
    }
    {
        let queue = queue.clone();
        let controller = controller.clone();
        ctx.informers
            .pods
            .on_change(move |change| controller.pod_changed(change, &queue));
    }
    run_workers("job", queue, WORKERS, ctx.shutdown.clone(), move |key| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
}

// ---------------------------------------------------------------------------------------------
// Reading Jobs and pods

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn uid_of(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

fn parallelism(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1)
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// With podReplacementPolicy Failed (or a pod failure policy) a pod being deleted is neither
/// replaced nor counted as failed until it reaches the Failed phase.
fn only_replace_failed_pods(job: &Job) -> bool {
    job.spec.as_ref().is_some_and(|s| {
        s.pod_replacement_policy.as_deref() == Some("Failed") || s.pod_failure_policy.is_some()
    })
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == JOB_TRACKING_FINALIZER)
}

/// The pod's completion index; `None` when missing or not a non-negative number.
fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse()
        .ok()
        .filter(|i| *i >= 0)
}

/// A valid index of this Job (below `completions`).
fn valid_index(pod: &Pod, completions: i32) -> Option<i32> {
    completion_index(pod).filter(|i| *i < completions)
}

/// Kubernetes' `isPodFailed`: Failed, or — unless only failed pods are replaced — being deleted
/// without having succeeded (pods that never get to report a phase count as failures).
fn is_pod_failed(pod: &Pod, only_replace_failed: bool) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    !only_replace_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

fn is_pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

fn condition<'a>(job: &'a Job, kind: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
}

/// metav1.Time has whole seconds.
fn stamp(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(stamp(now)),
        last_transition_time: Some(stamp(now)),
    }
}

/// Kubernetes' `ensureJobConditionStatus`: sets a condition (a False one only if it exists);
/// whether anything changed.
fn ensure_condition(
    status: &mut JobStatus,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let changed = match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) => {
            let same = c.status == value
                && c.reason.as_deref() == Some(reason)
                && c.message.as_deref() == Some(message);
            if !same {
                *c = new_condition(kind, value, reason, message, now);
            }
            !same
        }
        None if value != "False" => {
            conditions.push(new_condition(kind, value, reason, message, now));
            true
        }
        None => false,
    };
    if conditions.is_empty() {
        status.conditions = None;
    }
    changed
}

fn count(n: Option<i32>) -> i32 {
    n.unwrap_or(0)
}

/// Counters Kubernetes omits when zero (`int32` with omitempty).
fn omit_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

// ---------------------------------------------------------------------------------------------
// Completion indexes

/// Kubernetes' `orderedIntervals`: sorted, disjoint, inclusive ranges of indexes, printed like
/// `status.completedIndexes` (`1,3-5,7`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Intervals(Vec<(i32, i32)>);

impl Intervals {
    /// `parseIndexesFromString`: bad parts are skipped, indexes from `completions` on dropped.
    fn parse(text: &str, completions: i32) -> Intervals {
        let mut out: Vec<(i32, i32)> = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let mut limits = part.splitn(2, '-');
            let Some(Ok(first)) = limits.next().map(str::parse::<i32>) else {
                continue;
            };
            if first >= completions {
                break;
            }
            let last = match limits.next().map(str::parse::<i32>) {
                None => first,
                Some(Ok(last)) => last.min(completions - 1),
                Some(Err(_)) => continue,
            };
            match out.last_mut() {
                Some(prev) if prev.1 == first - 1 => prev.1 = last,
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    /// These intervals plus `indexes` (sorted ascending), merged.
    fn with_ordered_indexes(&self, indexes: &[i32]) -> Intervals {
        let mut all: Vec<(i32, i32)> = self.0.clone();
        all.extend(indexes.iter().map(|&i| (i, i)));
        all.sort_unstable();
        let mut out: Vec<(i32, i32)> = Vec::new();
        for (first, last) in all {
            match out.last_mut() {
                Some(prev) if first <= prev.1 + 1 => prev.1 = prev.1.max(last),
                _ => out.push((first, last)),
            }
        }
        Intervals(out)
    }

    fn total(&self) -> i32 {
        self.0.iter().map(|(f, l)| l - f + 1).sum()
    }

    fn has(&self, index: i32) -> bool {
        self.0.iter().any(|(f, l)| (*f..=*l).contains(&index))
    }

    /// Two adjacent indexes print as `a,b`, longer runs as `a-b`.
    fn render(&self) -> String {
        let mut out = String::new();
        for (first, last) in &self.0 {
            if !out.is_empty() {
                out.push(',');
            }
            let _ = write!(out, "{first}");
            if last > first {
                let sep = if *last == first + 1 { ',' } else { '-' };
                let _ = write!(out, "{sep}{last}");
            }
        }
        out
    }
}

/// The Job's recorded completed indexes, and those plus the indexes of succeeded pods not counted
/// yet (`calculateSucceededIndexes`).
fn succeeded_indexes(job: &Job, pods: &[&Pod]) -> (Intervals, Intervals) {
    let completions = completions(job).unwrap_or(0);
    let recorded = job
        .status
        .as_ref()
        .and_then(|s| s.completed_indexes.as_deref())
        .unwrap_or_default();
    let previous = Intervals::parse(recorded, completions);
    let fresh: BTreeSet<i32> = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
        .filter_map(|p| valid_index(p, completions))
        .collect();
    let all = previous.with_ordered_indexes(&fresh.into_iter().collect::<Vec<_>>());
    (previous, all)
}

/// The lowest `count` indexes below `completions` that have neither succeeded nor an active pod.
fn first_pending_indexes(
    active: &[&Pod],
    succeeded: &Intervals,
    count: i32,
    completions: i32,
) -> Vec<i32> {
    if count <= 0 {
        return Vec::new();
    }
    let running: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    let taken = succeeded.with_ordered_indexes(&running.into_iter().collect::<Vec<_>>());
    (0..completions)
        .filter(|i| !taken.has(*i))
        .take(count as usize)
        .collect()
}

/// The active pods to delete first: for Indexed Jobs every pod with a bad or repeated index (the
/// best pod of an index stays), then the first of Kubernetes' deletion order until `at_least`.
fn active_pods_for_removal<'a>(
    job: &Job,
    active: &[&'a Pod],
    at_least: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut remove = Vec::new();
    let mut left = Vec::new();
    if is_indexed(job) {
        let completions = completions(job).unwrap_or(0);
        let mut by_index: std::collections::BTreeMap<i32, Vec<&Pod>> = Default::default();
        for pod in active {
            match valid_index(pod, completions) {
                Some(i) => by_index.entry(i).or_default().push(pod),
                None => remove.push(*pod),
            }
        }
        for pods in by_index.into_values() {
            let mut ranked = rank_for_deletion(&pods, &[], now);
            if let Some(keep) = ranked.pop() {
                left.push(keep);
            }
            remove.extend(ranked);
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        let more = at_least - remove.len();
        remove.extend(rank_for_deletion(&left, &[], now).into_iter().take(more));
    }
    remove
}

// ---------------------------------------------------------------------------------------------
// Pod failure backoff

/// Failures since the last success, and when the last one happened (Kubernetes' `backoffRecord`).
#[derive(Debug, Clone, Default, PartialEq)]
struct BackoffRecord {
    failures_after_last_success: i32,
    last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after these newly finished pods.
    fn next(&self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> BackoffRecord {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finish_time(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finish_time(p)).max();
        match last_success {
            None if failed.is_empty() => self.clone(),
            None => BackoffRecord {
                failures_after_last_success: self.failures_after_last_success + failed.len() as i32,
                last_failure: failed.last().copied(),
            },
            Some(success) => {
                let after: Vec<Timestamp> = failed.into_iter().filter(|t| *t > success).collect();
                BackoffRecord {
                    failures_after_last_success: after.len() as i32,
                    last_failure: after.last().copied(),
                }
            }
        }
    }

    /// How long to wait before creating replacement pods: 10 s after one failure, doubling with
    /// each further one, at most 6 minutes, counted from the last failure.
    fn remaining(&self, now: Timestamp) -> SignedDuration {
        let Some(last) = self
            .last_failure
            .filter(|_| self.failures_after_last_success > 0)
        else {
            return SignedDuration::ZERO;
        };
        let mut backoff = DEFAULT_POD_FAILURE_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            backoff = backoff.saturating_mul(2);
            if backoff >= MAX_POD_FAILURE_BACKOFF {
                backoff = MAX_POD_FAILURE_BACKOFF;
                break;
            }
        }
        let elapsed = now.duration_since(last);
        if backoff < elapsed {
            SignedDuration::ZERO
        } else {
            backoff - elapsed
        }
    }
}

/// When a pod finished: its containers' last exit, else its Ready condition turning False, else
/// its deletion (less the grace period), else its creation.
fn finish_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .filter(|c| !c.is_empty());
    if let Some(containers) = containers {
        let exits: Option<Vec<Timestamp>> = containers
            .iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect();
        if let Some(latest) = exits.and_then(|e| e.into_iter().max()) {
            return latest;
        }
    }
    let not_ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "False"))
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = not_ready {
        return t.0;
    }
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return deleted
            .0
            .checked_sub(SignedDuration::from_secs(grace))
            .unwrap_or(deleted.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

// ---------------------------------------------------------------------------------------------
// One sync's view of the pods

/// A Job's pods as one sync sees them (Kubernetes' `syncJobCtx`).
struct JobPods<'a> {
    pods: Vec<&'a Pod>,
    active: Vec<&'a Pod>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    /// Pods whose finalizer removal is under way: already counted.
    removing: HashSet<String>,
    only_replace_failed: bool,
}

impl<'a> JobPods<'a> {
    fn new(job: &Job, pods: Vec<&'a Pod>, removing: HashSet<String>) -> Self {
        let uncounted = job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.as_ref());
        let set = |v: Option<&Vec<String>>| v.into_iter().flatten().cloned().collect();
        JobPods {
            active: filter_active_pods(&pods),
            uncounted_succeeded: set(uncounted.and_then(|u| u.succeeded.as_ref())),
            uncounted_failed: set(uncounted.and_then(|u| u.failed.as_ref())),
            removing,
            only_replace_failed: only_replace_failed_pods(job),
            pods,
        }
    }

    fn uid(pod: &Pod) -> &str {
        uid_of(&pod.metadata)
    }

    /// Finished pods not counted in any form yet (`getNewFinishedPods`).
    fn new_finished(&self, job: &Job) -> (Vec<&'a Pod>, Vec<&'a Pod>) {
        let indexed = is_indexed(job);
        let completions = completions(job).unwrap_or(0);
        let fresh = |p: &&Pod, uncounted: &HashSet<String>| {
            has_tracking_finalizer(p)
                && !uncounted.contains(Self::uid(p))
                && !self.removing.contains(Self::uid(p))
                && (!indexed || valid_index(p, completions).is_some())
        };
        let succeeded = self
            .pods
            .iter()
            .filter(|p| fresh(p, &self.uncounted_succeeded) && phase(p) == "Succeeded")
            .copied()
            .collect();
        let failed = self
            .pods
            .iter()
            .filter(|p| {
                fresh(p, &self.uncounted_failed) && is_pod_failed(p, self.only_replace_failed)
            })
            .copied()
            .collect();
        (succeeded, failed)
    }

    fn ready(&self) -> i32 {
        self.active.iter().filter(|p| is_pod_ready(p)).count() as i32
    }

    fn terminating(&self) -> i32 {
        self.pods.iter().filter(|p| is_pod_terminating(p)).count() as i32
    }

    /// Container restarts of running and pending pods, which count against the backoff limit
    /// when failed containers restart in place (restartPolicy OnFailure).
    fn restarts(&self) -> i32 {
        self.pods
            .iter()
            .filter(|p| matches!(phase(p), "Running" | "Pending"))
            .filter_map(|p| p.status.as_ref())
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// The terminal condition a Job is heading for before its pods are managed: its interim
/// SuccessCriteriaMet, the Failed its FailureTarget announces, or a new FailureTarget for an
/// exceeded backoff limit or deadline. Also when to look again for a deadline still ahead.
fn finish_decision(
    job: &Job,
    pods: &JobPods,
    failed: i32,
    now: Timestamp,
) -> (Option<JobCondition>, Option<SignedDuration>) {
    if let Some(met) = condition(job, SUCCESS_CRITERIA_MET).filter(|c| c.status == "True") {
        return (Some(met.clone()), None);
    }
    if let Some(target) = condition(job, FAILURE_TARGET).filter(|c| c.status == "True") {
        let (reason, message) = (
            target.reason.as_deref().unwrap_or_default(),
            target.message.as_deref().unwrap_or_default(),
        );
        return (
            Some(new_condition(FAILED, "True", reason, message, now)),
            None,
        );
    }
    let spec = job.spec.as_ref();
    let backoff_limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let on_failure = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts_exceeded = on_failure && {
        let restarts = pods.restarts();
        if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit
        }
    };
    let failure = |(reason, message): (&str, &str)| {
        Some(new_condition(FAILURE_TARGET, "True", reason, message, now))
    };
    if failed > backoff_limit || restarts_exceeded {
        return (failure(BACKOFF_LIMIT_EXCEEDED), None);
    }
    let deadline = spec.and_then(|s| s.active_deadline_seconds);
    let started = job
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    if let (Some(seconds), Some(started), false) = (deadline, started, is_suspended(job)) {
        let left = SignedDuration::from_secs(seconds) - now.duration_since(started);
        if !left.is_positive() {
            return (failure(DEADLINE_EXCEEDED), None);
        }
        return (None, Some(left));
    }
    (None, None)
}

/// How many pods should be running: what is left of `completions`, at most `parallelism`;
/// without `completions`, `parallelism` until the first success, then whatever still runs.
fn want_active(job: &Job, succeeded: i32, active: i32) -> i32 {
    match completions(job) {
        None if succeeded > 0 => active,
        None => parallelism(job),
        Some(c) => (c - succeeded).min(parallelism(job)).max(0),
    }
}

/// A pod for the Job: the template with the tracking finalizer, the Job as controller, generated
/// name `<job>-` — and for an index `<job>-<i>-`, the index annotation and label, hostname
/// `<job>-<i>` and `JOB_COMPLETION_INDEX` in every container.
fn pod_for_job(job: &Job, index: Option<i32>) -> Pod {
    let name = name_of(&job.metadata);
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".to_string(),
                kind: "Job".to_string(),
                name: name.to_string(),
                uid: uid_of(&job.metadata).to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    if let Some(i) = index {
        let value = i.to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.to_string(), value.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX_ANNOTATION.to_string(), value);
        // Generated names stop at 58 characters before the random suffix.
        let suffix = format!("-{i}-");
        let keep = name.len().min(58usize.saturating_sub(suffix.len()));
        let prefix = name.get(..keep).unwrap_or(name);
        pod.metadata.generate_name = Some(format!("{prefix}{suffix}"));
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(format!("{name}-{i}"));
            let containers = spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut());
            containers.for_each(add_completion_index_env);
        }
    }
    pod
}

fn add_completion_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// Moves the UIDs of pods that no longer carry the finalizer (not in `with_finalizer`) from
/// `uncountedTerminatedPods` into the counters; whether anything moved.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut moved = (0, 0);
    for (list, n) in [
        (&mut uncounted.succeeded, &mut moved.0),
        (&mut uncounted.failed, &mut moved.1),
    ] {
        let all = list.take().unwrap_or_default();
        let before = all.len();
        let kept: Vec<String> = all
            .into_iter()
            .filter(|u| with_finalizer.contains(u))
            .collect();
        *n = (before - kept.len()) as i32;
        *list = non_empty(kept);
    }
    status.succeeded = omit_zero(count(status.succeeded) + moved.0);
    status.failed = omit_zero(count(status.failed) + moved.1);
    moved != (0, 0)
}

/// What the counting step does (`trackJobStatusAndRemoveFinalizers` before its writes).
struct Tracking<'a> {
    /// Pods whose finalizer goes once the status naming them is written.
    remove: Vec<&'a Pod>,
    /// UIDs of pods still holding the finalizer.
    with_finalizer: HashSet<String>,
    flush: bool,
    /// Too many uncounted pods for one sync: the Job cannot finish in this one.
    reached_max: bool,
    /// The final condition to set once every pod is counted.
    finished: Option<JobCondition>,
}

/// Records finished pods in `uncountedTerminatedPods` (Indexed successes go straight into
/// `completedIndexes`), picks the pods whose finalizer can go, and appends the interim condition;
/// `job`'s status is changed in place.
fn plan_tracking<'a>(
    job: &mut Job,
    pods: &JobPods<'a>,
    finished: Option<JobCondition>,
    indexes: Option<&(Intervals, Intervals)>,
    now: Timestamp,
) -> Tracking<'a> {
    let indexed = is_indexed(job);
    let completions = completions(job).unwrap_or(0);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_success_criteria = condition(job, SUCCESS_CRITERIA_MET).is_some();
    let mut ordered = pods.pods.clone();
    if indexed {
        ordered.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
    }
    let with_finalizer: HashSet<String> = pods
        .pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && !pods.removing.contains(JobPods::uid(p)))
        .map(|p| JobPods::uid(p).to_string())
        .collect();
    let status = job.status.get_or_insert_with(Default::default);
    let mut flush = clean_uncounted(status, &with_finalizer);
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut new_succeeded: Vec<String> = uncounted.succeeded.take().unwrap_or_default();
    let mut new_failed: Vec<String> = uncounted.failed.take().unwrap_or_default();
    let mut new_indexes = Vec::new();
    let mut remove = Vec::new();
    let mut reached_max = false;
    let failing = finished
        .as_ref()
        .is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET);
    for pod in ordered {
        let uid = JobPods::uid(pod);
        if !has_tracking_finalizer(pod) || pods.removing.contains(uid) {
            continue;
        }
        let failed = is_pod_failed(pod, pods.only_replace_failed);
        let succeeded = phase(pod) == "Succeeded";
        if !(deleting || finished.is_some() || succeeded || failed) {
            continue;
        }
        remove.push(pod);
        if succeeded && !pods.uncounted_failed.contains(uid) {
            if indexed {
                let previous = indexes.map(|(p, _)| p);
                if let Some(i) =
                    valid_index(pod, completions).filter(|i| !previous.is_some_and(|p| p.has(*i)))
                {
                    new_indexes.push(i);
                    flush = true;
                }
            } else if !pods.uncounted_succeeded.contains(uid) {
                new_succeeded.push(uid.to_string());
                flush = true;
            }
        } else if (failed || failing)
            && !pods.uncounted_failed.contains(uid)
            && (!indexed || valid_index(pod, completions).is_some())
        {
            // Once the Job fails, every pod still running counts as failed.
            new_failed.push(uid.to_string());
            flush = true;
        }
        if new_indexes.len() + new_succeeded.len() + new_failed.len() >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    uncounted.succeeded = non_empty(new_succeeded);
    uncounted.failed = non_empty(new_failed);
    if let Some((_, succeeded)) = indexes.filter(|_| indexed) {
        new_indexes.sort_unstable();
        let all = succeeded.with_ordered_indexes(&new_indexes);
        let rendered = all.render();
        if status.completed_indexes.as_deref().unwrap_or_default() != rendered {
            flush = true;
        }
        status.succeeded = omit_zero(all.total());
        status.completed_indexes = (!rendered.is_empty()).then_some(rendered);
    }
    let finished = match finished {
        Some(target) if target.type_ == FAILURE_TARGET => {
            let failed = new_condition(
                FAILED,
                "True",
                target.reason.as_deref().unwrap_or_default(),
                target.message.as_deref().unwrap_or_default(),
                now,
            );
            status.conditions.get_or_insert_with(Vec::new).push(target);
            flush = true;
            Some(failed)
        }
        Some(met) if met.type_ == SUCCESS_CRITERIA_MET => {
            let complete = new_condition(
                COMPLETE,
                "True",
                met.reason.as_deref().unwrap_or_default(),
                met.message.as_deref().unwrap_or_default(),
                now,
            );
            if !has_success_criteria {
                status.conditions.get_or_insert_with(Vec::new).push(met);
                flush = true;
            }
            Some(complete)
        }
        other => other,
    };
    Tracking {
        remove,
        with_finalizer,
        flush,
        reached_max,
        finished,
    }
}

/// Sets the final condition (and the completion time) once no pod is uncounted or terminating;
/// whether it did.
fn enact_finished(status: &mut JobStatus, finished: Option<&JobCondition>, now: Timestamp) -> bool {
    let Some(finished) = finished else {
        return false;
    };
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let pending = uncounted.map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    });
    if pending > 0 || count(status.terminating) > 0 {
        return false;
    }
    ensure_condition(
        status,
        &finished.type_,
        &finished.status,
        finished.reason.as_deref().unwrap_or_default(),
        finished.message.as_deref().unwrap_or_default(),
        now,
    );
    if finished.type_ == COMPLETE {
        status.completion_time = finished.last_transition_time.clone();
    }
    true
}

// ---------------------------------------------------------------------------------------------
// The controller

/// What managing the pods did.
struct Managed {
    active: i32,
    /// Pods deleted (they are terminating now), and how many of them were ready.
    deleted: i32,
    deleted_ready: i32,
    /// Replacement pods wait for the failure backoff.
    requeue: Option<SignedDuration>,
    error: Option<ControllerError>,
}

/// Work queue keys of pods that lost their controller, next to the Jobs' `namespace/name` keys.
const ORPHAN_POD: &str = "orphan-pod:";

impl Controller {
    fn pod_changed(&self, change: &Change<Pod>, queue: &WorkQueue) {
        let pod = change.object();
        if let Change::Modified { old, .. } = change {
            if let Some(previous) = controller_key(&old.metadata, "Job")
                .filter(|k| Some(k) != controller_key(&pod.metadata, "Job").as_ref())
            {
                queue.add(&previous);
            }
        }
        let Some(job) = controller_key(&pod.metadata, "Job") else {
            let jobs = &self.ctx.informers.jobs;
            let orphan =
                queue_adopters(change, jobs, |j| j.spec.as_ref()?.selector.as_ref(), queue);
            if orphan && has_tracking_finalizer(pod) {
                // Released by its Job (orphan deletion): no Job will count it any more, unless one
                // that selects it adopts it.
                queue.add(&format!("{ORPHAN_POD}{}", key_of(&pod.metadata)));
            }
            return;
        };
        let pod_key = key_of(&pod.metadata);
        match change {
            Change::Added(_) => self.expectations.creation_observed(&job),
            Change::Modified { new, .. } => {
                if new.metadata.deletion_timestamp.is_some() {
                    self.expectations.deletion_observed(&job, &pod_key);
                }
                if !has_tracking_finalizer(new) {
                    self.finalizer_removal_observed(&job, uid_of(&new.metadata));
                }
            }
            Change::Deleted(_) => {
                self.expectations.deletion_observed(&job, &pod_key);
                self.finalizer_removal_observed(&job, uid_of(&pod.metadata));
            }
        }
        queue.add(&job);
    }

    /// A pod without a controller keeps no tracking finalizer (Kubernetes' `syncOrphanPod`).
    async fn sync_orphan(&self, key: &str) -> Result<(), ControllerError> {
        let Some(pod) = self.ctx.informers.pods.get(key) else {
            return Ok(());
        };
        if has_controller(&pod.metadata) || !has_tracking_finalizer(&pod) {
            return Ok(());
        }
        Ok(self.remove_finalizer(&pod).await?)
    }

    fn finalizer_removal_observed(&self, job: &str, uid: &str) {
        let mut removals = self.finalizer_removals.lock().expect("finalizer lock");
        if let Some(uids) = removals.get_mut(job) {
            uids.remove(uid);
            if uids.is_empty() {
                removals.remove(job);
            }
        }
    }

    fn removing(&self, job: &str) -> HashSet<String> {
        self.finalizer_removals
            .lock()
            .expect("finalizer lock")
            .get(job)
            .cloned()
            .unwrap_or_default()
    }

    /// Drops what is kept about a deleted Job; finalizer removals still in flight stay expected
    /// until the pods show them.
    fn forget(&self, key: &str) {
        self.expectations.forget(key);
        self.backoff.lock().expect("backoff lock").remove(key);
        self.written.lock().expect("written lock").remove(key);
    }

    /// The informer has not caught up with this controller's last status write. orch's
    /// resourceVersions are the store's increasing revisions, so they compare as numbers.
    fn is_stale(&self, key: &str, job: &Job) -> bool {
        let seen = job
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok());
        let written = self.written.lock().expect("written lock").get(key).copied();
        matches!((seen, written), (Some(seen), Some(written)) if seen < written)
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        if let Some(pod) = key.strip_prefix(ORPHAN_POD) {
            return self.sync_orphan(pod).await.map(|()| None);
        }
        let (namespace, name) = split_key(key);
        let namespace_pods = self.ctx.informers.pods.list_in(namespace);
        let named: Vec<&Pod> = namespace_pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| controller_of(&p.metadata, "Job").is_some_and(|o| o.name == name))
            .collect();
        let removing = self.removing(key);
        let unclaimed =
            |p: &&Pod| has_tracking_finalizer(p) && !removing.contains(uid_of(&p.metadata));
        let Some(shared) = self.ctx.informers.jobs.get(key) else {
            // The Job is gone: its pods must not wait to be counted.
            self.forget(key);
            let held: Vec<&Pod> = named.into_iter().filter(unclaimed).collect();
            return self.release(key, &held).await.map(|_| None);
        };
        let uid = uid_of(&shared.metadata);
        let (mine, others): (Vec<&Pod>, Vec<&Pod>) = named
            .into_iter()
            .partition(|p| controller_of(&p.metadata, "Job").is_some_and(|o| o.uid == uid));
        // Pods of an earlier Job of the same name.
        let stray: Vec<&Pod> = others.into_iter().filter(unclaimed).collect();
        self.release(key, &stray).await?;
        let managed_by = shared.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != JOB_CONTROLLER_NAME) {
            return Ok(None);
        }
        if is_job_finished(&shared).is_some() {
            self.backoff.lock().expect("backoff lock").remove(key);
            let held: Vec<&Pod> = mine.into_iter().filter(unclaimed).collect();
            return self.release(key, &held).await.map(|_| None);
        }
        if self.is_stale(key, &shared) {
            // The informer brings the newer Job, and with it another sync.
            return Ok(None);
        }
        let pods: Vec<&ObjectMeta> = namespace_pods.iter().map(|p| &p.metadata).collect();
        let claimed = Claim {
            client: &self.ctx.client,
            owner: &controller_ref("batch/v1", "Job", &shared.metadata),
            owner_deleting: shared.metadata.deletion_timestamp.is_some(),
            selector: shared.spec.as_ref().and_then(|s| s.selector.as_ref()),
        }
        .over(
            &format!("/api/v1/namespaces/{namespace}/pods"),
            &pods,
            |_| true,
            &[JOB_TRACKING_FINALIZER],
        )
        .await?;
        if claimed > 0 {
            return Ok(Some(ADOPTION_RECHECK));
        }
        self.sync_job((*shared).clone(), key, mine, removing).await
    }

    async fn sync_job(
        &self,
        mut job: Job,
        key: &str,
        mine: Vec<&Pod>,
        removing: HashSet<String>,
    ) -> Result<Option<Duration>, ControllerError> {
        let now = self.ctx.clock.now();
        let suspended = is_suspended(&job);
        let satisfied = self.expectations.satisfied(key);
        let pods = JobPods::new(&job, mine, removing);
        let mut active = pods.active.len() as i32;
        let mut ready = pods.ready();
        let mut terminating = pods.terminating();
        let (new_succeeded, new_failed) = pods.new_finished(&job);
        let status = job.status.get_or_insert_with(Default::default);
        status
            .uncounted_terminated_pods
            .get_or_insert_with(Default::default);
        let mut succeeded = count(status.succeeded)
            + new_succeeded.len() as i32
            + pods.uncounted_succeeded.len() as i32;
        let failed =
            count(status.failed) + new_failed.len() as i32 + pods.uncounted_failed.len() as i32;
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(stamp(now));
        }
        let backoff = self
            .backoff
            .lock()
            .expect("backoff lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
            .next(&new_succeeded, &new_failed);

        let (mut finished, mut requeue) = finish_decision(&job, &pods, failed, now);
        let indexes = is_indexed(&job).then(|| succeeded_indexes(&job, &pods.pods));
        if let Some((_, all)) = &indexes {
            succeeded = all.total();
        }
        let mut error = None;
        let mut suspend_changed = false;
        if finished.is_some() {
            let (deleted_ready, deleted, e) = self.delete_pods(&job, &pods.active, false).await;
            if deleted != active || !satisfied {
                // Some pods may still be unseen or undeleted: finish in a later sync.
                finished = None;
            }
            active -= deleted;
            terminating += deleted;
            ready -= deleted_ready;
            error = e;
        } else {
            let mut managed = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                let outcome = self
                    .manage_job(
                        key,
                        &job,
                        &pods,
                        succeeded,
                        terminating,
                        indexes.as_ref(),
                        &backoff,
                        now,
                    )
                    .await;
                active = outcome.active;
                terminating += outcome.deleted;
                ready -= outcome.deleted_ready;
                requeue = [requeue, outcome.requeue].into_iter().flatten().min();
                error = outcome.error;
                managed = true;
            }
            let complete = match completions(&job) {
                None => succeeded > 0 && active == 0,
                Some(c) => succeeded >= c && active == 0,
            };
            let status = job.status.get_or_insert_with(Default::default);
            if complete {
                let (reason, message) = COMPLETIONS_REACHED;
                finished = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    reason,
                    message,
                    now,
                ));
            } else if managed && suspended {
                suspend_changed = ensure_condition(
                    status,
                    SUSPENDED,
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                );
                if suspend_changed {
                    self.event(&job, false, "Suspended", "Job suspended");
                }
            } else if managed {
                suspend_changed =
                    ensure_condition(status, SUSPENDED, "False", "JobResumed", "Job resumed", now);
                if suspend_changed {
                    // activeDeadlineSeconds counts the time a Job is continuously active.
                    status.start_time = Some(stamp(now));
                    self.event(&job, false, "Resumed", "Job resumed");
                }
            }
        }
        let status = job.status.get_or_insert_with(Default::default);
        let needs_update = suspend_changed
            || count(status.active) != active
            || status.ready != Some(ready)
            || status.terminating != Some(terminating);
        status.active = omit_zero(active);
        status.ready = Some(ready);
        status.terminating = Some(terminating);
        self.track(
            key,
            job,
            &pods,
            finished,
            indexes.as_ref(),
            needs_update,
            backoff,
            now,
        )
        .await?;
        match error {
            Some(e) => Err(e),
            None => Ok(requeue.and_then(|d| Duration::try_from(d).ok())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn manage_job(
        &self,
        key: &str,
        job: &Job,
        pods: &JobPods<'_>,
        succeeded: i32,
        terminating: i32,
        indexes: Option<&(Intervals, Intervals)>,
        backoff: &BackoffRecord,
        now: Timestamp,
    ) -> Managed {
        let active = pods.active.len() as i32;
        let mut outcome = Managed {
            active,
            deleted: 0,
            deleted_ready: 0,
            requeue: None,
            error: None,
        };
        let want = if is_suspended(job) {
            0
        } else {
            want_active(job, succeeded, active)
        };
        let at_least = usize::try_from(active - want).unwrap_or(0);
        let mut victims = active_pods_for_removal(job, &pods.active, at_least, now);
        victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !victims.is_empty() {
            // Creation and deletion never happen in the same sync; deletion comes first.
            self.expectations
                .expect_deletions(key, victims.iter().map(|p| key_of(&p.metadata)));
            let (deleted_ready, deleted, error) = self.delete_pods(job, &victims, true).await;
            outcome.active -= deleted;
            outcome.deleted = deleted;
            outcome.deleted_ready = deleted_ready;
            outcome.error = error;
            return outcome;
        }
        if is_suspended(job) {
            return outcome;
        }
        let indexes_to_add = indexes.map(|(_, succeeded)| {
            first_pending_indexes(
                &pods.active,
                succeeded,
                want - active,
                completions(job).unwrap_or(0),
            )
        });
        let diff = match &indexes_to_add {
            Some(indexes) => indexes.len() as i32,
            None if pods.only_replace_failed => want - active - terminating,
            None => want - active,
        };
        let Ok(diff) = usize::try_from(diff) else {
            return outcome;
        };
        if diff == 0 {
            return outcome;
        }
        let wait = backoff.remaining(now);
        if wait.is_positive() {
            outcome.requeue = Some(wait);
            return outcome;
        }
        let diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let (created, error) = self.create_pods(key, job, diff, indexes_to_add).await;
        outcome.active += created as i32;
        outcome.error = error;
        outcome
    }

    /// Creates `count` pods in slow-start batches, stopping at the first batch with an error;
    /// how many were created.
    async fn create_pods(
        &self,
        key: &str,
        job: &Job,
        count: usize,
        indexes: Option<Vec<i32>>,
    ) -> (usize, Option<ControllerError>) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace);
        let mut indexes = indexes.map(|i| i.into_iter());
        self.expectations.expect_creations(key, count);
        let mut remaining = count;
        let mut created = 0;
        for batch in slow_start_batches(count, SLOW_START_INITIAL_BATCH_SIZE) {
            let templates: Vec<Pod> = (0..batch)
                .map(|_| pod_for_job(job, indexes.as_mut().and_then(|i| i.next())))
                .collect();
            let results = join_all(templates.iter().map(|p| api.create(p))).await;
            remaining -= batch;
            let mut first_error = None;
            for result in results {
                match result {
                    Ok(pod) => {
                        created += 1;
                        let message = format!("Created pod: {}", name_of(&pod.metadata));
                        self.event(job, false, "SuccessfulCreate", &message);
                    }
                    Err(e) => {
                        // The pod will never show up: stop waiting for it.
                        self.expectations.creation_observed(key);
                        let message = format!("Error creating: {e}");
                        self.event(job, true, "FailedCreate", &message);
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                for _ in 0..remaining {
                    self.expectations.creation_observed(key);
                }
                return (created, Some(e.into()));
            }
        }
        (created, None)
    }

    /// Deletes pods; `uncounted` pods (removed by scaling down or suspending, not failures) lose
    /// their finalizer first so they never count. Returns ready and all pods deleted.
    async fn delete_pods(
        &self,
        job: &Job,
        victims: &[&Pod],
        uncounted: bool,
    ) -> (i32, i32, Option<ControllerError>) {
        let key = key_of(&job.metadata);
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace);
        let results = join_all(victims.iter().map(|pod| {
            let api = api.clone();
            async move {
                if uncounted && has_tracking_finalizer(pod) {
                    self.remove_finalizer(pod).await?;
                }
                let options = json!({"preconditions": {"uid": pod.metadata.uid}});
                api.delete(name_of(&pod.metadata), &options).await
            }
        }))
        .await;
        let (mut ready, mut deleted, mut error) = (0, 0, None);
        for (pod, result) in victims.iter().zip(results) {
            let name = name_of(&pod.metadata);
            match result {
                Ok(()) => {
                    deleted += 1;
                    ready += i32::from(is_pod_ready(pod));
                    self.event(
                        job,
                        false,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                }
                Err(e) => {
                    // The deletion will never show up: stop waiting for it.
                    self.expectations
                        .deletion_observed(&key, &key_of(&pod.metadata));
                    self.event(job, true, "FailedDelete", &format!("Error deleting: {e}"));
                    error.get_or_insert(e.into());
                }
            }
        }
        (ready, deleted, error)
    }

    /// Removes the tracking finalizer with a JSON patch that tests it is still where it was (the
    /// whole list when it is the only one: Kubernetes shows no empty list); a pod that is gone
    /// has no finalizer left.
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), crate::client::ClientError> {
        let finalizers = pod.metadata.finalizers.as_deref().unwrap_or_default();
        let Some(at) = finalizers.iter().position(|f| f == JOB_TRACKING_FINALIZER) else {
            return Ok(());
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let path = format!(
            "{}/{}",
            Api::<Pod>::namespaced(self.ctx.client.clone(), namespace).collection(),
            name_of(&pod.metadata)
        );
        let patch = if finalizers.len() == 1 {
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": [JOB_TRACKING_FINALIZER]},
                {"op": "remove", "path": "/metadata/finalizers"},
            ])
        } else {
            let pointer = format!("/metadata/finalizers/{at}");
            json!([
                {"op": "test", "path": pointer, "value": JOB_TRACKING_FINALIZER},
                {"op": "remove", "path": pointer},
            ])
        };
        match self
            .ctx
            .client
            .request(
                Method::PATCH,
                &path,
                Some(&patch),
                "application/json-patch+json",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes finalizers, expecting to see them gone; the UIDs of the pods now without one.
    async fn remove_finalizers(
        &self,
        key: &str,
        pods: &[&Pod],
    ) -> (Vec<String>, Option<ControllerError>) {
        if pods.is_empty() {
            return (Vec::new(), None);
        }
        {
            let mut removals = self.finalizer_removals.lock().expect("finalizer lock");
            let expected = removals.entry(key.to_string()).or_default();
            expected.extend(pods.iter().map(|p| uid_of(&p.metadata).to_string()));
        }
        let results = join_all(pods.iter().map(|p| self.remove_finalizer(p))).await;
        let mut removed = Vec::new();
        let mut error = None;
        for (pod, result) in pods.iter().zip(results) {
            let uid = uid_of(&pod.metadata);
            match result {
                Ok(()) => removed.push(uid.to_string()),
                Err(e) => {
                    self.finalizer_removal_observed(key, uid);
                    error.get_or_insert(e.into());
                }
            }
        }
        (removed, error)
    }

    /// Lets pods that no Job will count go.
    async fn release(&self, key: &str, pods: &[&Pod]) -> Result<(), ControllerError> {
        match self.remove_finalizers(key, pods).await {
            (_, Some(e)) => Err(e),
            (_, None) => Ok(()),
        }
    }

    /// Counts finished pods and finishes the Job (`trackJobStatusAndRemoveFinalizers`): the
    /// status naming newly finished pods is written before their finalizers go, and the counters
    /// move only for pods whose finalizer is gone.
    #[allow(clippy::too_many_arguments)]
    async fn track(
        &self,
        key: &str,
        mut job: Job,
        pods: &JobPods<'_>,
        finished: Option<JobCondition>,
        indexes: Option<&(Intervals, Intervals)>,
        mut needs_flush: bool,
        backoff: BackoffRecord,
        now: Timestamp,
    ) -> Result<(), ControllerError> {
        let plan = plan_tracking(&mut job, pods, finished, indexes, now);
        needs_flush |= plan.flush;
        if needs_flush {
            job = self.write_status(key, &job).await?;
            self.backoff
                .lock()
                .expect("backoff lock")
                .insert(key.to_string(), backoff);
            needs_flush = false;
        }
        let mut with_finalizer = plan.with_finalizer;
        let (removed, error) = self.remove_finalizers(key, &plan.remove).await;
        for uid in &removed {
            with_finalizer.remove(uid);
        }
        needs_flush |= clean_uncounted(
            job.status.get_or_insert_with(Default::default),
            &with_finalizer,
        );
        if let Some(e) = error {
            if needs_flush {
                self.write_status(key, &job).await?;
            }
            return Err(e);
        }
        let finishing = !plan.reached_max
            && enact_finished(
                job.status.get_or_insert_with(Default::default),
                plan.finished.as_ref(),
                now,
            );
        if finishing || needs_flush {
            let written = self.write_status(key, &job).await?;
            if let Some(finished) = plan.finished.as_ref().filter(|_| finishing) {
                self.record_finished(&written, finished);
            }
        }
        Ok(())
    }

    async fn write_status(&self, key: &str, job: &Job) -> Result<Job, ControllerError> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let written = Api::<Job>::namespaced(self.ctx.client.clone(), namespace)
            .replace_status(name_of(&job.metadata), job)
            .await?;
        if let Some(rv) = written
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
        {
            self.written
                .lock()
                .expect("written lock")
                .insert(key.to_string(), rv);
        }
        Ok(written)
    }

    fn record_finished(&self, job: &Job, finished: &JobCondition) {
        if finished.type_ == COMPLETE {
            let succeeded = count(job.status.as_ref().and_then(|s| s.succeeded));
            if completions(job).is_some_and(|c| succeeded > c) {
                let message = "Too many succeeded pods running after completion count reached";
                self.event(job, true, "TooManySucceededPods", message);
            }
            self.event(job, false, "Completed", "Job completed");
        } else {
            let reason = finished.reason.as_deref().unwrap_or_default();
            let message = finished.message.as_deref().unwrap_or_default();
            self.event(job, true, reason, message);
        }
    }

    fn event(&self, job: &Job, warning: bool, reason: &str, message: &str) {
        let clock = self.ctx.clock.as_ref();
        if warning {
            self.recorder.warning(
                clock,
                &Involved::new("batch/v1", "Job", &job.metadata),
                reason,
                message,
            );
        } else {
            self.recorder.normal(
                clock,
                &Involved::new("batch/v1", "Job", &job.metadata),
                reason,
                message,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn condition_true(job: &Job, kind: &str) -> bool {
        condition(job, kind).is_some_and(|c| c.status == "True")
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"metadata": {"labels": {"app": "pi"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    /// A pod of the Job: `phase`, with the tracking finalizer unless `counted`.
    fn pod(uid: &str, phase: &str, counted: bool) -> Pod {
        let finalizers = if counted {
            json!([])
        } else {
            json!([JOB_TRACKING_FINALIZER])
        };
        serde_json::from_value(json!({
            "metadata": {"name": format!("pi-{uid}"), "namespace": "default", "uid": uid,
                         "creationTimestamp": "2025-01-01T00:00:00Z", "finalizers": finalizers},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    fn indexed(uid: &str, phase: &str, index: i32) -> Pod {
        let mut p = pod(uid, phase, false);
        p.metadata.annotations = Some(
            [(COMPLETION_INDEX_ANNOTATION.to_string(), index.to_string())]
                .into_iter()
                .collect(),
        );
        p
    }

    fn exited(mut p: Pod, at: &str) -> Pod {
        p.status = Some(
            serde_json::from_value(json!({"phase": phase(&p), "containerStatuses": [{
                "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}))
            .unwrap(),
        );
        p
    }

    #[test]
    fn intervals_parse_merge_and_print_like_completed_indexes() {
        let i = Intervals::parse("1,3-5,7,x,9-12", 11);
        assert_eq!(i.0, vec![(1, 1), (3, 5), (7, 7), (9, 10)]);
        assert_eq!(i.total(), 7);
        assert!(i.has(4) && !i.has(6));
        let merged = i.with_ordered_indexes(&[0, 2, 6]);
        assert_eq!(merged.render(), "0-7,9,10");
        assert_eq!(
            Intervals::default().with_ordered_indexes(&[4, 5]).render(),
            "4,5"
        );
        assert_eq!(Intervals::parse("", 3).render(), "");
    }

    #[test]
    fn deleted_pods_count_as_failed_unless_only_failed_pods_are_replaced() {
        let mut p = pod("a", "Running", false);
        assert!(!is_pod_failed(&p, false));
        p.metadata.deletion_timestamp = Some(Time(at("2025-01-01T00:00:05Z")));
        assert!(is_pod_failed(&p, false));
        assert!(!is_pod_failed(&p, true));
        assert!(is_pod_terminating(&p));
        assert!(is_pod_failed(&pod("b", "Failed", false), true));
        assert!(!is_pod_failed(&pod("c", "Succeeded", false), false));
    }

    #[test]
    fn failure_backoff_doubles_from_ten_seconds_and_resets_on_success() {
        let first = exited(pod("a", "Failed", false), "2025-01-01T00:00:10Z");
        let second = exited(pod("b", "Failed", false), "2025-01-01T00:00:30Z");
        let record = BackoffRecord::default().next(&[], &[&first]);
        assert_eq!(record.failures_after_last_success, 1);
        assert_eq!(
            record.remaining(at("2025-01-01T00:00:14Z")),
            SignedDuration::from_secs(6)
        );
        assert_eq!(
            record.remaining(at("2025-01-01T00:00:21Z")),
            SignedDuration::ZERO
        );
        let record = record.next(&[], &[&second]);
        assert_eq!(
            record.remaining(at("2025-01-01T00:00:30Z")),
            SignedDuration::from_secs(20)
        );
        let many = BackoffRecord {
            failures_after_last_success: 12,
            last_failure: Some(at("2025-01-01T00:00:00Z")),
        };
        assert_eq!(
            many.remaining(at("2025-01-01T00:00:00Z")),
            MAX_POD_FAILURE_BACKOFF
        );
        let success = exited(pod("c", "Succeeded", false), "2025-01-01T00:00:20Z");
        let after = record.next(&[&success], &[&second]);
        assert_eq!(
            after.failures_after_last_success, 1,
            "only failures after the success"
        );
        assert_eq!(record.next(&[&success], &[]), BackoffRecord::default());
    }

    #[test]
    fn finish_time_prefers_container_exits() {
        let p = exited(pod("a", "Failed", false), "2025-01-01T00:00:42Z");
        assert_eq!(finish_time(&p), at("2025-01-01T00:00:42Z"));
        assert_eq!(
            finish_time(&pod("b", "Failed", false)),
            at("2025-01-01T00:00:00Z")
        );
    }

    #[test]
    fn active_pods_wanted() {
        let five = job(json!({"completions": 5, "parallelism": 2}), json!({}));
        assert_eq!(want_active(&five, 0, 0), 2);
        assert_eq!(want_active(&five, 4, 1), 1);
        assert_eq!(want_active(&five, 6, 0), 0);
        let work_queue = job(json!({"parallelism": 3}), json!({}));
        assert_eq!(want_active(&work_queue, 0, 1), 3);
        assert_eq!(
            want_active(&work_queue, 1, 2),
            2,
            "after a success, no new pods"
        );
    }

    #[test]
    fn pending_indexes_skip_succeeded_and_running_ones() {
        let running = [indexed("a", "Running", 1), indexed("b", "Pending", 4)];
        let active: Vec<&Pod> = running.iter().collect();
        let succeeded = Intervals::parse("0,2", 6);
        assert_eq!(first_pending_indexes(&active, &succeeded, 2, 6), vec![3, 5]);
        assert_eq!(first_pending_indexes(&active, &succeeded, 5, 6), vec![3, 5]);
        assert!(first_pending_indexes(&active, &succeeded, 0, 6).is_empty());
    }

    #[test]
    fn indexed_jobs_remove_repeated_and_out_of_range_indexes() {
        let j = job(
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let pods = [
            indexed("a", "Running", 0),
            indexed("b", "Pending", 0),
            indexed("c", "Running", 7),
            pod("d", "Running", false),
            indexed("e", "Running", 1),
        ];
        let active: Vec<&Pod> = pods.iter().collect();
        let now = at("2025-01-01T00:01:00Z");
        let mut removed: Vec<&str> = active_pods_for_removal(&j, &active, 0, now)
            .iter()
            .map(|p| uid_of(&p.metadata))
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            vec!["b", "c", "d"],
            "the pending duplicate goes, the running one stays"
        );
        assert_eq!(active_pods_for_removal(&j, &active, 4, now).len(), 4);
    }

    #[test]
    fn pods_carry_the_tracking_finalizer_owner_and_index() {
        let j = job(
            json!({"completions": 3, "completionMode": "Indexed"}),
            json!({}),
        );
        let p = pod_for_job(&j, Some(2));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            p.metadata.finalizers,
            Some(vec![JOB_TRACKING_FINALIZER.to_string()])
        );
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", "job-uid", Some(true))
        );
        assert_eq!(
            p.metadata.annotations.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION],
            "2"
        );
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()[COMPLETION_INDEX_ANNOTATION],
            "2"
        );
        assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "pi");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].name, COMPLETION_INDEX_ENV);
        let plain = pod_for_job(&j, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.unwrap().hostname.is_none());
    }

    #[test]
    fn finished_pods_are_recorded_before_their_finalizers_go() {
        let mut j = job(json!({"completions": 3}), json!({"succeeded": 1}));
        let pods = [
            pod("done", "Succeeded", false),
            pod("broken", "Failed", false),
            pod("running", "Running", false),
            pod("old", "Succeeded", true),
        ];
        let view = JobPods::new(&j, pods.iter().collect(), HashSet::new());
        let (new_succeeded, new_failed) = view.new_finished(&j);
        assert_eq!((new_succeeded.len(), new_failed.len()), (1, 1));
        let now = at("2025-01-01T00:01:00Z");
        let plan = plan_tracking(&mut j, &view, None, None, now);
        assert!(plan.flush);
        let removed: Vec<&str> = plan.remove.iter().map(|p| uid_of(&p.metadata)).collect();
        assert_eq!(
            removed,
            vec!["done", "broken"],
            "the running pod keeps its finalizer"
        );
        let status = j.status.clone().unwrap();
        let uncounted = status.uncounted_terminated_pods.unwrap();
        assert_eq!(uncounted.succeeded, Some(vec!["done".to_string()]));
        assert_eq!(uncounted.failed, Some(vec!["broken".to_string()]));
        assert_eq!(
            status.succeeded,
            Some(1),
            "counted only once the finalizer is gone"
        );

        // The finalizers went: the counters move.
        let still_held: HashSet<String> = ["running".to_string()].into();
        let status = j.status.as_mut().unwrap();
        assert!(clean_uncounted(status, &still_held));
        assert_eq!((status.succeeded, status.failed), (Some(2), Some(1)));
        assert_eq!(
            status.uncounted_terminated_pods.as_ref().unwrap().succeeded,
            None
        );
    }

    #[test]
    fn pods_being_counted_are_not_counted_again() {
        let mut j = job(json!({"completions": 2}), json!({"succeeded": 1}));
        let pods = [pod("done", "Succeeded", false)];
        let removing: HashSet<String> = ["done".to_string()].into();
        let view = JobPods::new(&j, pods.iter().collect(), removing);
        assert!(view.new_finished(&j).0.is_empty());
        let plan = plan_tracking(&mut j, &view, None, None, at("2025-01-01T00:01:00Z"));
        assert!(plan.remove.is_empty() && !plan.flush);
    }

    #[test]
    fn success_goes_through_success_criteria_met_to_complete() {
        let mut j = job(
            json!({"completions": 1}),
            json!({"succeeded": 1, "terminating": 0}),
        );
        let view = JobPods::new(&j, Vec::new(), HashSet::new());
        let now = at("2025-01-01T00:01:00Z");
        let (reason, message) = COMPLETIONS_REACHED;
        let met = new_condition(SUCCESS_CRITERIA_MET, "True", reason, message, now);
        let plan = plan_tracking(&mut j, &view, Some(met), None, now);
        assert!(plan.flush);
        let complete = plan.finished.unwrap();
        assert_eq!(complete.type_, COMPLETE);
        let status = j.status.as_mut().unwrap();
        assert!(enact_finished(status, Some(&complete), now));
        let types: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, vec![SUCCESS_CRITERIA_MET, COMPLETE]);
        let c = &status.conditions.as_ref().unwrap()[1];
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(
            c.message.as_deref(),
            Some("Reached expected number of succeeded pods")
        );
        assert_eq!(status.completion_time, Some(stamp(now)));
    }

    #[test]
    fn failure_waits_for_terminating_pods() {
        let now = at("2025-01-01T00:01:00Z");
        let mut j = job(json!({"backoffLimit": 0}), json!({}));
        let failed = exited(pod("a", "Failed", false), "2025-01-01T00:00:59Z");
        let running = pod("b", "Running", false);
        let view = JobPods::new(&j, vec![&failed, &running], HashSet::new());
        let (target, requeue) = finish_decision(&j, &view, 1, now);
        let target = target.unwrap();
        assert_eq!(requeue, None);
        assert_eq!(
            (target.type_.as_str(), target.reason.as_deref()),
            (FAILURE_TARGET, Some("BackoffLimitExceeded"))
        );
        let plan = plan_tracking(&mut j, &view, Some(target), None, now);
        let removed: Vec<&str> = plan.remove.iter().map(|p| uid_of(&p.metadata)).collect();
        assert_eq!(removed, vec!["a", "b"], "a failing Job lets every pod go");
        let uncounted = j
            .status
            .as_ref()
            .unwrap()
            .uncounted_terminated_pods
            .clone()
            .unwrap();
        assert_eq!(
            uncounted.failed,
            Some(vec!["a".to_string(), "b".to_string()])
        );
        let failed_condition = plan.finished.unwrap();
        assert_eq!(failed_condition.type_, FAILED);
        let status = j.status.as_mut().unwrap();
        clean_uncounted(status, &HashSet::new());
        status.terminating = Some(1);
        assert!(
            !enact_finished(status, Some(&failed_condition), now),
            "a pod is still terminating"
        );
        status.terminating = Some(0);
        assert!(enact_finished(status, Some(&failed_condition), now));
        assert!(condition_true(&j, FAILED) && condition_true(&j, FAILURE_TARGET));
        assert_eq!(j.status.as_ref().unwrap().failed, Some(2));
        assert_eq!(j.status.as_ref().unwrap().completion_time, None);

        // The next sync turns the recorded FailureTarget into Failed.
        let (next, _) = finish_decision(&j, &JobPods::new(&j, Vec::new(), HashSet::new()), 2, now);
        assert_eq!(next.unwrap().type_, FAILED);
    }

    #[test]
    fn active_deadline_fails_the_job_or_says_when_to_look_again() {
        let status = json!({"startTime": "2025-01-01T00:00:00Z"});
        let j = job(json!({"activeDeadlineSeconds": 30}), status);
        let view = JobPods::new(&j, Vec::new(), HashSet::new());
        let (none, later) = finish_decision(&j, &view, 0, at("2025-01-01T00:00:10Z"));
        assert_eq!((none, later), (None, Some(SignedDuration::from_secs(20))));
        let (failed, _) = finish_decision(&j, &view, 0, at("2025-01-01T00:00:30Z"));
        let failed = failed.unwrap();
        assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            failed.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
    }

    #[test]
    fn on_failure_restarts_count_against_the_backoff_limit() {
        let mut j = job(json!({"backoffLimit": 2}), json!({}));
        j.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .restart_policy = Some("OnFailure".into());
        let mut restarting = pod("a", "Running", false);
        restarting.status = Some(
            serde_json::from_value(json!({"phase": "Running", "containerStatuses": [{
                "name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 2}]}))
            .unwrap(),
        );
        let view = JobPods::new(&j, vec![&restarting], HashSet::new());
        let (target, _) = finish_decision(&j, &view, 0, at("2025-01-01T00:00:10Z"));
        assert_eq!(
            target.unwrap().reason.as_deref(),
            Some("BackoffLimitExceeded")
        );
    }

    #[test]
    fn indexed_successes_go_to_completed_indexes() {
        let mut j = job(
            json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
            json!({"completedIndexes": "0", "succeeded": 1}),
        );
        let pods = [
            indexed("a", "Succeeded", 1),
            indexed("b", "Succeeded", 2),
            indexed("c", "Running", 3),
        ];
        let view = JobPods::new(&j, pods.iter().collect(), HashSet::new());
        let indexes = succeeded_indexes(&j, &view.pods);
        assert_eq!(indexes.1.render(), "0-2");
        let plan = plan_tracking(
            &mut j,
            &view,
            None,
            Some(&indexes),
            at("2025-01-01T00:01:00Z"),
        );
        assert!(plan.flush);
        let status = j.status.unwrap();
        assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.uncounted_terminated_pods.unwrap().succeeded, None);
    }

    #[test]
    fn conditions_are_set_once() {
        let now = at("2025-01-01T00:01:00Z");
        let mut status = JobStatus::default();
        assert!(!ensure_condition(
            &mut status,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
        assert_eq!(status.conditions, None, "no False condition out of nothing");
        assert!(ensure_condition(
            &mut status,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut status,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(ensure_condition(
            &mut status,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            now
        ));
    }
}
