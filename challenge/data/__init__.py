"""Face-age data: sources (generated, folders), the in-memory form, splits, and loaders."""
