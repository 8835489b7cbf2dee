from kfp import dsl

from components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def synthesize_data(config_yaml: str, run_key: str, data: dsl.Output[dsl.Dataset]):
    """Seeded list-selection training data (JSONL)."""
    from divtune import stages

    info = stages.synthesize(config_yaml, run_key, data.path)
    data.metadata.update(info)
