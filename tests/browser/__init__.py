"""Browser tests of the built-in dashboard, in a real headless Chromium."""
