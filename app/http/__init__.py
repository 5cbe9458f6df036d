"""HTTP: the FastAPI app, its routes and middleware, the uvicorn protocol and the Prometheus metrics."""
