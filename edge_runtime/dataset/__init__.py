"""Everything that touches DATASET/<class>/: safe file writes, collecting photos, mining uncertain frames, reviewing them."""
