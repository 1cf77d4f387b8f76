"""The Kubernetes manifests (deploy/k8s/) agree with the worker's settings, the image and each other."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.deploy import (
    CREDENTIALS,
    DEPLOY,
    GATEWAY,
    MIGRATE,
    WORKER,
    component,
    config,
    container,
    dockerfile_uid,
    env_from,
    gateway_settings_from,
    gateway_variables_are_settings,
    k8s,
    k8s_docs,
    metrics_port,
    mounting_volume,
    named_port,
    outplan_variables_are_settings,
    pod_spec,
    postgres_url,
    quantity,
    secret,
    secret_manifest,
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
    # Two Secrets: the workers' and the migrate Job's, told apart by their component.
    kinds = ["ConfigMap", "Secret", "Secret", "Deployment", "PodDisruptionBudget", "Job", "Service"]
    assert worker == sorted(kinds)
    secrets = [component(d) for d in k8s_docs() if d["kind"] == "Secret" and component(d) != GATEWAY]
    assert sorted(s or "" for s in secrets) == sorted([WORKER, MIGRATE])
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
    named.update({k: "migrate Secret" for k in secret(migrate=True)})
    for kind in ("Deployment", "Job"):
        named.update({e["name"]: kind for e in container(kind).get("env", [])})
    outplan_variables_are_settings(named)


def test_configmap_and_secret_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from({**config(), **secret()}, monkeypatch)
    assert settings.metrics_port > 0, "the probes need the HTTP port on"
    settings_from({**config(), **secret(migrate=True)}, monkeypatch)


def test_credentials_live_in_the_secrets_only() -> None:
    assert set(secret()) == CREDENTIALS
    # Migrating touches the database only: the Job gets no broker credentials.
    assert set(secret(migrate=True)) == {"OUTPLAN_DATABASE_URL"}
    assert not CREDENTIALS & set(config())
    for kind in ("Deployment", "Job"):
        literal = {e["name"] for e in container(kind).get("env", [])}
        assert not CREDENTIALS & literal, f"{kind} spells out a credential"


def test_configmap_values_are_strings() -> None:
    # The API server rejects numbers and booleans in a ConfigMap's data.
    assert all(isinstance(v, str) for v in config().values()), config()


def test_the_deployment_reads_the_workers_secret_and_the_job_the_owners() -> None:
    configmap = ("configMapRef", k8s("ConfigMap")["metadata"]["name"])
    workers = ("secretRef", secret_manifest()["metadata"]["name"])
    owners = ("secretRef", secret_manifest(migrate=True)["metadata"]["name"])
    assert workers != owners
    assert env_from("Deployment") == {configmap, workers}, "a worker must never hold the owner's role"
    assert env_from("Job") == {configmap, owners}


# --- the production topology: a broker cluster, an HA database, TLS, least privilege ------------

#: The Deployments and the Job, as ``container``/``mounting_volume`` name them.
WORKLOADS = [("Deployment", False), ("Job", False), ("Deployment", True)]


def _mounted_read_only_from_a_secret(kind: str, path: str, *, gateway: bool = False) -> str:
    """Asserts ``path`` lies on a read-only mount of a Secret volume; returns the Secret's name."""
    mount, volume = mounting_volume(kind, path, gateway=gateway)
    where = f"{kind}{' (gateway)' if gateway else ''}: {path}"
    assert mount.get("readOnly") is True, f"{where} is not mounted read-only"
    assert "secret" in volume, f"{where} does not come from a Secret"
    name: str = volume["secret"]["secretName"]
    return name


@pytest.mark.parametrize("gateway", [False, True], ids=["worker", "gateway"])
def test_the_broker_is_every_node_of_a_cluster_over_verified_tls(
    gateway: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if gateway:
        urls = gateway_settings_from({**config(gateway=True), **secret(gateway=True)}, monkeypatch).amqp_urls
    else:
        urls = settings_from({**config(), **secret()}, monkeypatch).amqp_urls
    assert len(urls) == 3, "list the three nodes of the RabbitMQ cluster"
    parsed = [urlsplit(u) for u in urls]
    assert len({p.hostname for p in parsed}) == 3, "each URL names another node"
    assert all(p.scheme == "amqps" for p in parsed), "every node over TLS"
    queries = [parse_qs(p.query, strict_parsing=True) for p in parsed]
    # aio-pika reads some parameters from the first URL only: the same ones on every URL.
    assert all(q == queries[0] for q in queries)
    query = queries[0]
    assert "no_verify_ssl" not in query
    (cafile,) = query["cafile"]
    mounted = {_mounted_read_only_from_a_secret("Deployment", cafile, gateway=gateway)}
    for path in query.get("certfile", []) + query.get("keyfile", []):
        mounted.add(_mounted_read_only_from_a_secret("Deployment", path, gateway=gateway))
    assert len(mounted) == 1, "the CA and any client certificate come from one Secret"


def test_the_database_is_the_primary_of_an_ha_cluster_over_verified_tls() -> None:
    for migrate, kind in ((False, "Deployment"), (True, "Job")):
        _, hosts, database, query = postgres_url(secret(migrate=migrate)["OUTPLAN_DATABASE_URL"])
        assert hosts and database, kind
        # A standby (or a primary just demoted) is refused, whatever the service or host list says.
        assert query.get("target_session_attrs") == "read-write", kind
        assert query.get("sslmode") == "verify-full", f"{kind}: verify the server and its host name"
        assert "sslrootcert" in query, kind
        _mounted_read_only_from_a_secret(kind, query["sslrootcert"])


def test_the_worker_and_the_migration_use_one_database_as_different_roles() -> None:
    worker = postgres_url(secret()["OUTPLAN_DATABASE_URL"])
    owner = postgres_url(secret(migrate=True)["OUTPLAN_DATABASE_URL"])
    assert worker[1:] == owner[1:], "the Job must migrate the database the workers use"
    assert worker[0] and owner[0]
    assert worker[0] != owner[0], "the workers connect as a role of their own, not the schema's owner"
    # The role deploy/postgres/grants.sql is run for (its -v worker_role=...).
    grants = (DEPLOY / "postgres" / "grants.sql").read_text()
    assert f"worker_role={worker[0]}" in grants


@pytest.mark.parametrize(("kind", "gateway"), WORKLOADS, ids=["worker", "migrate", "gateway"])
def test_the_tls_secret_is_mounted_read_only_and_the_root_stays_read_only(kind: str, gateway: bool) -> None:
    c = container(kind, gateway=gateway)
    tls = [m for m in c["volumeMounts"] if m["mountPath"].startswith("/etc/outplan/")]
    assert tls, f"{kind}: no TLS files mounted"
    for mount in tls:
        assert mount.get("readOnly") is True, mount
    volumes = {v["name"]: v for v in pod_spec(kind, gateway=gateway)["volumes"]}
    for mount in tls:
        secret_volume = volumes[mount["name"]]["secret"]
        # Readable by the image's user through the pod's fsGroup, by no one else.
        assert secret_volume.get("defaultMode") == 0o440, secret_volume
        assert pod_spec(kind, gateway=gateway)["securityContext"].get("fsGroup") == dockerfile_uid()
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    # The workers' TLS Secret may hold their client key: the gateway mounts a Secret of its own.
    if gateway:
        names = {volumes[m["name"]]["secret"]["secretName"] for m in tls}
        worker_volumes = {v["name"]: v for v in pod_spec("Deployment")["volumes"]}
        worker_names = {v["secret"]["secretName"] for v in worker_volumes.values() if "secret" in v}
        assert not names & worker_names


def test_the_worker_only_checks_the_topology_the_broker_operator_imports() -> None:
    assert config()["OUTPLAN_TOPOLOGY"] == "passive", "the worker's broker user has no configure permission"
    definitions = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    assert definitions["exchanges"] and definitions["queues"] and definitions["bindings"]


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
    assert env_from("Deployment", gateway=True) == {
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
