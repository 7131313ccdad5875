"""Container health check: exit 0 when the service that FECHATTER_SERVICE names answers 200 on /health
(for the all-in-one container, the gateway's /api/health/all). Only the standard library is used, so it
works in any stage of the image. An explicit URL may be given as the first argument."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

# service -> (port variable, default port, path)
TARGETS = {
    "all": ("GATEWAY_PORT", 8080, "/api/health/all"),
    "gateway": ("GATEWAY_PORT", 8080, "/health"),
    "fechatter_server": ("FECHATTER_PORT", 6688, "/health"),
    "notify_server": ("NOTIFY_PORT", 6687, "/health"),
    "bot_server": ("BOT_PORT", 6686, "/health"),
    "analytics_server": ("ANALYTICS_PORT", 6690, "/health"),
}


def health_url(environ: dict[str, str]) -> str:
    service = environ.get("FECHATTER_SERVICE", "all")
    var, default, path = TARGETS.get(service, TARGETS["all"])
    return f"http://127.0.0.1:{environ.get(var) or default}{path}"


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else health_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - a fixed loopback URL
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
