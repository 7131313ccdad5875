"""``python -m fechatter_server.search reindex``: rebuild the Meilisearch index from PostgreSQL.

Reads ``fixtures/fechatter.yml`` like the chat API (so ``DATABASE_URL``, ``MEILI_URL`` and
``MEILI_MASTER_KEY`` apply), upserts every live message and removes deleted ones, then waits for
Meilisearch to finish. Searching keeps working meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from fechatter_core.config import ConfigError, load_config
from fechatter_core.db.engine import create_engine
from fechatter_core.settings import FechatterSettings
from fechatter_server.search.meili import MeiliClient, MeiliError, reindex


async def _reindex(settings: FechatterSettings, batch: int) -> int:
    engine = create_engine(settings.database)
    client = MeiliClient(settings.search)
    try:
        return await reindex(engine, client, batch=batch)
    finally:
        await client.close()
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fechatter_server.search")
    commands = parser.add_subparsers(dest="command", required=True)
    rebuild = commands.add_parser("reindex", help="rebuild the Meilisearch index from PostgreSQL")
    rebuild.add_argument("--batch", type=int, default=1000, help="messages per request (default 1000)")
    args = parser.parse_args(argv)
    try:
        settings = load_config("fechatter", FechatterSettings)
    except ConfigError as exc:
        print(f"reindex: configuration error: {exc}", file=sys.stderr)
        return 2
    if not settings.search.meili_url:
        print("reindex: search.meili_url (MEILI_URL) is not set", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_reindex(settings, args.batch))
    except MeiliError as exc:
        print(f"reindex: Meilisearch error: {exc}", file=sys.stderr)
        return 1
    print(f"reindex: {count} messages indexed into {settings.search.meili_index!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
