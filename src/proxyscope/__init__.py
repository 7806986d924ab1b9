"""proxyscope."""
