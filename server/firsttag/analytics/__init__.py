"""What converted and why: attribution at write time, reports at read time."""
