from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def deploy(config_yaml: str, run_key: str, decision: dsl.Input[dsl.Artifact],
           manifest: dsl.Output[dsl.Artifact]) -> str:
    """After a promotion: the new champion's InferenceService, rendered from its registered source and kept as
    the ``manifest`` artifact; applied when ``deploy.enabled`` and Kubernetes credentials are at hand. Returns
    ``applied``, ``rendered`` or ``not-rendered``."""
    from divtune import stages

    info = stages.deploy(config_yaml, run_key, decision.path, manifest.path)
    manifest.metadata.update({k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))})
    return info["status"]
