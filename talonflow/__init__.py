"""The talonflow CLI and the local stack it supervises."""
