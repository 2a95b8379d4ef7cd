"""Shared test helpers: committee signing, accounting checks, constants."""
