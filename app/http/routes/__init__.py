"""HTTP surface: one APIRouter per module (v1 classify, predictions, models, health, V2, the V2
repository extension, metrics)."""

from __future__ import annotations

from fastapi import APIRouter

from app.http.routes import health, metrics, models, predictions, repository, v1, v2

ROUTERS: tuple[APIRouter, ...] = (
    v1.router,
    predictions.router,
    models.router,
    health.router,
    v2.router,
    repository.router,
    metrics.router,
)
