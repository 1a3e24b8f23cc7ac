"""OpenDeep package."""
