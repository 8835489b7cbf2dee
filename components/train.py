from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def train(config_yaml: str, run_key: str, base_model: dsl.Input[dsl.Model], data: dsl.Input[dsl.Dataset],
          adapter: dsl.Output[dsl.Model]) -> int:
    """GAPO / DARLING / GRPO / SFT with LoRA through TRL; resumes from its last checkpoint."""
    from divtune import stages

    info = stages.train(config_yaml, run_key, base_model.path, data.path, adapter.path)
    adapter.metadata.update(info)
    return int(info["global_step"])
