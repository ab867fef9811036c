"""Scripts that run INSIDE the serving image (stdlib only, like handlers/: nothing from torchship)."""
