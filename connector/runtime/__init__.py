"""The daemon: scheduler, HTTP server, webhook inbox, health and metrics."""
