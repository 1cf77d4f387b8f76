"""The deployment files as the deploy tests read them (deploy/compose.yaml, deploy/k8s/*.yaml,
deploy/Dockerfile), and the worker's settings they must agree with. No Docker needed."""

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.gateway.settings import GatewaySettings
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: The settings that hold credentials: in the Kubernetes Secret and nowhere else.
CREDENTIALS = {"OUTPLAN_AMQP_URL", "OUTPLAN_DATABASE_URL"}


# --- the worker's settings ---------------------------------------------------------------------


def setting_env_names() -> set[str]:
    """Every ``OUTPLAN_*`` variable the worker reads."""
    return {"OUTPLAN_" + name.upper() for name in Settings.model_fields}


def gateway_setting_env_names() -> set[str]:
    """Every ``OUTPLAN_*`` variable the gateway reads (worker/gateway/settings.py)."""
    return {"OUTPLAN_" + name.upper() for name in GatewaySettings.model_fields}


def gateway_variables_are_settings(named: dict[str, str]) -> None:
    """Of ``named`` (variable: where it is set), the ``OUTPLAN_*`` ones set the gateway's port
    explicitly, and each is a setting of worker/gateway/settings.py."""
    outplan = {k: where for k, where in named.items() if k.startswith("OUTPLAN_")}
    assert "OUTPLAN_GATEWAY_PORT" in outplan
    unknown = {k: where for k, where in outplan.items() if k not in gateway_setting_env_names()}
    assert not unknown, f"not settings of worker/gateway/settings.py: {unknown}"


def gateway_settings_from(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """The settings a gateway given only these ``OUTPLAN_*`` variables starts with."""
    for key in [k for k in os.environ if k.startswith("OUTPLAN_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    return GatewaySettings()


def setting_default(name: str) -> Any:
    """The default of the setting ``name`` (a field name of worker/settings.py)."""
    return Settings.model_fields[name].default


def outplan_variables_are_settings(named: dict[str, str]) -> None:
    """Of ``named`` (variable: where it is set), the ``OUTPLAN_*`` ones set the drain and the metrics
    port explicitly, and each is a setting of worker/settings.py."""
    outplan = {k: where for k, where in named.items() if k.startswith("OUTPLAN_")}
    assert {"OUTPLAN_DRAIN_SECONDS", "OUTPLAN_METRICS_PORT"} <= outplan.keys()
    unknown = {k: where for k, where in outplan.items() if k not in setting_env_names()}
    assert not unknown, f"not settings of worker/settings.py: {unknown}"


def settings_from(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a worker given only these ``OUTPLAN_*`` variables starts with; raises when a value
    would stop it from starting."""
    for key in [k for k in os.environ if k.startswith("OUTPLAN_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    return Settings()


def yaml_files() -> list[Path]:
    """Every YAML file under deploy/."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def yaml_documents(path: Path) -> list[Any]:
    """The documents of a YAML file, empty ones left out."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# --- compose -----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """deploy/compose.yaml."""
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    """The compose service ``name``."""
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"compose has no service {name!r}"
    found = services[name]
    assert isinstance(found, dict)
    return found


def compose_env(svc: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment, whether written as a list or a mapping."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def command(value: str | list[str] | None) -> list[str]:
    """A compose ``command`` (a string or a list) as an argv."""
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def healthcheck_argv(test: str | list[str]) -> list[str]:
    """A compose healthcheck ``test`` as the argv it runs."""
    argv = command(test)
    if argv[:1] == ["CMD-SHELL"]:
        return shlex.split(" ".join(argv[1:]))
    return argv[1:] if argv[:1] == ["CMD"] else argv


def duration_seconds(text: str | int | float) -> float:
    """A compose duration such as ``30s``, ``1m30s`` or ``1500ms``."""
    if isinstance(text, (int, float)):
        return float(text)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --- Kubernetes --------------------------------------------------------------------------------


def k8s_docs() -> list[dict[str, Any]]:
    """Every manifest in deploy/k8s/, in file order."""
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.y*ml")) for doc in yaml_documents(path)]


GATEWAY = "gateway"


def component(doc: dict[str, Any]) -> str | None:
    """A manifest's ``app.kubernetes.io/component`` label, if any."""
    labels: dict[str, str] = doc["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/component")


def k8s(kind: str, *, gateway: bool = False) -> dict[str, Any]:
    """The one manifest of ``kind``: the gateway's (component ``gateway``) with ``gateway``, else
    the worker's (any other)."""
    found = [d for d in k8s_docs() if d["kind"] == kind and (component(d) == GATEWAY) == gateway]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(kind: str, *, gateway: bool = False) -> dict[str, Any]:
    """The pod template's spec of a Deployment or Job (the gateway's with ``gateway``)."""
    spec: dict[str, Any] = k8s(kind, gateway=gateway)["spec"]["template"]["spec"]
    return spec


def container(kind: str, *, gateway: bool = False) -> dict[str, Any]:
    """The one container of a Deployment's or Job's pods (the gateway's with ``gateway``)."""
    containers = pod_spec(kind, gateway=gateway)["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def config(*, gateway: bool = False) -> dict[str, Any]:
    """The ConfigMap's data (the gateway's with ``gateway``)."""
    data: dict[str, Any] = k8s("ConfigMap", gateway=gateway).get("data") or {}
    return data


def secret(*, gateway: bool = False) -> dict[str, Any]:
    """The Secret's data and stringData together (the gateway's with ``gateway``)."""
    doc = k8s("Secret", gateway=gateway)
    data: dict[str, Any] = {**(doc.get("data") or {}), **(doc.get("stringData") or {})}
    return data


def metrics_port() -> int:
    """The port the worker listens on in Kubernetes: the ConfigMap's value, else the default."""
    return int(config().get("OUTPLAN_METRICS_PORT", setting_default("metrics_port")))


def named_port(c: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's ``port`` (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    matches = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert matches, f"no container port named {port!r}"
    return int(matches[0])


def quantity(value: str | int | float) -> float:
    """A resource quantity such as ``250m`` or ``256Mi`` as a number."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in sorted(suffixes.items(), key=lambda s: -len(s[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


# --- Dockerfile --------------------------------------------------------------------------------


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
    """The arguments of each ``keyword`` instruction (``RUN``, ``COPY``, ...) of a stage, in order."""
    return [ln.split(None, 1)[1] for ln in stage if ln.split(None, 1)[0].upper() == keyword]


def dockerfile_uid() -> int:
    """The uid the image runs as: its final stage's last ``USER``."""
    user = instructions(dockerfile_stages()[-1], "USER")[-1]
    return int(user.split(":")[0])
