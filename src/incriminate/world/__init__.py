"""world: the synthetic agent world (grammar, personas, corpora, prompt sets)."""
