"""What the suites that start servers of their own share (``tests/cluster``, ``tests/tls``).

Run as root, a server drops to the user its Debian package created (``rabbitmq``, ``postgres``):
PostgreSQL refuses to run as root, and RabbitMQ's folders belong to its user. Run as anyone
else, it runs as that user.
"""

import glob
import os
import pwd
import socket
from pathlib import Path
from typing import Any

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class ServerFailed(RuntimeError):
    """A server of a suite's own did not start or did not answer; the message holds its log's tail."""


def run_as(user: str) -> dict[str, Any]:
    """``subprocess`` arguments that run a server as ``user`` when this process is root, else as itself."""
    if os.geteuid() != 0:
        return {}
    return {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}


def own(path: Path, user: str) -> None:
    """Give ``path`` (recursively) to ``user`` when this process is root: the server writes there."""
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log, or a note that it was not written."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({path} not written)"


def pg_bin() -> Path:
    """The newest PostgreSQL server binaries installed (Debian: /usr/lib/postgresql/<major>/bin).

    :raises ServerFailed: when none is installed.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise ServerFailed("no /usr/lib/postgresql/*/bin/pg_ctl: install postgresql")
    return Path(found[-1]).parent
