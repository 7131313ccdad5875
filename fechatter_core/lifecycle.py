"""Process lifetime: a Granian worker must not outlive the Granian process that started it.

Granian's main process supervises its workers and stops them on a normal shutdown, but when it is killed
(``kill -9``, the OOM killer) its workers would go on serving from an orphaned process, holding the port, a
database pool and SSE streams, next to the instance the supervisor starts in its place. The kernel's
parent-death signal ends them with the SIGTERM of a normal shutdown instead."""

from __future__ import annotations

import ctypes
import resource
import signal
import sys

_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """Have this process receive SIGTERM when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


# Descriptors a service needs besides its client connections: its pools, logs, NATS, Redis, files.
_SPARE_DESCRIPTORS = 1024


def raise_open_file_limit(connections: int) -> tuple[int, int]:
    """Raise this process's soft limit on open files (inherited by its workers) so that it can hold
    ``connections`` client connections: the usual soft default of 1,024 would refuse new connections
    (accept fails with EMFILE) long before notify's ten thousand streams. Never above the hard limit, which
    only the administrator can raise. Returns the (wanted, resulting) soft limit."""
    wanted = connections + _SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return wanted, soft
