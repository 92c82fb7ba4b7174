"""Every HTTP route and client: coordinator API, peer fragment API, tickets, auth."""
