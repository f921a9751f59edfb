"""Survey mosaics: sources detected tile by tile, and their cutouts."""
