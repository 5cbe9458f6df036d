"""Container health probe: exit 0 when `/readyz` answers 200, 1 otherwise.

The images ship no curl or wget; this needs only the standard library. Docker's HEALTHCHECK and
the compose healthchecks run it; Kubernetes probes HTTP directly and does not need it.

    python3 /opt/ninserve/healthcheck.py [URL]     # default: http://127.0.0.1:$NINSERVE_PORT/readyz
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else f"http://127.0.0.1:{os.environ.get('NINSERVE_PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2.5) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
