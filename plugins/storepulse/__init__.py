"""StorePulse: real-time analytics for small businesses."""
