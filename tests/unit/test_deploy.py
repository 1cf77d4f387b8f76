"""The deployment files agree with the worker's settings and with each other (no Docker needed)."""

import fnmatch
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from worker.observability import LIVEZ, METRICS, READYZ
from worker.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CREDENTIALS = {"OUTPLAN_AMQP_URL", "OUTPLAN_DATABASE_URL"}
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|python3?-dev|libpq-dev)\b", re.IGNORECASE)


def setting_env_names() -> set[str]:
    return {"OUTPLAN_" + name.upper() for name in Settings.model_fields}


def setting_default(name: str) -> Any:
    return Settings.model_fields[name].default


# --- loading -----------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.y*ml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def k8s(kind: str) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"compose has no service {name!r}"
    found = services[name]
    assert isinstance(found, dict)
    return found


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def healthcheck_argv(test: str | list[str]) -> list[str]:
    """A compose healthcheck ``test`` as the argv it runs."""
    argv = command(test)
    if argv[:1] == ["CMD-SHELL"]:
        return shlex.split(" ".join(argv[1:]))
    return argv[1:] if argv[:1] == ["CMD"] else argv


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = k8s(kind)["spec"]["template"]["spec"]
    return spec


def container(kind: str) -> dict[str, Any]:
    containers = pod_spec(kind)["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def config() -> dict[str, Any]:
    data: dict[str, Any] = k8s("ConfigMap").get("data") or {}
    return data


def secret() -> dict[str, Any]:
    doc = k8s("Secret")
    data: dict[str, Any] = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
    return data


def duration_seconds(text: str | int | float) -> float:
    """A compose duration such as ``30s``, ``1m30s`` or ``1500ms``."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), one list per stage."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[list[str]] = []
    for line in (ln.strip() for ln in joined.splitlines()):
        if not line:
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        assert stages, "instruction before the first FROM"
        stages[-1].append(line)
    return stages


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [ln.split(None, 1)[1] for ln in stage if ln.split(None, 1)[0].upper() == keyword]


def dockerfile_uid() -> int:
    user = instructions(dockerfile_stages()[-1], "USER")[-1]
    return int(user.split(":")[0])


def metrics_port() -> int:
    """The port the worker listens on in Kubernetes: the ConfigMap's value, else the default."""
    return int(config().get("OUTPLAN_METRICS_PORT", setting_default("metrics_port")))


def named_port(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert matches, f"no container port named {port!r}"
    return int(matches[0])


# --- YAML --------------------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = yaml_files()
    assert DEPLOY / "compose.yaml" in files
    assert any(p.parent == DEPLOY / "k8s" for p in files)
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        for doc in docs:
            assert isinstance(doc, dict), f"{path}: a document is not a mapping"
            if path.parent.name == "k8s":
                assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path}: not a manifest"
                assert doc["metadata"].get("name"), f"{path}: {doc['kind']} without a name"


def test_k8s_holds_every_kind_once() -> None:
    kinds = sorted(d["kind"] for d in k8s_docs())
    assert kinds == sorted(["ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Job", "Service"])


# --- one image, the right commands -------------------------------------------------------------


def test_compose_and_k8s_use_one_image() -> None:
    image = service("worker")["image"]
    assert ":" in image and not image.endswith(":"), "tag the image so compose and k8s name the same one"
    assert service("migrate")["image"] == image
    assert container("Deployment")["image"] == image
    assert container("Job")["image"] == image


def test_compose_builds_the_image_from_the_repository_root() -> None:
    for name in ("worker", "migrate"):
        build = service(name)["build"]
        assert (DEPLOY / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_each_workload_runs_its_subcommand() -> None:
    assert command(service("worker").get("command")) == ["run"]
    assert command(service("migrate").get("command")) == ["migrate"]
    assert container("Deployment").get("args") == ["run"]
    assert container("Job").get("args") == ["migrate"]
    for kind in ("Deployment", "Job"):
        assert "command" not in container(kind), f"{kind} must keep the image's ENTRYPOINT"


# --- settings ----------------------------------------------------------------------------------


def test_every_outplan_variable_is_a_setting() -> None:
    named: dict[str, str] = {}
    for name, svc in compose()["services"].items():
        named.update({k: f"compose service {name}" for k in compose_env(svc)})
    named.update({k: "ConfigMap" for k in config()})
    named.update({k: "Secret" for k in secret()})
    for kind in ("Deployment", "Job"):
        named.update({e["name"]: kind for e in container(kind).get("env", [])})
    outplan = {k: where for k, where in named.items() if k.startswith("OUTPLAN_")}
    assert {"OUTPLAN_DRAIN_SECONDS", "OUTPLAN_METRICS_PORT"} <= outplan.keys()
    unknown = {k: where for k, where in outplan.items() if k not in setting_env_names()}
    assert not unknown, f"not settings of worker/settings.py: {unknown}"


@pytest.mark.parametrize("source", ["ConfigMap+Secret", "compose worker"])
def test_configured_values_are_valid_settings(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {**config(), **secret()} if source == "ConfigMap+Secret" else compose_env(service("worker"))
    for key in [k for k in os.environ if k.startswith("OUTPLAN_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()  # raises when a value would not start the worker
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


def test_compose_urls_name_compose_services() -> None:
    env = compose_env(service("worker"))
    services = set(compose()["services"])
    assert urlsplit(env["OUTPLAN_AMQP_URL"]).hostname in services
    assert urlsplit(env["OUTPLAN_DATABASE_URL"]).hostname in services
    assert compose_env(service("migrate"))["OUTPLAN_DATABASE_URL"] == env["OUTPLAN_DATABASE_URL"]


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


def test_compose_worker_uses_the_same_port() -> None:
    env = compose_env(service("worker"))
    assert int(env.get("OUTPLAN_METRICS_PORT", setting_default("metrics_port"))) == metrics_port()


# --- graceful stop -----------------------------------------------------------------------------


def test_k8s_grace_period_exceeds_the_drain() -> None:
    assert "OUTPLAN_DRAIN_SECONDS" in config(), "set the drain explicitly next to the grace period"
    drain = float(config()["OUTPLAN_DRAIN_SECONDS"])
    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    assert grace > drain + 5, f"terminationGracePeriodSeconds {grace} leaves no margin over a {drain}s drain"


def test_compose_stop_grace_period_exceeds_the_drain() -> None:
    worker = service("worker")
    drain = float(compose_env(worker).get("OUTPLAN_DRAIN_SECONDS", setting_default("drain_seconds")))
    assert "stop_grace_period" in worker, "compose's default (10s) equals the default drain"
    assert duration_seconds(worker["stop_grace_period"]) > drain + 5


# --- Kubernetes workload shape -----------------------------------------------------------------


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


def quantity(value: str | int | float) -> float:
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(suffixes.items(), key=lambda s: -len(s[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


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


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_ends_on_python_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0].split()[1] == "python:3.11-slim"
    builders = {ln.split()[-1] for ln in (s[0] for s in stages[:-1]) if " AS " in ln.upper()}
    sources = set(re.findall(r"--from=(\S+)", " ".join(instructions(final, "COPY"))))
    assert sources & builders, "the final stage copies nothing from a build stage"
    assert any("wheel" in r for s in stages[:-1] for r in instructions(s, "RUN")), "no wheel is built"


def test_dockerfile_final_stage_has_no_build_tools() -> None:
    final = "\n".join(dockerfile_stages()[-1][1:])
    assert not COMPILERS.search(final), COMPILERS.search(final)
    assert "apt-get install" not in final


def test_dockerfile_runs_as_a_fixed_non_root_uid() -> None:
    final = dockerfile_stages()[-1]
    users = instructions(final, "USER")
    assert users, "no USER: the image runs as root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "a numeric USER lets runAsNonRoot verify it"
    uid = dockerfile_uid()
    assert uid >= 1000
    created = [r for r in instructions(final, "RUN") if "useradd" in r]
    assert created and re.search(rf"--uid\s+{uid}\b", created[0]), "USER names a uid no useradd creates"


def test_dockerfile_entrypoint_command_port_and_healthcheck() -> None:
    final = dockerfile_stages()[-1]
    assert json.loads(instructions(final, "ENTRYPOINT")[-1]) == ["outplan-worker"]
    assert json.loads(instructions(final, "CMD")[-1]) == ["run"]
    exposed = {int(p.split("/")[0]) for e in instructions(final, "EXPOSE") for p in e.split()}
    assert setting_default("metrics_port") in exposed
    (health,) = instructions(final, "HEALTHCHECK")
    probe = health.split(" CMD ", 1)[1].strip()
    argv = json.loads(probe) if probe.startswith("[") else shlex.split(probe)
    assert argv[:2] == ["outplan-worker", "check"]


def test_dockerignore_keeps_the_sources_and_drops_the_rest() -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for must_skip in (".git", ".venv", "bench"):
        assert must_skip in patterns, must_skip
    build = dockerfile_stages()[0]
    sources = [part for c in instructions(build, "COPY") if "--from" not in c for part in c.split()[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file"
        ignored = [p for p in patterns if fnmatch.fnmatch(src, p) or src.startswith(p.rstrip("/") + "/")]
        assert not ignored, f"COPY {src} is excluded by .dockerignore {ignored}"


# --- compose -----------------------------------------------------------------------------------


def test_compose_worker_waits_for_healthy_services_and_the_migration() -> None:
    depends = service("worker")["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert service("migrate")["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_compose_migrate_runs_once() -> None:
    # Unquoted, YAML reads `no` as false, which compose refuses.
    assert service("migrate").get("restart") == "no"


def test_compose_worker_replicas_and_healthcheck() -> None:
    worker = service("worker")
    assert worker["deploy"]["replicas"] == 2
    assert "ports" not in worker or all("9464:" not in str(p) for p in worker["ports"]), (
        "two replicas cannot bind one host port"
    )
    assert healthcheck_argv(worker["healthcheck"]["test"])[:2] == ["outplan-worker", "check"]


def test_compose_infrastructure_healthchecks() -> None:
    rabbit, postgres = service("rabbitmq"), service("postgres")
    assert rabbit["image"].startswith("rabbitmq:3.13-management")
    assert healthcheck_argv(rabbit["healthcheck"]["test"])[0] == "rabbitmq-diagnostics"
    assert postgres["image"] == "postgres:15"
    assert healthcheck_argv(postgres["healthcheck"]["test"])[0] == "pg_isready"
    env = compose_env(postgres)
    assert "POSTGRES_PASSWORD" in env or env.get("POSTGRES_HOST_AUTH_METHOD") == "trust"
    volume = next(v.split(":")[0] for v in postgres["volumes"] if v.endswith("/var/lib/postgresql/data"))
    assert volume in (compose().get("volumes") or {}), "the database volume is not a named volume"
