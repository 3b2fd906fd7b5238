"""What the tests' HTTP clients share."""

from __future__ import annotations

from smsgw.webhooks import guard

#: The one TLS context of a test process's HTTP clients: the process's own, which webhook
#: requests use (guard.tls, httpx's default made once). httpx makes one for every client not
#: given one, reading certifi's authorities anew (about 35 ms of CPU), whatever the scheme of
#: the requests: the tests make thousands of clients, most of them to poll a server until it
#: answers, and those contexts were a tenth of the suite's CPU in Python.
TLS = guard.tls()
