"""MMAD: format, question building, prompt protocol, answer parsing and scoring (no model here)."""
