"""app/core/errors.py: domain errors carry their status and load without the web framework."""

from __future__ import annotations

import subprocess
import sys

from app.core import errors


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
    """Training imports the decode policy; neither it, the core, the repository nor the V2 codec may
    pull in FastAPI. Every module of app.core and app.repository is imported, new ones included."""
    code = (
        "import importlib, pkgutil, sys, app.core, app.repository\n"
        "for package in (app.core, app.repository):\n"
        "    for info in pkgutil.iter_modules(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "import app.logs, app.serving.state, app.http.v2.codec, app.http.v2.price, app.http.v2.infer\n"
        "import model.data\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette', 'uvicorn'})\n"
        "assert not web, web\n"
        "assert 'app.serving.state' in sys.modules and 'app.repository.registry' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_store_modules_do_not_import_each_other_at_load() -> None:
    code = "import sys, app.core.store\nassert 'app.core.store_redis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
