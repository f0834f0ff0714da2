//! A real registry and a real image for end-to-end tests: Debian's `docker-registry` (distribution 2.8) on a
//! free loopback port, optionally behind htpasswd basic auth, and a tiny busybox image built once per test
//! process from the host's static `/bin/busybox` with umoci, pushed or exported with skopeo.
//!
//! Missing tools fail the test with the install command; nothing is skipped.

#![allow(dead_code)] // a fixture for several test modules; each uses a part of it

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str =
    "run make test-deps (apt-get install docker-registry umoci skopeo busybox-static apache2-utils)";

/// Applets linked to busybox in the test image.
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "true", "false", "ls", "wget", "nc", "env", "id", "hostname",
    "mkdir", "rm", "touch", "ps", "kill", "grep", "test", "printf", "head", "date", "readlink",
    "wc", "tr", "tty", "stty", "httpd",
];

/// The path of `tool` on PATH (plus the sbin directories), or a test failure naming how to install it.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("missing {tool}: {INSTALL_HINT}"))
}

/// Runs a fixture command, failing the test with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `docker-registry serve` process with its own storage; stopped when dropped.
pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    auth: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry on 127.0.0.1:<free port>; with `auth`, only that user and password may pull or push.
    pub fn start(auth: Option<(&str, &str)>) -> Registry {
        let binary = require("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, pass)) = auth {
            let htpasswd = run(Command::new(require("htpasswd")).args(["-Bbn", user, pass]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, htpasswd).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: orch-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry {
            dir,
            port,
            child,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let request = format!(
                    "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                );
                let mut answer = String::new();
                if s.write_all(request.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.starts_with("HTTP/1.1 ")
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not come up on port {}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `user:password` when the registry has auth.
    pub fn creds(&self) -> Option<String> {
        self.auth.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OCI image layout holding `busybox` at tag `latest`: one layer with /bin/busybox and applet links,
/// `CMD ["sh"]`. Built once per test process (and reused across runs while /bin/busybox and the applets are unchanged).
pub fn busybox_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(build_busybox_layout)
}

fn build_busybox_layout() -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    let meta = std::fs::metadata(busybox)
        .unwrap_or_else(|_| panic!("missing busybox-static (/bin/busybox): {INSTALL_HINT}"));
    let mtime = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let applets = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        APPLETS.hash(&mut h);
        h.finish()
    };
    let layout = base.join(format!("busybox-oci-{}-{mtime}-{applets:x}", meta.len()));
    if layout.join("index.json").is_file() {
        return layout;
    }
    let umoci = require("umoci");
    let work = tempfile::tempdir_in(base).unwrap();
    let oci = work.path().join("oci");
    let bundle = work.path().join("bundle");
    let image = format!("{}:latest", oci.display());
    run(Command::new(&umoci).args(["init", "--layout"]).arg(&oci));
    run(Command::new(&umoci).args(["new", "--image", &image]));
    add_layer(&image, &bundle, |rootfs| {
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(busybox, bin.join("busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    });
    run(Command::new(&umoci).args([
        "config",
        "--image",
        &image,
        "--config.cmd=sh",
        "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]));
    // Another test process may have finished the same build meanwhile: either copy is as good.
    match std::fs::rename(&oci, &layout) {
        Ok(()) => {}
        Err(_) if layout.join("index.json").is_file() => {}
        Err(e) => panic!("moving the busybox layout into {}: {e}", layout.display()),
    }
    layout
}

/// Adds a layer to `image` (an OCI layout path and tag) with what `fill` writes into its root
/// filesystem, unpacked at `bundle`. (Debian's umoci 0.4.7 `insert` of a file writes a truncated layer.)
fn add_layer(image: &str, bundle: &Path, fill: impl FnOnce(&Path)) {
    let umoci = require("umoci");
    run(Command::new(&umoci)
        .args(["unpack", "--image", image])
        .arg(bundle));
    fill(&bundle.join("rootfs"));
    run(Command::new(&umoci)
        .args(["repack", "--image", image])
        .arg(bundle));
}

fn skopeo_copy(src: &str, dest: &str, extra: &[String]) {
    run(Command::new(require("skopeo"))
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(extra)
        .args([src, dest])
        .stdin(Stdio::null()));
}

/// Pushes the busybox image to `registry` as `name` (e.g. `busybox:latest`) over plain HTTP.
pub fn push_busybox(registry: &Registry, name: &str) {
    let mut extra = vec!["--dest-tls-verify=false".to_string()];
    if let Some(creds) = registry.creds() {
        extra.push(format!("--dest-creds={creds}"));
    }
    skopeo_copy(
        &format!("oci:{}:latest", busybox_layout().display()),
        &format!("docker://{}/{name}", registry.host()),
        &extra,
    );
}

/// Writes the busybox image as a docker-archive tarball tagged `busybox:latest`.
pub fn busybox_archive(path: &Path) {
    let _ = std::fs::remove_file(path);
    skopeo_copy(
        &format!("oci:{}:latest", busybox_layout().display()),
        &format!("docker-archive:{}:busybox:latest", path.display()),
        &[],
    );
}

/// Writes a docker-archive tarball tagged `name`: the busybox image with `files` (each one's path in the
/// image and its text) in one more layer, and `user` as its USER.
pub fn busybox_archive_with(path: &Path, name: &str, files: &[(&str, &str)], user: &str) {
    let umoci = require("umoci");
    let work = tempfile::tempdir().unwrap();
    let oci = work.path().join("oci");
    let bundle = work.path().join("bundle");
    run(Command::new("cp").arg("-a").arg(busybox_layout()).arg(&oci));
    let image = format!("{}:latest", oci.display());
    add_layer(&image, &bundle, |rootfs| {
        for (target, text) in files {
            let file = rootfs.join(target.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, text).unwrap();
        }
    });
    run(Command::new(&umoci).args([
        "config",
        "--image",
        &image,
        &format!("--config.user={user}"),
    ]));
    let _ = std::fs::remove_file(path);
    skopeo_copy(
        &format!("oci:{image}"),
        &format!("docker-archive:{}:{name}", path.display()),
        &[],
    );
}

/// Writes the busybox image as an OCI layout tarball whose only name is the tag `tag`.
pub fn busybox_oci_archive(path: &Path, tag: &str) {
    let _ = std::fs::remove_file(path);
    skopeo_copy(
        &format!("oci:{}:latest", busybox_layout().display()),
        &format!("oci-archive:{}:{tag}", path.display()),
        &[],
    );
}
