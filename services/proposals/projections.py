"""Proposals read models."""
