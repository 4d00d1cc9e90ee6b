"""Moving between K ordinary models and one K-copy ensemble (both directions), for any model family."""
from __future__ import annotations

import torch

State = dict[str, torch.Tensor]  # every tensor has the copy axis first


def copy_state(state: State, k: int) -> State:
    """Copy k of a K-copy state as a K=1 state (cloned)."""
    return {n: t[k : k + 1].clone() for n, t in state.items()}


def select_state(state: State, idx: list[int]) -> State:
    """Copies `idx` of a K-copy state, in that order."""
    index = torch.as_tensor(idx, dtype=torch.long)
    return {n: t.index_select(0, index.to(t.device)) for n, t in state.items()}


def stack_states(states: list[State]) -> State:
    """Concatenate states along the copy axis (K1 + K2 + ...), in the first state's key order.

    The order of the keys is no part of the architecture: a state loaded from the store (keys in file order) stacks
    with one trained now (the model's order). ValueError naming the differing keys if the states hold different
    parameters."""
    if not states:
        raise ValueError("stack_states needs at least one state")
    names = list(states[0])
    for s in states[1:]:
        if s.keys() != states[0].keys():
            only_a, only_b = sorted(set(names) - set(s)), sorted(set(s) - set(names))
            raise ValueError(f"cannot stack states of different architectures (only in the first: {only_a[:5]}; "
                             f"only in another: {only_b[:5]})")
    return {n: torch.cat([s[n] for s in states], 0) for n in names}


def n_copies(state: State) -> int:
    """K of a state."""
    return next(iter(state.values())).shape[0]


def model_from_state(cfg, state: State, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The model of cfg's family with K = copies in `state`, holding exactly these weights."""
    from .families import family_of

    return family_of(cfg).model_from_state(cfg, state, device)


def extract(model: torch.nn.Module, k: int) -> torch.nn.Module:
    """Copy k of an ensemble as an ordinary (K=1) model."""
    dev = next(model.parameters()).device
    return model_from_state(model.cfg, copy_state(model.state_dict(), k), dev)


def stack(models: list[torch.nn.Module]) -> torch.nn.Module:
    """K models (each K>=1) as one ensemble."""
    dev = next(models[0].parameters()).device
    return model_from_state(models[0].cfg, stack_states([m.state_dict() for m in models]), dev)
