from kfp import dsl

from divtune_kfp.components._images import EVALUATOR_IMAGE


@dsl.component(base_image=EVALUATOR_IMAGE, install_kfp_package=False)
def evaluate(config_yaml: str, run_key: str, model: dsl.Input[dsl.Model], role: str,
             metrics: dsl.Output[dsl.Artifact]) -> str:
    """The configured evaluation suites (``evaluate.suites``) on one model; returns its headline metrics as JSON."""
    import json

    from divtune import stages

    info = stages.evaluate(config_yaml, run_key, model.path, role, metrics.path)
    metrics.metadata.update(info)
    return json.dumps(info, sort_keys=True)
