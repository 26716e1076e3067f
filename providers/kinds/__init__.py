"""The resource kinds: one module per kind (and the parts some kinds share)."""
