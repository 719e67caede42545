"""The agent watches itself: its own metrics, logging and the health server (DESIGN §6)."""
