"""Drives orch with the official python `kubernetes` client: create the app manifest, list, watch.

Usage: client_workflow.py KUBECONFIG MANIFEST. Exits non-zero with the failing step on any error.
"""
import sys

from kubernetes import client, config, utils, watch


def main(kubeconfig, manifest):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    created = utils.create_from_yaml(api_client, manifest)
    kinds = sorted(obj.kind for group in created for obj in group)
    print("created", kinds)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "Secret", "Service"], kinds

    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)
    assert [ns.metadata.name for ns in core.list_namespace().items if ns.metadata.name == "demo"] == ["demo"]
    cm = core.read_namespaced_config_map("cfg", "demo")
    assert cm.data == {"greeting": "hello"}, cm.data
    secret = core.read_namespaced_secret("creds", "demo")
    assert secret.data == {"password": "czNjcmV0"}, secret.data
    deployments = apps.list_namespaced_deployment("demo", label_selector="app=web").items
    assert [d.metadata.name for d in deployments] == ["web"], deployments
    assert deployments[0].spec.template.spec.containers[0].image == "busybox:1.36"
    services = core.list_service_for_all_namespaces(field_selector="metadata.name=web").items
    assert len(services) == 1 and services[0].spec.cluster_ip, services

    # A watch from the list's resourceVersion sees a later create, then the server ends it on timeout.
    rv = core.list_namespaced_config_map("demo").metadata.resource_version
    core.create_namespaced_config_map(
        "demo", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="later"), data={"k": "v"})
    )
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, "demo", resource_version=rv, timeout_seconds=2
    ):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "later")], seen

    patched = apps.patch_namespaced_deployment_scale("web", "demo", {"spec": {"replicas": 4}})
    assert patched.spec.replicas == 4, patched
    core.delete_namespaced_config_map("later", "demo")
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
