"""Python clients of ninserve's HTTP API: `Client` speaks v1 (app/client/v1.py)."""

from app.client.v1 import ApiError, Client

__all__ = ["ApiError", "Client"]
