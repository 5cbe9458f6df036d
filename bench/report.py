"""A result JSON -> the markdown tables for docs/benchmarks.md and a PNG chart.

    .venv/bin/python -m bench.report bench/results/<stamp>.json   # rewrites <stamp>.md and .png

Every ratio is computed from the numbers of the same run. "Raw ORT" is the best images/s that
in-process ONNX Runtime reached over the measured batch sizes with ready pixels (the limit the
issue names); "raw e2e" adds decoding and preprocessing the same image, the fairer ceiling for a
server, and is shown next to it.

Rows are of three kinds, and the tables say which: fp32 (every server given the fp32 artifact),
same-artifact int8 (`<server>@int8`: every server, ninserve included, given the int8 artifact) and
ninserve as shipped (`ninserve-int8`: precision=auto, which serves the int8 variant on the CPU).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

TARGET_PEER_RATIO = 1.2  # ninserve fp32 req/s >= 1.2 x the best peer at c = 8 and 64, both images
TARGET_PEER_RATIO_C1 = 1.0  # ... and >= 1.0 x at c = 1
TARGET_INT8_RATIO = 2.5  # ninserve as shipped (int8 on the CPU) >= 2.5 x the best fp32 peer, PNG c = 64
TARGET_SHIPPED_TO_RAW = 0.8  # as shipped, PNG c = 64 >= 0.8 x in-process decode + int8 ORT
NINSERVE = "ninserve"
INT8 = "@int8"  # bench.servers.INT8_SUFFIX: a server given the int8 artifact
SHIPPED = "ninserve-int8"


def kind(name: str) -> str:
    """Which comparison a row belongs to: "as shipped", "same-artifact int8" or "fp32"."""
    if name == SHIPPED:
        return "as shipped"
    return "same-artifact int8" if name.endswith(INT8) else "fp32"


def _ours_for(name: str) -> str:
    """The ninserve row a server is compared with: ninserve on the same artifact."""
    return NINSERVE + INT8 if name.endswith(INT8) or name == SHIPPED else NINSERVE


def _raw_model(result: dict, model: str) -> dict | None:
    found = result.get("raw", {}).get("models", {}).get(model)
    return None if not found or "missing" in found else found


def raw_limits(result: dict, image: str, model: str = "fp32") -> dict[str, float]:
    """ort_best / e2e_best: images/s, the best batch size; ort_b1_p50 / e2e_b1_p50: ms."""
    raw = _raw_model(result, model)
    if raw is None:
        return {}
    e2e = raw["e2e"].get(image, {}).get("batch", {})
    return {
        "ort_best": max(r["images_per_s"] for r in raw["ort"].values()),
        "e2e_best": max((r["images_per_s"] for r in e2e.values()), default=0.0),
        "ort_b1_p50": raw["ort"].get("1", {}).get("p50_ms", 0.0),
        "e2e_b1_p50": e2e.get("1", {}).get("p50_ms", 0.0),
    }


def _points(result: dict) -> dict[str, dict[tuple[str, int], dict]]:
    out = {}
    for name, rec in result.get("servers", {}).items():
        if rec.get("status") == "ok":
            out[name] = {(p["image"], p["concurrency"]): p for p in rec["points"]}
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "–"


def raw_table(result: dict) -> list[str]:
    raw = result.get("raw")
    if not raw:
        return ["(raw ONNX Runtime not measured in this run)"]
    lines = [
        f"Raw ONNX Runtime {raw['onnxruntime']}, {raw['threads']} intra-op threads, in-process.",
        "",
        "| model | what | batch | p50 ms | p99 ms | images/s |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for model, res in raw["models"].items():
        if "missing" in res:
            lines.append(f"| {model} | not measured: {res['missing']} | | | | |")
            continue
        groups = [("ORT only", res["ort"])] + [(f"decode+ORT {k}", v["batch"]) for k, v in res["e2e"].items()]
        for what, rows in groups:
            for n, r in rows.items():
                lines.append(
                    f"| {model} | {what} | {n} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                    f"| {r['images_per_s']:.0f} |"
                )
    return lines


def cpu_per_request(point: dict) -> str:
    """Server CPU time (all its processes) per request: its cost apart from the load generator's."""
    if not point.get("requests"):
        return "–"
    return f"{point['server_cpu_s'] * 1000.0 / point['requests']:.2f}"


def load_tables(result: dict) -> list[str]:
    points = _points(result)
    lines: list[str] = []
    for image, size in result["settings"]["images"].items():
        lines += [
            "",
            f"#### {image} ({size} bytes)",
            "",
            "| server | c | req/s | p50 ms | p90 ms | p99 ms | errors | peak PSS MiB | server CPU ms/req "
            "| × raw ORT | × raw e2e | ninserve on its artifact ÷ it | mean / max batch |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for c in result["settings"]["concurrency"]:
            for name, by_key in points.items():
                p = by_key.get((image, c))
                if p is None:
                    continue
                # An int8 server is held to the int8 limit; everything else to fp32's.
                lim = raw_limits(result, image, "fp32" if kind(name) == "fp32" else "int8")
                ours = points.get(_ours_for(name), {}).get((image, c))
                vs = _ratio(ours["rps"], p["rps"]) if ours and name != _ours_for(name) else ""
                to_raw = _ratio(p["rps"], lim.get("ort_best", 0))
                to_e2e = _ratio(p["rps"], lim.get("e2e_best", 0))
                lines.append(
                    f"| {name} | {c} | {p['rps']:.0f} | {p['p50_ms']:.2f} | {p['p90_ms']:.2f} | "
                    f"{p['p99_ms']:.2f} | {p['errors']} | {p['peak_pss_mb']:.0f} | {cpu_per_request(p)} | "
                    f"{to_raw} | {to_e2e} | {vs} | {_batches(p.get('batches'))} |"
                )
    return lines


def _batches(b: dict | None) -> str:
    """ "mean / max" of a point's ORT batches (ninserve's, read from its /metrics) and the share of
    the point ORT spent running them, or –."""
    if not b:
        return "–"
    largest = "∞" if b["max"] == float("inf") else f"≤{b['max']:g}"
    busy = f", ORT busy {b['ort_busy']:.0%}" if "ort_busy" in b else ""
    return f"{b['mean']} / {largest}{busy}"


def servers_table(result: dict) -> list[str]:
    lines = [
        "| server | status | versions | ready s | idle PSS MiB | processes | max score diff vs ORT "
        "| mean / max batch |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for name, rec in result.get("servers", {}).items():
        versions = ", ".join(f"{k} {v}" for k, v in rec.get("versions", {}).items())
        diff = max((v["max_abs_diff"] for v in rec.get("parity", {}).values()), default=None)
        status = rec.get("status", "?") + (f": {rec['why']}" if rec.get("why") else "")
        b = rec.get("batches")
        batches = f"{b['mean']} / {b['max']}" if b else "–"
        lines.append(
            f"| {name} | {status} | {versions} | {rec.get('ready_s', '–')} | {rec.get('idle_pss_mb', '–')} "
            f"| {rec.get('processes', '–')} | {'–' if diff is None else f'{diff:.1e}'} | {batches} |"
        )
    return lines


def targets(result: dict) -> list[str]:
    """The hot path's targets, checked per image; PASS/FAIL with the numbers behind each.

    fp32: ninserve (the fp32 artifact pinned) against the best fp32 peer at every concurrency.
    Same-artifact int8: ninserve@int8 (else ninserve as shipped, which serves the same bundled
    file) against the best @int8 peer, the same ratios. As shipped: int8 PNG c=64 against the
    best fp32 peer, and against in-process decode + int8 ORT (the raw e2e limit).
    """
    points = _points(result)
    lines = []
    fp32_peers = {n: p for n, p in points.items() if kind(n) == "fp32" and not n.startswith(NINSERVE)}
    int8_peers = {n: p for n, p in points.items() if kind(n) != "fp32" and not n.startswith(NINSERVE)}
    ours_int8 = NINSERVE + INT8 if NINSERVE + INT8 in points else SHIPPED
    for label, ours, peers in (
        ("fp32", NINSERVE, fp32_peers),
        ("int8", ours_int8, int8_peers),
    ):
        if ours in points and peers:
            lines += peer_targets(result, label, ours, points[ours], peers)
    if not lines:
        lines.append(
            "ninserve and a peer on the same artifact were not both measured: no peer target checked."
        )
    shipped = points.get(SHIPPED, {}).get(("png32", 64))
    best = _best_peer(fp32_peers, "png32", 64)
    if best and shipped:
        ok = shipped["rps"] >= TARGET_INT8_RATIO * best[1]["rps"]
        lines.append(
            f"- {'PASS' if ok else 'FAIL'} png32 c=64: ninserve as shipped (int8) {shipped['rps']:.0f} "
            f"req/s ÷ best fp32 peer ({best[0]}) = {shipped['rps'] / best[1]['rps']:.2f} "
            f"(target ≥ {TARGET_INT8_RATIO})"
        )
    lim = raw_limits(result, "png32", "int8")
    if shipped and lim.get("e2e_best"):
        ratio = shipped["rps"] / lim["e2e_best"]
        lines.append(
            f"- {'PASS' if ratio >= TARGET_SHIPPED_TO_RAW else 'FAIL'} png32 c=64: ninserve as shipped "
            f"(int8) {shipped['rps']:.0f} req/s ÷ in-process decode + int8 ORT {lim['e2e_best']:.0f} img/s = "
            f"{ratio:.2f} (target ≥ {TARGET_SHIPPED_TO_RAW})"
        )
    return lines


def peer_targets(result: dict, label: str, name: str, ours: dict, peers: dict) -> list[str]:
    """`name` against the best of `peers` at every measured point: >= 1.0 x at c=1, 1.2 x above."""
    lines = []
    for image in result["settings"]["images"]:
        lim = raw_limits(result, image, "int8" if "int8" in label else "fp32")
        for c in result["settings"]["concurrency"]:
            p, best = ours.get((image, c)), _best_peer(peers, image, c)
            if p is None or best is None:
                continue
            peer, q = best
            goal = TARGET_PEER_RATIO if c >= 8 else TARGET_PEER_RATIO_C1
            ok = p["rps"] >= goal * q["rps"]
            raw = f"; raw decode+ORT {lim['e2e_best']:.0f}/s" if lim.get("e2e_best") else ""
            lines.append(
                f"- {'PASS' if ok else 'FAIL'} {label} {image} c={c}: {name} {p['rps']:.0f} req/s ÷ "
                f"best peer ({peer}, {q['rps']:.0f}) = {p['rps'] / q['rps']:.2f} (target ≥ {goal}){raw}"
            )
    return lines


def comparison_table(result: dict) -> list[str]:
    """One row per server: which comparison it belongs to, req/s at each concurrency per image,
    and its CPU per request at the last concurrency of the first image (docs/benchmarks.md)."""
    points = _points(result)
    imgs, conc = list(result["settings"]["images"]), result["settings"]["concurrency"]
    if not points:
        return ["(no server measured)"]
    cs = " / ".join(map(str, conc))
    last = (imgs[0], conc[-1])
    head = " | ".join(f"{image} req/s, c = {cs}" for image in imgs)
    lines = [
        f"| server | rows | {head} | server CPU ms/req ({last[0]}, c={last[1]}) |",
        "|---|---|" + "---|" * len(imgs) + "--:|",
    ]
    order = {"fp32": 0, "same-artifact int8": 1, "as shipped": 2}
    for name in sorted(points, key=lambda n: order[kind(n)]):
        cells = [
            " / ".join(
                f"{points[name][(image, c)]['rps']:.0f}" if (image, c) in points[name] else "–" for c in conc
            )
            for image in imgs
        ]
        cpu = cpu_per_request(points[name][last]) if last in points[name] else "–"
        lines.append(f"| {name} | {kind(name)} | {' | '.join(cells)} | {cpu} |")
    return lines


def _best_peer(peers: dict, image: str, c: int) -> tuple[str, dict] | None:
    found = [(n, p[(image, c)]) for n, p in peers.items() if (image, c) in p]
    return max(found, key=lambda kv: kv[1]["rps"], default=None)


def markdown(result: dict) -> str:
    s, m = result["settings"], result["machine"]
    head = [
        f"## Run {result['stamp']}",
        "",
        f"{m['cpu']}, {m['cpu_count']} cores (the load generator shares them), {m['mem_gib']} GiB; "
        f"Python {m['python']}. Every server: {s['threads']} ORT intra-op threads, dynamic batching "
        f"up to {s['max_batch']} / {s['max_wait_ms']} ms where the framework has it, one model worker. "
        f"{s['loadgen']}, closed loop, {s['duration_s']:g} s per point after {s['warmup_s']:g} s warm-up; "
        f"loopback-only namespace: {s['netns']}. Load average {result['load_average_start']:.2f} at the "
        f"start, {result.get('load_average_end', 0):.2f} at the end.",
        "",
        "### Targets",
        "",
        *targets(result),
        "",
        "### Side by side",
        "",
        "fp32 rows: every server given the fp32 artifact; same-artifact int8 rows (`<server>@int8`): "
        "every server given the int8 artifact; as shipped: ninserve with precision=auto (the int8 "
        "variant on the CPU).",
        "",
        *comparison_table(result),
        "",
        "### The limit",
        "",
        *raw_table(result),
        "",
        "### Under load",
        *load_tables(result),
        "",
        "### Servers",
        "",
        *servers_table(result),
    ]
    return "\n".join(head) + "\n"


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = _points(result)
    names = list(points)
    conc = result["settings"]["concurrency"]
    imgs = list(result["settings"]["images"])
    fig, axes = plt.subplots(len(imgs), 2, figsize=(13, 4.2 * len(imgs)), squeeze=False)
    width = 0.8 / max(1, len(names))
    for row, image in enumerate(imgs):
        lim = raw_limits(result, image)
        for col, (key, label) in enumerate([("rps", "requests/s"), ("p99_ms", "p99 latency, ms (log)")]):
            ax = axes[row][col]
            for i, name in enumerate(names):
                vals = [points[name].get((image, c), {}).get(key, 0) for c in conc]
                ax.bar([x + i * width for x in range(len(conc))], vals, width, label=name)
            ax.set_xticks(
                [x + width * (len(names) - 1) / 2 for x in range(len(conc))], [f"c={c}" for c in conc]
            )
            ax.set_title(f"{image}: {label}")
            if key == "rps" and lim:
                ax.axhline(lim["ort_best"], color="k", ls="--", lw=1, label="raw ORT fp32")
                ax.axhline(lim["e2e_best"], color="k", ls=":", lw=1, label="raw decode+ORT")
            if key == "p99_ms":
                ax.set_yscale("log")
        axes[row][0].legend(fontsize=8, ncol=2)
    fig.suptitle(f"ninserve vs peers, {result['machine']['cpu_count']} cores, run {result['stamp']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(result: dict, base: Path) -> list[Path]:
    """The tables (.md) and, when matplotlib is installed and a server was measured, the chart
    (.png); returns the files written. Without matplotlib the run still ends with its tables."""
    written = [base.with_suffix(".md")]
    written[0].write_text(markdown(result))
    if not _points(result):  # no server measured: no chart
        return written
    if importlib.util.find_spec("matplotlib") is None:
        print(
            f"chart {base.with_suffix('.png')} skipped: matplotlib is not installed "
            "(`.venv/bin/pip install matplotlib`, then `python -m bench.report "
            f"{base.with_suffix('.json')}` draws it from the results)",
            file=sys.stderr,
        )
        return written
    chart(result, base.with_suffix(".png"))
    return [*written, base.with_suffix(".png")]


def smoke_line(rec: dict[str, Any]) -> str:
    """One line per smoked server, for the setup script's summary."""
    name, status = rec["server"], rec["status"]
    versions = ", ".join(f"{k} {v}" for k, v in rec.get("versions", {}).items())
    if status != "works":
        return f"{name:14} {status.upper():11} {rec.get('why', '')}"
    diff = max(v["max_abs_diff"] for v in rec["parity"].values())
    load = rec.get("load_c8_png32")
    extra = f"; c=8 {load['rps']:.0f} req/s p99 {load['p99_ms']:.1f} ms" if load else ""
    return (
        f"{name:14} WORKS       ready {rec['ready_s']} s, idle PSS {rec['idle_pss_mb']} MiB, "
        f"max score diff {diff:.1e}{extra} [{versions}]"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report bench/results/<stamp>.json", file=sys.stderr)
        return 2
    path = Path(args[0])
    written = write(json.loads(path.read_text()), path.with_suffix(""))
    print(f"wrote {' and '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
