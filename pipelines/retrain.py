"""The retraining pipeline: prepare base -> synthesize data -> train -> merge LoRA -> evaluate -> promote -> deploy.

Read top to bottom, ``make_pipeline`` *is* the DAG.  Every step is a lightweight component from
``components/`` calling one ``divtune.stages`` function; the run's whole config travels as one
string parameter, so a compiled pipeline is self-describing and a recurring run can be re-pointed
at a new preset without recompiling.  ``cluster`` (compile time) adds Kubernetes scheduling:
GPUs for train/evaluate, tolerations, node selectors, a cache PVC, Secrets as env; with
``cluster.train_nodes > 1`` or ``cluster.train_distributed: trainjob`` the train step creates a Kubeflow
Trainer TrainJob instead of training in its own pod.  ``deploy`` runs only when promote's decision is ``promote``
(``dsl.If``): it renders the new champion's InferenceService from its registered source, keeps it as an
artifact, and applies it when ``deploy.enabled`` and the pod has Kubernetes credentials.
"""


from kfp import dsl  # no "from __future__ import annotations": KFP reads real annotations

from divtune_kfp.components.close_run import close_run
from divtune_kfp.components.deploy import deploy
from divtune_kfp.components.evaluate import evaluate
from divtune_kfp.components.merge_lora import merge_lora
from divtune_kfp.components.open_run import open_run
from divtune_kfp.components.prepare_base import prepare_base
from divtune_kfp.components.promote import promote
from divtune_kfp.components.synthesize_data import synthesize_data
from divtune_kfp.components.train import train
from divtune_kfp.components.train_distributed import train_distributed
from divtune.config import ClusterConfig
from divtune_kfp.pipelines.cluster import apply

PIPELINE_NAME = "divtune-retrain"


def make_pipeline(cluster: ClusterConfig | None = None):
    @dsl.pipeline(name=PIPELINE_NAME, description="Post-train an LLM for output diversity (GAPO/DARLING) and gate it.")
    def retrain(config_yaml: str, run_key: str = ""):
        # the exit handler: a step that fails or whose pod is killed leaves the MLflow parent run FAILED
        closer = apply(close_run(config_yaml=config_yaml, run_key=run_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                       cluster, "cpu")
        closer.set_caching_options(False)
        with dsl.ExitHandler(closer, name="retrain"):
            run = apply(open_run(config_yaml=config_yaml, run_key=run_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                 compiled_cluster=cluster.fingerprint() if cluster is not None else ""), cluster, "cpu")
            run.set_caching_options(False)  # one MLflow parent run per pipeline run
            key = run.output

            base = apply(prepare_base(config_yaml=config_yaml, run_key=key), cluster, "heavy")
            data = apply(synthesize_data(config_yaml=config_yaml, run_key=key), cluster, "cpu")

            if cluster is not None and cluster.uses_trainjob:  # multi-GPU / multi-node: this step (no GPU) runs a Kubeflow Trainer TrainJob
                trained = apply(train_distributed(config_yaml=config_yaml, run_key=key,
                                                  base_model=base.outputs["base_model"], data=data.outputs["data"]),
                                cluster, "cpu")
            else:
                trained = apply(train(config_yaml=config_yaml, run_key=key,
                                      base_model=base.outputs["base_model"], data=data.outputs["data"]), cluster, "train")

            merged = apply(merge_lora(config_yaml=config_yaml, run_key=key, base_model=base.outputs["base_model"],
                                      adapter=trained.outputs["adapter"]), cluster, "merge")

            base_eval = apply(evaluate(config_yaml=config_yaml, run_key=key, model=base.outputs["base_model"],
                                       role="base"), cluster, "evaluate")
            base_eval.set_display_name("evaluate-base")
            cand_eval = apply(evaluate(config_yaml=config_yaml, run_key=key, model=merged.outputs["merged_model"],
                                       role="candidate"), cluster, "evaluate")
            cand_eval.set_display_name("evaluate-candidate")

            gate = apply(promote(config_yaml=config_yaml, run_key=key, candidate_eval=cand_eval.outputs["metrics"],
                                 base_eval=base_eval.outputs["metrics"]), cluster, "promote")
            gate.set_caching_options(False)  # the registry's state decides; never replay an old decision

            with dsl.If(gate.outputs["Output"] == "promote", name="champion-moved"):  # promote's decision
                served = apply(deploy(config_yaml=config_yaml, run_key=key, decision=gate.outputs["decision"]),
                               cluster, "deploy")
                served.set_caching_options(False)  # the cluster's state changes; never replay an apply

    return retrain


retrain = make_pipeline()  # the undecorated DAG: kfp.local runs and a plain compile
