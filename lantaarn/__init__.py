"""The `lantaarn` command, its settings, and the local stack for `lantaarn demo`."""
