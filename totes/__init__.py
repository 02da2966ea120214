"""Terrific Totes data platform."""
