"""Account settings: the phone settings an owner sets through the API and smsgw pushes to
every phone of the account (upstream's `device_settings`)."""
