"""The home page, the API documentation page and the offline interactive explorer."""

from __future__ import annotations

import re

import httpx

from smsgw.messages.schemas import SendMessageRequest
from smsgw.web.examples import EXAMPLES
from tests.clients import TLS
from tests.conftest import LiveServer

METHODS = ("get", "post", "put", "patch", "delete")


def operations(server: LiveServer) -> dict[str, tuple[str, str]]:
    schema = httpx.get(f"{server.url}/openapi.json", verify=TLS).json()
    return {
        op["operationId"]: (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_the_home_page_says_what_smsgw_is_and_links_docs_and_dashboard(server: LiveServer) -> None:
    page = httpx.get(server.url + "/", verify=TLS)
    assert page.status_code == 200
    assert "your own SMS gateway" in page.text and "Quick start" in page.text
    assert 'href="/docs"' in page.text and 'href="/dashboard"' in page.text
    assert f"curl -X POST {server.url}/api/3rdparty/v1/messages" in page.text


def test_the_docs_page_lists_every_operation_of_the_openapi_document(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs", verify=TLS).text
    listed = set(re.findall(r'data-operation-id="([^"]+)"', page))
    expected = operations(server)
    assert listed == set(expected)
    for method, path in expected.values():
        assert f"{method}</span> <code>{path}</code>" in page


def test_the_docs_page_reads_like_the_seed(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs", headers={"Host": "sms.example.org"}, verify=TLS).text
    assert 'Base URL: <code id="base-url">http://sms.example.org/api/3rdparty/v1</code>' in page
    assert "<code>basicAuth</code>: HTTP Basic: your smsgw login" in page
    groups = re.findall(r'<h2 id="group-([a-z]+)">', page)
    assert groups[:2] == ["messages", "devices"]
    send = page.split('data-operation-id="sendMessages"')[1].split("</article>")[0]
    assert "curl -X POST http://sms.example.org/api/3rdparty/v1/messages" in send
    assert "-u LOGIN:PASSWORD" in send and "Sample Response" in send and "phoneNumbers" in send
    listing = page.split('data-operation-id="listMessages"')[1].split("</article>")[0]
    assert "skip=0&amp;limit=20" in listing and "<code>limit</code>" in listing


def test_every_written_example_belongs_to_a_live_operation(server: LiveServer) -> None:
    live = operations(server)
    assert set(EXAMPLES) <= set(live)
    for operation_id, example in EXAMPLES.items():
        _, path = live[operation_id]
        assert set(example.path) == set(re.findall(r"{(\w+)}", path)), operation_id
    SendMessageRequest.model_validate(EXAMPLES["sendMessages"].body)


def test_a_written_example_works_against_the_api(server: LiveServer, api: httpx.Client) -> None:
    response = api.post("/messages", json=EXAMPLES["sendMessages"].body)
    assert response.status_code == 200
    shown = EXAMPLES["sendMessages"].response
    assert set(shown) == set(response.json())


def test_the_interactive_explorer_uses_only_files_served_by_smsgw(server: LiveServer) -> None:
    page = httpx.get(server.url + "/docs/interactive", verify=TLS).text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert not [a for a in assets if a.startswith(("http:", "https:", "//"))]
    for asset in assets:
        if asset.startswith("/static/"):
            assert httpx.get(server.url + asset, verify=TLS).status_code == 200, asset
    assert "/static/swagger/swagger-ui-bundle.js" in assets


def test_openapi_documents_every_route_with_its_security(server: LiveServer) -> None:
    schema = httpx.get(f"{server.url}/openapi.json", verify=TLS).json()
    assert schema["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    paths = set(schema["paths"])
    assert {"/api/3rdparty/v1/messages", "/api/3rdparty/v1/devices"} <= paths
    assert not [p for p in paths if p.startswith(("/dashboard", "/docs", "/static"))]
