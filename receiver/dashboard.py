"""The dashboard at `/`: one HTML page and its static assets, served from the receiver's own
package. The page holds no data; it reads the API with the bearer token a person logs in with."""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

# The page lives apart from its assets, so it is served from `/` alone, with its policy.
PAGE = Path(__file__).parent / "page" / "index.html"
STATIC = Path(__file__).parent / "static"

# The page runs only its own script and style and talks only to the receiver; images, videos
# and tracks may come from anywhere over HTTP(S), as presigned S3 URLs do. No inline code, so an
# injected tag is inert.
POLICY = (
    "default-src 'self'; img-src 'self' https: http:; media-src 'self' https: http:; "
    "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


async def page(request: Request) -> Response:
    return FileResponse(PAGE, headers=HEADERS)


# The page's scripts, styles and icon, mounted at `/static` by the route table.
ASSETS = StaticFiles(directory=STATIC)
