"""Process lifetime: a Granian worker must not outlive the Granian process that started it.

Granian's main process supervises its workers and stops them on a normal shutdown, but when it is killed
(``kill -9``, the OOM killer) its workers would go on serving from an orphaned process, holding the port, a
database pool and SSE streams, next to the instance the supervisor starts in its place. The kernel's
parent-death signal ends them with the SIGTERM of a normal shutdown instead."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """Have this process receive SIGTERM when its parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
