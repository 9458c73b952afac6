"""Remote workers: generation on other machines, joined to a server over Redis (docs/scaling.md)."""
