"""The Kubernetes manifests (deploy/k8s/) agree with the worker's settings, the image and each other."""

import pytest

from tests.support.deploy import (
    CREDENTIALS,
    DEPLOY,
    GATEWAY,
    component,
    config,
    container,
    dockerfile_uid,
    gateway_settings_from,
    gateway_variables_are_settings,
    k8s,
    k8s_docs,
    metrics_port,
    named_port,
    outplan_variables_are_settings,
    pod_spec,
    quantity,
    secret,
    service,
    setting_default,
    settings_from,
    yaml_documents,
    yaml_files,
)
from worker.observability import LIVEZ, METRICS, READYZ

pytestmark = pytest.mark.unit


# --- manifests ---------------------------------------------------------------------------------


def test_every_file_holds_named_manifests() -> None:
    files = [p for p in yaml_files() if p.parent == DEPLOY / "k8s"]
    assert files
    for path in files:
        docs = yaml_documents(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: not a manifest"
            assert doc["metadata"].get("name"), f"{path}: {doc['kind']} without a name"


def test_every_kind_is_there_once_for_the_worker_and_the_gateway() -> None:
    worker = sorted(d["kind"] for d in k8s_docs() if component(d) != GATEWAY)
    assert worker == sorted(["ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Job", "Service"])
    gateway = sorted(d["kind"] for d in k8s_docs() if component(d) == GATEWAY)
    assert gateway == sorted(["ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service"])


# --- the image and its commands ----------------------------------------------------------------


def test_deployment_and_job_run_the_image_compose_builds() -> None:
    image = service("worker")["image"]
    assert container("Deployment")["image"] == image
    assert container("Job")["image"] == image


def test_deployment_and_job_run_their_subcommand_through_the_images_entrypoint() -> None:
    assert container("Deployment").get("args") == ["run"]
    assert container("Job").get("args") == ["migrate"]
    for kind in ("Deployment", "Job"):
        assert "command" not in container(kind), f"{kind} must keep the image's ENTRYPOINT"


# --- settings ----------------------------------------------------------------------------------


def test_every_outplan_variable_is_a_setting() -> None:
    named: dict[str, str] = {}
    named.update({k: "ConfigMap" for k in config()})
    named.update({k: "Secret" for k in secret()})
    for kind in ("Deployment", "Job"):
        named.update({e["name"]: kind for e in container(kind).get("env", [])})
    outplan_variables_are_settings(named)


def test_configmap_and_secret_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from({**config(), **secret()}, monkeypatch)
    assert settings.metrics_port > 0, "the probes need the HTTP port on"


def test_credentials_live_in_the_secret_only() -> None:
    assert set(secret()) == CREDENTIALS
    assert not CREDENTIALS & set(config())
    for kind in ("Deployment", "Job"):
        literal = {e["name"] for e in container(kind).get("env", [])}
        assert not CREDENTIALS & literal, f"{kind} spells out a credential"


def test_configmap_values_are_strings() -> None:
    # The API server rejects numbers and booleans in a ConfigMap's data.
    assert all(isinstance(v, str) for v in config().values()), config()


def test_deployment_and_job_read_the_configmap_and_secret() -> None:
    expected = {
        ("configMapRef", k8s("ConfigMap")["metadata"]["name"]),
        ("secretRef", k8s("Secret")["metadata"]["name"]),
    }
    for kind in ("Deployment", "Job"):
        refs = {(ref, src[ref]["name"]) for src in container(kind)["envFrom"] for ref in src}
        assert refs == expected, kind


# --- probes and ports --------------------------------------------------------------------------


def test_probes_hit_the_health_paths_on_the_metrics_port() -> None:
    assert setting_default("metrics_port") == 9464
    port = metrics_port()
    c = container("Deployment")
    assert [p["containerPort"] for p in c["ports"] if p.get("name") == "metrics"] == [port]
    assert (LIVEZ, READYZ) == ("/livez", "/readyz")
    for probe, path in (("livenessProbe", LIVEZ), ("readinessProbe", READYZ)):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named_port(c, get["port"]) == port, probe
    if "startupProbe" in c:
        assert c["startupProbe"]["httpGet"]["path"] == LIVEZ


def test_service_exposes_the_metrics_port_of_the_pods() -> None:
    svc, deployment = k8s("Service"), k8s("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert named_port(container("Deployment"), port["targetPort"]) == metrics_port()
    annotations = svc["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == port["port"]
        assert annotations.get("prometheus.io/path", METRICS) == METRICS


# --- graceful stop -----------------------------------------------------------------------------


def test_grace_period_exceeds_the_drain() -> None:
    assert "OUTPLAN_DRAIN_SECONDS" in config(), "set the drain explicitly next to the grace period"
    drain = float(config()["OUTPLAN_DRAIN_SECONDS"])
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    assert grace > drain + 5, f"terminationGracePeriodSeconds {grace} leaves no margin over a {drain}s drain"


# --- workload shape ----------------------------------------------------------------------------


def test_pods_run_as_the_images_non_root_user() -> None:
    uid = dockerfile_uid()
    assert uid != 0
    for kind in ("Deployment", "Job"):
        pod = pod_spec(kind).get("securityContext", {})
        c = container(kind).get("securityContext", {})
        merged = {**pod, **c}
        assert merged.get("runAsNonRoot") is True, kind
        assert merged.get("runAsUser") == uid, kind
        assert c.get("readOnlyRootFilesystem") is True, kind
        assert c.get("allowPrivilegeEscalation") is False, kind


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_resources_have_requests_within_limits(kind: str) -> None:
    resources = container(kind)["resources"]
    for name in ("cpu", "memory"):
        request, limit = quantity(resources["requests"][name]), quantity(resources["limits"][name])
        assert 0 < request <= limit, f"{kind} {name}: request {request} limit {limit}"


def test_deployment_runs_two_replicas_the_budget_can_evict() -> None:
    deployment, pdb = k8s("Deployment"), k8s("PodDisruptionBudget")
    assert deployment["spec"]["replicas"] == 2
    assert pdb["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The Job's pod must not count towards the budget or the Service.
    job_labels = k8s("Job")["spec"]["template"]["metadata"]["labels"]
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= job_labels.items()


# --- the gateway -------------------------------------------------------------------------------


def test_the_gateway_runs_the_image_with_its_subcommand() -> None:
    c = container("Deployment", gateway=True)
    assert c["image"] == service("worker")["image"]
    assert c.get("args") == ["gateway"] and "command" not in c


def test_the_gateway_reads_its_own_configmap_and_secret_of_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = container("Deployment", gateway=True)
    refs = {(ref, src[ref]["name"]) for src in c["envFrom"] for ref in src}
    assert refs == {
        ("configMapRef", k8s("ConfigMap", gateway=True)["metadata"]["name"]),
        ("secretRef", k8s("Secret", gateway=True)["metadata"]["name"]),
    }
    values = {**config(gateway=True), **secret(gateway=True)}
    gateway_variables_are_settings({k: "gateway manifests" for k in values})
    settings = gateway_settings_from(values, monkeypatch)
    assert settings.verifies_tokens()
    assert "OUTPLAN_DATABASE_URL" not in values, "the gateway needs no database credentials"
    assert set(secret(gateway=True)) == {"OUTPLAN_AMQP_URL", "OUTPLAN_JWT_SECRET"}
    assert not {"OUTPLAN_AMQP_URL", "OUTPLAN_JWT_SECRET"} & set(config(gateway=True))
    assert all(isinstance(v, str) for v in config(gateway=True).values())


def test_the_gateways_probes_service_and_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = gateway_settings_from({**config(gateway=True), **secret(gateway=True)}, monkeypatch)
    c = container("Deployment", gateway=True)
    for probe, path in (("livenessProbe", LIVEZ), ("readinessProbe", READYZ)):
        assert c[probe]["httpGet"]["path"] == path
        assert named_port(c, c[probe]["httpGet"]["port"]) == settings.gateway_port
    svc = k8s("Service", gateway=True)
    labels = k8s("Deployment", gateway=True)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert named_port(c, port["targetPort"]) == settings.gateway_port
    grace = pod_spec("Deployment", gateway=True)["terminationGracePeriodSeconds"]
    assert grace > settings.gateway_timeout_seconds + 1
    # Neither selector takes the other's pods.
    assert not k8s("Service")["spec"]["selector"].items() <= labels.items()
    assert not k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    pdb = k8s("PodDisruptionBudget", gateway=True)["spec"]["selector"]["matchLabels"]
    assert pdb.items() <= labels.items()
    worker_labels = k8s("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not pdb.items() <= worker_labels.items()


def test_the_gateway_runs_as_the_images_non_root_user_within_limits() -> None:
    pod = pod_spec("Deployment", gateway=True).get("securityContext", {})
    c = container("Deployment", gateway=True)
    merged = {**pod, **c.get("securityContext", {})}
    assert merged.get("runAsNonRoot") is True and merged.get("runAsUser") == dockerfile_uid()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    for name in ("cpu", "memory"):
        assert 0 < quantity(c["resources"]["requests"][name]) <= quantity(c["resources"]["limits"][name])


# --- traces ------------------------------------------------------------------------------------


def test_trace_export_is_configured_with_the_standard_variables() -> None:
    data = config()
    assert data["OTEL_SERVICE_NAME"] == "outplan-worker"
    # Off until an operator names a collector; on, it must name one.
    assert data["OTEL_TRACES_EXPORTER"] in ("none", "otlp")
    if data["OTEL_TRACES_EXPORTER"] == "otlp":
        assert data["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith(("http://", "https://"))


def test_spans_name_their_pod_with_variables_defined_before_use() -> None:
    env = container("Deployment")["env"]
    names = [e["name"] for e in env]
    (attributes,) = [e["value"] for e in env if e["name"] == "OTEL_RESOURCE_ATTRIBUTES"]
    pairs = dict(kv.split("=", 1) for kv in attributes.split(","))
    assert {"k8s.pod.name", "k8s.namespace.name"} <= pairs.keys()
    for value in pairs.values():
        referenced = value.removeprefix("$(").removesuffix(")")
        # Kubernetes expands $(VAR) only from variables listed earlier in the same env.
        assert referenced in names[: names.index("OTEL_RESOURCE_ATTRIBUTES")], value
