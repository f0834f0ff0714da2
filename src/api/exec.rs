//! The contract between the API server's `pods/exec` and `pods/attach` and a node: which command in which
//! container with which streams (the query, checked by kubelet's rules), the remote-command channel
//! protocol both sides speak (over WebSocket, `v5.channel.k8s.io`: each binary message starts with the
//! byte of its stream; over SPDY, one stream per channel), and the Status that ends a session. No I/O:
//! the sessions themselves are `streaming::exec`'s. A node serves the protocol at
//! `/exec/{namespace}/{pod}/{container}` and `/attach/{namespace}/{pod}/{container}`.

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::util::upgrade::Protocols;

/// The subprotocol kubectl 1.30+ offers (with stdin close); v4 is the same without it.
pub const V5_PROTOCOL: &str = "v5.channel.k8s.io";
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";
/// What an exec endpoint speaks: the same protocol names on a WebSocket and on SPDY.
pub const PROTOCOLS: Protocols = Protocols {
    websocket: &[V5_PROTOCOL, V4_PROTOCOL],
    spdy: &[V5_PROTOCOL, V4_PROTOCOL],
};
/// Stream ids, the first byte of every message.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The server's last word: a Status saying how the command ended.
pub const ERROR: u8 = 3;
/// `{"Width":…,"Height":…}` from a client with a terminal.
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, stream]` closes that stream (the client's stdin at EOF).
pub const CLOSE: u8 = 255;

/// What `kubectl exec` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    /// The options for `pod` from a `pods/exec` (or kubelet `exec`) query, with the API server's errors.
    /// `container` is the one the path names, if any; `query` gives every value of a key (`command`
    /// repeats).
    pub fn resolve<'q>(
        pod: &Pod,
        container: Option<&str>,
        query: impl Fn(&str) -> Vec<&'q str>,
    ) -> Result<ExecOptions, String> {
        let command: Vec<String> = query("command").into_iter().map(str::to_string).collect();
        let options = Self::requested(pod, container, &query)?;
        if command.is_empty() {
            return Err("you must specify at least 1 command".into());
        }
        if options.tty && options.stderr {
            // A terminal has one output: what the process writes to stderr arrives on stdout.
            return Err("stdout and stderr cannot both be requested when tty is true".into());
        }
        Ok(ExecOptions { command, ..options })
    }

    /// The options for `pods/attach` (and kubelet's `attach`): no command, and a terminal exactly when the
    /// container runs on one, as kubelet decides, since that cannot change once the process started.
    pub fn resolve_attach<'q>(
        pod: &Pod,
        container: Option<&str>,
        query: impl Fn(&str) -> Vec<&'q str>,
    ) -> Result<ExecOptions, String> {
        let options = Self::requested(pod, container, &query)?;
        let tty = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == options.container)
            .and_then(|c| c.tty)
            .unwrap_or(false);
        Ok(ExecOptions {
            stderr: options.stderr && !tty,
            tty,
            ..options
        })
    }

    /// The container and streams the query asks for, with no command.
    fn requested<'q>(
        pod: &Pod,
        container: Option<&str>,
        query: &impl Fn(&str) -> Vec<&'q str>,
    ) -> Result<ExecOptions, String> {
        let flag = |key: &str| {
            query(key)
                .first()
                .is_some_and(|v| *v == "true" || *v == "1")
        };
        let requested = container.or_else(|| query("container").first().copied());
        let container = crate::api::kubelet::resolve_container(pod, requested)?;
        let options = ExecOptions {
            container,
            command: Vec::new(),
            stdin: flag("stdin"),
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            tty: flag("tty"),
        };
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        Ok(options)
    }

    /// Attaching to the container's own process rather than running a command.
    pub fn is_attach(&self) -> bool {
        self.command.is_empty()
    }

    /// The query a kubelet endpoint takes for these options.
    pub fn to_query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for arg in &self.command {
            query.append_pair("command", arg);
        }
        for (key, on) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                query.append_pair(key, "true");
            }
        }
        query.finish()
    }
}

/// kubelet's path for exec in (or attach to) one container; the query carries
/// [`ExecOptions::to_query`].
pub fn exec_path(options: &ExecOptions, namespace: &str, pod: &str) -> String {
    let verb = if options.is_attach() {
        "attach"
    } else {
        "exec"
    };
    format!("/{verb}/{namespace}/{pod}/{}", options.container)
}

/// The Status that ends a session: Success for exit code 0, else kubelet's NonZeroExitCode, from which
/// kubectl takes its own exit code.
pub fn exit_status(code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [exit {code}]"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The Status for a session that failed for another reason than the command's exit.
pub fn failure_status(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message})
}

/// A message from the client, by its stream byte.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Stdin(Bytes),
    StdinClosed,
    Resize {
        width: u16,
        height: u16,
    },
    /// Anything else (an unknown stream, a malformed resize): ignored, as kubelet does.
    Other,
}

pub fn decode(message: &[u8]) -> ClientMessage {
    match message {
        [STDIN, data @ ..] => ClientMessage::Stdin(Bytes::copy_from_slice(data)),
        [CLOSE, STDIN] => ClientMessage::StdinClosed,
        [RESIZE, size @ ..] => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Size {
                width: u16,
                height: u16,
            }
            match serde_json::from_slice::<Size>(size) {
                Ok(s) => ClientMessage::Resize {
                    width: s.width,
                    height: s.height,
                },
                Err(_) => ClientMessage::Other,
            }
        }
        _ => ClientMessage::Other,
    }
}

/// `data` as a message on `stream`.
pub fn encode(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(stream);
    message.extend_from_slice(data);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}, {"name": "side"}]},
        }))
        .unwrap()
    }

    fn query<'q>(pairs: &'q [(&'q str, &'q str)]) -> impl Fn(&str) -> Vec<&'q str> {
        move |key| {
            pairs
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .collect()
        }
    }

    #[test]
    fn options_follow_kubectls_query_and_the_servers_rules() {
        let q = [
            ("command", "echo"),
            ("command", "hello world"),
            ("container", "side"),
            ("stdout", "true"),
            ("stderr", "true"),
        ];
        let options = ExecOptions::resolve(&pod(), None, query(&q)).unwrap();
        assert_eq!(options.command, ["echo", "hello world"]);
        assert_eq!(options.container, "side");
        assert!(options.stdout && options.stderr && !options.stdin && !options.tty);
        assert_eq!(
            options.to_query(),
            "command=echo&command=hello+world&stdout=true&stderr=true"
        );
        let path_wins = ExecOptions::resolve(&pod(), Some("app"), query(&q)).unwrap();
        assert_eq!(path_wins.container, "app");

        let err =
            |q: &[(&str, &str)]| ExecOptions::resolve(&pod(), Some("app"), query(q)).unwrap_err();
        assert_eq!(
            err(&[("stdout", "true")]),
            "you must specify at least 1 command"
        );
        assert_eq!(
            err(&[("command", "sh")]),
            "you must specify at least one of stdin, stdout, stderr"
        );
        assert_eq!(
            err(&[
                ("command", "sh"),
                ("tty", "true"),
                ("stdout", "true"),
                ("stderr", "true")
            ]),
            "stdout and stderr cannot both be requested when tty is true"
        );
        assert_eq!(
            ExecOptions::resolve(
                &pod(),
                None,
                query(&[("command", "sh"), ("stdout", "true")])
            )
            .unwrap_err(),
            "a container name must be specified for pod p, choose one of: [app side]"
        );
        assert_eq!(
            ExecOptions::resolve(&pod(), Some("nope"), query(&[("command", "sh")])).unwrap_err(),
            "container nope is not valid for pod p"
        );
    }

    #[test]
    fn attach_takes_the_terminal_from_the_container_not_the_query() {
        let mut with_tty = pod();
        with_tty.spec.as_mut().unwrap().containers[1].tty = Some(true);
        let q = [("stdin", "true"), ("stdout", "true"), ("stderr", "true")];
        let on_terminal = ExecOptions::resolve_attach(&with_tty, Some("side"), query(&q)).unwrap();
        assert!(on_terminal.is_attach() && on_terminal.tty && !on_terminal.stderr);
        assert_eq!(
            exec_path(&on_terminal, "default", "p"),
            "/attach/default/p/side"
        );
        let asked = [("stdout", "true"), ("tty", "true")];
        let on_pipes = ExecOptions::resolve_attach(&with_tty, Some("app"), query(&asked)).unwrap();
        assert!(!on_pipes.tty);
        assert_eq!(
            ExecOptions::resolve_attach(&with_tty, Some("app"), query(&[])).unwrap_err(),
            "you must specify at least one of stdin, stdout, stderr"
        );
    }

    #[test]
    fn messages_carry_their_stream_in_the_first_byte() {
        assert_eq!(
            decode(b"\x00hi"),
            ClientMessage::Stdin(Bytes::from_static(b"hi"))
        );
        assert_eq!(decode(&[CLOSE, STDIN]), ClientMessage::StdinClosed);
        assert_eq!(
            decode(b"\x04{\"Width\":100,\"Height\":30}\n"),
            ClientMessage::Resize {
                width: 100,
                height: 30
            }
        );
        assert_eq!(decode(b"\x04junk"), ClientMessage::Other);
        assert_eq!(decode(b""), ClientMessage::Other);
        assert_eq!(encode(STDOUT, b"out"), b"\x01out");
    }

    #[test]
    fn the_exit_code_travels_in_the_status_causes() {
        assert_eq!(exit_status(0)["status"], "Success");
        let failed = exit_status(3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }
}
