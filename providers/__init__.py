"""The resource pipeline every kind runs through (`pipeline`, from each kind's record, `kind`), the host-side
toolkit the kinds share (host probes, shared-object registries, shell bodies, predictions) and the kinds
(`providers.kinds`).

`legacy` and the modules named after a kind at this level (`tap_port`, ...) only keep the provider class
paths that state written before `pipeline.HostProvider` refers to."""
