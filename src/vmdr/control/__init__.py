"""control layer of vmdr (see docs/ARCHITECTURE.md)."""
