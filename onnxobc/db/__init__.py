"""The model database: every (layer, level) compressed and its losses, on disk, resumable."""
