"""The MQTT side: sessions, broker configuration and the deployment's certificate authority."""
