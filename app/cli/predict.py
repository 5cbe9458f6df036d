"""`ninserve predict`: images and folders of images through a running server's v1 API.

    ninserve predict app/web/samples/cat.jpg --top-k 3 --maps maps/
    ninserve predict photos/ --out results.csv          # every image under photos/, batched
    ninserve predict photo.jpg --model shapes:2          # a repository model, one version

One image goes to POST /v1/classify; several (or a folder, searched recursively) go to POST
/v1/classify/batch in chunks the server accepts, with a progress bar on a terminal. Results
print as a small table per image, as JSON lines (--json), or into a CSV or JSON file (--out).
--maps saves each image's grid of all classes and an overlay per top-k class as PNGs.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
import orjson
from tqdm import tqdm

from app.cli.reach import Unreachable, preflight, transport_message
from app.client.v1 import ApiError, Client

BAR = 24  # characters for a score of 1.0
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
OUT_FORMATS = (".csv", ".json")


def collect(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to the images under them (sorted, recursively)."""
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


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


def error_text(entry: dict[str, Any]) -> str:
    problem = entry.get("error") or {}
    status = entry.get("status") or "not sent"
    return f"{status} {problem.get('title', '')}: {problem.get('detail', '')}".replace(" :", ":")


def map_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct file-name stem per image: `cat` for cat.jpg, `a-cat`/`b-cat` for a/cat.jpg
    and b/cat.png given together."""
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    common = Path(os.path.commonpath([p.parent.absolute() for p in paths]))
    stems = ["-".join(p.absolute().with_suffix("").relative_to(common).parts) for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return unique


def save_maps(client: Client, result: dict[str, Any], stem: str, directory: Path) -> list[Path]:
    """The labelled grid plus one overlay per top-k class; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / f"{stem}.grid.png"]
    written[0].write_bytes(client.grid_png(result, overlay=True))
    for entry in result["top"]:
        path = directory / f"{stem}.{entry['label']}.png"
        path.write_bytes(client.map_png(result, entry["index"], overlay=True))
        written.append(path)
    return written


def write_table(path: Path, files: Sequence[Path], entries: Sequence[dict[str, Any]]) -> None:
    """CSV: one row per image (top-1, the top-k, every class's score, id, error); JSON: a list
    of {file, status, result | error} with the API's full result."""
    if path.suffix.lower() == ".json":
        rows = [
            {"file": str(f), "status": e["status"]}
            | ({"result": e["result"]} if "result" in e else {})
            | ({"error": e["error"]} if e.get("error") else {})
            for f, e in zip(files, entries, strict=True)
        ]
        path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return
    classes = next((list(e["result"]["scores"]) for e in entries if e.get("result")), [])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "status", "label", "score", "top", *classes, "model_version", "id", "error"])
        for file, entry in zip(files, entries, strict=True):
            result = entry.get("result")
            if result is None:
                blank = [""] * (3 + len(classes) + 2)
                writer.writerow([file, entry["status"], *blank, error_text(entry)])
                continue
            top = result["top"]
            writer.writerow(
                [
                    file,
                    entry["status"],
                    top[0]["label"],
                    f"{top[0]['score']:.6f}",
                    " ".join(f"{t['label']}:{t['score']:.4f}" for t in top),
                    *(f"{result['scores'][c]:.6f}" for c in classes),
                    result["model"]["version"],
                    result["id"],
                    "",
                ]
            )


def predict(
    inputs: Sequence[Path],
    *,
    url: str,
    top_k: int = 5,
    maps_dir: Path | None = None,
    out_path: Path | None = None,
    as_json: bool = False,
    timeout: float = 60.0,
    model: str | None = None,
    version: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """0 when every image succeeded, 1 when some failed, 2 when there is nothing to do or the
    server cannot be reached."""
    out, err = out or sys.stdout, err or sys.stderr
    if not url.lower().startswith(("http://", "https://")):  # httpx would call it "unreachable"
        print(f"ninserve predict: the URL {url} lacks http:// or https:// (e.g. http://{url})", file=err)
        return 2
    files = collect(inputs)
    if not files:
        print(f"ninserve predict: no images in {', '.join(map(str, inputs))}", file=err)
        return 2
    if out_path is not None and out_path.suffix.lower() not in OUT_FORMATS:
        print(f"ninserve predict: --out must end in {' or '.join(OUT_FORMATS)}: {out_path}", file=err)
        return 2
    with Client(url, model=model, version=version, timeout=timeout) as client:
        try:
            preflight(client, url, model, version)
            entries = _classify(client, files, top_k, err)
        except Unreachable as exc:
            print(f"ninserve predict: {exc}", file=err)
            return 2
        except httpx.TransportError as exc:
            print(f"ninserve predict: {transport_message(url, exc)}", file=err)
            return 2
        except ApiError as exc:
            print(f"ninserve predict: {exc}", file=err)
            return 1
        failed = 0
        rows = zip(files, entries, map_stems(files), strict=True)
        quiet = out_path is not None and maps_dir is not None and len(files) > 1  # a bar, not tables
        bar = tqdm(rows, total=len(files), desc="maps", file=err, disable=None if quiet else True)
        for file, entry, stem in bar:
            result = entry.get("result")
            if result is None:
                print(f"{file}: {error_text(entry)}", file=err)
                failed += 1
                continue
            if as_json:
                print(orjson.dumps({"file": str(file)} | result).decode(), file=out)
            elif out_path is None:
                print(format_result(str(file), result), file=out)
            if maps_dir is not None:
                try:
                    written = save_maps(client, result, stem, maps_dir)
                except (ApiError, httpx.HTTPError) as exc:
                    print(f"{file}: could not fetch maps: {exc}", file=err)
                    failed += 1
                    continue
                if not as_json and out_path is None:
                    print(f"  maps: {', '.join(str(p) for p in written)}", file=out)
    if out_path is not None:
        write_table(out_path, files, entries)
        ok = sum(1 for e in entries if e.get("result"))
        print(f"wrote {out_path}: {ok} of {len(files)} images classified", file=out)
        if maps_dir is not None:
            print(f"maps in {maps_dir}/", file=out)
    return 1 if failed else 0


def _classify(client: Client, files: Sequence[Path], top_k: int, err: TextIO) -> list[dict[str, Any]]:
    """One file: POST /v1/classify (an error becomes its entry); several: the batch route."""
    if len(files) == 1:
        entry: dict[str, Any] = {"index": 0, "filename": files[0].name}
        try:
            return [entry | {"status": 200, "result": client.classify(files[0], top_k=top_k)}]
        except OSError as exc:
            return [entry | {"status": 0, "error": {"detail": exc.strerror or str(exc)}}]
        except ApiError as exc:
            if exc.status >= 500:
                raise
            return [entry | {"status": exc.status, "error": exc.problem}]
    with tqdm(total=len(files), desc="classifying", unit="img", file=err, disable=None) as bar:
        return client.classify_batch(files, top_k=top_k, progress=bar.update)
