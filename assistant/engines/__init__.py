"""Engine protocols, fallback chains and the registry of providers."""
