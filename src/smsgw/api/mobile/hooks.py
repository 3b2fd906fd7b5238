"""The hub endpoints phones post their webhooks to, and the list telling them where."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from smsgw.api.deps import AppContext, Context, CurrentDevice, bearer_token
from smsgw.api.mobile.device import ERRORS
from smsgw.config import WebhooksMode
from smsgw.devices.service import token_hash
from smsgw.domain.errors import InvalidInput, Unauthorized
from smsgw.events import signals
from smsgw.forwarded import refused_by_phones
from smsgw.optouts import service as optouts
from smsgw.webhooks import hub
from smsgw.webhooks import service as webhooks

log = logging.getLogger("smsgw")
router = APIRouter(tags=["Mobile"])
HOOK_PATH = "/hooks/{device_id}/{secret}"


def hook_url(request: Request, base: str | None, device_id: str, secret: str) -> str:
    """This phone's hub URL: under `SMSGW_PUBLIC_URL`, else the URL the phone used (as a
    trusted proxy forwarded it: forwarded.py)."""
    prefix = request.url.path.removesuffix("/webhooks")
    root = base or str(request.base_url).rstrip("/")
    return f"{root}{prefix}/hooks/{device_id}/{secret}"


_warned: set[str] = set()


def _warn_if_refused(url: str) -> None:
    """Log, once per host name, that phones are handed hook URLs their app refuses."""
    host = urlsplit(url).netloc
    if not refused_by_phones(url) or host in _warned or len(_warned) > 100:
        return
    _warned.add(host)
    log.warning(
        "phones reach smsgw at http://%s: the Android app refuses plain http:// webhook URLs "
        "to other hosts, so their received messages are lost. Serve smsgw over https "
        "(a proxy sending X-Forwarded-Proto from SMSGW_FORWARDED_ALLOW_IPS, or "
        "SMSGW_PUBLIC_URL=https://...; docs/phones.md)",
        host,
    )


def _derive(context: AppContext) -> webhooks.Derive:
    """The server-keyed digest hook secrets are made with (the app always builds it)."""
    assert context.tokens is not None
    return context.tokens.derive


@router.get("/webhooks", responses=ERRORS, summary="List the webhooks a phone posts to")
async def phone_webhooks(request: Request, device: CurrentDevice, context: Context) -> JSONResponse:
    """Where this phone posts its events (see docs/webhooks.md, hub and direct modes): only
    the events its app version (from the User-Agent) knows."""
    token = bearer_token(request) or ""
    secret = webhooks.hook_secret(_derive(context), token_hash(token))
    url = hook_url(request, context.settings.public_url, device.device_id, secret)
    _warn_if_refused(url)
    records = await webhooks.for_phone(context.db, device.user_id, device.device_id)
    direct = context.settings.webhooks_mode == WebhooksMode.DIRECT
    return JSONResponse(hub.phone_hooks(url, records, direct, device.app_version))


#: How deep a phone's post may nest (the app's are 4 deep): deeper JSON costs every reader
#: of it, and Python's own recursion limit is about 1,000.
MAX_DEPTH = 32
TOO_DEEP = f"JSON body nested too deeply: at most {MAX_DEPTH} levels"
NOT_TEXT = "JSON body holds a string that is not Unicode text (a lone surrogate such as \\ud800)"
_SURROGATE = re.compile("[\ud800-\udfff]")


async def _json(request: Request) -> Any:
    """The body as JSON; InvalidInput when it is malformed or unfit to keep (json_problem)."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("malformed JSON body") from None
    except RecursionError:
        raise InvalidInput(TOO_DEEP) from None
    problem = json_problem(body)
    if problem is not None:
        raise InvalidInput(problem)
    return body


def json_problem(value: Any) -> str | None:
    """What makes a JSON value unfit to store, or None: nesting deeper than MAX_DEPTH, or a
    string (or key) that is not text (JSON may escape lone surrogates; SQLite cannot store
    them). Walked without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str) and _SURROGATE.search(item):
            return NOT_TEXT
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return TOO_DEEP
            children = [*item, *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return None


@router.post(HOOK_PATH, status_code=204, responses=ERRORS, summary="Post a phone's event")
async def phone_post(
    request: Request,
    context: Context,
    device_id: Annotated[str, Path(max_length=32, description="The phone's id.")],
    secret: Annotated[
        str, Path(max_length=64, description="The secret of the URL `GET /webhooks` gave.")
    ],
) -> Response:
    """An event the phone emits; the URL's secret is its credential."""
    assert context.tokens is not None
    previous = context.tokens.previous_derive()  # the URLs before a rotation of the secret
    user_id = await webhooks.phone_of_hook(
        context.db, _derive(context), device_id, secret, previous
    )
    if user_id is None:
        raise Unauthorized("Unauthorized")
    settings = context.settings
    deliver = settings.webhooks_mode == WebhooksMode.HUB
    words = hub.OptOutWords(optouts.keywords(settings.opt_out_words), settings.default_region)
    await hub.accept(context.db, user_id, device_id, await _json(request), deliver, words)
    context.signals.emit(signals.OUTBOX_FILLED)
    return Response(status_code=204)
