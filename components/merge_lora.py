from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def merge_lora(config_yaml: str, run_key: str, base_model: dsl.Input[dsl.Model], adapter: dsl.Input[dsl.Model],
               merged_model: dsl.Output[dsl.Model]) -> str:
    """peft merge_and_unload to safetensors, reload-and-generate check, logged to MLflow."""
    from divtune import stages

    info = stages.merge(config_yaml, run_key, base_model.path, adapter.path, merged_model.path)
    merged_model.metadata["model_uri"] = info["model_uri"]
    return info["model_uri"]
