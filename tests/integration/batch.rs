//! Jobs and CronJobs on hollow nodes (`orch agent --hollow`, whose run-to-completion pods exit
//! after `orch.io/hollow-run-seconds` with `orch.io/hollow-exit-code`), through the real kubectl.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orch::client::WatchEventKind;

use crate::harness::Server;

const WAIT: Duration = Duration::from_secs(60);

/// A Job whose pods run `run_seconds` on a hollow node and exit with `exit_code`.
fn job(name: &str, spec: &str, run_seconds: u32, exit_code: i32) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{spec}
  template:
    metadata:
      annotations:
        orch.io/hollow-run-seconds: "{run_seconds}"
        orch.io/hollow-exit-code: "{exit_code}"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "exit {exit_code}"]
"#
    )
}

fn apply(s: &Server, file: &str, text: &str) {
    let path = s.write(file, text);
    s.ok(&["apply", "-f", path.to_str().unwrap()]);
}

fn jsonpath(s: &Server, args: &[&str], path: &str) -> String {
    let template = format!("jsonpath={path}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", template.as_str()]);
    s.ok(&all)
}

/// The events about `object` with `reason`, once there is one: events are written after what they
/// report, as client-go's recorder writes them.
fn events(s: &Server, object: &str, reason: &str) -> String {
    let selector = format!("involvedObject.name={object},reason={reason}");
    let mut found = String::new();
    s.eventually(&format!("a {reason} event about {object}"), WAIT, || {
        found = jsonpath(
            s,
            &["get", "events", "--field-selector", &selector],
            r#"{range .items[*]}{.type} {.message}{"\n"}{end}"#,
        );
        !found.is_empty()
    });
    found
}

/// Follows the pods matching `selector` through a watch that starts before they exist, and
/// reports the most that were active (neither finished nor being deleted) at once.
struct ActivePods {
    stop: Arc<AtomicBool>,
    most: std::thread::JoinHandle<usize>,
}

impl ActivePods {
    fn watch(s: &Server, selector: &str) -> ActivePods {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = s.client();
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("labelSelector", selector)
            .finish();
        let list = runtime
            .block_on(client.get(&format!("/api/v1/namespaces/default/pods?{query}")))
            .unwrap();
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let path = format!("/api/v1/namespaces/default/pods?{query}&watch=1&resourceVersion={rv}");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let most = std::thread::spawn(move || {
            runtime.block_on(async move {
                let mut stream = client.watch(&path).await.unwrap();
                let mut active = HashSet::new();
                let mut most = 0;
                while !stopped.load(Ordering::Relaxed) {
                    let event =
                        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await
                        {
                            Err(_) => continue,
                            Ok(None) => break,
                            Ok(Some(event)) => event.unwrap(),
                        };
                    let pod = &event.object;
                    let name = pod["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let finished = matches!(
                        pod["status"]["phase"].as_str(),
                        Some("Succeeded") | Some("Failed")
                    );
                    let going = !pod["metadata"]["deletionTimestamp"].is_null();
                    if event.kind == WatchEventKind::Deleted || finished || going {
                        active.remove(&name);
                    } else {
                        active.insert(name);
                    }
                    most = most.max(active.len());
                }
                most
            })
        });
        ActivePods { stop, most }
    }

    fn most(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.most.join().unwrap()
    }
}

#[test]
fn job_runs_pods_to_completion_with_bounded_parallelism() {
    let (s, _agent) = Server::with_hollow_nodes(2);
    let watch = ActivePods::watch(&s, "batch.kubernetes.io/job-name=count");
    apply(
        &s,
        "count.yaml",
        &job("count", "  completions: 5\n  parallelism: 2", 1, 0),
    );
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/count",
        "--timeout=60s",
    ]);
    let most = watch.most();
    assert_eq!(most, 2, "parallelism 2: two pods at a time, never more");

    let table = s.ok(&["get", "job", "count"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["count", "Complete", "5/5"], "{table}");
    assert!(
        row[3].ends_with('s'),
        "DURATION from the status times: {table}"
    );

    let status = jsonpath(
        &s,
        &["get", "job", "count"],
        "{.status.succeeded} {.status.ready} {.status.terminating} {.status.uncountedTerminatedPods} {.status.conditions[*].type} {.status.conditions[*].reason}",
    );
    assert_eq!(
        status,
        "5 0 0 {} SuccessCriteriaMet Complete CompletionsReached CompletionsReached"
    );
    let selector = jsonpath(&s, &["get", "job", "count"], "{.spec.selector.matchLabels}");
    let uid = jsonpath(&s, &["get", "job", "count"], "{.metadata.uid}");
    assert_eq!(
        selector,
        format!(r#"{{"batch.kubernetes.io/controller-uid":"{uid}"}}"#)
    );

    let pods = jsonpath(
        &s,
        &["get", "pods", "-l", "job-name=count"],
        r#"{range .items[*]}{.status.phase} {.metadata.finalizers}{"\n"}{end}"#,
    );
    let phases: Vec<&str> = pods.lines().map(str::trim).collect();
    assert_eq!(
        phases,
        vec!["Succeeded"; 5],
        "counted pods keep no finalizer: {pods}"
    );

    let created = events(&s, "count", "SuccessfulCreate");
    assert_eq!(created.lines().count(), 5, "{created}");
    assert!(created
        .lines()
        .all(|l| l.starts_with("Normal Created pod: count-")));
    assert_eq!(
        events(&s, "count", "Completed").trim(),
        "Normal Job completed"
    );
    let described = s.ok(&["describe", "job", "count"]);
    assert!(described.contains("5 Succeeded / 0 Failed"), "{described}");
}

#[test]
fn failing_pods_are_replaced_after_a_backoff_until_the_limit() {
    let (s, _agent) = Server::with_hollow_nodes(1);
    apply(&s, "broken.yaml", &job("broken", "  backoffLimit: 1", 1, 1));
    s.ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=60s",
    ]);

    let status = jsonpath(
        &s,
        &["get", "job", "broken"],
        "{.status.failed} {.status.conditions[*].type}",
    );
    assert_eq!(status, "2 FailureTarget Failed");
    let failed = jsonpath(
        &s,
        &["get", "job", "broken"],
        r#"{.status.conditions[?(@.type=="Failed")].reason}: {.status.conditions[?(@.type=="Failed")].message}"#,
    );
    assert_eq!(
        failed,
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    );
    let table = s.ok(&["get", "job", "broken"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["broken", "Failed", "0/1"], "{table}");
    assert_eq!(
        events(&s, "broken", "BackoffLimitExceeded").trim(),
        "Warning Job has reached the specified backoff limit"
    );

    // The replacement waited out the 10 s backoff after the first failure.
    let pods = jsonpath(
        &s,
        &[
            "get",
            "pods",
            "-l",
            "job-name=broken",
            "--sort-by=.metadata.creationTimestamp",
        ],
        r#"{range .items[*]}{.metadata.creationTimestamp} {.status.containerStatuses[0].state.terminated.finishedAt}{"\n"}{end}"#,
    );
    let times: Vec<Vec<jiff::Timestamp>> = pods
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(times.len(), 2, "{pods}");
    let waited = times[1][0].duration_since(times[0][1]);
    assert!(
        waited >= jiff::SignedDuration::from_secs(9),
        "replacement after {waited:?}: {pods}"
    );
}

#[test]
fn suspended_indexed_jobs_resume_and_finished_jobs_expire() {
    let (s, _agent) = Server::with_hollow_nodes(2);
    apply(
        &s,
        "indexed.yaml",
        &job(
            "indexed",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  suspend: true\n  ttlSecondsAfterFinished: 3",
            1,
            0,
        ),
    );
    s.eventually("the Suspended condition", WAIT, || {
        jsonpath(
            &s,
            &["get", "job", "indexed"],
            r#"{.status.conditions[?(@.type=="Suspended")].status}"#,
        ) == "True"
    });
    assert_eq!(
        jsonpath(&s, &["get", "job", "indexed"], "{.status.startTime}"),
        "",
        "a suspended Job has not started"
    );
    assert_eq!(
        s.ok(&["get", "pods", "-l", "job-name=indexed", "-o", "name"]),
        ""
    );

    s.ok(&[
        "patch",
        "job",
        "indexed",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    s.eventually("three indexed pods", WAIT, || {
        jsonpath(
            &s,
            &["get", "pods", "-l", "job-name=indexed"],
            r#"{range .items[*]}{.spec.hostname}{"\n"}{end}"#,
        )
        .lines()
        .count()
            == 3
    });
    let pods = jsonpath(
        &s,
        &[
            "get",
            "pods",
            "-l",
            "job-name=indexed",
            "--sort-by=.spec.hostname",
        ],
        r#"{range .items[*]}{.spec.hostname}/{.metadata.labels.batch\.kubernetes\.io/job-completion-index}/{.spec.containers[0].env[0].name} {end}"#,
    );
    assert_eq!(
        pods.trim(),
        "indexed-0/0/JOB_COMPLETION_INDEX indexed-1/1/JOB_COMPLETION_INDEX indexed-2/2/JOB_COMPLETION_INDEX"
    );
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=60s",
    ]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "job", "indexed"],
            "{.status.completedIndexes} {.status.succeeded}"
        ),
        "0-2 3"
    );
    assert_eq!(
        events(&s, "indexed", "Resumed").trim(),
        "Normal Job resumed"
    );

    // ttlSecondsAfterFinished: the Job and its pods go.
    s.eventually("the expired Job deleted with its pods", WAIT, || {
        s.ok(&["get", "jobs", "-o", "name"]).is_empty()
            && s.ok(&["get", "pods", "-o", "name"]).is_empty()
    });
}

#[test]
fn deleting_a_running_job_releases_its_pods() {
    let (s, _agent) = Server::with_hollow_nodes(1);
    let no_pods = || s.ok(&["get", "pods", "-o", "name"]).is_empty();
    for cascade in ["background", "foreground", "orphan"] {
        apply(
            &s,
            "long.yaml",
            &job("long", "  parallelism: 2\n  completions: 4", 600, 0),
        );
        s.eventually("two running pods", WAIT, || {
            jsonpath(
                &s,
                &["get", "job", "long"],
                "{.status.active}/{.status.ready}",
            ) == "2/2"
        });
        s.ok(&["delete", "job", "long", &format!("--cascade={cascade}")]);
        if cascade == "orphan" {
            s.eventually("released pods without the tracking finalizer", WAIT, || {
                jsonpath(
                    &s,
                    &["get", "pods"],
                    "{.items[*].metadata.ownerReferences}{.items[*].metadata.finalizers}",
                )
                .is_empty()
            });
            s.ok(&["delete", "pods", "--all", "--wait=false"]);
        }
        s.eventually("the pods gone, finalizers and all", WAIT, no_pods);
    }
}

#[test]
fn cron_job_starts_jobs_on_schedule() {
    let (s, _agent) = Server::with_hollow_nodes(1);
    // `@every` is standard robfig syntax that Kubernetes accepts: the same path as `* * * * *`,
    // without waiting for the next minute.
    let cron_job = r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: "@every 5s"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            orch.io/hollow-run-seconds: "1"
        spec:
          restartPolicy: OnFailure
          containers:
          - name: main
            image: busybox:1.36
            command: ["date"]
"#;
    apply(&s, "tick.yaml", cron_job);
    s.eventually("a Job from the CronJob", Duration::from_secs(20), || {
        !s.ok(&["get", "jobs", "-o", "name"]).is_empty()
    });
    let job = s.ok(&["get", "jobs", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert!(job.starts_with("tick-"), "{job}");
    let owner = jsonpath(
        &s,
        &["get", "job", &job],
        "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}",
    );
    let (owner, scheduled) = owner.split_once(' ').unwrap();
    assert_eq!(owner, "CronJob/tick");
    assert!(scheduled.parse::<jiff::Timestamp>().is_ok(), "{scheduled}");
    assert!(events(&s, "tick", "SuccessfulCreate").contains(&format!("Normal Created job {job}")));

    s.eventually("the CronJob saw its Job complete", WAIT, || {
        !jsonpath(
            &s,
            &["get", "cronjob", "tick"],
            "{.status.lastSuccessfulTime}",
        )
        .is_empty()
    });
    assert!(events(&s, "tick", "SawCompletedJob")
        .contains(&format!("Saw completed job: {job}, condition: Complete")));
    let table = s.ok(&["get", "cronjob", "tick"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["tick", "@every", "5s", "<none>"], "{table}");
    assert_ne!(row[6], "<none>", "LAST SCHEDULE: {table}");

    s.ok(&["delete", "cronjob", "tick"]);
    s.eventually("its Jobs and pods collected", WAIT, || {
        s.ok(&["get", "jobs", "-o", "name"]).is_empty()
            && s.ok(&["get", "pods", "-o", "name"]).is_empty()
    });
}
