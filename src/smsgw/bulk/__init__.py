"""Bulk sends: a CSV of numbers and columns, a text with `{{column}}` placeholders, one
message per row; the batch the dashboard keeps while it sends them (docs/bulk.md)."""
