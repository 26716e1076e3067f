"""Benchmarks on the testbed: the real `pulumi` CLI against baselines that do the same host work."""
