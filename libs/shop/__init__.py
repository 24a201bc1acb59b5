"""Shared parts of the mobile shop: contracts, errors, settings, logging, messaging, ops."""
