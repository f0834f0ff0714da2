//! `orch kubectl …`: runs the kubectl found on PATH with this server's kubeconfig unless KUBECONFIG is set.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

const DEFAULT_KUBECONFIG: &str = "/etc/orch/orch.yaml";

fn find_kubectl() -> Option<PathBuf> {
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|candidate| candidate.is_file() && candidate.canonicalize().ok() != me)
    })
}

pub fn run(args: Vec<String>) -> anyhow::Result<()> {
    let Some(kubectl) = find_kubectl() else {
        bail!("kubectl was not found on PATH; install it (e.g. `apt-get install kubectl`) to use `orch kubectl`");
    };
    let mut cmd = std::process::Command::new(&kubectl);
    cmd.args(&args);
    if std::env::var_os("KUBECONFIG").is_none() && Path::new(DEFAULT_KUBECONFIG).exists() {
        cmd.env("KUBECONFIG", DEFAULT_KUBECONFIG);
    }
    let err = cmd.exec();
    Err(err).with_context(|| format!("running {}", kubectl.display()))
}
