"""`ninserve predict`: send images to a running server, print the top-k, save the map PNGs.

ninserve predict cat.jpg dog.png --top-k 3 --maps out/
# out/cat.grid.png (all classes) and out/cat.<label>.png (each top-k class over the image)
"""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson

BAR = 24  # characters for a score of 1.0


def format_result(name: str, result: dict[str, Any]) -> str:
    model, image, timing = result["model"], result["image"], result["timing_ms"]
    lines = [
        f"{name}  {image['width']}x{image['height']}  model {model['name']}@{model['version']}  "
        f"{timing['total']:.1f} ms  id {result['id']}",
        f"  {'#':>2}  {'label':<14} {'score':>7}",
    ]
    for rank, entry in enumerate(result["top"], start=1):
        bar = "#" * round(entry["score"] * BAR)
        lines.append(f"  {rank:>2}  {entry['label']:<14} {entry['score']:>7.4f}  {bar}")
    return "\n".join(lines)


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('title', '')}: {body.get('detail', response.text)}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


def save_maps(client: httpx.Client, result: dict[str, Any], stem: str, directory: Path) -> list[Path]:
    """The labelled grid plus one overlay per top-k class; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    maps = result["maps"]
    wanted = [(maps["grid_url"], directory / f"{stem}.grid.png")]
    for entry in result["top"]:
        url = maps["png_url_template"].replace("{label}", str(entry["index"]))
        wanted.append((url, directory / f"{stem}.{entry['label']}.png"))
    written = []
    for url, path in wanted:
        response = client.get(url, params={"overlay": "true"})
        response.raise_for_status()
        path.write_bytes(response.content)
        written.append(path)
    return written


def predict(
    images: list[Path],
    *,
    url: str,
    top_k: int = 5,
    maps_dir: Path | None = None,
    as_json: bool = False,
    timeout: float = 60.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Classify each image; 0 when all succeeded, 1 when some failed, 2 when the server is unreachable."""
    out, err = out or sys.stdout, err or sys.stderr
    status = 0
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for path in images:
            try:
                data = path.read_bytes()
            except OSError as exc:
                print(f"{path}: {exc.strerror or exc}", file=err)
                status = 1
                continue
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                response = client.post(
                    "/v1/classify", params={"top_k": top_k}, files={"file": (path.name, data, media)}
                )
            except httpx.TransportError as exc:
                print(f"cannot reach {url}: {exc}", file=err)
                return 2
            if response.status_code != 200:
                print(f"{path}: {_problem(response)}", file=err)
                status = 1
                continue
            result = response.json()
            if as_json:
                print(orjson.dumps(result).decode(), file=out)
            else:
                print(format_result(str(path), result), file=out)
            if maps_dir is not None:
                try:
                    written = save_maps(client, result, path.stem, maps_dir)
                except httpx.HTTPError as exc:
                    print(f"{path}: could not fetch maps: {exc}", file=err)
                    status = 1
                    continue
                if not as_json:
                    print(f"  maps: {', '.join(str(p) for p in written)}", file=out)
    return status
