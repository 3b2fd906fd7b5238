"""The inbox: SMS and data SMS received by the phones, stored per owner and phone."""
