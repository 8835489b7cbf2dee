from kfp import dsl

from components._images import EVALUATOR_IMAGE


@dsl.component(base_image=EVALUATOR_IMAGE, install_kfp_package=False)
def evaluate(config_yaml: str, run_key: str, model: dsl.Input[dsl.Model], role: str,
             metrics: dsl.Output[dsl.Artifact]) -> float:
    """Held-out list uniformity (JSD to uniform, invalid rate) of one model; returns its JSD."""
    from divtune import stages

    info = stages.evaluate(config_yaml, run_key, model.path, role, metrics.path)
    metrics.metadata.update(info)
    return float(info["jsd_mean"])
