"""An MMS part answered as a download, by the API and by the dashboard alike: never rendered
by a browser (always an attachment, no sniffing, sandboxed)."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.responses import Response

#: Content types answered as stored: ones no browser runs or renders as a document (any
#: other type, HTML, SVG, XML, scripts, ..., is answered as `application/octet-stream`).
INERT_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "text/plain"})
INERT_FAMILIES = ("audio/", "video/")
TOKEN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
#: A download is never a page: no script, no plugin, no request of its own, even if opened.
DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "Cache-Control": "private, no-store",
}


def shown_type(content_type: str) -> str:
    """The type an attachment is served with: its bare `type/subtype` (parameters dropped)
    when that is an inert type, else `application/octet-stream`."""
    bare = content_type.split(";", 1)[0].strip().lower()
    inert = bare in INERT_TYPES or bare.startswith(INERT_FAMILIES)
    return bare if inert and TOKEN.fullmatch(bare) else "application/octet-stream"


def download(content_type: str, name: str | None, data: bytes) -> Response:
    """An attachment's bytes, never rendered by a browser (always a download, no sniffing,
    sandboxed); the API and the dashboard both answer with this."""
    filename = quote(name or "attachment", safe="")
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{filename}",
        **DOWNLOAD_HEADERS,
    }
    return Response(data, media_type=shown_type(content_type), headers=headers)
