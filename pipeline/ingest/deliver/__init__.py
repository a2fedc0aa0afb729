"""Delivery: each valid row to HeroBase exactly once, and proving what the tenant does."""
