"""Benchmarks of cloudrepo on the testbed: the real `pulumi` CLI against baselines doing the same host work."""
