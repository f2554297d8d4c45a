"""The embedded default plugins: they need no account, no secret and no network."""
