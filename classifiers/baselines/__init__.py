"""Pixel baselines: the networks, the loop that trains them from the store's images or maps, the test-time view."""
