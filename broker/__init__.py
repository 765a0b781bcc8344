"""The MQTT side of lantaarn: broker configuration, logins and ACL (and the session layer)."""
