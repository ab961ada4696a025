"""Tests for include/media."""
