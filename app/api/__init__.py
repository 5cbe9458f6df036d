"""HTTP surface: one APIRouter per module (v1 classify, predictions, models, health, V2, metrics)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import health, metrics, models, predictions, v1, v2

ROUTERS: tuple[APIRouter, ...] = (
    v1.router,
    predictions.router,
    models.router,
    health.router,
    v2.router,
    metrics.router,
)
