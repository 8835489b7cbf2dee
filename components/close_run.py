from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def close_run(config_yaml: str, run_key: str, job_id: str, status: dsl.PipelineTaskFinalStatus) -> str:
    """The exit handler: when any step failed (or its pod was killed), mark the MLflow parent run FAILED."""
    from divtune import stages

    return stages.close_run(config_yaml, run_key or job_id, status.state, status.error_message or "")
