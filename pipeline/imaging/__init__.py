"""Pure image algorithms: blob detection, geometry (crop, align, cut out), tiles."""
