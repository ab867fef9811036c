"""The validation gate: compiled vs source parity (and, in verify, served vs source)."""
