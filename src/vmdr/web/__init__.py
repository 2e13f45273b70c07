"""The dashboard: web pages that are thin clients of the configuration server's REST API."""
