"""deploy/Dockerfile builds a small image that runs the worker as a fixed non-root user (no Docker
needed: the file is read as text)."""

import fnmatch
import json
import re
import shlex
import tomllib

import pytest

from tests.support.deploy import ROOT, dockerfile_stages, dockerfile_uid, instructions, setting_default

pytestmark = pytest.mark.unit

COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|python3?-dev|libpq-dev)\b", re.IGNORECASE)


def test_it_is_multi_stage_and_ends_on_python_slim() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0].split()[1] == "python:3.11-slim"
    builders = {ln.split()[-1] for ln in (s[0] for s in stages[:-1]) if " AS " in ln.upper()}
    sources = set(re.findall(r"--from=(\S+)", " ".join(instructions(final, "COPY"))))
    assert sources & builders, "the final stage copies nothing from a build stage"
    assert any("wheel" in r for s in stages[:-1] for r in instructions(s, "RUN")), "no wheel is built"


def test_the_final_stage_has_no_build_tools() -> None:
    final = "\n".join(dockerfile_stages()[-1][1:])
    assert not COMPILERS.search(final), COMPILERS.search(final)
    assert "apt-get install" not in final


def test_it_runs_as_a_fixed_non_root_uid() -> None:
    final = dockerfile_stages()[-1]
    users = instructions(final, "USER")
    assert users, "no USER: the image runs as root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "a numeric USER lets runAsNonRoot verify it"
    uid = dockerfile_uid()
    assert uid >= 1000
    created = [r for r in instructions(final, "RUN") if "useradd" in r]
    assert created and re.search(rf"--uid\s+{uid}\b", created[0]), "USER names a uid no useradd creates"


def test_entrypoint_command_port_and_healthcheck() -> None:
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


def test_the_image_carries_the_otel_extra_by_default() -> None:
    build = dockerfile_stages()[0]
    args = dict(a.split("=", 1) for a in instructions(build, "ARG") if "=" in a)
    assert args.get("EXTRA") == "otel"
    (export,) = [r for r in instructions(build, "RUN") if "uv export" in r]
    assert '${EXTRA:+--extra "$EXTRA"}' in export, "the ARG does not reach uv export"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (worker,) = [p for p in lock["package"] if p["name"] == "outplan-worker"]
    otel = {d["name"] for d in worker["optional-dependencies"]["otel"]}
    assert otel == {"opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"}
