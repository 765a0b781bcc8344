"""The registry's schema revisions, oldest first."""
