from __future__ import annotations

from bench import report


def _point(image: str, c: int, rps: float, p50: float, p99: float) -> dict:
    return {
        "image": image,
        "concurrency": c,
        "rps": rps,
        "p50_ms": p50,
        "p90_ms": p99,
        "p99_ms": p99,
        "errors": 0,
        "peak_pss_mb": 100.0,
        "server_cpu_s": 1.0,
        "requests": int(rps * 10),
    }


def _result() -> dict:
    raw_rows = {"1": {"images_per_s": 500.0, "p50_ms": 2.0, "p99_ms": 3.0}}
    raw_rows["8"] = {"images_per_s": 450.0, "p50_ms": 18.0, "p99_ms": 20.0}
    ours = [
        _point("png32", 1, 300, 3.0, 5.0),
        _point("png32", 8, 460, 17, 30),
        _point("png32", 64, 440, 140, 200),
    ]
    peer = [
        _point("png32", 1, 300, 3.0, 5.0),
        _point("png32", 8, 300, 25, 29),
        _point("png32", 64, 250, 250, 400),
    ]
    return {
        "stamp": "t",
        "machine": {"cpu": "x", "cpu_count": 2, "mem_gib": 1, "python": "3.11"},
        "settings": {
            "threads": 2,
            "max_batch": 32,
            "max_wait_ms": 2.0,
            "duration_s": 10,
            "warmup_s": 3,
            "concurrency": [1, 8, 64],
            "images": {"png32": 2500},
            "loadgen": "wrk",
            "netns": True,
        },
        "load_average_start": 0.1,
        "load_average_end": 0.2,
        "raw": {
            "onnxruntime": "1",
            "threads": 2,
            "models": {"fp32": {"ort": raw_rows, "e2e": {"png32": {"batch": raw_rows}}}},
        },
        "servers": {
            "ninserve": {"status": "ok", "points": ours},
            "fastapi": {"status": "ok", "points": peer},
            "ray": {"status": "unavailable", "why": "no namespace"},
        },
    }


def test_raw_limit_is_the_best_batch() -> None:
    assert report.raw_limits(_result(), "png32")["ort_best"] == 500.0


def test_targets_are_checked_against_the_same_run() -> None:
    result = _result()
    shipped = [_point("png32", 64, 700, 80, 120)]
    result["servers"]["ninserve-int8"] = {"status": "ok", "points": shipped}
    lines = report.targets(result)
    # fp32 against the best peer: >= 1.0 x at c=1, >= 1.2 x at c = 8 and 64.
    assert any(
        line.startswith("- PASS png32 c=1: ninserve fp32 300 req/s ÷ best peer (fastapi, 300) = 1.00")
        for line in lines
    )
    assert any(
        line.startswith("- PASS png32 c=8: ninserve fp32 460 req/s ÷ best peer (fastapi, 300) = 1.53")
        for line in lines
    )
    assert any(
        line.startswith("- PASS png32 c=64: ninserve fp32 440 req/s ÷ best peer (fastapi, 250) = 1.76")
        for line in lines
    )
    # As shipped (int8) against the best fp32 peer at PNG c=64: 700 / 250 = 2.8.
    assert (
        "- PASS png32 c=64: ninserve as shipped (int8) 700 req/s ÷ best fp32 peer (fastapi) = 2.80"
        in "\n".join(lines)
    )
    result["servers"]["fastapi"]["points"][1]["rps"] = 400  # 460 / 400 = 1.15 < 1.2
    assert any(line.startswith("- FAIL png32 c=8:") for line in report.targets(result))


def test_markdown_lists_every_server() -> None:
    text = report.markdown(_result())
    assert "| ray | unavailable: no namespace |" in text
    assert "| fastapi | 8 | 300 |" in text


def test_server_cpu_is_per_request() -> None:
    rows = [line for line in report.load_tables(_result()) if line.startswith("| ninserve | 1 |")]
    assert rows and rows[0].split(" | ")[8] == "0.33"  # 1.0 CPU s over 3,000 requests


def test_write_draws_the_chart_when_matplotlib_is_there(tmp_path) -> None:
    import pytest

    pytest.importorskip("matplotlib")
    written = report.write(_result(), tmp_path / "run")
    assert [p.name for p in written] == ["run.md", "run.png"] and all(p.stat().st_size for p in written)


def test_write_without_matplotlib_keeps_the_tables_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    real_find_spec = report.importlib.util.find_spec
    monkeypatch.setattr(
        report.importlib.util,
        "find_spec",
        lambda name: None if name == "matplotlib" else real_find_spec(name),
    )
    written = report.write(_result(), tmp_path / "run")
    assert [p.name for p in written] == ["run.md"] and not (tmp_path / "run.png").exists()
    err = capsys.readouterr().err
    assert "skipped: matplotlib is not installed" in err and "python -m bench.report" in err
