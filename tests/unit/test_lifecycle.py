"""A service raises its own open-file limit to hold its connections, never past the hard limit."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest


def limits_after(soft: int, connections: int) -> tuple[int, int, int]:
    """In a fresh process whose soft limit starts at ``soft``: (wanted, reported, actual soft limit)."""
    script = textwrap.dedent(
        f"""
        import resource
        from fechatter_core.lifecycle import raise_open_file_limit
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, hard))
        wanted, reported = raise_open_file_limit({connections})
        print(wanted, reported, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    wanted, reported, actual = map(int, out.stdout.split())
    return wanted, reported, actual


def test_the_soft_limit_is_raised_to_what_the_connections_need() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 3000:
        pytest.fail(f"this machine's hard open-file limit ({hard}) is too low to check anything")
    wanted, reported, actual = limits_after(256, 1500)
    assert wanted == 1500 + 1024
    assert reported == actual == wanted


def test_never_past_the_hard_limit_and_never_lowered() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.fail("an unlimited hard limit leaves nothing to check here")
    _, reported, actual = limits_after(256, hard * 2)
    assert reported == actual == hard
    # A soft limit already above the need stays where it was.
    _, reported, actual = limits_after(hard, 10)
    assert reported == actual == hard
