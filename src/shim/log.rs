//! The container log in the CRI format kubelet and `kubectl logs` expect: one record per line,
//! `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <text>`, where `P` marks a chunk of a line longer than
//! the buffer and `F` the line's end. The file is rotated to `<file>.1` when it passes its size limit.

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
    /// Bytes of an unfinished line per stream.
    pending: [Vec<u8>; 2],
}

impl CriLogWriter {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, ShimError> {
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
        let rotated = rotated_path(&self.path);
        fs::rename(&self.path, &rotated)
            .map_err(io_err(format!("rotating {}", self.path.display())))?;
        *self = CriLogWriter {
            pending: std::mem::take(&mut self.pending),
            ..CriLogWriter::open(&self.path, self.max_bytes)?
        };
        Ok(())
    }
}

/// Where the previous part of a rotated log lives.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
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
        let mut log = CriLogWriter::open(&path, u64::MAX).unwrap();
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
        let mut log = CriLogWriter::open(&path, u64::MAX).unwrap();
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
        let mut log = CriLogWriter::open(&path, 200).unwrap();
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
}
