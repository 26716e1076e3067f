"""The words every part shares, with no I/O: names and marks, how values are shown, typed errors and
the resources' specs."""
