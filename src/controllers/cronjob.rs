//! The CronJob controller, as Kubernetes 1.34's `cronjob_controllerv2.go`: starts a Job at each
//! start time of the schedule (in `spec.timeZone`, else the controller's local zone) unless it is
//! suspended, too late for `startingDeadlineSeconds`, or — with concurrencyPolicy Forbid — a
//! previous Job is still running; with Replace it deletes the running Jobs first. It keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, deletes finished Jobs beyond
//! the history limits, and wakes up just after the next start time instead of polling.
//!
//! The schedule arithmetic lives in `cron_schedule.rs`; [`reconcile_active`] and [`decide`] are
//! the decisions, and the controller performs them through the API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::cron_schedule::{
    cron_job_schedule, is_job_finished, job_from_template, job_name, jobs_to_clean_up,
    load_location, missed_schedule_message, missed_starting_deadline, next_schedule_time,
    next_schedule_time_duration, schedule_mentions_tz, TOO_MANY_MISSED_TIMES_MESSAGE,
};
use super::{controller_of, run_workers, Context, ControllerError};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, ClientError, WorkQueue};

const WORKERS: usize = 2;

/// An event to record about the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> Note {
    Note {
        warning: false,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> Note {
    Note {
        warning: true,
        reason,
        message,
    }
}

/// What bookkeeping over the CronJob's Jobs found.
#[derive(Debug, Default)]
pub struct Reconciled<'a> {
    pub notes: Vec<Note>,
    /// The status changed.
    pub changed: bool,
    /// Running Jobs the active list does not name (the controller checks a fresh CronJob first).
    pub unexpected: Vec<&'a Job>,
    /// Active entries with no Job in sight (the controller asks the API before dropping them).
    pub unseen: Vec<ObjectReference>,
}

/// Drops finished Jobs from `status.active` (`SawCompletedJob`) and moves `lastSuccessfulTime`
/// to the latest completion; `jobs` are the Jobs the CronJob controls.
pub fn reconcile_active<'a>(cj: &mut CronJob, jobs: &[&'a Job]) -> Reconciled<'a> {
    let mut out = Reconciled::default();
    let status = cj.status.get_or_insert_with(Default::default);
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let active = status.active.get_or_insert_with(Vec::new);
        let found = active.iter().any(|r| r.uid.as_deref() == uid);
        let Some(outcome) = is_job_finished(job) else {
            if !found {
                out.unexpected.push(job);
            }
            continue;
        };
        if found {
            active.retain(|r| r.uid.as_deref() != uid);
            out.notes.push(normal(
                "SawCompletedJob",
                format!("Saw completed job: {name}, condition: {outcome}"),
            ));
            out.changed = true;
        }
        if outcome == "Complete" {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.as_ref());
            let later = match (&status.last_successful_time, completed) {
                (None, _) => true,
                (Some(last), Some(completed)) => completed.0 > last.0,
                (Some(_), None) => false,
            };
            if later {
                status.last_successful_time = completed.cloned();
                out.changed = true;
            }
        }
    }
    let seen: Vec<Option<&str>> = jobs.iter().map(|j| j.metadata.uid.as_deref()).collect();
    out.unseen = status
        .active
        .iter()
        .flatten()
        .filter(|r| !seen.contains(&r.uid.as_deref()))
        .cloned()
        .collect();
    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }
    out
}

/// What to do about the schedule now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start nothing; sync again after this long (never for `None`: only a change of the CronJob
    /// can help).
    Wait(Option<SignedDuration>),
    /// Start the Job for `scheduled`, after deleting the `replace`d running ones; sync again
    /// after `requeue`.
    Start {
        scheduled: Timestamp,
        replace: Vec<ObjectReference>,
        requeue: Option<SignedDuration>,
    },
}

/// The scheduling half of Kubernetes' `syncCronJob`, at `now` (in the controller's zone): the
/// events to record and the step to take.
pub fn decide(cj: &CronJob, now: &Zoned) -> (Vec<Note>, Step) {
    let mut notes = Vec::new();
    let Some(spec) = cj.spec.as_ref() else {
        return (notes, Step::Wait(None));
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return (notes, Step::Wait(None));
    }
    if let Some(zone) = spec.time_zone.as_deref() {
        if let Err(e) = load_location(zone) {
            notes.push(warning(
                "UnknownTimeZone",
                format!("invalid timeZone: {zone:?}: {e}"),
            ));
            return (notes, Step::Wait(None));
        }
    }
    if spec.suspend == Some(true) {
        return (notes, Step::Wait(None));
    }
    if schedule_mentions_tz(&spec.schedule) {
        notes.push(warning("UnsupportedSchedule", format!(
            "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
            spec.schedule
        )));
    }
    let schedule = match cron_job_schedule(cj) {
        Ok(schedule) => schedule,
        Err(e) => {
            notes.push(warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return (notes, Step::Wait(None));
        }
    };
    let due = match next_schedule_time(cj, &schedule, now) {
        Ok(due) => due,
        Err(e) => {
            notes.push(warning(
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return (notes, Step::Wait(None));
        }
    };
    let wait = Step::Wait(next_schedule_time_duration(cj, &schedule, now));
    let Some(due) = due else {
        return (notes, wait);
    };
    if due.too_many_missed {
        notes.push(warning(
            "TooManyMissedTimes",
            TOO_MANY_MISSED_TIMES_MESSAGE.to_string(),
        ));
    }
    if missed_starting_deadline(cj, due.scheduled, now.timestamp()) {
        notes.push(warning(
            "MissSchedule",
            missed_schedule_message(due.scheduled),
        ));
        return (notes, wait);
    }
    let status = cj.status.as_ref();
    let active: &[ObjectReference] = status.and_then(|s| s.active.as_deref()).unwrap_or(&[]);
    let name = job_name(
        cj.metadata.name.as_deref().unwrap_or_default(),
        due.scheduled,
    );
    let already = active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || status
            .and_then(|s| s.last_schedule_time.as_ref())
            .is_some_and(|t| t.0 == due.scheduled);
    if already {
        return (notes, wait);
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        notes.push(normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
                .to_string(),
        ));
        return (notes, wait);
    }
    let replace = if policy == "Replace" {
        active.to_vec()
    } else {
        Vec::new()
    };
    let mut started = cj.clone();
    started
        .status
        .get_or_insert_with(Default::default)
        .last_schedule_time = Some(Time(due.scheduled));
    let requeue = next_schedule_time_duration(&started, &schedule, now);
    (
        notes,
        Step::Start {
            scheduled: due.scheduled,
            replace,
            requeue,
        },
    )
}

/// `status.active` entry for a Job.
fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".to_string()),
        kind: Some("Job".to_string()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn remove_active(cj: &mut CronJob, uid: Option<&str>) {
    let Some(status) = cj.status.as_mut() else {
        return;
    };
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != uid);
    }
    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }
}

struct Controller {
    ctx: Context,
    recorder: Recorder,
    /// The zone schedules without `spec.timeZone` run in.
    zone: TimeZone,
    /// Per CronJob, the resourceVersion of the last status written: an older CronJob in the
    /// informer would not list the Job just started.
    written: Mutex<HashMap<String, u64>>,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        ctx.informers.cron_jobs.on_change(move |change| {
            queue.add(&key_of(&change.object().metadata));
        });
    }
    {
        let queue = queue.clone();
        ctx.informers.jobs.on_change(move |change| {
            let owner = |job: &Job| {
                controller_of(&job.metadata, "CronJob").map(|o| {
                    let ns = job.metadata.namespace.as_deref().unwrap_or_default();
                    format!("{ns}/{}", o.name)
                })
            };
            let current = owner(change.object());
            if let Change::Modified { old, .. } = change {
                if let Some(previous) = owner(old).filter(|p| Some(p) != current.as_ref()) {
                    queue.add(&previous);
                }
            }
            if let Some(key) = current {
                queue.add(&key);
            }
        });
    }
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "cronjob-controller"),
        zone: TimeZone::system(),
        written: Mutex::new(HashMap::new()),
    });
    run_workers(
        "cronjob",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
}

/// A create that found the name taken.
fn already_exists(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { code: 409, reason, .. } if reason == "AlreadyExists")
}

impl Controller {
    fn note(&self, cj: &CronJob, note: &Note) {
        let about = Involved::new("batch/v1", "CronJob", &cj.metadata);
        let clock = self.ctx.clock.as_ref();
        if note.warning {
            self.recorder
                .warning(clock, &about, note.reason, &note.message);
        } else {
            self.recorder
                .normal(clock, &about, note.reason, &note.message);
        }
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(shared) = self.ctx.informers.cron_jobs.get(key) else {
            self.written.lock().expect("written lock").remove(key);
            return Ok(None);
        };
        let seen = shared
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse::<u64>().ok());
        let written = self.written.lock().expect("written lock").get(key).copied();
        // orch's resourceVersions are the store's increasing revisions: they compare as numbers.
        if matches!((seen, written), (Some(seen), Some(written)) if seen < written) {
            // The informer brings the newer CronJob, and with it another sync.
            return Ok(None);
        }
        let (namespace, _) = split_key(key);
        let uid = shared.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Arc<Job>> = self
            .ctx
            .informers
            .jobs
            .list_in(namespace)
            .into_iter()
            .filter(|j| controller_of(&j.metadata, "CronJob").is_some_and(|o| o.uid == uid))
            .collect();
        let jobs: Vec<&Job> = owned.iter().map(Arc::as_ref).collect();
        let mut cj = (*shared).clone();
        let mut changed = self.clean_up(&mut cj, &jobs).await;
        let (requeue, step_changed, result) = self.sync_cron_job(&mut cj, &jobs).await;
        changed |= step_changed;
        if changed {
            let written = Api::<CronJob>::namespaced(self.ctx.client.clone(), namespace)
                .replace_status(cj.metadata.name.as_deref().unwrap_or_default(), &cj)
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
        }
        match requeue {
            Some(after) => Ok(Duration::try_from(after).ok()),
            None => result.map(|()| None),
        }
    }

    /// Deletes finished Jobs beyond the history limits; whether the status changed.
    async fn clean_up(&self, cj: &mut CronJob, jobs: &[&Job]) -> bool {
        let mut changed = false;
        for job in jobs_to_clean_up(cj, jobs) {
            changed |= self.delete_job(cj, job).await;
        }
        changed
    }

    /// Deletes a Job (its pods in the background) and drops it from the active list.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let options = json!({"propagationPolicy": "Background"});
        match Api::<Job>::namespaced(self.ctx.client.clone(), namespace)
            .delete(name, &options)
            .await
        {
            Ok(()) => {
                remove_active(cj, job.metadata.uid.as_deref());
                let note = normal("SuccessfulDelete", format!("Deleted job {name}"));
                self.note(cj, &note);
                true
            }
            Err(e) => {
                self.note(cj, &warning("FailedDelete", format!("Deleted job: {e}")));
                false
            }
        }
    }

    /// Returns when to sync again, whether the status changed, and the error to retry on when
    /// there is no such time.
    async fn sync_cron_job(
        &self,
        cj: &mut CronJob,
        jobs: &[&Job],
    ) -> (Option<SignedDuration>, bool, Result<(), ControllerError>) {
        let namespace = cj.metadata.namespace.clone().unwrap_or_default();
        let job_api = Api::<Job>::namespaced(self.ctx.client.clone(), &namespace);
        let reconciled = reconcile_active(cj, jobs);
        let mut changed = reconciled.changed;
        for note in &reconciled.notes {
            self.note(cj, note);
        }
        if !reconciled.unexpected.is_empty() {
            let name = cj.metadata.name.clone().unwrap_or_default();
            let fresh = match Api::<CronJob>::namespaced(self.ctx.client.clone(), &namespace)
                .get(&name)
                .await
            {
                Ok(fresh) => fresh,
                Err(e) => return (None, changed, Err(e.into())),
            };
            let listed = |job: &Job| {
                fresh
                    .status
                    .iter()
                    .flat_map(|s| s.active.iter().flatten())
                    .any(|r| r.uid == job.metadata.uid)
            };
            for job in reconciled.unexpected.iter().filter(|j| !listed(j)) {
                let message = format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.metadata.name.as_deref().unwrap_or_default()
                );
                self.note(cj, &warning("UnexpectedJob", message));
            }
        }
        for missing in &reconciled.unseen {
            let name = missing.name.as_deref().unwrap_or_default();
            // The informer may lag: only the API can tell the Job is really gone.
            match job_api.get_opt(name).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let note = normal("MissingJob", format!("Active job went missing: {name}"));
                    self.note(cj, &note);
                    remove_active(cj, missing.uid.as_deref());
                    changed = true;
                }
                Err(e) => return (None, changed, Err(e.into())),
            }
        }
        let now = self.ctx.clock.now().to_zoned(self.zone.clone());
        let (notes, step) = decide(cj, &now);
        for note in &notes {
            self.note(cj, note);
        }
        let (scheduled, replace, requeue) = match step {
            Step::Wait(requeue) => return (requeue, changed, Ok(())),
            Step::Start {
                scheduled,
                replace,
                requeue,
            } => (scheduled, replace, requeue),
        };
        for running in &replace {
            let name = running.name.as_deref().unwrap_or_default();
            let job = match job_api.get(name).await {
                Ok(job) => job,
                Err(e) => {
                    self.note(cj, &warning("FailedGet", format!("Get job: {e}")));
                    return (None, changed, Err(e.into()));
                }
            };
            if !self.delete_job(cj, &job).await {
                let message = format!("could not replace job {namespace}/{name}");
                return (None, changed, Err(ControllerError::Invalid(message)));
            }
            changed = true;
        }
        let wanted = match job_from_template(cj, scheduled) {
            Ok(job) => job,
            Err(e) => return (None, changed, Err(ControllerError::Invalid(e.to_string()))),
        };
        let job = match job_api.create(&wanted).await {
            Ok(job) => {
                let name = job.metadata.name.as_deref().unwrap_or_default();
                self.note(
                    cj,
                    &normal("SuccessfulCreate", format!("Created job {name}")),
                );
                job
            }
            Err(e) if already_exists(&e) => {
                // Created before, by this controller if it names the CronJob as controller: then
                // only the status update was lost.
                let name = wanted.metadata.name.as_deref().unwrap_or_default();
                let existing = match job_api.get(name).await {
                    Ok(job) => job,
                    Err(e) => return (None, changed, Err(e.into())),
                };
                let ours = controller_of(&existing.metadata, "CronJob")
                    .is_some_and(|o| Some(&o.uid) == cj.metadata.uid.as_ref());
                let listed = cj
                    .status
                    .iter()
                    .flat_map(|s| s.active.iter().flatten())
                    .any(|r| r.uid == existing.metadata.uid);
                if !ours || listed {
                    return (None, changed, Ok(()));
                }
                existing
            }
            Err(e) => {
                self.note(
                    cj,
                    &warning("FailedCreate", format!("Error creating job: {e}")),
                );
                return (None, changed, Err(e.into()));
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference(&job));
        status.last_schedule_time = Some(Time(scheduled));
        (requeue, true, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::clock::{Clock, FakeClock};
    use serde_json::{json, Value};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron_job(spec: Value, status: Value) -> CronJob {
        let mut spec = spec;
        spec["jobTemplate"] =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}});
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid",
                         "creationTimestamp": "2025-03-01T10:00:30Z"},
            "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn now(clock: &FakeClock) -> Zoned {
        clock.now().to_zoned(TimeZone::UTC)
    }

    fn finished_job(name: &str, outcome: &str, started: &str, completed: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
                                              "uid": "cj-uid", "controller": true}]},
            "status": {"startTime": started, "completionTime": completed,
                       "conditions": [{"type": outcome, "status": "True"}]},
        }))
        .unwrap()
    }

    fn active(names: &[&str]) -> Value {
        let refs: Vec<Value> = names
            .iter()
            .map(|n| json!({"apiVersion": "batch/v1", "kind": "Job", "name": n, "namespace": "default", "uid": format!("{n}-uid")}))
            .collect();
        json!({"active": refs})
    }

    #[test]
    fn fires_at_the_scheduled_minute_and_not_before() {
        let clock = FakeClock::new(at("2025-03-01T10:00:59.500Z"));
        let mut cj = cron_job(json!({"schedule": "* * * * *"}), json!({}));
        let (notes, step) = decide(&cj, &now(&clock));
        assert!(notes.is_empty());
        assert_eq!(
            step,
            Step::Wait(Some(SignedDuration::from_millis(600))),
            "woken just after the minute"
        );

        clock.advance(SignedDuration::from_millis(500));
        let (_, step) = decide(&cj, &now(&clock));
        let scheduled = at("2025-03-01T10:01:00Z");
        assert_eq!(
            step,
            Step::Start {
                scheduled,
                replace: Vec::new(),
                requeue: Some(SignedDuration::from_millis(60_100)),
            }
        );
        assert_eq!(job_name("tick", scheduled), "tick-29013721");

        // Once started, the same minute does not start again.
        cj.status
            .get_or_insert_with(Default::default)
            .last_schedule_time = Some(Time(scheduled));
        clock.advance(SignedDuration::from_secs(30));
        let (_, step) = decide(&cj, &now(&clock));
        assert_eq!(step, Step::Wait(Some(SignedDuration::from_millis(30_100))));
    }

    #[test]
    fn forbid_skips_while_a_job_is_active() {
        let clock = FakeClock::new(at("2025-03-01T10:01:00Z"));
        let cj = cron_job(
            json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"}),
            active(&["tick-29015700"]),
        );
        let (notes, step) = decide(&cj, &now(&clock));
        assert_eq!(
            notes,
            vec![normal(
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into()
            )]
        );
        assert_eq!(step, Step::Wait(Some(SignedDuration::from_millis(60_100))));
        let allow = cron_job(json!({"schedule": "* * * * *"}), active(&["tick-29015700"]));
        assert!(
            matches!(decide(&allow, &now(&clock)).1, Step::Start { ref replace, .. } if replace.is_empty())
        );
    }

    #[test]
    fn replace_deletes_the_running_job_first() {
        let clock = FakeClock::new(at("2025-03-01T10:01:00Z"));
        let cj = cron_job(
            json!({"schedule": "* * * * *", "concurrencyPolicy": "Replace"}),
            active(&["tick-29015700"]),
        );
        let Step::Start {
            replace, scheduled, ..
        } = decide(&cj, &now(&clock)).1
        else {
            panic!("a start is due");
        };
        assert_eq!(scheduled, at("2025-03-01T10:01:00Z"));
        let names: Vec<&str> = replace.iter().filter_map(|r| r.name.as_deref()).collect();
        assert_eq!(names, vec!["tick-29015700"]);
    }

    #[test]
    fn late_suspended_and_broken_cron_jobs_start_nothing() {
        let clock = FakeClock::new(at("2025-03-01T10:05:30Z"));
        let late = cron_job(
            json!({"schedule": "* * * * *", "startingDeadlineSeconds": 10}),
            json!({}),
        );
        // 10:05 is more than 10 s ago: it is skipped, and 10:06 is next.
        let (notes, step) = decide(&late, &now(&clock));
        assert!(notes.is_empty());
        assert_eq!(step, Step::Wait(Some(SignedDuration::from_millis(30_100))));
        clock.advance(SignedDuration::from_secs(35));
        let (_, step) = decide(&late, &now(&clock));
        assert!(
            matches!(step, Step::Start { scheduled, .. } if scheduled == at("2025-03-01T10:06:00Z"))
        );
        let suspended = cron_job(json!({"schedule": "* * * * *", "suspend": true}), json!({}));
        assert_eq!(
            decide(&suspended, &now(&clock)),
            (Vec::new(), Step::Wait(None))
        );
        let unknown = cron_job(
            json!({"schedule": "* * * * *", "timeZone": "Mars/Olympus"}),
            json!({}),
        );
        let (notes, step) = decide(&unknown, &now(&clock));
        assert_eq!(
            (notes[0].reason, step),
            ("UnknownTimeZone", Step::Wait(None))
        );
        assert!(notes[0]
            .message
            .starts_with("invalid timeZone: \"Mars/Olympus\": "));
    }

    #[test]
    fn finished_jobs_leave_the_active_list_and_history_is_trimmed() {
        let jobs = [
            finished_job(
                "tick-1",
                "Complete",
                "2025-03-01T10:01:00Z",
                "2025-03-01T10:01:05Z",
            ),
            finished_job(
                "tick-2",
                "Complete",
                "2025-03-01T10:02:00Z",
                "2025-03-01T10:02:05Z",
            ),
            finished_job(
                "tick-3",
                "Complete",
                "2025-03-01T10:03:00Z",
                "2025-03-01T10:03:05Z",
            ),
            finished_job(
                "tick-4",
                "Failed",
                "2025-03-01T10:04:00Z",
                "2025-03-01T10:04:05Z",
            ),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let mut cj = cron_job(
            json!({"schedule": "* * * * *", "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            active(&["tick-3", "gone"]),
        );
        let reconciled = reconcile_active(&mut cj, &refs);
        assert!(reconciled.changed);
        assert_eq!(
            reconciled.notes,
            vec![normal(
                "SawCompletedJob",
                "Saw completed job: tick-3, condition: Complete".into()
            )]
        );
        let status = cj.status.as_ref().unwrap();
        assert_eq!(
            status.last_successful_time,
            Some(Time(at("2025-03-01T10:03:05Z")))
        );
        let unseen: Vec<&str> = reconciled
            .unseen
            .iter()
            .filter_map(|r| r.name.as_deref())
            .collect();
        assert_eq!(unseen, vec!["gone"], "the controller asks the API about it");
        let doomed: Vec<&str> = jobs_to_clean_up(&cj, &refs)
            .iter()
            .filter_map(|j| j.metadata.name.as_deref())
            .collect();
        assert_eq!(
            doomed,
            vec!["tick-1", "tick-2"],
            "the oldest successes beyond the limit of 1"
        );
        remove_active(&mut cj, Some("gone-uid"));
        assert_eq!(cj.status.unwrap().active, None);
    }

    #[test]
    fn a_running_job_missing_from_the_active_list_is_unexpected() {
        let mut running = finished_job(
            "tick-9",
            "Complete",
            "2025-03-01T10:01:00Z",
            "2025-03-01T10:01:05Z",
        );
        running.status = None;
        let mut cj = cron_job(json!({"schedule": "* * * * *"}), json!({}));
        let reconciled = reconcile_active(&mut cj, &[&running]);
        assert_eq!(reconciled.unexpected.len(), 1);
        assert!(!reconciled.changed);
    }

    /// The whole controller — informers, API writes, events — against a real API server on a
    /// temporary store (a test fixture: the controller itself only talks to the client), with
    /// time moved by a FakeClock minute by minute.
    mod in_process {
        use super::*;
        use crate::client::{Client, SharedInformers};
        use tokio::sync::watch;

        struct Cluster {
            _dir: tempfile::TempDir,
            _stop: watch::Sender<bool>,
            clock: Arc<FakeClock>,
            client: Client,
            controller: Controller,
        }

        impl Cluster {
            async fn new(start: &str) -> Cluster {
                let clock = Arc::new(FakeClock::new(at(start)));
                let (dir, client) = crate::server::testing::in_process(clock.clone()).await;
                let informers = Arc::new(SharedInformers::new(&client));
                let (stop, shutdown) = watch::channel(false);
                informers.cron_jobs.run(shutdown.clone());
                informers.jobs.run(shutdown.clone());
                informers.cron_jobs.wait_synced().await;
                informers.jobs.wait_synced().await;
                let controller = Controller {
                    ctx: Context {
                        client: client.clone(),
                        informers,
                        clock: clock.clone(),
                        config: Default::default(),
                        shutdown,
                    },
                    recorder: Recorder::new(client.clone(), "cronjob-controller"),
                    zone: TimeZone::UTC,
                    written: Mutex::new(HashMap::new()),
                };
                Cluster {
                    _dir: dir,
                    _stop: stop,
                    clock,
                    client,
                    controller,
                }
            }

            fn cron_jobs(&self) -> Api<CronJob> {
                Api::namespaced(self.client.clone(), "default")
            }

            fn jobs(&self) -> Api<Job> {
                Api::namespaced(self.client.clone(), "default")
            }

            /// Waits until the informers hold what the API holds.
            async fn settle(&self) {
                let informers = &self.controller.ctx.informers;
                for _ in 0..500 {
                    let cj = self.cron_jobs().get("tick").await.unwrap();
                    let (jobs, _) = self.jobs().list("").await.unwrap();
                    let mut api: Vec<_> = jobs
                        .iter()
                        .map(|j| j.metadata.resource_version.clone())
                        .collect();
                    let mut cached: Vec<_> = informers
                        .jobs
                        .list()
                        .iter()
                        .map(|j| j.metadata.resource_version.clone())
                        .collect();
                    api.sort();
                    cached.sort();
                    let cached_cj = informers.cron_jobs.get("default/tick");
                    if api == cached
                        && cached_cj.is_some_and(|c| {
                            c.metadata.resource_version == cj.metadata.resource_version
                        })
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                panic!("the informers did not catch up");
            }

            async fn sync(&self) -> Option<Duration> {
                self.settle().await;
                let requeue = self.controller.sync("default/tick").await.unwrap();
                self.settle().await;
                requeue
            }

            async fn job_names(&self) -> Vec<String> {
                let (jobs, _) = self.jobs().list("").await.unwrap();
                let mut names: Vec<String> =
                    jobs.into_iter().filter_map(|j| j.metadata.name).collect();
                names.sort();
                names
            }

            async fn complete(&self, name: &str) {
                let mut job = self.jobs().get(name).await.unwrap();
                let now = Time(self.clock.now());
                job.status = Some(serde_json::from_value(json!({
                    "startTime": now, "completionTime": now, "succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
                })).unwrap());
                self.jobs().replace_status(name, &job).await.unwrap();
            }

            async fn events(&self, reason: &str) -> Vec<String> {
                self.controller.recorder.flush().await;
                let list = self
                    .client
                    .get("/api/v1/namespaces/default/events")
                    .await
                    .unwrap();
                let mut messages: Vec<String> = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["reason"] == reason)
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect();
                messages.sort();
                messages
            }

            fn advance(&self, seconds: i64) {
                self.clock.advance(SignedDuration::from_secs(seconds));
            }
        }

        #[tokio::test]
        async fn schedules_replaces_forbids_and_trims_history() {
            let c = Cluster::new("2025-03-01T10:00:30Z").await;
            let cj: CronJob = serde_json::from_value(json!({
                "metadata": {"name": "tick"},
                "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Replace",
                         "successfulJobsHistoryLimit": 1,
                         "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                             "containers": [{"name": "c", "image": "busybox"}]}}}}},
            }))
            .unwrap();
            c.cron_jobs().create(&cj).await.unwrap();

            // Not before the minute; woken just after it.
            assert_eq!(c.sync().await, Some(Duration::from_millis(30_100)));
            c.advance(29);
            assert_eq!(c.sync().await, Some(Duration::from_millis(1_100)));
            assert!(c.job_names().await.is_empty());
            c.advance(1);
            assert_eq!(c.sync().await, Some(Duration::from_millis(60_100)));
            assert_eq!(c.job_names().await, ["tick-29013721"]);
            let status = c.cron_jobs().get("tick").await.unwrap().status.unwrap();
            assert_eq!(
                status.last_schedule_time,
                Some(Time(at("2025-03-01T10:01:00Z")))
            );
            let active: Vec<_> = status
                .active
                .unwrap()
                .into_iter()
                .filter_map(|r| r.name)
                .collect();
            assert_eq!(active, ["tick-29013721"]);
            let job = c.jobs().get("tick-29013721").await.unwrap();
            let annotations = job.metadata.annotations.unwrap();
            assert_eq!(
                annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"],
                "2025-03-01T10:01:00Z"
            );
            assert!(
                job.spec.unwrap().selector.is_some(),
                "the Job registry generated the selector"
            );

            // Replace: the running Job goes, the next one comes.
            c.advance(60);
            c.sync().await;
            assert_eq!(c.job_names().await, ["tick-29013722"]);
            // (Event names are `<object>.<time in ns>`: under a stopped clock the later events of
            // one sync collide with its first, so only the first is checked.)
            assert_eq!(
                c.events("SuccessfulDelete").await,
                ["Deleted job tick-29013721"]
            );

            // Completion is noticed; history keeps one successful Job.
            c.advance(5);
            c.complete("tick-29013722").await;
            c.sync().await;
            let status = c.cron_jobs().get("tick").await.unwrap().status.unwrap();
            assert_eq!(status.active, None);
            assert_eq!(
                status.last_successful_time,
                Some(Time(at("2025-03-01T10:02:05Z")))
            );
            assert_eq!(
                c.events("SawCompletedJob").await,
                ["Saw completed job: tick-29013722, condition: Complete"]
            );
            c.advance(55);
            c.sync().await;
            c.advance(5);
            c.complete("tick-29013723").await;
            c.sync().await;
            assert_eq!(
                c.job_names().await,
                ["tick-29013723"],
                "the older success is trimmed"
            );

            // Forbid: no second Job while one runs.
            let mut forbid = c.cron_jobs().get("tick").await.unwrap();
            forbid.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
            c.cron_jobs().replace("tick", &forbid).await.unwrap();
            c.advance(55);
            c.sync().await;
            assert_eq!(c.job_names().await, ["tick-29013723", "tick-29013724"]);
            c.advance(60);
            assert_eq!(c.sync().await, Some(Duration::from_millis(60_100)));
            assert_eq!(c.job_names().await, ["tick-29013723", "tick-29013724"]);
            assert_eq!(
                c.events("JobAlreadyActive").await,
                ["Not starting job because prior execution is running and concurrency policy is Forbid"]
            );
        }
    }
}
