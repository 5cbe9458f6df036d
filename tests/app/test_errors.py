"""app/errors.py: domain errors carry their status and load without the web framework."""

from __future__ import annotations

import subprocess
import sys

from app import errors


def test_each_error_has_its_status() -> None:
    expected = {
        errors.InvalidImage: 400,
        errors.EmptyImage: 400,
        errors.InvalidUpload: 400,
        errors.PayloadTooLarge: 413,
        errors.ImageTooLarge: 413,
        errors.TooManyFiles: 413,
        errors.UnsupportedMediaType: 415,
        errors.InvalidParameter: 422,
        errors.PredictionNotFound: 404,
        errors.LabelNotFound: 404,
        errors.Overloaded: 503,
        errors.DeadlineExceeded: 503,
        errors.NotReady: 503,
    }
    for cls, status in expected.items():
        assert cls("x").status == status, cls
    for cls in (errors.Overloaded, errors.DeadlineExceeded, errors.NotReady):
        assert cls.retry_after and cls.retry_after > 0


def test_domain_code_loads_without_the_web_framework() -> None:
    """Training imports the decode policy; neither it nor the core may pull in FastAPI."""
    core = (
        "app.errors, app.decode, app.batcher, app.engine, app.maps, app.store, app.store_backlog, "
        "app.store_redis, app.admission, app.memory, app.pipeline, app.runtime, app.logs, "
        "app.v2.codec, app.v2.price, app.v2.model, model.data"
    )
    code = (
        f"import sys, {core}\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette', 'uvicorn'})\n"
        "assert not web, web"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_store_modules_do_not_import_each_other_at_load() -> None:
    code = "import sys, app.store\nassert 'app.store_redis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
