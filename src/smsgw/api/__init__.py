"""HTTP API: the 3rd-party API for applications (and, later, the mobile API for phones)."""
