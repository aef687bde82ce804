"""Plumbing that every layer shares, below ``io``: atomic file writes (:mod:`.atomic`), one-line
error text (:mod:`.errors`) and provenance (:mod:`.provenance`). Pure standard library."""
