from kfp import dsl

from divtune_kfp.components._images import EVALUATOR_IMAGE


@dsl.component(base_image=EVALUATOR_IMAGE, install_kfp_package=False)
def evaluate(config_yaml: str, run_key: str, model: dsl.Input[dsl.Model], role: str,
             metrics: dsl.Output[dsl.Artifact], scores: dsl.Output[dsl.Metrics],
             report: dsl.Output[dsl.Markdown]) -> str:
    """The configured evaluation suites (``evaluate.suites``) on one model; its headline metrics as KFP Metrics and
    a Markdown report (the run page and run comparison show both); returns the metrics as JSON."""
    import json

    from divtune import stages

    info = stages.evaluate(config_yaml, run_key, model.path, role, metrics.path, report.path)
    metrics.metadata.update(info)
    numbers = {k: float(v) for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for k, v in numbers.items():
        scores.log_metric(k, v)
    with open(scores.path, "w", encoding="utf-8") as f:  # a file behind the artifact: KFP's cache needs one
        json.dump(numbers, f, sort_keys=True)
    return json.dumps(info, sort_keys=True)
