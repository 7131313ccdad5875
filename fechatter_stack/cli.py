"""``fechatter`` / ``python -m fechatter_stack``: up, stop, status, logs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fechatter_stack.supervisor import Stack, StackError, StackOptions, data_dir_from_env, parse_replicas

if TYPE_CHECKING:
    from fechatter_stack.dev import Tmux


def _up(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.data_dir:
        env["FECHATTER_DATA_DIR"] = str(Path(args.data_dir).resolve())
    # FECHATTER_PG_DURABLE=0 turns off fsync: for throwaway test clusters only.
    durable = env.get("FECHATTER_PG_DURABLE", "1") != "0"
    infra_only = bool(getattr(args, "infra_only", False))
    try:
        replicas = parse_replicas(getattr(args, "replicas", None) or env.get("FECHATTER_REPLICAS", ""))
    except StackError as exc:
        print(f"fechatter: {exc}", file=sys.stderr)
        return 2
    stack = Stack(
        StackOptions(
            data_dir=data_dir_from_env(env),
            env=env,
            durable=durable,
            infra_only=infra_only,
            replicas=replicas,
        )
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        try:
            start = asyncio.create_task(stack.start())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                start.cancel()
                with contextlib.suppress(asyncio.CancelledError, StackError):
                    await start
                return 130
            stopper.cancel()
            url = start.result()
            if infra_only:
                _print_infra(stack, time.monotonic() - started)
            else:
                print(f"Fechatter is up: {url}  (started in {time.monotonic() - started:.1f}s)", flush=True)
            print(f"Logs: {stack.log_dir}   Stop: Ctrl-C or `make stop`", flush=True)
            watcher = asyncio.create_task(stack.watch())
            await stop.wait()
            watcher.cancel()
            return 0
        except StackError as exc:
            print(f"fechatter: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            print("Stopping Fechatter...", flush=True)
            await stack.stop()
            print("Stopped.", flush=True)

    return asyncio.run(main())


_CREDENTIALS = re.compile(r"(://[^:@/]*:)[^@]*@")


def _mask(key: str, value: str) -> str:
    if key == "JWT_SECRET" or "PASSWORD" in key or key.endswith("_KEY"):
        return "***"
    return _CREDENTIALS.sub(r"\1***@", value)


def _print_infra(stack: Stack, seconds: float) -> None:
    """What `fechatter up --infra-only` started, and the environment the services need to join it."""
    infra_names = ", ".join(f"{child.name} :{child.launch.port}" for child in stack.infra) or "external"
    print(f"Infrastructure is up ({infra_names}; migrations applied) in {seconds:.1f}s", flush=True)
    print(f"Service environment (with secrets, mode 0600): {stack.dev_env_path}")
    print(f"  load it with: set -a; . {stack.dev_env_path}; set +a")
    for key, value in stack.dev_env().items():
        print(f"  {key}={_mask(key, value)}")
    print(
        "Start a service with: python -m <fechatter_server|notify_server|bot_server|analytics_server|gateway>"
    )
    print(f"Gateway (once started): http://localhost:{stack.ports.get('gateway', 8080)}", flush=True)


def _db(args: argparse.Namespace) -> int:
    """Migrate (or reset) the database: $DATABASE_URL, or the embedded PostgreSQL started just for this."""
    env = dict(os.environ)
    if args.data_dir:
        env["FECHATTER_DATA_DIR"] = str(Path(args.data_dir).resolve())
    options = StackOptions(
        data_dir=data_dir_from_env(env), env=env, services=(), reset_database=args.action == "reset"
    )
    stack = Stack(options)

    async def main() -> int:
        try:
            await stack.start()
            print("Database reset and migrated." if args.action == "reset" else "Database migrated.")
            return 0
        except StackError as exc:
            print(f"fechatter: {exc}", file=sys.stderr)
            return 1
        finally:
            await stack.stop()

    return asyncio.run(main())


def _state(args: argparse.Namespace) -> tuple[Path, dict | None]:
    env = dict(os.environ)
    if args.data_dir:
        env["FECHATTER_DATA_DIR"] = str(Path(args.data_dir).resolve())
    path = data_dir_from_env(env) / "stack.json"
    if not path.exists():
        return path, None
    return path, json.loads(path.read_text())


def _stop(args: argparse.Namespace) -> int:
    import psutil

    path, state = _state(args)
    if state is None:
        print("Fechatter is not running (no state file).")
        return 0
    pid = state["supervisor_pid"]
    if not psutil.pid_exists(pid):
        print(f"Supervisor pid {pid} is gone; run `fechatter up` once to clean up leftovers.")
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        time.sleep(0.2)
    if psutil.pid_exists(pid) and not path.exists():
        pass
    print(
        "Fechatter stopped."
        if not path.exists()
        else "Stop requested; the supervisor is still shutting down."
    )
    return 0


def _memory(pid: int) -> int:
    """PSS of a process and its children: shared pages (PostgreSQL's buffers, libraries) counted once."""
    import psutil

    total = 0
    try:
        proc = psutil.Process(pid)
        for member in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                info = member.memory_full_info()
                total += getattr(info, "pss", info.rss)
    except psutil.Error:
        return 0
    return total


def _status(args: argparse.Namespace) -> int:
    import psutil

    _, state = _state(args)
    if state is None:
        print("Fechatter is not running.")
        return 1
    total = 0
    print(f"{'process':<18}{'pid':>8}{'port':>7}{'restarts':>10}{'mem MB':>9}  state")
    for name, child in state["children"].items():
        pid = child.get("pid") or 0
        alive = bool(pid) and psutil.pid_exists(pid)
        rss = _memory(pid) if alive else 0
        total += rss
        print(
            f"{name:<18}{pid:>8}{child['port']:>7}{child['restarts']:>10}{rss / 1e6:>9.1f}  "
            f"{'running' if alive else 'down'}"
        )
    print(f"{'total':<43}{total / 1e6:>9.1f}  (proportional set size, children included)")
    print(f"URL: {state['url']}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    log_dir = data_dir_from_env(env) / "logs"
    files = sorted(str(p) for p in log_dir.glob("*.log"))
    if not files:
        print(f"No logs in {log_dir}")
        return 1
    os.execvp("tail", ["tail", "-n", "50", *(["-F"] if args.follow else []), *files])


def _dev_tmux(args: argparse.Namespace) -> Tmux:
    from fechatter_stack.dev import Tmux  # imported only for the dev commands

    return Tmux(session=args.session, socket=args.socket or None)


def _dev(args: argparse.Namespace) -> int:
    from fechatter_stack.dev import DevError, dev_stop, dev_up, run_pane

    env = dict(os.environ)
    if args.data_dir:
        env["FECHATTER_DATA_DIR"] = str(Path(args.data_dir).resolve())
    data_dir = data_dir_from_env(env)
    try:
        if args.command == "dev":
            return dev_up(data_dir, _dev_tmux(args), env, attach=not args.no_attach)
        if args.command == "dev-stop":
            return dev_stop(data_dir, _dev_tmux(args))
        return run_pane(data_dir, args.role)
    except DevError as exc:
        print(f"fechatter: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s supervisor: %(message)s")
    for noisy in ("httpx", "httpcore", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="fechatter", description="Run Fechatter on this machine.")
    parser.add_argument("--data-dir", help="state directory (default ./data or $FECHATTER_DATA_DIR)")
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("up", help="start everything and stay in the foreground (default)")
    up.add_argument(
        "--infra-only",
        action="store_true",
        help="start PostgreSQL, NATS and Redis and migrate; print the environment for the services",
    )
    up.add_argument(
        "--replicas",
        help="instances of the chat API and notify on consecutive ports, e.g. chat=2,notify=2 "
        "(default $FECHATTER_REPLICAS)",
    )
    sub.add_parser("stop", help="stop a running stack")
    sub.add_parser("status", help="list processes, ports and memory")
    db = sub.add_parser("db", help="apply migrations, or reset the database")
    db.add_argument("action", choices=["upgrade", "reset"])
    logs = sub.add_parser("logs", help="show the logs of every process")
    logs.add_argument("-f", "--follow", action="store_true")
    for name, text in (
        ("dev", "development mode: a tmux session with the infrastructure and every service, auto-reloading"),
        ("dev-stop", "stop the development session and every process in it"),
    ):
        dev = sub.add_parser(name, help=text)
        dev.add_argument("--session", default="fechatter", help="tmux session name (default fechatter)")
        dev.add_argument("--socket", default="", help="tmux socket name (tmux -L); default: your tmux server")
        if name == "dev":
            dev.add_argument("--no-attach", action="store_true", help="do not attach to the session")
    pane = sub.add_parser("dev-pane")  # what `make dev` runs in each tmux pane
    pane.add_argument("role")
    args = parser.parse_args(argv)
    command = args.command or "up"
    handlers = {"up": _up, "stop": _stop, "status": _status, "logs": _logs, "db": _db}
    return handlers.get(command, _dev)(args)


if __name__ == "__main__":
    sys.exit(main())
