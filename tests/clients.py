"""What the tests' HTTP clients share."""

from __future__ import annotations

import httpx

#: The one TLS context of a test process's HTTP clients. httpx makes one for every client not
#: given one, reading certifi's authorities anew (about 35 ms of CPU), whatever the scheme of
#: the requests: the tests make thousands of clients, most of them to poll a server until it
#: answers, and those contexts were a tenth of the suite's CPU in Python. It verifies as
#: httpx's own would (the tests' servers speak plain HTTP on 127.0.0.1 anyway).
TLS = httpx.create_ssl_context()
