"""The page at `/` (app/web/), its assets under `/static`, and `/docs` + `/redoc` from the package.

The page is plain HTML, CSS and JS with no build step and no request to anything but this server:
it speaks only the public v1 API, so it is also a worked example of using it. Swagger UI and
ReDoc load from the package's own copies (app/web/vendor/, see its README for versions and how to
update), so the interactive docs work offline and behind proxies that block CDNs.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import FileResponse, HTMLResponse
from starlette.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC = "/static"
VENDORED = {"swagger-ui-dist": "5.35.0", "redoc": "2.5.4"}  # app/web/vendor/README.md
# The page loads only its own files; images come from blob: URLs made from fetch() (so they can
# carry an API key) and the input preview. No inline script or style, no frames, no other origin.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate: a new release's page must not mix with old scripts
}
# The docs pages may talk to this server alone. ReDoc's sidebar always shows a "by Redocly" badge
# whose image is on the vendor's CDN: with img-src 'self' the browser never requests it (the
# link's text stays). Both pages style with inline <style>; Swagger UI starts from inline script.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; base-uri 'none'; frame-ancestors 'none'"
)
SWAGGER_CSP = DOCS_CSP + "; script-src 'self' 'unsafe-inline'"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    html = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{STATIC}/vendor/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/vendor/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/favicon.svg",
        oauth2_redirect_url=OAUTH2_REDIRECT,
        # Swagger UI would otherwise send the schema to its public validator for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )
    html.headers["Content-Security-Policy"] = SWAGGER_CSP
    return html


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    html = get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{STATIC}/vendor/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC}/favicon.svg",
        with_google_fonts=False,
    )
    html.headers["Content-Security-Policy"] = DOCS_CSP
    return html


def install_page(app: FastAPI) -> None:
    """Serve the page, its assets and the docs; create the app with docs_url=redoc_url=None."""
    app.include_router(router)
    app.mount(STATIC, StaticFiles(directory=WEB_DIR), name="static")
