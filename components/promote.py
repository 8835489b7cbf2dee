from kfp import dsl

from divtune_kfp.components._images import TRAINER_IMAGE


@dsl.component(base_image=TRAINER_IMAGE, install_kfp_package=False)
def promote(config_yaml: str, run_key: str, candidate_eval: dsl.Input[dsl.Artifact],
            base_eval: dsl.Input[dsl.Artifact], decision: dsl.Output[dsl.Artifact], gate: dsl.Output[dsl.Metrics],
            report: dsl.Output[dsl.Markdown]) -> str:
    """Gate against the champion, register the version with its decision, move aliases; the decision and the
    candidate's metrics as KFP Metrics, the run summary as Markdown.  Returns the decision: ``promote`` (the version
    is the champion now), ``pending`` (it passed, awaiting `divtune registry approve`) or ``reject``."""
    from divtune import stages
    from divtune.promotion.promote import format_summary

    summary = stages.promote(config_yaml, run_key, candidate_eval.path, base_eval.path, decision.path)
    decision.metadata.update({"version": summary["version"], "promote": summary["decision"]["promote"]})
    gate.log_metric("promote", 1.0 if summary["decision"]["promote"] else 0.0)
    gate.log_metric("version", float(summary["version"]))
    for k, v in summary["candidate"].items():
        gate.log_metric(f"candidate_{k}", float(v))
    import json

    with open(gate.path, "w", encoding="utf-8") as f:  # a file behind the artifact, as KFP expects
        json.dump(gate.metadata, f, sort_keys=True, default=str)
    with open(report.path, "w", encoding="utf-8") as f:
        f.write("# divtune promotion\n\n```\n" + format_summary(summary).strip() + "\n```\n")
    # the decision, as the DAG's deploy condition reads it: "promote" only when this version became champion
    if not summary["decision"]["promote"]:
        return "reject"
    return "pending" if summary.get("approval") == "pending" else "promote"
