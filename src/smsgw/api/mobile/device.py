"""Registration and account calls of the phone: /device, /user/code, /user/password."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from smsgw import metrics
from smsgw.accounts import codes
from smsgw.accounts import service as accounts
from smsgw.api.apps.devices import device_info
from smsgw.api.deps import (
    BasicCredentials,
    Context,
    CurrentDevice,
    authenticate_basic,
    bearer_token,
    parse_basic,
)
from smsgw.devices import appversion
from smsgw.devices import service as devices
from smsgw.devices.schemas import (
    DeviceSelf,
    PasswordChange,
    RegisterRequest,
    RegisterResponse,
    UpdateRequest,
    UserCode,
    without_none,
)
from smsgw.domain.errors import TooManyRequests, Unauthorized
from smsgw.messages.schemas import ErrorBody

router = APIRouter(tags=["Mobile"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid body."},
    401: {"model": ErrorBody, "description": "Missing or wrong credentials."},
}


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _registrant(request: Request, context: Context) -> tuple[int, str, str | None]:
    """(user id, login, new password or None) of whoever registers this phone."""
    header = request.headers.get("authorization", "")
    basic = parse_basic(header)
    if basic is not None:
        return await authenticate_basic(request, context, basic), basic.login, None
    scheme, _, code = header.partition(" ")
    if scheme.lower() == "code":
        redeemed = await _redeem(request, context, code)
        return redeemed, await accounts.login_of(context.db, redeemed), None
    if not _may_register(request, context):
        raise Unauthorized("Unauthorized: sign in with your login, a code, or the private token")
    account = await devices.new_account(context.db)
    user_id = await accounts.user_id_of(context.db, account.login)
    return user_id, account.login, account.password


async def _redeem(request: Request, context: Context, code: str) -> int:
    """The user id a one-time code signs in. A code is a secret one could guess: a wrong
    one counts as a failed sign-in of the address and in the cap of wrong codes from all
    addresses, and a blocked caller is refused, right code or not (docs/auth.md)."""
    throttle = context.auth_throttle
    try:
        attempt = throttle.code_attempt(client_ip(request))
    except TooManyRequests:
        metrics.code_sign_in("throttled")
        raise
    redeemed = await codes.redeem(context.db, code)
    if redeemed is None:
        metrics.code_sign_in("wrong")
        raise Unauthorized("Unauthorized: unknown or expired code")
    throttle.release(attempt)
    metrics.code_sign_in("accepted")
    return redeemed


def _may_register(request: Request, context: Context) -> bool:
    """Whether a new account may be made: with the private token (checked and throttled as
    a password), or without any token when anonymous registration is on."""
    token = bearer_token(request)
    private = context.settings.private_token
    if private is None or token is None:
        return context.settings.anonymous_registration and token is None
    throttle = context.auth_throttle
    attempt = throttle.attempt(client_ip(request), None)
    if not hmac.compare_digest(token.encode(), private.get_secret_value().encode()):
        return False
    throttle.release(attempt)
    return True


@router.post(
    "/device",
    summary="Register a phone",
    status_code=201,
    response_model=RegisterResponse,
    responses={**ERRORS, 429: {"model": ErrorBody, "description": "Too many registrations."}},
)
async def register(request: Request, body: RegisterRequest, context: Context) -> JSONResponse:
    """Register a phone: with `Basic` login, `Code <one-time code>` or `Bearer <private token>`."""
    context.registrations.hit(client_ip(request), "registrations from this address")
    user_id, login, password = await _registrant(request, context)
    sims = [card.model_dump(exclude_none=True) for card in body.simCards or []]
    version = appversion.from_user_agent(request.headers.get("user-agent"))
    done = await devices.register(
        context.db, user_id, login, body.name, body.pushToken, sims, password, version
    )
    answer = RegisterResponse(
        id=done.device_id, token=done.token, login=done.login, password=done.password
    )
    return JSONResponse(without_none(answer.model_dump(), "password"), status_code=201)


@router.get("/device", response_model=DeviceSelf, responses=ERRORS, summary="Get this phone")
async def whoami(request: Request, context: Context) -> JSONResponse:
    """The caller's public address and, with a valid token, its device."""
    token = bearer_token(request)
    auth = await devices.authenticate(context.db, token) if token else None
    body: dict[str, Any] = {"externalIp": client_ip(request)}
    if auth is not None:
        context.presence.mark(auth.device_id)
        device = await devices.get(context.db, auth.device_id)
        body["device"] = device_info(context, device).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body)


@router.patch(
    "/device",
    status_code=204,
    responses={**ERRORS, 403: {"model": ErrorBody}},
    summary="Update this phone",
)
async def update(body: UpdateRequest, device: CurrentDevice, context: Context) -> Response:
    """Store the phone's push token and SIM cards."""
    sims = (
        [c.model_dump(exclude_none=True) for c in body.simCards]
        if body.simCards is not None
        else None
    )
    await devices.update(context.db, device, body.id, body.pushToken, sims)
    context.recent_phones.forget(device.device_id)  # its SIM list may have changed
    return Response(status_code=204)


@router.get(
    "/user/code", response_model=UserCode, responses=ERRORS, summary="Get a one-time sign-in code"
)
async def user_code(request: Request, context: Context) -> JSONResponse:
    """A one-time code to sign another phone in to the same account (Basic auth)."""
    basic = parse_basic(request.headers.get("authorization", ""))
    if basic is None:
        raise Unauthorized("Unauthorized")
    user_id = await authenticate_basic(request, context, basic)
    issued = await codes.issue(context.db, user_id, context.settings.code_ttl_seconds)
    return JSONResponse(
        UserCode(code=issued.code, validUntil=issued.valid_until).model_dump(mode="json")
    )


@router.patch(
    "/user/password", status_code=204, responses=ERRORS, summary="Change the account's password"
)
async def change_password(
    request: Request, body: PasswordChange, device: CurrentDevice, context: Context
) -> Response:
    """Change the account password from the phone (current password required)."""
    login = await accounts.login_of(context.db, device.user_id)
    try:
        await authenticate_basic(request, context, BasicCredentials(login, body.currentPassword))
    except Unauthorized:
        raise Unauthorized("failed to change password: the current password is wrong") from None
    await accounts.change_password(context.db, login, body.newPassword)
    return Response(status_code=204)
