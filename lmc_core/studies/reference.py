"""Numbers reported by the seed studies (for comparison lines in figures and tables)."""

# hahacen/linear_mode_connectivity_transformer README: perplexity instability at initialisation
# (their normalisation: (max PPL - endpoint mean) / max PPL, endpoint index off by one).
PTB_STUDY_PPL_INSTABILITY_PCT = {"train": 14.9, "test": 13.7}

# Frankle et al. 2020: a network is stable when instability is below 2 %.
FRANKLE_THRESHOLD_PCT = 2.0

# Frankle et al. 2020: ResNet-20 on CIFAR-10 becomes stable to SGD noise at about 3 % of training.
FRANKLE_RESNET20_ONSET_PCT = 3.0

# Theus et al. 2025, "Generalized Linear Mode Connectivity for Transformers" (NeurIPS; as quoted in the project's
# notebook-04 issue): GPT-2 (124M) on Tiny Shakespeare, test-loss barrier between two independently trained models
# in nats, unaligned and after each alignment; the last is permutations plus an orthogonal map of the residual stream.
THEUS_GPT2_SHAKESPEARE_BARRIER_NATS = {"unaligned": 2.02, "activation matching": 1.43, "weight matching": 0.34,
                                       "permutations + orthogonal residual map": 0.02}
