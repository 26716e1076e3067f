"""The SSH transport: settings, the connection pool, the remote runners, scripts and their results."""
