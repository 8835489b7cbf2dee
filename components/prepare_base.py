from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def prepare_base(config_yaml: str, run_key: str, base_model: dsl.Output[dsl.Model]):
    """Resolve the base model (toy build / SmolLM2 conversion are content-hash cached)."""
    from divtune import stages

    info = stages.prepare_base(config_yaml, run_key, base_model.path)
    base_model.metadata.update(info)
