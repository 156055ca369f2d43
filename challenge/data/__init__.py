"""Face-age data: sources, splits and the Lightning DataModule."""
