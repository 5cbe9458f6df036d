"""HTTP surface: one APIRouter per module (v1 classify, predictions, models, health)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import health, models, predictions, v1

ROUTERS: tuple[APIRouter, ...] = (v1.router, predictions.router, models.router, health.router)
