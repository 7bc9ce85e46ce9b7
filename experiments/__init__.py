"""Research next to the product, not inside it: one-off studies and their plans (see README.md)."""
