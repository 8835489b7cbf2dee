from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def synthesize_data(config_yaml: str, run_key: str, data: dsl.Output[dsl.Dataset]):
    """The training dataset (JSONL): synthesized with the config's seed, or the configured ``data.path`` validated."""
    from divtune import stages

    info = stages.synthesize(config_yaml, run_key, data.path)
    data.metadata.update(info)
