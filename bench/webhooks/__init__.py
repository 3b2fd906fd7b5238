"""bench/webhooks: webhook delivery from phones to a local receiver, against a plain loop."""
