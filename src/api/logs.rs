//! The contract between the API server's `pods/log` and a node's container logs: which run of which
//! container, and how much of it, and the trait a node agent implements to stream it. No I/O: the API
//! server (for its own node) and a joined agent's kubelet endpoint (for the rest) both settle the options
//! from the pod and the query with [`LogOptions::resolve`], and the agent reads its files.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use k8s_openapi::api::core::v1::Pod;

pub type LogStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// What `kubectl logs` asks for, once the container and its run are settled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub container: String,
    /// Which run: the container's restart count for the current one, one less for `previous`.
    pub attempt: u32,
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    /// Where the output starts: `sinceSeconds` ago, or at `sinceTime`.
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<usize>,
}

impl LogOptions {
    /// The options for `pod` from a `pods/log` (or kubelet `containerLogs`) query, with kubelet's errors
    /// for a missing or unknown container and a `previous` run that does not exist. `container` is the
    /// one the path names, if any; otherwise the query's, then the default-container annotation, then the
    /// pod's only container.
    pub fn resolve<'q>(
        pod: &Pod,
        container: Option<&str>,
        query: impl Fn(&str) -> Option<&'q str>,
    ) -> Result<LogOptions, String> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let requested = container.or_else(|| query("container"));
        let container = crate::api::kubelet::resolve_container(pod, requested)?;
        let status = pod.status.clone().unwrap_or_default();
        let restarts = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|s| s.name == container)
            .map_or(0, |s| s.restart_count.max(0) as u32);
        let attempt = if query("previous") == Some("true") {
            restarts.checked_sub(1).ok_or_else(|| {
                format!("previous terminated container \"{container}\" in pod \"{name}\" not found")
            })?
        } else {
            restarts
        };
        fn number<'q, T: std::str::FromStr>(
            query: &impl Fn(&str) -> Option<&'q str>,
            key: &str,
        ) -> Result<Option<T>, String> {
            query(key)
                .map(|v| v.parse().map_err(|_| format!("invalid {key} {v:?}")))
                .transpose()
        }
        let since = match (number::<i64>(&query, "sinceSeconds")?, query("sinceTime")) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into())
            }
            (Some(seconds), None) => {
                Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds))
            }
            (None, Some(time)) => Some(
                time.parse::<jiff::Timestamp>()
                    .map_err(|_| format!("invalid sinceTime {time:?}"))?,
            ),
            (None, None) => None,
        };
        Ok(LogOptions {
            container,
            attempt,
            follow: query("follow") == Some("true"),
            timestamps: query("timestamps") == Some("true"),
            tail_lines: number(&query, "tailLines")?,
            since,
            limit_bytes: number(&query, "limitBytes")?,
        })
    }
}

/// The container logs of one node.
pub trait PodLogs: Send + Sync {
    fn node_name(&self) -> &str;
    fn stream(&self, pod: &Pod, options: LogOptions) -> Result<LogStream, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: serde_json::Value, restarts: i32) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [{"name": "app"}, {"name": "side"}],
            },
            "status": {"containerStatuses": [{
                "name": "app", "restartCount": restarts, "ready": true, "image": "", "imageID": "",
            }]},
        }))
        .unwrap()
    }

    fn query<'q>(pairs: &'q [(&'q str, &'q str)]) -> impl Fn(&str) -> Option<&'q str> {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    #[test]
    fn the_container_comes_from_the_path_the_query_or_the_default_annotation() {
        let plain = pod(serde_json::json!({}), 0);
        assert_eq!(
            LogOptions::resolve(&plain, None, query(&[])).unwrap_err(),
            "a container name must be specified for pod p, choose one of: [app side]"
        );
        let chosen = LogOptions::resolve(&plain, None, query(&[("container", "init")])).unwrap();
        assert_eq!(chosen.container, "init");
        let by_path = LogOptions::resolve(&plain, Some("side"), query(&[("container", "app")]));
        assert_eq!(by_path.unwrap().container, "side");
        let annotated = pod(
            serde_json::json!({"kubectl.kubernetes.io/default-container": "side"}),
            0,
        );
        assert_eq!(
            LogOptions::resolve(&annotated, None, query(&[]))
                .unwrap()
                .container,
            "side"
        );
        assert_eq!(
            LogOptions::resolve(&plain, Some("db"), query(&[])).unwrap_err(),
            "container db is not valid for pod p"
        );
    }

    #[test]
    fn previous_is_the_run_before_the_current_one() {
        let restarted = pod(serde_json::json!({}), 2);
        let current = LogOptions::resolve(&restarted, Some("app"), query(&[])).unwrap();
        assert_eq!(current.attempt, 2);
        let previous =
            LogOptions::resolve(&restarted, Some("app"), query(&[("previous", "true")])).unwrap();
        assert_eq!(previous.attempt, 1);
        let fresh = pod(serde_json::json!({}), 0);
        assert_eq!(
            LogOptions::resolve(&fresh, Some("app"), query(&[("previous", "true")])).unwrap_err(),
            "previous terminated container \"app\" in pod \"p\" not found"
        );
    }

    #[test]
    fn numbers_are_checked() {
        let p = pod(serde_json::json!({}), 0);
        let options = LogOptions::resolve(
            &p,
            Some("app"),
            query(&[
                ("tailLines", "5"),
                ("follow", "true"),
                ("limitBytes", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (options.tail_lines, options.follow, options.limit_bytes),
            (Some(5), true, Some(100))
        );
        assert_eq!(
            LogOptions::resolve(&p, Some("app"), query(&[("sinceSeconds", "soon")])).unwrap_err(),
            "invalid sinceSeconds \"soon\""
        );
        let since = |pairs| LogOptions::resolve(&p, Some("app"), query(pairs)).map(|o| o.since);
        assert_eq!(
            since(&[("sinceTime", "2026-11-24T10:00:00Z")]),
            Ok(Some("2026-11-24T10:00:00Z".parse().unwrap()))
        );
        let ago = since(&[("sinceSeconds", "60")]).unwrap().unwrap();
        assert!((jiff::Timestamp::now() - ago).get_seconds() >= 60);
        assert_eq!(
            since(&[
                ("sinceSeconds", "60"),
                ("sinceTime", "2026-11-24T10:00:00Z")
            ]),
            Err("at most one of sinceTime or sinceSeconds may be specified".into())
        );
        assert!(since(&[("sinceTime", "yesterday")]).is_err());
    }
}
