"""haloterm.storage."""
