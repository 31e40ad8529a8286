"""synque-ray: rank candidate synthetic datasets by proxy metrics, on Ray."""

__version__ = "0.1.0"
