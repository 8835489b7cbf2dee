"""Models as files: check, load, resolve (toy, SmolLM2, path, hub, registry), point to, and merge LoRA.

The one place that turns a path, a config or a ``models:/`` URI into a loaded model, used by
training, evaluation, serving and the stages alike.  Weights load from safetensors only.
"""
