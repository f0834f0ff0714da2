//! The official python `kubernetes` client against orch: create from a manifest, list, watch, patch.

use std::process::Command;

use crate::harness::Server;
use crate::kubectl_workflows::APP;

/// The interpreter with the `kubernetes` package, set up by `make test-deps`.
fn python() -> String {
    let python = std::env::var("ORCH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{python} cannot import the `kubernetes` package: run `make test-deps` (it creates a venv with \
         `pip install kubernetes`) and set ORCH_TEST_PYTHON to its python, as `make integration` does"
    );
    python
}

#[test]
fn python_client_creates_lists_and_watches() {
    let python = python();
    let s = Server::start();
    let manifest = s.write("app.yaml", APP);
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/python/client_workflow.py"
        ))
        .arg(s.kubeconfig())
        .arg(manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python client workflow failed:\n{stdout}\n{stderr}"
    );
}
