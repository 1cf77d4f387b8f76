"""``outplan-worker gateway``: load the gateway's settings and key, then serve until SIGTERM."""

import asyncio
import sys
import urllib.error
import urllib.request

import structlog

from .. import logs
from ..observability import LIVEZ, READYZ
from ..refusals import EX_CONFIG, Misconfigured
from ..settings import InvalidSettings

log = structlog.get_logger("outplan_worker.gateway")


def gateway() -> int:
    """Run the gateway; the exit code: 0 after a stop, 2 for invalid settings, 78 (``EX_CONFIG``)
    without a key to verify tokens with, with a key it cannot use, without the ``gateway`` extra
    (PyJWT), when the port cannot be had, or when the broker refuses the login."""
    try:
        from ..gateway.app import serve
        from ..gateway.auth import KeyProblem, Verifier
        from ..gateway.settings import load
    except ImportError as exc:
        print(
            f"outplan-worker gateway: {exc.name} is missing: install the gateway extra "
            "(pip install 'outplan-worker[gateway]')",
            file=sys.stderr,
        )
        return EX_CONFIG
    try:
        settings = load()
    except InvalidSettings as exc:
        return exc.report("outplan-worker")
    logs.configure(settings.log_level)
    try:
        verifier = Verifier.from_settings(settings)
    except KeyProblem as exc:
        log.error(f"cannot start: {exc}", exit_code=EX_CONFIG)
        return EX_CONFIG
    if settings.uvloop:
        import uvloop

        uvloop.install()

    async def main() -> None:
        from .cli import install_signals

        stop = asyncio.Event()
        install_signals(stop)
        await serve(settings, verifier, stop)

    try:
        asyncio.run(main())
    except Misconfigured as exc:
        log.error(f"cannot start: {exc}", exit_code=EX_CONFIG)
        return EX_CONFIG
    except OSError as exc:
        log.error(
            f"cannot listen on {settings.gateway_host}:{settings.gateway_port}: {exc}", exit_code=EX_CONFIG
        )
        return EX_CONFIG
    return 0


def check_gateway(*, live: bool) -> int:
    """``outplan-worker check --gateway``: ask the local gateway's /readyz (or /livez with ``live``)
    on 127.0.0.1 at ``OUTPLAN_GATEWAY_PORT``; 0 when it answers 200 (its JSON printed), 1 otherwise
    (the reason on stderr), 2 for invalid settings."""
    from ..gateway.settings import load

    try:
        settings = load()
    except InvalidSettings as exc:
        return exc.report("outplan-worker")
    url = f"http://127.0.0.1:{settings.gateway_port}{LIVEZ if live else READYZ}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(), file=sys.stderr)
    except OSError as exc:
        print(f"check: no gateway answers on port {settings.gateway_port}: {exc}", file=sys.stderr)
    return 1
