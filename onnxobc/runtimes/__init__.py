"""Runtime adapters, one file each, imported lazily by whoever needs that runtime."""
