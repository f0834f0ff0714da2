//! The node's side of `kubectl logs`: reads a container run's CRI log file (the rotated part first),
//! turns its records back into the container's output — with timestamps if asked, from `sinceSeconds` or
//! `sinceTime`, the last `tailLines`, at most `limitBytes` — and with `follow` keeps reading until that
//! run has exited.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use super::sandbox;
use crate::agent::runtime::{ContainerState, Runtime};
use crate::api::logs::{LogOptions, LogStream, PodLogs};
use crate::shim::rotated_path;

const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct NodeLogs {
    pub node_name: String,
    /// The node's log root (see `sandbox.rs`).
    pub log_root: PathBuf,
    pub runtime: Runtime,
}

/// Turns CRI records into output text; `since` drops records before it.
fn render(records: &str, options: &LogOptions, since: Option<jiff::Timestamp>) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for record in records.lines() {
        let mut parts = record.splitn(4, ' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let message = parts.next().unwrap_or("");
        if let Some(since) = since {
            if ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                continue;
            }
        }
        if partial.is_empty() && options.timestamps {
            partial.push_str(ts);
            partial.push(' ');
        }
        partial.push_str(message);
        if tag == "F" {
            partial.push('\n');
            lines.push(std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        lines.push(partial);
    }
    lines
}

/// The first answer: what the files hold now, cut to tailLines and limitBytes.
fn initial(text: &str, options: &LogOptions) -> String {
    let mut lines = render(text, options, options.since);
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = lines.concat();
    if let Some(limit) = options.limit_bytes {
        out.truncate(floor_char_boundary(&out, limit));
    }
    out
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Whether the run `attempt` of the container has exited (or is gone).
fn exited(runtime: &Runtime, uid: &str, container: &str, attempt: u32) -> bool {
    {
        let run = runtime
            .list_pod(uid)
            .into_iter()
            .find(|m| m.container == container && m.attempt == attempt);
        match run {
            Some(meta) => matches!(
                runtime.state(&meta.id),
                Ok(ContainerState::Exited(_)) | Err(_)
            ),
            None => true,
        }
    }
}

struct Follow {
    file: std::fs::File,
    offset: u64,
    pending: String,
    options: LogOptions,
    sent: usize,
    uid: String,
    runtime: Runtime,
}

impl PodLogs for NodeLogs {
    fn node_name(&self) -> &str {
        &self.node_name
    }

    fn stream(&self, pod: &Pod, options: LogOptions) -> Result<LogStream, String> {
        // The run's own record of its log: a container made before the log root moved writes where
        // it was told then.
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let path = self
            .runtime
            .list_pod(uid)
            .into_iter()
            .find(|m| m.container == options.container && m.attempt == options.attempt)
            .map(|m| m.log_path)
            .unwrap_or_else(|| {
                sandbox::log_path(&self.log_root, pod, &options.container, options.attempt)
            });
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let mut text = std::fs::read_to_string(rotated_path(&path)).unwrap_or_default();
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(_) if !options.follow => {
                return Err(format!(
                    "container \"{}\" in pod \"{name}\" is waiting to start: no log yet",
                    options.container
                ))
            }
            Err(e) => return Err(format!("opening the log of {}: {e}", options.container)),
        };
        file.read_to_string(&mut text)
            .map_err(|e| format!("reading the log of {}: {e}", options.container))?;
        let offset = file.stream_position().unwrap_or(0);
        let first = initial(&text, &options);
        if !options.follow {
            return Ok(Box::pin(futures_util::stream::iter([Bytes::from(first)])));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let state = Follow {
            file,
            offset,
            pending: String::new(),
            sent: first.len(),
            options,
            uid,
            runtime: self.runtime.clone(),
        };
        let head = futures_util::stream::iter([Bytes::from(first)]);
        let tail = futures_util::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            loop {
                let mut chunk = String::new();
                let _ = state.file.seek(SeekFrom::Start(state.offset));
                let _ = state.file.read_to_string(&mut chunk);
                state.offset += chunk.len() as u64;
                state.pending.push_str(&chunk);
                let complete = state.pending.rfind('\n').map(|i| i + 1).unwrap_or(0);
                if complete > 0 {
                    let records: String = state.pending.drain(..complete).collect();
                    let mut out = render(&records, &state.options, None).concat();
                    if let Some(limit) = state.options.limit_bytes {
                        let room = limit.saturating_sub(state.sent);
                        out.truncate(floor_char_boundary(&out, room));
                    }
                    state.sent += out.len();
                    let finished = state.options.limit_bytes.is_some_and(|l| state.sent >= l);
                    if !out.is_empty() {
                        return Some((Bytes::from(out), (!finished).then_some(state)));
                    }
                }
                if exited(
                    &state.runtime,
                    &state.uid,
                    &state.options.container,
                    state.options.attempt,
                ) {
                    // One more read: the shim drains the last output before it records the exit.
                    let mut rest = String::new();
                    let _ = state.file.seek(SeekFrom::Start(state.offset));
                    let _ = state.file.read_to_string(&mut rest);
                    state.pending.push_str(&rest);
                    let out = render(&state.pending, &state.options, None).concat();
                    return (!out.is_empty()).then(|| (Bytes::from(out), None));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        });
        Ok(Box::pin(head.chain(tail)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDS: &str = "2026-01-01T00:00:01.000000000Z stdout F one\n\
2026-01-01T00:00:02.000000000Z stderr F two\n\
2026-01-01T00:00:03.000000000Z stdout P thr\n\
2026-01-01T00:00:03.000000001Z stdout F ee\n";

    #[test]
    fn records_become_output_with_tail_timestamps_and_limits() {
        let plain = LogOptions::default();
        assert_eq!(initial(RECORDS, &plain), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(initial(RECORDS, &tail), "two\nthree\n");
        let stamped = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(
            initial(RECORDS, &stamped),
            "2026-01-01T00:00:03.000000000Z three\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(initial(RECORDS, &limited), "one\ntw");
        let since = render(
            RECORDS,
            &plain,
            Some("2026-01-01T00:00:02Z".parse().unwrap()),
        );
        assert_eq!(since.concat(), "two\nthree\n");
    }
}
