"""The Emporium service kit: everything a service needs except its domain."""
