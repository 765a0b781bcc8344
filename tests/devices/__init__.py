"""Tests of the device domain: registry, import and export, broker provisioning."""
