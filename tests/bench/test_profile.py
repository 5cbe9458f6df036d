from __future__ import annotations

import re
from pathlib import Path

from bench.profile import summarize


def share(summary: str, label: str) -> str:
    """The percentage on the summary line that names `label`."""
    line = next(line for line in summary.splitlines() if label in line)
    return re.search(r"\d+\.\d%", line).group(0)


def test_summary_splits_threads_packages_and_app_frames(tmp_path: Path) -> None:
    folded = tmp_path / "out.folded"
    loop = "thread (1): MainThread;run (asyncio/runners.py:118)"
    folded.write_text(
        f"{loop};classify_one (app/http/routes/v1.py:33);read_parts (app/http/multipart.py:87);"
        "write (python_multipart/multipart.py:1136) 30\n"
        f"{loop};classify_one (app/http/routes/v1.py:34);handle (fastapi/routing.py:1) 10\n"
        f"{loop} 60\n"
        "thread (7): ninserve-ort_0;run (onnxruntime/capi/session.py:1) 150\n"
    )
    summary = summarize(folded, seconds=1.0)
    assert share(summary, "ninserve-ort") == "75.0%"  # 150 of 200 possible samples (1 s at 200 Hz)
    assert share(summary, "MainThread") == "50.0%"
    assert share(summary, "asyncio") == "60.0%" and share(summary, "python_multipart") == "30.0%"
    assert (
        share(summary, "app/http/routes/v1.py:33") == "30.0%" and share(summary, "multipart.py:87") == "30.0%"
    )
