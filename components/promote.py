from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def promote(config_yaml: str, run_key: str, candidate_eval: dsl.Input[dsl.Artifact],
            base_eval: dsl.Input[dsl.Artifact], decision: dsl.Output[dsl.Artifact]) -> str:
    """Gate against the champion, register the version with its decision, move aliases."""
    from divtune import stages

    summary = stages.promote(config_yaml, run_key, candidate_eval.path, base_eval.path, decision.path)
    decision.metadata.update({"version": summary["version"], "promote": summary["decision"]["promote"]})
    return "promote" if summary["decision"]["promote"] else "reject"
