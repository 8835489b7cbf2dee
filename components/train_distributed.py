from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def train_distributed(config_yaml: str, run_key: str, base_model: dsl.Input[dsl.Model], data: dsl.Input[dsl.Dataset],
                      adapter: dsl.Output[dsl.Model]) -> int:
    """Multi-GPU / multi-node training: creates a Kubeflow Trainer TrainJob (torchrun on `divtune train`),
    waits for it, and returns its adapter (staged through the cache PVC)."""
    from divtune_kfp.components.trainjob_step import train_with_trainjob

    info = train_with_trainjob(config_yaml, run_key, base_model.path, data.path, adapter.path)
    adapter.metadata.update(info)
    return int(info["global_step"])
