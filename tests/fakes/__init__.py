"""Local servers that speak real provider wire protocols, for integration tests."""
