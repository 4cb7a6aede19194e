"""webhook-operator: webhook delivery as Kubernetes custom resources."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("webhook-operator")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
