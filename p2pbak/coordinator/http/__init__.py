"""The coordinator's HTTP routes: parse, call the service, answer."""
