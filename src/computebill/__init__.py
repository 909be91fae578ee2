"""Compute Billing Platform: a GPU cloud storefront and billing system."""

from importlib.metadata import version

__version__ = version("computebill")
