"""Machine-unlearning challenge kit."""

__version__ = "0.5.0"

from challenge.reports.tracking import register_resolvers as _register_resolvers  # noqa: E402

_register_resolvers()
