"""The numerical ideas, numpy and scipy only: relative vectors, top-k, ranking and ties, translation,
style normalisation, metrics, anchor selection, l2_normalise. Imports nothing of the package but errors."""
