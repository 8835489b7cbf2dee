from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def open_run(config_yaml: str, run_key: str, job_id: str, compiled_cluster: str = "") -> str:
    """Create the MLflow parent run; the run key is the given one or the KFP job id.  ``compiled_cluster``: the
    digest of the cluster section this spec was compiled with (a run with another one is refused)."""
    from divtune import stages

    return stages.open_run(config_yaml, run_key or job_id, compiled_cluster)
