"""The resource pipeline every kind runs through (`base`), the host-side toolkit the kinds share (host
probes, shared-object registries, shell bodies, predictions) and the kinds (`providers.kinds`).

The modules named after a kind at this level (`tap_port`, ...) only keep the provider classes where state
written before the kinds moved refers to them."""
