//! The kubectl workflows the API server issue names, each against a fresh server.

use std::time::Duration;

use crate::harness::Server;

pub const APP: &str = include_str!("manifests/app.yaml");

#[test]
fn apply_multi_document_then_reapply_edited_and_server_side() {
    let s = Server::start();
    let path = s.write("app.yaml", APP);
    let out = s.ok(&["apply", "-f", path.to_str().unwrap()]);
    for line in [
        "namespace/demo created",
        "configmap/cfg created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let again = s.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");

    // Stored secrets carry data, not stringData.
    let data = s.ok(&[
        "-n",
        "demo",
        "get",
        "secret",
        "creds",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(data, "czNjcmV0");

    // An edit applied as a strategic merge patch: env B removed, A changed, replicas changed.
    let edited = APP
        .replace("replicas: 2", "replicas: 3")
        .replace("value: \"1\"", "value: \"2\"")
        .replace("        - {name: B, value: \"x\"}\n", "");
    let path = s.write("app.yaml", &edited);
    let out = s.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let got = s.ok(&[
        "-n",
        "demo",
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env} {.metadata.generation}",
    ]);
    assert_eq!(got, r#"3 [{"name":"A","value":"2"}] 2"#);

    let out = s.ok(&["apply", "--server-side", "-f", path.to_str().unwrap()]);
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let managers = s.ok(&[
        "-n",
        "demo",
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "{managers}");

    // A conflicting server-side apply by another manager is refused, then forced.
    let conflicting = edited.replace("replicas: 3", "replicas: 7");
    let path = s.write("conflict.yaml", &conflicting);
    let err = s.fails(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        s.ok(&[
            "-n",
            "demo",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "7"
    );
}

#[test]
fn typed_create_commands_send_protobuf_and_are_stored() {
    let s = Server::start();
    s.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=80",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=user=admin",
    ]);
    s.ok(&["create", "configmap", "c1", "--from-literal=x=y"]);
    s.ok(&["create", "namespace", "n2"]);
    s.ok(&["create", "service", "clusterip", "svc1", "--tcp=80:8080"]);
    s.ok(&["create", "job", "j1", "--image=busybox", "--", "echo", "hi"]);
    let deploy = s.ok(&["get", "deploy", "hello", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]);
    assert_eq!(deploy, "2 nginx:1.27 80");
    assert_eq!(
        s.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.user}"]),
        "YWRtaW4="
    );
    assert_eq!(s.ok(&["get", "cm", "c1", "-o", "jsonpath={.data.x}"]), "y");
    let svc = s.ok(&[
        "get",
        "svc",
        "svc1",
        "-o",
        "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.clusterIP}",
    ]);
    assert!(svc.starts_with("80 8080 10.43."), "{svc}");
    assert_eq!(
        s.ok(&[
            "get",
            "job",
            "j1",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}"
        ]),
        r#"["echo","hi"]"#
    );
    assert!(s.ok(&["get", "ns"]).contains("n2"));
    let err = s.fails(&["create", "deployment", "hello", "--image=nginx"]);
    assert!(
        err.contains("deployments.apps \"hello\" already exists"),
        "{err}"
    );
}

#[test]
fn get_output_formats_selectors_and_tables() {
    let s = Server::start();
    s.ok(&["create", "deployment", "a", "--image=nginx:1.27"]);
    s.ok(&["create", "deployment", "b", "--image=busybox"]);
    s.ok(&["create", "namespace", "other"]);
    s.ok(&[
        "-n",
        "other",
        "create",
        "configmap",
        "c",
        "--from-literal=k=v",
    ]);
    s.ok(&["label", "deploy", "a", "tier=front"]);

    let table = s.ok(&["get", "deploy"]);
    assert!(table.starts_with("NAME"), "{table}");
    for col in ["READY", "UP-TO-DATE", "AVAILABLE", "AGE"] {
        assert!(table.contains(col), "{table}");
    }
    let wide = s.ok(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("nginx:1.27") && wide.contains("app=a"),
        "{wide}"
    );
    let selected = s.ok(&["get", "deploy", "-l", "tier=front", "-o", "name"]);
    assert_eq!(selected.trim(), "deployment.apps/a");
    let not_front = s.ok(&["get", "deploy", "-l", "tier!=front", "-o", "name"]);
    assert_eq!(not_front.trim(), "deployment.apps/b");
    let all_ns = s.ok(&["get", "cm", "-A"]);
    assert!(
        all_ns.contains("NAMESPACE") && all_ns.contains("other") && all_ns.contains(" c "),
        "{all_ns}"
    );
    let yaml = s.ok(&["get", "deploy", "a", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment")
            && yaml.contains("resourceVersion:")
            && yaml.contains("uid:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "deploy", "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    let by_field = s.ok(&[
        "get",
        "deploy",
        "--field-selector",
        "metadata.name=b",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "deployment.apps/b");
    let describe = s.ok(&["describe", "deploy", "a"]);
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("Name:") && l.ends_with(" a"))
            && describe.contains("tier=front"),
        "{describe}"
    );
    let resources = s.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "horizontalpodautoscalers",
        "poddisruptionbudgets",
    ] {
        assert!(resources.contains(line), "{resources}");
    }
    let explain = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(explain.contains("FIELD: replicas <integer>"), "{explain}");
}

#[test]
fn label_annotate_scale_patch_edit() {
    let s = Server::start();
    s.ok(&[
        "create",
        "deployment",
        "d",
        "--image=nginx:1.27",
        "--replicas=2",
    ]);
    s.ok(&["label", "deploy", "d", "env=prod"]);
    s.ok(&[
        "annotate",
        "deploy",
        "d",
        "kubernetes.io/change-cause=first",
    ]);
    s.ok(&["scale", "deploy", "d", "--replicas=4"]);
    s.ok(&[
        "scale",
        "deploy",
        "d",
        "--current-replicas=4",
        "--replicas=5",
    ]);
    let stale = s.fails(&[
        "scale",
        "deploy",
        "d",
        "--current-replicas=4",
        "--replicas=6",
    ]);
    assert!(
        stale
            .to_lowercase()
            .contains("expected replicas to be 4, was 5"),
        "{stale}"
    );
    s.ok(&[
        "patch",
        "deploy",
        "d",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}"#,
    ]);
    s.ok(&[
        "patch",
        "deploy",
        "d",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"m":"1"}}}"#,
    ]);
    s.ok(&[
        "patch",
        "deploy",
        "d",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    let editor = s.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/image: nginx:1.28/image: nginx:1.29/' \"$1\"\n",
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .unwrap();
    let out = s.kubectl_with(
        &["edit", "deploy", "d"],
        &[("KUBE_EDITOR", editor.to_str().unwrap())],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = s.ok(&["get", "deploy", "d", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.env} {.metadata.labels.m} {.metadata.annotations.kubernetes\\.io/change-cause}"]);
    assert_eq!(got, "3 nginx:1.29 prod 1 first");
    let bad = s.fails(&[
        "patch",
        "deploy",
        "d",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(bad.contains("Invalid") || bad.contains("test"), "{bad}");
}

fn owned_replicaset(s: &Server, owner: &str, name: &str) {
    let uid = s.ok(&["get", "deploy", owner, "-o", "jsonpath={.metadata.uid}"]);
    let rs = format!(
        r#"{{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{{"name":"{name}","labels":{{"app":"{owner}"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"Deployment","name":"{owner}","uid":"{uid}","controller":true,"blockOwnerDeletion":true}}]}},
           "spec":{{"replicas":0,"selector":{{"matchLabels":{{"app":"{owner}"}}}},"template":{{"metadata":{{"labels":{{"app":"{owner}"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}}}}}"#
    );
    let path = s.write(&format!("{name}.json"), &rs);
    s.ok(&["create", "-f", path.to_str().unwrap()]);
}

#[test]
fn delete_cascades_background_foreground_and_orphan() {
    let s = Server::start();
    for d in ["bg", "fg", "orphan"] {
        s.ok(&["create", "deployment", d, "--image=busybox"]);
        owned_replicaset(&s, d, &format!("{d}-rs"));
    }
    s.ok(&["delete", "deploy", "fg", "--cascade=foreground"]);
    assert!(
        s.fails(&["get", "rs", "fg-rs"]).contains("NotFound"),
        "foreground delete waits for dependents"
    );
    s.ok(&["delete", "deploy", "bg"]);
    s.eventually(
        "background garbage collection",
        Duration::from_secs(10),
        || !s.kubectl(&["get", "rs", "bg-rs"]).status.success(),
    );
    s.ok(&["delete", "deploy", "orphan", "--cascade=orphan"]);
    let refs = s.ok(&[
        "get",
        "rs",
        "orphan-rs",
        "-o",
        "jsonpath={.metadata.ownerReferences}",
    ]);
    assert_eq!(refs, "", "orphaned dependents lose their owner reference");
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&["get", "rs", "orphan-rs"]);

    // An object created naming an owner that never existed is collected, as Kubernetes' collector does;
    // one naming a live owner stays.
    let live_uid = s.ok(&["get", "rs", "orphan-rs", "-o", "jsonpath={.metadata.uid}"]);
    for (name, owner, uid) in [
        ("dangling", "never", "00000000-0000-0000-0000-000000000000"),
        ("owned", "orphan-rs", live_uid.as_str()),
    ] {
        let cm = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"{owner}","uid":"{uid}"}}]}}}}"#
        );
        let path = s.write(&format!("{name}.json"), &cm);
        s.ok(&["create", "-f", path.to_str().unwrap()]);
    }
    s.eventually(
        "an object with a dangling owner collected",
        Duration::from_secs(10),
        || {
            !s.kubectl(&["get", "configmap", "dangling"])
                .status
                .success()
        },
    );
    s.ok(&["get", "configmap", "owned"]);
}

#[test]
fn namespace_deletion_removes_its_content() {
    let s = Server::start();
    s.ok(&["create", "namespace", "gone"]);
    s.ok(&[
        "-n",
        "gone",
        "create",
        "configmap",
        "c",
        "--from-literal=a=b",
    ]);
    s.ok(&["-n", "gone", "create", "deployment", "d", "--image=busybox"]);
    s.ok(&["delete", "namespace", "gone", "--timeout=20s"]);
    assert!(s.fails(&["get", "namespace", "gone"]).contains("NotFound"));
    let err = s.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("may not be deleted"), "{err}");
}

#[test]
fn bad_input_gets_clear_errors_and_stores_nothing() {
    let s = Server::start();
    let unknown = s.write(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\ndata:\n  a: b\nbogus: 1\n",
    );
    let err = s.fails(&["create", "-f", unknown.to_str().unwrap()]);
    assert!(
        err.contains("strict decoding error: unknown field \"bogus\""),
        "{err}"
    );
    let warned = s.kubectl(&["create", "--validate=warn", "-f", unknown.to_str().unwrap()]);
    assert!(warned.status.success());
    assert!(String::from_utf8_lossy(&warned.stderr).contains("unknown field \"bogus\""));

    let wrong_type = s.write(
        "wrong.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n  replicas: many\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n",
    );
    let err = s.fails(&["create", "-f", wrong_type.to_str().unwrap()]);
    assert!(
        err.contains("BadRequest") || err.contains("cannot be handled"),
        "{err}"
    );
    assert!(s.fails(&["get", "deploy", "w"]).contains("NotFound"));

    // Kubernetes' validation: every problem with its field path, and nothing stored.
    let invalid = s.write(
        "invalid.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: Bad_Name\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {restartPolicy: Never, containers: [{name: c}]}\n",
    );
    let err = s.fails(&["apply", "-f", invalid.to_str().unwrap()]);
    for expected in [
        "The Deployment \"Bad_Name\" is invalid",
        "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain",
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
        "spec.template.spec.containers[0].image: Required value",
        "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(s.fails(&["get", "deploy", "Bad_Name"]).contains("NotFound"));
    s.ok(&["create", "deployment", "fine", "--image=busybox"]);
    let err = s.fails(&["patch", "deployment", "fine", "--type=merge", "-p", r#"{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}"#]);
    assert!(
        err.contains("spec.selector: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );

    let err = s.fails(&["get", "pods", "nope"]);
    assert!(
        err.contains("Error from server (NotFound): pods \"nope\" not found"),
        "{err}"
    );
    let err = s.fails(&["get", "--raw", "/apis/apps/v1/widgets"]);
    assert!(err.contains("NotFound"), "{err}");

    let big = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let path = s.write("big.json", &big);
    let err = s.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(err.contains("too large") || err.contains("413"), "{err}");
    assert!(s.fails(&["get", "cm", "big"]).contains("NotFound"));

    let conflict = s.write(
        "stale.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kubernetes-stale","resourceVersion":"1"},"data":{}}"#,
    );
    s.ok(&["create", "configmap", "kubernetes-stale"]);
    let err = s.fails(&["replace", "-f", conflict.to_str().unwrap()]);
    assert!(err.contains("the object has been modified"), "{err}");
}

#[test]
fn get_watch_streams_new_objects() {
    let s = Server::start();
    let home = s.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut watcher = std::process::Command::new("kubectl")
        .args(["get", "configmaps", "-w", "--request-timeout=0"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("HOME", &home)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&["create", "configmap", "seen-by-watch", "--from-literal=a=b"]);
    std::thread::sleep(Duration::from_millis(1000));
    watcher.kill().unwrap();
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("seen-by-watch"), "{text}");
}
