"""storeflow: vendor portals in, PostgreSQL in the middle, shelf labels out."""

__version__ = "0.1.0"
