"""pageref: who takes and drops references on ZONE_DEVICE / DAX pages, page by page."""

__version__ = "0.1.0"
