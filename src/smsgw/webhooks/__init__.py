"""Webhooks: registrations, the durable outbox, signing, the SSRF guard and the sender."""
