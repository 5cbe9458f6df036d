"""Print the runtime requirements of one pyproject extra, one per line, for `pip install -r`.

The image build installs dependencies before copying the code, so that a code change reuses the
dependency layer; this reads them from pyproject.toml alone (stdlib only: it runs on the base's
python3 before any virtual environment exists).

    python3 deploy/docker/requirements.py cpu
    python3 deploy/docker/requirements.py gpu --without-extras   # CUDA/cuDNN from the base image
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

EXTRAS = re.compile(r"\[[^\]]*\]")


def requirements(pyproject: Path, extra: str, *, without_extras: bool = False) -> list[str]:
    """The core dependencies plus those of `extra`, whose `pkg[a,b]` may be reduced to `pkg`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    if extra not in optional:
        raise SystemExit(f"no extra {extra!r} in {pyproject} (have: {', '.join(sorted(optional))})")
    chosen = [EXTRAS.sub("", r, count=1) if without_extras else r for r in optional[extra]]
    return [*project.get("dependencies", []), *chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", help="pyproject optional-dependency group, e.g. cpu or gpu")
    parser.add_argument("--without-extras", action="store_true", help="reduce the group's pkg[x] to pkg")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    args = parser.parse_args(argv)
    print("\n".join(requirements(args.pyproject, args.extra, without_extras=args.without_extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
