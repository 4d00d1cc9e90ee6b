"""Write a tiny run store with the code of this checkout (store format 2, before the layout refactor),
and a manifest of every stored tensor's checksum, for the test that old stores keep loading."""
import hashlib, json, sys, shutil
from pathlib import Path
import torch
torch.set_num_threads(1)
from lmc_core.config import RunSpec, Seeds, TrainConfig, CopySettings, model_preset, config_hash
from lmc_core.data.vectors import VectorDataConfig
from lmc_core.models.mlp import MLPConfig
from lmc_core.runs import RunStore
from lmc_core.spawn import spawn_children, child_key, parent_dir
from lmc_core.dispatch import Job, Recipe, dispatch

out = Path(sys.argv[1]); shutil.rmtree(out, ignore_errors=True)
store = RunStore(out)
g = torch.Generator().manual_seed(0)
base = torch.randint(0, 30, (600,), generator=g)
stream = torch.cat([base, (base * 7 + 3) % 30])
model = model_preset("ptb-transformer", vocab_size=30, d_model=8, d_ff=8, context=6, n_heads=2)
lm = RunSpec(model=model, train=TrainConfig(steps=6, batch_size=4, checkpoints=(3,)), seeds=(Seeds(0, 1, 2), Seeds(0, 3, 4)))
r = store.get(lm, stream, "cpu", progress=False)
parent = RunSpec(model=model, train=TrainConfig(steps=6, batch_size=4, momentum=0.9), seeds=(Seeds(0, 1, 2),))
kids = [Seeds(0, 11, 12), Seeds(0, 13, 14)]
children = spawn_children(store, parent, [0, 3], kids, stream, "cpu", progress=False)
mlp = MLPConfig(d_in=40, hidden=(8,), n_classes=10)
tc = TrainConfig(steps=4, batch_size=20, optimizer="sgd", lr=0.1, schedule="constant", clip_norm=None, checkpoints=(2,))
jobs = [Job(RunSpec(model=mlp, data=VectorDataConfig(), train=tc, seeds=(Seeds(s, s, s),), per_copy=(CopySettings(lr=lr),)),
            Recipe.of("lmc_core.data.vectors:train_examples", dataset="mnist1d", cache_dir=str(out.parent / "cache")))
        for lr in (0.05, 0.1) for s in (1, 2)]
runs = dispatch(jobs, out, "inprocess", "cpu", progress=False)

def digest(state):
    return {n: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16] for n, t in sorted(state.items())}

manifest = {
    "lm": {"hash": config_hash(lm), "state": digest(r.state)},
    "spawn": {str(k): {"key": child_key(parent, k, tuple(kids)), "state": digest(st)} for k, st in children.items()},
    "parent": parent_dir(store, parent).name,
    "grid": [{"hash": config_hash(j.spec), "state": digest(x.state)} for j, x in zip(jobs, runs)],
}
(out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
print(json.dumps({k: (v["hash"] if "hash" in v else v) for k, v in manifest.items() if k != "grid"}, indent=1)[:800])

# hashes of one spec per family (the class names and fields enter the hash)
from lmc_core.families import SeqClassConfig
from lmc_core.families.encoder import TextDataConfig
from lmc_core.models.encoder import EncoderConfig
from lmc_core.data.modular import ModularDataConfig
from lmc_core.config import DataConfig
specs = {
    "lm_default": RunSpec(),
    "lm_char": RunSpec(model=model_preset("tinygpt"), data=DataConfig(level="char"), train=TrainConfig(optimizer="adamw", lr=1e-3)),
    "seqcls": RunSpec(model=SeqClassConfig(), data=ModularDataConfig(), train=TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0),
                      seeds=(Seeds(1, 2, 3), Seeds(4, 5, 6)), per_copy=(CopySettings(fisher=0.5), CopySettings())),
    "encoder": RunSpec(model=EncoderConfig(n_layers=2, pretrained="minilm", tune="lora", lora_rank=8), data=TextDataConfig(task="genre", half=1),
                       train=TrainConfig(steps=80, optimizer="adamw", lr=2e-5), init_from="abc@3"),
    "mlp": jobs[0].spec,
}
manifest["hashes"] = {k: config_hash(s) for k, s in specs.items()}
(out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
print(manifest["hashes"])
