"""ASGI middleware every request passes: API keys, body limits, CORS, security headers, shutdown."""
