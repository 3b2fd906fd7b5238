"""Carrier links added and deleted through the 3rd-party API (`POST /links`,
`DELETE /links/{id}`) of a real running smsgw, against the npm `smpp` simulator
(tests/fakes/smsc-sim.js): a link added so binds and delivers; every broken setting is
refused naming its field, by the same rules as the CLI's; the scopes `devices:write` and
`devices:delete` are demanded; a deleted link unbinds; another account's link is not found."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smsgw.links.schemas import (
    BIND_MODE_RULE,
    DATA_CODING_RULE,
    HOST_RULE,
    NAME_RULE,
    NPI_RULE,
    LinkIn,
)
from tests.clients import TLS
from tests.conftest import Account, LiveServer, database_rows, free_port, running
from tests.fakes.smsc import PASSWORD, USER, Smsc, wait_until
from tests.test_links import bound as listed_bound
from tests.test_links import cli, reaches, send
from tests.webhook_support import hub_settings

PREFIX = "/api/3rdparty/v1"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """As tests/test_links.py's: binds give up after 2 s."""
    with running(hub_settings(tmp_path / "data", link_connect_timeout_seconds=2)) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Account:
    return live.create_user("alice")


@pytest.fixture
def api(live: LiveServer, alice: Account) -> Iterator[httpx.Client]:
    with live.client(alice) as client:
        yield client


def settings_of(smsc: Smsc, **changes: Any) -> dict[str, Any]:
    body = {"name": "Carrier A", "host": "127.0.0.1", "port": smsc.port, "systemId": USER,
            "password": PASSWORD, "source": "SMSGW"}  # fmt: skip
    return body | changes


def add(api: httpx.Client, smsc: Smsc, **changes: Any) -> str:
    answer = api.post("/links", json=settings_of(smsc, **changes))
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def state_of(api: httpx.Client, link_id: str) -> str:
    answer = api.get(f"/links/{link_id}")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["state"])


def bound(api: httpx.Client, link_id: str) -> None:
    wait_until(lambda: state_of(api, link_id) == "bound", what="the link bound")


def test_a_link_added_through_the_api_binds_and_delivers_a_message(
    live: LiveServer, api: httpx.Client, smsc: Smsc
) -> None:
    answer = api.post("/links", json=settings_of(smsc, throughput=50, window=5))

    assert answer.status_code == 201, answer.text
    added = answer.json()
    link_id = added["id"]
    assert answer.headers["location"] == f"{PREFIX}/links/{link_id}"
    assert "password" not in added and PASSWORD not in answer.text
    expected = {
        "name": "Carrier A", "kind": "smpp", "host": "127.0.0.1", "port": smsc.port,
        "systemId": USER, "systemType": "", "source": "SMSGW", "sourceTon": 5, "sourceNpi": 0,
        "throughput": 50, "window": 5, "dataCoding": 0, "bindMode": "transceiver",
    }  # fmt: skip
    assert {key: added[key] for key in expected} == expected
    shown = api.get(answer.headers["location"].removeprefix(PREFIX)).json()
    assert {key: shown[key] for key in expected} == expected
    assert set(shown) == set(added)  # the same shape as GET /links/{id}
    # Stored as the CLI and the dashboard store it: as given, to bind with (links/models.py).
    stored = "SELECT password FROM links WHERE device_id = ?"
    assert database_rows(live.settings, stored, [link_id]) == [(PASSWORD,)]

    bound(api, link_id)
    assert smsc.binds()["ok"] >= 1
    message_id = send(api, "Hello through a link the API added")
    done = reaches(api, message_id, "Delivered")

    assert done["deviceId"] == link_id
    [submit] = smsc.submits()
    assert (submit["source"], submit["text"]) == ("SMSGW", "Hello through a link the API added")
    assert PASSWORD not in api.get("/links").text


def test_the_defaults_are_the_clis_a_blank_name_the_default_and_2775_0_is_2775(
    shared_api: httpx.Client,
) -> None:
    port = free_port()
    body = {"host": "127.0.0.1", "port": float(port), "systemId": "fuzz", "name": "  "}
    answer = shared_api.post("/links", json=body)

    assert answer.status_code == 201, answer.text
    added = answer.json()
    defaults = {"port": port, "name": "SMPP link", "systemType": "", "source": "", "sourceTon": 5,
                "sourceNpi": 0, "throughput": 10, "window": 10, "dataCoding": 0,
                "bindMode": "transceiver"}  # fmt: skip
    assert {key: added[key] for key in defaults} == defaults
    assert shared_api.delete(f"/links/{added['id']}").status_code == 204


def test_spaces_around_a_name_or_address_are_trimmed(
    shared_api: httpx.Client,
) -> None:
    body = {"host": " 127.0.0.1  ", "port": free_port(), "systemId": " fuzz ",
            "systemType": " VMA ", "source": " SMSGW "}  # fmt: skip
    answer = shared_api.post("/links", json=body)

    assert answer.status_code == 201, answer.text
    added = answer.json()
    assert [added[key] for key in ("host", "systemId", "systemType", "source")] == [
        "127.0.0.1", "fuzz", "VMA", "SMSGW"
    ]  # fmt: skip
    assert shared_api.delete(f"/links/{added['id']}").status_code == 204


def test_a_host_is_a_name_or_an_address_of_either_kind_and_a_name_any_text(
    shared_api: httpx.Client,
) -> None:
    for host, name in (("::1", "Carrier Ä 😀"), ("localhost", "β-link (backup)")):
        body = {"host": host, "port": free_port(), "systemId": USER, "name": name}
        answer = shared_api.post("/links", json=body)
        assert answer.status_code == 201, answer.text
        assert (answer.json()["host"], answer.json()["name"]) == (host, name)
        assert shared_api.delete(f"/links/{answer.json()['id']}").status_code == 204


BROKEN = [
    ({"port": 0}, "port: a whole number from 1 to 65535"),
    ({"port": 65536}, "port: a whole number from 1 to 65535"),
    ({"port": "2775"}, "port: a whole number from 1 to 65535"),
    ({"port": 2775.5}, "port: a whole number from 1 to 65535"),
    ({"port": True}, "port: a whole number from 1 to 65535"),
    ({"window": 0}, "window: a whole number from 1 to 1000"),
    ({"window": 1001}, "window: a whole number from 1 to 1000"),
    ({"throughput": 0}, "throughput: a whole number from 1 to 100000"),
    ({"host": None}, "host: Input should be a valid string"),
    ({"host": "   "}, "host: required"),
    ({"host": "smsc.example.net\n"}, "host: printable ASCII characters only"),
    ({"systemId": ""}, "systemId: required"),
    ({"systemId": "s" * 16}, "systemId: at most 15 characters (SMPP 3.4)"),
    ({"password": "123456789"}, "password: at most 8 characters (SMPP 3.4)"),
    ({"systemType": "t" * 13}, "systemType: at most 12 characters (SMPP 3.4)"),
    ({"source": "Ümlaut"}, "source: printable ASCII characters only"),
    ({"source": "1" * 21}, "source: at most 20 characters (SMPP 3.4)"),
    ({"sourceTon": 7}, "sourceTon: a whole number from 0 to 6"),
    ({"sourceTon": -1}, "sourceTon: a whole number from 0 to 6"),
    ({"sourceNpi": 19}, f"sourceNpi: {NPI_RULE}"),
    ({"sourceNpi": 2}, f"sourceNpi: {NPI_RULE}"),  # (no plan of SMPP 3.4's)
    ({"sourceNpi": 13}, f"sourceNpi: {NPI_RULE}"),
    ({"dataCoding": 8}, f"dataCoding: {DATA_CODING_RULE}"),
    ({"bindMode": "tx"}, f"bindMode: {BIND_MODE_RULE}"),
    ({"bindMode": "TRANSCEIVER"}, f"bindMode: {BIND_MODE_RULE}"),
    ({"bindMode": ""}, f"bindMode: {BIND_MODE_RULE}"),
    ({"bindMode": 1}, f"bindMode: {BIND_MODE_RULE}"),
    ({"bindMode": None}, f"bindMode: {BIND_MODE_RULE}"),
    ({"name": "n" * 129}, "name: at most 128 characters"),
    ({"host": "smpp://smsc.example.net:2775"}, f"host: {HOST_RULE}"),  # can never connect
    ({"host": "127.0.0.1:2775"}, f"host: {HOST_RULE}"),
    ({"host": "smsc example"}, f"host: {HOST_RULE}"),
    ({"host": "-smsc.example.net"}, f"host: {HOST_RULE}"),
    ({"host": "fe80::1%eth0"}, f"host: {HOST_RULE}"),
    ({"host": "::ffff:10.0.0.5"}, f"host: {HOST_RULE}"),  # (give 10.0.0.5)
    ({"host": "x" + " " * 253}, "host: at most 253 characters (SMPP 3.4)"),  # as given
    ({"name": "\x1b[31mred\x1b[0m"}, f"name: {NAME_RULE}"),  # (on the operator's terminal)
    ({"name": "two\nlines"}, f"name: {NAME_RULE}"),
    ({"name": "a\x00b"}, f"name: {NAME_RULE}"),
    ({"name": "abc\u202eevil"}, f"name: {NAME_RULE}"),
    ({"system_id": USER}, "system_id: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("change", "message"), BROKEN, ids=[str(c) for c, _ in BROKEN])
def test_a_broken_setting_is_refused_naming_its_field(
    shared_api: httpx.Client, change: dict[str, Any], message: str
) -> None:
    body = {"host": "127.0.0.1", "port": 2775, "systemId": USER} | change

    answer = shared_api.post("/links", json=body)

    assert (answer.status_code, answer.json()) == (400, {"message": message})
    assert shared_api.get("/links").json() == []


def test_a_missing_setting_or_body_is_refused(shared_api: httpx.Client) -> None:
    missing = shared_api.post("/links", json={"port": 2775})
    assert (missing.status_code, missing.json()) == (
        400,
        {"message": "host: Field required; systemId: Field required"},
    )
    not_json = shared_api.post("/links", content=b"host=x", headers={"content-type": "text/plain"})
    assert not_json.status_code == 400
    assert "JSON" in not_json.json()["message"]
    every = shared_api.post("/links", json={"host": " ", "port": 0, "systemId": USER, "window": 0})
    message = (
        "host: required; port: a whole number from 1 to 65535; "
        "window: a whole number from 1 to 1000"
    )
    assert (every.status_code, every.json()) == (400, {"message": message})
    assert shared_api.get("/links").json() == []


def test_the_cli_refuses_what_the_api_refuses_in_the_same_words(
    live: LiveServer, alice: Account
) -> None:
    """One set of rules (links/schemas.py): the CLI says them under its options' names,
    every one it breaks (it said only the first, under the setting's name)."""
    for option, value, rule in (
        ("--port", "0", "--port: a whole number from 1 to 65535"),
        ("--window", "0", "--window: a whole number from 1 to 1000"),
        ("--source-ton", "7", "--source-ton: a whole number from 0 to 6"),
        ("--source-npi", "2", f"--source-npi: {NPI_RULE}"),
        ("--bind-mode", "tx", f"--bind-mode: {BIND_MODE_RULE}"),
        ("--host", "smpp://127.0.0.1:2775", f"--host: {HOST_RULE}"),
        ("--name", "\x1b]0;title\x07", f"--name: {NAME_RULE}"),
        ("--source", "S" * 21, "--source: at most 20 characters (SMPP 3.4)"),
    ):
        said = cli(
            live, "links", "add", "smpp", "--user", alice.login, "--host", "127.0.0.1",
            "--port", "2775", "--system-id", USER, "--password-stdin", option, value,
            stdin="x\n", code=1,
        )  # fmt: skip
        assert f"error: {rule}\n" in said
    every = cli(
        live, "links", "add", "smpp", "--user", alice.login, "--host", "a b", "--port", "0",
        "--system-id", "s" * 16, "--password-stdin", "--data-coding", "8", stdin="x\n", code=1,
    )  # fmt: skip
    assert (
        f"error: --host: {HOST_RULE}; --port: a whole number from 1 to 65535; --system-id: at "
        f"most 15 characters (SMPP 3.4); --data-coding: {DATA_CODING_RULE}\n"
    ) in every
    assert json.loads(cli(live, "links", "list", "--json")) == []


def test_the_cli_trims_spaces_around_a_name_or_address_as_the_api_does(
    live: LiveServer, alice: Account, smsc: Smsc
) -> None:
    """(It stored them as typed: a link to " 127.0.0.1 " never connected, and " smsgw" was
    refused by the SMSC.)"""
    said = cli(
        live, "links", "add", "smpp", "--user", alice.login, "--host", " 127.0.0.1 ",
        "--port", str(smsc.port), "--system-id", f" {USER} ", "--system-type", " VMA ",
        "--source", " SMSGW ", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    link_id = said.split()[-1]
    [listed] = json.loads(cli(live, "links", "list", "--json"))
    assert [listed[key] for key in ("host", "systemId", "systemType", "source")] == [
        "127.0.0.1", USER, "VMA", "SMSGW"
    ]  # fmt: skip
    listed_bound(live, link_id)


def test_the_cli_wants_a_password_line_and_an_account_that_exists(
    live: LiveServer, alice: Account
) -> None:
    """An empty standard input gave a link with an empty password (an empty line still
    does, on purpose); `links list --user` of no account listed nothing, as if it had none."""
    no_line = cli(
        live, "links", "add", "smpp", "--user", alice.login, "--host", "127.0.0.1",
        "--port", "2775", "--system-id", USER, "--password-stdin", stdin="", code=1,
    )  # fmt: skip
    assert "no password on standard input" in no_line
    assert json.loads(cli(live, "links", "list", "--json")) == []
    cli(
        live, "links", "add", "smpp", "--user", alice.login, "--host", "127.0.0.1",
        "--port", "2775", "--system-id", USER, "--password-stdin", stdin="\n",
    )  # fmt: skip
    assert "no user with login 'nobody'" in cli(live, "links", "list", "--user", "nobody", code=1)
    [listed] = json.loads(cli(live, "links", "list", "--user", alice.login, "--json"))
    assert listed["user"] == alice.login


def token(api: httpx.Client, *scopes: str) -> dict[str, str]:
    answer = api.post("/auth/token", json={"scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_adding_needs_devices_write_and_deleting_devices_delete(
    live: LiveServer, smsc: Smsc, api: httpx.Client
) -> None:
    lister = token(api, "devices:list")
    with httpx.Client(base_url=live.api, timeout=30, verify=TLS) as bare:
        refused = bare.post("/links", json=settings_of(smsc), headers=lister)
        assert (refused.status_code, refused.json()) == (
            403,
            {"message": "scope required: devices:write"},
        )
        assert api.get("/links").json() == []

        writer = token(api, "devices:write")
        added = bare.post("/links", json=settings_of(smsc), headers=writer)
        assert added.status_code == 201, added.text
        link_id = added.json()["id"]

        for headers in (lister, writer):
            refused = bare.delete(f"/links/{link_id}", headers=headers)
            assert (refused.status_code, refused.json()) == (
                403,
                {"message": "scope required: devices:delete"},
            )
        assert api.get(f"/links/{link_id}").status_code == 200
        deleter = token(api, "devices:delete")
        assert bare.delete(f"/links/{link_id}", headers=deleter).status_code == 204


def test_deleting_a_link_unbinds_it_and_it_is_gone(
    live: LiveServer, api: httpx.Client, smsc: Smsc
) -> None:
    link_id = add(api, smsc)
    bound(api, link_id)

    answer = api.delete(f"/links/{link_id}")

    assert (answer.status_code, answer.content) == (204, b"")
    wait_until(lambda: smsc.binds()["unbinds"] == 1, what="the unbind")
    wait_until(lambda: smsc.binds()["bound"] == 0, what="no session left")
    gone = {"message": "link not found"}
    assert (api.get(f"/links/{link_id}").status_code, api.get(f"/links/{link_id}").json()) == (
        404,
        gone,
    )
    again = api.delete(f"/links/{link_id}")
    assert (again.status_code, again.json()) == (404, gone)
    assert api.get("/links").json() == []
    rows = database_rows(live.settings, "SELECT count(*) FROM links WHERE device_id = ?", [link_id])
    assert rows == [(0,)]


def test_another_account_can_neither_see_nor_delete_a_link(
    live: LiveServer, api: httpx.Client, smsc: Smsc
) -> None:
    link_id = add(api, smsc)
    bound(api, link_id)
    bob = live.create_user("bob")

    with live.client(bob) as other:
        seen = other.get(f"/links/{link_id}")
        deleted = other.delete(f"/links/{link_id}")
        listed = other.get("/links").json()

    assert (seen.status_code, seen.json()) == (404, {"message": "link not found"})
    assert (deleted.status_code, deleted.json()) == (404, {"message": "link not found"})
    assert listed == []
    assert state_of(api, link_id) == "bound"
    assert smsc.binds()["unbinds"] == 0


def test_a_phone_is_not_a_link_to_delete(live: LiveServer, api: httpx.Client) -> None:
    phone = api.post(
        live.url + "/api/mobile/v1/device", json={"name": "phone", "pushToken": None}
    ).json()

    answer = api.delete(f"/links/{phone['id']}")

    assert (answer.status_code, answer.json()) == (404, {"message": "link not found"})
    assert [device["id"] for device in api.get("/devices").json()] == [phone["id"]]


def test_delete_on_the_routing_rule_is_no_link_to_delete(shared_api: httpx.Client) -> None:
    """`/links/routing` is the routing rule's path, not a link's id."""
    answer = shared_api.delete("/links/routing")

    assert (answer.status_code, answer.json()) == (405, {"message": "Method Not Allowed"})
    assert answer.headers["allow"] == "GET, PUT"
    assert shared_api.get("/links/routing").json()["mode"] == "shared"


def test_the_settings_received_never_show_the_password() -> None:
    given = LinkIn(host="127.0.0.1", port=2775, systemId=USER, password=PASSWORD)

    assert PASSWORD not in repr(given) and PASSWORD not in str(given)
    assert PASSWORD not in repr(given.settings())
    assert given.settings().password == PASSWORD
