"""Tasks of this area (being written)."""
