"""Stage configurations: frozen dataclasses with named presets."""
