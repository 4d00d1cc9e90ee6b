"""Numbers reported by the seed studies (for comparison lines in figures and tables)."""

# hahacen/linear_mode_connectivity_transformer README: perplexity instability at initialisation
# (their normalisation: (max PPL - endpoint mean) / max PPL, endpoint index off by one).
PTB_STUDY_PPL_INSTABILITY_PCT = {"train": 14.9, "test": 13.7}

# Frankle et al. 2020: a network is stable when instability is below 2 %.
FRANKLE_THRESHOLD_PCT = 2.0

# Frankle et al. 2020: ResNet-20 on CIFAR-10 becomes stable to SGD noise at about 3 % of training.
FRANKLE_RESNET20_ONSET_PCT = 3.0

# Theus et al. 2025, "Generalized Linear Mode Connectivity for Transformers" (NeurIPS), their GPT-2-style LM on Tiny
# Shakespeare (6 layers, 4 heads, d = 256, MLP 1024, context 256, 100 epochs, batch 32, AdamW 3e-4, weight decay
# 0.01; as quoted in the project's issues): test-loss barrier between two independently trained models in nats,
# unaligned (2.02 ± 0.12) and after each alignment (weight matching 0.34 ± 0.01); "learned permutations + orthogonal
# map" is their learned alignment of the permutations with an orthogonal map of the residual stream.
THEUS_GPT2_SHAKESPEARE_BARRIER_NATS = {"unaligned": 2.02, "activation matching": 1.43, "weight matching": 0.34,
                                       "learned permutations": 0.63,
                                       "learned permutations + orthogonal map": 0.02}
THEUS_LM = {"n_layers": 6, "n_heads": 4, "d_model": 256, "d_ff": 1024, "context": 256}

# Study 2 (shxjames/lmc-transformers), Fig. 1, read off the figure (no number is printed): (loss at the endpoints,
# peak loss near α = ½) in nats/token of its full-length runs from one initialisation, per size and split.
STUDY2_FIG1_LOSS = {"tinygpt": {"train": (1.70, 1.905), "eval": (1.855, 2.045)},
                    "toygpt": {"train": (4.58, 5.26), "eval": (5.11, 5.95)},
                    "compactgpt": {"train": (0.45, 3.0)}, "mingpt": {"train": (0.12, 0.85)}}
# Its Table 1 (train steps, warm-up; batch 32) and GPT-2's config (batch 8; GPT-2 from scratch is not in Table 1: it
# gets MinGPT's length), its parameter counts, and its training split (90 % of tiny-shakespeare's 1,115,394 chars).
STUDY2_RECIPES = {"tinygpt": {"steps": 20000, "warmup": 2000, "batch": 32},
                  "toygpt": {"steps": 15000, "warmup": 1500, "batch": 32},
                  "compactgpt": {"steps": 10000, "warmup": 1000, "batch": 32},
                  "mingpt": {"steps": 3000, "warmup": 300, "batch": 32},
                  "gpt2": {"steps": 3000, "warmup": 300, "batch": 8}}
STUDY2_PARAMS = {"tinygpt": 204e3, "toygpt": 1.65e6, "compactgpt": 12e6, "mingpt": 30e6, "gpt2": 124e6}
STUDY2_TRAIN_CHARS = 1_003_854

# Juneja et al. 2023 (study 4), misc/measure_flatness.py: the box of the ε-sharpness, |w - w0| <= ε (|w0| + 1).
JUNEJA_SHARPNESS_EPS = 1e-5
