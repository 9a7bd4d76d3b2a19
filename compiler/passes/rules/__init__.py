"""Rule families, one file each: `algebra` (identities), `attention`, `linear`, ..."""
