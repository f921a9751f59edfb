"""One package per workflow; each declares its stages, tables and report sections."""
