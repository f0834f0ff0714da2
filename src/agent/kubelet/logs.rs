//! The node's side of `kubectl logs`: reads a container run's CRI log file (the rotated part first),
//! turns its records back into the container's output byte for byte — with timestamps if asked, from
//! `sinceSeconds` or `sinceTime`, the last `tailLines`, at most `limitBytes` — and with `follow` keeps
//! reading, through the file's rotations, until that run has exited.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use super::sandbox;
use crate::agent::runtime::{ContainerState, Runtime};
use crate::api::logs::{LogOptions, LogStream, PodLogs};
use crate::shim::{self, rotated_path};

const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub struct NodeLogs {
    pub node_name: String,
    /// The node's log root (see `sandbox.rs`).
    pub log_root: PathBuf,
    pub runtime: Runtime,
}

/// Turns CRI records into the container's output, line by line, byte for byte (a program may print
/// anything); `since` drops records before it.
pub(super) fn render(
    records: &[u8],
    options: &LogOptions,
    since: Option<jiff::Timestamp>,
) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut partial = Vec::new();
    for record in records.split(|b| *b == b'\n').filter(|r| !r.is_empty()) {
        let mut parts = record.splitn(4, |b| *b == b' ');
        let (Some(ts), Some(_stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let message = parts.next().unwrap_or_default();
        let ts = std::str::from_utf8(ts).unwrap_or_default();
        if let Some(since) = since {
            if ts.parse::<jiff::Timestamp>().is_ok_and(|t| t < since) {
                continue;
            }
        }
        if partial.is_empty() && options.timestamps {
            partial.extend_from_slice(ts.as_bytes());
            partial.push(b' ');
        }
        partial.extend_from_slice(message);
        if tag == b"F" {
            partial.push(b'\n');
            lines.push(std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        lines.push(partial);
    }
    lines
}

/// The first answer: what the files hold now, cut to tailLines and limitBytes.
fn initial(records: &[u8], options: &LogOptions) -> Vec<u8> {
    let mut lines = render(records, options, options.since);
    if let Some(tail) = options.tail_lines {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    let mut out = lines.concat();
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit);
    }
    out
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

/// The file of a log a follower reads, moving through the log's rotations.
struct FollowedLog {
    path: PathBuf,
    file: std::fs::File,
    offset: u64,
}

/// A file as the kernel knows it, whatever its name.
type FileId = (u64, u64);

fn file_id(metadata: std::io::Result<std::fs::Metadata>) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    metadata.ok().map(|m| (m.dev(), m.ino()))
}

impl FollowedLog {
    /// Adds what the file got since the last read to `into`.
    fn read_more(&mut self, into: &mut Vec<u8>) {
        let start = into.len();
        let _ = self.file.seek(SeekFrom::Start(self.offset));
        let _ = self.file.read_to_end(into);
        self.offset += (into.len() - start) as u64;
    }

    /// Moves on to the next newer file when the log was rotated since the followed file was opened
    /// (the shim renamed it to a part and writes a new file at the path), as kubelet follows
    /// rotations; whether it moved. What the followed file got after the last read goes to `into`
    /// first. A burst may rotate several times between two reads, so the next file is the part just
    /// newer than the followed one, or the oldest part kept when the followed one is gone already.
    fn follow_rotation(&mut self, into: &mut Vec<u8>) -> bool {
        let followed = file_id(self.file.metadata());
        // What every poll of a quiet log finds: one look at the path, not at the whole directory.
        if file_id(std::fs::metadata(&self.path)) == followed {
            return false;
        }
        // A rotation while the files are looked at can put another file at the chosen name: the file
        // opened must be the one chosen, or the files are looked at again.
        for _ in 0..3 {
            let files: Vec<PathBuf> = std::iter::once(self.path.clone())
                .chain(shim::rotated_parts(&self.path))
                .collect();
            let ids: Vec<Option<FileId>> = files
                .iter()
                .map(|file| file_id(std::fs::metadata(file)))
                .collect();
            let next = match ids.iter().position(|id| *id == followed) {
                Some(0) => return false,
                Some(newer) => newer - 1,
                None => match ids.iter().rposition(Option::is_some) {
                    Some(oldest) => oldest,
                    None => return false,
                },
            };
            let Ok(file) = std::fs::File::open(&files[next]) else {
                continue;
            };
            if file_id(file.metadata()) != ids[next] {
                continue;
            }
            self.read_more(into);
            self.file = file;
            self.offset = 0;
            return true;
        }
        false
    }
}

struct Follow {
    log: FollowedLog,
    /// Records read but not finished yet.
    pending: Vec<u8>,
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
        let mut records = std::fs::read(rotated_path(&path)).unwrap_or_default();
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
        file.read_to_end(&mut records)
            .map_err(|e| format!("reading the log of {}: {e}", options.container))?;
        let offset = file.stream_position().unwrap_or(0);
        let first = initial(&records, &options);
        if !options.follow {
            return Ok(Box::pin(futures_util::stream::iter([Bytes::from(first)])));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let state = Follow {
            log: FollowedLog { path, file, offset },
            pending: Vec::new(),
            sent: first.len(),
            options,
            uid,
            runtime: self.runtime.clone(),
        };
        let head = futures_util::stream::iter([Bytes::from(first)]);
        let tail = futures_util::stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            loop {
                state.log.read_more(&mut state.pending);
                let complete = state
                    .pending
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                if complete > 0 {
                    let records: Vec<u8> = state.pending.drain(..complete).collect();
                    let mut out = render(&records, &state.options, None).concat();
                    if let Some(limit) = state.options.limit_bytes {
                        out.truncate(limit.saturating_sub(state.sent));
                    }
                    state.sent += out.len();
                    let finished = state.options.limit_bytes.is_some_and(|l| state.sent >= l);
                    if !out.is_empty() {
                        return Some((Bytes::from(out), (!finished).then_some(state)));
                    }
                }
                if state.log.follow_rotation(&mut state.pending) {
                    continue;
                }
                if exited(
                    &state.runtime,
                    &state.uid,
                    &state.options.container,
                    state.options.attempt,
                ) {
                    // One more read: the shim drains the last output, in whichever files it
                    // rotated to, before it records the exit.
                    while state.log.follow_rotation(&mut state.pending) {}
                    state.log.read_more(&mut state.pending);
                    let mut out = render(&state.pending, &state.options, None).concat();
                    if let Some(limit) = state.options.limit_bytes {
                        out.truncate(limit.saturating_sub(state.sent));
                    }
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

    const RECORDS: &[u8] = b"2026-01-01T00:00:01.000000000Z stdout F one\n\
2026-01-01T00:00:02.000000000Z stderr F two\n\
2026-01-01T00:00:03.000000000Z stdout P thr\n\
2026-01-01T00:00:03.000000001Z stdout F ee\n";

    #[test]
    fn records_become_output_with_tail_timestamps_and_limits() {
        let plain = LogOptions::default();
        assert_eq!(initial(RECORDS, &plain), b"one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(initial(RECORDS, &tail), b"two\nthree\n");
        let stamped = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(
            initial(RECORDS, &stamped),
            b"2026-01-01T00:00:03.000000000Z three\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(initial(RECORDS, &limited), b"one\ntw");
        let since = render(
            RECORDS,
            &plain,
            Some("2026-01-01T00:00:02Z".parse().unwrap()),
        );
        assert_eq!(since.concat(), b"two\nthree\n");
    }

    #[test]
    fn output_that_is_not_utf8_comes_back_byte_for_byte() {
        let records = b"2026-01-01T00:00:01.000000000Z stdout F caf\xe9\n\
2026-01-01T00:00:02.000000000Z stdout P \xff\xfe\n\
2026-01-01T00:00:02.000000001Z stdout F \x00end\n";
        assert_eq!(
            initial(records, &LogOptions::default()),
            b"caf\xe9\n\xff\xfe\x00end\n"
        );
        // A limit may cut inside what would be a character: kubelet counts bytes.
        let limited = LogOptions {
            limit_bytes: Some(4),
            ..Default::default()
        };
        assert_eq!(
            initial(
                "2026-01-01T00:00:01Z stdout F \u{e9}t\u{e9}\n".as_bytes(),
                &limited
            ),
            b"\xc3\xa9t\xc3"
        );
    }

    #[test]
    fn a_follower_reads_through_rotations_in_order() {
        use crate::shim::{CriLogWriter, Stream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        // About four records a file, five files kept.
        let mut writer = CriLogWriter::open(&path, 200, 5).unwrap();
        let mut write = |lines: std::ops::Range<u32>| {
            for i in lines {
                writer
                    .write(Stream::Stdout, format!("line {i}\n").as_bytes())
                    .unwrap();
            }
        };
        let mut log = FollowedLog {
            path: path.clone(),
            file: std::fs::File::open(&path).unwrap(),
            offset: 0,
        };
        let mut records = Vec::new();
        let mut follow = |log: &mut FollowedLog| {
            log.read_more(&mut records);
            while log.follow_rotation(&mut records) {
                log.read_more(&mut records);
            }
            let lines = render(&records, &LogOptions::default(), None).concat();
            String::from_utf8(lines)
                .unwrap()
                .lines()
                .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
                .collect::<Vec<u32>>()
        };

        write(0..1);
        assert_eq!(follow(&mut log), [0]);
        // Rotated twice between two reads: every line, once, in order.
        write(1..12);
        assert_eq!(follow(&mut log), (0..12).collect::<Vec<_>>());
        // Rotated past what is kept: what was read, then the oldest part kept onwards.
        write(12..60);
        let lines = follow(&mut log);
        let gaps = lines.windows(2).filter(|w| w[1] != w[0] + 1).count();
        assert!(
            lines.windows(2).all(|w| w[1] > w[0]) && gaps == 1 && lines.last() == Some(&59),
            "{lines:?}"
        );
        assert!(lines.len() >= 12 + 16, "{lines:?}");
        // Nothing new: the follower stays on the file written now.
        assert!(!log.follow_rotation(&mut Vec::new()));
    }
}
