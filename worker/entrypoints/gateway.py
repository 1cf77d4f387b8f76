"""``outplan-worker gateway``: load the gateway's settings and key, then serve until SIGTERM."""

import asyncio
import sys

import structlog

from .. import logs
from ..app import EX_CONFIG, Misconfigured
from ..settings import InvalidSettings

EXIT_USAGE = 2

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
        for line in exc.lines:
            print(f"outplan-worker: invalid setting {line}", file=sys.stderr)
        return EXIT_USAGE
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
        from .cli import _install_signals

        stop = asyncio.Event()
        _install_signals(stop)
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
