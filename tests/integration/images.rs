//! `orch images` end to end: pulls from a real htpasswd-protected registry on loopback (right and wrong
//! password), imports of docker-archive (plain and gzip) and OCI-archive tarballs, listing and removal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orch::agent::image::registries::Registries;
use orch::agent::image::ImageService;

use crate::registry::{busybox_archive, busybox_oci_archive, push_busybox, Registry};

/// A node's data dir for `orch images`, with a registries.yaml of its own (none until a test writes one) so
/// the machine's never leaks in.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn images(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_orch"))
            .arg("images")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--private-registry")
            .arg(self.dir.path().join("registries.yaml"))
            .output()
            .expect("orch runs")
    }

    fn write_registries(&self, yaml: &str) {
        std::fs::write(self.dir.path().join("registries.yaml"), yaml).unwrap();
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.images(args);
        assert!(
            out.status.success(),
            "orch images {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.images(args);
        assert!(
            !out.status.success(),
            "orch images {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The image references `orch images ls` shows.
    fn listed(&self) -> Vec<String> {
        let out = self.ok(&["ls"]);
        let mut lines = out.lines();
        let header = lines.next().unwrap_or_default();
        assert!(
            header.starts_with("IMAGE") && header.contains("ID") && header.ends_with("SIZE"),
            "{out}"
        );
        lines
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    }

    /// The store as the agent sees it.
    fn service(&self) -> ImageService {
        ImageService::open(&self.data_dir().join("agent/store"), Registries::default()).unwrap()
    }
}

/// The image is usable: busybox and its applets unpacked, `CMD ["sh"]` from the image config.
fn assert_busybox_unpacked(node: &Node, reference: &str) {
    let image = node
        .service()
        .local(reference)
        .unwrap()
        .unwrap_or_else(|| panic!("{reference} is not local"));
    let bin = image.layers.last().unwrap().join("bin");
    assert!(bin.join("busybox").is_file(), "{}", bin.display());
    assert_eq!(
        std::fs::read_link(bin.join("sh")).unwrap(),
        Path::new("busybox")
    );
    let cmd = image.config.config().as_ref().and_then(|c| c.cmd().clone());
    assert_eq!(cmd, Some(vec!["sh".to_string()]));
}

#[test]
fn images_pull_from_htpasswd_registry() {
    let registry = Registry::start(Some(("tester", "s3cret")));
    push_busybox(&registry, "busybox:latest");
    let node = Node::new();
    let image = format!("{}/busybox:latest", registry.host());

    let wrong = node.fails(&["pull", &image, "--creds", "tester:wrong"]);
    assert!(
        wrong.contains(&format!("failed to pull and unpack image \"{image}\"")),
        "{wrong}"
    );
    assert!(
        wrong.contains("401 Unauthorized: authentication required"),
        "the registry's own message: {wrong}"
    );
    let anonymous = node.fails(&["pull", &image]);
    assert!(anonymous.contains("401 Unauthorized"), "{anonymous}");
    assert!(node.listed().is_empty());

    let out = node.ok(&["pull", &image, "--creds", "tester:s3cret"]);
    assert!(out.contains(&format!("pulled {image}")), "{out}");
    assert_eq!(node.listed(), vec![image.clone()]);
    assert_busybox_unpacked(&node, &image);
    let pulled = node.service().local(&image).unwrap().unwrap();
    assert!(
        pulled
            .repo_digest
            .starts_with(&format!("{}/busybox@sha256:", registry.host())),
        "{}",
        pulled.repo_digest
    );

    // registries.yaml credentials, with no --creds: a second node pulls with them.
    let other = Node::new();
    other.write_registries(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: tester\n      password: s3cret\n",
        registry.host()
    ));
    other.ok(&["pull", &image]);
    assert_eq!(other.listed(), vec![image.clone()]);

    let missing = node.fails(&[
        "pull",
        &format!("{}/nothing:here", registry.host()),
        "--creds",
        "tester:s3cret",
    ]);
    assert!(
        missing.contains(&format!(
            "{}/nothing:here: not found: manifest unknown",
            registry.host()
        )),
        "{missing}"
    );
}

/// A registries.yaml mirror with a rewrite and credentials of its own: the reference names a registry that
/// does not answer (a closed loopback port), and the image exists only under the rewritten repository on
/// the mirror.
#[test]
fn images_pull_through_a_registries_yaml_mirror_with_rewrite() {
    let mirror = Registry::start(Some(("tester", "s3cret")));
    push_busybox(&mirror, "mirrored/busybox:latest");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let image = format!("{closed}/library/busybox:latest");
    let registries = |password: &str| {
        format!(
            "mirrors:\n  \"{closed}\":\n    endpoint:\n      - \"http://{mirror}\"\n    rewrite:\n      \"^library/(.*)\": \"mirrored/$1\"\n\
             configs:\n  \"{mirror}\":\n    auth:\n      username: tester\n      password: {password}\n",
            mirror = mirror.host()
        )
    };

    let node = Node::new();
    node.write_registries(&registries("wrong"));
    let refused = node.fails(&["pull", &image]);
    assert!(
        refused.contains("401 Unauthorized"),
        "the mirror's answer, not the closed port's: {refused}"
    );

    node.write_registries(&registries("s3cret"));
    let out = node.ok(&["pull", &image]);
    assert!(out.contains(&format!("pulled {image}")), "{out}");
    assert_eq!(node.listed(), vec![image.clone()]);
    assert_busybox_unpacked(&node, &image);
}

#[test]
fn images_import_docker_archive_plain_and_gzip_then_rm() {
    let node = Node::new();
    let plain = node.dir.path().join("busybox.tar");
    busybox_archive(&plain);
    let gz = node.dir.path().join("busybox.tar.gz");
    {
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        std::io::copy(&mut std::fs::File::open(&plain).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap();
    }
    let name = "docker.io/library/busybox:latest";

    let out = node.ok(&["import", plain.to_str().unwrap()]);
    assert!(out.contains(&format!("imported {name}")), "{out}");
    assert_eq!(node.listed(), [name]);
    assert_busybox_unpacked(&node, name);
    let out = node.ok(&["rm", "busybox"]);
    assert!(out.contains(&format!("deleted {name}")), "{out}");
    assert!(node.listed().is_empty());
    let store = node.data_dir().join("agent/store");
    assert_eq!(
        std::fs::read_dir(store.join("snapshots")).unwrap().count(),
        0,
        "removing the only image deletes its snapshots"
    );

    node.ok(&["import", gz.to_str().unwrap()]);
    assert_eq!(node.listed(), [name]);
    assert_busybox_unpacked(&node, name);
    // By short id, as `docker rmi` takes it.
    let ls = node.ok(&["ls"]);
    let id = ls
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert_eq!(id.len(), 12, "{ls}");
    node.ok(&["rm", id]);
    assert!(node.listed().is_empty());
    let err = node.fails(&["rm", "busybox"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn images_import_oci_archive_named_by_tag() {
    let node = Node::new();
    let archive = node.dir.path().join("busybox.tar");
    busybox_oci_archive(&archive, "1.0");
    node.ok(&["import", archive.to_str().unwrap()]);
    // An OCI ref.name that is only a tag takes the tarball's name as its repository.
    assert_eq!(node.listed(), ["docker.io/library/busybox:1.0"]);
    assert_busybox_unpacked(&node, "busybox:1.0");

    let junk = node.dir.path().join("junk.tar");
    std::fs::write(&junk, "not a tarball").unwrap();
    let err = node.fails(&["import", junk.to_str().unwrap()]);
    assert!(err.contains("junk.tar"), "{err}");
}
