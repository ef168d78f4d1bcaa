"""Sessions read models."""
