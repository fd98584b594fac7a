"""The admin console: the cluster seen and steered from a browser, at /admin/ (docs/console.md)."""

from aggregator.console.console import Console

__all__ = ["Console"]
