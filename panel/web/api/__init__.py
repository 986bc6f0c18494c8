"""The JSON API: transport (base), serialisers, endpoints (views)."""
