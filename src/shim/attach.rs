//! `kubectl attach` on the shim's side: a Unix socket next to the container's state on which attach
//! sessions (the kubelet's) connect. Each gets the container's output as it is read, and may write to the
//! container's stdin (a pipe, or the terminal) and resize the terminal. Messages both ways are one byte of
//! kind, a big-endian u32 length and the payload. The shim never waits for a session: one that cannot take
//! output at once is disconnected, and stdin is written only as fast as the container reads it.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;

use super::{io_err, ShimError, Stream};

/// Session → shim: bytes for the container's stdin.
pub const STDIN: u8 = 0;
/// Shim → session: the container's output.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Session → shim: the terminal's new size, width then height as big-endian u16.
pub const RESIZE: u8 = 4;
/// Session → shim: the session's stdin ended (closes the container's stdin when it is `stdinOnce`).
pub const CLOSE: u8 = 255;
const HEADER: usize = 5;
/// Output a session may have queued in its socket before it counts as stuck.
const SEND_BUFFER: usize = 1 << 20;
/// The largest message a session may send.
const MAX_MESSAGE: usize = 1 << 20;

/// One message: kind, length, payload.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER + payload.len());
    message.push(kind);
    message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// The first whole message at the front of `buf`, taken out of it.
pub fn decode(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < HEADER + len {
        return None;
    }
    let kind = buf[0];
    let payload = buf[HEADER..HEADER + len].to_vec();
    buf.drain(..HEADER + len);
    Some((kind, payload))
}

/// Where the container's stdin goes.
pub struct Stdin {
    pub fd: OwnedFd,
    /// Closed after the first session that wrote to it ends (`stdinOnce`).
    pub once: bool,
}

struct Session {
    stream: UnixStream,
    received: Vec<u8>,
}

pub struct Hub {
    path: PathBuf,
    listener: UnixListener,
    sessions: Vec<Session>,
    stdin: Option<Stdin>,
    /// Stdin bytes the container has not read yet; sessions are not read meanwhile.
    pending: Vec<u8>,
    close_stdin_when_flushed: bool,
    /// The terminal's master end, for resizes.
    terminal: Option<OwnedFd>,
    /// What [`Hub::poll_fds`] returned last, to match the poll results to.
    polled: Vec<Polled>,
}

#[derive(Clone, Copy)]
enum Polled {
    Listener,
    Session(usize),
    Stdin,
}

impl Hub {
    pub fn listen(
        path: &Path,
        stdin: Option<Stdin>,
        terminal: Option<OwnedFd>,
    ) -> Result<Hub, ShimError> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).map_err(io_err(format!("listening on {}", path.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("a non-blocking attach socket"))?;
        if let Some(stdin) = &stdin {
            nix::fcntl::fcntl(
                stdin.fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .map_err(super::sys_err("a non-blocking stdin"))?;
        }
        Ok(Hub {
            path: path.to_path_buf(),
            listener,
            sessions: Vec::new(),
            stdin,
            pending: Vec::new(),
            close_stdin_when_flushed: false,
            terminal,
            polled: Vec::new(),
        })
    }

    /// The descriptors to poll and for what, in an order [`Hub::ready`] expects back.
    pub fn poll_fds(&mut self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        self.polled.clear();
        let mut fds = vec![(self.listener.as_fd(), PollFlags::POLLIN)];
        self.polled.push(Polled::Listener);
        if self.pending.is_empty() {
            for (i, session) in self.sessions.iter().enumerate() {
                fds.push((session.stream.as_fd(), PollFlags::POLLIN));
                self.polled.push(Polled::Session(i));
            }
        } else if let Some(stdin) = &self.stdin {
            fds.push((stdin.fd.as_fd(), PollFlags::POLLOUT));
            self.polled.push(Polled::Stdin);
        }
        fds
    }

    /// Acts on what poll reported for the descriptors of the last [`Hub::poll_fds`].
    pub fn ready(&mut self, revents: &[PollFlags]) {
        let polled = std::mem::take(&mut self.polled);
        let mut gone = Vec::new();
        for (what, events) in polled.iter().zip(revents) {
            if events.is_empty() {
                continue;
            }
            match *what {
                Polled::Listener => self.accept(),
                Polled::Session(i) => {
                    if !self.receive(i) {
                        gone.push(i);
                    }
                }
                Polled::Stdin => self.flush_stdin(),
            }
        }
        for i in gone.into_iter().rev() {
            self.sessions.swap_remove(i);
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = nix::sys::socket::setsockopt(
                &stream,
                nix::sys::socket::sockopt::SndBuf,
                &SEND_BUFFER,
            );
            self.sessions.push(Session {
                stream,
                received: Vec::new(),
            });
        }
    }

    /// Reads what session `i` sent; false once it is gone.
    fn receive(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 32 * 1024];
        let session = &mut self.sessions[i];
        match session.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => session.received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return true
            }
            Err(_) => return false,
        }
        if session.received.len() >= HEADER {
            let len = u32::from_be_bytes(session.received[1..HEADER].try_into().expect("4 bytes"));
            if len as usize > MAX_MESSAGE {
                return false;
            }
        }
        while let Some((kind, payload)) = decode(&mut self.sessions[i].received) {
            match kind {
                STDIN if self.stdin.is_some() && !self.close_stdin_when_flushed => {
                    self.pending.extend_from_slice(&payload)
                }
                RESIZE if payload.len() == 4 => {
                    let width = u16::from_be_bytes([payload[0], payload[1]]);
                    let height = u16::from_be_bytes([payload[2], payload[3]]);
                    if let Some(terminal) = &self.terminal {
                        resize(terminal, width, height);
                    }
                }
                CLOSE if self.stdin.as_ref().is_some_and(|s| s.once) => {
                    self.close_stdin_when_flushed = true
                }
                _ => {}
            }
        }
        self.flush_stdin();
        true
    }

    /// Writes what the container will take of the pending stdin now.
    fn flush_stdin(&mut self) {
        let Some(stdin) = &self.stdin else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(stdin.fd.as_fd(), &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                // Nobody reads the container's stdin any more: what was sent is lost, as it would be.
                Err(_) => {
                    self.pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.close_stdin_when_flushed {
            self.stdin = None;
        }
    }

    /// Sends the container's output to every session; one that cannot take it now is dropped.
    pub fn broadcast(&mut self, stream: Stream, data: &[u8]) {
        if self.sessions.is_empty() {
            return;
        }
        let kind = match stream {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
        };
        let message = encode(kind, data);
        self.sessions
            .retain_mut(|s| matches!(s.stream.write(&message), Ok(n) if n == message.len()));
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets the size of the terminal whose master end is `master`.
pub fn resize(master: &OwnedFd, width: u16, height: u16) {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_kind_length_payload() {
        let mut buf = encode(STDIN, b"hello");
        buf.extend(encode(CLOSE, b""));
        buf.extend(&encode(RESIZE, &[0, 80, 0, 24])[..3]);
        assert_eq!(decode(&mut buf), Some((STDIN, b"hello".to_vec())));
        assert_eq!(decode(&mut buf), Some((CLOSE, vec![])));
        assert_eq!(decode(&mut buf), None, "a partial message waits");
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn sessions_get_output_and_feed_stdin_until_closed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("attach");
        let (stdin_r, stdin_w) = nix::unistd::pipe().unwrap();
        let mut hub = Hub::listen(
            &path,
            Some(Stdin {
                fd: stdin_w,
                once: true,
            }),
            None,
        )
        .unwrap();
        let mut session = UnixStream::connect(&path).unwrap();
        let step = |hub: &mut Hub| {
            let mut fds: Vec<_> = hub
                .poll_fds()
                .into_iter()
                .map(|(fd, flags)| nix::poll::PollFd::new(fd, flags))
                .collect();
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).unwrap();
            let revents: Vec<_> = fds.iter().map(|f| f.revents().unwrap()).collect();
            drop(fds);
            hub.ready(&revents);
        };
        step(&mut hub);
        assert_eq!(hub.sessions.len(), 1);

        hub.broadcast(Stream::Stderr, b"oops");
        let mut got = vec![0u8; 9];
        session.read_exact(&mut got).unwrap();
        assert_eq!(decode(&mut got), Some((STDERR, b"oops".to_vec())));

        session.write_all(&encode(STDIN, b"typed\n")).unwrap();
        session.write_all(&encode(CLOSE, b"")).unwrap();
        step(&mut hub);
        let mut stdin = std::fs::File::from(stdin_r);
        let mut read = String::new();
        // The write end is closed after the flush: the container reads to EOF.
        stdin.read_to_string(&mut read).unwrap();
        assert_eq!(read, "typed\n");
        assert!(hub.stdin.is_none());

        drop(session);
        step(&mut hub);
        assert!(hub.sessions.is_empty());
        drop(hub);
        assert!(!path.exists());
    }
}
