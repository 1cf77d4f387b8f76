"""Start and stop real ``outplan-worker gateway`` processes; mint tokens; run curl; read the tutorial."""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from tests.conftest import AMQP_URL
from tests.support.workers import WorkerNames, free_port

SECRET = "test-secret-" + "x" * 40  # HS256 wants at least 32 bytes (RFC 7518 §3.2)
TUTORIAL = Path(__file__).resolve().parents[1] / "data" / "outplan-tutorial.rst"
TUTORIAL_HOST = "https://api.voipbin.net"
TUTORIAL_TOKEN = "<YOUR_AUTH_TOKEN>"


def gateway_command() -> list[str]:
    """The ``outplan-worker`` console script, as the gateway is deployed."""
    script = shutil.which("outplan-worker", path=str(Path(sys.executable).parent)) or shutil.which(
        "outplan-worker"
    )
    assert script, "the outplan-worker console script is not installed"
    return [script, "gateway"]


@dataclass
class GatewayProcess:
    """One ``outplan-worker gateway`` process listening on ``port`` (127.0.0.1)."""

    env: dict[str, str]
    process: "subprocess.Popen[bytes]"
    log_path: Path
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def http_status(url: str) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def start_gateway(
    names: WorkerNames, log_dir: Path, *, ready: bool = True, seconds: float = 20, **settings: str
) -> GatewayProcess:
    """Start a gateway for the worker on ``names`` with ``settings`` as ``OUTPLAN_<NAME>`` variables
    (over an HS256 ``SECRET`` and the test broker), on a free port. Returns once ``/readyz`` says
    200 (``ready``) or once ``/livez`` answers; kills it and raises with its log otherwise."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OUTPLAN_")},
        **names.env(),
        "OUTPLAN_AMQP_URL": AMQP_URL,
        "OUTPLAN_JWT_SECRET": SECRET,
        "OUTPLAN_GATEWAY_HOST": "127.0.0.1",
        "OUTPLAN_GATEWAY_PORT": str(port),
        **{f"OUTPLAN_{k.upper()}": v for k, v in settings.items()},
    }
    log_path = log_dir / f"gateway-{uuid.uuid4().hex[:6]}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(gateway_command(), env=env, stdout=log, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(env, process, log_path, port)
    path = "/readyz" if ready else "/livez"
    deadline = time.monotonic() + seconds
    while http_status(gateway.base + path) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(10)
            raise RuntimeError(f"gateway did not answer 200 on {path}:\n{gateway.log()}")
        time.sleep(0.05)
    return gateway


def token(
    customer_id: uuid.UUID | str,
    *,
    seconds: int = 300,
    key: Any = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A JWT for ``customer_id`` expiring in ``seconds`` (negative: already expired)."""
    now = int(time.time())
    body = {"customer_id": str(customer_id), "iat": now, "exp": now + seconds, **claims}
    return jwt.encode(body, key, algorithm=algorithm)


@dataclass
class Answer:
    """What curl got: the HTTP status, the headers (lower-case names) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def curl(argv: list[str]) -> Answer:
    """Run ``curl`` with ``argv`` (its arguments, without ``curl``), adding only what reads the
    answer back: ``-s -S`` (quiet, errors shown), ``-D -`` (headers to stdout)."""
    result = subprocess.run(["curl", "-s", "-S", "-D", "-", *argv], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # curl's Expect: 100-continue on large bodies
        head, _, body = body.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    return Answer(int(status_line.split()[1]), headers, body)


@dataclass
class Example:
    """One example of the tutorial: its title, the curl command's arguments (without ``curl``, as
    the shell would split them) and the example response, parsed (None when it shows none)."""

    title: str
    argv: list[str]
    response: Any


def tutorial_examples(text: str | None = None) -> list[Example]:
    """The tutorial's examples in document order (``tests/data/outplan-tutorial.rst``)."""
    text = TUTORIAL.read_text() if text is None else text
    lines = text.splitlines()
    examples: list[Example] = []
    for i, line in enumerate(lines):
        if line.strip() != ".. code::":
            continue
        title = next(lines[j - 1] for j in range(i, 0, -1) if set(lines[j].strip()) == {"-"})
        block: list[str] = []
        for following in lines[i + 1 :]:
            if following.strip() and not following.startswith("    "):
                break
            block.append(following[4:])
        command_lines: list[str] = []
        rest = iter(block)
        for text_line in rest:
            if text_line.startswith("$ curl") or command_lines:
                command_lines.append(text_line)
                if not text_line.rstrip().endswith("\\") and _balanced("\n".join(command_lines)):
                    break
        shell = "\n".join(command_lines).removeprefix("$ ").replace("\\\n", " ")
        argv = shlex.split(shell)
        assert argv[0] == "curl"
        response_text = "\n".join(rest).strip()
        examples.append(
            Example(title.strip(), argv[1:], json.loads(response_text) if response_text else None)
        )
    return examples


def _balanced(shell: str) -> bool:
    try:
        shlex.split(shell.replace("\\\n", " "))
    except ValueError:  # a quote still open: the command goes on
        return False
    return True
