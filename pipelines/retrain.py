"""The retraining pipeline: prepare base -> synthesize data -> train -> merge LoRA -> evaluate -> promote.

Read top to bottom, this file *is* the DAG.  Every step is a lightweight component from
``components/`` calling one ``divtune.stages`` function; the run's whole config travels as one
YAML string parameter, so a compiled pipeline is self-describing and a recurring run can be
re-pointed at a new preset without recompiling.
"""


from kfp import dsl  # no "from __future__ import annotations": KFP reads real annotations

from components.evaluate import evaluate
from components.merge_lora import merge_lora
from components.open_run import open_run
from components.prepare_base import prepare_base
from components.promote import promote
from components.synthesize_data import synthesize_data
from components.train import train

PIPELINE_NAME = "divtune-retrain"


@dsl.pipeline(name=PIPELINE_NAME, description="Post-train an LLM for output diversity (GAPO/DARLING) and gate it.")
def retrain(config_yaml: str, run_key: str = "") -> str:
    run = open_run(config_yaml=config_yaml, run_key=run_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
    run.set_caching_options(False)  # one MLflow parent run per pipeline run
    key = run.output

    base = prepare_base(config_yaml=config_yaml, run_key=key)
    data = synthesize_data(config_yaml=config_yaml, run_key=key)

    trained = train(config_yaml=config_yaml, run_key=key,
                    base_model=base.outputs["base_model"], data=data.outputs["data"])

    merged = merge_lora(config_yaml=config_yaml, run_key=key,
                        base_model=base.outputs["base_model"], adapter=trained.outputs["adapter"])

    base_eval = evaluate(config_yaml=config_yaml, run_key=key, model=base.outputs["base_model"], role="base")
    base_eval.set_display_name("evaluate-base")
    cand_eval = evaluate(config_yaml=config_yaml, run_key=key, model=merged.outputs["merged_model"],
                         role="candidate")
    cand_eval.set_display_name("evaluate-candidate")

    gate = promote(config_yaml=config_yaml, run_key=key,
                   candidate_eval=cand_eval.outputs["metrics"], base_eval=base_eval.outputs["metrics"])
    gate.set_caching_options(False)  # the registry's state decides; never replay an old decision
    return gate.outputs["Output"]
