"""Outbound effects: the outbox and (later) two-way sync with connected systems."""
