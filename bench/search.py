"""Search benchmark for the PostgreSQL engine (not a test).

    .venv/bin/python bench/search.py --admin-url postgresql://postgres:PW@127.0.0.1:15432/postgres \
        [--messages 1000000] [--chats 1000] [--write docs/benchmarks.md]

Creates a fresh database on that server, applies the migrations, loads ``--messages`` messages over
``--chats`` chats with COPY (English-like text with a Zipf word distribution, one message in ten in Chinese
or Japanese), then measures, through the same engine the API uses:

- query latency p50/p99 for a common word, a rare word, a filtered query (word + ``from:`` + ``after:``),
  a CJK word and a phrase, searching as a user who is a member of ``--member-chats`` chats;
- freshness lag (send committed → found by search) p99 while ``--writers`` tasks keep sending.

It prints a Markdown section (with the commit and the machine) and appends it to ``--write`` when given.
The database is dropped at the end unless ``--keep``; ``--database NAME`` measures again on a database an
earlier ``--keep`` run loaded (its name is printed), skipping the load, and keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fechatter_core.db.engine import async_url  # noqa: E402
from fechatter_core.security import AccessClaims  # noqa: E402
from fechatter_core.settings import SearchSettings  # noqa: E402
from fechatter_server.search.postgres import PostgresSearch  # noqa: E402
from fechatter_server.search.query import parse_query  # noqa: E402

WORDS = (  # noqa: SIM905
    "the deploy release build test server client message team meeting review plan update issue fix bug "
    "feature design api database cache queue search index query user account login logout password token "
    "network latency metric alert dashboard report weekly daily sprint backlog ticket merge branch commit "
    "rollback migrate schema table column row event stream consumer producer retry timeout error warning"
).split()
CJK = [
    "我们明天在北京开会讨论搜索功能",
    "请检查数据库的索引是否正确",
    "東京で来週ミーティングがあります",
    "新しいリリースのテストを始めます",
    "上海的服务器延迟有点高",
]
RARE = "zyxquartz"


def sentence(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(CJK) + " " + rng.choice(WORDS)
    n = rng.randint(4, 20)
    # Zipf-like: low indexes far more frequent
    return " ".join(WORDS[min(int(rng.paretovariate(1.2)) - 1, len(WORDS) - 1)] for _ in range(n))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_alembic(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini"), "upgrade", "head"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )


async def load(conn: asyncpg.Connection, args: argparse.Namespace, rng: random.Random) -> dict[str, int]:
    users = args.users
    await conn.execute(
        "INSERT INTO users (id, email, fullname)"
        " SELECT g, 'u' || g || '@b.test', 'U' || g FROM generate_series(1, $1) g",
        users,
    )
    await conn.execute("INSERT INTO workspaces (id, name, owner_id) VALUES (1, 'bench', 1)")
    await conn.execute(
        "INSERT INTO workspace_members (workspace_id, user_id) SELECT 1, g FROM generate_series(1, $1) g",
        users,
    )
    await conn.execute(
        "INSERT INTO chats (id, workspace_id, name, chat_type, owner_id) "
        "SELECT g, 1, 'c' || g, 'Group', 1 FROM generate_series(1, $1) g",
        args.chats,
    )
    members: set[tuple[int, int]] = set()
    for chat in range(1, args.chats + 1):
        for user in rng.sample(range(2, users + 1), min(9, users - 1)):
            members.add((chat, user))
    searcher_chats = rng.sample(range(1, args.chats + 1), min(args.member_chats, args.chats))
    members.update((chat, 1) for chat in searcher_chats)
    await conn.copy_records_to_table("chat_members", records=sorted(members), columns=["chat_id", "user_id"])
    chat_users: dict[int, list[int]] = {}
    for chat, user in members:
        chat_users.setdefault(chat, []).append(user)

    # The search indexes are built after the load (same result, much faster than maintaining them row by row).
    await conn.execute("DROP INDEX messages_content_trgm_idx")
    await conn.execute("DROP INDEX messages_search_tsv_idx")
    await conn.execute("DROP INDEX messages_search_pairs_idx")
    start = datetime.now(UTC) - timedelta(days=365)
    seqs = dict.fromkeys(range(1, args.chats + 1), 0)
    batch: list[tuple] = []
    rare_every = max(1, args.messages // 500)
    for i in range(1, args.messages + 1):
        chat = rng.randint(1, args.chats)
        seqs[chat] += 1
        content = sentence(rng)
        if i % rare_every == 0:
            content += " " + RARE
        created = start + timedelta(seconds=i * 365 * 86400 / args.messages)
        batch.append((i, chat, seqs[chat], rng.choice(chat_users[chat]), content, created))
        if len(batch) >= 50_000:
            await conn.copy_records_to_table(
                "messages",
                records=batch,
                columns=["id", "chat_id", "seq", "sender_id", "content", "created_at"],
            )
            batch.clear()
    if batch:
        await conn.copy_records_to_table(
            "messages", records=batch, columns=["id", "chat_id", "seq", "sender_id", "content", "created_at"]
        )
    await conn.execute("SELECT setval('messages_id_seq', $1)", args.messages)
    await conn.executemany("UPDATE chats SET last_seq = $2 WHERE id = $1", list(seqs.items()))
    await conn.execute("CREATE INDEX messages_content_trgm_idx ON messages USING gin (content gin_trgm_ops)")
    await conn.execute("CREATE INDEX messages_search_tsv_idx ON messages USING gin (search_tsv)")
    await conn.execute("CREATE INDEX messages_search_pairs_idx ON messages USING gin (search_pairs)")
    await conn.execute("VACUUM ANALYZE")
    return await describe(conn)


async def describe(conn: asyncpg.Connection) -> dict[str, int]:
    """What the queries need to know about a loaded database: read back, so a reused one gives the same."""
    searcher_chats = await conn.fetchval("SELECT count(*) FROM chat_members WHERE user_id = 1")
    sample_sender = await conn.fetchval(
        "SELECT min(user_id) FROM chat_members WHERE user_id <> 1"
        " AND chat_id = (SELECT min(chat_id) FROM chat_members WHERE user_id = 1)"
    )
    return {"searcher_chats": searcher_chats, "sample_sender": sample_sender}


async def measure(
    engine: PostgresSearch, caller: AccessClaims, q: str, runs: int
) -> tuple[float, float, int]:
    query = parse_query(q, SearchSettings(query_max_chars=4000))
    times = []
    hits = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        page = await engine.search(caller, query, chat_id=None, limit=20, offset=0)
        times.append((time.perf_counter() - t0) * 1000)
        hits = len(page.hits)
    return statistics.median(times), pct(times, 99), hits


async def freshness(
    url: str, engine: PostgresSearch, caller: AccessClaims, chats: list[int], args: argparse.Namespace
) -> list[float]:
    stop = asyncio.Event()
    pool = await asyncpg.create_pool(url, min_size=2, max_size=args.writers + 2)
    rng = random.Random(7)

    async def send(chat: int, content: str) -> None:
        async with pool.acquire() as conn, conn.transaction():
            seq = await conn.fetchval(
                "UPDATE chats SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", chat
            )
            await conn.execute(
                "INSERT INTO messages (chat_id, seq, sender_id, content) VALUES ($1, $2, 1, $3)",
                chat,
                seq,
                content,
            )

    async def writer() -> None:
        while not stop.is_set():
            await send(rng.choice(chats), sentence(rng))

    async with pool.acquire() as conn:
        loaded_up_to = await conn.fetchval("SELECT max(id) FROM messages")
    writers = [asyncio.create_task(writer()) for _ in range(args.writers)]
    lags = []
    try:
        for _ in range(args.freshness_probes):
            token = "fresh" + secrets.token_hex(5)
            await send(rng.choice(chats), f"probe {token}")
            sent = time.perf_counter()
            query = parse_query(token, SearchSettings())
            while not (await engine.search(caller, query, chat_id=None, limit=1, offset=0)).hits:
                await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - sent) * 1000)
    finally:
        stop.set()
        await asyncio.gather(*writers, return_exceptions=True)
        # The senders wrote only to the searching user's chats: left in place, they would be the newest
        # messages of the next run on a reused database and make every query look cheaper.
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM messages WHERE id > $1", loaded_up_to)
            await conn.execute("VACUUM ANALYZE messages")
        await pool.close()
    return lags


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return result.stdout.strip() + (" + uncommitted changes" if dirty else "")


def machine() -> str:
    mem = ""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    cpu = platform.processor() or platform.machine()
    system = f"{platform.system()} {platform.release()}"
    return f"{system}, {os.cpu_count()} CPUs ({cpu}){mem}, Python {platform.python_version()}"


async def main(args: argparse.Namespace) -> str:
    rng = random.Random(args.seed)
    load_before = os.getloadavg()[0]
    reuse = bool(args.database)
    name = args.database or f"bench_search_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.admin_url)
    if not reuse:
        await admin.execute(f'CREATE DATABASE "{name}"')
        print(f"database: {name}", file=sys.stderr)
    base = args.admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        load_s = 0.0
        if reuse:
            conn = await asyncpg.connect(url)
            info = await describe(conn)
        else:
            run_alembic(url)
            conn = await asyncpg.connect(url)
            t0 = time.perf_counter()
            info = await load(conn, args, rng)
            load_s = time.perf_counter() - t0
        server_version = await conn.fetchval("SHOW server_version")
        await conn.close()

        sa_engine = create_async_engine(async_url(url), pool_size=args.writers + 4)
        engine = PostgresSearch(sa_engine, snippet_context=80, rank_window=SearchSettings().rank_window)
        caller = AccessClaims(user_id=1, workspace_id=1, expires_at=2**31)
        recent = (datetime.now(UTC) - timedelta(days=90)).date()
        cases = [
            ("common word", "deploy"),
            ("two common words", "deploy server"),
            ("rare word", RARE),
            (
                "filtered",
                f"deploy from:{info['sample_sender']} after:{recent}",
            ),
            ("CJK (2 characters)", "北京"),
            ("CJK (4 characters)", "ミーティング"),
            ("phrase", '"release build"'),
            ("substring", "ploy"),
        ]
        rows = []
        for label, q in cases:
            p50, p99, hits = await measure(engine, caller, q, args.runs)
            rows.append(f"| {label} | `{q}` | {p50:.1f} | {p99:.1f} | {hits} |")
        async with sa_engine.connect() as c:
            member_chats = list(
                (await c.scalars(text("SELECT chat_id FROM chat_members WHERE user_id = 1"))).all()
            )
        lags = await freshness(url, engine, caller, member_chats, args)
        await sa_engine.dispose()
    finally:
        if not (args.keep or reuse):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    commit = git_commit()
    loaded = f"reused database `{name}`" if reuse else f"load (COPY + index build): {load_s:.0f} s"
    lines = [
        f"## Search (PostgreSQL engine): {args.messages:,} messages over {args.chats:,} chats",
        "",
        f"- Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{commit}`, PostgreSQL {server_version}",
        f"- Machine: {machine()}; load average at the start {load_before:.1f}",
        f"- Searching user: member of {info['searcher_chats']} chats; {args.runs} runs per query, limit 20,"
        f" through `PostgresSearch` in-process (no HTTP); {loaded}",
        "",
        "| query | q | p50 ms | p99 ms | hits |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Freshness (send committed → found by search) with {args.writers} concurrent senders, "
        f"{len(lags)} probes: p50 {statistics.median(lags):.1f} ms, p99 {pct(lags, 99):.1f} ms, "
        f"max {max(lags):.1f} ms.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ""), help="server to create the database on"
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--member-chats", type=int, default=50)
    # 200: with 50 runs the p99 is the second slowest run, which one scheduling hiccup decides.
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--freshness-probes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--database", help="measure on this database loaded by an earlier --keep run")
    parser.add_argument("--write", help="append the report to this Markdown file (e.g. docs/benchmarks.md)")
    arguments = parser.parse_args()
    if not arguments.admin_url:
        parser.error("--admin-url (or BENCH_ADMIN_URL) is required")
    report = asyncio.run(main(arguments))
    print(report)
    if arguments.write:
        path = Path(arguments.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("# Benchmarks\n\n")
        with path.open("a") as out:
            out.write("\n" + report)
