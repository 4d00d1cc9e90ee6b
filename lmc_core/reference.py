"""Numbers reported by the seed studies (for comparison lines in figures and tables)."""

# hahacen/linear_mode_connectivity_transformer README: perplexity instability at initialisation
# (their normalisation: (max PPL - endpoint mean) / max PPL, endpoint index off by one).
PTB_STUDY_PPL_INSTABILITY_PCT = {"train": 14.9, "test": 13.7}

# Frankle et al. 2020: a network is stable when instability is below 2 %.
FRANKLE_THRESHOLD_PCT = 2.0
