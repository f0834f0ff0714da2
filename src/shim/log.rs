//! The container log in the CRI format kubelet and `kubectl logs` expect: one record per line,
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <text>`, where `P` marks a chunk of a line longer than
//! the buffer and `F` the line's end. The file is rotated when it passes its size limit: to `<file>.1`,
//! older parts moving to `.2`, `.3`… up to the number of files kept (kubelet's containerLogMaxFiles,
//! the file being written included).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{io_err, ShimError};

/// Longer lines are split into `P` records of this size, as containerd does.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

pub struct CriLogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    /// Files kept, the current one included: at least 2.
    max_files: u32,
    /// Bytes of an unfinished line per stream.
    pending: [Vec<u8>; 2],
}

impl CriLogWriter {
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> Result<Self, ShimError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(CriLogWriter {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            max_files: max_files.max(2),
            pending: [Vec::new(), Vec::new()],
        })
    }

    pub fn write(&mut self, stream: Stream, mut bytes: &[u8]) -> Result<(), ShimError> {
        while let Some(newline) = bytes.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[stream.index()]);
            line.extend_from_slice(&bytes[..newline]);
            self.emit_line(stream, &line)?;
            bytes = &bytes[newline + 1..];
        }
        let pending = &mut self.pending[stream.index()];
        pending.extend_from_slice(bytes);
        while self.pending[stream.index()].len() >= MAX_LINE {
            let rest = self.pending[stream.index()].split_off(MAX_LINE);
            let chunk = std::mem::replace(&mut self.pending[stream.index()], rest);
            self.emit(stream, 'P', &chunk)?;
        }
        Ok(())
    }

    /// The stream closed: an unfinished last line is still a whole record.
    pub fn finish(&mut self, stream: Stream) -> Result<(), ShimError> {
        let rest = std::mem::take(&mut self.pending[stream.index()]);
        if !rest.is_empty() {
            self.emit_line(stream, &rest)?;
        }
        Ok(())
    }

    fn emit_line(&mut self, stream: Stream, line: &[u8]) -> Result<(), ShimError> {
        let mut line = line;
        while line.len() > MAX_LINE {
            self.emit(stream, 'P', &line[..MAX_LINE])?;
            line = &line[MAX_LINE..];
        }
        self.emit(stream, 'F', line)
    }

    fn emit(&mut self, stream: Stream, tag: char, text: &[u8]) -> Result<(), ShimError> {
        if self.written >= self.max_bytes {
            self.rotate()?;
        }
        let mut record = Vec::with_capacity(text.len() + 48);
        let _ = write!(
            record,
            "{} {} {tag} ",
            jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ"),
            stream.name()
        );
        record.extend_from_slice(text);
        record.push(b'\n');
        self.file
            .write_all(&record)
            .map_err(io_err(format!("writing {}", self.path.display())))?;
        self.written += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), ShimError> {
        // The oldest kept part is replaced by the one before it.
        for part in (1..self.max_files - 1).rev() {
            match fs::rename(part_path(&self.path, part), part_path(&self.path, part + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err(format!("rotating {}", self.path.display()))(e))
                }
                _ => {}
            }
        }
        fs::rename(&self.path, rotated_path(&self.path))
            .map_err(io_err(format!("rotating {}", self.path.display())))?;
        *self = CriLogWriter {
            pending: std::mem::take(&mut self.pending),
            ..CriLogWriter::open(&self.path, self.max_bytes, self.max_files)?
        };
        Ok(())
    }
}

fn part_path(path: &Path, part: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{part}"));
    PathBuf::from(name)
}

/// Where the previous part of a rotated log lives.
pub fn rotated_path(path: &Path) -> PathBuf {
    part_path(path, 1)
}

/// Every rotated part of the log at `path` that exists, newest (`.1`) first; a rotation in progress
/// may leave a number out.
pub fn rotated_parts(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    let mut parts: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let part = file_name.to_str()?.strip_prefix(name)?.strip_prefix('.')?;
            let all_digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
            Some((part.parse().ok().filter(|_| all_digits)?, entry.path()))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, path)| path).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path) -> Vec<(String, String, String)> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let ts = parts.next().unwrap();
                assert!(
                    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.fZ", ts).is_ok()
                        || ts.parse::<jiff::Timestamp>().is_ok(),
                    "timestamp {ts}"
                );
                (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_become_full_records_per_stream_and_split_writes_join() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, u64::MAX, 2).unwrap();
        log.write(Stream::Stdout, b"hello\nwor").unwrap();
        log.write(Stream::Stderr, b"oops\n").unwrap();
        log.write(Stream::Stdout, b"ld\n\nlast").unwrap();
        log.finish(Stream::Stdout).unwrap();
        let got = records(&path);
        let want = [
            ("stdout", "F", "hello"),
            ("stderr", "F", "oops"),
            ("stdout", "F", "world"),
            ("stdout", "F", ""),
            ("stdout", "F", "last"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str()), w);
        }
    }

    #[test]
    fn long_lines_are_split_into_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, u64::MAX, 2).unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        log.write(Stream::Stdout, &long).unwrap();
        log.write(Stream::Stdout, b"\n").unwrap();
        let got = records(&path);
        let tags: Vec<&str> = got.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        let joined: String = got.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(joined.len(), long.len());
    }

    #[test]
    fn the_file_rotates_past_its_limit_keeping_the_previous_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, 200, 2).unwrap();
        for i in 0..20 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let current = records(&path);
        let previous = records(&rotated_path(&path));
        assert!(fs::metadata(&path).unwrap().len() <= 200 + 64);
        assert_eq!(current.last().unwrap().2, "line 19");
        assert!(!previous.is_empty());
        let first_current: usize = current[0].2["line ".len()..].parse().unwrap();
        let last_previous: usize = previous.last().unwrap().2["line ".len()..].parse().unwrap();
        assert_eq!(last_previous + 1, first_current);
    }

    #[test]
    fn rotation_keeps_as_many_files_as_asked_oldest_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLogWriter::open(&path, 100, 3).unwrap();
        for i in 0..40 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let first = |p: &Path| -> usize { records(p)[0].2["line ".len()..].parse().unwrap() };
        let parts = [path.clone(), part_path(&path, 1), part_path(&path, 2)];
        assert!(first(&parts[2]) < first(&parts[1]) && first(&parts[1]) < first(&parts[0]));
        assert!(!part_path(&path, 3).exists());
        // Another log's parts, and other files, are not this log's.
        fs::write(dir.path().join("1.log.1"), "").unwrap();
        fs::write(dir.path().join("0.log.old"), "").unwrap();
        let mut found = rotated_parts(&path);
        found.sort();
        assert_eq!(found, parts[1..]);
    }
}
