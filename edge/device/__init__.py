"""The device layer: profiles, transports, runners, micro-model measurement, cost tables."""
