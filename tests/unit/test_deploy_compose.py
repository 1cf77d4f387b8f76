"""deploy/compose.yaml agrees with the worker's settings, the Dockerfile and the Kubernetes manifests."""

from urllib.parse import urlsplit

import pytest

from tests.support.deploy import (
    DEPLOY,
    ROOT,
    command,
    compose,
    compose_env,
    duration_seconds,
    gateway_settings_from,
    gateway_variables_are_settings,
    healthcheck_argv,
    metrics_port,
    outplan_variables_are_settings,
    service,
    setting_default,
    settings_from,
    yaml_documents,
    yaml_files,
)

pytestmark = pytest.mark.unit


def test_compose_yaml_and_every_other_file_outside_k8s_parse_to_mappings() -> None:
    files = [p for p in yaml_files() if p.parent != DEPLOY / "k8s"]
    assert DEPLOY / "compose.yaml" in files
    for path in files:
        docs = yaml_documents(path)
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"


# --- one image, the right commands -------------------------------------------------------------


def test_worker_and_migrate_use_one_tagged_image() -> None:
    image = service("worker")["image"]
    assert ":" in image and not image.endswith(":"), "tag the image so compose and k8s name the same one"
    assert service("migrate")["image"] == image


def test_the_image_is_built_from_the_repository_root() -> None:
    for name in ("worker", "migrate"):
        build = service(name)["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_each_service_runs_its_subcommand() -> None:
    assert command(service("worker").get("command")) == ["run"]
    assert command(service("migrate").get("command")) == ["migrate"]


# --- settings ----------------------------------------------------------------------------------


def test_every_outplan_variable_is_a_setting() -> None:
    named: dict[str, str] = {}
    for name, svc in compose()["services"].items():
        if name != "gateway":
            named.update({k: f"compose service {name}" for k in compose_env(svc)})
    outplan_variables_are_settings(named)
    gateway_variables_are_settings({k: "compose service gateway" for k in compose_env(service("gateway"))})


def test_the_gateway_runs_beside_the_worker_on_its_own_port(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = service("gateway")
    assert gateway["image"] == service("worker")["image"]
    assert command(gateway.get("command")) == ["gateway"]
    settings = gateway_settings_from(compose_env(gateway), monkeypatch)
    assert settings.verifies_tokens()
    assert settings.gateway_port != int(compose_env(service("worker"))["OUTPLAN_METRICS_PORT"])
    assert f"{settings.gateway_port}:{settings.gateway_port}" in [str(p) for p in gateway["ports"]]
    assert urlsplit(compose_env(gateway)["OUTPLAN_AMQP_URL"]).hostname in compose()["services"]
    assert healthcheck_argv(gateway["healthcheck"]["test"]) == ["outplan-worker", "check", "--gateway"]
    assert gateway["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert duration_seconds(gateway["stop_grace_period"]) > settings.gateway_timeout_seconds + 1


def test_worker_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(compose_env(service("worker")), monkeypatch)
    assert settings.metrics_port > 0, "the probes need the HTTP port on"


def test_urls_name_compose_services() -> None:
    env = compose_env(service("worker"))
    services = set(compose()["services"])
    assert urlsplit(env["OUTPLAN_AMQP_URL"]).hostname in services
    assert urlsplit(env["OUTPLAN_DATABASE_URL"]).hostname in services
    assert compose_env(service("migrate"))["OUTPLAN_DATABASE_URL"] == env["OUTPLAN_DATABASE_URL"]


def test_worker_uses_the_port_kubernetes_probes() -> None:
    env = compose_env(service("worker"))
    assert int(env.get("OUTPLAN_METRICS_PORT", setting_default("metrics_port"))) == metrics_port()


# --- graceful stop -----------------------------------------------------------------------------


def test_stop_grace_period_exceeds_the_drain() -> None:
    worker = service("worker")
    drain = float(compose_env(worker).get("OUTPLAN_DRAIN_SECONDS", setting_default("drain_seconds")))
    assert "stop_grace_period" in worker, "compose's default (10s) equals the default drain"
    assert duration_seconds(worker["stop_grace_period"]) > drain + 5


# --- start-up order and health -----------------------------------------------------------------


def test_worker_waits_for_healthy_services_and_the_migration() -> None:
    depends = service("worker")["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert service("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_migrate_runs_once() -> None:
    # Unquoted, YAML reads `no` as false, which compose refuses.
    assert service("migrate").get("restart") == "no"


def test_worker_replicas_and_healthcheck() -> None:
    worker = service("worker")
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker or all("9464:" not in str(p) for p in worker["ports"]), (
        "two replicas cannot bind one host port"
    )
    assert healthcheck_argv(worker["healthcheck"]["test"])[:2] == ["outplan-worker", "check"]


def test_infrastructure_healthchecks() -> None:
    rabbit, postgres = service("rabbitmq"), service("postgres")
    assert rabbit["image"].startswith("rabbitmq:3.13-management")
    assert healthcheck_argv(rabbit["healthcheck"]["test"])[0] == "rabbitmq-diagnostics"
    assert postgres["image"] == "postgres:15"
    assert healthcheck_argv(postgres["healthcheck"]["test"])[0] == "pg_isready"
    env = compose_env(postgres)
    assert "POSTGRES_PASSWORD" in env or env.get("POSTGRES_HOST_AUTH_METHOD") == "trust"
    volume = next(v.split(":")[0] for v in postgres["volumes"] if v.endswith("/var/lib/postgresql/data"))
    assert volume in (compose().get("volumes") or {}), "the database volume is not a named volume"


# --- traces ------------------------------------------------------------------------------------


def test_the_worker_exports_traces_to_a_viewer_listening_for_otlp_http() -> None:
    env = compose_env(service("worker"))
    assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_SERVICE_NAME"] == "outplan-worker"
    assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.scheme == "http" and endpoint.port == 4318
    host = endpoint.hostname or ""
    assert host in compose()["services"], "the OTLP endpoint is not a compose service"
    viewer = service(host)
    published = {str(p).split(":")[-1] for p in viewer.get("ports", [])}
    assert {"4318", "16686"} <= published, "OTLP/HTTP and the UI are not reachable from the host"
    assert service("worker")["depends_on"][host]["condition"] == "service_started"


def test_the_trace_viewer_is_a_pinned_jaeger_that_takes_otlp() -> None:
    image = service("jaeger")["image"]
    name, _, tag = image.partition(":")
    assert name in ("jaegertracing/jaeger", "jaegertracing/all-in-one") and tag and tag != "latest"
    if name == "jaegertracing/all-in-one":  # 1.x takes OTLP only when told to
        assert compose_env(service("jaeger")).get("COLLECTOR_OTLP_ENABLED") == "true"
