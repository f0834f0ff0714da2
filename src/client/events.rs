//! Events that controllers, the scheduler and the kubelet record about objects, as `kubectl describe`
//! shows them (core/v1 Events with a source component — and host, for a node's components — the part of
//! the object they are about when it is one container, first/last timestamps and a count; a repeat within
//! ten minutes raises the count of the recorded event; `controllers::event_ttl` expires them after an hour).
//!
//! Recording never waits for the API server, as with client-go's broadcaster: the event is stamped and
//! queued, and one task per recorder writes the queue out in order. A sync loop does not hold its next
//! step for a round trip per event, nor stall on a slow or unreachable API server. The queue holds at
//! most [`QUEUED`] events; past that, new events are dropped (client-go's `DropIfChannelFull`), so a
//! down API server costs bounded memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use tokio::sync::mpsc;

use super::Client;
use crate::api::meta::format_time;
use crate::util::Clock;

/// What an event is about.
pub struct Involved<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// The part of the object the event is about, e.g. `spec.containers{web}` (kubectl's SUBOBJECT).
    pub field_path: Option<String>,
}

impl<'a> Involved<'a> {
    pub fn new(
        api_version: &'a str,
        kind: &'a str,
        meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Self {
        Involved {
            api_version,
            kind,
            namespace: meta.namespace.as_deref().unwrap_or_default(),
            name: meta.name.as_deref().unwrap_or_default(),
            uid: meta.uid.as_deref().unwrap_or_default(),
            field_path: None,
        }
    }

    /// A Node, as the kubelet and the node controller refer to one: no API version, and `uid` the node's
    /// UID or, for the kubelet, its name.
    pub fn node(name: &'a str, uid: &'a str) -> Self {
        Involved {
            api_version: "",
            kind: "Node",
            namespace: "",
            name,
            uid,
            field_path: None,
        }
    }

    /// The same object, with the event about its part at `field_path`.
    pub fn at(self, field_path: String) -> Self {
        Involved {
            field_path: Some(field_path),
            ..self
        }
    }
}

/// A repeat of the same event within this window raises the count of the recorded one.
const AGGREGATION_WINDOW: Duration = Duration::from_secs(600);
/// How many distinct events are remembered for aggregation.
const REMEMBERED: usize = 4096;
/// client-go's `maxQueuedEvents`: events waiting to be written, past which new ones are dropped.
const QUEUED: usize = 1000;

/// Records events; clones share one queue and one writer.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Queued>,
}

enum Queued {
    Event(Box<Event>),
    /// Answered once everything queued before it is written.
    #[cfg(test)]
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// An event as recorded, before it is written.
struct Event {
    at: Timestamp,
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    field_path: Option<String>,
    severity: &'static str,
    reason: String,
    message: String,
}

impl Recorder {
    /// A recorder for `component`, whose writer runs on the current tokio runtime until the last clone
    /// of the recorder is dropped.
    pub fn new(client: Client, component: &'static str) -> Self {
        Self::start(client, component, None)
    }

    /// A recorder for a component that runs on one node (the kubelet): its events name the node as
    /// their source host and reporting instance.
    pub fn on_node(client: Client, component: &'static str, node: &str) -> Self {
        Self::start(client, component, Some(node.to_string()))
    }

    fn start(client: Client, component: &'static str, host: Option<String>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUED);
        let writer = Writer {
            client,
            component,
            host,
            seen: HashMap::new(),
        };
        tokio::spawn(writer.run(pending));
        Recorder { queue }
    }

    /// Records a Normal event. Failures are logged, never returned: an event is not worth failing a sync.
    pub fn normal(&self, clock: &dyn Clock, about: &Involved<'_>, reason: &str, message: &str) {
        self.record(clock, about, "Normal", reason, message)
    }

    pub fn warning(&self, clock: &dyn Clock, about: &Involved<'_>, reason: &str, message: &str) {
        self.record(clock, about, "Warning", reason, message)
    }

    fn record(
        &self,
        clock: &dyn Clock,
        about: &Involved<'_>,
        severity: &'static str,
        reason: &str,
        message: &str,
    ) {
        let event = Event {
            at: clock.now(),
            api_version: about.api_version.to_string(),
            kind: about.kind.to_string(),
            namespace: about.namespace.to_string(),
            name: about.name.to_string(),
            uid: about.uid.to_string(),
            field_path: about.field_path.clone(),
            severity,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if let Err(e) = self.queue.try_send(Queued::Event(Box::new(event))) {
            tracing::debug!(reason, error = %e, "event not recorded");
        }
    }

    /// Waits until every event recorded so far is written (or failed to be).
    #[cfg(test)]
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Remembered for aggregation: where an event was written and its count there.
struct Seen {
    path: String,
    count: i64,
    at: Instant,
}

/// Writes one recorder's queue, in order.
struct Writer {
    client: Client,
    component: &'static str,
    host: Option<String>,
    seen: HashMap<String, Seen>,
}

impl Writer {
    async fn run(mut self, mut pending: mpsc::Receiver<Queued>) {
        while let Some(queued) = pending.recv().await {
            match queued {
                Queued::Event(event) => self.write(*event).await,
                #[cfg(test)]
                Queued::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn write(&mut self, event: Event) {
        // Like client-go's event correlator: the same event again raises the count instead of adding one.
        let identity = format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            event.uid,
            event.name,
            event.field_path.as_deref().unwrap_or_default(),
            event.severity,
            event.reason,
            event.message
        );
        let repeat = self
            .seen
            .get(&identity)
            .filter(|s| s.at.elapsed() < AGGREGATION_WINDOW)
            .map(|s| (s.path.clone(), s.count + 1));
        if let Some((path, count)) = repeat {
            let bump = json!({"count": count, "lastTimestamp": format_time(event.at)});
            if self.client.merge_patch(&path, &bump).await.is_ok() {
                self.remember(identity, path, count);
                return;
            }
        }
        // Events live in the object's namespace; cluster-scoped objects' events go to default.
        let namespace = if event.namespace.is_empty() {
            "default"
        } else {
            &event.namespace
        };
        let mut body = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {
                "name": format!("{}.{:x}", event.name, event.at.as_nanosecond()),
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": event.api_version, "kind": event.kind, "namespace": event.namespace,
                "name": event.name, "uid": event.uid,
            },
            "reason": event.reason,
            "message": event.message,
            "type": event.severity,
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.host.as_deref().unwrap_or_default(),
            "firstTimestamp": format_time(event.at),
            "lastTimestamp": format_time(event.at),
            "eventTime": null,
            "count": 1,
        });
        if let Some(host) = &self.host {
            body["source"]["host"] = json!(host);
        }
        if let Some(field_path) = &event.field_path {
            body["involvedObject"]["fieldPath"] = json!(field_path);
        }
        let collection = format!("/api/v1/namespaces/{namespace}/events");
        match self.client.create(&collection, &body).await {
            Ok(created) => {
                let name = created["metadata"]["name"].as_str().unwrap_or_default();
                self.remember(identity, format!("{collection}/{name}"), 1);
            }
            Err(e) => tracing::debug!(reason = event.reason, error = %e, "event not recorded"),
        }
    }

    fn remember(&mut self, identity: String, path: String, count: i64) {
        if self.seen.len() >= REMEMBERED && !self.seen.contains_key(&identity) {
            self.seen.retain(|_, s| s.at.elapsed() < AGGREGATION_WINDOW);
            if self.seen.len() >= REMEMBERED {
                self.seen.clear();
            }
        }
        self.seen.insert(
            identity,
            Seen {
                path,
                count,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::util::clock::FakeClock;

    fn web_pod() -> Involved<'static> {
        Involved {
            api_version: "v1",
            kind: "Pod",
            namespace: "default",
            name: "web",
            uid: "u1",
            field_path: None,
        }
    }

    #[tokio::test]
    async fn a_repeated_event_raises_the_count_of_the_first() {
        let clock = Arc::new(FakeClock::new("2026-11-23T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock.clone()).await;
        let recorder = Recorder::new(client.clone(), "test-controller");
        let about = web_pod();
        recorder.warning(clock.as_ref(), &about, "FailedScheduling", "0/1 nodes");
        clock.advance(jiff::SignedDuration::from_secs(30));
        recorder.warning(clock.as_ref(), &about, "FailedScheduling", "0/1 nodes");
        recorder.normal(clock.as_ref(), &about, "Scheduled", "assigned");
        recorder.flush().await;
        let events = client
            .get("/api/v1/namespaces/default/events")
            .await
            .unwrap();
        let items = events["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{items:?}");
        let failed = items
            .iter()
            .find(|e| e["reason"] == "FailedScheduling")
            .unwrap();
        assert_eq!(failed["count"], 2);
        assert_eq!(failed["firstTimestamp"], "2026-11-23T10:00:00Z");
        assert_eq!(failed["lastTimestamp"], "2026-11-23T10:00:30Z");
        assert_eq!(failed["source"]["component"], "test-controller");
    }

    /// Nothing is written while the test holds the (single-threaded) runtime, as when the API server is
    /// unreachable: the queue fills up, and what comes past it is dropped instead of held.
    #[tokio::test]
    async fn events_past_a_full_queue_are_dropped() {
        let clock = Arc::new(FakeClock::new("2026-11-23T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock.clone()).await;
        let recorder = Recorder::new(client.clone(), "test-controller");
        for n in 0..QUEUED + 5 {
            recorder.normal(clock.as_ref(), &web_pod(), "Tick", &format!("tick {n}"));
            clock.advance(jiff::SignedDuration::from_nanos(1));
        }
        recorder.flush().await;
        let events = client
            .get("/api/v1/namespaces/default/events")
            .await
            .unwrap();
        let mut written: Vec<usize> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap()[5..].parse().unwrap())
            .collect();
        written.sort_unstable();
        assert_eq!(written, (0..QUEUED).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_nodes_events_name_the_node_and_the_container_they_are_about() {
        let clock = Arc::new(FakeClock::new("2026-11-23T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock.clone()).await;
        let recorder = Recorder::on_node(client.clone(), "kubelet", "edge-1");
        let about = |path: &str| web_pod().at(path.to_string());
        for path in ["spec.containers{app}", "spec.initContainers{setup}"] {
            recorder.normal(clock.as_ref(), &about(path), "Pulled", "present");
            // Event names are the object's and the time's.
            clock.advance(jiff::SignedDuration::from_secs(1));
        }
        recorder.flush().await;
        let events = client
            .get("/api/v1/namespaces/default/events")
            .await
            .unwrap();
        let mut paths: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(
                    e["source"],
                    json!({"component": "kubelet", "host": "edge-1"})
                );
                assert_eq!(e["reportingInstance"], "edge-1");
                assert_eq!(e["count"], 1, "{e}");
                e["involvedObject"]["fieldPath"].as_str().unwrap()
            })
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            ["spec.containers{app}", "spec.initContainers{setup}"]
        );
    }
}
