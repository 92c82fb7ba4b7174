"""Coordinator service logic that is neither SQL (store/) nor HTTP routes (net/)."""
