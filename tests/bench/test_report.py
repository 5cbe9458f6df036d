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
        line.startswith("- PASS fp32 png32 c=1: ninserve 300 req/s ÷ best peer (fastapi, 300) = 1.00")
        for line in lines
    )
    assert any(
        line.startswith("- PASS fp32 png32 c=8: ninserve 460 req/s ÷ best peer (fastapi, 300) = 1.53")
        for line in lines
    )
    assert any(
        line.startswith("- PASS fp32 png32 c=64: ninserve 440 req/s ÷ best peer (fastapi, 250) = 1.76")
        for line in lines
    )
    # As shipped (int8) against the best fp32 peer at PNG c=64: 700 / 250 = 2.8.
    assert (
        "- PASS png32 c=64: ninserve as shipped (int8) 700 req/s ÷ best fp32 peer (fastapi) = 2.80"
        in "\n".join(lines)
    )
    result["servers"]["fastapi"]["points"][1]["rps"] = 400  # 460 / 400 = 1.15 < 1.2
    assert any(line.startswith("- FAIL fp32 png32 c=8:") for line in report.targets(result))


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


def _with_int8(result: dict) -> dict:
    """The same run with every server also on the int8 artifact, and ninserve as shipped."""
    raw_rows = {"1": {"images_per_s": 1500.0, "p50_ms": 0.7, "p99_ms": 1.0}}
    result["raw"]["models"]["int8"] = {"ort": raw_rows, "e2e": {"png32": {"batch": raw_rows}}}
    result["servers"]["ninserve@int8"] = {
        "status": "ok",
        "points": [
            _point("png32", 1, 1000, 1, 2),
            _point("png32", 8, 1300, 6, 9),
            _point("png32", 64, 1250, 50, 80),
        ],
    }
    result["servers"]["fastapi@int8"] = {
        "status": "ok",
        "points": [
            _point("png32", 1, 900, 1, 2),
            _point("png32", 8, 1000, 8, 9),
            _point("png32", 64, 1100, 60, 90),
        ],
    }
    result["servers"]["ninserve-int8"] = {"status": "ok", "points": [_point("png32", 64, 1230, 50, 80)]}
    return result


def test_same_artifact_rows_are_compared_with_each_other_only() -> None:
    lines = report.targets(_with_int8(_result()))
    text = "\n".join(lines)
    # ninserve@int8 against fastapi@int8, never against the fp32 fastapi (300 req/s at c=1).
    assert "- PASS int8 png32 c=1: ninserve@int8 1000 req/s ÷ best peer (fastapi@int8, 900) = 1.11" in text
    assert "- PASS int8 png32 c=8: ninserve@int8 1300 req/s ÷ best peer (fastapi@int8, 1000) = 1.30" in text
    # 1250 / 1100 = 1.14 < 1.2
    assert "- FAIL int8 png32 c=64: ninserve@int8 1250 req/s ÷ best peer (fastapi@int8, 1100) = 1.14" in text
    # ...and the fp32 comparison does not see the int8 rows.
    assert "- PASS fp32 png32 c=1: ninserve 300 req/s ÷ best peer (fastapi, 300) = 1.00" in text


def test_as_shipped_is_checked_against_in_process_decode_and_int8_ort() -> None:
    text = "\n".join(report.targets(_with_int8(_result())))
    # 1230 / 1500 = 0.82 >= 0.8
    assert (
        "- PASS png32 c=64: ninserve as shipped (int8) 1230 req/s ÷ "
        "in-process decode + int8 ORT 1500 img/s = 0.82" in text
    )
    result = _with_int8(_result())
    result["servers"]["ninserve-int8"]["points"][0]["rps"] = 1100  # 0.73
    assert "- FAIL png32 c=64: ninserve as shipped (int8) 1100 req/s" in "\n".join(report.targets(result))


def test_as_shipped_stands_in_when_ninserve_was_not_pinned_to_int8() -> None:
    result = _with_int8(_result())
    del result["servers"]["ninserve@int8"]
    text = "\n".join(report.targets(result))
    assert "- FAIL int8 png32 c=64: ninserve-int8 1230 req/s ÷ best peer (fastapi@int8, 1100) = 1.12" in text


def test_side_by_side_table_says_which_rows_are_which() -> None:
    rows = report.comparison_table(_with_int8(_result()))
    by_name = {row.split(" | ")[0].lstrip("| "): row for row in rows[2:]}
    assert by_name["fastapi"].startswith("| fastapi | fp32 | 300 / 300 / 250 |")
    assert by_name["fastapi@int8"].startswith("| fastapi@int8 | same-artifact int8 | 900 / 1000 / 1100 |")
    assert by_name["ninserve-int8"].startswith("| ninserve-int8 | as shipped | – / – / 1230 |")
    # fp32 rows first, then same-artifact, then as shipped
    kinds = [row.split(" | ")[1] for row in rows[2:]]
    assert kinds == sorted(kinds, key=["fp32", "same-artifact int8", "as shipped"].index)


def test_load_table_compares_each_row_with_ninserve_on_its_artifact() -> None:
    lines = report.load_tables(_with_int8(_result()))
    row = next(line for line in lines if line.startswith("| fastapi@int8 | 8 |"))
    assert row.split(" | ")[-2] == "1.30"  # ninserve@int8 1300 ÷ 1000, not ninserve fp32's 460


def test_a_points_ninserve_batches_are_shown() -> None:
    result = _result()
    result["servers"]["ninserve"]["points"][2]["batches"] = {"calls": 100, "mean": 12.5, "max": 32.0}
    row = next(line for line in report.load_tables(result) if line.startswith("| ninserve | 64 |"))
    assert row.endswith("| 12.5 / ≤32 |")
    assert next(line for line in report.load_tables(result) if line.startswith("| ninserve | 8 |")).endswith(
        "| – |"
    )
    result["servers"]["ninserve"]["points"][2]["batches"]["ort_busy"] = 0.964
    row = next(line for line in report.load_tables(result) if line.startswith("| ninserve | 64 |"))
    assert row.endswith("| 12.5 / ≤32, ORT busy 96% |")
