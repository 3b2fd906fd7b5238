"""What a new user sees in the browser and meets in the API's first answers: the home page
names the phones' address, the documentation page explains every field with real samples in
one voice, a favicon, webhook URL rules that name the setting, timestamps in milliseconds."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from smsgw.api.apps.inbox import RefreshIn
from smsgw.devices.schemas import DeviceChange, PasswordChange, RegisterRequest, UpdateRequest
from smsgw.links.schemas import LinkIn
from smsgw.routing.schemas import RoutingRuleIn, StateReportIn
from smsgw.tokens.schemas import TokenRequest
from smsgw.web.examples import EXAMPLES
from smsgw.webhooks.schemas import AttemptView, WebhookIn
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, running
from tests.web_support import Dashboard

TAG = re.compile(r"<[^>]+>")


def text_of(markup: str) -> str:
    return " ".join(html.unescape(TAG.sub("", markup)).split())


def test_the_home_page_names_the_phone_address_and_why_127_0_0_1_will_not_do(
    server: LiveServer,
) -> None:
    page = httpx.get(server.url + "/", verify=TLS).text
    address = re.search(r'<code id="phone-address">([^<]+)</code>', page)
    assert address and address.group(1) == f"{server.url}/api/mobile/v1"
    note = text_of(page.split('id="phone-address-note">')[1].split("</span>")[0])
    assert "A phone cannot reach 127.0.0.1" in note and "SMSGW_PUBLIC_URL" in note


def test_the_home_page_gives_the_public_url_when_set(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", public_url="https://sms.example.org")
    with running(settings) as live:
        page = httpx.get(live.url + "/", verify=TLS).text
    assert '<code id="phone-address">https://sms.example.org/api/mobile/v1</code>' in page
    assert "phone-address-note" not in page


def operations_of(page: str) -> dict[str, str]:
    found = re.findall(r'data-operation-id="([^"]+)">(.*?)</article>', page, re.S)
    return dict(found)


def test_every_documented_field_has_a_meaning(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs", verify=TLS).text
    blank = [
        (op_id, row)
        for op_id, body in operations_of(page).items()
        for row in re.findall(r"<tr><td><code>([^<]+)</code>.*?<td></td></tr>", body)
    ]
    assert blank == []
    send = operations_of(page)["sendMessages"]
    for name in ("textMessage", "dataMessage", "isEncrypted", "withDeliveryReport"):
        assert re.search(rf"<code>{name}</code>.*?<td>[A-Z][^<]+", send), name


def test_every_sample_response_is_a_real_example(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs", verify=TLS).text
    generic = [
        op_id
        for op_id, body in operations_of(page).items()
        if re.search(
            r"&#34;string&#34;|&quot;string&quot;|\"string\"", body.split("Sample Response")[1]
        )
    ]
    assert generic == []
    logs = text_of(operations_of(page)["get_logs_api_3rdparty_v1_logs_get"])
    assert "message c6f1f7cc-97c1-44a2-99fb-83c4b3f9ef4c is Delivered" in logs


def test_every_written_request_body_is_accepted_by_its_route() -> None:
    models = {
        "refresh_api_3rdparty_v1_inbox_refresh_post": RefreshIn,
        "export_api_3rdparty_v1_messages_inbox_export_post": RefreshIn,
        "update_api_mobile_v1_device_patch": UpdateRequest,
        "change_password_api_mobile_v1_user_password_patch": PasswordChange,
        "register_api_mobile_v1_device_post": RegisterRequest,
        "register_webhook_api_3rdparty_v1_webhooks_post": WebhookIn,
        "issue_token_api_3rdparty_v1_auth_token_post": TokenRequest,
        "changeDevices": DeviceChange,
        "put_routing_api_3rdparty_v1_links_routing_put": RoutingRuleIn,
        "createLink": LinkIn,
    }
    for operation_id, model in models.items():
        model.model_validate(EXAMPLES[operation_id].body)
    for report in EXAMPLES["report_api_mobile_v1_message_patch"].body:
        StateReportIn.model_validate(report)


def test_descriptions_render_their_markdown(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs", verify=TLS).text
    outside_samples = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)
    assert "`" not in text_of(outside_samples)
    assert "<code>X-Total-Count</code>" in page


def test_summaries_read_alike(server: LiveServer) -> None:
    schema = httpx.get(server.url + "/openapi.json", verify=TLS).json()
    title_cased = [
        op["summary"]
        for item in schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "summary" in op
        and len(op["summary"].split()) > 1
        and all(word[0].isupper() for word in op["summary"].split())
    ]  # fmt: skip
    assert title_cased == []


def test_pages_have_a_favicon(server: LiveServer) -> None:
    icon = httpx.get(server.url + "/favicon.ico", verify=TLS)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    for path in ("/", "/docs", "/docs/interactive"):
        page = httpx.get(server.url + path, verify=TLS).text
        assert '<link rel="icon" href="/static/favicon.svg"' in page, path
    assert httpx.get(server.url + "/static/favicon.svg", verify=TLS).status_code == 200


def test_a_refused_webhook_url_names_the_setting_that_allows_it(
    server: LiveServer, api: httpx.Client
) -> None:
    for url in ("http://example.com/hook", "https://127.0.0.1/hook", "https://localhost/hook"):
        answer = api.post("/webhooks", json={"url": url, "event": "sms:received"})
        assert answer.status_code == 400, url
        assert "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS" in answer.json()["message"], url


def hint_of(server: LiveServer, account: Account) -> str:
    web = Dashboard(server)
    web.sign_in(account)
    page = web.http.get("/dashboard/webhooks").text
    web.close()
    return text_of(page.split('id="wh-url-help"')[1].split("</p>")[0])


def test_the_dashboard_hint_agrees_with_the_setting(
    server: LiveServer, alice: Account, tmp_path: Path
) -> None:
    strict = hint_of(server, alice)
    assert "public host" in strict and "SMSGW_WEBHOOKS_ALLOW_PRIVATE_URLS" in strict
    settings = make_settings(tmp_path / "open", webhooks_allow_private_urls=True)
    with running(settings) as live:
        open_hint = hint_of(live, live.create_user("bob"))
    assert "http://" in open_hint and "private and local hosts" in open_hint


def test_delivery_log_times_have_milliseconds() -> None:
    at = datetime(2026, 5, 17, 9, 40, 2, 118000, tzinfo=UTC)
    view = AttemptView(
        eventId="e", event="sms:received", startedAt=at, finishedAt=at,
        statusCode=200, durationMs=1, error=None,
    ).model_dump(mode="json")  # fmt: skip
    assert view["startedAt"] == view["finishedAt"] == "2026-05-17T09:40:02.118Z"
