"""Galaxy cutouts (the galaxy notebook): find, reject, align and cut out the central galaxy."""
