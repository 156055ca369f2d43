"""Machine-unlearning challenge kit."""

__version__ = "0.1.0"
