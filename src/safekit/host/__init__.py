"""What safekit keeps and finds on a host: its mounts (found and removed without ever looking
through them) and the processes it started (recognised by pid, start time and command line)."""
